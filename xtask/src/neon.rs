//! `cargo xtask neon`: the NEON level, which no x86-64 CPU has, run on this one under
//! emulation (qemu-user), so that it is code a test has run and not only compiled.
//!
//! Two checks, each a failure if it fails: mlp-core's tests built for aarch64 (every kernel
//! on every level that CPU has, `neon` and `scalar`, against the plain loops that define it,
//! bit for bit), then `mlp train` for a few epochs at the NEON level, whose model file must
//! be byte for byte the one this machine's own best level trains. qemu computes each
//! instruction's IEEE result in software (a fused multiply-add rounded once, as the
//! hardware does), so agreement here is the agreement of the arithmetic, if not of a real
//! core's speed.
//!
//! What it needs (Debian/Ubuntu): `apt-get install qemu-user gcc-aarch64-linux-gnu
//! libc6-dev-arm64-cross` and `rustup target add aarch64-unknown-linux-gnu`. The cross
//! linker and qemu as the runner are given to its own cargo commands only (in the
//! environment): in `.cargo/config.toml` they would apply on a real aarch64 machine too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};

/// The target the NEON level is built for.
pub const TARGET: &str = "aarch64-unknown-linux-gnu";

/// qemu-user and the root of Debian's aarch64 libraries (`-L`).
const QEMU: [&str; 3] = ["qemu-aarch64", "-L", SYSROOT];
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// Debian's cross linker.
const LINKER: &str = "aarch64-linux-gnu-gcc";

/// What `cargo xtask neon` runs.
pub struct NeonOptions<'a> {
    /// Epochs of the training run compared (50 is the default recipe's).
    pub epochs: usize,
    /// Folder with the Fashion-MNIST files.
    pub data_dir: &'a Path,
    /// Skip mlp-core's tests (about 4 minutes under emulation), only train and compare.
    pub skip_tests: bool,
    /// More options for both runs (`--optimizer adam`, say).
    pub train_args: &'a [String],
}

/// Runs both checks from the workspace `root`; fails on the first that does not pass, or
/// naming what to install when a tool is missing.
pub fn run(root: &Path, opts: &NeonOptions) -> anyhow::Result<()> {
    check_tools()?;
    let cargo_command = || {
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo
            .current_dir(root)
            .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", LINKER)
            .env(
                "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
                QEMU.join(" "),
            );
        cargo
    };
    if !opts.skip_tests {
        println!("mlp-core's tests on {TARGET}, under qemu (neon and scalar levels):");
        let status = cargo_command()
            .args(["test", "--target", TARGET, "-p", "mlp-core", "--lib"])
            .status()
            .context("running cargo test")?;
        if !status.success() {
            bail!("mlp-core's tests failed on {TARGET} ({status})");
        }
    }
    for target in [None, Some(TARGET)] {
        let mut build = cargo_command();
        build.args(["build", "--quiet", "--release", "-p", "mlp-cli"]);
        if let Some(target) = target {
            build.args(["--target", target]);
        }
        let status = build.status().context("running cargo build")?;
        if !status.success() {
            bail!(
                "building mlp for {} failed ({status})",
                target.unwrap_or("this machine")
            );
        }
    }
    let target_dir = target_directory(cargo_command())?;
    let out = target_dir.join("xtask-neon");
    let host = train(
        Command::new(target_dir.join("release/mlp")),
        &out.join("host"),
        opts,
    )?;
    let mut emulated = Command::new(QEMU[0]);
    emulated
        .args(&QEMU[1..])
        .arg(target_dir.join(format!("{TARGET}/release/mlp")))
        .env("MLP_SIMD", "neon");
    let neon = train(emulated, &out.join("neon"), opts)?;
    let (a, b) = (read(&host.0)?, read(&neon.0)?);
    println!(
        "{} epoch(s): this machine {:.1} s, neon under qemu {:.1} s",
        opts.epochs, host.1, neon.1
    );
    if a != b {
        bail!(
            "the NEON level trained another model: {} and {} differ",
            host.0.display(),
            neon.0.display()
        );
    }
    println!(
        "same model bytes ({} bytes): {} and {}",
        a.len(),
        host.0.display(),
        neon.0.display()
    );
    Ok(())
}

/// Fails, naming what to install, unless qemu-user, the cross linker and Rust's aarch64
/// standard library are here.
fn check_tools() -> anyhow::Result<()> {
    let runs = |program: &str| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let debian = runs(QEMU[0]) && runs(LINKER) && Path::new(SYSROOT).join("lib").is_dir();
    let missing = missing_tools(debian, &installed);
    if !missing.is_empty() {
        bail!("the NEON level needs: {}", missing.join("; "));
    }
    Ok(())
}

/// The commands that install what is missing, given whether qemu, the cross linker and the
/// aarch64 libraries are here and what `rustup target list --installed` printed.
fn missing_tools(emulator_and_linker: bool, installed_targets: &str) -> Vec<String> {
    let mut missing = Vec::new();
    if !emulator_and_linker {
        missing.push(
            "apt-get install qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross".to_owned(),
        );
    }
    if !installed_targets.lines().any(|l| l.trim() == TARGET) {
        missing.push(format!("rustup target add {TARGET}"));
    }
    missing
}

/// Where cargo builds (`cargo metadata`'s `target_directory`: `CARGO_TARGET_DIR` and
/// `build.target-dir` included).
fn target_directory(mut cargo: Command) -> anyhow::Result<PathBuf> {
    let output = cargo
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed ({})", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")?;
    match metadata["target_directory"].as_str() {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => bail!("cargo metadata named no target directory"),
    }
}

/// `mlp train --epochs … --out dir` through `command` (the binary, or qemu and the binary),
/// its progress shown as it goes; the model file it wrote and the seconds it took. One thread
/// unless the options say otherwise: a thread running both of 784-128-10's shards takes the
/// engine's shared-packing path (`engine/shared.rs`), which two threads would not.
fn train(mut command: Command, dir: &Path, opts: &NeonOptions) -> anyhow::Result<(PathBuf, f64)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    command
        .args(["train", "--epochs", &opts.epochs.to_string()])
        .arg("--data-dir")
        .arg(opts.data_dir)
        .arg("--out")
        .arg(dir)
        .args(opts.train_args);
    if !opts.train_args.iter().any(|a| a.starts_with("--threads")) {
        command.args(["--threads", "1"]);
    }
    let start = Instant::now();
    let output = command
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .context("running mlp train")?;
    if !output.status.success() {
        bail!(
            "mlp train into {} failed ({}): {}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((dir.join("model.msgpack"), start.elapsed().as_secs_f64()))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_missing_is_named_with_the_command_that_installs_it() {
        let both = missing_tools(false, "x86_64-unknown-linux-gnu\n");
        assert_eq!(both.len(), 2);
        assert!(both[0].starts_with("apt-get install qemu-user"), "{both:?}");
        assert_eq!(both[1], "rustup target add aarch64-unknown-linux-gnu");
        let installed = "aarch64-unknown-linux-gnu\nx86_64-unknown-linux-gnu\n";
        assert!(missing_tools(true, installed).is_empty());
        assert_eq!(missing_tools(false, installed).len(), 1);
    }
}
