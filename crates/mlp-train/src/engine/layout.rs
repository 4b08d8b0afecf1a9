//! Between a model's layout ([`Mlp`]: W1 inputs × hidden, W2 hidden × classes) and the
//! shards' (each its columns of W1 in panels as wide as a tile, its rows of W2 transposed): for
//! the parameters, and for the optimiser's moments, which are laid out as the parameters.

use std::ops::Range;

use mlp_core::kernels::Panels;
use mlp_core::{Mlp, Shape};

use super::shard::{Shard, Tensors};

/// Shard `s`'s part (`cols` of the hidden layer) of `model`'s tensors, its W1 laid out as
/// `layout` says; b2 goes to shard 0.
pub(super) fn shard_tensors(model: &Mlp, s: usize, cols: Range<usize>, layout: Panels) -> Tensors {
    let Shape {
        inputs, classes, ..
    } = model.shape();
    let mut w1 = vec![0.0; layout.len(inputs, cols.len())];
    for p in 0..inputs {
        for (k, h) in cols.clone().enumerate() {
            w1[layout.index(p, k)] = model.w1[[p, h]];
        }
    }
    let b1 = model.b1.as_slice().expect("contiguous")[cols.clone()].to_vec();
    let w2t = (0..classes)
        .flat_map(|c| cols.clone().map(move |h| model.w2[[h, c]]))
        .collect();
    let b2 = if s == 0 {
        model.b2.to_vec()
    } else {
        Vec::new()
    };
    Tensors { w1, b1, w2t, b2 }
}

/// Writes every shard's `tensors` into `model` (of the engine's shape).
pub(super) fn write_tensors(
    shards: &[Shard],
    tensors: impl Fn(&Shard) -> &Tensors,
    model: &mut Mlp,
) {
    let Shape {
        inputs, classes, ..
    } = model.shape();
    for shard in shards {
        let (w, col0, t) = (shard.width, shard.col0, tensors(shard));
        for p in 0..inputs {
            for k in 0..w {
                model.w1[[p, col0 + k]] = t.w1[shard.w1_layout.index(p, k)];
            }
        }
        for k in 0..w {
            model.b1[col0 + k] = t.b1[k];
            for c in 0..classes {
                model.w2[[col0 + k, c]] = t.w2t[c * w + k];
            }
        }
    }
    model
        .b2
        .as_slice_mut()
        .expect("contiguous")
        .copy_from_slice(&tensors(&shards[0]).b2);
}
