//! Optimisers: SGD (the seed's), SGD with momentum or Nesterov momentum, Adam and AdamW.
//!
//! An [`Optimizer`] is the configuration; [`Optimizer::update`] resolves it for one step (its
//! learning rate, Adam's bias correction at step t) into the [`Update`] the engine's kernels
//! apply element by element (see `mlp_core::kernels::Update` for the formulas). The state is
//! explicit: the moments, each a tensor per parameter in the model's layout (an [`Mlp`] whose
//! "parameters" are the moments), which checkpoints keep; and the step count, which the
//! training loop knows from its place in the run.

use mlp_core::kernels::{Adam, Descent, Momentum, Update};
use mlp_core::{Gradients, Mlp};
use serde::{Deserialize, Serialize};

use crate::schedule::power;

/// Which optimiser, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Plain SGD.
    #[default]
    Sgd,
    /// SGD with momentum μ.
    Momentum,
    /// SGD with Nesterov momentum μ.
    Nesterov,
    /// Adam (L2, if any, added to the gradient).
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    Adamw,
}

impl OptimizerKind {
    /// Every kind.
    pub const ALL: [OptimizerKind; 5] = [
        Self::Sgd,
        Self::Momentum,
        Self::Nesterov,
        Self::Adam,
        Self::Adamw,
    ];

    /// The name a command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sgd => "sgd",
            Self::Momentum => "momentum",
            Self::Nesterov => "nesterov",
            Self::Adam => "adam",
            Self::Adamw => "adamw",
        }
    }

    /// Moments per parameter it keeps.
    pub fn moments(self) -> usize {
        match self {
            Self::Sgd => 0,
            Self::Momentum | Self::Nesterov => 1,
            Self::Adam | Self::Adamw => 2,
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown optimizer {s:?} (expected sgd, momentum, nesterov, adam or adamw)")
            })
    }
}

/// An optimiser's hyperparameters (the learning rate comes from the schedule, step by step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Optimizer {
    /// Which rule.
    pub kind: OptimizerKind,
    /// L2 strength λ, its gradient λ·W added to the weights' (not the biases').
    pub l2: f32,
    /// μ, for momentum and Nesterov.
    pub momentum: f32,
    /// Adam's β1.
    pub beta1: f32,
    /// Adam's β2.
    pub beta2: f32,
    /// Adam's ε.
    pub eps: f32,
    /// AdamW's decoupled weight decay wd (each step multiplies the weights by 1 − lr·wd).
    pub weight_decay: f32,
}

impl Optimizer {
    /// Moments per parameter.
    pub fn moments(&self) -> usize {
        self.kind.moments()
    }

    /// The update of step `t` (1-based: the first step of a run is 1) at learning rate `lr`.
    pub fn update(&self, lr: f32, t: u64) -> Update {
        match self.kind {
            OptimizerKind::Sgd => Update::Sgd(Descent { lr, l2: self.l2 }),
            OptimizerKind::Momentum | OptimizerKind::Nesterov => Update::Momentum(Momentum {
                lr,
                l2: self.l2,
                momentum: self.momentum,
                nesterov: self.kind == OptimizerKind::Nesterov,
            }),
            OptimizerKind::Adam | OptimizerKind::Adamw => {
                // Bias correction in f64, by the same exponentiation as the schedule's.
                let t = usize::try_from(t).unwrap_or(usize::MAX).max(1);
                let c1 = 1.0 - power(f64::from(self.beta1), t);
                let c2 = (1.0 - power(f64::from(self.beta2), t)).sqrt();
                let decay = match self.kind {
                    OptimizerKind::Adamw => lr * self.weight_decay,
                    _ => 0.0,
                };
                Update::Adam(Adam {
                    lr_t: (f64::from(lr) * c2 / c1) as f32,
                    eps_t: (f64::from(self.eps) * c2) as f32,
                    beta1: self.beta1,
                    beta2: self.beta2,
                    l2: self.l2,
                    decay,
                })
            }
        }
    }

    /// The reference step: applies `update` to every parameter of `model` from `grads`, the
    /// biases without decay, with `moments` (as many as the update keeps, each shaped as the
    /// model). What the engine's fused step computes, written plainly.
    pub fn step(update: Update, model: &mut Mlp, grads: &Gradients, moments: &mut [Mlp]) {
        assert_eq!(moments.len(), update.moments(), "one tensor set per moment");
        let gradients = [
            grads.dw1.as_slice(),
            grads.db1.as_slice(),
            grads.dw2.as_slice(),
            grads.db2.as_slice(),
        ];
        let mut moments = moments.iter_mut();
        let none = || -> [&mut [f32]; 4] { [&mut [], &mut [], &mut [], &mut []] };
        let first = moments.next().map_or_else(none, tensors_mut);
        let second = moments.next().map_or_else(none, tensors_mut);
        let tensors = tensors_mut(model).into_iter().zip(first).zip(second);
        for (k, ((w, m), v)) in tensors.enumerate() {
            // w1 and w2 (even places) decay; b1 and b2 do not.
            let rule = if k % 2 == 0 {
                update
            } else {
                update.without_decay()
            };
            let g = gradients[k].expect("gradients are contiguous");
            rule.apply_to(w, g, m, v);
        }
    }
}

/// w1, b1, w2 and b2 of `model`, as flat slices.
fn tensors_mut(model: &mut Mlp) -> [&mut [f32]; 4] {
    let Mlp { w1, b1, w2, b2, .. } = model;
    let contiguous = "parameters are contiguous";
    [
        w1.as_slice_mut().expect(contiguous),
        b1.as_slice_mut().expect(contiguous),
        w2.as_slice_mut().expect(contiguous),
        b2.as_slice_mut().expect(contiguous),
    ]
}
