//! Helpers shared by the CLI tests: synthetic IDX data sets and running the `mlp` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Side of the synthetic square images (16 pixels), much smaller than Fashion-MNIST's 28.
pub const SIDE: usize = 4;

/// An IDX file's bytes: header for `dims`, then `payload`.
pub fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(payload);
    bytes
}

/// `n` learnable examples: image of class c has pixel c lit (plus faint noise).
pub fn examples(n: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
    let mut pixels = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    for i in 0..n {
        let class = (i * 7 + seed as usize) % 10;
        labels.push(class as u8);
        for p in 0..SIDE * SIDE {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            pixels.push(if p == class {
                200 + (state % 56) as u8
            } else {
                (state % 40) as u8
            });
        }
    }
    (pixels, labels)
}

/// Writes a Fashion-MNIST-style folder of synthetic raw IDX files and returns its path.
pub fn write_dataset(root: &Path, train: usize, test: usize) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let s = SIDE as u32;
    for (prefix, n, seed) in [("train", train, 1), ("t10k", test, 2)] {
        let (pixels, labels) = examples(n, seed);
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx(&[n as u32, s, s], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(&[n as u32], &labels),
        )
        .unwrap();
    }
    dir
}

/// The real Fashion-MNIST folder ($FMNIST_DIR, or the workspace's data/fashion-mnist), if
/// it holds the four files; tests that need the data report themselves skipped otherwise.
pub fn real_data_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FMNIST_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist")),
    ];
    candidates.into_iter().flatten().find(|d| {
        fmnist_data::FILES
            .iter()
            .all(|f| d.join(f.name).is_file() || d.join(f.raw_name).is_file())
    })
}

/// What a test prints when it cannot run without the real data.
pub const SKIPPED_NO_DATA: &str =
    "skipped: Fashion-MNIST not found (run `cargo xtask fetch-data` or set FMNIST_DIR)";

/// Runs `mlp` with `args`.
pub fn mlp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `mlp` with `args` on the SIMD level `level` (`MLP_SIMD`).
pub fn mlp_on(level: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .env("MLP_SIMD", level)
        .output()
        .unwrap()
}

/// Arguments for a quick training run on synthetic data.
pub fn quick_train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data-dir",
        data,
        "--allow-unverified",
        "--epochs",
        "5",
        "--hidden",
        "16",
        "--batch-size",
        "4",
        "--val-size",
        "40",
        "--lr",
        "0.1",
        "--out",
        out,
    ]
}

/// Arguments for a run long enough to be interrupted: `epochs` epochs of small batches on
/// synthetic data (the same settings whatever the epoch count, so runs compare exactly).
pub fn slow_train_args<'a>(data: &'a str, out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data-dir",
        data,
        "--allow-unverified",
        "--epochs",
        epochs,
        "--hidden",
        "16",
        "--batch-size",
        "8",
        "--val-size",
        "200",
        "--lr",
        "0.05",
        "--quiet",
        "--out",
        out,
    ]
}

/// A search of two trials slow enough to interrupt (16 hidden units, batches of 8, two
/// workers), into `out`.
pub fn slow_search_args(data: &str, out: &str, epochs: &str) -> Vec<String> {
    [
        "search",
        "--data-dir",
        data,
        "--allow-unverified",
        "--lr",
        "0.05,0.1",
        "--hidden",
        "16",
        "--l2",
        "0",
        "--batch-size",
        "8",
        "--epochs",
        epochs,
        "--val-size",
        "200",
        "--jobs",
        "2",
        "--out",
        out,
    ]
    .map(String::from)
    .to_vec()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A search folder's results.json without each row's `seconds` (wall time, which differs
/// between any two runs): what two searches that trained the same compare equal on.
pub fn search_results(dir: &Path) -> Vec<serde_json::Value> {
    let mut rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    for row in &mut rows {
        row.as_object_mut().unwrap().remove("seconds");
    }
    rows
}

/// A Python that can import `modules` (e.g. `"onnx, onnxruntime"`): the interpreter
/// `MLP_TEST_PYTHON` names, else `.venv/bin/python` at the repository's root (the virtual
/// environment `.ci/run` makes). None, and the caller reports itself skipped, when there is
/// none, unless `MLP_REQUIRE_PYTHON` is set (as `.ci/run` sets it): then that is a failure.
pub fn python_with(modules: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os("MLP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"));
    let works = Command::new(&candidate)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    match (works, std::env::var_os("MLP_REQUIRE_PYTHON")) {
        (true, _) => Some(candidate),
        (false, Some(_)) => panic!(
            "MLP_REQUIRE_PYTHON is set but {} cannot import {modules}",
            candidate.display()
        ),
        (false, None) => {
            eprintln!("skipped: no Python that can import {modules} (see .ci/run)");
            None
        }
    }
}

/// Little-endian f32 bytes, as the Python test scripts read them.
pub fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

/// Little-endian f32 values, as the Python test scripts write them.
pub fn read_f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// Our probabilities for the rows of `x`: the reference forward pass, then softmax.
pub fn probabilities(model: &mlp_core::Mlp, x: &ndarray::Array2<f32>) -> ndarray::Array2<f32> {
    let mut ws = mlp_core::Workspace::new(model.shape(), x.nrows());
    let mut p = model.logits(x.view(), &mut ws).to_owned();
    mlp_core::loss::softmax_cross_entropy(p.view_mut(), &vec![0; x.nrows()]);
    p
}
