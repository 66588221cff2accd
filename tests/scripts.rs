//! The README's quick start, through the real `bin/` scripts: start a local cluster, copy
//! a file in, list, read, runTests, stop, start again, and the file is still there.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn script(home: &Path, name: &str, args: &[&str], java_opts: &str) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new(root.join("bin").join(name))
        .args(args)
        .env("TACHYON_HOME", home)
        .env("TACHYON_BIN", common::tachyon_bin())
        .env("TACHYON_RAM_FOLDER", home.join("ram"))
        .env("TACHYON_WORKER_MEMORY_SIZE", "128MB")
        .env("TACHYON_JAVA_OPTS", java_opts)
        .env_remove("TACHYON_CONF_DIR")
        .output()
        .unwrap()
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{what} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn readme_quick_start_through_the_scripts() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let opts = format!(
        "-Dtachyon.master.port={} -Dtachyon.master.web.port={} -Dtachyon.worker.port={} -Dtachyon.worker.data.port={} -Dtachyon.worker.web.port={}",
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port()
    );
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = readme.to_str().unwrap();
    let started = ok(script(h, "tachyon-start.sh", &["local"], &opts), "start local");
    assert!(started.contains("Live workers: 1"), "{started}");
    assert!(h.join("journal/FORMAT").exists(), "local start formats a new journal");
    ok(script(h, "tachyon", &["fs", "copyFromLocal", readme, "/docs/README.md"], &opts), "copyFromLocal");
    assert!(ok(script(h, "tachyon", &["fs", "ls", "/docs"], &opts), "ls").contains("/docs/README.md"));
    let original = std::fs::read(readme).unwrap();
    assert_eq!(script(h, "tachyon", &["fs", "cat", "/docs/README.md"], &opts).stdout, original);
    assert!(ok(script(h, "tachyon", &["runTests"], &opts), "runTests").contains("4 passed, 0 failed"));
    let stopped = ok(script(h, "tachyon-stop.sh", &[], &opts), "stop");
    assert!(stopped.contains("Stopped master") && !stopped.contains("killing"), "graceful stop: {stopped}");
    ok(script(h, "tachyon-start.sh", &["local"], &opts), "second start");
    assert_eq!(script(h, "tachyon", &["fs", "cat", "/docs/README.md"], &opts).stdout, original);
    ok(script(h, "tachyon-stop.sh", &[], &opts), "final stop");
    assert!(std::fs::read_dir(h.join("run")).unwrap().next().is_none(), "pid files removed");
}
