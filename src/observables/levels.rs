//! The lowest levels of a shell for the energy-flow diagram, with their sensitivities.
//!
//! Levels are clusters of degenerate eigenvalues inside one (Q, S_z) block. The first-order
//! shifts of a cluster under a perturbation B^θ are the eigenvalues of B^θ restricted to the
//! cluster (degenerate perturbation theory, design note §5); for display only.

use crate::cluster;
use crate::record::Level;
use crate::step::EigenBlock;
use indexmap::IndexMap;
use nalgebra::DMatrix;

/// How the sensitivity to one parameter is read off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sensitivity {
    /// Derivative part `i` of the Hamiltonian.
    Matrix(usize),
    /// Field on the total spin: dE/dh = −S_z/ω_N, measured from the ground cluster.
    TotalField,
}

/// A cluster: block index and state range.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    block: usize,
    start: usize,
    len: usize,
    energy: f64,
}

fn clusters(blocks: &[EigenBlock]) -> Vec<Cluster> {
    let mut out = Vec::new();
    for (b, eb) in blocks.iter().enumerate() {
        for r in cluster::split(&eb.energies) {
            out.push(Cluster {
                block: b,
                start: r.start,
                len: r.len(),
                energy: eb.energies[r.start],
            });
        }
    }
    out.sort_by(|a, b| a.energy.total_cmp(&b.energy).then(a.block.cmp(&b.block)));
    // clusters degenerate across blocks (a doublet in S_z = ±1/2) differ in energy by round-off
    // only; order them by their block so that the listing does not depend on that noise
    let mut start = 0;
    while start < out.len() {
        let mut end = start + 1;
        while end < out.len() && cluster::joined(out[end - 1].energy, out[end].energy) {
            end += 1;
        }
        out[start..end].sort_by_key(|c| c.block);
        start = end;
    }
    out
}

/// Mean S_z of the ground cluster(s), the reference of total-field sensitivities.
fn ground_sz(blocks: &[EigenBlock], all: &[Cluster]) -> f64 {
    let e0 = all.first().map_or(0.0, |c| c.energy);
    let (mut sum, mut count) = (0.0, 0usize);
    let mut previous = e0;
    for c in all.iter().take_while(|c| {
        let near = cluster::joined(previous, c.energy);
        previous = c.energy;
        near
    }) {
        sum += blocks[c.block].qn.sz() * c.len as f64;
        count += c.len;
    }
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// The `count` lowest clusters (energies already measured from the ground state), plus any
/// that are degenerate with the last of them.
pub fn lowest_levels(
    blocks: &[EigenBlock],
    count: usize,
    omega: f64,
    sensitivities: &[(String, Sensitivity)],
) -> Vec<Level> {
    let all = clusters(blocks);
    let sz0 = ground_sz(blocks, &all);
    // the count is a minimum: clusters degenerate with the last one listed are listed too, so a
    // multiplet split over several (Q, S_z) blocks is never shown in part
    let shown = match all.get(count.saturating_sub(1)) {
        Some(last) if count > 0 => {
            count
                + all[count..]
                    .iter()
                    .scan(last.energy, |previous, c| {
                        let near = cluster::joined(*previous, c.energy);
                        *previous = c.energy;
                        near.then_some(())
                    })
                    .count()
        }
        _ => count.min(all.len()),
    };
    all.iter()
        .take(shown)
        .map(|c| {
            let eb = &blocks[c.block];
            let de: IndexMap<String, Vec<f64>> = sensitivities
                .iter()
                .map(|(name, s)| {
                    let values = match *s {
                        Sensitivity::Matrix(i) => {
                            let b = &eb.b[i];
                            let sub = DMatrix::from_fn(c.len, c.len, |r, q| {
                                b[(c.start + r, c.start + q)]
                            });
                            let mut v: Vec<f64> =
                                sub.symmetric_eigenvalues().iter().copied().collect();
                            v.sort_by(f64::total_cmp);
                            v
                        }
                        Sensitivity::TotalField => vec![-(eb.qn.sz() - sz0) / omega; c.len],
                    };
                    (name.clone(), values)
                })
                .collect();
            Level {
                e: c.energy,
                q: eb.qn.q,
                sz: eb.qn.sz(),
                deg: c.len,
                de,
            }
        })
        .collect()
}
