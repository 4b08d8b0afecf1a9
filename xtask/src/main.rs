//! `cargo xtask`: the project's chores. Run `cargo xtask --help`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::fetch::{self, FetchPlan, Outcome, Wanted};
use xtask::report::ReportOptions;
use xtask::report::search::Hyperparameter;
use xtask::report::weights::WeightScale;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Chores for fmnist-mlp")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download and verify the four Fashion-MNIST files (or copy a local copy when offline).
    FetchData {
        /// Destination folder.
        #[arg(long, default_value = "data/fashion-mnist")]
        dir: PathBuf,
        /// A folder holding the files, used when the network is unreachable.
        #[arg(long)]
        from: Option<PathBuf>,
        /// Base URL to download from instead of the defaults (repeatable, tried in order).
        #[arg(long = "mirror")]
        mirrors: Vec<String>,
    },
    /// Time training epochs and inference on the real data against a measured sgemm peak.
    Bench {
        /// Folder with the Fashion-MNIST files.
        #[arg(long, default_value = "data/fashion-mnist")]
        data_dir: PathBuf,
        /// Timed epochs per thread count (after one warm-up epoch).
        #[arg(long, default_value_t = 5)]
        epochs: usize,
        /// Hidden units.
        #[arg(long, default_value_t = 128)]
        hidden: usize,
        /// Mini-batch size.
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        /// Skip measuring the sgemm peak (for quick comparisons of two builds).
        #[arg(long)]
        skip_peak: bool,
    },
    /// Figures and a report (report.md, report.html) of a training run or a search.
    Report(ReportArgs),
    /// Run the NEON level under emulation (qemu-user): mlp-core's tests built for aarch64,
    /// then a training run whose model must be this machine's, byte for byte.
    Neon {
        /// Epochs of the compared training runs (about a minute each under emulation, on one
        /// thread unless `-- --threads N`; 50 is the default recipe's).
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        /// Folder with the Fashion-MNIST files.
        #[arg(long, default_value = "data/fashion-mnist")]
        data_dir: PathBuf,
        /// Only train and compare (mlp-core's tests take about 4 minutes under emulation).
        #[arg(long)]
        skip_tests: bool,
        /// More options for both `mlp train` runs, after `--` (`-- --optimizer adam`).
        #[arg(last = true)]
        train_args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// The folder `mlp train --out` or `mlp search --out` wrote, or a model file
    /// (.msgpack, or .safetensors in our layout or PyTorch's).
    #[arg(long)]
    run: PathBuf,
    /// The hidden activation of a .safetensors file that records none (PyTorch's).
    #[arg(long)]
    activation: Option<mlp_core::Activation>,
    /// Where to write the report [default: RUN/report].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Folder with the Fashion-MNIST files (the test set is evaluated).
    #[arg(long, default_value = "data/fashion-mnist")]
    data_dir: PathBuf,
    /// Accept test files that are not the catalogued Fashion-MNIST (other IDX data).
    #[arg(long)]
    allow_unverified: bool,
    /// Hidden units in the weight grid: a number, or `all`.
    #[arg(long, default_value = "64", value_parser = units)]
    units: usize,
    /// How weights become grey levels.
    #[arg(long, value_enum, default_value_t = WeightScale::PerTile)]
    weight_scale: WeightScale,
    /// Screen pixels per weight in the weight grid.
    #[arg(long, default_value_t = 2)]
    zoom: u32,
    /// Misclassified test images shown.
    #[arg(long, default_value_t = 24)]
    mistakes: usize,
    /// Search folders: the heatmap's horizontal hyperparameter.
    #[arg(long, value_enum, default_value_t = Hyperparameter::Lr)]
    x: Hyperparameter,
    /// Search folders: the heatmap's vertical hyperparameter.
    #[arg(long, value_enum, default_value_t = Hyperparameter::Hidden)]
    y: Hyperparameter,
}

fn units(text: &str) -> Result<usize, String> {
    if text == "all" {
        return Ok(usize::MAX);
    }
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!("`{text}` is not a positive number or `all`")),
        Ok(n) => Ok(n),
    }
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    let out = xtask::report::run(&ReportOptions {
        run: args.run,
        activation: args.activation,
        out: args.out,
        data_dir: args.data_dir,
        allow_unverified: args.allow_unverified,
        units: args.units,
        weight_scale: args.weight_scale,
        zoom: args.zoom,
        mistakes: args.mistakes,
        x: args.x,
        y: args.y,
    })?;
    println!("report written to {}", out.join("report.md").display());
    println!("self-contained page: {}", out.join("report.html").display());
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::FetchData { dir, from, mirrors } => fetch_data(dir, from, mirrors),
        Command::Report(args) => report(args),
        Command::Neon {
            epochs,
            data_dir,
            skip_tests,
            train_args,
        } => {
            // The workspace root: this crate's parent.
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("xtask sits in the workspace");
            let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
            xtask::neon::run(
                root,
                &xtask::neon::NeonOptions {
                    epochs,
                    data_dir: &data_dir,
                    skip_tests,
                    train_args: &train_args,
                },
            )
        }
        Command::Bench {
            data_dir,
            epochs,
            hidden,
            batch_size,
            skip_peak,
        } => {
            if cfg!(debug_assertions) {
                release_rerun()
            } else {
                xtask::bench::run(&xtask::bench::BenchOptions {
                    data_dir: &data_dir,
                    epochs,
                    hidden,
                    batch_size,
                    skip_peak,
                })
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Timings of a debug build mean nothing: run this same command from a release build.
fn release_rerun() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args: Vec<String> = std::env::args().skip(1).collect();
    let status = std::process::Command::new(cargo)
        .args(["run", "--quiet", "--release", "--package", "xtask", "--"])
        .args(&args)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        anyhow::bail!("the release build of the benchmark failed ({status})")
    }
}

fn fetch_data(dir: PathBuf, from: Option<PathBuf>, mirrors: Vec<String>) -> anyhow::Result<()> {
    let mirrors = if mirrors.is_empty() {
        fetch::DEFAULT_MIRRORS
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        mirrors
    };
    // Local copies, in the documented order: --from, $FMNIST_DIR, the Debian/Ubuntu package.
    let local_dirs = from
        .into_iter()
        .chain(std::env::var_os("FMNIST_DIR").map(PathBuf::from))
        .chain([PathBuf::from(fetch::SYSTEM_COPY)])
        .collect();
    let plan = FetchPlan {
        dir,
        files: Wanted::fashion_mnist(),
        mirrors,
        local_dirs,
        progress: std::io::stderr().is_terminal(),
    };
    let outcomes = fetch::fetch(&plan, |line| eprintln!("{line}"))?;
    for (name, outcome) in &outcomes {
        let how = match outcome {
            Outcome::AlreadyPresent => "already present".to_owned(),
            Outcome::Downloaded(url) => format!("downloaded from {url}"),
            Outcome::Copied(path) => format!("copied from {}", path.display()),
        };
        println!("{name:<28} ok, {how}");
    }
    println!(
        "all {} files verified in {}",
        outcomes.len(),
        plan.dir.display()
    );
    Ok(())
}
