//! Identity on the wire: how a client names its user, proves it holds the custom secret,
//! and how a worker proves it belongs to the cluster (gRPC metadata). The master checks
//! what this module signs (`master::auth`); see ARCHITECTURE.md, "Security".

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::{self, Config};
use crate::error::FsError;

/// Metadata key naming the calling user.
pub const USER_HEADER: &str = "x-tachyon-user";
/// Metadata key with the client's proof of the custom secret (CUSTOM).
pub const AUTH_HEADER: &str = "x-tachyon-auth";
/// Metadata key with a worker's proof of the cluster secret.
pub const CLUSTER_HEADER: &str = "x-tachyon-cluster";
/// Metadata key naming the caller's authentication type, so a mismatch is reported as one.
pub const AUTH_TYPE_HEADER: &str = "x-tachyon-auth-type";

/// How callers are identified (`tachyon.security.authentication.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthType {
    /// Nobody is identified; nothing is checked.
    NoSasl,
    /// Clients name their user and are believed.
    Simple,
    /// Clients name their user and prove they hold the shared custom secret.
    Custom,
}

impl AuthType {
    /// Reads a configured name (case-insensitive).
    pub fn parse(name: &str) -> Option<AuthType> {
        match name.trim().to_ascii_uppercase().as_str() {
            "NOSASL" => Some(AuthType::NoSasl),
            "SIMPLE" => Some(AuthType::Simple),
            "CUSTOM" => Some(AuthType::Custom),
            _ => None,
        }
    }

    /// The configured name.
    pub fn name(self) -> &'static str {
        match self {
            AuthType::NoSasl => "NOSASL",
            AuthType::Simple => "SIMPLE",
            AuthType::Custom => "CUSTOM",
        }
    }
}

/// A process's security settings, validated from [`Config`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityOptions {
    pub auth_type: AuthType,
    /// The user this process acts as (a client's identity; a master's superuser).
    pub login_user: String,
    /// CUSTOM: the secret clients prove they hold.
    pub custom_secret: String,
    /// Shared by masters and workers; empty: worker calls are not authenticated.
    pub cluster_secret: String,
    /// Check permissions (never with NOSASL).
    pub permissions_enabled: bool,
    pub supergroup: String,
    /// Bits cleared from the mode of new inodes.
    pub umask: u32,
    /// Groups by user that replace the operating system's answer.
    pub group_overrides: BTreeMap<String, Vec<String>>,
    pub group_cache_ms: u64,
    /// TLS on every connection this process makes or serves (`None`: plain).
    pub tls: Option<crate::tls::TlsConfig>,
    /// Under-storage URI prefixes a master lets superusers mount (empty: any).
    pub mount_allowed_uris: Vec<String>,
}

impl std::fmt::Debug for SecurityOptions {
    /// Secrets are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityOptions")
            .field("auth_type", &self.auth_type)
            .field("login_user", &self.login_user)
            .field("custom_secret_set", &!self.custom_secret.is_empty())
            .field("cluster_secret_set", &!self.cluster_secret.is_empty())
            .field("permissions_enabled", &self.permissions_enabled)
            .field("supergroup", &self.supergroup)
            .field("umask", &format_args!("{:03o}", self.umask))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl SecurityOptions {
    /// No identities and no checks: every caller may do everything (tachyon before
    /// permissions; the simulator).
    pub fn unchecked() -> Self {
        SecurityOptions {
            auth_type: AuthType::NoSasl,
            login_user: String::new(),
            custom_secret: String::new(),
            cluster_secret: String::new(),
            permissions_enabled: false,
            supergroup: String::new(),
            umask: 0o022,
            group_overrides: BTreeMap::new(),
            group_cache_ms: 60_000,
            tls: None,
            mount_allowed_uris: Vec::new(),
        }
    }

    /// SIMPLE authentication as `user`, with the default umask and permission checks.
    pub fn simple_as(user: &str) -> Self {
        SecurityOptions {
            auth_type: AuthType::Simple,
            login_user: user.to_string(),
            permissions_enabled: true,
            supergroup: "supergroup".into(),
            ..Self::unchecked()
        }
    }

    /// Reads the settings; the login user defaults to the operating-system user.
    pub fn from_config(cfg: &Config) -> Result<Self, FsError> {
        let invalid = |key: &str, reason: String| FsError::InvalidArgument { reason: format!("{key}: {reason}") };
        let auth_type = AuthType::parse(&cfg.string(config::AUTHENTICATION_TYPE))
            .ok_or_else(|| invalid(config::AUTHENTICATION_TYPE, "expected NOSASL, SIMPLE or CUSTOM".into()))?;
        let configured_user = cfg.string(config::LOGIN_USERNAME).trim().to_string();
        let login_user = if configured_user.is_empty() { crate::client::current_user() } else { configured_user };
        check_user_name(&login_user).map_err(|r| invalid(config::LOGIN_USERNAME, r))?;
        let custom_secret = cfg.string(config::AUTHENTICATION_CUSTOM_SECRET);
        if auth_type == AuthType::Custom && custom_secret.is_empty() {
            return Err(invalid(config::AUTHENTICATION_CUSTOM_SECRET, "CUSTOM authentication needs a secret".into()));
        }
        Ok(SecurityOptions {
            auth_type,
            login_user,
            custom_secret,
            cluster_secret: cfg.string(config::CLUSTER_SECRET),
            permissions_enabled: cfg.bool(config::PERMISSION_ENABLED) && auth_type != AuthType::NoSasl,
            supergroup: cfg.string(config::PERMISSION_SUPERGROUP).trim().to_string(),
            umask: crate::core::permission::parse_umask(&cfg.string(config::PERMISSION_UMASK)).map_err(|r| invalid(config::PERMISSION_UMASK, r))?,
            group_overrides: parse_group_overrides(&cfg.string(config::GROUP_MAPPING_OVERRIDES)).map_err(|r| invalid(config::GROUP_MAPPING_OVERRIDES, r))?,
            group_cache_ms: cfg.duration_ms(config::GROUP_MAPPING_CACHE_TIMEOUT),
            tls: crate::tls::TlsConfig::from_config(cfg)?,
            mount_allowed_uris: cfg.string(config::MOUNT_ALLOWED_URIS).split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect(),
        })
    }

    /// Adds this process's client identity to a request: its user, and with CUSTOM the
    /// proof of the custom secret for that user.
    pub fn sign_client<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let metadata = request.metadata_mut();
        insert(metadata, AUTH_TYPE_HEADER, self.auth_type.name());
        if self.auth_type != AuthType::NoSasl {
            insert(metadata, USER_HEADER, &self.login_user);
        }
        if self.auth_type == AuthType::Custom {
            insert(metadata, AUTH_HEADER, &client_token(&self.custom_secret, &self.login_user));
        }
        request
    }
}

/// A worker's request to the master with its proof of the cluster secret (none if the
/// secret is empty).
pub fn sign_worker<T>(cluster_secret: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !cluster_secret.is_empty() {
        insert(request.metadata_mut(), CLUSTER_HEADER, &worker_token(cluster_secret));
    }
    request
}

/// Sets a metadata value; names and tokens are checked to be printable ASCII, so a value
/// that is not is left out (and the master refuses the request, naming what is missing).
fn insert(metadata: &mut tonic::metadata::MetadataMap, key: &'static str, value: &str) {
    if let Ok(v) = value.parse() {
        metadata.insert(key, v);
    }
}

/// Checks a user name: non-empty, bounded, printable ASCII without spaces or ':' (it
/// travels in gRPC metadata and is shown in listings).
pub fn check_user_name(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user name is empty".into());
    }
    if user.len() > crate::core::namespace::MAX_OWNER_BYTES {
        return Err(format!("user name longer than {} bytes", crate::core::namespace::MAX_OWNER_BYTES));
    }
    if !user.chars().all(|c| c.is_ascii_graphic() && c != ':') {
        return Err(format!("user name {user:?} has a character other than printable ASCII (or a ':')"));
    }
    Ok(())
}

fn hmac_hex(secret: &str, message: &str) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A client's proof of the custom secret, bound to its user: HMAC-SHA256(secret, "client:" user).
pub fn client_token(secret: &str, user: &str) -> String {
    hmac_hex(secret, &format!("client:{user}"))
}

/// A worker's proof of the cluster secret: HMAC-SHA256(secret, "worker").
pub fn worker_token(secret: &str) -> String {
    hmac_hex(secret, "worker")
}

/// True if `given` equals `expected`, comparing every byte (no early exit an attacker could
/// time).
pub fn tokens_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Marks a mount option value sealed by [`SecretSealer`].
pub const SEALED_PREFIX: &str = "sealed:v1:";

/// Seals the credentials among mount options before they are journaled, and opens them
/// where a mount is used: AES-256-GCM under a key derived from the cluster secret, with
/// the option's name as associated data. The nonce is derived from name and value (an
/// HMAC), so sealing is deterministic: replaying the journal gives the same namespace bit
/// for bit, and nothing reads the OS's randomness. Equal secrets seal equally, which shows
/// only that two mounts share a credential.
pub struct SecretSealer {
    key: ring::aead::LessSafeKey,
    nonce_key: Vec<u8>,
}

impl SecretSealer {
    /// The sealer of a cluster secret (`None` without one: credentials stay readable).
    pub fn from_cluster_secret(cluster_secret: &str) -> Option<SecretSealer> {
        if cluster_secret.is_empty() {
            return None;
        }
        let derive = |purpose: &str| -> Vec<u8> {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(cluster_secret.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
            mac.update(purpose.as_bytes());
            mac.finalize().into_bytes().to_vec()
        };
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &derive("tachyon mount secrets: key")).ok()?;
        Some(SecretSealer { key: ring::aead::LessSafeKey::new(unbound), nonce_key: derive("tachyon mount secrets: nonce") })
    }

    fn nonce(&self, name: &str, value: &str) -> ring::aead::Nonce {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.nonce_key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; ring::aead::NONCE_LEN];
        nonce.copy_from_slice(&digest[..ring::aead::NONCE_LEN]);
        ring::aead::Nonce::assume_unique_for_key(nonce)
    }

    /// `value` of option `name`, sealed.
    pub fn seal(&self, name: &str, value: &str) -> String {
        let nonce = self.nonce(name, value);
        let nonce_bytes = *nonce.as_ref();
        let mut data = value.as_bytes().to_vec();
        // Sealing cannot fail for inputs below GCM's 64 GiB limit; a mount option is far below.
        if self.key.seal_in_place_append_tag(nonce, ring::aead::Aad::from(name.as_bytes()), &mut data).is_err() {
            unreachable!("AES-GCM seals any option value");
        }
        let hex: String = nonce_bytes.iter().chain(data.iter()).map(|b| format!("{b:02x}")).collect();
        format!("{SEALED_PREFIX}{hex}")
    }

    /// The value a [`SecretSealer::seal`] of option `name` sealed; an error if it was
    /// sealed under another cluster secret or changed.
    pub fn open(&self, name: &str, sealed: &str) -> Result<String, String> {
        let hex = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(|| format!("{name} is not sealed"))?;
        let bytes: Vec<u8> = (0..hex.len() / 2).filter_map(|i| hex.get(2 * i..2 * i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
        if hex.len() % 2 != 0 || bytes.len() * 2 != hex.len() || bytes.len() < ring::aead::NONCE_LEN + ring::aead::AES_256_GCM.tag_len() {
            return Err(format!("{name}: damaged sealed value"));
        }
        let (nonce, sealed_data) = bytes.split_at(ring::aead::NONCE_LEN);
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| format!("{name}: damaged sealed value"))?;
        let mut data = sealed_data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, ring::aead::Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| format!("{name} was sealed under another {} (or changed)", config::CLUSTER_SECRET))?;
        String::from_utf8(plain.to_vec()).map_err(|_| format!("{name}: sealed value is not text"))
    }

    /// `options` with every credential (a secret configuration key) sealed.
    pub fn seal_options(&self, options: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        options.iter().map(|(k, v)| (k.clone(), if config::is_secret_key(k) && !v.starts_with(SEALED_PREFIX) { self.seal(k, v) } else { v.clone() })).collect()
    }
}

/// `options` with every sealed value opened by `sealer`; an error names an option that
/// cannot be opened (no sealer: this process lacks the cluster secret).
pub fn open_options(sealer: Option<&SecretSealer>, options: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    options
        .iter()
        .map(|(k, v)| {
            if !v.starts_with(SEALED_PREFIX) {
                return Ok((k.clone(), v.clone()));
            }
            let sealer = sealer.ok_or_else(|| format!("mount option {k} is sealed: this process needs {}", config::CLUSTER_SECRET))?;
            Ok((k.clone(), sealer.open(k, v)?))
        })
        .collect()
}

/// Parses `user=group1,group2;user2=` (Hadoop's static mapping format).
pub fn parse_group_overrides(text: &str) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut map = BTreeMap::new();
    for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
        let (user, groups) = item.split_once('=').ok_or_else(|| format!("{item:?}: expected user=group1,group2"))?;
        check_user_name(user.trim())?;
        let groups: Vec<String> = groups.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect();
        for g in &groups {
            check_user_name(g).map_err(|r| format!("group of {}: {r}", user.trim()))?;
        }
        map.insert(user.trim().to_string(), groups);
    }
    Ok(map)
}

/// The groups of `user` from `/etc/passwd` and `/etc/group` texts, primary group first
/// (what `id -Gn` prints for a local user).
pub fn groups_from_files(user: &str, passwd: &str, group: &str) -> Vec<String> {
    let primary_gid = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[0] == user).then(|| f[3].to_string())
    });
    let mut groups = Vec::new();
    for line in group.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 {
            continue;
        }
        if primary_gid.as_deref() == Some(f[2]) {
            groups.insert(0, f[0].to_string());
        } else if f[3].split(',').any(|m| m.trim() == user) && !groups.iter().any(|g| g == f[0]) {
            groups.push(f[0].to_string());
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_the_secret_and_the_user() {
        let t = client_token("s3cret", "alice");
        assert_eq!(t.len(), 64);
        assert!(!t.contains("s3cret"));
        assert_eq!(t, client_token("s3cret", "alice"));
        assert_ne!(t, client_token("s3cret", "bob"));
        assert_ne!(t, client_token("other", "alice"));
        assert_ne!(worker_token("s3cret"), client_token("s3cret", ""));
        assert!(tokens_match(&t, &client_token("s3cret", "alice")));
        assert!(!tokens_match(&t, &client_token("s3cret", "bob")));
        assert!(!tokens_match(&t, &t[..63]));
    }

    #[test]
    fn sealed_credentials_open_only_with_the_same_cluster_secret() {
        let sealer = SecretSealer::from_cluster_secret("cluster-1").unwrap();
        let sealed = sealer.seal("s3a.secretKey", "hunter2");
        assert!(sealed.starts_with(SEALED_PREFIX) && !sealed.contains("hunter2"), "{sealed}");
        assert_eq!(sealed, sealer.seal("s3a.secretKey", "hunter2"), "deterministic: replay gives the same bytes");
        assert_eq!(sealer.open("s3a.secretKey", &sealed), Ok("hunter2".to_string()));
        assert!(sealer.open("s3a.accessKeyId", &sealed).is_err(), "bound to the option's name");
        let other = SecretSealer::from_cluster_secret("cluster-2").unwrap();
        assert!(other.open("s3a.secretKey", &sealed).unwrap_err().contains("tachyon.security.cluster.secret"));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('0');
        assert!(sealer.open("s3a.secretKey", &tampered).is_err());
        assert!(SecretSealer::from_cluster_secret("").is_none());
        let options = BTreeMap::from([("s3a.secretKey".to_string(), "hunter2".to_string()), ("tachyon.underfs.s3.region".to_string(), "eu".to_string())]);
        let stored = sealer.seal_options(&options);
        assert_eq!(stored["tachyon.underfs.s3.region"], "eu", "only credentials are sealed");
        assert_eq!(open_options(Some(&sealer), &stored), Ok(options.clone()));
        assert!(open_options(None, &stored).unwrap_err().contains("needs tachyon.security.cluster.secret"));
        assert_eq!(open_options(None, &options), Ok(options), "plain values pass");
    }

    #[test]
    fn group_overrides_read_hadoops_format() {
        let m = parse_group_overrides("alice=staff,dev; bob=;carol = ops").unwrap();
        assert_eq!(m["alice"], vec!["staff".to_string(), "dev".to_string()]);
        assert!(m["bob"].is_empty());
        assert_eq!(m["carol"], vec!["ops".to_string()]);
        assert!(parse_group_overrides("").unwrap().is_empty());
        assert!(parse_group_overrides("alice").is_err());
        assert!(parse_group_overrides("al ice=x").is_err());
    }

    #[test]
    fn local_groups_put_the_primary_group_first() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1001::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nwheel:x:10:alice,bob\nalice:x:1001:\ndocker:x:999:bob\nstaff:x:50:carol,alice\n";
        assert_eq!(groups_from_files("alice", passwd, group), vec!["alice", "wheel", "staff"]);
        assert_eq!(groups_from_files("bob", passwd, group), vec!["wheel", "docker"]);
        assert!(groups_from_files("nobody", passwd, group).is_empty());
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user_name("alice").is_ok());
        for bad in ["", "a b", "a:b", "é", "a\nb"] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_requests_carry_the_identity() {
        let mut o = SecurityOptions::unchecked();
        o.auth_type = AuthType::Custom;
        o.login_user = "alice".into();
        o.custom_secret = "k".into();
        let r = o.sign_client(());
        assert_eq!(r.metadata().get(USER_HEADER).and_then(|v| v.to_str().ok()), Some("alice"));
        assert_eq!(r.metadata().get(AUTH_HEADER).and_then(|v| v.to_str().ok()), Some(client_token("k", "alice").as_str()));
        assert!(r.metadata().get(CLUSTER_HEADER).is_none());
        o.cluster_secret = "c".into();
        let w = sign_worker(&o.cluster_secret, ());
        assert_eq!(w.metadata().get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()), Some(worker_token("c").as_str()));
        assert!(format!("{o:?}").find("\"k\"").is_none(), "secrets never in Debug output");
    }
}
