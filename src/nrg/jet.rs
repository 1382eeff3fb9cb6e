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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_normalized() {
        let d = Directions::new(vec![Variable::EpsD, Variable::U], [(1, 0), (0, 1), (1, 1)]);
        assert_eq!(d.pairs(), &[(0, 1), (1, 1)]);
        assert_eq!(d.parts(), 4);
        assert_eq!(d.pair_part(1, 0), Some(2));
        assert_eq!(d.pair_part(0, 0), None);
    }
}
