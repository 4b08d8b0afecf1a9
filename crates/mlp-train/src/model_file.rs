//! The model file: a trained [`Mlp`] with everything needed to use it, in MessagePack.
//!
//! The file is a MessagePack map (named fields, so it stays readable by any MessagePack tool):
//! ```text
//! magic: "fmnist-mlp model"   version: 1
//! shape: {inputs, hidden, classes}   activation: "relu" | "leaky_relu" | "tanh" | "sigmoid"
//! class_names: [string]       w1, b1, w2, b2: [f32], row-major
//! ```
//! Loading reads `magic` and `version` first, so a file that is not a model, or a model from
//! another format version, gets a precise message rather than a decoding error.

use std::path::{Path, PathBuf};

use mlp_core::{Activation, Mlp, ModelError, Shape};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::fsio::{WriteError, write_atomic};

/// The value of the `magic` field.
pub const MODEL_MAGIC: &str = "fmnist-mlp model";
/// The format version this build writes and reads.
pub const MODEL_FORMAT_VERSION: u32 = 1;

/// A model with its class names, as stored in a model file.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedModel {
    /// The network.
    pub model: Mlp,
    /// Names of the output classes, in label order (may be empty).
    pub class_names: Vec<String>,
}

/// A model file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a model file at all.
    #[error("{}: not an fmnist-mlp model file (expected the model.msgpack that `mlp train` writes)", path.display())]
    NotAModel {
        /// The file.
        path: PathBuf,
    },
    /// The file is a model of a format version this build does not read.
    #[error(
        "{}: model format version {found}, but this build reads version {supported}; \
         use the mlp version that wrote it, or retrain",
        path.display()
    )]
    Version {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The file claims to be a model but its content is damaged.
    #[error("{}: damaged model file: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        detail: String,
    },
    /// The parameters do not form a valid network (wrong sizes, NaN or infinite values).
    #[error("{}: invalid model: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ModelError,
    },
}

#[derive(Serialize, Deserialize)]
struct ModelRecord {
    magic: String,
    version: u32,
    shape: Shape,
    activation: Activation,
    class_names: Vec<String>,
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

/// Encodes a model as model-file bytes.
pub fn model_to_bytes(model: &Mlp, class_names: &[String]) -> Vec<u8> {
    let [w1, b1, w2, b2] = model.named_parameters().map(|(_, v)| v.to_vec());
    let record = ModelRecord {
        magic: MODEL_MAGIC.to_owned(),
        version: MODEL_FORMAT_VERSION,
        shape: model.shape(),
        activation: model.activation,
        class_names: class_names.to_vec(),
        w1,
        b1,
        w2,
        b2,
    };
    rmp_serde::to_vec_named(&record).expect("a model record always serialises")
}

/// Decodes model-file bytes; `path` is only used in error messages.
pub fn model_from_bytes(bytes: &[u8], path: &Path) -> Result<SavedModel, ModelFileError> {
    let path = path.to_owned();
    match envelope(bytes, MODEL_MAGIC, MODEL_FORMAT_VERSION) {
        Envelope::Current => {}
        Envelope::OtherVersion(found) => {
            return Err(ModelFileError::Version {
                path,
                found,
                supported: MODEL_FORMAT_VERSION,
            });
        }
        Envelope::Foreign => return Err(ModelFileError::NotAModel { path }),
    }
    let r: ModelRecord = rmp_serde::from_slice(bytes).map_err(|e| ModelFileError::Corrupt {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let Shape {
        inputs,
        hidden,
        classes,
    } = r.shape;
    let invalid = |source| ModelFileError::Invalid {
        path: path.clone(),
        source,
    };
    let matrix = |name, rows: usize, cols: usize, v: Vec<f32>| {
        let found = v.len();
        Array2::from_shape_vec((rows, cols), v).map_err(|_| {
            invalid(ModelError::ShapeMismatch {
                name,
                found: vec![found],
                expected: vec![rows, cols],
            })
        })
    };
    let w1 = matrix("w1", inputs, hidden, r.w1)?;
    let w2 = matrix("w2", hidden, classes, r.w2)?;
    let model = Mlp::from_parts(w1, Array1::from(r.b1), w2, Array1::from(r.b2), r.activation)
        .map_err(invalid)?;
    Ok(SavedModel {
        model,
        class_names: r.class_names,
    })
}

/// What the first two entries of a file say it is.
pub(crate) enum Envelope {
    /// The expected kind of file, in the version this build reads.
    Current,
    /// The expected kind of file, in another version.
    OtherVersion(u32),
    /// Some other file.
    Foreign,
}

/// Classifies `bytes` by their `magic` and `version` entries against the expected ones,
/// without decoding the rest, so that a damaged or newer file is still recognised for what
/// it is. Model files and checkpoints share this layout.
pub(crate) fn envelope(bytes: &[u8], magic: &str, version: u32) -> Envelope {
    match read_envelope(bytes) {
        Some((m, v)) if m == magic && v == version => Envelope::Current,
        Some((m, v)) if m == magic => Envelope::OtherVersion(v),
        _ => Envelope::Foreign,
    }
}

/// Reads `magic` and `version`, the first two entries of the map.
fn read_envelope(bytes: &[u8]) -> Option<(&str, u32)> {
    let mut rd = bytes;
    if rmp::decode::read_map_len(&mut rd).ok()? < 2 {
        return None;
    }
    let (key, rest) = rmp::decode::read_str_from_slice(rd).ok()?;
    let (magic, rest) = rmp::decode::read_str_from_slice(rest).ok()?;
    let (key2, mut rest) = rmp::decode::read_str_from_slice(rest).ok()?;
    let version = rmp::decode::read_int(&mut rest).ok()?;
    (key == "magic" && key2 == "version").then_some((magic, version))
}

/// Writes a model file atomically.
pub fn save_model(path: &Path, model: &Mlp, class_names: &[String]) -> Result<(), WriteError> {
    write_atomic(path, &model_to_bytes(model, class_names))
}

/// Reads and checks a model file.
pub fn load_model(path: &Path) -> Result<SavedModel, ModelFileError> {
    let bytes = std::fs::read(path).map_err(|source| ModelFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    model_from_bytes(&bytes, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn model() -> Mlp {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        Mlp::new(
            Shape {
                inputs: 3,
                hidden: 4,
                classes: 2,
            },
            Activation::Tanh,
            &mut rng,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_is_exact() {
        let m = model();
        let names = vec!["a".to_owned(), "b".to_owned()];
        let back = model_from_bytes(&model_to_bytes(&m, &names), Path::new("m")).unwrap();
        assert_eq!(
            back,
            SavedModel {
                model: m,
                class_names: names
            }
        );
    }

    #[test]
    fn other_msgpack_is_not_a_model() {
        let bytes =
            rmp_serde::to_vec_named(&std::collections::BTreeMap::from([("magic", "x")])).unwrap();
        assert!(matches!(
            model_from_bytes(&bytes, Path::new("m")),
            Err(ModelFileError::NotAModel { .. })
        ));
        assert!(matches!(
            model_from_bytes(b"hello", Path::new("m")),
            Err(ModelFileError::NotAModel { .. })
        ));
    }

    #[test]
    fn future_version_gets_a_hint() {
        #[derive(Serialize)]
        struct Future {
            magic: &'static str,
            version: u32,
            layers: Vec<u32>,
        }
        let bytes = rmp_serde::to_vec_named(&Future {
            magic: MODEL_MAGIC,
            version: 2,
            layers: vec![1, 2],
        })
        .unwrap();
        let err = model_from_bytes(&bytes, Path::new("m.msgpack")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m.msgpack: model format version 2, but this build reads version 1; use the mlp version that wrote it, or retrain"
        );
    }

    #[test]
    fn truncated_file_is_refused() {
        let bytes = model_to_bytes(&model(), &[]);
        let err = model_from_bytes(&bytes[..bytes.len() - 7], Path::new("m")).unwrap_err();
        assert!(
            matches!(
                err,
                ModelFileError::Corrupt { .. } | ModelFileError::NotAModel { .. }
            ),
            "{err}"
        );
    }
}
