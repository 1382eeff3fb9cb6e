//! Where to cut the spectrum of a shell.
//!
//! The nominal cut keeps `keep` states (fewer if an energy cutoff is stricter); the cut is then
//! moved up, within a window of `gap_window·nominal` further states, to the largest gap. This
//! never splits a degenerate multiplet (the truncated algorithm is not differentiable there)
//! and keeps the kept–discarded denominators of the decoupling as large as possible.
//!
//! Early shells can be quasi-continuous (a weakly coupled impurity multiplies every level), and
//! then the window holds no gap worth the name: measured at Λ = 3, 150 kept, the best gap among
//! states 150–180 of shell 3 was 0.002 ω_N, and a field step of 1e-3 ω_N already reordered
//! states across it. If the window's best gap is below [`WANTED_GAP`], the search goes on
//! upwards, up to twice the nominal count, for the first gap that is large enough.

use crate::cluster;

/// Gaps below this (in units of ω_N) are worth keeping extra states to avoid.
pub const WANTED_GAP: f64 = 1e-2;

/// The decision for one shell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// Kept states per block (same order as the input).
    pub kept: Vec<usize>,
    /// Total kept.
    pub total: usize,
    /// E(first discarded) − E(last kept), rescaled; `None` when everything is kept.
    pub gap: Option<f64>,
    /// Energy of the highest kept state, rescaled (the effective energy cutoff).
    pub e_max: f64,
}

/// All energies with their block, ascending; ties broken by block index so that every cut
/// is deterministic.
fn sorted(blocks: &[&[f64]]) -> Vec<(f64, usize)> {
    let mut all: Vec<(f64, usize)> = blocks
        .iter()
        .enumerate()
        .flat_map(|(b, es)| es.iter().map(move |&e| (e, b)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    all
}

/// States below each position of the sorted list: `count[p]` = Σ_{i<p} weight of entry i.
fn counts(all: &[(f64, usize)], weights: &[usize]) -> Vec<usize> {
    let mut count = Vec::with_capacity(all.len() + 1);
    count.push(0);
    let mut total = 0;
    for &(_, b) in all {
        total += weights[b];
        count.push(total);
    }
    count
}

/// The cut after the first `p` entries of the sorted list.
fn per_block(
    all: &[(f64, usize)],
    blocks: usize,
    p: usize,
    states: usize,
    gap: Option<f64>,
) -> Cut {
    let mut kept = vec![0; blocks];
    for &(_, b) in &all[..p] {
        kept[b] += 1;
    }
    let e_max = if p > 0 { all[p - 1].0 - all[0].0 } else { 0.0 };
    Cut {
        kept,
        total: states,
        gap,
        e_max,
    }
}

/// Keep the `total` lowest states (clamped to what exists). With multiplets (`weights[b]`
/// states per level of block b) a count inside a multiplet keeps the whole multiplet.
pub fn cut_at(blocks: &[&[f64]], weights: &[usize], total: usize) -> Cut {
    let all = sorted(blocks);
    let count = counts(&all, weights);
    let n = all.len();
    let total = total.min(count[n]);
    let p = count.partition_point(|&c| c < total);
    let gap = (p > 0 && p < n).then(|| all[p].0 - all[p - 1].0);
    per_block(&all, blocks.len(), p, count[p], gap)
}

/// Choose the cut from the ascending energies of every block; each level of block b stands for
/// `weights[b]` states (1 in (Q, S_z), 2S+1 in (Q, S)). `keep`, the window and the extension
/// count states, and the cut falls only between levels, so no multiplet is ever split. With
/// unit weights this is the rule of the module documentation, position by position.
pub fn choose_cut(
    blocks: &[&[f64]],
    weights: &[usize],
    keep: usize,
    e_cut: f64,
    gap_window: f64,
) -> Cut {
    let all = sorted(blocks);
    let n = all.len();
    let count = counts(&all, weights);
    let states = count[n];
    let mut nominal = keep.min(states);
    if e_cut > 0.0 {
        let e0 = all.first().map_or(0.0, |x| x.0);
        let below = all.iter().take_while(|x| x.0 - e0 <= e_cut).count();
        nominal = nominal.min(count[below]).max(1);
    }
    let upper = nominal + (gap_window * nominal as f64).floor() as usize;
    let p = if upper >= states {
        n
    } else {
        // keep p levels (the first p entries): the gap above entry p−1
        let gap_above = |p: usize| all[p].0 - all[p - 1].0;
        // the first position with at least `nominal` states, then every position in the window
        let first = count.partition_point(|&c| c < nominal).max(1);
        let mut best = first;
        let mut best_gap = f64::NEG_INFINITY;
        for p in (first..n).take_while(|&p| count[p] <= upper) {
            if gap_above(p) > best_gap {
                best_gap = gap_above(p);
                best = p;
            }
        }
        if best_gap < WANTED_GAP {
            // no real gap in the window: take the first acceptable one further up
            let limit = (2 * nominal).min(states - 1);
            if let Some(p) = (first..n)
                .skip_while(|&p| count[p] <= upper)
                .take_while(|&p| count[p] <= limit)
                .find(|&p| gap_above(p) >= WANTED_GAP)
            {
                best = p;
            }
        }
        // whatever happens, never cut through a degenerate cluster
        while best < n && cluster::joined(all[best - 1].0, all[best].0) {
            best += 1;
        }
        best
    };
    let gap = (p < n).then(|| all[p].0 - all[p - 1].0);
    per_block(&all, blocks.len(), p, count[p], gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_moves_to_the_largest_gap() {
        let a = [0.0, 1.0, 1.0, 1.0, 3.0];
        let b = [0.5, 1.0, 2.0];
        // nominal 3 would split the triplet at 1.0; window up to 4+… → cut above 2.0 (gap 1.0)
        let cut = choose_cut(&[&a, &b], &[1, 1], 3, 0.0, 1.0);
        assert_eq!(cut.total, 6);
        assert_eq!(cut.kept, vec![4, 2]);
        assert_eq!(cut.gap, Some(1.0));
    }

    #[test]
    fn window_without_gap_is_extended() {
        // a quasi-continuum (spacing 1e-3) up to state 14, then a gap of 0.5
        let mut a: Vec<f64> = (0..14).map(|i| i as f64 * 1e-3).collect();
        a.extend([1.0, 1.1, 1.2]);
        let cut = choose_cut(&[&a], &[1], 10, 0.0, 0.2);
        assert_eq!(cut.total, 14);
        assert!(cut.gap.unwrap() > 0.9);
    }

    #[test]
    fn degenerate_clusters_are_never_split() {
        // keep = 1 with a four-fold ground state: the cut must move past the quartet
        let a = [0.0, 0.0, 0.0, 0.0, 2.0, 3.0];
        let cut = choose_cut(&[&a], &[1], 1, 0.0, 0.2);
        assert_eq!(cut.total, 4);
        assert_eq!(cut.gap, Some(2.0));
    }

    #[test]
    fn everything_kept_when_small() {
        let a = [0.0, 1.0];
        let cut = choose_cut(&[&a], &[1], 10, 0.0, 0.2);
        assert_eq!(
            cut,
            Cut {
                kept: vec![2],
                total: 2,
                gap: None,
                e_max: 1.0
            }
        );
    }

    #[test]
    fn energy_cutoff_is_stricter() {
        let a: Vec<f64> = (0..100).map(|i| i as f64 * 0.1).collect();
        let cut = choose_cut(&[&a], &[1], 80, 2.05, 0.0);
        assert_eq!(cut.total, 21);
    }
}
