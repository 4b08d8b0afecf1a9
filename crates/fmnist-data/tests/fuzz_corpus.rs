//! The `idx` fuzz target replayed over its stored inputs (seeds, the committed corpus, any
//! crash found), on stable Rust: `cargo test` catches a regression there without
//! cargo-fuzz. The target's body and the replay are the fuzz crate's own files.

mod idx {
    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../fuzz/bodies/idx.rs"
    ));
}
include!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fuzz/bodies/replay.rs"
));

#[test]
fn every_stored_idx_fuzz_input_is_handled_without_a_panic() {
    replay("idx", 500, idx::fuzz_one);
}
