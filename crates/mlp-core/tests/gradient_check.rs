//! Finite-difference checks of the hand-written backward pass: for every activation and every
//! element of every parameter tensor, dL/dθ from `backward` must match
//! (L(θ + h) − L(θ − h)) / 2h computed with `forward` alone; and the same for a training
//! pass with a fixed dropout mask and label smoothing.

use mlp_core::noise::Dropout;
use mlp_core::{Activation, Mlp, Regularisation, Shape, Workspace};
use ndarray::{Array2, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SHAPE: Shape = Shape {
    inputs: 6,
    hidden: 5,
    classes: 4,
};
const BATCH: usize = 7;
/// Step for central differences. In f32 the loss (≈1.4) carries ~1e-7 relative rounding error,
/// so the difference quotient is good to ~1e-5; the truncation error h²·L'''/6 is of the same order.
const H: f32 = 1e-2;

fn problem(activation: Activation, seed: u64) -> (Mlp, Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = Mlp::new(SHAPE, activation, &mut rng).unwrap();
    // Non-zero biases, so their gradients are exercised away from the initial point.
    model.b1.mapv_inplace(|_| rng.random_range(-0.5..0.5));
    model.b2.mapv_inplace(|_| rng.random_range(-0.5..0.5));
    let x = Array2::from_shape_simple_fn((BATCH, SHAPE.inputs), || rng.random_range(-1.0..1.0));
    let labels = (0..BATCH).map(|i| i % SHAPE.classes).collect();
    (model, x, labels)
}

fn mean_loss(model: &Mlp, x: ArrayView2<f32>, labels: &[usize], reg: Regularisation) -> f32 {
    let mut ws = Workspace::new(model.shape(), x.nrows());
    model.forward_training(x, labels, reg, &mut ws).mean_loss() as f32
}

/// Checks every element of one parameter tensor, selected by `param`.
#[allow(clippy::too_many_arguments)]
fn check_tensor(
    activation: Activation,
    name: &str,
    param: fn(&mut Mlp) -> &mut [f32],
    analytic: &[f32],
    model: &Mlp,
    x: &Array2<f32>,
    labels: &[usize],
    reg: Regularisation,
) {
    let mut probe = model.clone();
    for (i, &expected) in analytic.iter().enumerate() {
        let original = param(&mut probe)[i];
        param(&mut probe)[i] = original + H;
        let plus = mean_loss(&probe, x.view(), labels, reg);
        param(&mut probe)[i] = original - H;
        let minus = mean_loss(&probe, x.view(), labels, reg);
        param(&mut probe)[i] = original;
        let numeric = (plus - minus) / (2.0 * H);
        let tolerance = 2e-4 + 1e-2 * expected.abs();
        assert!(
            (numeric - expected).abs() <= tolerance,
            "{activation}: d{name}[{i}] analytic {expected} vs numeric {numeric}"
        );
    }
}

fn check_activation(activation: Activation) {
    check_pass(activation, Regularisation::default());
}

/// Every parameter's gradient from `backward_training` under `reg` against finite
/// differences of `forward_training` under the same `reg`.
fn check_pass(activation: Activation, reg: Regularisation) {
    let (model, x, labels) = problem(activation, 18);
    let mut ws = Workspace::new(SHAPE, BATCH);
    model.forward_training(x.view(), &labels, reg, &mut ws);
    // A kink of ReLU within ±H of some z1 would make the finite difference meaningless there.
    let z1 = x.dot(&model.w1) + &model.b1;
    let closest = z1.iter().fold(f32::INFINITY, |m, z| m.min(z.abs()));
    assert!(
        closest > 2.0 * H,
        "test data puts a pre-activation at {closest}, too near a kink"
    );

    let grads = model
        .backward_training(x.view(), &labels, reg, &mut ws)
        .clone();
    type Tensor<'a> = (&'a str, fn(&mut Mlp) -> &mut [f32], &'a [f32]);
    let tensors: [Tensor; 4] = [
        (
            "w1",
            |m| m.w1.as_slice_mut().unwrap(),
            grads.dw1.as_slice().unwrap(),
        ),
        (
            "b1",
            |m| m.b1.as_slice_mut().unwrap(),
            grads.db1.as_slice().unwrap(),
        ),
        (
            "w2",
            |m| m.w2.as_slice_mut().unwrap(),
            grads.dw2.as_slice().unwrap(),
        ),
        (
            "b2",
            |m| m.b2.as_slice_mut().unwrap(),
            grads.db2.as_slice().unwrap(),
        ),
    ];
    for (name, param, analytic) in tensors {
        check_tensor(activation, name, param, analytic, &model, &x, &labels, reg);
    }
}

/// A fixed mask that drops some hidden units of every row, and label smoothing.
#[test]
fn dropout_and_label_smoothing_gradients_match_finite_differences() {
    let mask = Dropout::new(0.4).unwrap().mask(11, BATCH, SHAPE.hidden);
    assert!(mask.iter().any(|&m| m == 0.0) && mask.iter().any(|&m| m != 0.0));
    for activation in [Activation::Relu, Activation::Tanh] {
        let masked = Regularisation {
            hidden_mask: Some(mask.view()),
            smoothing: 0.0,
        };
        check_pass(activation, masked);
        let smoothed = Regularisation {
            hidden_mask: None,
            smoothing: 0.2,
        };
        check_pass(activation, smoothed);
        check_pass(
            activation,
            Regularisation {
                hidden_mask: Some(mask.view()),
                smoothing: 0.1,
            },
        );
    }
}

/// Label smoothing's loss, by its definition −Σ_j t_j log p_j, against the fused one.
#[test]
fn smoothed_loss_is_cross_entropy_against_the_smoothed_target() {
    let (model, x, labels) = problem(Activation::Relu, 5);
    let mut ws = Workspace::new(SHAPE, BATCH);
    let eps = 0.3f32;
    let reg = Regularisation {
        hidden_mask: None,
        smoothing: eps,
    };
    let fused = model
        .forward_training(x.view(), &labels, reg, &mut ws)
        .loss_sum;
    let logits = x.dot(&model.w1) + &model.b1;
    let a1 = logits.mapv(|z| z.max(0.0));
    let z2 = a1.dot(&model.w2) + &model.b2;
    let mut by_definition = 0.0f64;
    for (row, &y) in z2.rows().into_iter().zip(&labels) {
        let lse = row.iter().map(|&z| f64::from(z).exp()).sum::<f64>().ln();
        for (j, &z) in row.iter().enumerate() {
            let t = if j == y { 1.0 - eps } else { 0.0 } + eps / SHAPE.classes as f32;
            by_definition -= f64::from(t) * (f64::from(z) - lse);
        }
    }
    assert!(
        (fused - by_definition).abs() < 1e-4,
        "{fused} vs {by_definition}"
    );
}

#[test]
fn relu_gradients_match_finite_differences() {
    check_activation(Activation::Relu);
}

#[test]
fn leaky_relu_gradients_match_finite_differences() {
    check_activation(Activation::LeakyRelu);
}

#[test]
fn tanh_gradients_match_finite_differences() {
    check_activation(Activation::Tanh);
}

#[test]
fn sigmoid_gradients_match_finite_differences() {
    check_activation(Activation::Sigmoid);
}

/// A check that cannot fail proves nothing: corrupt one gradient element and make sure the
/// comparison notices.
#[test]
#[should_panic(expected = "dw1[3]")]
fn the_check_catches_a_wrong_gradient() {
    let (model, x, labels) = problem(Activation::Tanh, 17);
    let mut ws = Workspace::new(SHAPE, BATCH);
    model.forward(x.view(), &labels, &mut ws);
    let mut grads = model.backward(x.view(), &labels, &mut ws).clone();
    grads.dw1.as_slice_mut().unwrap()[3] *= 1.1;
    grads.dw1.as_slice_mut().unwrap()[3] += 1e-3;
    check_tensor(
        Activation::Tanh,
        "w1",
        |m| m.w1.as_slice_mut().unwrap(),
        grads.dw1.as_slice().unwrap(),
        &model,
        &x,
        &labels,
        Regularisation::default(),
    );
}

#[test]
fn batches_smaller_than_the_workspace_give_the_same_gradients() {
    let (model, x, labels) = problem(Activation::Relu, 3);
    let mut exact = Workspace::new(SHAPE, BATCH);
    let mut roomy = Workspace::new(SHAPE, BATCH * 3);
    let a = model.forward(x.view(), &labels, &mut exact);
    let b = model.forward(x.view(), &labels, &mut roomy);
    assert_eq!(a, b);
    assert_eq!(
        model.backward(x.view(), &labels, &mut exact),
        model.backward(x.view(), &labels, &mut roomy)
    );
}
