//! Runs the bodies of the fuzz targets (`journal_replay`, `rpc_requests`) over their
//! corpora and deterministic mutations of valid inputs, so the targets cannot rot between
//! fuzzing sessions.

use std::path::Path;

use tachyon::core::namespace::Namespace;
use tachyon::core::path::FsPath;
use tachyon::core::requests::plan_untrusted_request;
use tachyon::error::FsError;
use tachyon::journal::format::{encode_checkpoint, encode_entry, segment_header};
use tachyon::journal::{load_untrusted_checkpoint, replay_untrusted_segment};
use tachyon::proto::InodeOwnership;

fn corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/journal_replay")
}

/// A valid segment and checkpoint from a small history.
fn valid_files() -> (Vec<u8>, Vec<u8>) {
    let mut ns = Namespace::new();
    let own = InodeOwnership { owner: "u".into(), group: "g".into(), mode: 0o644 };
    let p = |s: &str| FsPath::parse(s).unwrap();
    let mut bytes = segment_header();
    let mut ops = vec![ns.plan_create_directory(&p("/a/b"), true, false, &own, 1).unwrap()];
    for kinds in ops.drain(..) {
        for e in ns.apply_operation(kinds, 1).entries {
            encode_entry(&e, &mut bytes);
        }
    }
    let kinds = ns.plan_create_file(&p("/a/f"), 4, false, &own, 2).unwrap();
    for e in ns.apply_operation(kinds, 1).entries {
        encode_entry(&e, &mut bytes);
    }
    let kinds = ns.plan_rename(&p("/a/b"), &p("/c"), 3).unwrap();
    for e in ns.apply_operation(kinds, 2).entries {
        encode_entry(&e, &mut bytes);
    }
    (bytes, encode_checkpoint(&ns.to_checkpoint()))
}

fn run(data: &[u8]) {
    let _ = replay_untrusted_segment(data);
    let _ = load_untrusted_checkpoint(data);
}

#[test]
fn valid_files_replay() {
    let (seg, cp) = valid_files();
    let ns = replay_untrusted_segment(&seg).unwrap();
    assert!(ns.lookup(&FsPath::parse("/c").unwrap()).is_ok());
    assert_eq!(load_untrusted_checkpoint(&cp).unwrap(), ns);
}

#[test]
fn corpus_files_never_panic() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        run(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 3, "the corpus has its seed files");
}

/// Calls `each` with `count` deterministic mutations of `base` (bit flips, cuts, byte
/// changes, insertions).
fn mutations(base: &[u8], count: usize, mut each: impl FnMut(&[u8])) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..count {
        let mut m = base.to_vec();
        match next() % 4 {
            0 => {
                let i = (next() as usize) % m.len();
                m[i] ^= 1 << (next() % 8);
            }
            1 => m.truncate((next() as usize) % m.len()),
            2 => {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            _ => {
                let i = (next() as usize) % m.len();
                let extra: Vec<u8> = (0..(next() % 16)).map(|_| next() as u8).collect();
                m.splice(i..i, extra);
            }
        }
        each(&m);
    }
}

#[test]
fn mutations_of_valid_files_never_panic() {
    let (seg, cp) = valid_files();
    for base in [&seg, &cp] {
        mutations(base, 3000, run);
    }
}

fn rpc_corpus_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/rpc_requests")
}

/// Valid requests of every kind the `rpc_requests` target decodes (selector byte + body).
fn valid_requests() -> Vec<(&'static str, Vec<u8>)> {
    use prost::Message;
    use tachyon::proto::{CreateDirectoryRequest, CreateFileRequest, DeleteRequest, ListStatusRequest, PathRequest, RenameRequest, SetAttributeRequest};
    let with = |selector: u8, body: Vec<u8>| {
        let mut v = vec![selector];
        v.extend(body);
        v
    };
    vec![
        (
            "create-file",
            with(0, CreateFileRequest { path: "/home/alice/f".into(), block_size_bytes: 1 << 20, recursive: true, ..Default::default() }.encode_to_vec()),
        ),
        ("mkdir-p", with(1, CreateDirectoryRequest { path: "/home/alice/a/b/c".into(), recursive: true, ..Default::default() }.encode_to_vec())),
        ("delete-sticky", with(2, DeleteRequest { path: "/tmp/bobs".into(), recursive: false, ..Default::default() }.encode_to_vec())),
        ("delete-r-root", with(0x82, DeleteRequest { path: "/deep".into(), recursive: true, ..Default::default() }.encode_to_vec())),
        ("rename-own", with(3, RenameRequest { src: "/home/alice".into(), dst: "/tmp/moved".into(), ..Default::default() }.encode_to_vec())),
        ("rename-sticky", with(3, RenameRequest { src: "/tmp/bobs".into(), dst: "/home/alice/stolen".into(), ..Default::default() }.encode_to_vec())),
        ("chmod-r", with(4, SetAttributeRequest { path: "/deep".into(), mode: Some(0o1777), recursive: true, ..Default::default() }.encode_to_vec())),
        (
            "chown-root",
            with(
                0x84,
                SetAttributeRequest { path: "/tmp/bobs".into(), owner: Some("alice".into()), group: Some("staff".into()), ..Default::default() }
                    .encode_to_vec(),
            ),
        ),
        ("pin-ttl", with(4, SetAttributeRequest { path: "/home/alice".into(), pinned: Some(true), ttl_ms: Some(5), ..Default::default() }.encode_to_vec())),
        ("list-r", with(5, ListStatusRequest { path: "/deep".into(), recursive: true, limit: 3, ..Default::default() }.encode_to_vec())),
        ("status", with(6, PathRequest { path: "/home/bob/notes".into() }.encode_to_vec())),
    ]
}

#[test]
fn valid_requests_are_planned_or_refused() {
    let outcomes: Vec<_> = valid_requests().into_iter().map(|(name, r)| (name, plan_untrusted_request(&r))).collect();
    for (name, outcome) in &outcomes {
        match *name {
            "create-file" | "mkdir-p" | "delete-r-root" | "chmod-r" | "chown-root" | "pin-ttl" | "rename-own" => {
                assert!(matches!(outcome, Ok(n) if *n > 0), "{name}: {outcome:?}")
            }
            "delete-sticky" | "rename-sticky" | "status" => assert!(matches!(outcome, Err(FsError::PermissionDenied { .. })), "{name}: {outcome:?}"),
            _ => assert!(outcome.is_ok(), "{name}: {outcome:?}"),
        }
    }
}

#[test]
fn rpc_corpus_files_and_mutations_never_panic() {
    let mut n = 0;
    for entry in std::fs::read_dir(rpc_corpus_dir()).unwrap() {
        let _ = plan_untrusted_request(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= valid_requests().len(), "the corpus has its seed files");
    for (_, request) in valid_requests() {
        mutations(&request, 1000, |m| {
            let _ = plan_untrusted_request(m);
        });
    }
}

/// Regenerates the seed corpus: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let (seg, cp) = valid_files();
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("segment"), &seg).unwrap();
    std::fs::write(dir.join("segment-torn"), &seg[..seg.len() - 5]).unwrap();
    std::fs::write(dir.join("checkpoint"), &cp).unwrap();
    std::fs::write(dir.join("header-only"), segment_header()).unwrap();
    std::fs::create_dir_all(rpc_corpus_dir()).unwrap();
    for (name, request) in valid_requests() {
        std::fs::write(rpc_corpus_dir().join(name), request).unwrap();
    }
}
