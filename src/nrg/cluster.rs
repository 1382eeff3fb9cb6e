//! One notion of a degenerate cluster, shared by every part of the solver.
//!
//! NRG spectra are full of exact degeneracies (spin multiplets, particle–hole partners) that
//! floating point splits by round-off, ~1e-14 in rescaled units. Everything that must treat such
//! a multiplet as one object uses the rule here:
//! - the ground cluster, whose mean derivative parts are the per-shell energy shift (`solver`);
//! - the truncation, which never cuts through a cluster (`truncation`);
//! - the level listing of the flow diagram and its degenerate perturbation theory (`levels`);
//! - the spectral function's cluster generator (design note `spectral-derivatives.md`, §4).
//!
//! Rule: in an ascending list of energies, two *neighbours* closer than [`TOL`] belong to the same
//! cluster (chaining). Across several blocks the same rule applies to the merged list.

use std::ops::Range;

/// Neighbouring eigenvalues closer than this (rescaled units, i.e. in units of ω_N) are one
/// cluster. Round-off splittings are ~1e-14; the smallest physical splittings NRG resolves are
/// many orders larger. The spectral design note found every value from 1e-10 to 1e-4 equally good
/// for derivatives (§4); 1e-8 sits in the middle.
pub const TOL: f64 = 1e-8;

/// Whether two neighbouring energies `lower ≤ upper` belong to one cluster.
pub fn joined(lower: f64, upper: f64) -> bool {
    upper - lower <= TOL
}

/// The clusters of one ascending list of energies, as index ranges.
pub fn split(energies: &[f64]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < energies.len() {
        let mut end = start + 1;
        while end < energies.len() && joined(energies[end - 1], energies[end]) {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// Number of states of every block that belong to the global ground cluster: the cluster of the
/// lowest energy in the merged ascending list of all blocks' (ascending) energies.
pub fn ground_counts(blocks: &[&[f64]]) -> Vec<usize> {
    let mut all: Vec<f64> = blocks.iter().flat_map(|b| b.iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    let Some(&first) = all.first() else {
        return vec![0; blocks.len()];
    };
    let mut top = first;
    for w in all.windows(2) {
        if !joined(w[0], w[1]) {
            break;
        }
        top = w[1];
    }
    blocks
        .iter()
        .map(|b| b.iter().take_while(|&&e| e <= top).count())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_chain_into_clusters() {
        let e = [0.0, 1e-9, 2e-9, 1.0, 1.0 + 5e-9, 2.0];
        assert_eq!(split(&e), vec![0..3, 3..5, 5..6]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn ground_cluster_spans_blocks() {
        let a = [0.0, 0.5];
        let b = [1e-12, 0.5];
        let c = [0.3];
        assert_eq!(ground_counts(&[&a, &b, &c]), vec![1, 1, 0]);
        assert_eq!(ground_counts(&[&[], &[]]), vec![0, 0]);
    }
}
