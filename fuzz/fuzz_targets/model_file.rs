//! The model file loader.
#![no_main]

include!("../bodies/model_file.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_one(data));
