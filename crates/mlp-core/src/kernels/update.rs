//! The optimisers' update of one parameter from its gradient, element by element: written
//! once, generic over [`Lanes`] (a scalar `f32` or a level's vector), so that the fused dW1
//! kernel and the plain loops over the other tensors round alike on every level.
//!
//! With g' = g + λ·w (the L2 term's gradient added to the data loss's), one step is:
//! ```text
//! SGD        w ← w − lr·g'
//! momentum   v ← μ·v + g';  w ← w − lr·v                 (PyTorch's SGD with momentum)
//! Nesterov   v ← μ·v + g';  w ← w − lr·(g' + μ·v)
//! Adam       m ← β1·m + (1 − β1)·g';  v ← β2·v + (1 − β2)·g'²;
//!            w ← (w − lr·wd·w) − lr_t·m / (√v + ε_t)
//! ```
//! Adam's bias correction is folded into lr_t = lr·√(1 − β2ᵗ)/(1 − β1ᵗ) and
//! ε_t = ε·√(1 − β2ᵗ) (Kingma and Ba's "efficient" form, section 2), and wd is AdamW's
//! decoupled weight decay (0 for Adam). Each operation is a separate IEEE operation (no
//! fused multiply-add, which no level could then skip), so the scalar and vector forms give
//! the same bits.

use std::ops::{Add, Div, Mul, Sub};

use fearless_simd::{Simd, SimdFloat};

use super::vector::F32s;

/// What the update rules compute with: `f32`, or a level's native vector (`Vector`).
pub trait Lanes:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self>
{
    /// The correctly rounded square root (of every lane).
    fn sqrt(self) -> Self;
}

impl Lanes for f32 {
    #[inline(always)]
    fn sqrt(self) -> f32 {
        f32::sqrt(self)
    }
}

/// A native vector of level `S`, as [`Lanes`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Vector<S: Simd>(pub F32s<S>);

macro_rules! vector_op {
    ($trait:ident, $method:ident, $op:tt) => {
        impl<S: Simd> $trait for Vector<S> {
            type Output = Self;
            #[inline(always)]
            fn $method(self, rhs: Self) -> Self {
                Vector(self.0 $op rhs.0)
            }
        }
    };
}
vector_op!(Add, add, +);
vector_op!(Sub, sub, -);
vector_op!(Mul, mul, *);
vector_op!(Div, div, /);

impl<S: Simd> Lanes for Vector<S> {
    #[inline(always)]
    fn sqrt(self) -> Self {
        Vector(SimdFloat::sqrt(self.0))
    }
}

/// One optimiser step's update of a parameter, its hyperparameters resolved for the step
/// (learning rate from the schedule, Adam's bias correction). The kernels take it whole and
/// choose the loop for its kind once, outside their loops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Update {
    /// w ← w − lr·(g + λ·w).
    Sgd(Descent),
    /// Momentum or Nesterov momentum, one moment per parameter.
    Momentum(Momentum),
    /// Adam or AdamW, two moments per parameter.
    Adam(Adam),
}

impl Update {
    /// Moment buffers per parameter the rule keeps: 0, 1 or 2.
    pub fn moments(&self) -> usize {
        match self {
            Self::Sgd(_) => 0,
            Self::Momentum(_) => 1,
            Self::Adam(_) => 2,
        }
    }

    /// The same update without weight decay of any kind (L2 or decoupled): for biases.
    pub fn without_decay(self) -> Self {
        match self {
            Self::Sgd(d) => Self::Sgd(Descent { l2: 0.0, ..d }),
            Self::Momentum(m) => Self::Momentum(Momentum { l2: 0.0, ..m }),
            Self::Adam(a) => Self::Adam(Adam {
                l2: 0.0,
                decay: 0.0,
                ..a
            }),
        }
    }

    /// Applies the update to every element of `w` given its gradient `g`, with the moments
    /// `first` and `second` (each as long as `w` when the rule keeps it, else unused).
    #[inline(always)]
    pub fn apply_to(self, w: &mut [f32], g: &[f32], first: &mut [f32], second: &mut [f32]) {
        match self {
            Self::Sgd(rule) => apply_scalar(rule, w, g, first, second),
            Self::Momentum(rule) => apply_scalar(rule, w, g, first, second),
            Self::Adam(rule) => apply_scalar(rule, w, g, first, second),
        }
    }
}

/// [`Update::apply_to`] for one rule: the scalar loop.
#[inline(always)]
fn apply_scalar<R: Rule>(rule: R, w: &mut [f32], g: &[f32], first: &mut [f32], second: &mut [f32]) {
    assert_eq!(w.len(), g.len(), "one gradient per parameter");
    assert!(
        (R::MOMENTS < 1 || first.len() == w.len()) && (R::MOMENTS < 2 || second.len() == w.len()),
        "one moment per parameter"
    );
    let (mut m, mut v) = (0.0, 0.0);
    for (i, (w, &g)) in w.iter_mut().zip(g).enumerate() {
        let m = if R::MOMENTS >= 1 {
            &mut first[i]
        } else {
            &mut m
        };
        let v = if R::MOMENTS >= 2 {
            &mut second[i]
        } else {
            &mut v
        };
        *w = rule.apply(|c| c, *w, g, m, v);
    }
}

/// An update rule, for [`Lanes`] of any width.
pub trait Rule: Copy {
    /// Moments per parameter it keeps (0, 1 or 2).
    const MOMENTS: usize;
    /// The new value of `w` given its gradient `g`, updating the moments `m` and `v` (those
    /// it keeps). `splat` makes a constant.
    fn apply<V: Lanes>(self, splat: impl Fn(f32) -> V, w: V, g: V, m: &mut V, v: &mut V) -> V;
}

/// The SGD step with L2 on one weight, `w ← w − lr·(g + l2·w)` (four roundings: l2·w,
/// g + …, lr·…, w − …).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Descent {
    /// Learning rate.
    pub lr: f32,
    /// L2 strength λ.
    pub l2: f32,
}

impl Descent {
    /// Applies the step to `w` given its gradient `g`.
    #[inline(always)]
    pub fn apply(self, w: &mut f32, g: f32) {
        *w = Rule::apply(self, |c| c, *w, g, &mut 0.0, &mut 0.0);
    }
}

impl Rule for Descent {
    const MOMENTS: usize = 0;
    #[inline(always)]
    fn apply<V: Lanes>(self, splat: impl Fn(f32) -> V, w: V, g: V, _: &mut V, _: &mut V) -> V {
        w - splat(self.lr) * (g + splat(self.l2) * w)
    }
}

/// SGD with (Nesterov) momentum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Momentum {
    /// Learning rate.
    pub lr: f32,
    /// L2 strength λ.
    pub l2: f32,
    /// μ.
    pub momentum: f32,
    /// Nesterov's form: the step is g' + μ·v rather than v.
    pub nesterov: bool,
}

impl Rule for Momentum {
    const MOMENTS: usize = 1;
    #[inline(always)]
    fn apply<V: Lanes>(self, splat: impl Fn(f32) -> V, w: V, g: V, v: &mut V, _: &mut V) -> V {
        let g = g + splat(self.l2) * w;
        let mu = splat(self.momentum);
        *v = mu * *v + g;
        let step = if self.nesterov { g + mu * *v } else { *v };
        w - splat(self.lr) * step
    }
}

/// Adam (and AdamW) with the bias correction folded into `lr_t` and `eps_t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// lr·√(1 − β2ᵗ)/(1 − β1ᵗ) for step t (1-based).
    pub lr_t: f32,
    /// ε·√(1 − β2ᵗ).
    pub eps_t: f32,
    /// β1.
    pub beta1: f32,
    /// β2.
    pub beta2: f32,
    /// L2 strength λ, added to the gradient (Adam's `weight_decay` in PyTorch).
    pub l2: f32,
    /// lr·wd, AdamW's decoupled weight decay for this step (0 for Adam).
    pub decay: f32,
}

impl Rule for Adam {
    const MOMENTS: usize = 2;
    #[inline(always)]
    fn apply<V: Lanes>(self, splat: impl Fn(f32) -> V, w: V, g: V, m: &mut V, v: &mut V) -> V {
        let g = g + splat(self.l2) * w;
        let (b1, b2) = (splat(self.beta1), splat(self.beta2));
        *m = b1 * *m + splat(1.0 - self.beta1) * g;
        *v = b2 * *v + splat(1.0 - self.beta2) * (g * g);
        let w = w - splat(self.decay) * w;
        w - splat(self.lr_t) * (*m / (v.sqrt() + splat(self.eps_t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn momentum_accumulates_and_nesterov_looks_ahead() {
        let rule = Momentum {
            lr: 0.5,
            l2: 0.0,
            momentum: 0.9,
            nesterov: false,
        };
        let (mut w, mut v) = ([1.0f32], [0.0f32]);
        Update::Momentum(rule).apply_to(&mut w, &[1.0], &mut v, &mut []);
        Update::Momentum(rule).apply_to(&mut w, &[1.0], &mut v, &mut []);
        // v = 1, then 1.9; w = 1 − 0.5 − 0.95.
        assert_eq!((w[0], v[0]), (1.0 - 0.5 - 0.95, 1.9));
        let (mut w, mut v) = ([1.0f32], [0.0f32]);
        let nesterov = Momentum {
            nesterov: true,
            ..rule
        };
        Update::Momentum(nesterov).apply_to(&mut w, &[1.0], &mut v, &mut []);
        // v = 1; step = 1 + 0.9·1.
        assert_eq!((w[0], v[0]), (1.0 - 0.5 * 1.9, 1.0));
    }

    #[test]
    fn adams_first_step_moves_every_weight_by_about_lr() {
        // At t = 1, m̂ = g and v̂ = g², so the step is lr·g/(|g| + ε) ≈ lr·sign(g).
        let (lr, beta1, beta2, eps) = (0.01f64, 0.9f64, 0.999f64, 1e-8f64);
        let rule = Adam {
            lr_t: (lr * (1.0 - beta2).sqrt() / (1.0 - beta1)) as f32,
            eps_t: (eps * (1.0 - beta2).sqrt()) as f32,
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            l2: 0.0,
            decay: 0.0,
        };
        let mut w = [1.0f32, 1.0, 1.0];
        let (mut m, mut v) = ([0.0f32; 3], [0.0f32; 3]);
        Update::Adam(rule).apply_to(&mut w, &[3.0, -0.02, 1e-3], &mut m, &mut v);
        for (w, sign) in w.iter().zip([1.0, -1.0, 1.0]) {
            assert!((1.0 - w - sign * 0.01).abs() < 1e-4, "{w}");
        }
    }

    #[test]
    fn biases_lose_their_decay() {
        let d = Update::Sgd(Descent { lr: 0.1, l2: 0.5 }).without_decay();
        assert_eq!(d, Update::Sgd(Descent { lr: 0.1, l2: 0.0 }));
    }
}
