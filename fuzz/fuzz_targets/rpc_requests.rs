//! Feeds arbitrary bytes to the master's request path as the RPC layer decodes it (a
//! selector byte, then a protobuf request) and on through the permission checks and
//! planners: every input is planned and applied cleanly or refused, never a panic, and an
//! accepted request never breaks the namespace's invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = tachyon::core::requests::plan_untrusted_request(data);
});
