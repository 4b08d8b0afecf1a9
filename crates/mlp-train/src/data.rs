//! What the trainer needs from a data set, and an in-memory implementation.
//!
//! The trainer only ever asks for rows by index into a buffer it owns, so any storage works:
//! `u8` images normalised on the fly (as the `mlp` binary does for Fashion-MNIST), features
//! already in `f32`, or something generated.

use ndarray::Array2;

/// Labelled examples of a fixed number of features, for classification into `classes()`.
pub trait LabelledData: Sync {
    /// Number of examples.
    fn len(&self) -> usize;
    /// True if there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Features per example.
    fn features(&self) -> usize;
    /// Number of classes; every label is below this.
    fn classes(&self) -> usize;
    /// Writes the examples at `indices` into `x` (`indices.len()` rows of `features()` values)
    /// and their labels into `y`. Called once per mini-batch: must not allocate.
    fn gather(&self, indices: &[usize], x: &mut [f32], y: &mut [usize]);
}

/// Features and labels held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct InMemoryData {
    x: Array2<f32>,
    y: Vec<usize>,
    classes: usize,
}

/// Features and labels that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataShapeError {
    /// Row count and label count differ.
    #[error("{rows} rows of features but {labels} labels")]
    CountMismatch {
        /// Rows of features.
        rows: usize,
        /// Labels.
        labels: usize,
    },
    /// A label is not below the class count.
    #[error("label {label} at index {index} is not below the class count {classes}")]
    LabelOutOfRange {
        /// Position of the label.
        index: usize,
        /// Its value.
        label: usize,
        /// The class count.
        classes: usize,
    },
}

impl InMemoryData {
    /// Wraps features `x` (one row per example) and labels `y`, checking they agree.
    pub fn new(x: Array2<f32>, y: Vec<usize>, classes: usize) -> Result<Self, DataShapeError> {
        if x.nrows() != y.len() {
            return Err(DataShapeError::CountMismatch {
                rows: x.nrows(),
                labels: y.len(),
            });
        }
        if let Some((index, &label)) = y.iter().enumerate().find(|&(_, &l)| l >= classes) {
            return Err(DataShapeError::LabelOutOfRange {
                index,
                label,
                classes,
            });
        }
        let x = x.as_standard_layout().into_owned();
        Ok(Self { x, y, classes })
    }

    /// The features, one row per example.
    pub fn x(&self) -> &Array2<f32> {
        &self.x
    }

    /// The labels.
    pub fn y(&self) -> &[usize] {
        &self.y
    }
}

impl LabelledData for InMemoryData {
    fn len(&self) -> usize {
        self.y.len()
    }

    fn features(&self) -> usize {
        self.x.ncols()
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn gather(&self, indices: &[usize], x: &mut [f32], y: &mut [usize]) {
        let f = self.features();
        let all = self.x.as_slice().expect("stored in standard layout");
        for ((&i, row), label) in indices.iter().zip(x.chunks_exact_mut(f)).zip(y.iter_mut()) {
            row.copy_from_slice(&all[i * f..(i + 1) * f]);
            *label = self.y[i];
        }
    }
}
