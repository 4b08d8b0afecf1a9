//! Train a tiny network with a hand-written loop: forward, backward, and the SGD update
//! written out, on a problem a linear model cannot solve (XOR of two noisy inputs).
//!
//! cargo run -p mlp-core --example hand_loop

use mlp_core::{Activation, Mlp, Shape, Workspace};
use ndarray::{Array2, Zip};
use rand::{RngExt, SeedableRng};

fn main() -> Result<(), mlp_core::ModelError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let n = 256;
    let mut x = Array2::<f32>::zeros((n, 2));
    let mut labels = vec![0usize; n];
    for i in 0..n {
        let (a, b) = (rng.random_bool(0.5), rng.random_bool(0.5));
        x[[i, 0]] = a as u8 as f32 + rng.random_range(-0.2..0.2);
        x[[i, 1]] = b as u8 as f32 + rng.random_range(-0.2..0.2);
        labels[i] = (a ^ b) as usize;
    }

    let mut model = Mlp::new(
        Shape {
            inputs: 2,
            hidden: 16,
            classes: 2,
        },
        Activation::Tanh,
        &mut rng,
    )?;
    let mut ws = Workspace::new(model.shape(), n);
    let lr = 0.5;
    for step in 0..=500 {
        let metrics = model.forward(x.view(), &labels, &mut ws);
        let g = model.backward(x.view(), &labels, &mut ws);
        // θ ← θ − lr·∇θ, parameter by parameter.
        Zip::from(&mut model.w1)
            .and(&g.dw1)
            .for_each(|w, &d| *w -= lr * d);
        Zip::from(&mut model.b1)
            .and(&g.db1)
            .for_each(|b, &d| *b -= lr * d);
        Zip::from(&mut model.w2)
            .and(&g.dw2)
            .for_each(|w, &d| *w -= lr * d);
        Zip::from(&mut model.b2)
            .and(&g.db2)
            .for_each(|b, &d| *b -= lr * d);
        if step % 100 == 0 {
            println!(
                "step {step:>3}  loss {:.4}  accuracy {:.3}",
                metrics.mean_loss(),
                metrics.accuracy()
            );
        }
    }
    let predictions = model.predict(x.view());
    let correct = predictions
        .iter()
        .zip(&labels)
        .filter(|(p, y)| p == y)
        .count();
    println!("final accuracy {:.3}", correct as f64 / n as f64);
    Ok(())
}
