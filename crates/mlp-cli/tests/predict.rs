//! `mlp predict` with the shipped model: pictures of any size and format, and the test set.

mod common;

use std::path::PathBuf;

use common::*;
use image::{GrayImage, Luma, Rgb, RgbImage};

fn model() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fmnist-mlp-784-128-10.msgpack")
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn pictures_are_classified_and_an_unreadable_file_is_one_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    // A dark ellipse on white (colour PNG), and a light rectangle on black (grey JPEG).
    let png = tmp.path().join("dark-on-white.png");
    RgbImage::from_fn(200, 150, |x, y| {
        let inside = ((x as f32 - 100.0) / 40.0).powi(2) + ((y as f32 - 75.0) / 70.0).powi(2) < 1.0;
        if inside {
            Rgb([40, 30, 30])
        } else {
            Rgb([250, 250, 245])
        }
    })
    .save(&png)
    .unwrap();
    let jpg = tmp.path().join("light-on-black.jpg");
    GrayImage::from_fn(90, 120, |x, y| {
        Luma([if (20..70).contains(&x) && (10..110).contains(&y) {
            220
        } else {
            5
        }])
    })
    .save(&jpg)
    .unwrap();
    let junk = tmp.path().join("notes.png");
    std::fs::write(&junk, b"not a picture").unwrap();

    let args = [
        "predict",
        "--model",
        &model(),
        "--json",
        png.to_str().unwrap(),
        junk.to_str().unwrap(),
        jpg.to_str().unwrap(),
    ];
    let o = mlp(&args);
    assert_eq!(
        o.status.code(),
        Some(2),
        "a failed file makes the exit code 2"
    );
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("notes.png: not a readable PNG or JPEG image"),
        "{err}"
    );

    let predictions: Vec<serde_json::Value> = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(predictions.len(), 2, "the other files are still classified");
    for p in &predictions {
        let probs: Vec<f64> = p["top3"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["probability"].as_f64().unwrap())
            .collect();
        assert_eq!(probs.len(), 3);
        assert!(
            probs.windows(2).all(|w| w[0] >= w[1]) && probs.iter().sum::<f64>() <= 1.0 + 1e-6,
            "{p}"
        );
    }
    assert!(
        predictions[0]["image"]
            .as_str()
            .unwrap()
            .ends_with("dark-on-white.png")
    );
}

#[test]
fn a_test_image_is_shown_with_its_true_class() {
    let data = real_data_dir();
    let Some(data) = data else {
        eprintln!("{SKIPPED_NO_DATA}");
        return;
    };
    let o = mlp(&[
        "predict",
        "--model",
        &model(),
        "--data-dir",
        data.to_str().unwrap(),
        "--test-index",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Test image 0 is an ankle boot; the shipped model is 99.8 % sure of it.
    assert!(
        stdout(&o).starts_with("test image 0 (true class Ankle boot): Ankle boot 0.99"),
        "{}",
        stdout(&o)
    );
}
