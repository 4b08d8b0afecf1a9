//! PyTorch's layout of safetensors files, both ways: `mlp export --layout torch` writes the
//! state dict of `nn.Sequential(nn.Linear, activation, nn.Linear)`, and `mlp test` and
//! `mlp predict` read such a file, from us or from PyTorch (no activation in its metadata:
//! `--activation`). PyTorch's side is `tests/torch_layout.py` (numpy and the `safetensors`
//! package, with PyTorch's arithmetic: PyTorch itself is too large for the test
//! environment); see `common::python_with`.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use mlp_core::{Activation, Mlp, Shape};
use ndarray::Array2;
use rand::{RngExt, SeedableRng};

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/torch_layout.py")
}

fn assert_close(ours: &[f32], theirs: &[f32], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "{what}");
    let worst = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst <= 1e-5, "{what}: probabilities differ by {worst}");
}

fn image_rows(n: usize, width: usize, seed: u64) -> Array2<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((n, width), || {
        if rng.random_bool(0.5) {
            0.0
        } else {
            rng.random_range(0.0..1.0)
        }
    })
}

#[test]
fn a_torch_layout_export_is_the_state_dict_of_nn_sequential() {
    let Some(python) = python_with("numpy, safetensors") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let x = image_rows(200, 784, 5);
    std::fs::write(tmp.path().join("x.f32"), f32_bytes(x.iter().copied())).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    for activation in Activation::ALL {
        let mut model = Mlp::new(Shape::fashion_mnist(24), activation, &mut rng).unwrap();
        model
            .b1
            .iter_mut()
            .for_each(|b| *b = rng.random_range(-0.5..0.5));
        let file = tmp.path().join("m.msgpack");
        mlp_train::save_model(&file, &model, &[]).unwrap();
        let torch = tmp.path().join("m.safetensors");
        let o = mlp(&[
            "export",
            "--model",
            file.to_str().unwrap(),
            "--format",
            "safetensors",
            "--layout",
            "torch",
            "--out",
            torch.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = Command::new(&python)
            .arg(script())
            .args(["read", torch.to_str().unwrap()])
            .args([tmp.path().join("x.f32"), tmp.path().join("p.f32")])
            .output()
            .unwrap();
        assert!(o.status.success(), "torch_layout.py: {}", stderr(&o));
        let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(
            report["tensors"],
            serde_json::json!({
                "0.bias": ["float32", [24]], "0.weight": ["float32", [24, 784]],
                "2.bias": ["float32", [10]], "2.weight": ["float32", [10, 24]],
            })
        );
        assert_eq!(report["metadata"]["layout"], "torch");
        let theirs = read_f32s(&tmp.path().join("p.f32"));
        assert_close(
            &probabilities(&model, &x).into_iter().collect::<Vec<_>>(),
            &theirs,
            activation.name(),
        );
        // And back: the same parameters, bit for bit.
        let back = mlp_train::model_from_safetensors(&std::fs::read(&torch).unwrap(), &torch, None)
            .unwrap()
            .0;
        assert_eq!(back.model, model);
    }
}

#[test]
fn a_network_saved_by_pytorch_is_tested_and_predicted_with_its_activation_given() {
    let Some(python) = python_with("numpy, safetensors") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = write_dataset(tmp.path(), 100, 40);
    let inputs = SIDE * SIDE;
    let x = image_rows(50, inputs, 7);
    std::fs::write(tmp.path().join("x.f32"), f32_bytes(x.iter().copied())).unwrap();
    let file = tmp.path().join("from_torch.safetensors");
    let o = Command::new(&python)
        .arg(script())
        .args([
            "write",
            file.to_str().unwrap(),
            &inputs.to_string(),
            "12",
            "10",
        ])
        .args([tmp.path().join("x.f32"), tmp.path().join("p.f32")])
        .output()
        .unwrap();
    assert!(o.status.success(), "torch_layout.py: {}", stderr(&o));

    // Read as PyTorch computes it.
    let bytes = std::fs::read(&file).unwrap();
    let (saved, layout) =
        mlp_train::model_from_safetensors(&bytes, &file, Some(Activation::Tanh)).unwrap();
    assert_eq!(layout, mlp_train::Layout::Torch);
    assert_close(
        &probabilities(&saved.model, &x)
            .into_iter()
            .collect::<Vec<_>>(),
        &read_f32s(&tmp.path().join("p.f32")),
        "read back",
    );

    let (model, data_dir) = (file.to_str().unwrap(), data.to_str().unwrap());
    let test = |extra: &[&str]| {
        let mut args = vec![
            "test",
            "--model",
            model,
            "--data-dir",
            data_dir,
            "--allow-unverified",
            "--json",
        ];
        args.extend_from_slice(extra);
        mlp(&args)
    };
    let o = test(&["--activation", "tanh"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(report["count"], 40);
    // Without its activation, one line saying what to give.
    let o = test(&[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "from_torch.safetensors: no activation in the metadata; give it (--activation relu, …)"
        ) && stderr(&o).trim_end().lines().count() == 1,
        "{}",
        stderr(&o)
    );
    // `mlp predict` on a picture, with a 784-input network from PyTorch.
    let wide = tmp.path().join("wide.safetensors");
    let x784 = image_rows(20, 784, 8);
    std::fs::write(tmp.path().join("x784.f32"), f32_bytes(x784.iter().copied())).unwrap();
    let o = Command::new(&python)
        .arg(script())
        .args(["write", wide.to_str().unwrap(), "784", "12", "10"])
        .args([tmp.path().join("x784.f32"), tmp.path().join("p784.f32")])
        .output()
        .unwrap();
    assert!(o.status.success(), "torch_layout.py: {}", stderr(&o));
    let bytes = std::fs::read(&wide).unwrap();
    let (saved, _) =
        mlp_train::model_from_safetensors(&bytes, &wide, Some(Activation::Tanh)).unwrap();
    assert_close(
        &probabilities(&saved.model, &x784)
            .into_iter()
            .collect::<Vec<_>>(),
        &read_f32s(&tmp.path().join("p784.f32")),
        "784 inputs",
    );
    let picture = tmp.path().join("shirt.png");
    image::GrayImage::from_fn(28, 28, |x, y| image::Luma([((x * 9 + y * 5) % 256) as u8]))
        .save(&picture)
        .unwrap();
    let o = mlp(&[
        "predict",
        "--model",
        wide.to_str().unwrap(),
        "--activation",
        "tanh",
        "--json",
        picture.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}
