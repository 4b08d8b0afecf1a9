//! Training killed (SIGKILL: no chance to clean up) at random moments, many times: whatever
//! is on disk always loads, and resuming always ends with the model of a run never killed.
#![cfg(unix)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn killed_at_random_moments_a_run_always_resumes_to_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 3000, 60);
    let d = data.to_str().unwrap();
    let train = |out: &str| {
        slow_train_args(d, out, "400")
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };

    let whole = tmp.path().join("whole");
    let o = mlp(&train(whole.to_str().unwrap())
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let expected = std::fs::read(whole.join("model.msgpack")).unwrap();

    let dir = tmp.path().join("run");
    let dir_s = dir.to_str().unwrap().to_owned();
    let mut seed = 12345u32;
    let mut kills = 0;
    for _ in 0..30 {
        let args = if dir.join("config.json").exists() {
            vec![
                "train".into(),
                "--resume".into(),
                dir_s.clone(),
                "--quiet".into(),
            ]
        } else {
            train(&dir_s)
        };
        let child = Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        std::thread::sleep(Duration::from_millis(5 + (seed >> 16) as u64 % 120));
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            break; // finished before the kill
        }
        assert_eq!(o.status.code(), None, "killed, not failed: {}", stderr(&o));
        kills += 1;
        // Whatever is on disk is complete.
        if dir.join("checkpoint.msgpack").exists() {
            mlp_train::load_checkpoint(&dir.join("checkpoint.msgpack")).unwrap();
        }
        if dir.join("model.msgpack").exists() {
            mlp_train::load_model(&dir.join("model.msgpack")).unwrap();
        }
    }
    assert!(
        kills >= 3,
        "only {kills} runs were killed: make the runs longer"
    );
    eprintln!("{kills} kills");

    let o = mlp(&["train", "--resume", &dir_s, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(dir.join("model.msgpack")).unwrap(),
        expected,
        "after {kills} kills"
    );
    let lines = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, 400);
    let strays: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(strays.is_empty(), "temporary files left: {strays:?}");
}

/// A search killed at random moments, many times, and rerun each time: every file on disk
/// loads, no trial starts again from its first epoch once it has a checkpoint (each trial's
/// checkpointed epoch never goes back), and the search ends with the results, trial models
/// and best model of a search never killed.
#[test]
fn killed_at_random_moments_a_search_ends_as_one_never_killed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 3000, 60);
    let d = data.to_str().unwrap();
    let search = |out: &str| slow_search_args(d, out, "400");
    let run = |args: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let whole = tmp.path().join("whole");
    let o = run(&search(whole.to_str().unwrap()))
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let dir = tmp.path().join("search");
    let args = search(dir.to_str().unwrap());
    let trial_dirs = || -> Vec<std::path::PathBuf> {
        let mut dirs: Vec<_> = std::fs::read_dir(dir.join("trials"))
            .map(|e| e.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    };
    let mut checkpointed = std::collections::BTreeMap::new();
    let (mut seed, mut kills, mut continued) = (777u32, 0, 0);
    for _ in 0..30 {
        let child = run(&args);
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        std::thread::sleep(Duration::from_millis(5 + (seed >> 16) as u64 % 300));
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let o = child.wait_with_output().unwrap();
        if stdout(&o).contains("continued from a checkpoint")
            && !stdout(&o).contains("(0 continued")
        {
            continued += 1;
        }
        if o.status.success() {
            break;
        }
        assert_eq!(o.status.code(), None, "killed, not failed: {}", stderr(&o));
        kills += 1;
        for trial in trial_dirs() {
            let checkpoint = trial.join("checkpoint.msgpack");
            if checkpoint.exists() {
                let epochs = mlp_train::load_checkpoint(&checkpoint).unwrap().epochs_done;
                let before = checkpointed.insert(trial.clone(), epochs).unwrap_or(0);
                assert!(
                    epochs >= before,
                    "{}: checkpointed at epoch {before}, then at {epochs}: started again",
                    trial.display()
                );
            }
            if trial.join("model.msgpack").exists() {
                mlp_train::load_model(&trial.join("model.msgpack")).unwrap();
            }
        }
        if dir.join("best/model.msgpack").exists() {
            mlp_train::load_model(&dir.join("best/model.msgpack")).unwrap();
        }
    }
    assert!(
        kills >= 3,
        "only {kills} searches were killed: make them longer"
    );
    assert!(
        continued >= 1,
        "no rerun continued a trial from its checkpoint"
    );
    eprintln!("{kills} kills, {continued} reruns continued a checkpointed trial");

    let o = run(&args).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        search_results(&dir),
        search_results(&whole),
        "after {kills} kills"
    );
    assert!(
        std::fs::read(dir.join("best/model.msgpack")).unwrap()
            == std::fs::read(whole.join("best/model.msgpack")).unwrap(),
        "the best model differs after {kills} kills"
    );
    for trial in trial_dirs() {
        let name = trial.file_name().unwrap();
        assert!(
            std::fs::read(trial.join("model.msgpack")).unwrap()
                == std::fs::read(whole.join("trials").join(name).join("model.msgpack")).unwrap(),
            "{}: another model after {kills} kills",
            trial.display()
        );
        assert!(
            !trial.join("checkpoint.msgpack").exists(),
            "a finished trial keeps its checkpoint"
        );
        let strays: Vec<_> = std::fs::read_dir(&trial)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(strays.is_empty(), "temporary files left: {strays:?}");
    }
}
