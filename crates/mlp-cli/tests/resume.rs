//! Ctrl-C and `mlp train --resume`: a run interrupted by SIGINT at an arbitrary moment and
//! then resumed ends with exactly the model file of a run never interrupted.
#![cfg(unix)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn train_args<'a>(data: &'a str, out: &'a str) -> Vec<&'a str> {
    slow_train_args(data, out, "60")
}

#[test]
fn sigint_then_resume_gives_the_uninterrupted_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 6000, 100);
    let data_s = data.to_str().unwrap();

    let whole = tmp.path().join("whole");
    let o = mlp(&train_args(data_s, whole.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = std::fs::read(whole.join("model.msgpack")).unwrap();

    let mut interrupted_runs = 0;
    for (k, delay_ms) in [100u64, 250, 500].into_iter().enumerate() {
        let out = tmp.path().join(format!("run{k}"));
        let out_s = out.to_str().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args(train_args(data_s, out_s))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let o = child.wait_with_output().unwrap();
        let err = stderr(&o);
        match o.status.code() {
            Some(130) => {
                interrupted_runs += 1;
                assert!(
                    err.contains(&format!("continue with: mlp train --resume {out_s}")),
                    "{err}"
                );
                assert!(
                    !out.join("model.msgpack").exists(),
                    "an interrupted run writes no model"
                );
                let resumed = mlp(&["train", "--resume", out_s, "--quiet"]);
                assert!(resumed.status.success(), "{}", stderr(&resumed));
            }
            Some(0) => {} // finished before the signal arrived: nothing to resume
            // Killed before the handler was installed (still loading): nothing was written.
            None if !out.exists() => continue,
            other => panic!("exit {other:?}: {err}"),
        }
        assert_eq!(
            std::fs::read(out.join("model.msgpack")).unwrap(),
            expected,
            "delay {delay_ms} ms"
        );
        let lines = std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert_eq!(
            lines, 60,
            "metrics.jsonl has one line per epoch, none repeated"
        );
    }
    assert!(
        interrupted_runs > 0,
        "no run was still going when interrupted; make the runs longer"
    );
}

#[test]
fn resume_refuses_a_folder_without_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let o = mlp(&["train", "--resume", tmp.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("config.json: cannot read the run's settings"),
        "{}",
        stderr(&o)
    );
}

/// Ctrl-C during `mlp search`: the running trials stop at their next mini-batch and are
/// checkpointed, the search says how to continue (exit 130), and running the same command
/// again continues them to the results of a search never interrupted.
#[test]
fn sigint_during_a_search_checkpoints_the_trials_and_the_rerun_continues_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 3000, 60);
    let d = data.to_str().unwrap();
    let search = |out: &str| {
        let mut args = slow_search_args(d, out, "300");
        args.push("--quiet".to_owned());
        args
    };
    let run = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args(args)
            .output()
            .unwrap()
    };
    let whole = tmp.path().join("whole");
    let o = run(&search(whole.to_str().unwrap()));
    assert!(o.status.success(), "{}", stderr(&o));

    let dir = tmp.path().join("search");
    let args = search(dir.to_str().unwrap());
    let child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the trials train (the first checkpoint is written after an epoch).
    let training = || {
        std::fs::read_dir(dir.join("trials")).is_ok_and(|trials| {
            trials
                .flatten()
                .any(|t| t.path().join("checkpoint.msgpack").exists())
        })
    };
    for _ in 0..1500 {
        if training() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(training(), "the search did not start training within 15 s");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted; the running trials are checkpointed; continue with: mlp search")
            && err.contains(dir.to_str().unwrap())
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
    let checkpoints = std::fs::read_dir(dir.join("trials"))
        .unwrap()
        .flatten()
        .filter(|t| t.path().join("checkpoint.msgpack").exists())
        .count();
    assert!(checkpoints >= 1, "no trial was checkpointed");
    assert!(
        !dir.join("results.json").exists(),
        "an interrupted search writes no results"
    );

    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(search_results(&dir), search_results(&whole));
    assert!(
        std::fs::read(dir.join("best/model.msgpack")).unwrap()
            == std::fs::read(whole.join("best/model.msgpack")).unwrap()
    );
}

/// SIGTERM (what Slurm sends a preempted task and Kubernetes a pod it stops) checkpoints a
/// run as Ctrl-C does.
#[test]
fn sigterm_checkpoints_a_run_like_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 6000, 100);
    let out = tmp.path().join("run");
    let child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(slow_train_args(
            data.to_str().unwrap(),
            out.to_str().unwrap(),
            "1000",
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once it trains (its first checkpoint is on disk).
    for _ in 0..1500 {
        if out.join("checkpoint.msgpack").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        out.join("checkpoint.msgpack").exists(),
        "the run did not start training within 15 s"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("checkpoint saved; continue with: mlp train --resume"),
        "{err}"
    );
}
