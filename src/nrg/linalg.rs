//! The one place that calls the dense eigensolver and matrix products (faer, f64).
//!
//! Everything runs sequentially inside one block (`Par::Seq`): blocks are processed in
//! parallel by the caller, which keeps results bit-for-bit independent of scheduling. Large
//! products are computed in column panels with a check of the run's cancel flag between them;
//! the eigendecomposition is one call into faer and cannot be interrupted.

use crate::parallel::Cancel;
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

/// Output columns per panel of a large product. The cancel flag is checked between panels, so
/// one product delays a cancellation by one panel at most: 512 columns of a 4000×4000 product
/// are 1.6e10 flops, ~0.3 s on one core.
const PANEL: usize = 512;

/// Column ranges (start, width) of the panels of an m×n product with inner dimension k: the
/// whole product in one piece unless it is large; otherwise PANEL columns each, the last panel
/// taking the remainder. Every panel keeps m and k and is at least PANEL wide, so faer computes
/// each element with the same kernel and the same order of sums as in one call: the results
/// are bit for bit those of the unsplit product (tested below).
fn panels(m: usize, n: usize, k: usize) -> impl Iterator<Item = (usize, usize)> {
    let count = if n >= 2 * PANEL && m >= 64 && k >= 64 {
        n / PANEL
    } else {
        1
    };
    (0..count).map(move |i| {
        let start = i * PANEL;
        let width = if i + 1 == count { n - start } else { PANEL };
        (start, width)
    })
}

/// dst = alpha·lhs·rhs (+ dst if `add`).
pub fn gemm(
    dst: MatMut<'_, f64>,
    add: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
) {
    gemm_until(dst, add, lhs, rhs, alpha, Cancel::NEVER).expect("not cancellable");
}

/// [`gemm`] that gives up (`None`, dst partly written) once `cancel` is set, checked between
/// column panels.
pub fn gemm_until(
    mut dst: MatMut<'_, f64>,
    add: bool,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    alpha: f64,
    cancel: Cancel<'_>,
) -> Option<()> {
    let accum = if add { Accum::Add } else { Accum::Replace };
    for (start, width) in panels(dst.nrows(), dst.ncols(), lhs.ncols()) {
        cancel.check()?;
        matmul(
            dst.as_mut().subcols_mut(start, width),
            accum,
            lhs,
            rhs.subcols(start, width),
            alpha,
            Par::Seq,
        );
        clear_upper();
    }
    Some(())
}

/// v·a·vᵀ for a symmetric `a` (only its lower triangle is read). With a = L + Lᵀ, L the lower
/// triangle with half the diagonal, v·a·vᵀ = P + Pᵀ for P = (v·L)·vᵀ: the triangular product
/// v·L costs half of v·a, the larger of the two products when v has fewer rows than columns.
/// The result is symmetric to the last bit.
pub fn sym_congruence(v: MatRef<'_, f64>, a: MatRef<'_, f64>) -> Mat<f64> {
    let (m, n) = (v.nrows(), v.ncols());
    let l = Mat::<f64>::from_fn(n, n, |i, j| {
        if i > j {
            a[(i, j)]
        } else if i == j {
            0.5 * a[(i, i)]
        } else {
            0.0
        }
    });
    let mut vl = Mat::<f64>::zeros(m, n);
    if m > 0 && n > 0 {
        triangular::matmul(
            vl.as_mut(),
            BlockStructure::Rectangular,
            Accum::Replace,
            v,
            BlockStructure::Rectangular,
            l.as_ref(),
            BlockStructure::TriangularLower,
            1.0,
            Par::Seq,
        );
        clear_upper();
    }
    let p = mul(vl.as_ref(), v.transpose());
    Mat::from_fn(m, m, |i, j| p[(i, j)] + p[(j, i)])
}

/// lhs·rhs as a new matrix.
pub fn mul(lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>) -> Mat<f64> {
    mul_until(lhs, rhs, Cancel::NEVER).expect("not cancellable")
}

/// [`mul`], `None` if cancelled.
pub fn mul_until(
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    cancel: Cancel<'_>,
) -> Option<Mat<f64>> {
    let mut out = Mat::zeros(lhs.nrows(), rhs.ncols());
    gemm_until(out.as_mut(), false, lhs, rhs, 1.0, cancel)?;
    Some(out)
}

/// The lower triangle of lhs·rhs (n×n) into `dst`, the rest untouched; in column panels like
/// [`gemm_until`]: each panel's diagonal block as a triangle, the rows below it as a plain
/// product.
fn lower_until(
    mut dst: MatMut<'_, f64>,
    lhs: MatRef<'_, f64>,
    rhs: MatRef<'_, f64>,
    cancel: Cancel<'_>,
) -> Option<()> {
    let n = dst.nrows();
    for (start, width) in panels(n, n, lhs.ncols()) {
        cancel.check()?;
        triangular::matmul(
            dst.as_mut().submatrix_mut(start, start, width, width),
            BlockStructure::TriangularLower,
            Accum::Replace,
            lhs.subrows(start, width),
            BlockStructure::Rectangular,
            rhs.subcols(start, width),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        let below = n - start - width;
        if below > 0 {
            matmul(
                dst.as_mut()
                    .submatrix_mut(start + width, start, below, width),
                Accum::Replace,
                lhs.subrows(start + width, below),
                rhs.subcols(start, width),
                1.0,
                Par::Seq,
            );
        }
        clear_upper();
    }
    Some(())
}

/// Uᵀ A V.
pub fn sandwich(u: MatRef<'_, f64>, a: MatRef<'_, f64>, v: MatRef<'_, f64>) -> Mat<f64> {
    let av = mul(a, v);
    mul(u.transpose(), av.as_ref())
}

/// Uᵀ A U for symmetric A: the second product computes only the lower triangle (the result
/// is symmetric), which saves a quarter of the work; the upper triangle is then mirrored.
/// `None` if cancelled.
pub fn sym_sandwich(
    u: MatRef<'_, f64>,
    a: MatRef<'_, f64>,
    cancel: Cancel<'_>,
) -> Option<Mat<f64>> {
    let n = u.ncols();
    let au = mul_until(a, u, cancel)?;
    let mut out = Mat::<f64>::zeros(n, n);
    lower_until(out.as_mut(), u.transpose(), au.as_ref(), cancel)?;
    for j in 0..n {
        for i in 0..j {
            out[(i, j)] = out[(j, i)];
        }
    }
    Some(out)
}

/// Rows of Uᵀ A U for the columns `u_rows` of U only: (U_Rᵀ A) U, an r×n result for the
/// price of 4rn² instead of 4n³. `None` if cancelled.
pub fn rows_sandwich(
    u_rows: MatRef<'_, f64>,
    a: MatRef<'_, f64>,
    u: MatRef<'_, f64>,
    cancel: Cancel<'_>,
) -> Option<Mat<f64>> {
    let ra = mul_until(u_rows.transpose(), a, cancel)?;
    mul_until(ra.as_ref(), u, cancel)
}

/// Lower triangle of V diag(w) Vᵀ (the rest left zero); `None` if cancelled.
pub fn weighted_gram_lower(v: MatRef<'_, f64>, w: &[f64], cancel: Cancel<'_>) -> Option<Mat<f64>> {
    let n = v.nrows();
    let vw = Mat::<f64>::from_fn(n, v.ncols(), |r, c| v[(r, c)] * w[c]);
    let mut out = Mat::<f64>::zeros(n, n);
    lower_until(out.as_mut(), vw.as_ref(), v.transpose(), cancel)?;
    Some(out)
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
    fn symmetric_congruence_agrees_with_plain_products() {
        let a = sample(9, 3);
        let v = random(4, 9, 4);
        let plain = mul(mul(v.as_ref(), a.as_ref()).as_ref(), v.as_ref().transpose());
        let sym = sym_congruence(v.as_ref(), a.as_ref());
        for i in 0..4 {
            for j in 0..4 {
                assert!((plain[(i, j)] - sym[(i, j)]).abs() < 1e-13);
                assert_eq!(sym[(i, j)], sym[(j, i)]);
            }
        }
    }

    #[test]
    fn structured_products_agree_with_plain_ones() {
        let (a, h) = (sample(9, 1), sample(9, 2));
        let (_, u) = eigh(h.as_ref());
        let full = sandwich(u.as_ref(), a.as_ref(), u.as_ref());
        let never = Cancel::NEVER;
        let sym = sym_sandwich(u.as_ref(), a.as_ref(), never).unwrap();
        let rows = rows_sandwich(u.as_ref().subcols(0, 3), a.as_ref(), u.as_ref(), never).unwrap();
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
        let g = weighted_gram_lower(u.as_ref().subcols(3, 6), &w, never).unwrap();
        let expected: f64 = (0..6).map(|d| w[d] * full[(3 + d, 3 + d)]).sum();
        assert!((trace_sym(g.as_ref(), a.as_ref()) - expected).abs() < 1e-13);
    }

    fn random(m: usize, n: usize, seed: u64) -> Mat<f64> {
        let mut s = seed;
        Mat::from_fn(m, n, |_, _| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
    }

    /// Products split into column panels (so that a cancel flag is seen between them) are bit
    /// for bit the products of one faer call, for plain and transposed (row-major) operands
    /// and for the lower-triangle products; otherwise runs would depend on the panel width.
    #[test]
    fn panelled_products_equal_one_call_bit_for_bit() {
        let (m, k, n) = (1100, 1300, 1500);
        assert!(panels(m, n, k).count() > 1, "the sizes must be split");
        let a = random(m, k, 1);
        let at = random(k, m, 2);
        let b = random(k, n, 3);
        for lhs in [a.as_ref(), at.as_ref().transpose()] {
            let mut whole = random(m, n, 4);
            let mut split = whole.clone();
            matmul(whole.as_mut(), Accum::Add, lhs, b.as_ref(), 0.7, Par::Seq);
            gemm(split.as_mut(), true, lhs, b.as_ref(), 0.7);
            assert!(whole == split, "plain product");
        }
        let v = random(n, k, 5);
        let mut whole = Mat::<f64>::zeros(n, n);
        triangular::matmul(
            whole.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            v.as_ref(),
            BlockStructure::Rectangular,
            v.as_ref().transpose(),
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        let mut split = Mat::<f64>::zeros(n, n);
        lower_until(
            split.as_mut(),
            v.as_ref(),
            v.as_ref().transpose(),
            Cancel::NEVER,
        )
        .unwrap();
        assert!(whole == split, "lower triangle");
    }

    #[test]
    fn a_set_flag_stops_a_product_between_panels() {
        let flag = std::sync::atomic::AtomicBool::new(true);
        let a = random(1200, 1200, 6);
        assert!(mul_until(a.as_ref(), a.as_ref(), Cancel::new(Some(&flag))).is_none());
        let small = random(10, 10, 7);
        // one panel: the flag is still checked once
        assert!(sym_sandwich(small.as_ref(), small.as_ref(), Cancel::new(Some(&flag))).is_none());
    }
}
