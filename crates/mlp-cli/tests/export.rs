//! `mlp export`: safetensors and npz files that numpy and PyTorch load, and a round trip back
//! to the native model file that changes no bit.

mod common;

use std::io::Read;
use std::path::Path;

use common::*;

fn trained_model(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = write_dataset(root, 160, 40);
    let out = root.join("run");
    let o = mlp(&quick_train_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    (data, out.join("model.msgpack"))
}

fn export(model: &Path, format: &str, out: &Path) {
    let o = mlp(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--format",
        format,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn safetensors_round_trip_is_bit_identical_and_tests_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, model) = trained_model(tmp.path());
    let st = tmp.path().join("w.safetensors");
    let back = tmp.path().join("back.msgpack");
    export(&model, "safetensors", &st);
    export(&st, "msgpack", &back);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&model).unwrap()
    );

    let test = |m: &Path| {
        let o = mlp(&[
            "test",
            "--model",
            m.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--allow-unverified",
            "--json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let mut v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        v.as_object_mut().unwrap().remove("model");
        v
    };
    assert_eq!(test(&st), test(&model), "identical predictions");
}

#[test]
fn npz_is_a_zip_of_npy_arrays_with_the_right_shapes_and_dtypes() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, model) = trained_model(tmp.path());
    let npz = tmp.path().join("w.npz");
    export(&model, "npz", &npz);
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&npz).unwrap()).unwrap();
    // 16 pixels (4×4 synthetic images), 16 hidden units, 10 classes.
    for (name, descr, shape, bytes) in [
        ("w1.npy", "<f4", "(16, 16)", 16 * 16 * 4),
        ("b1.npy", "<f4", "(16,)", 16 * 4),
        ("w2.npy", "<f4", "(16, 10)", 16 * 10 * 4),
        ("b2.npy", "<f4", "(10,)", 10 * 4),
        ("activation.npy", "<U4", "()", 4 * 4),
        ("class_names.npy", "<U11", "(10,)", 10 * 11 * 4),
    ] {
        let mut entry = zip
            .by_name(name)
            .unwrap_or_else(|_| panic!("{name} missing"));
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        assert_eq!(&content[..8], b"\x93NUMPY\x01\x00", "{name}");
        let header_len = u16::from_le_bytes([content[8], content[9]]) as usize;
        assert_eq!(
            (10 + header_len) % 64,
            0,
            "{name}: header padded to 64 bytes"
        );
        let header = std::str::from_utf8(&content[10..10 + header_len]).unwrap();
        assert!(
            header.contains(&format!("'descr': '{descr}'"))
                && header.contains(&format!("'shape': {shape}")),
            "{name}: {header}"
        );
        assert_eq!(content.len() - 10 - header_len, bytes, "{name}");
    }

    // Where numpy is installed, let it load the file too.
    let check = "import numpy as np, sys; z = np.load(sys.argv[1]); \
                 assert z['w1'].shape == (16, 16) and z['w1'].dtype == np.float32; \
                 assert str(z['activation']) == 'relu' and z['class_names'][0] == 'T-shirt/top'";
    match std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
    {
        Ok(s) if s.success() => {
            let o = std::process::Command::new("python3")
                .args(["-c", check, npz.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        _ => eprintln!("numpy not installed: the npz was checked structurally only"),
    }
}

#[test]
fn exporting_something_that_is_not_a_model_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"not safetensors at all").unwrap();
    let out = tmp.path().join("o.npz");
    let o = mlp(&[
        "export",
        "--model",
        junk.to_str().unwrap(),
        "--format",
        "npz",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: ")
            && stderr(&o).contains("junk.safetensors: not a safetensors file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1);
    assert!(!out.exists());
}
