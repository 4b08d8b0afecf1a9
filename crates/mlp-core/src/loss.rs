//! Softmax and cross-entropy, fused.
//!
//! For logits z and true class y, p = softmax(z) and L = −log p_y. Computing
//! log p_y = (z_y − m) − log Σ_j e^(z_j − m), with m = max_j z_j, never overflows and never
//! takes the log of an underflowed zero, unlike −log(softmax(z)_y + ε).
//!
//! The gradient of the batch-mean loss is the textbook one: dL/dz = (p − onehot(y)) / n.
//!
//! **Label smoothing** with strength ε trains against the target t = (1 − ε)·onehot(y) + ε/C
//! instead of onehot(y): L = −Σ_j t_j log p_j = −(1 − ε) log p_y − (ε/C) Σ_j log p_j, and
//! dL/dz = (p − t) / n (softmax's Jacobian turns −t/p into p − t because Σ t = 1). With ε = 0
//! both are the plain loss and gradient, bit for bit.
//!
//! `exp` and `log` come from `libm` (pure Rust), not the platform's libc, which may choose
//! another implementation per CPU: the same logits give the same bits on every machine. The
//! `_on` functions, the training engine's, take the exponentials of contiguous logits (and
//! no label smoothing) 16 at a time on a SIMD level ([`kernels::exp_in_place`], libm's bits
//! in every lane); the others call libm one value at a time.

use fearless_simd::Level;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::kernels;

/// Loss and accuracy counts of one forward pass over a batch.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BatchMetrics {
    /// Sum over the batch of −log p(true class). Divide by `count` for the mean.
    pub loss_sum: f64,
    /// Examples whose highest-scoring class is the true class.
    pub correct: usize,
    /// Examples in the batch.
    pub count: usize,
}

impl BatchMetrics {
    /// Mean cross-entropy over the batch.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.count as f64
    }

    /// Fraction of examples classified correctly.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.count as f64
    }

    /// Adds another batch's counts to these.
    pub fn merge(&mut self, other: BatchMetrics) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.count += other.count;
    }
}

/// Replaces each row of logits by its softmax and returns the batch's cross-entropy and
/// accuracy counts against `labels`.
// logits: (n, classes) → probabilities (n, classes)   labels: (n)
pub fn softmax_cross_entropy(logits: ArrayViewMut2<f32>, labels: &[usize]) -> BatchMetrics {
    cross_entropy(None, logits, labels)
}

/// [`softmax_cross_entropy`], with the exponentials of contiguous logits taken 16 at a time
/// on `level` ([`kernels::exp_in_place`]): the same bits on every level.
// logits: (n, classes) → probabilities (n, classes)   labels: (n)
pub fn softmax_cross_entropy_on(
    level: Level,
    logits: ArrayViewMut2<f32>,
    labels: &[usize],
) -> BatchMetrics {
    cross_entropy(Some(level), logits, labels)
}

/// [`softmax_cross_entropy`], the exponentials of contiguous rows from `exp_in_place` on
/// `level` if given, else from `libm::expf` one at a time (the reference passes' way, kept
/// apart from the kernel that the engine's tests compare with them).
fn cross_entropy(
    level: Option<Level>,
    mut logits: ArrayViewMut2<f32>,
    labels: &[usize],
) -> BatchMetrics {
    assert_eq!(logits.nrows(), labels.len(), "one label per row of logits");
    let mut metrics = BatchMetrics {
        count: labels.len(),
        ..Default::default()
    };
    let classes = logits.ncols();
    let mut add = |predicted: usize, log_p_y: f32, y: usize| {
        metrics.loss_sum -= log_p_y as f64;
        metrics.correct += (predicted == y) as usize;
    };
    // Rows as plain slices when they are contiguous: the same arithmetic in the same order,
    // without the per-row cost of views (a third of the time at 10 classes), and the
    // exponentials of a stretch of rows in one pass.
    if let Some(all) = logits.as_slice_mut().filter(|_| classes > 0) {
        const ROWS: usize = 64;
        for (rows, labels) in all.chunks_mut(ROWS * classes).zip(labels.chunks(ROWS)) {
            // Per row: the prediction, z_y and the max, then z − max in place.
            let mut seen = [(0, 0.0, 0.0); ROWS];
            for ((row, &y), seen) in rows.chunks_exact_mut(classes).zip(labels).zip(&mut seen) {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                *seen = (argmax_slice(row), row[y], max);
                row.iter_mut().for_each(|v| *v -= max);
            }
            match level {
                Some(level) => {
                    fearless_simd::dispatch!(level, simd => kernels::exp_in_place(simd, rows));
                }
                None => rows.iter_mut().for_each(|v| *v = libm::expf(*v)),
            }
            for ((row, &y), &(predicted, z_y, max)) in
                rows.chunks_exact_mut(classes).zip(labels).zip(&seen)
            {
                let sum = normalise(row);
                add(predicted, (z_y - max) - libm::logf(sum), y);
            }
        }
    } else {
        for (row, &y) in logits.axis_iter_mut(Axis(0)).zip(labels) {
            let predicted = argmax(row.view());
            let log_p_y = softmax_row(row, y);
            add(predicted, log_p_y, y);
        }
    }
    metrics
}

/// `row /= Σ row` (the sum in order from 0, then one reciprocal), returning the sum: the end
/// of a softmax once the row holds e^(z − max).
fn normalise(row: &mut [f32]) -> f32 {
    let sum = row.iter().fold(0.0f32, |s, &v| s + v);
    let inv_sum = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv_sum);
    sum
}

/// [`softmax_cross_entropy`] against labels smoothed by `smoothing` (ε in [0, 1)): the loss
/// is −(1 − ε) log p_y − (ε/C) Σ_j log p_j per row (see the module's doc). ε = 0 is
/// `softmax_cross_entropy` itself.
// logits: (n, classes) → probabilities (n, classes)   labels: (n)
pub fn smoothed_cross_entropy(
    logits: ArrayViewMut2<f32>,
    labels: &[usize],
    smoothing: f32,
) -> BatchMetrics {
    smoothed(None, logits, labels, smoothing)
}

/// [`smoothed_cross_entropy`], where ε = 0 takes the exponentials on `level` as
/// [`softmax_cross_entropy_on`] does (the smoothed loss takes them one at a time): the same
/// bits on every level.
// logits: (n, classes) → probabilities (n, classes)   labels: (n)
pub fn smoothed_cross_entropy_on(
    level: Level,
    logits: ArrayViewMut2<f32>,
    labels: &[usize],
    smoothing: f32,
) -> BatchMetrics {
    smoothed(Some(level), logits, labels, smoothing)
}

/// [`smoothed_cross_entropy`], ε = 0 taking its exponentials as [`cross_entropy`] does.
fn smoothed(
    level: Option<Level>,
    mut logits: ArrayViewMut2<f32>,
    labels: &[usize],
    smoothing: f32,
) -> BatchMetrics {
    if smoothing == 0.0 {
        return cross_entropy(level, logits, labels);
    }
    assert_eq!(logits.nrows(), labels.len(), "one label per row of logits");
    let classes = logits.ncols();
    let mut metrics = BatchMetrics {
        count: labels.len(),
        ..Default::default()
    };
    let (on, all) = (1.0 - smoothing, smoothing / classes as f32);
    for (mut row, &y) in logits.axis_iter_mut(Axis(0)).zip(labels) {
        let predicted = argmax(row.view());
        let (z_y, z_sum) = (row[y], row.sum());
        let (max, sum) = softmax_in_place(row.view_mut());
        let log_sum = libm::logf(sum);
        // Σ_j log p_j = Σ_j (z_j − max) − C·log Σ.
        let log_p_y = (z_y - max) - log_sum;
        let sum_log_p = (z_sum - classes as f32 * max) - classes as f32 * log_sum;
        metrics.loss_sum -= f64::from(on * log_p_y + all * sum_log_p);
        metrics.correct += usize::from(predicted == y);
    }
    metrics
}

/// Gradient of the mean cross-entropy with respect to the logits.
// probs: (n, classes)   labels: (n)   dz: (n, classes)
pub fn softmax_cross_entropy_backward(
    probs: ArrayView2<f32>,
    labels: &[usize],
    dz: ArrayViewMut2<f32>,
) {
    smoothed_cross_entropy_backward(probs, labels, 0.0, dz);
}

/// Gradient of [`smoothed_cross_entropy`]'s mean with respect to the logits: (p − t) / n,
/// t = (1 − ε)·onehot(y) + ε/C. (t is 1 and 0 when ε = 0: the plain gradient's bits.)
// probs: (n, classes)   labels: (n)   dz: (n, classes)
pub fn smoothed_cross_entropy_backward(
    probs: ArrayView2<f32>,
    labels: &[usize],
    smoothing: f32,
    mut dz: ArrayViewMut2<f32>,
) {
    let inv_n = 1.0 / labels.len() as f32;
    let classes = probs.ncols();
    let off = smoothing / classes as f32;
    let target = |j: usize, y: usize| if j == y { (1.0 - smoothing) + off } else { off };
    if let (Some(p), Some(d), true) = (probs.as_slice(), dz.as_slice_mut(), classes > 0) {
        for ((p_row, dz_row), &y) in p
            .chunks_exact(classes)
            .zip(d.chunks_exact_mut(classes))
            .zip(labels)
        {
            for (j, (d, &p)) in dz_row.iter_mut().zip(p_row).enumerate() {
                *d = (p - target(j, y)) * inv_n;
            }
        }
        return;
    }
    for ((p_row, mut dz_row), &y) in probs
        .axis_iter(Axis(0))
        .zip(dz.axis_iter_mut(Axis(0)))
        .zip(labels)
    {
        for (j, (d, &p)) in dz_row.iter_mut().zip(p_row).enumerate() {
            *d = (p - target(j, y)) * inv_n;
        }
    }
}

/// Replaces each row of logits by its softmax (for predictions, where there is no label).
// logits: (n, classes) → probabilities (n, classes)
pub fn softmax(mut logits: ArrayViewMut2<f32>) {
    for row in logits.axis_iter_mut(Axis(0)) {
        softmax_in_place(row);
    }
}

/// Softmax of one row in place; returns log p at index `y`.
fn softmax_row(row: ArrayViewMut1<f32>, y: usize) -> f32 {
    let z_y = row[y];
    let (max, sum) = softmax_in_place(row);
    (z_y - max) - libm::logf(sum)
}

/// p = e^(z − max) / Σ e^(z − max), in place; returns (max, Σ) for the log-likelihood.
fn softmax_in_place(mut row: ArrayViewMut1<f32>) -> (f32, f32) {
    let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv_sum = 1.0 / sum;
    row.mapv_inplace(|v| v * inv_sum);
    (max, sum)
}

/// [`argmax`] on a slice.
fn argmax_slice(row: &[f32]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Index of the largest value (the first, on ties).
pub fn argmax(row: ArrayView1<'_, f32>) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn softmax_rows_sum_to_one_and_loss_matches_definition() {
        let mut z = array![[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]];
        let m = softmax_cross_entropy(z.view_mut(), &[2, 0]);
        for row in z.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-6);
        }
        // −ln(e³ / (e + e² + e³)) = 0.40760596; −ln(1/3) = 1.0986123
        assert!(
            (m.loss_sum - (0.40760596 + 1.0986123)).abs() < 1e-5,
            "{}",
            m.loss_sum
        );
        assert_eq!(m.correct, 2);
    }

    #[test]
    fn huge_logits_neither_overflow_nor_give_infinite_loss() {
        let mut z = array![[1000.0f32, -1000.0], [-1000.0, 1000.0]];
        let m = softmax_cross_entropy(z.view_mut(), &[0, 0]);
        assert!(z.iter().all(|p| p.is_finite()));
        // Row 0 is certain and right (loss 0); row 1 is certain and wrong by 2000 nats.
        assert_eq!(m.loss_sum, 2000.0);
        assert_eq!(m.correct, 1);
    }

    #[test]
    fn gradient_is_probabilities_minus_one_hot_over_n() {
        let p = array![[0.2f32, 0.8], [0.6, 0.4]];
        let mut dz = ndarray::Array2::<f32>::zeros((2, 2));
        softmax_cross_entropy_backward(p.view(), &[1, 0], dz.view_mut());
        let expected = array![[0.1f32, -0.1], [-0.2, 0.2]];
        assert!(
            dz.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-7),
            "{dz}"
        );
    }

    #[test]
    fn strided_logits_give_the_same_bits_as_contiguous_ones() {
        // The slice path and the view path must agree exactly.
        let z: ndarray::Array2<f32> = ndarray::Array2::from_shape_fn((5, 7), |(i, j)| {
            ((i * 7 + j * 3) % 11) as f32 * 0.37 - 1.5
        });
        let labels = [0, 6, 3, 2, 5];
        let mut contiguous = z.clone();
        // (7, 5) in memory, its transpose strided. (`z.t().to_owned()` keeps z's memory order,
        // and its transpose was contiguous: this test did not reach the view path.)
        let mut strided = ndarray::Array2::zeros((7, 5));
        strided.assign(&z.t());
        assert!(strided.view_mut().reversed_axes().as_slice_mut().is_none());
        let a = softmax_cross_entropy(contiguous.view_mut(), &labels);
        let b = softmax_cross_entropy(strided.view_mut().reversed_axes(), &labels);
        assert_eq!(a, b);
        assert_eq!(contiguous, strided.t());
        let (mut da, mut db) = (
            ndarray::Array2::zeros((5, 7)),
            ndarray::Array2::zeros((7, 5)),
        );
        softmax_cross_entropy_backward(contiguous.view(), &labels, da.view_mut());
        softmax_cross_entropy_backward(strided.t(), &labels, db.view_mut().reversed_axes());
        assert_eq!(da, db.t());
    }

    /// The exponentials of contiguous rows, taken 16 at a time on each level, against
    /// libm one value at a time, both on contiguous logits and through the view path of
    /// strided ones: 150 rows (two chunks of 64 and a rest), every seventh spread over 200
    /// (so that e^(z − max) leaves the kernel's plain range and its vectors go to libm), one
    /// with a −∞ logit.
    #[test]
    fn every_level_gives_the_bits_of_libm_one_value_at_a_time() {
        use crate::kernels::test_data::{bits, on_every_level};
        let mut z = ndarray::Array2::from_shape_fn((150, 10), |(i, j)| {
            let spread = if i % 7 == 3 { 200.0 } else { 4.0 };
            ((i * 31 + j * 17) % 23) as f32 / 23.0 * spread - spread / 2.0
        });
        z[[5, 2]] = f32::NEG_INFINITY;
        let labels: Vec<usize> = (0..150).map(|i| i * 7 % 10).collect();
        let mut plain = z.clone();
        let expected = softmax_cross_entropy(plain.view_mut(), &labels);
        let mut strided = ndarray::Array2::zeros((10, 150));
        strided.assign(&z.t());
        assert_eq!(
            softmax_cross_entropy(strided.view_mut().reversed_axes(), &labels),
            expected
        );
        assert_eq!(
            bits(&strided.t().iter().copied().collect::<Vec<_>>()),
            bits(plain.as_slice().unwrap())
        );
        on_every_level(|level, name| {
            let mut p = z.clone();
            let got = softmax_cross_entropy_on(level, p.view_mut(), &labels);
            assert_eq!(got, expected, "{name}");
            assert_eq!(
                bits(p.as_slice().unwrap()),
                bits(plain.as_slice().unwrap()),
                "{name}"
            );
        });
    }
}
