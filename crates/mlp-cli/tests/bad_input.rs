//! Bad input, table-driven: every case must exit with code 2 and one line `error: …` naming
//! the problem, never panic, and never leave an output folder behind.

mod common;

use std::path::Path;

use rand::SeedableRng;

use common::*;

struct Case {
    name: &'static str,
    /// Breaks the data folder or writes a file; gets (data dir, temp root).
    setup: fn(&Path, &Path),
    /// Arguments after `mlp`; `{data}`, `{out}` and `{root}` are substituted.
    args: &'static [&'static str],
    /// Text the error line must contain.
    expect: &'static str,
}

const TRAIN: &[&str] = &[
    "train",
    "--data-dir",
    "{data}",
    "--allow-unverified",
    "--epochs",
    "1",
    "--hidden",
    "4",
    "--val-size",
    "20",
    "--out",
    "{out}",
];

fn no_change(_: &Path, _: &Path) {}

/// A run folder `root/run` for `--resume`: a config.json and `checkpoint` as its checkpoint.
fn run_with_checkpoint(root: &Path, checkpoint: &[u8]) {
    std::fs::create_dir_all(root.join("run")).unwrap();
    let config = r#"{"train":{"hidden":4,"activation":"relu","epochs":2,"batch_size":8,"lr":0.1,"lr_decay":0.95,"l2":0.0,"seed":0},"shape":"16-4-10","data_dir":"x","data_verified":false,"train_examples":80,"val_size":20,"best_epoch":null,"best_val_acc":null,"mlp_version":"0.1.0"}"#;
    std::fs::write(root.join("run/config.json"), config).unwrap();
    std::fs::write(root.join("run/checkpoint.msgpack"), checkpoint).unwrap();
}

/// A PyTorch-layout safetensors file `root/torch.safetensors` for a 16-4-10 network (the
/// test data's size), with `tensor` changed by `change` (None: left out), as F32 unless
/// `dtype` says otherwise.
fn torch_file(
    root: &Path,
    tensor: &str,
    change: Option<(Vec<usize>, f32)>,
    dtype: safetensors::Dtype,
) {
    let shapes = [
        ("0.weight", vec![4, 16]),
        ("0.bias", vec![4]),
        ("2.weight", vec![10, 4]),
        ("2.bias", vec![10]),
    ];
    let mut data = Vec::new();
    for (name, shape) in shapes {
        let (shape, value) = match (&change, name == tensor) {
            (None, true) => continue,
            (Some((shape, value)), true) => (shape.clone(), *value),
            (_, false) => (shape, 0.1),
        };
        let len: usize = shape.iter().product();
        let (bytes, dtype) = if name == tensor && dtype == safetensors::Dtype::F16 {
            (vec![0u8; len * 2], dtype)
        } else {
            (value.to_le_bytes().repeat(len), safetensors::Dtype::F32)
        };
        data.push((name, shape, bytes, dtype));
    }
    let views: Vec<_> = data
        .iter()
        .map(|(name, shape, bytes, dtype)| {
            (
                *name,
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    let metadata = std::collections::HashMap::from([("activation".to_owned(), "relu".to_owned())]);
    let bytes = safetensors::serialize(views, Some(metadata)).unwrap();
    std::fs::write(root.join("torch.safetensors"), bytes).unwrap();
}

const TEST_TORCH: &[&str] = &[
    "test",
    "--model",
    "{root}/torch.safetensors",
    "--data-dir",
    "{data}",
    "--allow-unverified",
];

fn with(extra: &'static [&'static str]) -> &'static [&'static str] {
    Box::leak([TRAIN, extra].concat().into_boxed_slice())
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "truncated image file",
            setup: |d, _| {
                let p = d.join("train-images-idx3-ubyte");
                let bytes = std::fs::read(&p).unwrap();
                std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
            },
            args: TRAIN,
            expect: "train-images-idx3-ubyte: truncated: header promises 1600 payload bytes, file has 1595",
        },
        Case {
            name: "wrong magic",
            setup: |d, _| {
                std::fs::write(
                    d.join("train-labels-idx1-ubyte"),
                    b"\x12\x34\x08\x01\0\0\0\x01\x00",
                )
                .unwrap()
            },
            args: TRAIN,
            expect: "train-labels-idx1-ubyte: not an IDX file (magic bytes 12 34 08 01)",
        },
        Case {
            name: "image/label count mismatch",
            setup: |d, _| {
                std::fs::write(d.join("train-labels-idx1-ubyte"), idx(&[99], &[0; 99])).unwrap()
            },
            args: TRAIN,
            expect: "train-images-idx3-ubyte: 100 images, but",
        },
        Case {
            name: "label out of range",
            setup: |d, _| {
                let mut labels = vec![0u8; 100];
                labels[17] = 10;
                std::fs::write(d.join("train-labels-idx1-ubyte"), idx(&[100], &labels)).unwrap();
            },
            args: TRAIN,
            expect: "train-labels-idx1-ubyte: label 10 at index 17 is out of range (expected 0..10)",
        },
        Case {
            name: "corrupt gzip",
            setup: |d, _| {
                std::fs::remove_file(d.join("train-images-idx3-ubyte")).unwrap();
                std::fs::write(
                    d.join("train-images-idx3-ubyte.gz"),
                    b"\x1f\x8b\x08\x00garbage-not-deflate",
                )
                .unwrap();
            },
            args: TRAIN,
            expect: "train-images-idx3-ubyte.gz: ",
        },
        Case {
            name: "empty training file",
            setup: |d, _| {
                std::fs::write(d.join("train-images-idx3-ubyte"), idx(&[0, 4, 4], &[])).unwrap();
                std::fs::write(d.join("train-labels-idx1-ubyte"), idx(&[0], &[])).unwrap();
            },
            args: TRAIN,
            expect: "the training file has 0 examples; training needs at least 1",
        },
        Case {
            name: "missing data",
            setup: |d, _| std::fs::remove_dir_all(d).unwrap(),
            args: TRAIN,
            expect: "not found; fetch the data with `cargo xtask fetch-data --dir",
        },
        Case {
            name: "batch size 0",
            setup: no_change,
            args: with(&["--batch-size", "0"]),
            expect: "--batch-size must be between 1 and 65536, got 0",
        },
        Case {
            name: "hidden 0",
            setup: no_change,
            args: with(&["--hidden", "0"]),
            expect: "--hidden must be between 1 and 65536, got 0",
        },
        Case {
            name: "lr 0",
            setup: no_change,
            args: with(&["--lr", "0"]),
            expect: "--lr must be a positive number, got 0",
        },
        Case {
            name: "lr negative",
            setup: no_change,
            args: with(&["--lr=-0.5"]),
            expect: "--lr must be a positive number, got -0.5",
        },
        Case {
            name: "lr NaN",
            setup: no_change,
            args: with(&["--lr", "nan"]),
            expect: "--lr must be a positive number, got NaN",
        },
        Case {
            name: "lr not a number",
            setup: no_change,
            args: with(&["--lr", "fast"]),
            expect: "invalid value 'fast' for '--lr <LR>'",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "lr negative after a space",
            setup: no_change,
            args: with(&["--lr", "-0.1"]),
            expect: "--lr must be a positive number, got -0.1",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "decay negative after a space",
            setup: no_change,
            args: with(&["--lr-decay", "-0.5"]),
            expect: "--lr-decay must be in (0, 1], got -0.5",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "l2 negative after a space",
            setup: no_change,
            args: with(&["--l2", "-1"]),
            expect: "--l2 must be zero or a positive number, got -1",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "epochs negative",
            setup: no_change,
            args: with(&["--epochs", "-3"]),
            expect: "--epochs must be between 1 and 1000000, got -3",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "hidden negative",
            setup: no_change,
            args: with(&["--hidden", "-5"]),
            expect: "--hidden must be between 1 and 65536, got -5",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "batch size negative",
            setup: no_change,
            args: with(&["--batch-size", "-1"]),
            expect: "--batch-size must be between 1 and 65536, got -1",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "threads negative",
            setup: no_change,
            args: with(&["--threads", "-2"]),
            expect: "--threads must be between 0 and 1024, got -2",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "patience negative",
            setup: no_change,
            args: with(&["--patience", "-1"]),
            expect: "--patience must be between 1 and 1000000, got -1",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "val size negative",
            setup: no_change,
            args: with(&["--val-size", "-5"]),
            expect: "--val-size must be between 0 and 99 (the training file has 100 examples), got -5",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "seed negative",
            setup: no_change,
            args: with(&["--seed", "-1"]),
            expect: "--seed must be between 0 and 18446744073709551615, got -1",
        },
        // Regression: a negative value after a space was read as an unknown flag by clap.
        Case {
            name: "checkpoint interval negative",
            setup: no_change,
            args: with(&["--checkpoint-every", "-1"]),
            expect: "--checkpoint-every must be between 0 and 1000000, got -1",
        },
        Case {
            name: "decay above 1",
            setup: no_change,
            args: with(&["--lr-decay", "1.5"]),
            expect: "--lr-decay must be in (0, 1], got 1.5",
        },
        Case {
            name: "val size too large",
            setup: no_change,
            args: with(&["--val-size", "100"]),
            expect: "--val-size must be between 0 and 99",
        },
        Case {
            name: "unknown optimizer",
            setup: no_change,
            args: with(&["--optimizer", "rmsprop"]),
            expect: "unknown optimizer \"rmsprop\" (expected sgd, momentum, nesterov, adam or adamw)",
        },
        Case {
            name: "unknown schedule",
            setup: no_change,
            args: with(&["--schedule", "step"]),
            expect: "unknown schedule \"step\" (expected exponential or cosine)",
        },
        Case {
            name: "momentum of 1",
            setup: no_change,
            args: with(&["--optimizer", "nesterov", "--momentum", "1"]),
            expect: "--momentum must be in [0, 1), got 1",
        },
        Case {
            name: "beta2 negative",
            setup: no_change,
            args: with(&["--optimizer", "adam", "--beta2", "-0.5"]),
            expect: "--beta2 must be in [0, 1), got -0.5",
        },
        Case {
            name: "eps zero",
            setup: no_change,
            args: with(&["--eps", "0"]),
            expect: "--eps must be a positive number, at least 1e-30, got 0",
        },
        Case {
            name: "weight decay negative",
            setup: no_change,
            args: with(&["--optimizer", "adamw", "--weight-decay", "-1"]),
            expect: "--weight-decay must be zero or a positive number, got -1",
        },
        Case {
            name: "warm-up longer than the run",
            setup: no_change,
            args: with(&["--schedule", "cosine", "--warmup-epochs", "5"]),
            expect: "--warmup-epochs must be between 0 and 1, got 5",
        },
        Case {
            name: "warm-up negative",
            setup: no_change,
            args: with(&["--warmup-epochs", "-2"]),
            expect: "--warmup-epochs must be between 0 and 1000000, got -2",
        },
        Case {
            name: "floor above the learning rate",
            setup: no_change,
            args: with(&["--schedule", "cosine", "--lr", "0.1", "--lr-floor", "0.5"]),
            expect: "--lr-floor must be between 0 and the learning rate, got 0.5",
        },
        Case {
            name: "hidden dropout of 1",
            setup: no_change,
            args: with(&["--hidden-dropout", "1"]),
            expect: "--hidden-dropout must be in [0, 1), got 1",
        },
        Case {
            name: "input dropout not a number",
            setup: no_change,
            args: with(&["--input-dropout", "NaN"]),
            expect: "--input-dropout must be in [0, 1), got NaN",
        },
        Case {
            name: "label smoothing negative",
            setup: no_change,
            args: with(&["--label-smoothing", "-0.1"]),
            expect: "--label-smoothing must be in [0, 1), got -0.1",
        },
        Case {
            name: "translation too far",
            setup: no_change,
            args: with(&["--translate", "15"]),
            expect: "--translate must be between 0 and 14, got 15",
        },
        Case {
            name: "patience without a validation set",
            setup: no_change,
            args: with(&["--val-size", "0", "--patience", "2"]),
            expect: "early stopping (patience) needs a validation set",
        },
        Case {
            name: "unknown activation",
            setup: no_change,
            args: with(&["--activation", "softplus"]),
            expect: "unknown activation \"softplus\"",
        },
        Case {
            name: "diverging learning rate",
            setup: no_change,
            args: with(&["--lr", "1e30", "--epochs", "5"]),
            expect: "training diverged in epoch 1",
        },
        Case {
            name: "model file that is not a model",
            setup: |_, root| {
                std::fs::write(root.join("model.msgpack"), b"this is not a model").unwrap()
            },
            args: &[
                "test",
                "--model",
                "{root}/model.msgpack",
                "--data-dir",
                "{data}",
                "--allow-unverified",
            ],
            expect: "model.msgpack: not an fmnist-mlp model file",
        },
        Case {
            name: "empty test file",
            setup: |d, root| {
                std::fs::write(d.join("t10k-images-idx3-ubyte"), idx(&[0, 4, 4], &[])).unwrap();
                std::fs::write(d.join("t10k-labels-idx1-ubyte"), idx(&[0], &[])).unwrap();
                let mut rng = rand::rngs::StdRng::seed_from_u64(0);
                let model = mlp_core::Mlp::new(
                    mlp_core::Shape {
                        inputs: 16,
                        hidden: 4,
                        classes: 10,
                    },
                    mlp_core::Activation::Relu,
                    &mut rng,
                )
                .unwrap();
                mlp_train::save_model(&root.join("model.msgpack"), &model, &[]).unwrap();
            },
            args: &[
                "test",
                "--model",
                "{root}/model.msgpack",
                "--data-dir",
                "{data}",
                "--allow-unverified",
            ],
            expect: "the test file has no examples",
        },
        Case {
            name: "a model whose input size does not match the data",
            setup: no_change,
            args: &[
                "test",
                "--model",
                "{models}/fmnist-mlp-784-128-10.msgpack",
                "--data-dir",
                "{data}",
                "--allow-unverified",
            ],
            expect: "the model takes 784 inputs and predicts 10 classes, but the test images have 16 pixels",
        },
        Case {
            name: "a model holding NaN weights",
            setup: |_, root| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(1);
                let shape = mlp_core::Shape {
                    inputs: 16,
                    hidden: 4,
                    classes: 10,
                };
                let mut model =
                    mlp_core::Mlp::new(shape, mlp_core::Activation::Relu, &mut rng).unwrap();
                model.w2[[1, 2]] = f32::NAN;
                std::fs::write(
                    root.join("nan.msgpack"),
                    mlp_train::model_file::model_to_bytes(&model, &[]),
                )
                .unwrap();
            },
            args: &[
                "test",
                "--model",
                "{root}/nan.msgpack",
                "--data-dir",
                "{data}",
                "--allow-unverified",
            ],
            expect: "nan.msgpack: invalid model: w2 contains NaN or infinite values",
        },
        Case {
            name: "a damaged checkpoint on resume",
            setup: |_, root| {
                run_with_checkpoint(
                    root,
                    b"\x82\xa5magic\xb5fmnist-mlp checkpoint\xa7version\x02",
                )
            },
            args: &["train", "--resume", "{root}/run"],
            expect: "checkpoint.msgpack: damaged checkpoint",
        },
        Case {
            name: "a checkpoint of the arithmetic before issue 13 (format 1) on resume",
            setup: |_, root| {
                run_with_checkpoint(
                    root,
                    b"\x82\xa5magic\xb5fmnist-mlp checkpoint\xa7version\x01",
                )
            },
            args: &["train", "--resume", "{root}/run"],
            expect: "checkpoint.msgpack: checkpoint format version 1, but this build reads version 2",
        },
        Case {
            name: "a model file offered as a checkpoint",
            setup: |_, root| {
                std::fs::create_dir_all(root.join("run")).unwrap();
                std::fs::write(root.join("run/config.json"), "{}").unwrap();
            },
            args: &["train", "--resume", "{root}/run"],
            expect: "run/config.json: not the config.json of an mlp run",
        },
        Case {
            name: "export to a directory",
            setup: |_, root| std::fs::create_dir_all(root.join("dir.npz")).unwrap(),
            args: &[
                "export",
                "--model",
                "{models}/fmnist-mlp-784-128-10.msgpack",
                "--format",
                "npz",
                "--out",
                "{root}/dir.npz",
            ],
            expect: "dir.npz: cannot write",
        },
        Case {
            name: "predict on a directory",
            setup: no_change,
            args: &[
                "predict",
                "--model",
                "{models}/fmnist-mlp-784-128-10.msgpack",
                "{root}",
            ],
            expect: ": cannot read: Is a directory",
        },
        Case {
            name: "search with an empty list",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--hidden",
                "4,,8",
                "--out",
                "{out}",
            ],
            expect: "invalid value '4,,8' for '--hidden <HIDDEN>'",
        },
        Case {
            name: "search with a negative learning rate first",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--lr",
                "-0.1,0.2",
                "--out",
                "{out}",
            ],
            expect: "--lr must be a positive number, got -0.1",
        },
        Case {
            name: "search with a negative hidden size",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--hidden",
                "-64,128",
                "--out",
                "{out}",
            ],
            expect: "--hidden must be between 1 and 65536, got -64",
        },
        Case {
            name: "search with negative epochs",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--epochs",
                "-1",
                "--out",
                "{out}",
            ],
            expect: "--epochs must be between 1 and 1000000, got -1",
        },
        Case {
            name: "search with negative jobs",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--jobs",
                "-1",
                "--out",
                "{out}",
            ],
            expect: "--jobs must be between 1 and 1024, got -1",
        },
        Case {
            name: "search with a negative translation",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--translate",
                "0,-1",
                "--out",
                "{out}",
            ],
            expect: "--translate must be between 0 and 14, got -1",
        },
        Case {
            name: "search with a dropout of 1",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--hidden-dropout",
                "0.5,1",
                "--out",
                "{out}",
            ],
            expect: "--hidden-dropout must be in [0, 1), got 1",
        },
        Case {
            name: "search without a validation set",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--val-size",
                "0",
                "--out",
                "{out}",
            ],
            expect: "--val-size must be between 1 and 99",
        },
        Case {
            name: "search with a negative validation size",
            setup: no_change,
            args: &[
                "search",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--val-size",
                "-1",
                "--out",
                "{out}",
            ],
            expect: "--val-size must be between 1 and 99 (the training file has 100 examples), got -1",
        },
        Case {
            name: "predict a negative test index",
            setup: no_change,
            args: &[
                "predict",
                "--data-dir",
                "{data}",
                "--allow-unverified",
                "--model",
                "{models}/fmnist-mlp-784-128-10.msgpack",
                "--test-index",
                "-1",
            ],
            expect: "--test-index must be between 0 and",
        },
        Case {
            name: "a PyTorch-layout file with a weight of the wrong shape",
            setup: |_, root| {
                torch_file(
                    root,
                    "2.weight",
                    Some((vec![10, 5], 0.1)),
                    safetensors::Dtype::F32,
                )
            },
            args: TEST_TORCH,
            expect: "torch.safetensors: tensor 2.weight has shape [10, 5], expected [classes, 4] (hidden is 4, from 0.weight)",
        },
        Case {
            name: "a PyTorch-layout file with a bias of the wrong length",
            setup: |_, root| {
                torch_file(
                    root,
                    "0.bias",
                    Some((vec![5], 0.1)),
                    safetensors::Dtype::F32,
                )
            },
            args: TEST_TORCH,
            expect: "torch.safetensors: tensor 0.bias has shape [5], expected [4]",
        },
        Case {
            name: "a PyTorch-layout file with a half-precision tensor",
            setup: |_, root| {
                torch_file(
                    root,
                    "0.weight",
                    Some((vec![4, 16], 0.1)),
                    safetensors::Dtype::F16,
                )
            },
            args: TEST_TORCH,
            expect: "torch.safetensors: tensor 0.weight is F16, expected F32",
        },
        Case {
            name: "a PyTorch-layout file without a tensor",
            setup: |_, root| torch_file(root, "2.bias", None, safetensors::Dtype::F32),
            args: TEST_TORCH,
            expect: "torch.safetensors: no tensor 2.bias: expected w1, b1, w2, b2 (ours) or 0.weight, 0.bias, 2.weight, 2.bias",
        },
        Case {
            name: "a PyTorch-layout file holding NaN",
            setup: |_, root| {
                torch_file(
                    root,
                    "0.bias",
                    Some((vec![4], f32::NAN)),
                    safetensors::Dtype::F32,
                )
            },
            args: TEST_TORCH,
            expect: "torch.safetensors: 0.bias contains NaN or infinite values",
        },
        Case {
            name: "a safetensors file whose header lies about its tensors",
            setup: |_, root| {
                torch_file(
                    root,
                    "2.bias",
                    Some((vec![10], 0.1)),
                    safetensors::Dtype::F32,
                );
                let path = root.join("torch.safetensors");
                let mut bytes = std::fs::read(&path).unwrap();
                bytes.truncate(bytes.len() - 8); // the header's offsets now run past the end
                std::fs::write(&path, bytes).unwrap();
            },
            args: TEST_TORCH,
            expect: "torch.safetensors: not a safetensors file: ",
        },
        Case {
            name: "missing model file",
            setup: no_change,
            args: &[
                "test",
                "--model",
                "{root}/nope.msgpack",
                "--data-dir",
                "{data}",
                "--allow-unverified",
            ],
            expect: "nope.msgpack: No such file or directory",
        },
        Case {
            name: "a directory where the model file should be",
            setup: no_change,
            args: &[
                "test",
                "--model",
                "{root}",
                "--data-dir",
                "{data}",
                "--allow-unverified",
            ],
            expect: "Is a directory",
        },
    ]
}

#[test]
fn every_bad_input_gets_one_line_and_exit_code_2() {
    for case in cases() {
        let tmp = tempfile::tempdir().unwrap();
        let data = write_dataset(tmp.path(), 100, 30);
        (case.setup)(&data, tmp.path());
        let out = tmp.path().join("out");
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{data}", data.to_str().unwrap())
                    .replace("{out}", out.to_str().unwrap())
                    .replace("{root}", tmp.path().to_str().unwrap())
                    .replace(
                        "{models}",
                        concat!(env!("CARGO_MANIFEST_DIR"), "/../../models"),
                    )
            })
            .collect();
        let o = mlp(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{}: exit {:?}, stderr {err}",
            case.name,
            o.status.code()
        );
        assert!(!err.contains("panicked"), "{}: {err}", case.name);
        let first = err.lines().next().unwrap_or("");
        assert!(
            first.starts_with("error: ") && first.contains(case.expect),
            "{}: {err}",
            case.name
        );
        // clap appends a "For more information, try '--help'" hint; our own errors are one line.
        let meaningful: Vec<_> = err
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("For more information"))
            .collect();
        assert_eq!(meaningful.len(), 1, "{}: {err}", case.name);
        assert!(!out.exists(), "{}: left an output folder behind", case.name);
    }
}

/// A file without read permission. Root reads every file, so this runs only as another user.
#[cfg(unix)]
#[test]
fn an_unreadable_model_file_is_one_line() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.msgpack");
    std::fs::write(&model, b"x").unwrap();
    std::fs::set_permissions(&model, std::fs::Permissions::from_mode(0o000)).unwrap();
    if std::fs::read(&model).is_ok() {
        eprintln!("skipped: running as root, which can read any file");
        return;
    }
    let o = mlp(&["test", "--model", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("model.msgpack: Permission denied"),
        "{}",
        stderr(&o)
    );
}

/// `MLP_SIMD` naming no level, or one this CPU lacks: one line naming the variable (and the
/// levels the CPU has), exit 2, no run folder.
#[test]
fn a_bad_simd_level_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let missing = mlp_core::SimdLevel::ALL
        .into_iter()
        .find(|l| !l.is_supported())
        .expect("no CPU runs both NEON and SSE2");
    for (level, expect) in [
        (
            "mmx",
            "error: MLP_SIMD: unknown SIMD level \"mmx\"".to_owned(),
        ),
        (
            missing.name(),
            format!("error: MLP_SIMD: this CPU has no {missing} (it can run "),
        ),
    ] {
        let out = tmp.path().join(format!("run-{level}"));
        let args: Vec<String> = TRAIN
            .iter()
            .map(|a| {
                a.replace("{data}", data.to_str().unwrap())
                    .replace("{out}", out.to_str().unwrap())
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = mlp_on(level, &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{level}: {err}");
        assert!(err.starts_with(&expect), "{level}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{level}: {err}");
        assert!(
            err.contains("scalar"),
            "{level}: names the levels it has: {err}"
        );
        assert!(!out.exists(), "{level}: left {}", out.display());
    }
}
