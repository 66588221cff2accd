//! The README and the configuration templates tell the truth: every configuration key and
//! environment variable they name exists, every command they show resolves (scripts and
//! their modes, `tachyon` subcommands and their flags, cargo features and test targets,
//! the Kubernetes folder and Services), and every section or link they point at exists.

mod common;

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const DOCS: &[&str] = &["README.md", "conf/tachyon-env.sh.template", "conf/tachyon-site.properties.template"];

/// Configuration keys named in `text`: `tachyon.x.y`, `alluxio.x`, `s3a.x`, `aws.x`,
/// `fs.x` (a trailing `*` is a family of keys), not parts of paths or file names.
fn named_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let bytes = text.as_bytes();
    for prefix in ["tachyon.", "alluxio.", "s3a.", "aws.", "fs."] {
        let mut from = 0;
        while let Some(i) = text[from..].find(prefix).map(|i| i + from) {
            from = i + prefix.len();
            let before = if i == 0 { b' ' } else { bytes[i - 1] };
            if before.is_ascii_alphanumeric() || b"/_.-".contains(&before) {
                continue;
            }
            let end = text[i..].find(|c: char| !(c.is_ascii_alphanumeric() || "._-*".contains(c))).map_or(text.len(), |e| e + i);
            let key = text[i..end].trim_end_matches('.');
            if key.len() > prefix.len() {
                keys.push(key.to_string());
            }
        }
    }
    keys
}

#[test]
fn every_key_the_docs_name_exists() {
    for doc in DOCS {
        let keys = named_keys(&read(doc));
        assert!(keys.len() > 10 || !doc.ends_with(".md"), "{doc}: too few keys found ({keys:?}): is the scanner broken?");
        for key in keys {
            let ok = match key.strip_suffix('*') {
                Some(prefix) => {
                    tachyon::config::KEYS.iter().any(|k| k.name.starts_with(&tachyon::config::canonical_key(prefix)))
                        || ["tachyon.", "alluxio.", "s3a."].contains(&prefix)
                }
                None => tachyon::config::is_accepted_key(&key),
            };
            assert!(ok, "{doc} names the configuration key {key}, which tachyon does not know");
        }
    }
}

#[test]
fn every_environment_variable_the_docs_name_is_read_somewhere() {
    let mut code = String::new();
    for dir in ["bin", "src", "conf"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() && !path.to_string_lossy().ends_with(".template") {
                code.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    for dir in ["src/config.rs", "src/client/mod.rs"] {
        code.push_str(&read(dir));
    }
    for doc in DOCS {
        let text = read(doc);
        for (i, _) in text.match_indices("TACHYON_").chain(text.match_indices("ALLUXIO_")) {
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            if name.ends_with('_') {
                continue; // a family, e.g. ALLUXIO_*
            }
            // Per-role variables are spelled once with the role filled in (TACHYON_{r}_JAVA_OPTS).
            let per_role = ["MASTER_", "WORKER_", "USER_"].iter().any(|r| name.contains(&format!("_{r}JAVA_OPTS")) && code.contains("_{r}_JAVA_OPTS"));
            assert!(code.contains(&name) || per_role, "{doc} names {name}, which neither bin/ nor src/ reads");
        }
    }
}

/// The commands of the README: lines of its `sh` blocks and inline code that starts with
/// `bin/`, with line continuations joined, comments cut and `&&` chains split.
fn readme_commands() -> Vec<String> {
    let readme = read("README.md");
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if in_sh {
            let line = match line.find(" #") {
                Some(i) => &line[..i],
                None => line,
            };
            if let Some(cont) = line.trim_end().strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            commands.extend(std::mem::take(&mut pending).split("&&").map(|c| c.trim().to_string()).filter(|c| !c.is_empty()));
        } else {
            for (n, span) in line.split('`').enumerate() {
                if n % 2 == 1 && span.starts_with("bin/") && !span.ends_with('/') {
                    commands.push(span.to_string());
                }
            }
        }
    }
    commands
}

/// `[a\|b]` and `a|b` in a usage: the alternatives, brackets and escapes removed.
fn alternatives(token: &str) -> Vec<String> {
    token
        .replace("\\|", "|")
        .trim_matches(|c| c == '[' || c == ']')
        .split('|')
        .map(|s| s.trim_matches(|c| c == '[' || c == ']').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// True if `script` has a `case` label for `mode`.
fn script_has_mode(script: &str, mode: &str) -> bool {
    let text = read(script);
    text.lines().any(|l| {
        let l = l.trim_start();
        let label = l.split(')').next().unwrap_or("");
        l.contains(')') && !label.contains(' ') && label.split('|').any(|m| m == mode)
    })
}

fn check_tachyon_command(command: &str, args: &[&str]) {
    let args: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with("-D")).collect();
    if args.first() == Some(&"copyDir") {
        assert!(read("bin/tachyon").contains("\"${1:-}\" == copyDir"), "{command}: bin/tachyon has no copyDir");
        return;
    }
    // Subcommand words come first; then options, placeholders and paths.
    let words: Vec<&str> =
        args.iter().copied().take_while(|a| a.chars().next().is_some_and(|c| c.is_ascii_lowercase()) && !a.contains('/') && !a.contains('.')).collect();
    let flags: Vec<String> =
        args.iter().flat_map(|a| alternatives(a)).filter(|a| a.starts_with("--")).map(|a| a.split('=').next().unwrap().to_string()).collect();
    let (parents, last) = words.split_at(words.len().saturating_sub(1));
    let lasts = last.first().map(|l| alternatives(l)).unwrap_or_else(|| vec![String::new()]);
    for sub in lasts {
        let mut full: Vec<&str> = parents.to_vec();
        if !sub.is_empty() {
            full.push(&sub);
        }
        let out = Command::new(common::tachyon_bin()).args(&full).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command}: `tachyon {}` is not a command", full.join(" "));
        for flag in &flags {
            if full.len() == words.len() || words.len() <= 1 {
                assert!(help.contains(flag.as_str()), "{command}: `tachyon {}` has no {flag}:\n{help}", full.join(" "));
            }
        }
    }
}

#[test]
fn every_readme_command_resolves() {
    let commands = readme_commands();
    assert!(commands.len() > 40, "only {} commands found: is the scanner broken?", commands.len());
    let cargo_toml = read("Cargo.toml");
    for command in &commands {
        let mut tokens: Vec<&str> = command.split_whitespace().collect();
        while tokens.first().is_some_and(|t| t.contains('=') && t.chars().next().is_some_and(|c| c.is_ascii_uppercase())) {
            tokens.remove(0); // VAR=value before a command
        }
        let Some((&program, args)) = tokens.split_first() else { continue };
        match program {
            "bin/tachyon" => check_tachyon_command(command, args),
            "bin/tachyon-start.sh" | "bin/tachyon-stop.sh" | "bin/tachyon-cluster" => {
                let script = program;
                for arg in args {
                    if arg.starts_with("--") {
                        assert!(read(script).contains(arg), "{command}: {script} has no {arg}");
                    } else if arg.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '[') {
                        for mode in alternatives(arg) {
                            assert!(script_has_mode(script, &mode), "{command}: {script} has no mode {mode}");
                        }
                    }
                }
            }
            "bin/test-all.sh" | "bin/install-test-services.sh" => {
                let meta = std::fs::metadata(root().join(program)).unwrap();
                assert!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0, "{program} is not executable");
            }
            "cargo" => {
                if args.first() == Some(&"sim") {
                    assert!(read(".cargo/config.toml").contains("\nsim = "), "{command}: no cargo alias sim");
                }
                for (i, arg) in args.iter().enumerate() {
                    if *arg == "--features" {
                        for feature in args[i + 1].split(',') {
                            assert!(cargo_toml.contains(&format!("\n{feature} = ")), "{command}: no cargo feature {feature}");
                        }
                    }
                    if *arg == "--test" {
                        let target = args[i + 1];
                        assert!(root().join(format!("tests/{target}.rs")).exists(), "{command}: no test target {target}");
                    }
                }
            }
            "docker" => assert!(root().join("Dockerfile").exists(), "{command}: no Dockerfile"),
            // Ordinary programs the application examples run against a mount.
            "mkdir" | "cp" | "ls" | "tar" | "python3" => {}
            // The AWS CLI against the gateway, on its default port.
            "aws" => {
                let port = tachyon::config::KEYS.iter().find(|k| k.name == tachyon::config::PROXY_PORT).map(|k| k.default).unwrap_or_default();
                assert!(
                    args.first() == Some(&"--endpoint-url") && args.get(1).is_some_and(|u| u.ends_with(&format!(":{port}"))),
                    "{command}: not the gateway's default endpoint"
                );
            }
            "kubectl" => match args {
                ["apply", "-k", dir] => assert!(root().join(dir).join("kustomization.yaml").exists(), "{command}: no kustomization"),
                ["port-forward", svc, ..] => {
                    let name = svc.trim_start_matches("svc/");
                    let manifests: String =
                        std::fs::read_dir(root().join("deploy/kubernetes")).unwrap().map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect();
                    assert!(manifests.contains(&format!("kind: Service\nmetadata:\n  name: {name}\n")), "{command}: no Service {name}");
                }
                _ => panic!("{command}: a kubectl command this test does not know how to check"),
            },
            other => panic!("README command `{command}`: this test does not know how to check `{other}` commands; teach it"),
        }
    }
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn headings(markdown: &str) -> Vec<String> {
    markdown.lines().filter_map(|l| l.strip_prefix('#')).map(|l| l.trim_start_matches('#').trim().to_string()).collect()
}

#[test]
fn every_section_and_link_the_docs_point_at_exists() {
    let readme = read("README.md");
    let readme_headings = headings(&readme);
    // The templates name README sections in quotes.
    for doc in &DOCS[1..] {
        for line in read(doc).lines().filter(|l| l.starts_with('#')) {
            for (n, quoted) in line.split('"').enumerate() {
                if n % 2 == 1 && quoted.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                    assert!(readme_headings.iter().any(|h| h == quoted), "{doc} names the README section {quoted:?}, which does not exist");
                }
            }
        }
    }
    // Relative links of the README: the file exists, and so does the anchor.
    let mut links = 0;
    for (i, _) in readme.match_indices("](") {
        let target = &readme[i + 2..readme[i..].find(')').map_or(readme.len(), |e| e + i)];
        if target.starts_with("http") {
            continue;
        }
        links += 1;
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let file = if file.is_empty() { "README.md" } else { file };
        assert!(root().join(file).exists(), "README links to {file}, which does not exist");
        if !anchor.is_empty() {
            let slugs: Vec<String> = headings(&read(file)).iter().map(|h| slug(h)).collect();
            assert!(slugs.iter().any(|s| s == anchor), "README links to {file}#{anchor}; headings there: {slugs:?}");
        }
    }
    assert!(links >= 3, "{links} links found: is the scanner broken?");
}

/// Seed 003's EC2 scripts are not shipped: running them says what replaces them, and the
/// replacements it names exist.
#[test]
fn seed_003s_ec2_scripts_point_at_their_replacements() {
    for script in ["deploy/vagrant/create", "deploy/vagrant/destroy"] {
        let out = Command::new(root().join(script)).args(["3", "aws"]).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{script}: {said}");
        for replacement in ["bin/tachyon-cluster create --masters 3 --workers 2", "bin/tachyon-start.sh all", "kubectl apply -k deploy/kubernetes"] {
            assert!(said.contains(replacement), "{script} does not name {replacement}: {said}");
        }
    }
    assert!(script_has_mode("bin/tachyon-cluster", "create") && read("bin/tachyon-cluster").contains("--masters"));
    assert!(root().join("deploy/kubernetes/kustomization.yaml").exists());
}
