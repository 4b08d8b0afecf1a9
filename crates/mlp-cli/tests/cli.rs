//! The `mlp` binary end to end, on small synthetic IDX files the tests write themselves.

mod common;

use common::*;

#[test]
fn train_then_test_on_synthetic_data() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 100);
    let out = tmp.path().join("run");
    let (data_s, out_s) = (data.to_str().unwrap(), out.to_str().unwrap());

    let train = mlp(&quick_train_args(data_s, out_s));
    assert!(train.status.success(), "{}", stderr(&train));
    let text = stdout(&train);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("epoch ")).count(),
        5,
        "{text}"
    );
    let last = text.lines().last().unwrap();
    assert!(
        last.contains(out_s) && last.contains("mlp test --model"),
        "{last}"
    );

    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    for key in [
        "train_loss",
        "val_loss",
        "train_acc",
        "val_acc",
        "grad_norm",
        "lr",
        "epoch_seconds",
    ] {
        assert_eq!(
            history[key].as_array().map(Vec::len),
            Some(5),
            "{key} in {history}"
        );
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["hidden"], 16);
    assert_eq!(config["val_size"], 40);

    let test = mlp(&[
        "test",
        "--model",
        out.join("model.msgpack").to_str().unwrap(),
        "--data-dir",
        data_s,
        "--allow-unverified",
        "--json",
    ]);
    assert!(test.status.success(), "{}", stderr(&test));
    let report: serde_json::Value = serde_json::from_str(&stdout(&test)).unwrap();
    let accuracy = report["accuracy"].as_f64().unwrap();
    assert!(accuracy > 0.9, "the synthetic task is easy; got {accuracy}");
    assert_eq!(report["per_class_accuracy"].as_array().unwrap().len(), 10);
    assert_eq!(report["count"], 100);
}

#[test]
fn the_same_seed_gives_the_same_model_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 50);
    let run = |name: &str, seed: &str| {
        let out = tmp.path().join(name);
        let mut args = quick_train_args(data.to_str().unwrap(), out.to_str().unwrap());
        args.extend(["--seed", seed]);
        let o = mlp(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        std::fs::read(out.join("model.msgpack")).unwrap()
    };
    assert_eq!(run("a", "5"), run("b", "5"));
    assert_ne!(run("d", "5"), run("c", "6"));
}

#[test]
fn without_a_run_folder_a_fresh_one_is_made_under_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mlp"))
        .current_dir(tmp.path())
        .args([
            "train",
            "--data-dir",
            data.to_str().unwrap(),
            "--allow-unverified",
            "--epochs",
            "1",
            "--hidden",
            "4",
            "--val-size",
            "20",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let runs: Vec<_> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    assert!(run.join("model.msgpack").is_file());
    assert!(stdout(&o).lines().last().unwrap().contains(&format!(
        "runs/{}",
        run.file_name().unwrap().to_str().unwrap()
    )));
}

#[test]
fn fashion_mnist_names_with_other_content_need_allow_unverified() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let o = mlp(&[
        "train",
        "--data-dir",
        data.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("train-images-idx3-ubyte: content is not the Fashion-MNIST file")
            && err.contains("--allow-unverified"),
        "{err}"
    );
}

#[test]
fn a_new_run_refuses_a_folder_that_holds_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 120, 30);
    let out = tmp.path().join("run");
    let args = quick_train_args(data.to_str().unwrap(), out.to_str().unwrap());
    assert!(mlp(&args).status.success());
    let model = std::fs::read(out.join("model.msgpack")).unwrap();
    let again = mlp(&args);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("already holds a run (config.json); choose another --out"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(out.join("model.msgpack")).unwrap(),
        model,
        "the old run is untouched"
    );
}

/// `--val-size 0` trains on every example, keeps the last epoch's model and says so; the new
/// settings are recorded in config.json and the history has no validation series.
#[test]
fn training_without_a_validation_set_keeps_the_last_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 240, 100);
    let out = tmp.path().join("run");
    let (data_s, out_s) = (data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = quick_train_args(data_s, out_s);
    let at = args.iter().position(|a| *a == "--val-size").unwrap();
    args[at + 1] = "0";
    args.extend([
        "--optimizer",
        "adamw",
        "--lr",
        "0.01",
        "--weight-decay",
        "0.01",
        "--schedule",
        "cosine",
        "--warmup-epochs",
        "1",
        "--hidden-dropout",
        "0.2",
        "--label-smoothing",
        "0.1",
        "--translate",
        "1",
        "--flip",
    ]);
    let train = mlp(&args);
    assert!(train.status.success(), "{}", stderr(&train));
    let text = stdout(&train);
    assert!(
        text.contains("on 240 examples, no validation set")
            && text.contains("adamw lr 0.01 betas 0.9 0.999")
            && text.contains("cosine to 0 after 1 warm-up epochs")
            && text.contains("hidden_dropout 0.2 label_smoothing 0.1 translate 1 flip"),
        "{text}"
    );
    assert!(
        text.contains("no validation set (--val-size 0): kept the model of the last epoch, 5"),
        "{text}"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["val_size"], 0);
    assert_eq!(config["train_examples"], 240);
    assert_eq!(config["best_epoch"], 5);
    assert_eq!(config["best_val_acc"], serde_json::Value::Null);
    assert_eq!(config["train"]["optimizer"], "adamw");
    assert_eq!(config["train"]["translate"], 1);
    assert_eq!(config["train"]["flip"], true);
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("history.json")).unwrap()).unwrap();
    assert_eq!(history["train_loss"].as_array().map(Vec::len), Some(5));
    assert_eq!(history["val_acc"].as_array().map(Vec::len), Some(0));
    // The same seed, the same file (the noise is the seed's too).
    let again = tmp.path().join("again");
    let at = args.iter().position(|a| *a == out_s).unwrap();
    args[at] = again.to_str().unwrap();
    assert!(mlp(&args).status.success());
    assert_eq!(
        std::fs::read(out.join("model.msgpack")).unwrap(),
        std::fs::read(again.join("model.msgpack")).unwrap()
    );
}
