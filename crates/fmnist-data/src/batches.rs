//! Shuffled mini-batches of a [`Dataset`], drawn with the caller's seeded RNG.
//!
//! [`Batches`] owns one batch buffer and refills it in place, so iterating an epoch allocates
//! nothing per batch. It is a "lending" iterator (`next_batch` borrows the buffer), which is
//! why it does not implement `Iterator`.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::dataset::Dataset;

/// One mini-batch, borrowed from the [`Batches`] buffer.
#[derive(Debug)]
pub struct Batch<'a> {
    /// Normalised pixels, `labels.len()` rows of `features` values.
    pub x: &'a [f32],
    /// Class labels.
    pub labels: &'a [usize],
    /// Positions of these examples in the data set.
    pub indices: &'a [usize],
}

/// An epoch of shuffled mini-batches; the last one may be smaller than `batch_size`.
#[derive(Debug)]
pub struct Batches<'d> {
    data: &'d Dataset,
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
    x: Vec<f32>,
    labels: Vec<usize>,
}

impl<'d> Batches<'d> {
    /// Shuffles the example order with `rng` and prepares batches of `batch_size` (≥ 1).
    pub fn new<R: Rng + ?Sized>(data: &'d Dataset, batch_size: usize, rng: &mut R) -> Self {
        assert!(batch_size > 0, "batch size must be at least 1");
        let mut order: Vec<usize> = (0..data.len()).collect();
        order.shuffle(rng);
        Self {
            data,
            order,
            batch_size,
            next: 0,
            x: vec![0.0; batch_size * data.features()],
            labels: vec![0; batch_size],
        }
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    /// True if the data set is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Gathers the next batch into the buffer, or returns `None` at the end of the epoch.
    pub fn next_batch(&mut self) -> Option<Batch<'_>> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let indices = &self.order[self.next..end];
        let n = indices.len();
        self.next = end;
        let features = self.data.features();
        self.data
            .gather_normalised(indices, &mut self.x[..n * features], &mut self.labels[..n]);
        Some(Batch {
            x: &self.x[..n * features],
            labels: &self.labels[..n],
            indices,
        })
    }
}

impl Dataset {
    /// An epoch of shuffled mini-batches; see [`Batches`].
    pub fn shuffled_batches<R: Rng + ?Sized>(&self, batch_size: usize, rng: &mut R) -> Batches<'_> {
        Batches::new(self, batch_size, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn tiny(n: usize) -> Dataset {
        Dataset::from_parts(
            (0..n as u8).collect(),
            (0..n as u8).map(|i| i % 3).collect(),
            1,
            1,
            3,
        )
        .unwrap()
    }

    #[test]
    fn an_epoch_visits_every_example_once() {
        let data = tiny(10);
        let mut batches = data.shuffled_batches(4, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(batches.len(), 3);
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        while let Some(batch) = batches.next_batch() {
            sizes.push(batch.labels.len());
            for (&i, (&x, &y)) in batch.indices.iter().zip(batch.x.iter().zip(batch.labels)) {
                assert_eq!(x, i as f32 / 255.0);
                assert_eq!(y, i % 3);
            }
            seen.extend_from_slice(batch.indices);
        }
        assert_eq!(sizes, vec![4, 4, 2]);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn same_seed_same_order_other_seed_other_order() {
        let data = tiny(50);
        let order = |seed| {
            let mut b = data.shuffled_batches(50, &mut ChaCha8Rng::seed_from_u64(seed));
            b.next_batch().unwrap().indices.to_vec()
        };
        assert_eq!(order(7), order(7));
        assert_ne!(order(7), order(8));
    }
}
