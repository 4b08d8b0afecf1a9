//! The IDX parser, on bytes and on files (raw and through the gzip detector).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fmnist_data::parse_idx(data);
    let path = std::env::temp_dir().join(format!("fuzz-idx-{}", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        for rank in 1..=3 {
            let _ = fmnist_data::read_idx_file(&path, rank);
        }
    }
});
