//! Models as safetensors files, in two layouts, both read back:
//!
//! - **ours**: `w1` (inputs × hidden), `b1`, `w2` (hidden × classes), `b2`, row-major as in
//!   the model file;
//! - **PyTorch's**: `0.weight` (hidden × inputs), `0.bias`, `2.weight` (classes × hidden),
//!   `2.bias`, the state dict of `nn.Sequential(nn.Linear(inputs, hidden), activation,
//!   nn.Linear(hidden, classes))` (a `Linear` computes x·Wᵀ + b, so its weights are ours
//!   transposed).
//!
//! Tensors are little-endian F32. The string metadata holds `format` = `fmnist-mlp`,
//! `layout` (`ours` or `torch`), `activation`, `inputs`, `hidden`, `classes` and
//! `class_names` (a JSON list). A file written by PyTorch itself may have no metadata: the
//! layout is recognised from the tensor names, and the activation is then the caller's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlp_core::{Activation, Mlp, ModelError};
use ndarray::{Array1, Array2};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::model_file::SavedModel;

/// Where the tensors of a model are, and how they are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `w1`, `b1`, `w2`, `b2`, as the model file has them.
    Ours,
    /// `0.weight`, `0.bias`, `2.weight`, `2.bias`, as PyTorch's `nn.Sequential` has them.
    Torch,
}

impl Layout {
    /// The names of W1, b1, W2 and b2 in this layout.
    pub fn names(self) -> [&'static str; 4] {
        match self {
            Self::Ours => ["w1", "b1", "w2", "b2"],
            Self::Torch => ["0.weight", "0.bias", "2.weight", "2.bias"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Torch => "torch",
        }
    }
}

/// A safetensors file that does not hold a network.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// Not a safetensors file, or a damaged one (its header lies about its tensors).
    #[error("{}: not a safetensors file: {reason}", path.display())]
    NotSafetensors {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Neither layout's tensors are there.
    #[error(
        "{}: no tensor {missing}: expected w1, b1, w2, b2 (ours) or 0.weight, 0.bias, 2.weight, 2.bias (PyTorch's nn.Sequential)",
        path.display()
    )]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The first tensor not found.
        missing: &'static str,
    },
    /// A tensor of another element type.
    #[error("{}: tensor {name} is {dtype}, expected F32", path.display())]
    WrongDtype {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: &'static str,
        /// Its element type.
        dtype: String,
    },
    /// A tensor whose shape does not fit the others'.
    #[error("{}: tensor {name} has shape {shape:?}, expected {expected}", path.display())]
    WrongShape {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// What the other tensors make it (e.g. `[128, 784]`, or "2 dimensions").
        expected: String,
    },
    /// The activation given is not the one the file records.
    #[error("{}: the file's activation is {recorded}, not the {given} asked for", path.display())]
    ActivationMismatch {
        /// The file.
        path: PathBuf,
        /// What its metadata says.
        recorded: String,
        /// What the caller asked for.
        given: Activation,
    },
    /// No activation in the metadata, and none given.
    #[error("{}: no activation in the metadata; give it (--activation relu, …)", path.display())]
    NoActivation {
        /// The file.
        path: PathBuf,
    },
    /// Metadata that cannot be read (an unknown activation, malformed class names).
    #[error("{}: metadata {key}: {reason}", path.display())]
    BadMetadata {
        /// The file.
        path: PathBuf,
        /// The entry.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The parameters do not form a network (NaN or infinite values).
    #[error("{}: {source}", path.display())]
    Model {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ModelError,
    },
}

/// The safetensors bytes of `saved` in `layout`.
pub fn model_to_safetensors(saved: &SavedModel, layout: Layout) -> Vec<u8> {
    let model = &saved.model;
    let s = model.shape();
    let metadata = HashMap::from([
        ("format".to_owned(), "fmnist-mlp".to_owned()),
        ("layout".to_owned(), layout.name().to_owned()),
        ("activation".to_owned(), model.activation.name().to_owned()),
        ("inputs".to_owned(), s.inputs.to_string()),
        ("hidden".to_owned(), s.hidden.to_string()),
        ("classes".to_owned(), s.classes.to_string()),
        (
            "class_names".to_owned(),
            serde_json::to_string(&saved.class_names).expect("strings serialise"),
        ),
    ]);
    let le = |values: &mut dyn Iterator<Item = f32>| -> Vec<u8> {
        values.flat_map(f32::to_le_bytes).collect()
    };
    let (w1, w2) = match layout {
        Layout::Ours => (model.w1.view(), model.w2.view()),
        Layout::Torch => (model.w1.t(), model.w2.t()),
    };
    let tensors = [
        (w1.shape().to_vec(), le(&mut w1.iter().copied())),
        (vec![s.hidden], le(&mut model.b1.iter().copied())),
        (w2.shape().to_vec(), le(&mut w2.iter().copied())),
        (vec![s.classes], le(&mut model.b2.iter().copied())),
    ];
    let views: Vec<(&str, TensorView)> = layout
        .names()
        .into_iter()
        .zip(&tensors)
        .map(|(name, (shape, data))| {
            let view = TensorView::new(Dtype::F32, shape.clone(), data).expect("sizes agree");
            (name, view)
        })
        .collect();
    safetensors::serialize(views, Some(metadata)).expect("in-memory serialisation")
}

/// Reads a network from safetensors `bytes` (of the file `path`, named in errors), in
/// either layout, recognised from the tensor names. The activation comes from the metadata
/// or from `activation` (PyTorch's files record none); if both name one, they must agree.
pub fn model_from_safetensors(
    bytes: &[u8],
    path: &Path,
    activation: Option<Activation>,
) -> Result<(SavedModel, Layout), SafetensorsError> {
    let not = |reason: String| SafetensorsError::NotSafetensors {
        path: path.to_owned(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| not(e.to_string()))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| not(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let layout = if st.tensor("w1").is_ok() {
        Layout::Ours
    } else {
        Layout::Torch
    };
    let [n_w1, n_b1, n_w2, n_b2] = layout.names();
    let tensor = |name: &'static str| -> Result<(Vec<usize>, Vec<f32>), SafetensorsError> {
        let t = st
            .tensor(name)
            .map_err(|_| SafetensorsError::MissingTensor {
                path: path.to_owned(),
                missing: name,
            })?;
        if t.dtype() != Dtype::F32 {
            return Err(SafetensorsError::WrongDtype {
                path: path.to_owned(),
                name,
                dtype: format!("{:?}", t.dtype()),
            });
        }
        let values = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.shape().to_vec(), values))
    };
    let wrong = |name, shape: &[usize], expected: String| SafetensorsError::WrongShape {
        path: path.to_owned(),
        name,
        shape: shape.to_vec(),
        expected,
    };
    let matrix = |name| -> Result<Array2<f32>, SafetensorsError> {
        let (shape, values) = tensor(name)?;
        match shape[..] {
            // (A 0 dimension would let another be anything: refused before ndarray sees it.)
            [rows, cols] if rows > 0 && cols > 0 => {
                Ok(Array2::from_shape_vec((rows, cols), values).expect("sized"))
            }
            [_, _] => Err(wrong(name, &shape, "no empty dimension".to_owned())),
            _ => Err(wrong(name, &shape, "2 dimensions".to_owned())),
        }
    };
    let vector = |name, len: usize| -> Result<Array1<f32>, SafetensorsError> {
        let (shape, values) = tensor(name)?;
        if shape != [len] {
            return Err(wrong(name, &shape, format!("[{len}]")));
        }
        Ok(Array1::from(values))
    };
    // Both layouts as ours: W1 (inputs × hidden), W2 (hidden × classes).
    let (w1, w2) = match layout {
        Layout::Ours => (matrix(n_w1)?, matrix(n_w2)?),
        Layout::Torch => (matrix(n_w1)?.reversed_axes(), matrix(n_w2)?.reversed_axes()),
    };
    let hidden = w1.ncols();
    if w2.nrows() != hidden {
        let expected = match layout {
            Layout::Ours => format!("[{hidden}, classes] (hidden is {hidden}, from {n_w1})"),
            Layout::Torch => format!("[classes, {hidden}] (hidden is {hidden}, from {n_w1})"),
        };
        return Err(wrong(
            n_w2,
            st.tensor(n_w2).expect("read").shape(),
            expected,
        ));
    }
    let (b1, b2) = (vector(n_b1, hidden)?, vector(n_b2, w2.ncols())?);

    let bad_meta = |key, reason: String| SafetensorsError::BadMetadata {
        path: path.to_owned(),
        key,
        reason,
    };
    let recorded = match meta.get("activation") {
        Some(name) => Some(
            name.parse::<Activation>()
                .map_err(|e| bad_meta("activation", e.to_string()))?,
        ),
        None => None,
    };
    let activation = match (activation, recorded) {
        (Some(given), Some(recorded)) if given != recorded => {
            return Err(SafetensorsError::ActivationMismatch {
                path: path.to_owned(),
                recorded: recorded.name().to_owned(),
                given,
            });
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(SafetensorsError::NoActivation {
                path: path.to_owned(),
            });
        }
    };
    let class_names = match meta.get("class_names") {
        Some(json) => {
            serde_json::from_str(json).map_err(|e| bad_meta("class_names", e.to_string()))?
        }
        None => Vec::new(),
    };
    // Parameters by our names; errors by the file's.
    let model = Mlp::from_parts(
        w1.as_standard_layout().into_owned(),
        b1,
        w2.as_standard_layout().into_owned(),
        b2,
        activation,
    )
    .map_err(|source| SafetensorsError::Model {
        path: path.to_owned(),
        source: match source {
            ModelError::NonFinite(ours) => {
                let k = ["w1", "b1", "w2", "b2"]
                    .iter()
                    .position(|&n| n == ours)
                    .unwrap_or(0);
                ModelError::NonFinite(layout.names()[k])
            }
            other => other,
        },
    })?;
    Ok((SavedModel { model, class_names }, layout))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlp_core::Shape;
    use rand::SeedableRng;

    fn saved() -> SavedModel {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let shape = Shape {
            inputs: 6,
            hidden: 4,
            classes: 3,
        };
        let mut model = Mlp::new(shape, Activation::Tanh, &mut rng).unwrap();
        model
            .b1
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as f32 * 0.5);
        SavedModel {
            model,
            class_names: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn both_layouts_round_trip_bit_for_bit() {
        for layout in [Layout::Ours, Layout::Torch] {
            let bytes = model_to_safetensors(&saved(), layout);
            let (back, read) = model_from_safetensors(&bytes, Path::new("m"), None).unwrap();
            assert_eq!(read, layout);
            assert_eq!(back.model, saved().model, "{layout:?}");
            assert_eq!(back.class_names, saved().class_names);
        }
    }

    /// PyTorch's Linear stores its weight as (out, in): 0.weight[h][p] is our w1[p][h].
    #[test]
    fn the_torch_layout_transposes_the_weights() {
        let bytes = model_to_safetensors(&saved(), Layout::Torch);
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let w = st.tensor("0.weight").unwrap();
        assert_eq!(w.shape(), [4, 6]);
        let value = |h: usize, p: usize| {
            let at = (h * 6 + p) * 4;
            f32::from_le_bytes(w.data()[at..at + 4].try_into().unwrap())
        };
        assert_eq!(value(1, 5), saved().model.w1[[5, 1]]);
        assert_eq!(st.tensor("2.weight").unwrap().shape(), [3, 4]);
    }

    /// Regression (found by review; also fuzz/seeds/safetensors/empty-dimension): a shape of
    /// `[9223372036854775808, 0]` has no elements, so safetensors accepts it, and ndarray
    /// then panicked on its other axis.
    #[test]
    fn an_empty_dimension_is_refused_not_a_panic() {
        let header =
            r#"{"0.weight":{"dtype":"F32","shape":[9223372036854775808,0],"data_offsets":[0,0]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        let err = model_from_safetensors(&bytes, Path::new("m"), None).unwrap_err();
        assert!(
            err.to_string().contains("expected no empty dimension"),
            "{err}"
        );
    }

    #[test]
    fn a_given_activation_must_agree_with_the_files() {
        let bytes = model_to_safetensors(&saved(), Layout::Torch);
        let err =
            model_from_safetensors(&bytes, Path::new("m"), Some(Activation::Relu)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "m: the file's activation is tanh, not the relu asked for"
        );
        assert!(model_from_safetensors(&bytes, Path::new("m"), Some(Activation::Tanh)).is_ok());
    }
}
