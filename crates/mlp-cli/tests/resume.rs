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
