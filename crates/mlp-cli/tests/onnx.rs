//! `mlp export --format onnx` checked by the tools a user would open the file with: ONNX's
//! own checker and onnxruntime (Python, from the virtual environment `.ci/run` makes: see
//! `common::python_with`).
//! Every activation on random inputs, and the shipped model on the 10,000 test images:
//! the same predicted classes as `mlp test`, probabilities within 1e-5 of ours.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mlp_core::{Activation, Mlp, Shape};
use ndarray::{Array2, Axis};
use rand::{RngExt, SeedableRng};

fn python() -> Option<PathBuf> {
    python_with("onnx, onnxruntime, numpy")
}

/// Exports the model file `model` to ONNX, runs it in onnxruntime on `x`, and returns its
/// probabilities and the checker script's report.
fn run_in_onnxruntime(
    python: &Path,
    model: &Path,
    x: &Array2<f32>,
    dir: &Path,
) -> (Array2<f32>, serde_json::Value) {
    let onnx = dir.join("model.onnx");
    let o = mlp(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--format",
        "onnx",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (inputs, outputs) = (dir.join("x.f32"), dir.join("p.f32"));
    std::fs::write(&inputs, f32_bytes(x.iter().copied())).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_check.py");
    let o = Command::new(python)
        .arg(script)
        .args([&onnx, &inputs, &outputs])
        .output()
        .unwrap();
    assert!(o.status.success(), "onnx_check.py: {}", stderr(&o));
    let report = serde_json::from_str(&stdout(&o)).unwrap();
    let p = read_f32s(&outputs);
    let classes = p.len() / x.nrows();
    (
        Array2::from_shape_vec((x.nrows(), classes), p).unwrap(),
        report,
    )
}

fn assert_close(ours: &Array2<f32>, theirs: &Array2<f32>, what: &str) {
    assert_eq!(ours.dim(), theirs.dim(), "{what}");
    let worst = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "{what}: probabilities differ by {worst}");
    let argmax = |p: &Array2<f32>| -> Vec<usize> {
        p.axis_iter(Axis(0)).map(mlp_core::loss::argmax).collect()
    };
    assert_eq!(argmax(ours), argmax(theirs), "{what}: predicted classes");
}

#[test]
fn every_activation_exports_to_an_onnx_model_onnxruntime_runs_like_ours() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    // Image-like rows: about half the pixels 0.
    let x = Array2::from_shape_simple_fn((300, 784), || {
        if rng.random_bool(0.5) {
            0.0
        } else {
            rng.random_range(0.0..1.0)
        }
    });
    let names: Vec<String> = (0..10).map(|c| format!("class {c}")).collect();
    for activation in Activation::ALL {
        let mut model = Mlp::new(Shape::fashion_mnist(40), activation, &mut rng).unwrap();
        // Non-zero biases, so that a swapped or missing bias shows.
        model
            .b1
            .iter_mut()
            .for_each(|b| *b = rng.random_range(-0.5..0.5));
        model
            .b2
            .iter_mut()
            .for_each(|b| *b = rng.random_range(-0.5..0.5));
        let file = tmp.path().join(format!("{activation}.msgpack"));
        mlp_train::save_model(&file, &model, &names).unwrap();
        let (theirs, report) = run_in_onnxruntime(&python, &file, &x, tmp.path());
        assert_close(&probabilities(&model, &x), &theirs, activation.name());
        assert_eq!(report["ir_version"], 7);
        assert_eq!(report["opset"], serde_json::json!([13]));
        assert_eq!(
            report["inputs"],
            serde_json::json!([["image", ["N", 784], "tensor(float)"]])
        );
        assert_eq!(
            report["outputs"],
            serde_json::json!([["probabilities", ["N", 10], "tensor(float)"]])
        );
        let op = match activation {
            Activation::Relu => "Relu",
            Activation::LeakyRelu => "LeakyRelu",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
        };
        assert_eq!(
            report["ops"],
            serde_json::json!(["Gemm", op, "Gemm", "Softmax"])
        );
        let metadata = &report["metadata"];
        assert_eq!(metadata["activation"], activation.name());
        assert_eq!(
            metadata["class_names"],
            serde_json::to_string(&names).unwrap()
        );
    }
}

#[test]
fn the_shipped_model_in_onnxruntime_classifies_the_test_set_as_mlp_test_does() {
    let Some(python) = python() else { return };
    let Some(dir) = real_data_dir() else {
        eprintln!("{SKIPPED_NO_DATA}");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let model_file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fmnist-mlp-784-128-10.msgpack");
    let model = mlp_train::load_model(&model_file).unwrap().model;
    let data = fmnist_data::load_fashion_mnist(&dir, fmnist_data::Verify::Catalogue).unwrap();
    let x = Array2::from_shape_vec(
        (data.test.len(), 784),
        data.test
            .pixels()
            .iter()
            .map(|&b| mlp_train::PIXEL_VALUES[b as usize])
            .collect(),
    )
    .unwrap();
    let (theirs, _) = run_in_onnxruntime(&python, &model_file, &x, tmp.path());
    assert_close(&probabilities(&model, &x), &theirs, "the shipped model");

    // `mlp test`'s count of correct answers, from onnxruntime's predictions.
    let o = mlp(&[
        "test",
        "--model",
        model_file.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let correct = theirs
        .axis_iter(Axis(0))
        .zip(data.test.labels())
        .filter(|(p, y)| mlp_core::loss::argmax(p.view()) == **y as usize)
        .count();
    assert_eq!(report["correct"], correct);
}

/// A model file in a run folder carries its training settings into the ONNX metadata.
#[test]
fn a_run_folders_settings_go_into_the_onnx_metadata() {
    let Some(python) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 20);
    let run = tmp.path().join("run");
    let o = mlp(&[
        "train",
        "--data-dir",
        data.to_str().unwrap(),
        "--allow-unverified",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--val-size",
        "20",
        "--quiet",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let x = Array2::from_elem((3, SIDE * SIDE), 0.5f32);
    let (_, report) = run_in_onnxruntime(&python, &run.join("model.msgpack"), &x, tmp.path());
    let training: serde_json::Value =
        serde_json::from_str(report["metadata"]["training"].as_str().unwrap()).unwrap();
    assert_eq!(training["hidden"], 8);
    assert_eq!(training["epochs"], 2);
    assert_eq!(report["metadata"]["val_size"], "20");
}
