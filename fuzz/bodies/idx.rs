// What the `idx` target does with one input: shared by the fuzz target and by the test
// that replays the corpus (crates/fmnist-data/tests/fuzz_corpus.rs), through `include!`.

/// The IDX parser on `data` as bytes, then as a file (raw, and through the gzip detector)
/// for ranks 1–3. Any result is fine; a panic, a hang or a huge allocation is a bug.
pub fn fuzz_one(data: &[u8]) {
    let _ = fmnist_data::parse_idx(data);
    let path = std::env::temp_dir().join(format!("fuzz-idx-{}", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        for rank in 1..=3 {
            let _ = fmnist_data::read_idx_file(&path, rank);
        }
    }
    let _ = std::fs::remove_file(&path);
}
