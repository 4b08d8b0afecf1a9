//! Helpers for the report tests: the real binaries, and synthetic or real data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

// ---------------------------------------------------------------------------------------
// Running the binaries

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `mlp` binary of this workspace, built (or found up to date) by cargo.
///
/// Built with the selection `cargo test --workspace` builds (every package, its tests and so
/// its dev-dependencies), so that under README's test command this finds the binary that
/// command already built. `--package mlp-cli` alone resolves other features (matrixmultiply
/// without xtask's `avx512`, once_cell without ureq's `default`) and rebuilt ndarray,
/// mlp-core, mlp-train and mlp-cli in the middle of the test run: 8.5 of CI's minutes on a
/// slow host.
pub fn mlp_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--workspace", "--bins", "--tests"])
        .current_dir(workspace())
        .status()
        .unwrap();
    assert!(status.success(), "building mlp failed");
    // This test runs from <target>/debug/deps/; mlp is in <target>/debug/.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("mlp")
}

pub fn run(program: &Path, args: &[&str]) -> Output {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `xtask` with `args` and asserts that it succeeds.
pub fn xtask_ok(args: &[&str]) -> Output {
    let out = xtask(args);
    assert!(
        out.status.success(),
        "xtask {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------
// Data

/// A Fashion-MNIST-style folder of `n_train`/`n_test` 4×4 images: class c has pixel c lit.
pub fn synthetic_data(root: &Path, n_train: usize, n_test: usize) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    for (prefix, n, seed) in [("train", n_train, 1u32), ("t10k", n_test, 2)] {
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
        let (mut pixels, mut labels) = (Vec::new(), Vec::new());
        for i in 0..n {
            let class = (i * 7 + seed as usize) % 10;
            labels.push(class as u8);
            for p in 0..16 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state % 90) as u8;
                pixels.push(if p == class { 150 + noise } else { noise });
            }
        }
        let idx = |dims: &[u32], payload: &[u8]| {
            let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
            dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
            bytes.extend(payload);
            bytes
        };
        let n = n as u32;
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx(&[n, 4, 4], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(&[n], &labels),
        )
        .unwrap();
    }
    dir
}

pub fn real_data_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FMNIST_DIR").map(PathBuf::from),
        Some(workspace().join("data/fashion-mnist")),
    ];
    candidates.into_iter().flatten().find(|d| {
        fmnist_data::FILES
            .iter()
            .all(|f| d.join(f.name).is_file() || d.join(f.raw_name).is_file())
    })
}
