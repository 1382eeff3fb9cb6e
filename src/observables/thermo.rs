//! Thermodynamics of one shell from traces of functions of hyper-dual matrices
//! (design note §4).
//!
//! Everything here is in the shell's rescaled units: energies E in units of ω_N, temperature
//! τ = T/ω_N (= 1/β̄ at T_N) and a change of the field on the total spin η = δh/ω_N. The shell's
//! dimensionless free energy is G = −τ ln Tr e^(−H/τ) over all states before truncation; the
//! physical one is F = E_shift + ω_N·G (see [`ShellFreeEnergy`]). Working in rescaled units keeps
//! every number of order one at any temperature: T_min = 1e-100 would otherwise need 1/T⁴ ≈ 1e400.
//!
//! With H = E + Σ ε_i B^i + Σ ε_iε_j B^ij, the Daleckii–Krein formula gives the derivatives of the
//! trace exactly, for degenerate and non-degenerate levels alike:
//!   ∂_i Tr g(H)    = Σ_k g′(E_k) B^i_kk
//!   ∂_i∂_j Tr g(H) = Σ_k g′(E_k) B^ij_kk + Σ_kk′ B^i_kk′ B^j_k′k g′^[1](E_k, E_k′)
//! with g′^[1] the divided difference of g′ (→ g″ on the diagonal), evaluated through
//! exprel so that near-degenerate pairs lose no digits.
//!
//! Temperature and the field on the total spin enter only explicitly (the total S_z commutes
//! with H and is constant on a block), so they need no propagation: they are the two
//! variables (τ, η) of the num-dual scalar [`Ts`], second order in each. Matrix directions are the
//! outer num-dual layer, `Dual2DVec<Ts>`. All scalar calculus (ln Z, products with τ) is done
//! by num-dual. What is exact and what is not: value, gradient in the matrix directions, and
//! their τ/η derivatives to second order are exact; of a Hessian entry in matrix directions
//! only the value is (its pair sum is computed in f64), and only that is ever read.

use crate::jet::Directions;
use crate::step::EigenBlock;
use crate::symmetry::Zeeman;
use nalgebra::{DMatrix, Dyn, OMatrix, U1};
use num_dual::{Derivative, Dual2DVec, Dual2SVec64, DualNum};

/// Scalar carrying derivatives in (temperature, change of the total field) up to second order:
/// variable 0 is the temperature, variable 1 the field change (both in the units of the energies
/// they go with: τ and η for a shell, T and δh for physical levels).
pub type Ts = Dual2SVec64<2>;

/// A scalar with derivatives in the matrix directions, each coefficient a [`Ts`].
pub type Jet = Dual2DVec<Ts>;

/// Temperature and field change as seeded variables at (t, 0).
pub fn thermo_variables(t: f64) -> (Ts, Ts) {
    (Ts::from_re(t).derivative(0), Ts::from_re(0.0).derivative(1))
}

/// `x` with the components of the given total spin-flip parity set to exactly zero: the
/// field-odd components (∂/∂η, ∂²/∂τ∂η) when `odd` is false, the others when it is true.
pub fn ts_keep_parity(x: Ts, odd: bool) -> Ts {
    let mut v1 = x.v1.0.unwrap_or_default();
    let mut v2 = x.v2.0.unwrap_or_default();
    let re = if odd { 0.0 } else { x.re };
    if odd {
        v1[0] = 0.0;
        v2[(0, 0)] = 0.0;
        v2[(1, 1)] = 0.0;
    } else {
        v1[1] = 0.0;
        v2[(0, 1)] = 0.0;
        v2[(1, 0)] = 0.0;
    }
    Ts::new(re, Derivative::some(v1), Derivative::some(v2))
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
pub(crate) fn exprel(z: f64) -> f64 {
    if z == 0.0 { 1.0 } else { z.exp_m1() / z }
}

/// Contributions of one block to Z and its derivatives.
pub struct BlockTrace {
    pub z: Ts,
    pub z_first: Vec<Ts>,
    pub z_pairs: Vec<f64>,
}

/// Weights g′(E_k) = −e^(−E_k/τ)/τ of the diagonal second-order term Σ_k g′ B^ij_kk
/// (real part), for [`crate::step::pair_traces`].
pub fn pair_weights(eb: &EigenBlock, tau: f64) -> Vec<f64> {
    eb.energies
        .iter()
        .map(|&e| -(-e / tau).exp() / tau)
        .collect()
}

/// The SU(2) character χ_S(x) = Σ_{M=−S..S} e^{Mx} of a multiplet (`s2` = 2S): the trace of
/// e^{x S_z} over its 2S+1 states (design note su2 §2.2). Summed term by term, so there is no
/// 0/0 at x = 0, and in pairs ±M, so that the odd derivatives there (Σ M^k, k odd) are exactly
/// zero rather than the round-off of a running sum.
pub fn character(s2: i32, x: Ts) -> Ts {
    let pair = |m2: i32| {
        let m = 0.5 * m2 as f64;
        (x * m).exp() + (x * -m).exp()
    };
    (2 - s2 % 2..=s2)
        .step_by(2)
        .map(pair)
        .fold(Ts::from(if s2 % 2 == 0 { 1.0 } else { 0.0 }), |acc, t| {
            acc + t
        })
}

/// Trace of e^(−(H − η·S_z)/τ) over one diagonalized block, energies E_k already shifted so that
/// the ground state of the shell is at zero. `pair_diagonal[p]` is Σ_k g′(E_k) B^ij_kk for pair
/// p (see [`pair_weights`]). For a block of multiplets (`Zeeman::Multiplet`) each level stands
/// for 2S+1 states: the field enters through the character χ_S(η/τ) and the pair sums are
/// weighted by 2S+1 (the value of χ_S at η = 0).
pub fn block_trace(
    eb: &EigenBlock,
    zeeman: Zeeman,
    tau: f64,
    dirs: &Directions,
    pair_diagonal: &[f64],
) -> BlockTrace {
    let (tv, dh) = thermo_variables(tau);
    let n = eb.dim();
    let m = dirs.first();
    let mut z = Ts::from(0.0);
    let mut z_first = vec![Ts::from(0.0); m];
    let mut z_pairs = pair_diagonal.to_vec();
    let x = &eb.energies;
    let t = tau;
    let (sz, chi, d) = match zeeman {
        Zeeman::Projection(sz) => (sz, None, 1.0),
        Zeeman::Multiplet(s2) => (0.0, Some(character(s2, dh / tv)), (s2 + 1) as f64),
    };
    for k in 0..n {
        let w = match chi {
            None => (-(dh * (-sz) + x[k]) / tv).exp(),
            Some(chi) => chi * (-(Ts::from(x[k]) / tv)).exp(),
        };
        // g′ = −g/τ
        let gp = -(w / tv);
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
        for (p, &(i, j)) in dirs.pairs().iter().enumerate() {
            let (bi, bj) = (&eb.b[i], &eb.b[j]);
            let mut sum = 0.0;
            for l in 0..n {
                for k in 0..n {
                    sum += bi[(k, l)] * bj[(k, l)] * divided[(k, l)];
                }
            }
            z_pairs[p] += sum;
        }
    }
    for zp in &mut z_pairs {
        *zp *= d;
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
pub(crate) fn jet(value: Ts, first: &[Ts], pairs: &[Ts], dirs: &Directions) -> Jet {
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

/// `scale`·s as a [`Jet`] (no temperature or field dependence).
pub(crate) fn shift_jet(s: &ShiftJet, scale: f64, dirs: &Directions) -> Jet {
    let m = dirs.first();
    let first: Vec<Ts> = s.parts[..m].iter().map(|&p| Ts::from(scale * p)).collect();
    let pairs: Vec<Ts> = s.parts[m..].iter().map(|&p| Ts::from(scale * p)).collect();
    jet(Ts::from(scale * s.value), &first, &pairs, dirs)
}

/// G = −τ ln Z of the whole shell (rescaled, without the accumulated shift), as a jet over the
/// matrix directions with (τ, η) derivatives. `extra` is added to the shell's Z (the complete
/// basis' discarded states of earlier shells, [`crate::complete_basis`]).
pub fn free_energy(traces: &[BlockTrace], tau: f64, dirs: &Directions, extra: Option<&Jet>) -> Jet {
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
    let mut z_jet = jet(z, &z_first, &pairs_ts, dirs);
    if let Some(extra) = extra {
        z_jet += extra.clone();
    }
    let (tv, _) = thermo_variables(tau);
    -(Jet::from_re(tv) * z_jet.ln())
}

/// Set to exactly zero every component of `g` that is odd under the spin flip: the parity of a
/// component is that of its matrix direction(s) (`odd[i]` for direction i) times that of its η
/// order. At a spin-flip symmetric point these are the derivatives of an even function at its
/// symmetric point, exactly zero.
pub fn keep_even(g: &mut Jet, odd: &[bool]) {
    g.re = ts_keep_parity(g.re, false);
    if let Some(v1) = g.v1.0.as_mut() {
        for (i, x) in v1.iter_mut().enumerate() {
            *x = ts_keep_parity(*x, odd[i]);
        }
    }
    if let Some(v2) = g.v2.0.as_mut() {
        let m = v2.nrows();
        for i in 0..m {
            for j in 0..m {
                v2[(i, j)] = ts_keep_parity(v2[(i, j)], odd[i] != odd[j]);
            }
        }
    }
}

/// The free energy of one shell: F = shift + ω_N·G, with the accumulated shift in physical units
/// and G in the shell's rescaled units (see the module documentation for the read-outs).
#[derive(Debug, Clone)]
pub struct ShellFreeEnergy {
    pub omega: f64,
    /// τ = T/ω_N.
    pub tau: f64,
    pub shift: ShiftJet,
    pub g: Jet,
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
    fn su2_character_at_zero_and_finite_field() {
        for s2 in 0..=9 {
            let (s, d) = (0.5 * s2 as f64, (s2 + 1) as f64);
            // x = η/τ at τ = 1: the η derivatives are those in x
            let chi = character(s2, Ts::from_re(0.0).derivative(1));
            assert_eq!(chi.re, d);
            assert_eq!(chi.first_h(), 0.0, "2S = {s2}: odd derivative exactly zero");
            assert_eq!(chi.mixed_th(), 0.0);
            let second = d * s * (s + 1.0) / 3.0;
            assert!((chi.second_h() - second).abs() < 1e-13 * second.max(1.0));
            // sinh((2S+1)x/2)/sinh(x/2) at a finite field
            let x = 0.7;
            let closed = (d * x / 2.0).sinh() / (x / 2.0).sinh();
            assert!((character(s2, Ts::from(x)).re - closed).abs() < 1e-13 * closed);
        }
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
        let w = pair_weights(&eb, t);
        let diag: Vec<f64> = eb
            .b_pairs
            .iter()
            .map(|bp| (0..n).map(|k| w[k] * bp[(k, k)]).sum())
            .collect();
        let tr = block_trace(&eb, Zeeman::Projection(0.0), t, &dirs, &diag);
        let f = free_energy(&[tr], t, &dirs, None);
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
