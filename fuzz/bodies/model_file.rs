// What the `model_file` target does with one input: shared by the fuzz target and by the
// test that replays the corpus (crates/mlp-train/tests/fuzz_corpus.rs), through `include!`.

/// The model file loader on `data`. Any result is fine; a panic is a bug.
pub fn fuzz_one(data: &[u8]) {
    let _ = mlp_train::model_file::model_from_bytes(data, std::path::Path::new("fuzz.msgpack"));
}
