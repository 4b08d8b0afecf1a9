//! `cargo xtask report` refuses missing or malformed folders with one line, and writes nothing.

mod common;

use std::path::Path;

use common::{mlp_binary, run, s, synthetic_data, xtask, xtask_ok};
use mlp_train::History;
use rand::SeedableRng;

/// Each case: how to damage a finished run folder, and what the one-line error must say.
#[test]
fn a_missing_or_malformed_run_folder_gets_a_one_line_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic_data(tmp.path(), 300, 50);
    let good = tmp.path().join("good");
    run(
        &mlp_binary(),
        &[
            "train",
            "--quiet",
            "--data-dir",
            s(&data),
            "--allow-unverified",
            "--epochs",
            "2",
            "--hidden",
            "4",
            "--val-size",
            "50",
            "--out",
            s(&good),
        ],
    );
    type Damage = fn(&Path);
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "no folder",
            |d| std::fs::remove_dir_all(d).unwrap(),
            "no such folder",
        ),
        (
            "a file",
            |d| {
                std::fs::remove_dir_all(d).unwrap();
                std::fs::write(d, b"x").unwrap();
            },
            "not a folder",
        ),
        (
            "empty folder",
            |d| {
                std::fs::remove_dir_all(d).unwrap();
                std::fs::create_dir(d).unwrap();
            },
            "config.json: missing; is this a folder `mlp train --out` wrote?",
        ),
        (
            "unfinished run",
            |d| {
                std::fs::remove_file(d.join("history.json")).unwrap();
            },
            "history.json: missing; the run has not finished",
        ),
        (
            "no model",
            |d| std::fs::remove_file(d.join("model.msgpack")).unwrap(),
            "model.msgpack: missing",
        ),
        (
            "history not JSON",
            |d| std::fs::write(d.join("history.json"), "{").unwrap(),
            "history.json: not the history.json of an mlp run",
        ),
        (
            "history of uneven series",
            |d| {
                let text = std::fs::read_to_string(d.join("history.json")).unwrap();
                let mut h: serde_json::Value = serde_json::from_str(&text).unwrap();
                h["lr"].as_array_mut().unwrap().pop();
                std::fs::write(d.join("history.json"), h.to_string()).unwrap();
            },
            "history.json: malformed: lr has 1 values but train_loss has 2",
        ),
        (
            "history with no epochs",
            |d| {
                let empty = serde_json::to_string(&History::default()).unwrap();
                std::fs::write(d.join("history.json"), empty).unwrap();
            },
            "history.json: malformed: no epochs recorded",
        ),
        (
            "config not JSON",
            |d| std::fs::write(d.join("config.json"), "]").unwrap(),
            "config.json: not the config.json",
        ),
        (
            "model damaged",
            |d| std::fs::write(d.join("model.msgpack"), b"\x93garbage").unwrap(),
            "model.msgpack",
        ),
        (
            "search with no trials",
            |d| {
                std::fs::write(d.join("results.json"), "[]").unwrap();
            },
            "results.json: lists no trials",
        ),
        (
            "search without best",
            |d| std::fs::write(d.join("results.json"), TRIAL_ROW).unwrap(),
            "best: missing; a search writes it once a trial finishes",
        ),
        (
            "unfinished search",
            |d| {
                for name in [
                    "config.json",
                    "history.json",
                    "model.msgpack",
                    "metrics.jsonl",
                ] {
                    let _ = std::fs::remove_file(d.join(name));
                }
                std::fs::create_dir_all(d.join("trials/a")).unwrap();
            },
            "results.json: missing; the search has not finished",
        ),
        (
            "model for other images",
            |d| {
                let shape = mlp_core::Shape {
                    inputs: 9,
                    hidden: 3,
                    classes: 10,
                };
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
                let model =
                    mlp_core::Mlp::new(shape, mlp_core::Activation::Relu, &mut rng).unwrap();
                mlp_train::save_model(&d.join("model.msgpack"), &model, &[]).unwrap();
            },
            "model.msgpack: the model takes 9 inputs and predicts 10 classes, but the test images have 16 pixels",
        ),
        (
            "search results not JSON",
            |d| std::fs::write(d.join("results.json"), "nope").unwrap(),
            "results.json: not the results.json of an mlp search",
        ),
    ];
    for (name, damage, message) in cases {
        let dir = tmp.path().join(name.replace(' ', "-"));
        copy_dir(&good, &dir);
        damage(&dir);
        let out = tmp
            .path()
            .join(format!("{}-report", name.replace(' ', "-")));
        let result = xtask(&[
            "report",
            "--run",
            s(&dir),
            "--out",
            s(&out),
            "--data-dir",
            s(&data),
            "--allow-unverified",
        ]);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(
            stderr.contains(message),
            "{name}: `{stderr}` should say `{message}`"
        );
        assert!(!out.exists(), "{name}: no report folder is left behind");
    }

    // Good folder, bad request.
    let out = xtask(&[
        "report",
        "--run",
        s(&good),
        "--data-dir",
        s(&tmp.path().join("nowhere")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("not found; the report evaluates the test set"),
        "{stderr}"
    );
    let out = xtask(&["report", "--run", s(&good), "--x", "lr", "--y", "lr"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("pick two different hyperparameters"),
        "{stderr}"
    );
    assert!(!good.join("report").exists());

    // A report never replaces a folder of other things, and leaves it as it was.
    let other = tmp.path().join("notes");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("todo.txt"), "keep me").unwrap();
    let data_args = ["--data-dir", s(&data), "--allow-unverified"];
    let mut args = vec!["report", "--run", s(&good), "--out", s(&other)];
    args.extend(data_args);
    let out = xtask(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("notes: exists and is not a report folder"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["todo.txt"]);

    // A report replaces an older report whole: no figure of the old one stays behind, and
    // no temporary folder is left beside it.
    let report = tmp.path().join("reports").join("good");
    std::fs::create_dir_all(&report).unwrap();
    std::fs::write(report.join("report.md"), "old").unwrap();
    std::fs::write(report.join("search.png"), "old figure of a search").unwrap();
    let mut args = vec!["report", "--run", s(&good), "--out", s(&report)];
    args.extend(data_args);
    xtask_ok(&args);
    assert!(!report.join("search.png").exists());
    assert!(
        std::fs::read_to_string(report.join("report.md"))
            .unwrap()
            .starts_with("# Training report")
    );
    let beside: Vec<_> = std::fs::read_dir(report.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(beside, ["good"]);
}

/// One row of a search's results.json.
const TRIAL_ROW: &str = r#"[{"id":"lr0.1_h4_l2-0_relu_b64_e2_d0.95","lr":0.1,"hidden":4,"l2":0.0,"activation":"relu","batch_size":64,"epochs":2,"lr_decay":0.95,"seed":1,"val_size":50,"status":"ok","best_val_acc":0.5,"best_epoch":2,"final_train_loss":1.0,"final_val_loss":1.0,"seconds":0.1,"detail":null}]"#;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
