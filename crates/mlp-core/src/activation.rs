//! Hidden-layer activation functions and their derivatives.
//!
//! Each variant is a pair: `forward` computes a = f(z) element-wise, `backward` turns the
//! gradient with respect to a into the gradient with respect to z (dz = da ⊙ f'(z)). The
//! derivative is written in terms of whichever of z or a makes it cheapest (tanh' = 1 − a²).
//! `tanh` and `exp` come from `libm`, so that every machine gives the same bits.

use std::fmt;
use std::str::FromStr;

use ndarray::{ArrayView2, ArrayViewMut2, Zip};
use serde::{Deserialize, Serialize};

/// Slope of leaky ReLU for negative inputs.
pub const LEAKY_RELU_SLOPE: f32 = 0.01;

/// An element-wise non-linearity for the hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(0, z), the default.
    #[default]
    Relu,
    /// z for z > 0, else 0.01·z.
    LeakyRelu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid 1 / (1 + e^−z).
    Sigmoid,
}

impl Activation {
    /// Every activation, in a stable order.
    pub const ALL: [Activation; 4] = [Self::Relu, Self::LeakyRelu, Self::Tanh, Self::Sigmoid];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::LeakyRelu => "leaky_relu",
            Self::Tanh => "tanh",
            Self::Sigmoid => "sigmoid",
        }
    }

    /// f(z) for one value.
    #[inline]
    pub fn apply(self, z: f32) -> f32 {
        match self {
            Self::Relu => z.max(0.0),
            Self::LeakyRelu => {
                if z > 0.0 {
                    z
                } else {
                    LEAKY_RELU_SLOPE * z
                }
            }
            Self::Tanh => libm::tanhf(z),
            Self::Sigmoid => 1.0 / (1.0 + libm::expf(-z)),
        }
    }

    /// f'(z) for one value, given z and a = f(z). ReLU's derivative at 0 is taken as 0.
    #[inline]
    pub fn derivative(self, z: f32, a: f32) -> f32 {
        match self {
            Self::Relu => (z > 0.0) as u8 as f32,
            Self::LeakyRelu => {
                if z > 0.0 {
                    1.0
                } else {
                    LEAKY_RELU_SLOPE
                }
            }
            Self::Tanh => 1.0 - a * a,
            Self::Sigmoid => a * (1.0 - a),
        }
    }

    /// a = f(z), element-wise. `z` and `a` have the same shape. (`inline(always)`, like the
    /// kernels, so that the engine's passes compile it for their SIMD level.)
    #[inline(always)]
    pub fn forward(self, z: ArrayView2<f32>, mut a: ArrayViewMut2<f32>) {
        assert_eq!(z.dim(), a.dim(), "z and a have one shape");
        if let (Some(z), Some(a)) = (z.as_slice(), a.as_slice_mut()) {
            return self.forward_slice(z, a);
        }
        // Strided views only, a rare path: one loop, the match inside it.
        Zip::from(a).and(z).for_each(|a, &z| *a = self.apply(z));
    }

    /// In place: `grad` holds dL/da on entry and dL/dz = dL/da ⊙ f'(z) on return.
    #[inline(always)]
    pub fn backward(self, z: ArrayView2<f32>, a: ArrayView2<f32>, mut grad: ArrayViewMut2<f32>) {
        assert!(
            z.dim() == a.dim() && z.dim() == grad.dim(),
            "z, a and grad have one shape"
        );
        if let (Some(z), Some(a), Some(grad)) = (z.as_slice(), a.as_slice(), grad.as_slice_mut()) {
            return self.backward_slice(z, a, grad);
        }
        Zip::from(grad)
            .and(z)
            .and(a)
            .for_each(|g, &z, &a| *g *= self.derivative(z, a));
    }

    /// [`Activation::forward`] of values in a slice: `a[i] = f(z[i])` (panics if the lengths
    /// differ).
    ///
    /// Plain slice loops rather than ndarray's `Zip`, for the engine: in the dev profile
    /// (opt-level 3, but many codegen units and no LTO) `Zip::for_each` stayed out of line
    /// with a call per element (`ZippableTuple::as_ref`), about 10 % of a training run's
    /// samples against 0.3 % in release (docs/PERFORMANCE.md); these loops inline and
    /// vectorise in both profiles. [`Activation::forward`] and [`Activation::backward`] take
    /// them when their views are contiguous.
    #[inline(always)]
    pub fn forward_slice(self, z: &[f32], a: &mut [f32]) {
        assert_eq!(z.len(), a.len(), "z and a have one length");
        // One loop per variant, so the match is outside the loop and each loop vectorises.
        let pairs = a.iter_mut().zip(z);
        match self {
            Self::Relu => pairs.for_each(|(a, &z)| *a = Self::Relu.apply(z)),
            Self::LeakyRelu => pairs.for_each(|(a, &z)| *a = Self::LeakyRelu.apply(z)),
            Self::Tanh => pairs.for_each(|(a, &z)| *a = Self::Tanh.apply(z)),
            Self::Sigmoid => pairs.for_each(|(a, &z)| *a = Self::Sigmoid.apply(z)),
        }
    }

    /// [`Activation::backward`] of values in slices: `grad[i] *= f'(z[i])` given
    /// `a[i] = f(z[i])` (panics if the lengths differ).
    #[inline(always)]
    pub fn backward_slice(self, z: &[f32], a: &[f32], grad: &mut [f32]) {
        assert!(
            z.len() == grad.len() && a.len() == grad.len(),
            "z, a and grad have one length"
        );
        let triples = grad.iter_mut().zip(z.iter().zip(a));
        match self {
            Self::Relu => triples.for_each(|(g, (&z, &a))| *g *= Self::Relu.derivative(z, a)),
            Self::LeakyRelu => {
                triples.for_each(|(g, (&z, &a))| *g *= Self::LeakyRelu.derivative(z, a))
            }
            Self::Tanh => triples.for_each(|(g, (&z, &a))| *g *= Self::Tanh.derivative(z, a)),
            Self::Sigmoid => triples.for_each(|(g, (&z, &a))| *g *= Self::Sigmoid.derivative(z, a)),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An activation name that is not one of [`Activation::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown activation {0:?} (expected relu, leaky_relu, tanh or sigmoid)")]
pub struct UnknownActivation(pub String);

impl FromStr for Activation {
    type Err = UnknownActivation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalised = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|a| a.name() == normalised)
            .ok_or_else(|| UnknownActivation(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_accept_dashes() {
        for a in Activation::ALL {
            assert_eq!(a.name().parse::<Activation>(), Ok(a));
        }
        assert_eq!(
            "Leaky-ReLU".parse::<Activation>(),
            Ok(Activation::LeakyRelu)
        );
        assert!("softplus".parse::<Activation>().is_err());
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for act in Activation::ALL {
            for z in [-2.0f32, -0.3, 0.4, 1.7] {
                let h = 1e-3;
                let numeric = (act.apply(z + h) - act.apply(z - h)) / (2.0 * h);
                let analytic = act.derivative(z, act.apply(z));
                assert!(
                    (numeric - analytic).abs() < 1e-3,
                    "{act} at {z}: {numeric} vs {analytic}"
                );
            }
        }
    }

    /// Every way in (slices, contiguous views, a transposed view, which takes the `Zip`
    /// path) gives, bit for bit, `apply` and `derivative` of each value.
    #[test]
    fn slices_and_views_give_the_bits_of_one_value_at_a_time() {
        let z: Vec<f32> = (0..24).map(|i| (i as f32 - 11.5) * 0.37).collect();
        let da: Vec<f32> = (0..24).map(|i| 1.0 - (i as f32) * 0.13).collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for act in Activation::ALL {
            let a_want: Vec<f32> = z.iter().map(|&z| act.apply(z)).collect();
            let dz_want: Vec<f32> = (0..24)
                .map(|i| da[i] * act.derivative(z[i], a_want[i]))
                .collect();

            let mut a = vec![0.0; 24];
            act.forward_slice(&z, &mut a);
            assert_eq!(bits(&a), bits(&a_want), "{act} forward_slice");
            let mut dz = da.clone();
            act.backward_slice(&z, &a, &mut dz);
            assert_eq!(bits(&dz), bits(&dz_want), "{act} backward_slice");

            let zv = ndarray::ArrayView2::from_shape((4, 6), &z).unwrap();
            let mut a = ndarray::Array2::zeros((4, 6));
            act.forward(zv, a.view_mut());
            assert_eq!(bits(a.as_slice().unwrap()), bits(&a_want), "{act} forward");
            let mut dz = ndarray::Array2::from_shape_vec((4, 6), da.clone()).unwrap();
            act.backward(zv, a.view(), dz.view_mut());
            assert_eq!(
                bits(dz.as_slice().unwrap()),
                bits(&dz_want),
                "{act} backward"
            );

            // Transposed: no slice, so the element-wise `Zip` loops.
            let mut at = ndarray::Array2::zeros((4, 6)).reversed_axes();
            act.forward(zv.t(), at.view_mut());
            let logical = |v: ndarray::ArrayView2<f32>| v.iter().copied().collect::<Vec<_>>();
            assert_eq!(
                bits(&logical(at.t())),
                bits(&a_want),
                "{act} forward, transposed"
            );
            let mut dzt = ndarray::Array2::from_shape_vec((4, 6), da.clone())
                .unwrap()
                .reversed_axes();
            act.backward(zv.t(), at.view(), dzt.view_mut());
            assert_eq!(
                bits(&logical(dzt.t())),
                bits(&dz_want),
                "{act} backward, transposed"
            );
        }
    }
}
