//! Criterion benchmark of loading and verifying the four Fashion-MNIST files.
//!
//! cargo bench -p fmnist-data --bench load   (needs the data: cargo xtask fetch-data)

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use fmnist_data::{Verify, load_fashion_mnist};

fn bench_load(c: &mut Criterion) {
    let dir = std::env::var_os("FMNIST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist")
        });
    if !dir.join("train-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "skipped: no Fashion-MNIST in {} (run `cargo xtask fetch-data`)",
            dir.display()
        );
        return;
    }
    let mut group = c.benchmark_group("data");
    group.sample_size(10);
    group.bench_function("load_and_verify_four_gz_files", |b| {
        b.iter(|| load_fashion_mnist(&dir, Verify::Catalogue).expect("the data loads"))
    });
    group.finish();
}

criterion_group!(benches, bench_load);
criterion_main!(benches);
