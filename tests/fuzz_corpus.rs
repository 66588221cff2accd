//! Runs the `journal_replay` fuzz target's body over its corpus and deterministic
//! mutations of valid journal files, so the target cannot rot between fuzzing sessions.

use std::path::Path;

use tachyon::core::namespace::Namespace;
use tachyon::core::path::FsPath;
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

#[test]
fn mutations_of_valid_files_never_panic() {
    let (seg, cp) = valid_files();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for base in [&seg, &cp] {
        for _ in 0..3000 {
            let mut m = base.clone();
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
            run(&m);
        }
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
}
