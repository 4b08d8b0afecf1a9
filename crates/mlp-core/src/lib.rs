//! A three-layer perceptron for classification (input → hidden → softmax) with a hand-written
//! backward pass, in f32. This crate is the maths only: no file or network I/O, no training
//! policy (optimisers and loops live in `mlp-train`).
//!
//! ```
//! use mlp_core::{Activation, Mlp, Shape, Workspace};
//! use ndarray::array;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let model = Mlp::new(Shape { inputs: 2, hidden: 8, classes: 2 }, Activation::Relu, &mut rng)?;
//! let x = array![[0.0f32, 1.0], [1.0, 0.0]];
//! let labels = [1, 0];
//! let mut ws = Workspace::new(model.shape(), 2);
//! let metrics = model.forward(x.view(), &labels, &mut ws);
//! let grads = model.backward(x.view(), &labels, &mut ws);
//! assert!(metrics.mean_loss() > 0.0 && grads.norm() > 0.0);
//! # Ok::<(), mlp_core::ModelError>(())
//! ```
#![warn(missing_docs)]

pub mod activation;
pub mod kernels;
pub mod linear;
pub mod loss;
mod model;
pub mod noise;
mod pass;
pub mod simd;

pub use activation::{Activation, UnknownActivation};
pub use loss::BatchMetrics;
pub use model::{Mlp, ModelError, Shape};
pub use pass::{Gradients, Regularisation, Workspace};
pub use simd::{SimdLevel, SimdLevelError};

/// The README's example, compiled and run as a test so that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
