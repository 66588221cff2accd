//! Feeds arbitrary bytes to journal replay, as a log segment and as a checkpoint:
//! replay must return an error or a consistent namespace, never panic or hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tachyon::journal::replay_untrusted_segment(data);
    let _ = tachyon::journal::load_untrusted_checkpoint(data);
});
