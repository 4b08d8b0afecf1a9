//! What a gathered training batch's rows go through before the step sees them:
//! augmentation of each image, then dropout of its pixels, both drawn from the step's keys.

use mlp_core::noise::Dropout;

use crate::regularise::{Augmentation, StepKeys};

/// What a training batch's rows go through once gathered: augmentation of each image (of
/// `side` × `side` pixels), then dropout of its pixels.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct InputNoise {
    pub augmentation: Option<Augmentation>,
    pub dropout: Option<Dropout>,
    pub side: usize,
}

/// Row i of `rows` (each `inputs` long) transformed by `noise`'s augmentation under
/// `keys.augment`, then each of its pixels p given its dropout factor m under `dropout`'s key
/// (index i·inputs + p): a dropped pixel (m = 0) becomes zero, a kept one goes through
/// `scale(pixel, m)`.
pub(super) fn perturb<T: Copy + Default>(
    rows: &mut [T],
    inputs: usize,
    noise: &InputNoise,
    keys: &StepKeys,
    dropout: Option<(Dropout, u64)>,
    scratch: &mut [T],
    scale: impl Fn(&mut T, f32),
) {
    for (i, row) in rows.chunks_exact_mut(inputs).enumerate() {
        if let Some(aug) = noise.augmentation {
            aug.transform(keys.augment, i)
                .apply(row, noise.side, scratch);
        }
        if let Some((d, key)) = dropout {
            for (p, x) in row.iter_mut().enumerate() {
                let m = d.factor(key, (i * inputs + p) as u64);
                if m == 0.0 {
                    *x = T::default();
                } else {
                    scale(x, m);
                }
            }
        }
    }
}
