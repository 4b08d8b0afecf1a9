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
