//! Exact solution of non-interacting chains: the bare Wilson chain subtracted to get impurity
//! properties, and the whole resonant-level problem (U = 0) that NRG must reproduce.
//!
//! A chain is a real symmetric tridiagonal matrix whose entries fall off like Λ^(−n/2). Its
//! small eigenvalues must be known to *relative* accuracy (they set the thermodynamics at
//! T ~ ω_N), which a dense eigensolver does not give (its error is ~1e-16 of the largest
//! entry). Bisection with Sturm counts does: each count is exact for a matrix whose entries are
//! perturbed by a few ulps *relative to themselves*, and relative perturbations of the hoppings
//! move the eigenvalues of such graded chains only relatively.

use crate::thermo::{Ts, thermo_variables};
use num_dual::DualNum;

/// Number of eigenvalues of the tridiagonal matrix (diag, off) below x.
fn count_below(diag: &[f64], off: &[f64], x: f64) -> usize {
    let mut count = 0;
    let mut q = 1.0;
    for i in 0..diag.len() {
        let b2 = if i == 0 { 0.0 } else { off[i - 1] * off[i - 1] };
        q = (diag[i] - x) - if i == 0 { 0.0 } else { b2 / q };
        if q == 0.0 {
            // a zero pivot: perturb by far less than any relative accuracy we need
            q = -f64::MIN_POSITIVE;
        }
        if q < 0.0 {
            count += 1;
        }
    }
    count
}

/// Below this an eigenvalue counts as zero: far below any temperature a run can reach
/// (`nrg.T_min` ≥ 1e-100), and it stops bisection from crawling through subnormals towards the
/// exact zero mode of a chain with an odd number of sites.
const ZERO: f64 = 1e-200;

/// Eigenvalues of a chain that grows one site at a time.
///
/// The eigenvalues of the chain with one more site interlace those of the shorter one (Cauchy),
/// so each new eigenvalue is bisected inside the bracket its neighbours give: about 55 Sturm
/// counts instead of the ~150 that a bracket [−‖H‖, ‖H‖] needs to reach 1e-30. A whole run
/// costs Σ_N 55·N² operations.
#[derive(Debug, Clone, Default)]
pub struct GrowingChain {
    levels: Vec<f64>,
}

impl GrowingChain {
    pub fn new() -> GrowingChain {
        GrowingChain::default()
    }

    /// Eigenvalues (ascending) of the chain so far.
    pub fn levels(&self) -> &[f64] {
        &self.levels
    }

    /// Add the next site: `diag` and `off` describe at least the grown chain (its first
    /// `len + 1` diagonal and `len` off-diagonal entries are used).
    pub fn grow(&mut self, diag: &[f64], off: &[f64]) {
        let m = self.levels.len();
        let (diag, off) = (&diag[..=m], &off[..m]);
        let radius = (0..=m)
            .map(|i| {
                diag[i].abs()
                    + if i > 0 { off[i - 1].abs() } else { 0.0 }
                    + if i < m { off[i].abs() } else { 0.0 }
            })
            .fold(0.0, f64::max)
            + 1.0;
        let old = &self.levels;
        self.levels = (0..=m)
            .map(|k| {
                let lo = if k == 0 { -radius } else { old[k - 1] };
                let hi = if k == m { radius } else { old[k] };
                bisect(diag, off, k, lo, hi)
            })
            .collect();
    }
}

/// The k-th eigenvalue (from 0) inside [lo, hi], to a few ulps relative accuracy.
fn bisect(diag: &[f64], off: &[f64], k: usize, mut lo: f64, mut hi: f64) -> f64 {
    loop {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi || hi - lo < ZERO {
            break;
        }
        if lo.signum() == hi.signum() && hi - lo <= 2.0 * f64::EPSILON * lo.abs().min(hi.abs()) {
            break;
        }
        if count_below(diag, off, mid) > k {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

/// All eigenvalues (ascending) of the symmetric tridiagonal matrix with diagonal `diag` and
/// off-diagonal `off` (len = diag.len() − 1), each to a few ulps relative accuracy.
pub fn eigenvalues(diag: &[f64], off: &[f64]) -> Vec<f64> {
    assert_eq!(off.len() + 1, diag.len().max(1));
    let mut chain = GrowingChain::new();
    for _ in 0..diag.len() {
        chain.grow(diag, off);
    }
    chain.levels
}

/// |φ_k(0)|², the weight of every eigenvector on the first site, from the eigenvalues λ of the
/// whole matrix and μ of the matrix without its first row and column:
/// |φ_k(0)|² = Π_j (λ_k − μ_j) / Π_{j≠k} (λ_k − λ_j). The products are paired so that every
/// factor is a ratio of interlacing differences of order one.
pub fn first_site_weights(lambda: &[f64], mu: &[f64]) -> Vec<f64> {
    let n = lambda.len();
    assert_eq!(mu.len() + 1, n);
    (0..n)
        .map(|k| {
            let mut w = 1.0;
            for (j, &m) in mu.iter().enumerate() {
                // μ_j lies between λ_j and λ_{j+1}: pair it with the one that is not λ_k
                let partner = if j < k { lambda[j] } else { lambda[j + 1] };
                w *= (lambda[k] - m) / (lambda[k] - partner);
            }
            w
        })
        .collect()
}

/// Free energy −T Σ_σ Σ_k ln(1 + e^(−ε_kσ/T)) of spin-degenerate single-particle levels with
/// ε_kσ = e_k ∓ (h0 + δh)/2 (a field on the total spin), as a num-dual number in
/// (T, δh) at δh = 0. Any consistent units (physical, or a shell's rescaled ones).
pub fn free_energy(levels: &[f64], t: f64, h0: f64) -> Ts {
    let (tv, dh) = thermo_variables(t);
    let mut f = Ts::from(0.0);
    for &e in levels {
        for sign in [-1.0, 1.0] {
            // ε = e + sign·(h0 + δh)/2; −T ln(1 + e^(−ε/T)) = min(ε, 0) − T ln(1 + e^(−|ε|/T))
            let eps = (dh + h0) * (0.5 * sign) + e;
            let low = if eps.re < 0.0 { eps } else { Ts::from(0.0) };
            // beyond |ε|/T = 745, e^(−|ε|/T) is zero in f64 and so are all its derivatives:
            // evaluating them would only form 0·∞
            if eps.re.abs() / t > 745.0 {
                f += low;
                continue;
            }
            let magnitude = if eps.re < 0.0 { -eps } else { eps };
            f += low - tv * (-magnitude / tv).exp().ln_1p();
        }
    }
    f
}

/// Fermi function.
pub fn fermi(e: f64, t: f64) -> f64 {
    if e > 0.0 {
        let x = (-e / t).exp();
        x / (1.0 + x)
    } else {
        1.0 / (1.0 + (e / t).exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thermo::TsParts;
    use nalgebra::DMatrix;

    fn dense(diag: &[f64], off: &[f64]) -> DMatrix<f64> {
        let n = diag.len();
        DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                diag[i]
            } else if i + 1 == j {
                off[i]
            } else if j + 1 == i {
                off[j]
            } else {
                0.0
            }
        })
    }

    #[test]
    fn bisection_matches_dense_eigensolver() {
        let diag = [0.3, -0.1, 0.0, 0.2, 0.05];
        let off = [0.5, 0.4, 0.3, 0.2];
        let mut reference: Vec<f64> = dense(&diag, &off)
            .symmetric_eigenvalues()
            .iter()
            .copied()
            .collect();
        reference.sort_by(f64::total_cmp);
        let ours = eigenvalues(&diag, &off);
        for (a, b) in ours.iter().zip(&reference) {
            // dense eigensolver: absolute accuracy ~ 1e-15 of the norm
            assert!((a - b).abs() < 1e-14, "{a} vs {b}");
        }
    }

    #[test]
    fn graded_chain_small_eigenvalues_are_relatively_accurate() {
        // A Wilson chain of 80 sites at Λ = 2: the smallest eigenvalues are ~1e-12 and scale
        // exactly with the hoppings; scaling the tail by 2 must scale them by 2 to round-off.
        let hop: Vec<f64> = (0..79)
            .map(|n| crate::chain::wilson_hopping(2.0, n))
            .collect();
        let diag = vec![0.0; 80];
        let e = eigenvalues(&diag, &hop);
        let smallest = e
            .iter()
            .copied()
            .filter(|&x| x > 0.0)
            .fold(f64::INFINITY, f64::min);
        assert!(smallest < 1e-10);
        // particle–hole symmetry: the spectrum is symmetric to relative accuracy
        let mut pos: Vec<f64> = e.iter().copied().filter(|&x| x > 0.0).collect();
        let mut neg: Vec<f64> = e.iter().copied().filter(|&x| x < 0.0).map(|x| -x).collect();
        pos.sort_by(f64::total_cmp);
        neg.sort_by(f64::total_cmp);
        for (a, b) in pos.iter().zip(&neg) {
            assert!((a / b - 1.0).abs() < 1e-13, "{a} vs {b}");
        }
    }

    #[test]
    fn first_site_weights_match_eigenvectors() {
        let diag = [0.3, -0.1, 0.0, 0.2, 0.05];
        let off = [0.5, 0.4, 0.3, 0.2];
        let lambda = eigenvalues(&diag, &off);
        let mu = eigenvalues(&diag[1..], &off[1..]);
        let w = first_site_weights(&lambda, &mu);
        let eig = dense(&diag, &off).symmetric_eigen();
        for (k, &l) in lambda.iter().enumerate() {
            let idx = (0..5)
                .min_by(|&a, &b| {
                    (eig.eigenvalues[a] - l)
                        .abs()
                        .total_cmp(&(eig.eigenvalues[b] - l).abs())
                })
                .unwrap();
            let v = eig.eigenvectors[(0, idx)];
            assert!((w[k] - v * v).abs() < 1e-13, "k = {k}");
        }
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-13);
    }

    #[test]
    fn free_energy_derivatives() {
        // one level at e: S, and the Curie–like susceptibility against closed forms
        let (e, t) = (0.3, 0.2);
        let f = free_energy(&[e], t, 0.0);
        let nf = fermi(e, t);
        let s_exact = -2.0 * (nf * nf.ln() + (1.0 - nf) * (1.0 - nf).ln());
        assert!((-f.first_t() - s_exact).abs() < 1e-14);
        // χ = −∂²F/∂h² = 2 · ¼ · f(1−f)/T
        let chi = 0.5 * nf * (1.0 - nf) / t;
        assert!((-f.second_h() - chi).abs() < 1e-14);
    }
}
