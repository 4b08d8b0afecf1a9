//! Train on your own in-memory data: three interleaved 2-D spirals (not images), with the
//! same trainer the `mlp` binary uses for Fashion-MNIST.
//!
//! cargo run -p mlp-train --example spirals

use mlp_core::Activation;
use mlp_train::{InMemoryData, TrainConfig, evaluate, train};
use ndarray::Array2;

fn spirals(
    per_class: usize,
    classes: usize,
    phase: f32,
) -> Result<InMemoryData, mlp_train::data::DataShapeError> {
    let n = per_class * classes;
    let mut x = Array2::zeros((n, 2));
    let mut y = Vec::with_capacity(n);
    for c in 0..classes {
        for i in 0..per_class {
            let r = i as f32 / per_class as f32;
            let t = c as f32 * 2.0 * std::f32::consts::PI / classes as f32
                + 4.0 * r
                + phase * (i % 7) as f32;
            let row = c * per_class + i;
            x[[row, 0]] = r * t.sin();
            x[[row, 1]] = r * t.cos();
            y.push(c);
        }
    }
    InMemoryData::new(x, y, classes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let train_set = spirals(300, 3, 0.01)?;
    let val_set = spirals(100, 3, 0.013)?;
    let config = TrainConfig {
        hidden: 64,
        activation: Activation::Tanh,
        epochs: 200,
        batch_size: 32,
        lr: 0.5,
        lr_decay: 0.99,
        l2: 0.0,
        seed: 7,
        threads: 1,
        ..TrainConfig::default()
    };
    let outcome = train(&config.validate()?, &train_set, &val_set, |r| {
        if r.epoch % 40 == 0 {
            println!(
                "epoch {:>3}  train_loss {:.4}  val_acc {:.3}",
                r.epoch,
                r.train_loss,
                r.val_acc.expect("a validation set is given")
            );
        }
    })?;
    let result = evaluate(&outcome.best_model, &val_set);
    println!(
        "best epoch {}: validation accuracy {:.3}",
        outcome.best_epoch,
        result.accuracy()
    );
    println!(
        "confusion (rows: true class, columns: predicted):\n{}",
        result.confusion
    );
    Ok(())
}
