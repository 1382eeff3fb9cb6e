//! The one place that calls the dense eigensolver and matrix products (faer, f64).
//!
//! Everything runs sequentially inside one block (`Par::Seq`): blocks are processed in
//! parallel by the caller, which keeps results bit-for-bit independent of scheduling.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{ComputeEigenvectors, self_adjoint_evd, self_adjoint_evd_scratch};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatMut, MatRef, Par};

/// Clear the upper halves of the vector registers. faer's AVX-512 kernels return with them
/// dirty, and every scalar (SSE-encoded) instruction that follows then pays a transition penalty
/// until they are cleared: measured, the spectral function's pole loop after one GEMM ran at
/// 378 ns per pole instead of 68. One instruction after each call into faer avoids it.
#[inline]
fn clear_upper() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: AVX is available (checked just above), and vzeroupper only clears the upper
        // halves of the vector registers, which hold no live value between two calls.
        unsafe { std::arch::x86_64::_mm256_zeroupper() }
    }
}

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
    clear_upper();
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
    clear_upper();
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

/// Uᵀ A U for symmetric A: the second product computes only the lower triangle (the result
/// is symmetric), which saves a quarter of the work; the upper triangle is then mirrored.
pub fn sym_sandwich(u: MatRef<'_, f64>, a: MatRef<'_, f64>) -> Mat<f64> {
    let n = u.ncols();
    let au = mul(a, u);
    let mut out = Mat::<f64>::zeros(n, n);
    triangular::matmul(
        out.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        u.transpose(),
        BlockStructure::Rectangular,
        au.as_ref(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    clear_upper();
    for j in 0..n {
        for i in 0..j {
            out[(i, j)] = out[(j, i)];
        }
    }
    out
}

/// Rows of Uᵀ A U for the columns `u_rows` of U only: (U_Rᵀ A) U, an r×n result for the
/// price of 4rn² instead of 4n³.
pub fn rows_sandwich(u_rows: MatRef<'_, f64>, a: MatRef<'_, f64>, u: MatRef<'_, f64>) -> Mat<f64> {
    let ra = mul(u_rows.transpose(), a);
    mul(ra.as_ref(), u)
}

/// Lower triangle of V diag(w) Vᵀ (the rest left zero).
pub fn weighted_gram_lower(v: MatRef<'_, f64>, w: &[f64]) -> Mat<f64> {
    let n = v.nrows();
    let vw = Mat::<f64>::from_fn(n, v.ncols(), |r, c| v[(r, c)] * w[c]);
    let mut out = Mat::<f64>::zeros(n, n);
    triangular::matmul(
        out.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        vw.as_ref(),
        BlockStructure::Rectangular,
        v.transpose(),
        BlockStructure::Rectangular,
        1.0,
        Par::Seq,
    );
    clear_upper();
    out
}

/// Σ_rs G_rs A_rs for symmetric G given by its lower triangle and symmetric A: Tr(G A).
pub fn trace_sym(g_lower: MatRef<'_, f64>, a: MatRef<'_, f64>) -> f64 {
    let n = a.nrows();
    let mut diag = 0.0;
    let mut off = 0.0;
    for j in 0..n {
        diag += g_lower[(j, j)] * a[(j, j)];
        for i in j + 1..n {
            off += g_lower[(i, j)] * a[(i, j)];
        }
    }
    diag + 2.0 * off
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, seed: u64) -> Mat<f64> {
        let mut s = seed;
        let m = Mat::<f64>::from_fn(n, n, |_, _| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        });
        Mat::from_fn(n, n, |i, j| m[(i, j)] + m[(j, i)])
    }

    #[test]
    fn structured_products_agree_with_plain_ones() {
        let (a, h) = (sample(9, 1), sample(9, 2));
        let (_, u) = eigh(h.as_ref());
        let full = sandwich(u.as_ref(), a.as_ref(), u.as_ref());
        let sym = sym_sandwich(u.as_ref(), a.as_ref());
        let rows = rows_sandwich(u.as_ref().subcols(0, 3), a.as_ref(), u.as_ref());
        for i in 0..9 {
            for j in 0..9 {
                assert!((full[(i, j)] - sym[(i, j)]).abs() < 1e-13);
                if i < 3 {
                    assert!((full[(i, j)] - rows[(i, j)]).abs() < 1e-13);
                }
            }
        }
        // Tr(U_D diag(w) U_Dᵀ A) = Σ_d w_d B_dd
        let w: Vec<f64> = (0..6).map(|d| 0.1 * d as f64 + 0.3).collect();
        let g = weighted_gram_lower(u.as_ref().subcols(3, 6), &w);
        let expected: f64 = (0..6).map(|d| w[d] * full[(3 + d, 3 + d)]).sum();
        assert!((trace_sym(g.as_ref(), a.as_ref()) - expected).abs() < 1e-13);
    }
}
