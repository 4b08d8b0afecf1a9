//! Stochastic gradient descent with L2 regularisation (weight decay) on the weights.

use mlp_core::kernels::{Descent, Update};
use mlp_core::{Gradients, Mlp};

/// Plain SGD. With the L2 term λ/2·‖W‖² added to the loss, the update of a weight is
/// W ← W − lr·(dW + λ·W); biases are not regularised: b ← b − lr·db.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate for the next step.
    pub lr: f32,
    /// L2 strength λ.
    pub l2: f32,
}

impl Sgd {
    /// An optimiser with learning rate `lr` and L2 strength `l2`.
    pub fn new(lr: f32, l2: f32) -> Self {
        Self { lr, l2 }
    }

    /// Applies one update to `model` from the gradients of the data loss.
    pub fn step(&self, model: &mut Mlp, grads: &Gradients) {
        let contiguous = "parameters and gradients are contiguous";
        let [dw1, db1, dw2, db2] = [
            grads.dw1.as_slice(),
            grads.db1.as_slice(),
            grads.dw2.as_slice(),
            grads.db2.as_slice(),
        ]
        .map(|g| g.expect(contiguous));
        self.update_weights(model.w1.as_slice_mut().expect(contiguous), dw1);
        self.update_biases(model.b1.as_slice_mut().expect(contiguous), db1);
        self.update_weights(model.w2.as_slice_mut().expect(contiguous), dw2);
        self.update_biases(model.b2.as_slice_mut().expect(contiguous), db2);
    }

    /// W ← W − lr·(dW + λ·W), element by element (any part of a weight tensor).
    #[inline(always)]
    pub fn update_weights(&self, w: &mut [f32], g: &[f32]) {
        let step = self.descent();
        for (w, &g) in w.iter_mut().zip(g) {
            step.apply(w, g);
        }
    }

    /// The step on one weight, as the engine's fused kernel takes it.
    pub fn descent(&self) -> Descent {
        Descent {
            lr: self.lr,
            l2: self.l2,
        }
    }

    /// b ← b − lr·db (biases are not regularised): [`Descent`] without L2, as the engine
    /// takes it.
    #[inline(always)]
    pub fn update_biases(&self, b: &mut [f32], g: &[f32]) {
        let step = Descent {
            l2: 0.0,
            ..self.descent()
        };
        for (b, &g) in b.iter_mut().zip(g) {
            step.apply(b, g);
        }
    }
}

impl From<&Sgd> for Update {
    fn from(sgd: &Sgd) -> Self {
        Update::Sgd(sgd.descent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlp_core::{Activation, Shape};
    use ndarray::{Array1, array};

    #[test]
    fn weights_decay_biases_do_not() {
        let mut model = Mlp::from_parts(
            array![[1.0]],
            Array1::ones(1),
            array![[2.0]],
            Array1::ones(1),
            Activation::Relu,
        )
        .unwrap();
        let grads = Gradients::zeros(Shape {
            inputs: 1,
            hidden: 1,
            classes: 1,
        });
        Sgd::new(0.5, 0.1).step(&mut model, &grads);
        assert_eq!(model.w1[[0, 0]], 1.0 - 0.5 * 0.1 * 1.0);
        assert_eq!(model.w2[[0, 0]], 2.0 - 0.5 * 0.1 * 2.0);
        assert_eq!((model.b1[0], model.b2[0]), (1.0, 1.0));
    }
}
