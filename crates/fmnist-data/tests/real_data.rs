//! Loads the real Fashion-MNIST files when they are present (after `cargo xtask fetch-data`,
//! or wherever FMNIST_DIR points); reports itself skipped otherwise.

use std::path::PathBuf;

use fmnist_data::{Split, Verify, load_fashion_mnist, load_split};

fn data_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("FMNIST_DIR").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion-mnist")),
    ];
    candidates.into_iter().flatten().find(|d| {
        d.join("train-images-idx3-ubyte.gz").is_file()
            || d.join("train-images-idx3-ubyte").is_file()
    })
}

#[test]
fn real_files_load_verified_with_the_known_contents() {
    let Some(dir) = data_dir() else {
        eprintln!(
            "skipped: Fashion-MNIST not found (run `cargo xtask fetch-data` or set FMNIST_DIR)"
        );
        return;
    };
    let data = load_fashion_mnist(&dir, Verify::Catalogue).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
    assert_eq!(data.train.image_shape(), (28, 28));
    // Golden values, from numpy:
    //   x = np.frombuffer(gzip.open('train-images-idx3-ubyte.gz').read(), np.uint8, offset=16)
    //   int(x.astype(np.uint64).sum()) -> 3431114169;  labels[:10] of train and test files.
    let pixel_sum: u64 = data.train.pixels().iter().map(|&p| p as u64).sum();
    assert_eq!(pixel_sum, 3_431_114_169);
    assert_eq!(&data.train.labels()[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(&data.test.labels()[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    for class in 0..10u8 {
        assert_eq!(
            data.train.labels().iter().filter(|&&l| l == class).count(),
            6000
        );
    }
    let test_only = load_split(&dir, Split::Test, Verify::Catalogue).unwrap();
    assert_eq!(test_only, data.test);
}
