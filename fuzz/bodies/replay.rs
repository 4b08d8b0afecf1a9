// Replaying a fuzz target's stored inputs as an ordinary test: included by the crates' tests
// (crates/*/tests/fuzz_corpus.rs), so that `cargo test` catches a regression without cargo-fuzz.

/// Where stored inputs come from: hand-made seeds (`fuzz/seeds`), what the fuzzer kept
/// (`fuzz/corpus`, minimised and committed) and any crash it wrote (`fuzz/artifacts`,
/// present only where a fuzzer ran).
const INPUT_KINDS: [&str; 3] = ["seeds", "corpus", "artifacts"];

/// Every stored input of the fuzz target `target` as (kind, path, bytes), in a fixed order.
fn fuzz_inputs(target: &str) -> Vec<(&'static str, std::path::PathBuf, Vec<u8>)> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut inputs = Vec::new();
    for kind in INPUT_KINDS {
        let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap();
            inputs.push((kind, path, bytes));
        }
    }
    inputs
}

/// Runs `fuzz_one` on every stored input of `target` and names every input that panicked.
/// At least `min_corpus` of them must come from the committed corpus, so that a moved or
/// emptied corpus fails rather than passes by replaying the seeds alone.
fn replay(target: &str, min_corpus: usize, fuzz_one: fn(&[u8])) {
    let inputs = fuzz_inputs(target);
    let from_corpus = inputs.iter().filter(|(kind, ..)| *kind == "corpus").count();
    assert!(
        from_corpus >= min_corpus,
        "{target}: {from_corpus} inputs in fuzz/corpus/{target}, expected at least {min_corpus}"
    );
    let panicked: Vec<_> = inputs
        .iter()
        .filter(|(_, _, bytes)| std::panic::catch_unwind(|| fuzz_one(bytes)).is_err())
        .map(|(_, path, _)| path.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "{target}: panicked on {panicked:#?}");
}
