//! Where to cut the spectrum of a shell.
//!
//! The nominal cut keeps `keep` states (fewer if an energy cutoff is stricter); the cut is then
//! moved up, within a window of `gap_window·nominal` further states, to the largest gap. This
//! never splits a degenerate multiplet (the truncated algorithm is not differentiable there)
//! and keeps the kept–discarded denominators of the decoupling as large as possible.

/// The decision for one shell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cut {
    /// Kept states per block (same order as the input).
    pub kept: Vec<usize>,
    /// Total kept.
    pub total: usize,
    /// E(first discarded) − E(last kept), rescaled; `None` when everything is kept.
    pub gap: Option<f64>,
}

/// Choose the cut from the ascending energies of every block.
pub fn choose_cut(blocks: &[&[f64]], keep: usize, e_cut: f64, gap_window: f64) -> Cut {
    let mut all: Vec<(f64, usize)> = blocks
        .iter()
        .enumerate()
        .flat_map(|(b, es)| es.iter().map(move |&e| (e, b)))
        .collect();
    // ties broken by block index so the cut is deterministic
    all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let n = all.len();
    let mut nominal = keep.min(n);
    if e_cut > 0.0 {
        let e0 = all.first().map_or(0.0, |x| x.0);
        nominal = nominal.min(all.iter().filter(|x| x.0 - e0 <= e_cut).count()).max(1);
    }
    let upper = nominal + (gap_window * nominal as f64).floor() as usize;
    let (total, gap) = if upper >= n {
        (n, None)
    } else {
        // keep p states, p ∈ [nominal, upper]: the gap above state p−1
        let mut best = nominal;
        let mut best_gap = f64::NEG_INFINITY;
        for p in nominal..=upper {
            let g = all[p].0 - all[p - 1].0;
            if g > best_gap {
                best_gap = g;
                best = p;
            }
        }
        (best, Some(best_gap))
    };
    let mut kept = vec![0; blocks.len()];
    for &(_, b) in &all[..total] {
        kept[b] += 1;
    }
    Cut { kept, total, gap }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_moves_to_the_largest_gap() {
        let a = [0.0, 1.0, 1.0, 1.0, 3.0];
        let b = [0.5, 1.0, 2.0];
        // nominal 3 would split the triplet at 1.0; window up to 4+… → cut above 2.0 (gap 1.0)
        let cut = choose_cut(&[&a, &b], 3, 0.0, 1.0);
        assert_eq!(cut.total, 6);
        assert_eq!(cut.kept, vec![4, 2]);
        assert_eq!(cut.gap, Some(1.0));
    }

    #[test]
    fn everything_kept_when_small() {
        let a = [0.0, 1.0];
        let cut = choose_cut(&[&a], 10, 0.0, 0.2);
        assert_eq!(cut, Cut { kept: vec![2], total: 2, gap: None });
    }

    #[test]
    fn energy_cutoff_is_stricter() {
        let a: Vec<f64> = (0..100).map(|i| i as f64 * 0.1).collect();
        let cut = choose_cut(&[&a], 80, 2.05, 0.0);
        assert_eq!(cut.total, 21);
    }
}
