//! What a training step adds to the plain pass, and where its randomness comes from: dropout
//! on the inputs and the hidden layer, label smoothing, and augmentation (random translation
//! and horizontal flip of each image).
//!
//! Every random choice of a step is a pure function of the step's key (drawn by the training
//! loop from the run's seeded generator) and the row, unit or pixel it is for
//! ([`mlp_core::noise::draw`]), so the engine's threads make the same choices whichever of
//! them makes them, and a resumed run makes the same as an uninterrupted one.

use mlp_core::noise::{Dropout, draw};

/// The regularisers of a training run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Regularisers {
    /// Dropout on the hidden layer's activations.
    pub hidden_dropout: Option<Dropout>,
    /// Dropout on the input pixels (after augmentation).
    pub input_dropout: Option<Dropout>,
    /// Label smoothing ε (0: none).
    pub label_smoothing: f32,
    /// Random translation and flip of each training image.
    pub augmentation: Option<Augmentation>,
}

impl Regularisers {
    /// Whether any of them draws random numbers (the training loop then draws a key per
    /// epoch; without, the run's generator is left as the plain recipe leaves it).
    pub fn is_random(&self) -> bool {
        self.hidden_dropout.is_some() || self.input_dropout.is_some() || self.augmentation.is_some()
    }
}

/// The keys of one step's random choices, derived from the step's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepKeys {
    /// Row i's transform: [`Augmentation::transform`]`(augment, i)`.
    pub augment: u64,
    /// Pixel p of row i: factor `input_dropout.factor(input, i·inputs + p)`.
    pub input: u64,
    /// Hidden unit j of row i: factor `hidden_dropout.factor(hidden, i·H + j)`.
    pub hidden: u64,
}

impl StepKeys {
    /// The keys of the step whose key is `key`.
    pub fn of(key: u64) -> Self {
        Self {
            augment: draw(key, 0),
            input: draw(key, 1),
            hidden: draw(key, 2),
        }
    }
}

/// The key of batch `batch` (0-based) of the epoch whose key is `epoch_key`.
pub fn batch_key(epoch_key: u64, batch: usize) -> u64 {
    draw(epoch_key, batch as u64)
}

/// Random translation by up to `translate` pixels in each direction (zero fill) and, if
/// `flip`, a horizontal flip with probability ½, of square images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augmentation {
    /// Largest shift, in pixels, along each axis.
    pub translate: usize,
    /// Whether to flip half the images left to right.
    pub flip: bool,
}

/// One image's augmentation: flip (if `flip`), then shift right by `dx` and down by `dy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transform {
    /// Columns to the right (negative: left).
    pub dx: i32,
    /// Rows down (negative: up).
    pub dy: i32,
    /// Left-right mirror first.
    pub flip: bool,
}

impl Augmentation {
    /// The transform of row `row` under `key`: dx and dy uniform in −t..=t, flip a fair coin.
    pub fn transform(&self, key: u64, row: usize) -> Transform {
        let bits = draw(key, row as u64);
        let span = 2 * self.translate as u64 + 1;
        let t = self.translate as i32;
        Transform {
            // 21-bit fields: their remainders are uniform to within 2⁻¹⁵ for any span ≤ 64.
            dx: ((bits & 0x1f_ffff) % span) as i32 - t,
            dy: ((bits >> 21 & 0x1f_ffff) % span) as i32 - t,
            flip: self.flip && bits >> 63 == 1,
        }
    }
}

impl Transform {
    /// Whether the image stays as it is.
    pub fn is_identity(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the transform to `image` (`side` × `side`, row-major), using `scratch` (at
    /// least as long) for the original: pixel (y, x) becomes the original's
    /// (y − dy, x′ − dx), x′ mirrored if `flip`, or zero where that falls outside.
    pub fn apply<T: Copy + Default>(&self, image: &mut [T], side: usize, scratch: &mut [T]) {
        if self.is_identity() {
            return;
        }
        let len = side * side;
        let (image, original) = (&mut image[..len], &mut scratch[..len]);
        original.copy_from_slice(image);
        let s = side as i32;
        for y in 0..s {
            let sy = y - self.dy;
            let row = &mut image[(y * s) as usize..][..side];
            if !(0..s).contains(&sy) {
                row.fill(T::default());
                continue;
            }
            let src = &original[(sy * s) as usize..][..side];
            for (x, out) in (0..s).zip(row.iter_mut()) {
                let sx = x - self.dx;
                *out = if (0..s).contains(&sx) {
                    src[if self.flip { s - 1 - sx } else { sx } as usize]
                } else {
                    T::default()
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_shift_and_mirror_with_zero_fill() {
        // A 3 × 3 image 1..9; shifted right by 1 and up by 1.
        let mut image: Vec<u8> = (1..=9).collect();
        let mut scratch = vec![0; 9];
        let t = Transform {
            dx: 1,
            dy: -1,
            flip: false,
        };
        t.apply(&mut image, 3, &mut scratch);
        assert_eq!(image, [0, 4, 5, 0, 7, 8, 0, 0, 0]);
        let mut image: Vec<u8> = (1..=9).collect();
        let mirror = Transform {
            flip: true,
            ..Transform::default()
        };
        mirror.apply(&mut image, 3, &mut scratch);
        assert_eq!(image, [3, 2, 1, 6, 5, 4, 9, 8, 7]);
    }

    #[test]
    fn shifts_cover_the_range_evenly_and_flips_half() {
        let aug = Augmentation {
            translate: 2,
            flip: true,
        };
        let mut counts = [[0usize; 5]; 2];
        let mut flips = 0;
        for row in 0..10_000 {
            let t = aug.transform(99, row);
            counts[0][(t.dx + 2) as usize] += 1;
            counts[1][(t.dy + 2) as usize] += 1;
            flips += usize::from(t.flip);
        }
        // 2,000 expected in each cell: ±200 is more than 4 standard deviations.
        assert!(
            counts.iter().flatten().all(|&c| c.abs_diff(2000) < 200),
            "{counts:?}"
        );
        assert!(flips.abs_diff(5000) < 250, "{flips}");
        let still = Augmentation {
            translate: 0,
            flip: false,
        };
        assert!(still.transform(99, 3).is_identity());
    }
}
