//! `--tensorboard`: the events of `mlp train` and `mlp search`, read back with TensorBoard's
//! own reader (`tests/tensorboard_read.py`, Python from the environment `.ci/run` makes: see
//! `common::python_with`) and checked against history.json, through kills and resumes.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// The events of the run folder `dir`, as TensorBoard reads them.
fn read_events(python: &Path, dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tensorboard_read.py");
    let o = Command::new(python).arg(script).arg(dir).output().unwrap();
    assert!(o.status.success(), "tensorboard_read.py: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// Every scalar of every epoch, once, equal (as float32) to history.json's; a histogram of
/// W1 and W2 per epoch.
fn assert_events_match_history(python: &Path, dir: &Path) {
    let events = read_events(python, dir);
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("history.json")).unwrap()).unwrap();
    let epochs = history["train_loss"].as_array().unwrap().len();
    for (tag, series) in [
        ("loss/train", "train_loss"),
        ("loss/validation", "val_loss"),
        ("accuracy/train", "train_acc"),
        ("accuracy/validation", "val_acc"),
        ("learning_rate", "lr"),
        ("grad_norm", "grad_norm"),
    ] {
        let points = events["scalars"][tag]
            .as_array()
            .unwrap_or_else(|| panic!("no {tag}"));
        let steps: Vec<u64> = points.iter().map(|p| p[0].as_u64().unwrap()).collect();
        assert_eq!(
            steps,
            (1..=epochs as u64).collect::<Vec<_>>(),
            "{tag}: one point per epoch"
        );
        for (point, expected) in points.iter().zip(history[series].as_array().unwrap()) {
            let (got, want) = (point[1].as_f64().unwrap(), expected.as_f64().unwrap());
            assert_eq!(got as f32, want as f32, "{tag} at step {}", point[0]);
        }
    }
    for tag in ["weights/W1", "weights/W2"] {
        let steps = &events["histograms"][tag]["steps"];
        assert_eq!(
            *steps,
            serde_json::json!((1..=epochs).collect::<Vec<_>>()),
            "{tag}"
        );
    }
}

#[test]
fn a_run_killed_and_resumed_writes_every_epoch_once() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 3000, 60);
    let dir = tmp.path().join("run");
    let (d, dir_s) = (data.to_str().unwrap(), dir.to_str().unwrap().to_owned());
    let mut fresh = slow_train_args(d, &dir_s, "120");
    fresh.push("--tensorboard");
    let mut seed = 99u32;
    let mut kills = 0;
    for _ in 0..12 {
        let args: Vec<&str> = if dir.join("config.json").exists() {
            vec!["train", "--resume", &dir_s, "--quiet"]
        } else {
            fresh.clone()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        std::thread::sleep(Duration::from_millis(20 + (seed >> 16) as u64 % 150));
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap();
        let o = child.wait_with_output().unwrap();
        if o.status.success() {
            break;
        }
        kills += 1;
    }
    assert!(kills >= 3, "only {kills} kills: make the run longer");
    // The resumed run goes on writing events without being asked again.
    let o = mlp(&["train", "--resume", &dir_s, "--quiet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_events_match_history(&python, &dir);
}

#[test]
fn a_search_writes_one_run_per_trial() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 200, 20);
    let out = tmp.path().join("search");
    let o = mlp(&[
        "search",
        "--data-dir",
        data.to_str().unwrap(),
        "--allow-unverified",
        "--lr",
        "0.05,0.1",
        "--hidden",
        "8",
        "--l2",
        "0",
        "--epochs",
        "4",
        "--val-size",
        "40",
        "--tensorboard",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let trials: Vec<_> = std::fs::read_dir(out.join("trials"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(trials.len(), 2);
    for trial in trials {
        assert_events_match_history(&python, &trial.path());
    }
}

/// On the real images, the first-layer weights as a picture: 64 tiles of 28 × 28, 8 a row.
#[test]
fn the_weight_grid_is_an_image_per_epoch() {
    let Some(python) = python_with("tensorboard") else {
        return;
    };
    let Some(data) = real_data_dir() else {
        eprintln!("{SKIPPED_NO_DATA}");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let o = mlp(&[
        "train",
        "--data-dir",
        data.to_str().unwrap(),
        "--epochs",
        "2",
        "--val-size",
        "55000",
        "--tensorboard",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_events_match_history(&python, &dir);
    let events = read_events(&python, &dir);
    assert_eq!(
        events["images"]["weights/W1 columns"],
        serde_json::json!([[1, 233, 233], [2, 233, 233]])
    );
    assert_eq!(events["histograms"]["weights/W1"]["count"], 784.0 * 128.0);
}
