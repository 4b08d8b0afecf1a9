//! The network's parameters: W1 (inputs × hidden), b1, W2 (hidden × classes), b2, and the
//! hidden activation. Initialisation is He et al. (2015): weights ~ N(0, 2 / fan_in), biases 0,
//! the normal deviates drawn by Marsaglia's polar method with `libm`'s logarithm, so that a
//! seed gives the same weights on every machine (a libc may choose its `log` per CPU).

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

use crate::activation::Activation;
use crate::pass::Workspace;

/// Layer sizes of a three-layer network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Input features (784 for 28×28 images).
    pub inputs: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Output classes.
    pub classes: usize,
}

impl Shape {
    /// The Fashion-MNIST shape with `hidden` hidden units: 784-hidden-10.
    pub fn fashion_mnist(hidden: usize) -> Self {
        Self {
            inputs: 784,
            hidden,
            classes: 10,
        }
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> usize {
        (self.inputs + 1) * self.hidden + (self.hidden + 1) * self.classes
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.inputs, self.hidden, self.classes)
    }
}

/// Parameters whose shapes do not form a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Some size is zero.
    #[error("layer sizes must be at least 1, got {0}")]
    EmptyLayer(Shape),
    /// A parameter's shape disagrees with the others.
    #[error("{name} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which parameter.
        name: &'static str,
        /// Its shape.
        found: Vec<usize>,
        /// The shape implied by the other parameters.
        expected: Vec<usize>,
    },
    /// A parameter holds NaN or infinity.
    #[error("{0} contains NaN or infinite values")]
    NonFinite(&'static str),
}

/// Standard normal deviates by Marsaglia's polar method: a uniform point (u, v) in the unit
/// disc gives two independent deviates u·f and v·f, f = √(−2 ln s / s), s = u² + v².
#[derive(Debug, Default)]
struct StandardNormal {
    /// The second deviate of the last pair.
    spare: Option<f64>,
}

impl StandardNormal {
    fn sample<R: Rng + ?Sized>(&mut self, rng: &mut R) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        loop {
            let u = 2.0 * rng.random::<f64>() - 1.0;
            let v = 2.0 * rng.random::<f64>() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let f = (-2.0 * libm::log(s) / s).sqrt();
                self.spare = Some(v * f);
                return u * f;
            }
        }
    }
}

/// A three-layer perceptron: input → hidden (activation) → softmax output.
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    /// First-layer weights, (inputs, hidden). Column k is hidden unit k's incoming weights.
    pub w1: Array2<f32>,
    /// First-layer biases, (hidden).
    pub b1: Array1<f32>,
    /// Second-layer weights, (hidden, classes).
    pub w2: Array2<f32>,
    /// Second-layer biases, (classes).
    pub b2: Array1<f32>,
    /// The hidden activation.
    pub activation: Activation,
}

impl Mlp {
    /// A freshly initialised network (He initialisation, zero biases).
    pub fn new<R: Rng + ?Sized>(
        shape: Shape,
        activation: Activation,
        rng: &mut R,
    ) -> Result<Self, ModelError> {
        let Shape {
            inputs,
            hidden,
            classes,
        } = shape;
        if inputs == 0 || hidden == 0 || classes == 0 {
            return Err(ModelError::EmptyLayer(shape));
        }
        let mut normal = StandardNormal::default();
        let mut he = |fan_in: usize, fan_out: usize| {
            let std = (2.0 / fan_in as f64).sqrt();
            Array2::from_shape_simple_fn((fan_in, fan_out), || {
                (normal.sample(&mut *rng) * std) as f32
            })
        };
        let w1 = he(inputs, hidden);
        let w2 = he(hidden, classes);
        Ok(Self {
            w1,
            b1: Array1::zeros(hidden),
            w2,
            b2: Array1::zeros(classes),
            activation,
        })
    }

    /// A network of `shape` whose every parameter is 0 (what an optimiser's moments start
    /// from: they are laid out as a model's parameters).
    pub fn zeros(shape: Shape, activation: Activation) -> Self {
        let Shape {
            inputs,
            hidden,
            classes,
        } = shape;
        Self {
            w1: Array2::zeros((inputs, hidden)),
            b1: Array1::zeros(hidden),
            w2: Array2::zeros((hidden, classes)),
            b2: Array1::zeros(classes),
            activation,
        }
    }

    /// Assembles a network from parameters, checking that their shapes agree and values are finite.
    pub fn from_parts(
        w1: Array2<f32>,
        b1: Array1<f32>,
        w2: Array2<f32>,
        b2: Array1<f32>,
        activation: Activation,
    ) -> Result<Self, ModelError> {
        let shape = Shape {
            inputs: w1.nrows(),
            hidden: w1.ncols(),
            classes: w2.ncols(),
        };
        if shape.inputs == 0 || shape.hidden == 0 || shape.classes == 0 {
            return Err(ModelError::EmptyLayer(shape));
        }
        let expect = |name, found: &[usize], expected: &[usize]| {
            if found == expected {
                Ok(())
            } else {
                Err(ModelError::ShapeMismatch {
                    name,
                    found: found.to_vec(),
                    expected: expected.to_vec(),
                })
            }
        };
        expect("b1", b1.shape(), &[shape.hidden])?;
        expect("w2", w2.shape(), &[shape.hidden, shape.classes])?;
        expect("b2", b2.shape(), &[shape.classes])?;
        let model = Self {
            w1,
            b1,
            w2,
            b2,
            activation,
        };
        match model.first_non_finite() {
            Some(name) => Err(ModelError::NonFinite(name)),
            None => Ok(model),
        }
    }

    /// The name of the first parameter (`w1`, `b1`, `w2`, `b2`) holding NaN or an infinity,
    /// if any.
    pub fn first_non_finite(&self) -> Option<&'static str> {
        self.named_parameters()
            .into_iter()
            .find(|(_, values)| !values.iter().all(|v| v.is_finite()))
            .map(|(name, _)| name)
    }

    /// Layer sizes.
    pub fn shape(&self) -> Shape {
        Shape {
            inputs: self.w1.nrows(),
            hidden: self.w1.ncols(),
            classes: self.w2.ncols(),
        }
    }

    /// The parameters by name, as flat slices, in the order w1, b1, w2, b2.
    pub fn named_parameters(&self) -> [(&'static str, &[f32]); 4] {
        [
            ("w1", self.w1.as_slice().expect("parameters are contiguous")),
            ("b1", self.b1.as_slice().expect("parameters are contiguous")),
            ("w2", self.w2.as_slice().expect("parameters are contiguous")),
            ("b2", self.b2.as_slice().expect("parameters are contiguous")),
        ]
    }

    /// Predicted class for every row of `x`, evaluated in chunks of 1,024 rows.
    // x: (n, inputs) → (n)
    pub fn predict(&self, x: ArrayView2<f32>) -> Vec<usize> {
        let mut ws = Workspace::new(self.shape(), x.nrows().clamp(1, 1024));
        let mut predictions = Vec::with_capacity(x.nrows());
        for chunk in x.axis_chunks_iter(Axis(0), ws.capacity()) {
            let logits = self.logits(chunk, &mut ws);
            predictions.extend(logits.axis_iter(Axis(0)).map(crate::loss::argmax));
        }
        predictions
    }
}
