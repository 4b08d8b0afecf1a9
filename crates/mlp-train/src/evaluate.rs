//! Loss, accuracy and confusion counts of a model on a whole data set, in large batches.

use mlp_core::{BatchMetrics, Mlp, Workspace, loss::argmax};
use ndarray::{Array2, ArrayView2, Axis, s};

use crate::data::LabelledData;
use crate::engine::Engine;

/// Rows per evaluation batch: large enough for efficient matrix products, small enough
/// (3 MB of inputs at 784 features) to stay in cache-friendly territory.
pub const EVAL_BATCH: usize = 1024;

/// The result of evaluating a model on a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// `confusion[[true, predicted]]` counts, (classes, classes). Accuracy is derived from
    /// it alone, so the confusion matrix and the accuracy can never disagree.
    pub confusion: Array2<usize>,
}

impl Evaluation {
    /// Number of examples evaluated.
    pub fn count(&self) -> usize {
        self.confusion.sum()
    }

    /// Fraction classified correctly: the trace of the confusion matrix over its sum.
    pub fn accuracy(&self) -> f64 {
        self.confusion.diag().sum() as f64 / self.count() as f64
    }

    /// Accuracy within each true class (NaN for a class with no examples).
    pub fn per_class_accuracy(&self) -> Vec<f64> {
        self.confusion
            .axis_iter(Axis(0))
            .enumerate()
            .map(|(c, row)| row[c] as f64 / row.sum() as f64)
            .collect()
    }
}

/// The reference evaluation, with the dense passes of mlp-core and reusable buffers.
#[derive(Debug)]
pub struct Evaluator {
    x: Array2<f32>,
    y: Vec<usize>,
    indices: Vec<usize>,
    ws: Workspace,
}

impl Evaluator {
    /// Buffers for models shaped like `model`.
    pub fn new(model: &Mlp) -> Self {
        let shape = model.shape();
        Self {
            x: Array2::zeros((EVAL_BATCH, shape.inputs)),
            y: vec![0; EVAL_BATCH],
            indices: Vec::with_capacity(EVAL_BATCH),
            ws: Workspace::new(shape, EVAL_BATCH),
        }
    }

    /// Evaluates `model` on every example of `data`. Panics if `data.features()` differs from
    /// the model's inputs; callers check that once, up front.
    pub fn evaluate(&mut self, model: &Mlp, data: &dyn LabelledData) -> Evaluation {
        let classes = model.shape().classes;
        let mut metrics = BatchMetrics::default();
        let mut confusion = Array2::zeros((classes, classes));
        for start in (0..data.len()).step_by(EVAL_BATCH) {
            let n = EVAL_BATCH.min(data.len() - start);
            self.indices.clear();
            self.indices.extend(start..start + n);
            let x_slice = self.x.as_slice_mut().expect("standard layout");
            data.gather(
                &self.indices,
                &mut x_slice[..n * data.features()],
                &mut self.y[..n],
            );
            let x: ArrayView2<f32> = self.x.slice(s![..n, ..]);
            // Predictions are taken from the probabilities, whose argmax equals the logits'.
            metrics.merge(model.forward(x, &self.y[..n], &mut self.ws));
            for (p, &y) in self
                .ws
                .probabilities(n)
                .axis_iter(Axis(0))
                .zip(&self.y[..n])
            {
                confusion[[y, argmax(p)]] += 1;
            }
        }
        Evaluation {
            loss: metrics.mean_loss(),
            confusion,
        }
    }
}

/// Evaluates `model` on `data` with the optimised engine, on every core and the best SIMD
/// level this CPU has (every level gives the same numbers; these are [`Evaluator`]'s up to
/// float rounding, several times faster).
pub fn evaluate(model: &Mlp, data: &dyn LabelledData) -> Evaluation {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Engine::new(model, 1, cores).evaluate(data)
}
