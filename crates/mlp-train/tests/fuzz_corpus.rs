//! The `model_file`, `checkpoint` and `safetensors` fuzz targets replayed over their stored inputs (seeds,
//! the committed corpus, any crash found), on stable Rust: `cargo test` catches a
//! regression there without cargo-fuzz. The targets' bodies and the replay are the fuzz
//! crate's own files.

mod model_file {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/bodies/model_file.rs"
    ));
}
mod safetensors {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/bodies/safetensors.rs"
    ));
}
mod checkpoint {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/bodies/checkpoint.rs"
    ));
}
include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fuzz/bodies/replay.rs"
));

#[test]
fn every_stored_model_file_fuzz_input_is_handled_without_a_panic() {
    replay("model_file", 1000, model_file::fuzz_one);
}

#[test]
fn every_stored_checkpoint_fuzz_input_is_handled_without_a_panic() {
    replay("checkpoint", 2000, checkpoint::fuzz_one);
}

#[test]
fn every_stored_safetensors_fuzz_input_is_handled_without_a_panic() {
    replay("safetensors", 500, safetensors::fuzz_one);
}
