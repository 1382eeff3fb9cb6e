//! Thermodynamics of one shell from traces of functions of hyper-dual matrices
//! (design note §4).
//!
//! F = E_shift − T ln Tr e^(−H/T) over all states of the shell before truncation, at
//! T_N = ω_N/β̄. With H = E + Σ ε_i B^i + Σ ε_iε_j B^ij, the Daleckii–Krein formula gives the
//! derivatives of the trace exactly, for degenerate and non-degenerate levels alike:
//!   ∂_i Tr g(H)    = Σ_k g′(E_k) B^i_kk
//!   ∂_i∂_j Tr g(H) = Σ_k g′(E_k) B^ij_kk + Σ_kk′ B^i_kk′ B^j_k′k g′^[1](E_k, E_k′)
//! with g′^[1] the divided difference of g′ (→ g″ on the diagonal), evaluated through
//! exprel so that near-degenerate pairs lose no digits.
//!
//! Temperature and the field on the total spin enter only explicitly (the total S_z commutes
//! with H and is constant on a block), so they need no propagation: they are the two
//! variables of the num-dual scalar [`Ts`], second order in each. Matrix directions are the
//! outer num-dual layer, `Dual2DVec<Ts>`. All scalar calculus (ln Z, products with T) is done
//! by num-dual. What is exact and what is not: value, gradient in the matrix directions, and
//! their T/h derivatives to second order are exact; of a Hessian entry in matrix directions
//! only the value is (its pair sum is computed in f64), and only that is ever read.

use crate::jet::Directions;
use crate::step::EigenBlock;
use nalgebra::{DMatrix, Dyn, OMatrix, U1};
use num_dual::{Derivative, Dual2DVec, Dual2SVec64, DualNum};

/// Scalar carrying derivatives in (T, δh_tot) up to second order: variable 0 is the
/// temperature, variable 1 a change of the field on the total spin.
pub type Ts = Dual2SVec64<2>;

/// A scalar with derivatives in the matrix directions, each coefficient a [`Ts`].
pub type Jet = Dual2DVec<Ts>;

/// T and δh as seeded variables at (T, 0).
pub fn thermo_variables(t: f64) -> (Ts, Ts) {
    (Ts::from_re(t).derivative(0), Ts::from_re(0.0).derivative(1))
}

/// Read-outs of a [`Ts`].
pub trait TsParts {
    fn first_t(&self) -> f64;
    fn first_h(&self) -> f64;
    fn second_t(&self) -> f64;
    fn second_h(&self) -> f64;
    fn mixed_th(&self) -> f64;
}

impl TsParts for Ts {
    fn first_t(&self) -> f64 {
        self.v1.0.map_or(0.0, |g| g[0])
    }
    fn first_h(&self) -> f64 {
        self.v1.0.map_or(0.0, |g| g[1])
    }
    fn second_t(&self) -> f64 {
        self.v2.0.map_or(0.0, |h| h[(0, 0)])
    }
    fn second_h(&self) -> f64 {
        self.v2.0.map_or(0.0, |h| h[(1, 1)])
    }
    fn mixed_th(&self) -> f64 {
        self.v2.0.map_or(0.0, |h| h[(0, 1)])
    }
}

/// exprel(z) = (e^z − 1)/z, continuous at 0.
fn exprel(z: f64) -> f64 {
    if z == 0.0 { 1.0 } else { z.exp_m1() / z }
}

/// Contributions of one block to Z and its derivatives.
pub struct BlockTrace {
    pub z: Ts,
    pub z_first: Vec<Ts>,
    pub z_pairs: Vec<f64>,
}

/// Weights g′(ω E_k) = −(ω/T) e^(−ωE_k/T) of the diagonal second-order term Σ_k g′ B^ij_kk
/// (real part), for [`crate::step::pair_traces`].
pub fn pair_weights(eb: &EigenBlock, omega: f64, t: f64) -> Vec<f64> {
    eb.energies
        .iter()
        .map(|&e| -(omega / t) * (-omega * e / t).exp())
        .collect()
}

/// Trace of e^(−(H − δh·S_z)/T) over one diagonalized block, in physical units:
/// energies ω·E_k (already shifted so that the ground state of the shell is at zero).
/// `pair_diagonal[p]` is Σ_k g′(ωE_k) B^ij_kk for pair p (see [`pair_weights`]).
pub fn block_trace(
    eb: &EigenBlock,
    sz: f64,
    omega: f64,
    t: f64,
    dirs: &Directions,
    pair_diagonal: &[f64],
) -> BlockTrace {
    let (tv, dh) = thermo_variables(t);
    let n = eb.dim();
    let m = dirs.first();
    let mut z = Ts::from(0.0);
    let mut z_first = vec![Ts::from(0.0); m];
    let mut z_pairs = pair_diagonal.to_vec();
    let x: Vec<f64> = eb.energies.iter().map(|&e| omega * e).collect();
    for k in 0..n {
        let w = (-(dh * (-sz) + x[k]) / tv).exp();
        // g′ = −g/T in physical units; the derivative parts of the energy are ω·B
        let gp = -(w / tv) * omega;
        for (i, zi) in z_first.iter_mut().enumerate() {
            *zi += gp * eb.b[i][(k, k)];
        }
        z += w;
    }
    if !dirs.pairs().is_empty() {
        // g′^[1](x, y) = T⁻² e^(−min/T) exprel(−|x−y|/T), in difference-quotient form when the
        // two are far apart (then no cancellation and no exp per pair)
        let a: Vec<f64> = x.iter().map(|&xk| (-xk / t).exp()).collect();
        let mut divided = DMatrix::<f64>::zeros(n, n);
        for k in 0..n {
            for l in k..n {
                let d = x[l] - x[k];
                let v = if d < 0.5 * t {
                    a[k] / (t * t) * exprel(-d / t)
                } else {
                    (a[k] - a[l]) / (t * d)
                };
                divided[(k, l)] = v;
                divided[(l, k)] = v;
            }
        }
        let w2 = omega * omega;
        for (p, &(i, j)) in dirs.pairs().iter().enumerate() {
            let (bi, bj) = (&eb.b[i], &eb.b[j]);
            let mut sum = 0.0;
            for l in 0..n {
                for k in 0..n {
                    sum += bi[(k, l)] * bj[(k, l)] * divided[(k, l)];
                }
            }
            z_pairs[p] += w2 * sum;
        }
    }
    BlockTrace {
        z,
        z_first,
        z_pairs,
    }
}

/// A scalar in the matrix directions with f64 parts (energy shifts), in the layout of
/// [`Directions`]: value, first-order parts, pair parts.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftJet {
    pub value: f64,
    pub parts: Vec<f64>,
}

impl ShiftJet {
    pub fn zero(dirs: &Directions) -> ShiftJet {
        ShiftJet {
            value: 0.0,
            parts: vec![0.0; dirs.parts()],
        }
    }

    /// self += c·other.
    pub fn add_scaled(&mut self, c: f64, value: f64, parts: &[f64]) {
        self.value += c * value;
        for (a, b) in self.parts.iter_mut().zip(parts) {
            *a += c * b;
        }
    }
}

/// Build a [`Jet`] from its value, first-order parts and the pair parts of `dirs`.
fn jet(value: Ts, first: &[Ts], pairs: &[Ts], dirs: &Directions) -> Jet {
    let m = dirs.first();
    if m == 0 {
        return Jet::from_re(value);
    }
    let v1 = OMatrix::<Ts, U1, Dyn>::from_row_slice(first);
    let mut v2 = OMatrix::<Ts, Dyn, Dyn>::from_element(m, m, Ts::from(0.0));
    for (p, &(i, j)) in dirs.pairs().iter().enumerate() {
        v2[(i, j)] = pairs[p];
        v2[(j, i)] = pairs[p];
    }
    Jet::new(value, Derivative::some(v1), Derivative::some(v2))
}

/// F = E_shift − T ln Z of the whole shell, as a jet over the matrix directions with
/// (T, δh) derivatives. `shift` is the accumulated ground-energy shift in physical units.
pub fn free_energy(traces: &[BlockTrace], shift: &ShiftJet, t: f64, dirs: &Directions) -> Jet {
    let m = dirs.first();
    let mut z = Ts::from(0.0);
    let mut z_first = vec![Ts::from(0.0); m];
    let mut z_pairs = vec![0.0; dirs.pairs().len()];
    for tr in traces {
        z += tr.z;
        for (a, b) in z_first.iter_mut().zip(&tr.z_first) {
            *a += *b;
        }
        for (a, b) in z_pairs.iter_mut().zip(&tr.z_pairs) {
            *a += b;
        }
    }
    let pairs_ts: Vec<Ts> = z_pairs.into_iter().map(Ts::from).collect();
    let z_jet = jet(z, &z_first, &pairs_ts, dirs);
    let shift_first: Vec<Ts> = shift.parts[..m].iter().map(|&v| Ts::from(v)).collect();
    let shift_pairs: Vec<Ts> = shift.parts[m..].iter().map(|&v| Ts::from(v)).collect();
    let shift_jet = jet(Ts::from(shift.value), &shift_first, &shift_pairs, dirs);
    let (tv, _) = thermo_variables(t);
    shift_jet - Jet::from_re(tv) * z_jet.ln()
}

/// Read-outs of a [`Jet`].
pub trait JetParts {
    /// ∂/∂θ_i (with its T, δh derivatives).
    fn first(&self, i: usize) -> Ts;
    /// Value of ∂²/∂θ_i∂θ_j.
    fn second(&self, i: usize, j: usize) -> f64;
}

impl JetParts for Jet {
    fn first(&self, i: usize) -> Ts {
        self.v1.0.as_ref().map_or(Ts::from(0.0), |g| g[i])
    }
    fn second(&self, i: usize, j: usize) -> f64 {
        self.v2.0.as_ref().map_or(0.0, |h| h[(i, j)].re)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Variable;
    use faer::Mat;

    /// A random symmetric matrix from a deterministic sequence.
    fn sym(n: usize, seed: u64) -> Mat<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let mut m = Mat::zeros(n, n);
        for i in 0..n {
            for j in 0..=i {
                let v = next();
                m[(i, j)] = v;
                m[(j, i)] = v;
            }
        }
        m
    }

    /// ln Tr e^(−H(θ)/T) for H(θ) = A + θ_a B + θ_b C + θ_a θ_b D by dense diagonalization.
    fn ln_z(
        a: &Mat<f64>,
        b: &Mat<f64>,
        c: &Mat<f64>,
        d: &Mat<f64>,
        ta: f64,
        tb: f64,
        t: f64,
    ) -> f64 {
        let n = a.nrows();
        let h = Mat::<f64>::from_fn(n, n, |i, j| {
            a[(i, j)] + ta * b[(i, j)] + tb * c[(i, j)] + ta * tb * d[(i, j)]
        });
        let (e, _) = crate::linalg::eigh(h.as_ref());
        e.iter().map(|&x| (-x / t).exp()).sum::<f64>().ln()
    }

    #[test]
    fn daleckii_krein_matches_finite_differences() {
        // Includes an exactly degenerate pair and a near-degenerate pair in the spectrum.
        let n = 6;
        let mut a = Mat::<f64>::zeros(n, n);
        for (i, e) in [0.0, 0.3, 0.3, 0.7, 0.7 + 1e-9, 1.5].iter().enumerate() {
            a[(i, i)] = *e;
        }
        let (b, c, d) = (sym(n, 1), sym(n, 2), sym(n, 3));
        let t = 0.4;
        let dirs = Directions::new(vec![Variable::EpsD, Variable::U], [(0, 1), (0, 0)]);
        let eb = EigenBlock {
            qn: crate::symmetry::Qn::new(0, 0),
            energies: (0..n).map(|i| a[(i, i)]).collect(),
            u: Mat::identity(n, n),
            b: vec![b.clone(), c.clone()],
            // pairs (a, a) = 0 and (a, b) = D
            b_pairs: vec![Mat::zeros(n, n), d.clone()],
        };
        let w = pair_weights(&eb, 1.0, t);
        let diag: Vec<f64> = eb
            .b_pairs
            .iter()
            .map(|bp| (0..n).map(|k| w[k] * bp[(k, k)]).sum())
            .collect();
        let tr = block_trace(&eb, 0.0, 1.0, t, &dirs, &diag);
        let f = free_energy(&[tr], &ShiftJet::zero(&dirs), t, &dirs);
        let lnz = |x: f64, y: f64| ln_z(&a, &b, &c, &d, x, y, t);
        let step = 1e-4;
        // central differences: O(step²) ≈ 1e-8 truncation error
        let da = (lnz(step, 0.0) - lnz(-step, 0.0)) / (2.0 * step);
        assert!((f.first(0).re + t * da).abs() < 1e-8);
        let dab = (lnz(step, step) - lnz(step, -step) - lnz(-step, step) + lnz(-step, -step))
            / (4.0 * step * step);
        assert!(
            (f.second(0, 1) + t * dab).abs() < 1e-6,
            "{} vs {}",
            f.second(0, 1),
            -t * dab
        );
        let daa = (lnz(step, 0.0) - 2.0 * lnz(0.0, 0.0) + lnz(-step, 0.0)) / (step * step);
        assert!(
            (f.second(0, 0) + t * daa).abs() < 1e-6,
            "{} vs {}",
            f.second(0, 0),
            -t * daa
        );
    }
}
