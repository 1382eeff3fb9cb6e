//! Derivative bookkeeping: which directions and second-order pairs a run carries.
//!
//! Every matrix of the solver comes with derivative parts stored as separate f64 matrices
//! ("a dual of matrices", never a matrix of dual numbers): one part per first-order direction
//! θ_i and one per selected pair (θ_i, θ_j), i ≤ j, holding ∂_i∂_j. A pair (i, i) is the
//! hyper-dual product of two independent infinitesimals along the same direction, so the
//! product rule (xy)^{ij} = x⁰y^{ij} + x^i y^j + x^j y^i + x^{ij} y⁰ holds for i = j as well.
//! Only the pairs that some output needs are propagated: a full Hessian in k parameters costs
//! k + k(k+1)/2 parts.

use crate::model::Variable;
use std::ops::{Add, Mul, Neg, Sub};

/// The derivative parts carried through a run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directions {
    vars: Vec<Variable>,
    pairs: Vec<(usize, usize)>,
}

impl Directions {
    /// Directions `vars` with second-order `pairs` (indices into `vars`; order inside a pair
    /// and duplicates do not matter).
    pub fn new(vars: Vec<Variable>, pairs: impl IntoIterator<Item = (usize, usize)>) -> Directions {
        let mut p: Vec<(usize, usize)> = pairs
            .into_iter()
            .map(|(i, j)| (i.min(j), i.max(j)))
            .collect();
        assert!(
            p.iter().all(|&(_, j)| j < vars.len()),
            "pair index out of range"
        );
        p.sort_unstable();
        p.dedup();
        Directions { vars, pairs: p }
    }

    pub fn vars(&self) -> &[Variable] {
        &self.vars
    }

    pub fn pairs(&self) -> &[(usize, usize)] {
        &self.pairs
    }

    /// Number of first-order directions.
    pub fn first(&self) -> usize {
        self.vars.len()
    }

    /// Number of derivative parts (first-order plus pairs).
    pub fn parts(&self) -> usize {
        self.vars.len() + self.pairs.len()
    }

    /// Part index of the pair (i, j), if carried.
    pub fn pair_part(&self, i: usize, j: usize) -> Option<usize> {
        let key = (i.min(j), i.max(j));
        self.pairs
            .iter()
            .position(|&p| p == key)
            .map(|p| self.vars.len() + p)
    }

    /// Whether direction `i` takes part in any pair (then its discarded–discarded block is
    /// needed for second order).
    pub fn in_pair(&self, i: usize) -> bool {
        self.pairs.iter().any(|&(a, b)| a == i || b == i)
    }
}

/// A scalar with derivative parts in the layout of [`Directions`]: value, ∂_i, ∂_i∂_j of the
/// pairs carried. Generic over the field so that the spectral function's complex G, F and Σ use
/// the same rules as its real weights (the pairs are a subset of the Hessian, which num-dual's
/// dense types do not model).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarJet<T> {
    pub v: T,
    pub p: Vec<T>,
}

/// What a [`ScalarJet`] needs of its numbers (f64 and complex numbers).
pub trait JetField:
    Copy + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Neg<Output = Self>
{
    fn zero() -> Self;
    fn real(x: f64) -> Self;
}

impl JetField for f64 {
    fn zero() -> f64 {
        0.0
    }
    fn real(x: f64) -> f64 {
        x
    }
}

impl JetField for nalgebra::Complex<f64> {
    fn zero() -> Self {
        nalgebra::Complex::new(0.0, 0.0)
    }
    fn real(x: f64) -> Self {
        nalgebra::Complex::new(x, 0.0)
    }
}

impl<T: JetField> ScalarJet<T> {
    /// A constant: every part zero.
    pub fn constant(v: T, dirs: &Directions) -> Self {
        ScalarJet {
            v,
            p: vec![T::zero(); dirs.parts()],
        }
    }

    /// x + y.
    pub fn add(&self, o: &Self) -> Self {
        ScalarJet {
            v: self.v + o.v,
            p: self.p.iter().zip(&o.p).map(|(&a, &b)| a + b).collect(),
        }
    }

    /// x − y.
    pub fn sub(&self, o: &Self) -> Self {
        ScalarJet {
            v: self.v - o.v,
            p: self.p.iter().zip(&o.p).map(|(&a, &b)| a - b).collect(),
        }
    }

    /// c·x.
    pub fn scale(&self, c: T) -> Self {
        ScalarJet {
            v: c * self.v,
            p: self.p.iter().map(|&a| c * a).collect(),
        }
    }

    /// x·y by the hyper-dual product rule.
    pub fn mul(&self, o: &Self, dirs: &Directions) -> Self {
        let m = dirs.first();
        let mut p = Vec::with_capacity(self.p.len());
        for i in 0..m {
            p.push(self.v * o.p[i] + self.p[i] * o.v);
        }
        for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
            p.push(
                self.v * o.p[m + q] + self.p[m + q] * o.v + self.p[i] * o.p[j] + self.p[j] * o.p[i],
            );
        }
        ScalarJet { v: self.v * o.v, p }
    }

    /// f(x) from f(x⁰), f′(x⁰), f″(x⁰): (f∘x)^i = f′x^i, (f∘x)^ij = f′x^ij + f″x^i x^j.
    pub fn chain(&self, f0: T, f1: T, f2: T, dirs: &Directions) -> Self {
        let m = dirs.first();
        let mut p = Vec::with_capacity(self.p.len());
        for i in 0..m {
            p.push(f1 * self.p[i]);
        }
        for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
            p.push(f1 * self.p[m + q] + f2 * self.p[i] * self.p[j]);
        }
        ScalarJet { v: f0, p }
    }
}

impl ScalarJet<f64> {
    /// e^x.
    pub fn exp(&self, dirs: &Directions) -> Self {
        let e = self.v.exp();
        self.chain(e, e, e, dirs)
    }

    /// ln x.
    pub fn ln(&self, dirs: &Directions) -> Self {
        let r = 1.0 / self.v;
        self.chain(self.v.ln(), r, -r * r, dirs)
    }
}

impl ScalarJet<nalgebra::Complex<f64>> {
    /// 1/z.
    pub fn inv(&self, dirs: &Directions) -> Self {
        let r = self.v.inv();
        let two = nalgebra::Complex::new(2.0, 0.0);
        self.chain(r, -(r * r), two * r * r * r, dirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_jets_follow_the_chain_rule() {
        // x = 0.3 + ε_0 + 2ε_1 with x^{00} = 0.5, x^{01} = 0: check (x·e^x)^{01} and (ln x)^{00}
        let d = Directions::new(vec![Variable::EpsD, Variable::U], [(0, 0), (0, 1)]);
        let x = ScalarJet {
            v: 0.3,
            p: vec![1.0, 2.0, 0.5, 0.0],
        };
        let y = x.mul(&x.exp(&d), &d);
        let e = 0.3f64.exp();
        // f = x e^x: f′ = (1 + x)e^x, f″ = (2 + x)e^x
        assert!((y.p[3] - (2.0 + 0.3) * e * 2.0).abs() < 1e-14);
        assert!((y.p[2] - ((1.0 + 0.3) * e * 0.5 + (2.0 + 0.3) * e)).abs() < 1e-14);
        let l = x.ln(&d);
        assert!((l.p[2] - (0.5 / 0.3 - 1.0 / 0.09)).abs() < 1e-12);
    }

    #[test]
    fn pairs_are_normalized() {
        let d = Directions::new(vec![Variable::EpsD, Variable::U], [(1, 0), (0, 1), (1, 1)]);
        assert_eq!(d.pairs(), &[(0, 1), (1, 1)]);
        assert_eq!(d.parts(), 4);
        assert_eq!(d.pair_part(1, 0), Some(2));
        assert_eq!(d.pair_part(0, 0), None);
    }
}
