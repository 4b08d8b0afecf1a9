//! Weights for other tools, and back: safetensors (PyTorch, `safetensors.numpy.load_file`),
//! npz (`numpy.load`), the native model file, and an ONNX graph (`onnx.rs`).
//!
//! npz holds W1 (inputs × hidden), b1, W2 (hidden × classes) and b2 as little-endian f32
//! arrays `w1`, `b1`, `w2`, `b2`, row-major like the model file, and arrays `activation` (a
//! string) and `class_names` (strings). safetensors files, in our layout or PyTorch's, are
//! mlp-train's (`mlp_train::safetensors_file`).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use clap::ValueEnum;
use fmnist_data::CLASS_NAMES;
use mlp_core::{Activation, Mlp};
use mlp_train::{
    Layout, SavedModel, load_model, model_file::model_to_bytes, model_from_safetensors,
    model_to_safetensors, write_atomic,
};

/// The formats `mlp export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A safetensors file.
    Safetensors,
    /// A numpy .npz archive of .npy arrays.
    Npz,
    /// The native MessagePack model file.
    Msgpack,
    /// An ONNX model (opset 13): the whole network, softmax included, for onnxruntime.
    Onnx,
}

/// Reads a model file in the native format, or safetensors (either layout) when the name
/// ends in `.safetensors`; `activation` is for safetensors files without one in their
/// metadata (PyTorch's own), and must agree with it otherwise.
pub fn load_any(path: &Path, activation: Option<Activation>) -> anyhow::Result<SavedModel> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let (mut saved, _) = model_from_safetensors(&bytes, path, activation)?;
        // A file from PyTorch names no classes: Fashion-MNIST's, if it has ten outputs.
        if saved.class_names.is_empty() && saved.model.shape().classes == CLASS_NAMES.len() {
            saved.class_names = CLASS_NAMES.iter().map(|s| s.to_string()).collect();
        }
        Ok(saved)
    } else if activation.is_some() {
        bail!(
            "--activation: {} is a model file, which names its own activation (the flag is for .safetensors files)",
            path.display()
        )
    } else {
        Ok(load_model(path)?)
    }
}

/// Writes `saved` (read from `source`) to `out` in `format` (safetensors in `layout`),
/// atomically.
pub fn export(
    saved: &SavedModel,
    source: &Path,
    format: Format,
    layout: Layout,
    out: &Path,
) -> anyhow::Result<()> {
    if layout == Layout::Torch && format != Format::Safetensors {
        bail!("--layout torch is for --format safetensors");
    }
    let bytes = match format {
        Format::Safetensors => model_to_safetensors(saved, layout),
        Format::Npz => to_npz(saved)?,
        Format::Msgpack => model_to_bytes(&saved.model, &saved.class_names),
        Format::Onnx => crate::onnx::to_onnx(saved, &training_settings(source)),
    };
    Ok(write_atomic(out, &bytes)?)
}

/// The training settings of the run folder holding the model file `source`, from its
/// config.json (`train` and `shape`), as metadata; none for a model outside a run folder.
fn training_settings(source: &Path) -> Vec<(String, String)> {
    let config = source.with_file_name("config.json");
    let Some(run) = std::fs::read(&config)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    else {
        return Vec::new();
    };
    let mut settings = Vec::new();
    if let Some(train) = run.get("train") {
        settings.push(("training".to_owned(), train.to_string()));
    }
    for key in ["best_epoch", "best_val_acc", "val_size", "mlp_version"] {
        if let Some(v) = run.get(key).filter(|v| !v.is_null()) {
            settings.push((key.to_owned(), v.to_string()));
        }
    }
    settings
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn tensors(model: &Mlp) -> [(&'static str, Vec<usize>, Vec<u8>); 4] {
    let s = model.shape();
    let [(_, w1), (_, b1), (_, w2), (_, b2)] = model.named_parameters();
    [
        ("w1", vec![s.inputs, s.hidden], le_bytes(w1)),
        ("b1", vec![s.hidden], le_bytes(b1)),
        ("w2", vec![s.hidden, s.classes], le_bytes(w2)),
        ("b2", vec![s.classes], le_bytes(b2)),
    ]
}

/// A .npy file (format version 1.0): magic, header dict padded to 64 bytes, raw data.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape = match shape {
        [] => "()".to_owned(),
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 6 + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

/// Strings as a numpy unicode array: UTF-32LE, each padded to the longest.
fn npy_strings(strings: &[&str], shape: &[usize]) -> Vec<u8> {
    let width = strings
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(1);
    let mut data = Vec::new();
    for s in strings {
        let chars: Vec<char> = s.chars().collect();
        for k in 0..width {
            data.extend_from_slice(&chars.get(k).map_or(0, |&c| c as u32).to_le_bytes());
        }
    }
    npy(&format!("<U{width}"), shape, &data)
}

fn to_npz(saved: &SavedModel) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut add = |name: &str, bytes: Vec<u8>| -> anyhow::Result<()> {
        zip.start_file(format!("{name}.npy"), options)?;
        zip.write_all(&bytes)?;
        Ok(())
    };
    for (name, shape, data) in tensors(&saved.model) {
        add(name, npy("<f4", &shape, &data))?;
    }
    add(
        "activation",
        npy_strings(&[saved.model.activation.name()], &[]),
    )?;
    let names: Vec<&str> = saved.class_names.iter().map(String::as_str).collect();
    add("class_names", npy_strings(&names, &[names.len()]))?;
    Ok(zip.finish()?.into_inner())
}
