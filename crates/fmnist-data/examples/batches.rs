//! Load Fashion-MNIST, split off a validation set and walk one epoch of shuffled batches.
//!
//! cargo run -p fmnist-data --example batches [DATA_DIR]

use fmnist_data::{CLASS_NAMES, Verify, load_fashion_mnist};
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/fashion-mnist".to_owned());
    let data = load_fashion_mnist(dir.as_ref(), Verify::Catalogue)?;
    let (train, validation) = data.train.split_last(10_000);
    println!(
        "{} training, {} validation, {} test images of {:?}",
        train.len(),
        validation.len(),
        data.test.len(),
        train.image_shape()
    );

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut batches = train.shuffled_batches(64, &mut rng);
    let mut counts = [0usize; 10];
    let mut mean_pixel = 0.0f64;
    let mut n_batches = 0;
    while let Some(batch) = batches.next_batch() {
        for &label in batch.labels {
            counts[label] += 1;
        }
        mean_pixel += batch.x.iter().map(|&v| v as f64).sum::<f64>() / batch.x.len() as f64;
        n_batches += 1;
    }
    println!(
        "{n_batches} batches; mean normalised pixel {:.4}",
        mean_pixel / n_batches as f64
    );
    for (name, count) in CLASS_NAMES.iter().zip(counts) {
        println!("  {name:<12} {count}");
    }
    Ok(())
}
