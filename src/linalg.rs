//! The one place that calls the dense eigensolver and matrix products (faer, f64).
//!
//! Everything runs sequentially inside one block (`Par::Seq`): blocks are processed in
//! parallel by the caller, which keeps results bit-for-bit independent of scheduling.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{ComputeEigenvectors, self_adjoint_evd, self_adjoint_evd_scratch};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// Eigenvalues (ascending) and eigenvectors (columns) of the symmetric matrix `a`
/// (its lower triangle is read).
pub fn eigh(a: MatRef<'_, f64>) -> (Vec<f64>, Mat<f64>) {
    let n = a.nrows();
    let mut u = Mat::<f64>::zeros(n, n);
    let mut s = faer::diag::Diag::<f64>::zeros(n);
    let params = Default::default();
    let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<f64>(
        n,
        ComputeEigenvectors::Yes,
        Par::Seq,
        params,
    ));
    self_adjoint_evd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        params,
    )
    .expect("symmetric eigensolver did not converge");
    let e = (0..n).map(|i| s[i]).collect();
    (e, u)
}

/// dst = alpha·lhs·rhs (+ dst if `add`).
pub fn gemm(
    dst: MatMut<'_, f64>,
    add: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
) {
    let accum = if add { Accum::Add } else { Accum::Replace };
    matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
}

/// lhs·rhs as a new matrix.
pub fn mul(lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) -> Mat<f64> {
    let mut out = Mat::zeros(lhs.nrows(), rhs.ncols());
    gemm(out.as_mut(), false, lhs, rhs, 1.0);
    out
}

/// Uᵀ A V.
pub fn sandwich(u: MatRef<'_, f64>, a: MatRef<'_, f64>, v: MatRef<'_, f64>) -> Mat<f64> {
    let av = mul(a, v);
    mul(u.transpose(), av.as_ref())
}
