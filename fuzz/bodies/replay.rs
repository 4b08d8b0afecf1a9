// Replaying a fuzz target's stored inputs as an ordinary test: included by the crates' tests
// (crates/*/tests/fuzz_corpus.rs), so that `cargo test` catches a regression without cargo-fuzz.

/// Every stored input of the fuzz target `target`: its hand-made seeds (`fuzz/seeds`), what
/// the fuzzer kept (`fuzz/corpus`, minimised and committed) and any crash it wrote
/// (`fuzz/artifacts`, present only where a fuzzer ran), in a fixed order.
fn fuzz_inputs(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs = Vec::new();
    for kind in ["seeds", "corpus", "artifacts"] {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            inputs.push((path, bytes));
        }
    }
    inputs
}

/// Runs `fuzz_one` on every stored input of `target` (at least `min` of them, so that a
/// moved corpus does not pass by replaying nothing) and names every input that panicked.
fn replay(target: &str, min: usize, fuzz_one: fn(&[u8])) {
    let inputs = fuzz_inputs(target);
    assert!(
        inputs.len() >= min,
        "{target}: {} stored inputs, expected at least {min}",
        inputs.len()
    );
    let panicked: Vec<_> = inputs
        .iter()
        .filter(|(_, bytes)| std::panic::catch_unwind(|| fuzz_one(bytes)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "{target}: panicked on {panicked:#?}");
}
