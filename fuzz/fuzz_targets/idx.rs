//! The IDX parser, on bytes and on files (raw and through the gzip detector).
#![no_main]

include!("../bodies/idx.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_one(data));
