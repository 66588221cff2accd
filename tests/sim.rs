//! `cargo test --features sim`: builds the simulation crate with `--cfg madsim` (which a
//! cargo feature cannot switch on for dependencies) in its own target dir and runs the
//! seeded fault scenarios of `fault-scenarios/`; fails if any seed fails.

#![cfg(all(feature = "sim", not(madsim)))]

use std::path::PathBuf;
use std::process::Command;

#[test]
fn seeded_fault_scenarios_pass_under_madsim() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("sim");
    let out = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["test", "-p", "tachyon-sim", "--release", "--config", "target.'cfg(all())'.rustflags=['--cfg','madsim']"])
        .arg("--target-dir")
        .arg(&target)
        .args(["--", "--nocapture", "--test-threads=1"])
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stdout.lines().filter(|l| l.contains("seed") || l.starts_with("simulation:") || l.contains("FAILED") || l.contains("replay")) {
        println!("{line}");
    }
    assert!(out.status.success(), "simulation failed:\n{stdout}\n{}", stderr.lines().rev().take(40).collect::<Vec<_>>().join("\n"));
    assert!(stdout.contains("simulation:") && stdout.contains(" 0 failed"), "no simulation summary:\n{stdout}");
}
