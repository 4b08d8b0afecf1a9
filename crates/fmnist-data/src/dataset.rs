//! An in-memory labelled image set, and loading Fashion-MNIST from a directory.
//!
//! Pixels stay as the `u8` values of the file (47 MB for the training set rather than 188 MB as
//! f32) and are normalised to `f32` in [0, 1] when a batch is gathered: the conversion is cheap
//! next to the matrix products, and it keeps `mlp train` well inside its memory budget.

use std::path::{Path, PathBuf};

use crate::catalogue::{self, CLASSES, FileKind, Split};
use crate::error::DataError;
use crate::idx::{IdxFile, read_idx_file};

/// Labelled images: `len()` images of `rows × cols` pixels with one class label each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    classes: usize,
}

/// Whether to check file contents against the Fashion-MNIST catalogue digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Reject files whose decompressed SHA-256 differs from the catalogue (the default).
    Catalogue,
    /// Accept any well-formed IDX files (other data in the same format, or test fixtures).
    Skip,
}

/// The training and test sets of Fashion-MNIST.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    /// The 60,000 training examples.
    pub train: Dataset,
    /// The 10,000 test examples.
    pub test: Dataset,
}

impl Dataset {
    /// Builds a data set from raw parts, checking that sizes agree and labels are `< classes`.
    ///
    /// Returns `None` if `pixels.len() != labels.len() * rows * cols` or a label is out of range.
    pub fn from_parts(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
        classes: usize,
    ) -> Option<Self> {
        let sizes_agree = pixels.len() == labels.len() * rows * cols;
        let labels_valid = labels.iter().all(|&l| (l as usize) < classes);
        (sizes_agree && labels_valid).then_some(Self {
            pixels,
            labels,
            rows,
            cols,
            classes,
        })
    }

    /// Loads an image file and a label file (raw or .gz IDX) and checks they belong together.
    pub fn load(images_path: &Path, labels_path: &Path, classes: usize) -> Result<Self, DataError> {
        let (images, labels) = read_pair(images_path, labels_path)?;
        Self::from_idx(images_path, images, labels_path, labels, classes)
    }

    fn from_idx(
        images_path: &Path,
        images: IdxFile,
        labels_path: &Path,
        labels: IdxFile,
        classes: usize,
    ) -> Result<Self, DataError> {
        let dims = &images.array.dims;
        let (count, rows, cols) = (dims[0], dims[1], dims[2]);
        let labels = labels.array.data;
        if count != labels.len() {
            return Err(DataError::CountMismatch {
                images_path: images_path.to_owned(),
                images: count,
                labels_path: labels_path.to_owned(),
                labels: labels.len(),
            });
        }
        if let Some((index, &label)) = labels
            .iter()
            .enumerate()
            .find(|&(_, &l)| l as usize >= classes)
        {
            return Err(DataError::LabelOutOfRange {
                path: labels_path.to_owned(),
                index,
                label,
                classes,
            });
        }
        Ok(Self {
            pixels: images.array.data,
            labels,
            rows,
            cols,
            classes,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels per image (`rows × cols`), the input size of a model.
    pub fn features(&self) -> usize {
        self.rows * self.cols
    }

    /// Image height and width.
    pub fn image_shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Number of classes labels are drawn from.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// All pixels, image after image, row-major within an image.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let f = self.features();
        &self.pixels[i * f..(i + 1) * f]
    }

    /// Splits into the first `len() - n` examples and the last `n` (e.g. train and validation).
    ///
    /// The split is by position: the Fashion-MNIST training file is already in random order, and
    /// a positional split needs no seed to reproduce. Panics if `n > len()`.
    pub fn split_last(mut self, n: usize) -> (Dataset, Dataset) {
        assert!(
            n <= self.len(),
            "cannot split off {n} of {} examples",
            self.len()
        );
        let at = self.len() - n;
        let tail = Dataset {
            pixels: self.pixels.split_off(at * self.features()),
            labels: self.labels.split_off(at),
            ..self.clone_shape()
        };
        (self, tail)
    }

    fn clone_shape(&self) -> Dataset {
        Dataset {
            pixels: Vec::new(),
            labels: Vec::new(),
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
        }
    }

    /// Copies the examples at `indices` into `x` (normalised to [0, 1], one row per example) and
    /// their labels into `y`. `x` must hold `indices.len() * features()` values and `y`
    /// `indices.len()`; nothing is allocated, so this can run every mini-batch.
    pub fn gather_normalised(&self, indices: &[usize], x: &mut [f32], y: &mut [usize]) {
        let f = self.features();
        assert_eq!(
            x.len(),
            indices.len() * f,
            "x has room for {} values",
            x.len()
        );
        assert_eq!(y.len(), indices.len(), "y has room for {} labels", y.len());
        for ((&i, x_row), y_i) in indices.iter().zip(x.chunks_exact_mut(f)).zip(y.iter_mut()) {
            normalise(self.image(i), x_row);
            *y_i = self.labels[i] as usize;
        }
    }

    /// All images as normalised `f32`, `len() × features()` row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.pixels.len()];
        normalise(&self.pixels, &mut out);
        out
    }

    /// All labels one-hot encoded, `len() × classes()` row-major.
    pub fn one_hot(&self) -> Vec<f32> {
        one_hot(&self.labels, self.classes)
    }
}

/// Maps pixel values 0..=255 to 0.0..=1.0. `out` must be as long as `pixels`.
pub fn normalise(pixels: &[u8], out: &mut [f32]) {
    assert_eq!(pixels.len(), out.len());
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = p as f32 / 255.0;
    }
}

/// One-hot encodes labels: row `i` has a 1.0 in column `labels[i]`. Panics on a label `>= classes`.
pub fn one_hot(labels: &[u8], classes: usize) -> Vec<f32> {
    let mut out = vec![0.0; labels.len() * classes];
    for (row, &l) in out.chunks_exact_mut(classes).zip(labels) {
        row[l as usize] = 1.0;
    }
    out
}

/// Finds `raw_name` or `raw_name.gz` in `dir`, preferring the raw file.
pub fn locate(dir: &Path, raw_name: &str) -> Result<PathBuf, DataError> {
    let raw = dir.join(raw_name);
    let gz = dir.join(format!("{raw_name}.gz"));
    if raw.is_file() {
        Ok(raw)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(DataError::Missing { path: raw })
    }
}

/// Loads one split of Fashion-MNIST from `dir` (files raw or .gz).
pub fn load_split(dir: &Path, split: Split, verify: Verify) -> Result<Dataset, DataError> {
    let images_spec = catalogue::file_spec(split, FileKind::Images);
    let labels_spec = catalogue::file_spec(split, FileKind::Labels);
    let images_path = locate(dir, images_spec.raw_name)?;
    let labels_path = locate(dir, labels_spec.raw_name)?;
    let (images, labels) = read_pair(&images_path, &labels_path)?;
    if verify == Verify::Catalogue {
        check_digest(&images_path, &images, images_spec.sha256)?;
        check_digest(&labels_path, &labels, labels_spec.sha256)?;
    }
    Dataset::from_idx(&images_path, images, &labels_path, labels, CLASSES)
}

/// Loads both splits of Fashion-MNIST from `dir` and checks the test images match the training
/// images in shape.
pub fn load_fashion_mnist(dir: &Path, verify: Verify) -> Result<FashionMnist, DataError> {
    let (train, test) = std::thread::scope(|s| {
        let test = s.spawn(|| load_split(dir, Split::Test, verify));
        let train = load_split(dir, Split::Train, verify);
        (train, test.join().expect("loading thread does not panic"))
    });
    let (train, test) = (train?, test?);
    if train.image_shape() != test.image_shape() {
        let spec = catalogue::file_spec(Split::Test, FileKind::Images);
        return Err(DataError::ShapeMismatch {
            path: locate(dir, spec.raw_name)?,
            expected: train.image_shape(),
            found: test.image_shape(),
        });
    }
    Ok(FashionMnist { train, test })
}

/// Reads an image file and a label file concurrently (decompression dominates load time).
fn read_pair(images_path: &Path, labels_path: &Path) -> Result<(IdxFile, IdxFile), DataError> {
    let (images, labels) = std::thread::scope(|s| {
        let labels = s.spawn(|| read_idx_file(labels_path, 1));
        let images = read_idx_file(images_path, 3);
        (
            images,
            labels.join().expect("loading thread does not panic"),
        )
    });
    Ok((images?, labels?))
}

fn check_digest(path: &Path, file: &IdxFile, expected: &str) -> Result<(), DataError> {
    if file.sha256 == expected {
        Ok(())
    } else {
        Err(DataError::Digest {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual: file.sha256.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_last_keeps_order_and_shape() {
        let ds = Dataset::from_parts((0..12).collect(), vec![0, 1, 2, 0, 1, 2], 1, 2, 3).unwrap();
        let (head, tail) = ds.split_last(2);
        assert_eq!(head.labels(), &[0, 1, 2, 0]);
        assert_eq!(tail.labels(), &[1, 2]);
        assert_eq!(tail.pixels(), &[8, 9, 10, 11]);
        assert_eq!(tail.features(), 2);
    }

    #[test]
    fn gather_normalises_into_the_callers_buffers() {
        let ds = Dataset::from_parts(vec![0, 255, 51, 102], vec![1, 0], 1, 2, 2).unwrap();
        let (mut x, mut y) = (vec![9.0; 4], vec![9; 2]);
        ds.gather_normalised(&[1, 0], &mut x, &mut y);
        assert_eq!(x, vec![51.0 / 255.0, 102.0 / 255.0, 0.0, 1.0]);
        assert_eq!(y, vec![0, 1]);
    }

    #[test]
    fn from_parts_rejects_inconsistent_sizes_and_labels() {
        assert!(Dataset::from_parts(vec![0; 3], vec![0, 0], 1, 2, 2).is_none());
        assert!(Dataset::from_parts(vec![0; 4], vec![0, 2], 1, 2, 2).is_none());
    }

    #[test]
    fn one_hot_marks_one_column_per_row() {
        assert_eq!(one_hot(&[2, 0], 3), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }
}
