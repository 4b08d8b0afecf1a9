//! What the trainer needs from a data set, and an in-memory implementation.
//!
//! The trainer only ever asks for rows by index into a buffer it owns, so any storage works:
//! `u8` images (as the `mlp` binary has Fashion-MNIST: the training engine gathers their
//! bytes and reads them through [`PIXEL_VALUES`]; `gather` normalises them), features
//! already in `f32`, or something generated.

use ndarray::Array2;

/// Labelled examples of a fixed number of features, for classification into `classes()`.
pub trait LabelledData: Sync {
    /// Number of examples.
    fn len(&self) -> usize;
    /// True if there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Features per example.
    fn features(&self) -> usize;
    /// Number of classes; every label is below this.
    fn classes(&self) -> usize;
    /// Writes the examples at `indices` into `x` (`indices.len()` rows of `features()` values)
    /// and their labels into `y`. Called once per mini-batch: must not allocate.
    fn gather(&self, indices: &[usize], x: &mut [f32], y: &mut [usize]);
    /// A hint that `indices` will be gathered next: start fetching them into cache. The
    /// trainer calls it one batch ahead, so a data set larger than the cache does not stall
    /// each step on memory. The default does nothing.
    fn prefetch(&self, _indices: &[usize]) {}
    /// The same examples as bytes, if the data set stores them so: the training engine then
    /// gathers batches as bytes (a quarter of the memory written per batch) and reads them
    /// through [`PIXEL_VALUES`]. Must give the very features [`LabelledData::gather`] writes.
    /// The default is `None`.
    fn byte_images(&self) -> Option<ByteImages<'_>> {
        None
    }
}

/// What each byte of a [`ByteImages`] pixel stands for: `PIXEL_VALUES[p] = p / 255`, rounded
/// once; [`LabelledData::gather`] of byte images reads this table too (a test checks all 256
/// against the division).
pub static PIXEL_VALUES: [f32; 256] = {
    let mut table = [0.0; 256];
    let mut p = 0;
    while p < 256 {
        table[p] = p as f32 / 255.0;
        p += 1;
    }
    table
};

/// Images stored as bytes (0–255) with byte labels, standing for p / 255 in [0, 1]: a
/// quarter of the memory of `f32` features. The training engine gathers the bytes
/// ([`ByteImages::gather_bytes`]) and reads them through [`PIXEL_VALUES`]; [`LabelledData::gather`]
/// (evaluation, the reference passes) converts them. This is how the `mlp` binary feeds
/// Fashion-MNIST to the trainer.
#[derive(Debug, Clone, Copy)]
pub struct ByteImages<'a> {
    pixels: &'a [u8],
    labels: &'a [u8],
    features: usize,
    classes: usize,
}

impl<'a> ByteImages<'a> {
    /// Wraps `labels.len()` images of `features` pixels each, checking sizes and labels.
    pub fn new(
        pixels: &'a [u8],
        labels: &'a [u8],
        features: usize,
        classes: usize,
    ) -> Result<Self, DataShapeError> {
        if pixels.len() != labels.len() * features {
            return Err(DataShapeError::CountMismatch {
                rows: pixels.len() / features.max(1),
                labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(DataShapeError::LabelOutOfRange {
                index,
                label: label as usize,
                classes,
            });
        }
        Ok(Self {
            pixels,
            labels,
            features,
            classes,
        })
    }
}

impl LabelledData for ByteImages<'_> {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn features(&self) -> usize {
        self.features
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn byte_images(&self) -> Option<ByteImages<'_>> {
        Some(*self)
    }

    fn gather(&self, indices: &[usize], x: &mut [f32], y: &mut [usize]) {
        let f = self.features;
        for ((&i, row), label) in indices.iter().zip(x.chunks_exact_mut(f)).zip(y.iter_mut()) {
            for (v, &p) in row.iter_mut().zip(&self.pixels[i * f..(i + 1) * f]) {
                *v = PIXEL_VALUES[usize::from(p)];
            }
            *label = self.labels[i] as usize;
        }
    }

    fn prefetch(&self, indices: &[usize]) {
        #[cfg(target_arch = "x86_64")]
        for &i in indices {
            let image = &self.pixels[i * self.features..(i + 1) * self.features];
            for line in image.chunks(64) {
                // SAFETY: prefetching has no effect on memory; the address is inside `pixels`.
                unsafe {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                        line.as_ptr().cast(),
                    )
                };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = indices;
    }
}

impl ByteImages<'_> {
    /// Copies the images at `indices` into `x` (`indices.len()` rows of `features()` bytes),
    /// unconverted, and their labels into `y`: [`LabelledData::gather`] without the
    /// normalisation, which [`PIXEL_VALUES`] gives.
    ///
    /// # Panics
    /// If `x` holds fewer than `indices.len() × features()` bytes, `y` fewer than
    /// `indices.len()` labels, or an index is past the last image.
    pub fn gather_bytes(&self, indices: &[usize], x: &mut [u8], y: &mut [usize]) {
        let f = self.features;
        assert!(
            indices
                .len()
                .checked_mul(f)
                .is_some_and(|need| x.len() >= need)
                && y.len() >= indices.len(),
            "room for {} images is needed",
            indices.len()
        );
        for (k, (&i, label)) in indices.iter().zip(y.iter_mut()).enumerate() {
            x[k * f..(k + 1) * f].copy_from_slice(&self.pixels[i * f..(i + 1) * f]);
            *label = self.labels[i] as usize;
        }
    }
}

/// Features and labels held in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct InMemoryData {
    x: Array2<f32>,
    y: Vec<usize>,
    classes: usize,
}

/// Features and labels that do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataShapeError {
    /// Row count and label count differ.
    #[error("{rows} rows of features but {labels} labels")]
    CountMismatch {
        /// Rows of features.
        rows: usize,
        /// Labels.
        labels: usize,
    },
    /// A label is not below the class count.
    #[error("label {label} at index {index} is not below the class count {classes}")]
    LabelOutOfRange {
        /// Position of the label.
        index: usize,
        /// Its value.
        label: usize,
        /// The class count.
        classes: usize,
    },
}

impl InMemoryData {
    /// Wraps features `x` (one row per example) and labels `y`, checking they agree.
    pub fn new(x: Array2<f32>, y: Vec<usize>, classes: usize) -> Result<Self, DataShapeError> {
        if x.nrows() != y.len() {
            return Err(DataShapeError::CountMismatch {
                rows: x.nrows(),
                labels: y.len(),
            });
        }
        if let Some((index, &label)) = y.iter().enumerate().find(|&(_, &l)| l >= classes) {
            return Err(DataShapeError::LabelOutOfRange {
                index,
                label,
                classes,
            });
        }
        let x = x.as_standard_layout().into_owned();
        Ok(Self { x, y, classes })
    }

    /// The features, one row per example.
    pub fn x(&self) -> &Array2<f32> {
        &self.x
    }

    /// The labels.
    pub fn y(&self) -> &[usize] {
        &self.y
    }
}

impl LabelledData for InMemoryData {
    fn len(&self) -> usize {
        self.y.len()
    }

    fn features(&self) -> usize {
        self.x.ncols()
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn gather(&self, indices: &[usize], x: &mut [f32], y: &mut [usize]) {
        let f = self.features();
        let all = self.x.as_slice().expect("stored in standard layout");
        for ((&i, row), label) in indices.iter().zip(x.chunks_exact_mut(f)).zip(y.iter_mut()) {
            row.copy_from_slice(&all[i * f..(i + 1) * f]);
            *label = self.y[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathered_pixels_are_exactly_byte_over_255() {
        // One image holding every byte value.
        let pixels: Vec<u8> = (0..=255).collect();
        let images = ByteImages::new(&pixels, &[3], 256, 10).unwrap();
        let (mut x, mut y) = (vec![0.0; 256], vec![0; 1]);
        images.gather(&[0], &mut x, &mut y);
        for (p, v) in x.iter().enumerate() {
            assert_eq!(*v, p as f32 / 255.0, "byte {p}");
        }
        assert_eq!(y, [3]);
    }

    #[test]
    fn bytes_read_through_the_table_are_the_gathered_features() {
        let pixels: Vec<u8> = (0..=255).rev().collect();
        let images = ByteImages::new(&pixels, &[7], 256, 10).unwrap();
        let (mut x, mut y) = (vec![0.0f32; 256], vec![0; 1]);
        images.gather(&[0], &mut x, &mut y);
        let (mut bytes, mut y_bytes) = (vec![0u8; 256], vec![0; 1]);
        let same = images.byte_images().expect("byte images have bytes");
        same.gather_bytes(&[0], &mut bytes, &mut y_bytes);
        let via_table: Vec<u32> = bytes
            .iter()
            .map(|&p| PIXEL_VALUES[usize::from(p)].to_bits())
            .collect();
        let gathered: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
        assert_eq!(via_table, gathered);
        assert_eq!(y_bytes, y);
    }
}
