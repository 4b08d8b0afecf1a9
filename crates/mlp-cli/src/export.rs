//! Weights for other tools, and back: safetensors (PyTorch, `safetensors.numpy.load_file`),
//! npz (`numpy.load`), the native model file, and an ONNX graph (`onnx.rs`).
//!
//! Both foreign formats hold W1 (inputs × hidden), b1, W2 (hidden × classes) and b2 as
//! little-endian f32 tensors named `w1`, `b1`, `w2`, `b2`, row-major, like the model file.
//! safetensors carries the rest as string metadata (`format`, `activation`, `inputs`,
//! `hidden`, `classes`, and `class_names` as a JSON list); npz as arrays `activation` (a
//! string) and `class_names` (strings).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use clap::ValueEnum;
use mlp_core::{Activation, Mlp};
use mlp_train::{SavedModel, load_model, model_file::model_to_bytes, write_atomic};
use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

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

/// Reads a model file in the native format, or safetensors when the name ends in
/// `.safetensors`.
pub fn load_any(path: &Path) -> anyhow::Result<SavedModel> {
    if path.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors(path)
    } else {
        Ok(load_model(path)?)
    }
}

/// Writes `saved` (read from `source`) to `out` in `format`, atomically.
pub fn export(saved: &SavedModel, source: &Path, format: Format, out: &Path) -> anyhow::Result<()> {
    let bytes = match format {
        Format::Safetensors => to_safetensors(saved)?,
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

fn to_safetensors(saved: &SavedModel) -> anyhow::Result<Vec<u8>> {
    let s = saved.model.shape();
    let metadata = HashMap::from([
        ("format".to_owned(), "fmnist-mlp".to_owned()),
        (
            "activation".to_owned(),
            saved.model.activation.name().to_owned(),
        ),
        ("inputs".to_owned(), s.inputs.to_string()),
        ("hidden".to_owned(), s.hidden.to_string()),
        ("classes".to_owned(), s.classes.to_string()),
        (
            "class_names".to_owned(),
            serde_json::to_string(&saved.class_names)?,
        ),
    ]);
    let tensors = tensors(&saved.model);
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| Ok((*name, TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, Some(metadata))?)
}

fn load_safetensors(path: &Path) -> anyhow::Result<SavedModel> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let bad = |what: String| {
        anyhow!(
            "{}: not an fmnist-mlp safetensors file: {what}",
            path.display()
        )
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let activation: Activation = meta
        .get("activation")
        .ok_or_else(|| bad("no activation in the metadata".into()))?
        .parse()?;
    let class_names: Vec<String> = meta
        .get("class_names")
        .map_or(Ok(Vec::new()), |j| serde_json::from_str(j))?;
    let tensor = |name: &str| -> anyhow::Result<(Vec<usize>, Vec<f32>)> {
        let t = st
            .tensor(name)
            .map_err(|_| bad(format!("no tensor {name}")))?;
        if t.dtype() != Dtype::F32 {
            bail!(
                "{}: tensor {name} is {:?}, expected F32",
                path.display(),
                t.dtype()
            );
        }
        let values = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.shape().to_vec(), values))
    };
    let matrix = |name: &str| -> anyhow::Result<Array2<f32>> {
        let (shape, values) = tensor(name)?;
        let [rows, cols] = shape[..] else {
            bail!(
                "{}: tensor {name} has shape {shape:?}, expected 2 dimensions",
                path.display()
            )
        };
        Ok(Array2::from_shape_vec((rows, cols), values)?)
    };
    let vector = |name: &str| -> anyhow::Result<Array1<f32>> {
        let (shape, values) = tensor(name)?;
        if shape.len() != 1 {
            bail!(
                "{}: tensor {name} has shape {shape:?}, expected 1 dimension",
                path.display()
            );
        }
        Ok(Array1::from(values))
    };
    let model = Mlp::from_parts(
        matrix("w1")?,
        vector("b1")?,
        matrix("w2")?,
        vector("b2")?,
        activation,
    )
    .map_err(|e| anyhow!("{}: invalid model: {e}", path.display()))?;
    Ok(SavedModel { model, class_names })
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
