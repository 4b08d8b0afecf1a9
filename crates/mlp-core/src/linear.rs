//! The affine layer y = x·W + b, the building block of both layers of the network.
//!
//! Matrix products go through ndarray's `general_mat_mul` (matrixmultiply's packed gemm, with
//! AVX-512/AVX2 kernels chosen at run time). Writing into caller-owned views with gemm's beta
//! lets the forward pass add the product onto the broadcast bias, and keeps every buffer reused.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

/// y = x·W + b.
// x: (n, in)   w: (in, out)   b: (out)   y: (n, out)
pub fn forward(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    b: ArrayView1<f32>,
    mut y: ArrayViewMut2<f32>,
) {
    for mut row in y.rows_mut() {
        row.assign(&b);
    }
    general_mat_mul(1.0, &x, &w, 1.0, &mut y);
}

/// Parameter gradients of y = x·W + b given dy = dL/dy: dW = xᵀ·dy, db = Σ over rows of dy.
// x: (n, in)   dy: (n, out)   dw: (in, out)   db: (out)
pub fn backward_params(
    x: ArrayView2<f32>,
    dy: ArrayView2<f32>,
    mut dw: ArrayViewMut2<f32>,
    mut db: ArrayViewMut1<f32>,
) {
    general_mat_mul(1.0, &x.t(), &dy, 0.0, &mut dw);
    db.fill(0.0);
    for row in dy.axis_iter(Axis(0)) {
        db += &row;
    }
}

/// Input gradient of y = x·W + b given dy: dx = dy·Wᵀ.
// dy: (n, out)   w: (in, out)   dx: (n, in)
pub fn backward_input(dy: ArrayView2<f32>, w: ArrayView2<f32>, mut dx: ArrayViewMut2<f32>) {
    general_mat_mul(1.0, &dy, &w.t(), 0.0, &mut dx);
}
