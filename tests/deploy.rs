//! The container image and Kubernetes manifests, checked offline: `deploy/check.py`
//! validates the manifests against the Kubernetes schemas (kubernetes-validate, strict)
//! and checks the fields tachyon depends on, and parses the Dockerfile with the official
//! parser. Planted mistakes must make it fail. The ConfigMap's properties load cleanly in
//! tachyon's own configuration code, and the masters' init step is safe to repeat.
//!
//! Needs the checker's Python environment that `bin/install-test-services.sh` installs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn checker_python() -> PathBuf {
    let python = common::underfs::cache_dir().join("deploy-venv/bin/python");
    assert!(python.exists(), "{} is missing: run bin/install-test-services.sh (bin/test-all.sh does)", python.display());
    python
}

fn run_checker(root: &Path, properties_out: Option<&Path>) -> Output {
    let mut c = Command::new(checker_python());
    c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/check.py")).arg("--root").arg(root);
    if let Some(p) = properties_out {
        c.arg("--properties-out").arg(p);
    }
    c.output().unwrap()
}

/// A copy of the Dockerfile and deploy/ with `edit` applied to one file.
fn mutated_copy(dir: &Path, file: &str, from: &str, to: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("deploy/kubernetes")).unwrap();
    std::fs::copy(root.join("Dockerfile"), dir.join("Dockerfile")).unwrap();
    for entry in std::fs::read_dir(root.join("deploy/kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join("deploy/kubernetes").join(path.file_name().unwrap())).unwrap();
    }
    let target = dir.join(file);
    let text = std::fs::read_to_string(&target).unwrap();
    assert!(text.contains(from), "{file} no longer contains {from:?}: update this test");
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn image_and_manifests_pass_the_offline_checks() {
    let dir = tempfile::tempdir().unwrap();
    let props = dir.path().join("tachyon-site.properties");
    let out = run_checker(Path::new(env!("CARGO_MANIFEST_DIR")), Some(&props));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(" 0 failed"), "{stdout}");

    // The ConfigMap's properties are tachyon configuration without a single unknown key.
    let cfg = tachyon::config::Config::load(&tachyon::config::ConfigInputs {
        conf_dir: Some(dir.path().to_path_buf()),
        env: Default::default(),
        overrides: vec![],
        role: Some(tachyon::config::Role::Master),
    })
    .unwrap();
    assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
    assert!(cfg.bool(tachyon::config::ZOOKEEPER_ENABLED));
    assert_eq!(cfg.string(tachyon::config::JOURNAL_FOLDER), "/shared/journal");

    // The masters' init container, `tachyon format --if-unformatted`, run twice (as three
    // pods starting at once do) formats once and then leaves the journal alone.
    let journal = dir.path().join("journal");
    let format = || {
        Command::new(common::tachyon_bin())
            .args(["format", "--if-unformatted"])
            .env("TACHYON_CONF_DIR", dir.path())
            .env("TACHYON_JAVA_OPTS", format!("-Dtachyon.master.journal.folder={}", journal.display()))
            .output()
            .unwrap()
    };
    let first = format();
    assert!(first.status.success() && String::from_utf8_lossy(&first.stdout).contains("Formatted journal"), "{first:?}");
    let second = format();
    assert!(second.status.success() && String::from_utf8_lossy(&second.stdout).contains("already formatted"), "{second:?}");
}

#[test]
fn planted_mistakes_in_image_or_manifests_fail_the_checks() {
    for (file, from, to, expected) in [
        ("deploy/kubernetes/tachyon-master.yaml", "  replicas: 3\n", "  replicaz: 3\n", "validate against the Kubernetes schemas"),
        ("deploy/kubernetes/tachyon-worker.yaml", "medium: Memory", "medium: \"\"", "memory-backed emptyDir"),
        ("deploy/kubernetes/tachyon-master.yaml", "path: /readyz", "path: /healthz", "master readiness"),
        ("deploy/kubernetes/tachyon-master.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false", "publishes standbys"),
        ("Dockerfile", "USER 10001:10001", "USER root", "non-root user"),
        ("Dockerfile", "COPY --from=build /src/target/release/tachyon", "COPY target/release/tachyon", "copies only the built binary"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        mutated_copy(dir.path(), file, from, to);
        let out = run_checker(dir.path(), None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && stdout.contains(expected), "{file}: {from:?} -> {to:?} was not caught:\n{stdout}");
    }
}
