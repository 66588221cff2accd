//! Start-up checks of a master or worker process, run before it serves anything: every
//! address it will listen on can be bound, the host it advertises resolves, and the
//! ZooKeeper servers it will use resolve. A failure is one line naming the configuration
//! key and its value, so a typo never turns into a stack of retries.
//!
//! Real networking: compiled for production builds only (the simulator has no resolver).

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use crate::config::{self, Config};

/// One address a process listens on, with the keys that chose it.
struct Listen {
    /// E.g. `tachyon.master.bind.host`.
    host_key: &'static str,
    /// E.g. `tachyon.master.port`.
    port_key: &'static str,
    /// The advertised host's key, which the bind host defaults from.
    hostname_key: &'static str,
    /// A web UI: port 0 turns it off.
    web: bool,
}

const MASTER_LISTENS: &[Listen] = &[
    Listen { host_key: config::MASTER_BIND_HOST, port_key: config::MASTER_PORT, hostname_key: config::MASTER_HOSTNAME, web: false },
    Listen { host_key: config::MASTER_WEB_BIND_HOST, port_key: config::MASTER_WEB_PORT, hostname_key: config::MASTER_HOSTNAME, web: true },
];

const WORKER_LISTENS: &[Listen] = &[
    Listen { host_key: config::WORKER_BIND_HOST, port_key: config::WORKER_PORT, hostname_key: config::WORKER_HOSTNAME, web: false },
    Listen { host_key: config::WORKER_DATA_BIND_HOST, port_key: config::WORKER_DATA_PORT, hostname_key: config::WORKER_HOSTNAME, web: false },
    Listen { host_key: config::WORKER_WEB_BIND_HOST, port_key: config::WORKER_WEB_PORT, hostname_key: config::WORKER_HOSTNAME, web: true },
];

/// Which process is starting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    Master,
    Worker,
}

/// Checks everything a `process` needs from the network before it starts. Returns warnings
/// to log (an advertised loopback address with ZooKeeper on), or the first problem found.
pub fn check(cfg: &Config, process: Process) -> Result<Vec<String>, String> {
    let (hostname_key, listens) = match process {
        Process::Master => (config::MASTER_HOSTNAME, MASTER_LISTENS),
        Process::Worker => (config::WORKER_HOSTNAME, WORKER_LISTENS),
    };
    let advertised = cfg.string(hostname_key);
    resolve_one(&advertised, 0)
        .map_err(|e| format!("{hostname_key}={advertised} does not resolve ({e}): set it to this host's externally visible name or address"))?;
    let mut warnings = Vec::new();
    if cfg.bool(config::ZOOKEEPER_ENABLED) {
        check_zookeeper_servers(cfg)?;
        if config::is_loopback_host(&advertised) {
            warnings.push(format!(
                "{hostname_key}={advertised} is a loopback address: with ZooKeeper on, other hosts find this process by that name and cannot reach it; \
                 set it to this host's externally visible address (TACHYON_MASTER_ADDRESS for a master)"
            ));
        }
    }
    for listen in listens {
        let host = cfg.bind_host(listen.host_key, listen.hostname_key);
        let port = cfg.port(listen.port_key);
        if listen.web && port == 0 {
            continue;
        }
        let shown = format!("{}={host:?} {}={port}", listen.host_key, listen.port_key);
        let addr = resolve_one(&host, port).map_err(|e| format!("cannot listen on {shown}: {e}"))?;
        TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} ({shown}): {e}"))?;
    }
    Ok(warnings)
}

/// Every ZooKeeper server in `tachyon.zookeeper.address` must resolve: a misspelt host is
/// reported now instead of as endless connection retries.
fn check_zookeeper_servers(cfg: &Config) -> Result<(), String> {
    let list = cfg.string(config::ZOOKEEPER_ADDRESS);
    let key = config::ZOOKEEPER_ADDRESS;
    if list.is_empty() {
        return Err(format!("{}=true needs {key} (host:port[,host:port...])", config::ZOOKEEPER_ENABLED));
    }
    let servers = config::parse_server_list(&list).map_err(|e| format!("{key}={list}: {e}"))?;
    for (host, port) in servers {
        resolve_one(&host, port).map_err(|e| format!("{key}={list}: ZooKeeper server {host}:{port} does not resolve ({e})"))?;
    }
    Ok(())
}

/// The first address of `host` (IPv4 preferred), as the servers bind it.
fn resolve_one(host: &str, port: u16) -> Result<SocketAddr, String> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs().map_err(|e| e.to_string())?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| "no address".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigInputs, Role};

    fn cfg(defines: &[String]) -> Config {
        Config::load(&ConfigInputs { conf_dir: None, env: Default::default(), overrides: defines.to_vec(), role: Some(Role::Master) }).unwrap()
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    #[test]
    fn bad_addresses_are_one_line_naming_key_and_value() {
        let ports = |p: u16| vec![format!("tachyon.master.port={p}"), format!("tachyon.master.web.port={}", free_port())];
        assert!(check(&cfg(&ports(free_port())), Process::Master).unwrap().is_empty());

        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = check(&cfg(&ports(port)), Process::Master).unwrap_err();
        assert!(err.contains(&format!("tachyon.master.port={port}")) && err.contains("tachyon.master.bind.host"), "{err}");

        let mut d = ports(free_port());
        d.push("tachyon.master.bind.host=192.0.2.77".into()); // TEST-NET-1: never on this machine
        let err = check(&cfg(&d), Process::Master).unwrap_err();
        assert!(err.contains("tachyon.master.bind.host=\"192.0.2.77\""), "{err}");

        let mut d = ports(free_port());
        d.push("tachyon.master.hostname=no-such-host.invalid".into());
        let err = check(&cfg(&d), Process::Master).unwrap_err();
        assert!(err.starts_with("tachyon.master.hostname=no-such-host.invalid does not resolve"), "{err}");

        let mut d = ports(free_port());
        d.extend(["tachyon.zookeeper.enabled=true".to_string(), "tachyon.zookeeper.address=127.0.0.1:2181,zk-typo.invalid:2181".into()]);
        let err = check(&cfg(&d), Process::Master).unwrap_err();
        assert!(err.contains("tachyon.zookeeper.address=") && err.contains("zk-typo.invalid:2181 does not resolve"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn a_loopback_address_with_zookeeper_warns() {
        let d = vec![
            format!("tachyon.master.port={}", free_port()),
            format!("tachyon.master.web.port={}", free_port()),
            "tachyon.zookeeper.enabled=true".into(),
            "tachyon.zookeeper.address=127.0.0.1:2181".into(),
        ];
        let warnings = check(&cfg(&d), Process::Master).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("tachyon.master.hostname=localhost is a loopback address"), "{warnings:?}");
    }
}
