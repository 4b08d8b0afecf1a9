//! The checkpoint loader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mlp_train::checkpoint::checkpoint_from_bytes(data, std::path::Path::new("fuzz.msgpack"));
});
