//! The safetensors model reader, in our layout and PyTorch's.
#![no_main]

include!("../bodies/safetensors.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_one(data));
