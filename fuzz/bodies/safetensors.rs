// What the `safetensors` target does with one input: shared by the fuzz target and by the
// test that replays the corpus (crates/mlp-train/tests/fuzz_corpus.rs), through `include!`.

/// The safetensors model reader (both layouts) on `data`, with and without an activation
/// given. Any result is fine; a panic is a bug.
pub fn fuzz_one(data: &[u8]) {
    let path = std::path::Path::new("fuzz.safetensors");
    let _ = mlp_train::model_from_safetensors(data, path, None);
    let _ = mlp_train::model_from_safetensors(data, path, Some(mlp_core::Activation::Relu));
}
