//! `mlp`: train a Fashion-MNIST classifier and measure it.
//!
//! Every failure ends the same way: one line `error: …` on stderr naming the file or setting
//! and the problem, and exit code 2. Nothing panics on bad input, and nothing is left
//! half-written: every file is written to a temporary name and renamed, except
//! `metrics.jsonl`, which grows a whole line at a time.

mod cli;
mod data;
mod export;
mod onnx;
mod predict_cmd;
mod progress;
mod protobuf;
mod recipe_args;
mod run_dir;
mod search_cmd;
mod search_results;
mod search_trial;
mod signals;
mod tensorboard;
mod test_cmd;
mod train_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    restore_default_sigpipe();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Train(args) => train_cmd::run_train(args),
        cli::Command::Test(args) => test_cmd::run(args).map(|()| ExitCode::SUCCESS),
        cli::Command::Search(args) => search_cmd::run_search(args),
        cli::Command::Predict(args) => predict_cmd::run_predict(args),
        cli::Command::Export(args) => export::load_any(&args.model, args.activation)
            .and_then(|saved| {
                let layout = args.layout.into();
                export::export(&saved, &args.model, args.format, layout, &args.out)
            })
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe (`mlp test --json | head -c 10`)
/// would panic; like other command-line tools, `mlp` should simply end.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The SIMD level `MLP_SIMD` names (checked against this CPU), or the best one.
pub(crate) fn simd_level() -> anyhow::Result<mlp_core::SimdLevel> {
    let requested = std::env::var("MLP_SIMD").ok();
    mlp_core::SimdLevel::choose(requested.as_deref()).map_err(|e| anyhow::anyhow!("MLP_SIMD: {e}"))
}

/// The error and its causes on one line, skipping causes whose text the message already
/// includes (our library errors spell out their source).
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}
