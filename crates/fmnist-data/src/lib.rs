//! Fashion-MNIST as data: IDX parsing (raw or gzip), validation, normalisation, one-hot labels,
//! a train/validation split and seeded mini-batches. No network code lives here; fetching the
//! files is `cargo xtask fetch-data`'s job.
//!
//! ```no_run
//! use fmnist_data::{Verify, load_fashion_mnist};
//! use rand::SeedableRng;
//!
//! let data = load_fashion_mnist("data/fashion-mnist".as_ref(), Verify::Catalogue)?;
//! let (train, validation) = data.train.split_last(10_000);
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let mut batches = train.shuffled_batches(64, &mut rng);
//! while let Some(batch) = batches.next_batch() {
//!     assert_eq!(batch.x.len(), batch.labels.len() * 784);
//! }
//! # let _ = validation;
//! # Ok::<(), fmnist_data::DataError>(())
//! ```
#![warn(missing_docs)]

mod batches;
pub mod catalogue;
mod dataset;
mod error;
pub mod idx;

pub use batches::{Batch, Batches};
pub use catalogue::{CLASS_NAMES, CLASSES, FILES, FileKind, FileSpec, IMAGE_SIDE, PIXELS, Split};
pub use dataset::{
    Dataset, FashionMnist, Verify, load_fashion_mnist, load_split, locate, normalise, one_hot,
};
pub use error::{DataError, IdxError};
pub use idx::{IdxArray, IdxFile, parse_idx, read_idx_file};

/// The README's example, compiled and run as a test so that it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
