//! The master's side of identity: who calls (a client's metadata checked against this
//! master's authentication type and secret, its groups mapped here, never taken from the
//! client), whether a worker call proves the cluster secret, and who owns what a caller
//! creates. See ARCHITECTURE.md, "Security".

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tonic::metadata::MetadataMap;

use crate::core::permission::{self, Caller};
use crate::error::FsError;
use crate::proto::InodeOwnership;
use crate::runtime::Clock;
use crate::security::{self, AuthType, SecurityOptions};

/// Most users whose groups are remembered; a forgotten one is looked up again.
const MAX_CACHED_USERS: usize = 10_000;

/// Verifies callers for one master process.
pub struct Authenticator {
    options: SecurityOptions,
    clock: Arc<dyn Clock>,
    /// Groups by user, with the time they were looked up.
    groups: Mutex<BTreeMap<String, (Vec<String>, i64)>>,
}

impl Authenticator {
    /// Checks callers as `options` say; `clock` ages the group cache.
    pub fn new(options: SecurityOptions, clock: Arc<dyn Clock>) -> Self {
        Authenticator { options, clock, groups: Mutex::new(BTreeMap::new()) }
    }

    /// The settings this master checks with.
    pub fn options(&self) -> &SecurityOptions {
        &self.options
    }

    /// The verified caller of a client request. With NOSASL, or with permission checks
    /// off, the caller passes every check (it is still named, for ownership).
    pub fn caller(&self, metadata: &MetadataMap) -> Result<Caller, FsError> {
        let header = |key: &str| metadata.get(key).and_then(|v| v.to_str().ok()).map(str::to_string);
        let expected = self.options.auth_type;
        if expected == AuthType::NoSasl {
            return Ok(Caller::superuser(""));
        }
        let sent = header(security::AUTH_TYPE_HEADER).unwrap_or_default();
        if AuthType::parse(&sent) != Some(expected) {
            let sent = if sent.is_empty() { "none" } else { sent.as_str() };
            return Err(FsError::Unauthenticated {
                reason: format!(
                    "this master uses {} authentication and the client {sent} (set tachyon.security.authentication.type alike on both)",
                    expected.name()
                ),
            });
        }
        let user = header(security::USER_HEADER).unwrap_or_default();
        security::check_user_name(&user).map_err(|reason| FsError::Unauthenticated { reason })?;
        if expected == AuthType::Custom {
            let token = header(security::AUTH_HEADER).unwrap_or_default();
            if !security::tokens_match(&token, &security::client_token(&self.options.custom_secret, &user)) {
                tracing::warn!(user = %user, "refused a client whose proof of the custom secret does not match");
                return Err(FsError::Unauthenticated {
                    reason: format!("user {user}: wrong or missing proof of tachyon.security.authentication.custom.secret"),
                });
            }
        }
        let groups = self.groups_of(&user);
        let superuser = !self.options.permissions_enabled
            || user == self.options.login_user
            || (!self.options.supergroup.is_empty() && groups.contains(&self.options.supergroup));
        Ok(Caller { user, groups, superuser })
    }

    /// Checks that a worker call proves the cluster secret (when one is configured).
    pub fn check_worker(&self, metadata: &MetadataMap) -> Result<(), FsError> {
        if self.options.cluster_secret.is_empty() {
            return Ok(());
        }
        let token = metadata.get(security::CLUSTER_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if security::tokens_match(token, &security::worker_token(&self.options.cluster_secret)) {
            Ok(())
        } else {
            tracing::warn!("refused a worker call without a valid proof of the cluster secret");
            Err(FsError::Unauthenticated { reason: "worker calls need tachyon.security.cluster.secret (the proof sent does not match)".into() })
        }
    }

    /// Who owns what `caller` creates: the caller and its first group (NOSASL: what the
    /// request claims), with the mode the request asks for, or `default_mode` less this
    /// master's umask.
    pub fn new_ownership(&self, caller: &Caller, claimed: Option<InodeOwnership>, default_mode: u32) -> Result<InodeOwnership, FsError> {
        let mut o = claimed.unwrap_or_default();
        crate::core::namespace::check_ownership(&o)?;
        if self.options.auth_type != AuthType::NoSasl {
            o.owner.clone_from(&caller.user);
            o.group = caller.primary_group().to_string();
        }
        if o.mode == 0 {
            o.mode = permission::apply_umask(default_mode, self.options.umask);
        }
        Ok(o)
    }

    /// What the master owns when it acts on its own (names loaded from under-storage).
    pub fn master_ownership(&self, default_mode: u32) -> InodeOwnership {
        InodeOwnership {
            owner: self.options.login_user.clone(),
            group: self.options.supergroup.clone(),
            mode: permission::apply_umask(default_mode, self.options.umask),
        }
    }

    /// The groups of `user`: the configured override, else the master host's
    /// `/etc/passwd` and `/etc/group`, cached for `group_cache_ms`.
    fn groups_of(&self, user: &str) -> Vec<String> {
        if let Some(groups) = self.options.group_overrides.get(user) {
            return groups.clone();
        }
        let now = self.clock.now_ms();
        let mut cache = self.groups.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((groups, at)) = cache.get(user) {
            if now.saturating_sub(*at) < self.options.group_cache_ms as i64 {
                return groups.clone();
            }
        }
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let groups = security::groups_from_files(user, &read("/etc/passwd"), &read("/etc/group"));
        if cache.len() >= MAX_CACHED_USERS {
            cache.pop_first();
        }
        cache.insert(user.to_string(), (groups.clone(), now));
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::SystemClock;

    fn options(auth_type: AuthType) -> SecurityOptions {
        let mut o = SecurityOptions::unchecked();
        o.auth_type = auth_type;
        o.login_user = "tachyon".into();
        o.custom_secret = "k".into();
        o.permissions_enabled = true;
        o.supergroup = "admins".into();
        o.group_overrides = security::parse_group_overrides("alice=staff;root2=admins").unwrap();
        o
    }

    fn client(auth_type: AuthType, user: &str, secret: &str) -> MetadataMap {
        let mut o = options(auth_type);
        o.login_user = user.into();
        o.custom_secret = secret.into();
        o.sign_client(()).metadata().clone()
    }

    #[test]
    fn callers_are_verified_and_mapped_by_the_master() {
        let auth = Authenticator::new(options(AuthType::Custom), Arc::new(SystemClock));
        let alice = auth.caller(&client(AuthType::Custom, "alice", "k")).unwrap();
        assert_eq!(alice, Caller { user: "alice".into(), groups: vec!["staff".into()], superuser: false });
        assert!(auth.caller(&client(AuthType::Custom, "root2", "k")).unwrap().superuser, "supergroup member");
        assert!(auth.caller(&client(AuthType::Custom, "tachyon", "k")).unwrap().superuser, "the master's own user");
        let wrong_secret = auth.caller(&client(AuthType::Custom, "alice", "guess")).unwrap_err();
        assert!(matches!(wrong_secret, FsError::Unauthenticated { .. }), "{wrong_secret}");
        let mismatch = auth.caller(&client(AuthType::Simple, "alice", "")).unwrap_err().to_string();
        assert!(mismatch.contains("CUSTOM") && mismatch.contains("SIMPLE"), "{mismatch}");
        let anonymous = auth.caller(&MetadataMap::new()).unwrap_err().to_string();
        assert!(anonymous.contains("none"), "{anonymous}");
        // A token for one user does not serve another.
        let mut stolen = client(AuthType::Custom, "alice", "k");
        stolen.insert(security::USER_HEADER, "root2".parse().unwrap());
        assert!(auth.caller(&stolen).is_err());
    }

    #[test]
    fn without_checks_everyone_passes_but_keeps_a_name() {
        let mut o = options(AuthType::Simple);
        o.permissions_enabled = false;
        let auth = Authenticator::new(o, Arc::new(SystemClock));
        let c = auth.caller(&client(AuthType::Simple, "alice", "")).unwrap();
        assert!(c.superuser);
        assert_eq!(auth.new_ownership(&c, None, 0o666).unwrap(), InodeOwnership { owner: "alice".into(), group: "staff".into(), mode: 0o644 });
        let nosasl = Authenticator::new(options(AuthType::NoSasl), Arc::new(SystemClock));
        let anyone = nosasl.caller(&MetadataMap::new()).unwrap();
        assert!(anyone.superuser);
        let claimed = InodeOwnership { owner: "bob".into(), group: "b".into(), mode: 0o600 };
        assert_eq!(nosasl.new_ownership(&anyone, Some(claimed.clone()), 0o666).unwrap(), claimed, "NOSASL keeps the claim");
    }

    #[test]
    fn worker_calls_need_the_cluster_secret_when_one_is_set() {
        let mut o = options(AuthType::Simple);
        let open = Authenticator::new(o.clone(), Arc::new(SystemClock));
        assert!(open.check_worker(&MetadataMap::new()).is_ok());
        o.cluster_secret = "c".into();
        let closed = Authenticator::new(o.clone(), Arc::new(SystemClock));
        assert!(closed.check_worker(&MetadataMap::new()).is_err());
        assert!(closed.check_worker(security::sign_worker(&o.cluster_secret, ()).metadata()).is_ok());
        let mut other = o.clone();
        other.cluster_secret = "d".into();
        assert!(closed.check_worker(security::sign_worker(&other.cluster_secret, ()).metadata()).is_err());
    }
}
