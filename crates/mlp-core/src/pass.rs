//! The forward and backward passes, over a [`Workspace`] of buffers allocated once.
//!
//! Notation follows the textbook; n is the batch size, H the hidden width, C the classes:
//! ```text
//! z1 = x·W1 + b1        (n, H)        dz2 = (p − onehot(y)) / n     (n, C)
//! a1 = f(z1)            (n, H)        dW2 = a1ᵀ·dz2,  db2 = Σ dz2
//! z2 = a1·W2 + b2       (n, C)        da1 = dz2·W2ᵀ                 (n, H)
//! p  = softmax(z2)      (n, C)        dz1 = da1 ⊙ f'(z1)
//! L  = −mean log p_y                  dW1 = xᵀ·dz1,   db1 = Σ dz1
//! ```
//!
//! A training pass ([`Mlp::forward_training`]) may add dropout on the hidden layer, a mask m
//! of factors 0 or 1/(1 − rate): h = a1 ⊙ m replaces a1 after the activation, so
//! z2 = h·W2 + b2, dW2 = hᵀ·dz2, and da1 = (dz2·W2ᵀ) ⊙ m; and label smoothing, which changes
//! the target of the loss (see [`loss`]).

use ndarray::{Array1, Array2, ArrayView2, s};

use crate::linear;
use crate::loss::{self, BatchMetrics};
use crate::model::{Mlp, Shape};

/// Gradients of the mean loss with respect to each parameter (same shapes as the parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// dL/dW1, (inputs, hidden).
    pub dw1: Array2<f32>,
    /// dL/db1, (hidden).
    pub db1: Array1<f32>,
    /// dL/dW2, (hidden, classes).
    pub dw2: Array2<f32>,
    /// dL/db2, (classes).
    pub db2: Array1<f32>,
}

impl Gradients {
    /// All-zero gradients for a network of `shape`.
    pub fn zeros(shape: Shape) -> Self {
        Self {
            dw1: Array2::zeros((shape.inputs, shape.hidden)),
            db1: Array1::zeros(shape.hidden),
            dw2: Array2::zeros((shape.hidden, shape.classes)),
            db2: Array1::zeros(shape.classes),
        }
    }

    /// Euclidean norm of all gradients together, as one vector.
    pub fn norm(&self) -> f32 {
        let sum_sq = |v: &[f32]| v.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>();
        [
            &self.dw1.as_slice(),
            &self.db1.as_slice(),
            &self.dw2.as_slice(),
            &self.db2.as_slice(),
        ]
        .iter()
        .map(|v| sum_sq(v.expect("gradients are contiguous")))
        .sum::<f64>()
        .sqrt() as f32
    }
}

/// Buffers for the passes over batches of up to `capacity` rows. Allocate one per batch size
/// and reuse it: the passes themselves allocate nothing.
#[derive(Debug, Clone)]
pub struct Workspace {
    z1: Array2<f32>,
    a1: Array2<f32>,
    /// h = a1 ⊙ m under hidden dropout (unused without).
    h: Array2<f32>,
    /// Logits z2, replaced by probabilities p after the loss.
    z2: Array2<f32>,
    dz2: Array2<f32>,
    /// da1, turned into dz1 in place.
    dz1: Array2<f32>,
    /// The gradients of the last [`Mlp::backward`].
    pub grads: Gradients,
}

impl Workspace {
    /// Buffers for a network of `shape` and batches of at most `capacity` rows.
    pub fn new(shape: Shape, capacity: usize) -> Self {
        let Shape {
            hidden, classes, ..
        } = shape;
        Self {
            z1: Array2::zeros((capacity, hidden)),
            a1: Array2::zeros((capacity, hidden)),
            h: Array2::zeros((capacity, hidden)),
            z2: Array2::zeros((capacity, classes)),
            dz2: Array2::zeros((capacity, classes)),
            dz1: Array2::zeros((capacity, hidden)),
            grads: Gradients::zeros(shape),
        }
    }

    /// The largest batch these buffers hold.
    pub fn capacity(&self) -> usize {
        self.z1.nrows()
    }

    /// Hidden activations a1 of the last forward pass, (n, hidden).
    pub fn hidden_activations(&self, n: usize) -> ArrayView2<'_, f32> {
        self.a1.slice(s![..n, ..])
    }

    /// Probabilities p of the last [`Mlp::forward`], (n, classes).
    pub fn probabilities(&self, n: usize) -> ArrayView2<'_, f32> {
        self.z2.slice(s![..n, ..])
    }
}

/// What a training pass adds to the plain one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Regularisation<'a> {
    /// The hidden layer's dropout factors for this batch, (n, hidden): 0 or 1/(1 − rate).
    pub hidden_mask: Option<ArrayView2<'a, f32>>,
    /// Label smoothing ε in [0, 1).
    pub smoothing: f32,
}

impl Mlp {
    fn check_batch(&self, x: &ArrayView2<f32>, ws: &Workspace) {
        assert_eq!(
            x.ncols(),
            self.shape().inputs,
            "x has {} features, the model takes {}",
            x.ncols(),
            self.shape().inputs
        );
        assert!(
            x.nrows() <= ws.capacity(),
            "batch of {} rows exceeds workspace capacity {}",
            x.nrows(),
            ws.capacity()
        );
        assert_eq!(
            ws.z1.ncols(),
            self.shape().hidden,
            "workspace was made for another hidden size"
        );
    }

    /// The forward pass up to the logits z2, (n, classes).
    // x: (n, inputs)
    pub fn logits<'w>(&self, x: ArrayView2<f32>, ws: &'w mut Workspace) -> ArrayView2<'w, f32> {
        self.logits_masked(x, None, ws)
    }

    /// [`Mlp::logits`], with the hidden layer multiplied by `mask` if there is one.
    fn logits_masked<'w>(
        &self,
        x: ArrayView2<f32>,
        mask: Option<ArrayView2<f32>>,
        ws: &'w mut Workspace,
    ) -> ArrayView2<'w, f32> {
        self.check_batch(&x, ws);
        let n = x.nrows();
        let (mut z1, mut a1, mut h, mut z2) = (
            ws.z1.slice_mut(s![..n, ..]),
            ws.a1.slice_mut(s![..n, ..]),
            ws.h.slice_mut(s![..n, ..]),
            ws.z2.slice_mut(s![..n, ..]),
        );
        linear::forward(x, self.w1.view(), self.b1.view(), z1.view_mut());
        self.activation.forward(z1.view(), a1.view_mut());
        let hidden = match mask {
            Some(m) => {
                assert_eq!(m.dim(), a1.dim(), "one dropout factor per hidden unit");
                ndarray::Zip::from(&mut h)
                    .and(&a1)
                    .and(&m)
                    .for_each(|h, &a, &m| *h = a * m);
                h.view()
            }
            None => a1.view(),
        };
        linear::forward(hidden, self.w2.view(), self.b2.view(), z2.view_mut());
        ws.z2.slice(s![..n, ..])
    }

    /// The full forward pass: keeps z1, a1 and p in `ws` for [`Mlp::backward`] and returns the
    /// batch's loss and accuracy counts.
    // x: (n, inputs)   labels: (n)
    pub fn forward(
        &self,
        x: ArrayView2<f32>,
        labels: &[usize],
        ws: &mut Workspace,
    ) -> BatchMetrics {
        self.forward_training(x, labels, Regularisation::default(), ws)
    }

    /// [`Mlp::forward`] with dropout and label smoothing: the loss is the smoothed one.
    // x: (n, inputs)   labels: (n)
    pub fn forward_training(
        &self,
        x: ArrayView2<f32>,
        labels: &[usize],
        reg: Regularisation,
        ws: &mut Workspace,
    ) -> BatchMetrics {
        let n = x.nrows();
        self.logits_masked(x, reg.hidden_mask, ws);
        loss::smoothed_cross_entropy(ws.z2.slice_mut(s![..n, ..]), labels, reg.smoothing)
    }

    /// The backward pass for the batch of the last [`Mlp::forward`] on `ws` (same `x` and
    /// `labels`): writes the gradients of the mean loss into `ws.grads` and returns them.
    // x: (n, inputs)   labels: (n)
    pub fn backward<'w>(
        &self,
        x: ArrayView2<f32>,
        labels: &[usize],
        ws: &'w mut Workspace,
    ) -> &'w Gradients {
        self.backward_training(x, labels, Regularisation::default(), ws)
    }

    /// The backward pass of the last [`Mlp::forward_training`] on `ws` (same `x`, `labels`
    /// and `reg`).
    // x: (n, inputs)   labels: (n)
    pub fn backward_training<'w>(
        &self,
        x: ArrayView2<f32>,
        labels: &[usize],
        reg: Regularisation,
        ws: &'w mut Workspace,
    ) -> &'w Gradients {
        self.check_batch(&x, ws);
        let n = x.nrows();
        let Workspace {
            z1,
            a1,
            h,
            z2,
            dz2,
            dz1,
            grads,
        } = ws;
        let (z1, a1, p) = (
            z1.slice(s![..n, ..]),
            a1.slice(s![..n, ..]),
            z2.slice(s![..n, ..]),
        );
        let (mut dz2, mut dz1) = (dz2.slice_mut(s![..n, ..]), dz1.slice_mut(s![..n, ..]));

        loss::smoothed_cross_entropy_backward(p, labels, reg.smoothing, dz2.view_mut());
        let hidden = match reg.hidden_mask {
            Some(_) => h.slice(s![..n, ..]),
            None => a1,
        };
        linear::backward_params(
            hidden,
            dz2.view(),
            grads.dw2.view_mut(),
            grads.db2.view_mut(),
        );
        linear::backward_input(dz2.view(), self.w2.view(), dz1.view_mut()); // dh
        if let Some(m) = reg.hidden_mask {
            dz1.zip_mut_with(&m, |d, &m| *d *= m); // dh → da1
        }
        self.activation.backward(z1, a1, dz1.view_mut()); // da1 → dz1
        linear::backward_params(x, dz1.view(), grads.dw1.view_mut(), grads.db1.view_mut());
        grads
    }
}
