//! The checkpoint loader.
#![no_main]

include!("../bodies/checkpoint.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_one(data));
