//! The models shipped in models/ still load and score what README says: the default
//! recipe's, in both forms, which is also what the default recipe trains, byte for byte, on
//! the best SIMD level of whatever machine runs the tests (real_data.rs checks that every
//! level trains the same bits); and `--recipe best`'s, as safetensors.

mod common;

use std::path::PathBuf;

use common::*;

/// The test accuracy README states for the shipped model.
const README_ACCURACY: f64 = 0.8881;

/// The shipped `--recipe best` model (seed 0) and the test accuracy README states for it.
const BEST_MODEL: &str = "fmnist-mlp-784-1024-10-best.safetensors";
const README_BEST_ACCURACY: f64 = 0.9059;

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// `mlp test`'s accuracy for the shipped model `file` on the real data in `data`.
fn test_accuracy(file: &str, data: &std::path::Path) -> f64 {
    let model = models().join(file);
    let o = mlp(&[
        "test",
        "--model",
        model.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    report["accuracy"].as_f64().expect("an accuracy")
}

fn readme() -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .unwrap()
}

#[test]
fn the_safetensors_form_is_the_same_model_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let back = tmp.path().join("back.msgpack");
    let st = models().join("fmnist-mlp-784-128-10.safetensors");
    let o = mlp(&[
        "export",
        "--model",
        st.to_str().unwrap(),
        "--format",
        "msgpack",
        "--out",
        back.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(back).unwrap(),
        std::fs::read(models().join("fmnist-mlp-784-128-10.msgpack")).unwrap()
    );
}

#[test]
fn the_shipped_model_scores_what_readme_says() {
    let Some(data) = real_data_dir() else {
        eprintln!("{SKIPPED_NO_DATA}");
        return;
    };
    for file in [
        "fmnist-mlp-784-128-10.msgpack",
        "fmnist-mlp-784-128-10.safetensors",
    ] {
        assert_eq!(test_accuracy(file, &data), README_ACCURACY, "{file}");
    }
    assert!(
        readme().contains(&format!("test accuracy {README_ACCURACY}")),
        "README states another accuracy"
    );
}

#[test]
fn the_shipped_best_model_scores_what_readme_says() {
    let Some(data) = real_data_dir() else {
        eprintln!("{SKIPPED_NO_DATA}");
        return;
    };
    assert_eq!(test_accuracy(BEST_MODEL, &data), README_BEST_ACCURACY);
    assert!(
        readme().contains(&format!(
            "`--recipe best`: test accuracy {README_BEST_ACCURACY}"
        )),
        "README states another accuracy for the best recipe"
    );
}

/// The shipped model is the default recipe's, on every CPU and SIMD level: the same seed
/// gives the same bits everywhere (mlp_core::simd). Training it takes 10–20 s.
#[test]
fn the_default_recipe_trains_the_shipped_model_byte_for_byte() {
    let Some(data) = real_data_dir() else {
        eprintln!("{SKIPPED_NO_DATA}");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = mlp(&[
        "train",
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read(out.join("model.msgpack")).unwrap()
            == std::fs::read(models().join("fmnist-mlp-784-128-10.msgpack")).unwrap(),
        "the default recipe no longer trains models/fmnist-mlp-784-128-10.msgpack: if the \
         arithmetic changed on purpose, retrain models/ (README, Test section) and say why"
    );
}
