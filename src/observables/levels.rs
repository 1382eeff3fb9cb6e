//! The lowest levels of a shell for the energy-flow diagram, with their sensitivities.
//!
//! Levels are clusters of degenerate eigenvalues inside one (Q, S_z) block. The first-order
//! shifts of a cluster under a perturbation B^θ are the eigenvalues of B^θ restricted to the
//! cluster (degenerate perturbation theory, design note §5); for display only.
//!
//! In (Q, S) blocks a cluster is made of multiplets: it is listed once, with its states counted
//! (2S+1 per multiplet), `S` set and `Sz` = S (the highest-weight member), and every shift
//! repeated for the 2S+1 members (a field on the total spin splits them by −M/ω_N instead).

use crate::cluster;
use crate::record::Level;
use crate::step::EigenBlock;
use crate::symmetry::{Symmetry, Zeeman};
use indexmap::IndexMap;
use nalgebra::DMatrix;

/// How the sensitivity to one parameter is read off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sensitivity {
    /// Derivative part `i` of the Hamiltonian.
    Matrix(usize),
    /// Field on the total spin: dE/dh = −S_z/ω_N, measured from the ground cluster.
    TotalField,
    /// Field on the impurity spin in (Q, S) blocks: member M of a multiplet moves by
    /// M·b/√(S(S+1)), b an eigenvalue of the cluster's block of B⃗[J←J] (the vector sector's
    /// diagonal blocks, passed to [`lowest_levels`]).
    ImpurityField,
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

/// Mean S_z of the ground cluster(s), the reference of total-field sensitivities (zero for
/// multiplets, whose members are symmetric about M = 0).
fn ground_sz(blocks: &[EigenBlock], all: &[Cluster], symmetry: Symmetry) -> f64 {
    if symmetry == Symmetry::QS {
        return 0.0;
    }
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
    symmetry: Symmetry,
    count: usize,
    omega: f64,
    sensitivities: &[(String, Sensitivity)],
    vector: Option<&[faer::Mat<f64>]>,
) -> Vec<Level> {
    let all = clusters(blocks);
    let sz0 = ground_sz(blocks, &all, symmetry);
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
            let d = symmetry.degeneracy(eb.qn);
            let de: IndexMap<String, Vec<f64>> = sensitivities
                .iter()
                .map(|(name, s)| {
                    let values = match *s {
                        Sensitivity::ImpurityField => {
                            let b = &vector.expect("the vector sector's blocks")[c.block];
                            let sub = DMatrix::from_fn(c.len, c.len, |r, q| {
                                b[(c.start + r, c.start + q)]
                            });
                            let s2 = eb.qn.sz2;
                            let s = 0.5 * f64::from(s2);
                            let norm = if s2 == 0 {
                                0.0
                            } else {
                                1.0 / (s * (s + 1.0)).sqrt()
                            };
                            let mut v: Vec<f64> = sub
                                .symmetric_eigenvalues()
                                .iter()
                                .flat_map(|&x| {
                                    (-s2..=s2)
                                        .step_by(2)
                                        .map(move |m2| 0.5 * f64::from(m2) * x * norm)
                                })
                                .collect();
                            v.sort_by(f64::total_cmp);
                            v
                        }
                        Sensitivity::Matrix(i) => {
                            let b = &eb.b[i];
                            let sub = DMatrix::from_fn(c.len, c.len, |r, q| {
                                b[(c.start + r, c.start + q)]
                            });
                            let mut v: Vec<f64> = sub
                                .symmetric_eigenvalues()
                                .iter()
                                .flat_map(|&x| std::iter::repeat_n(x, d))
                                .collect();
                            v.sort_by(f64::total_cmp);
                            v
                        }
                        Sensitivity::TotalField => match symmetry.zeeman(eb.qn) {
                            Zeeman::Projection(sz) => vec![-(sz - sz0) / omega; c.len],
                            Zeeman::Multiplet(s2) => {
                                let mut v: Vec<f64> = (-s2..=s2)
                                    .step_by(2)
                                    .flat_map(|m2| {
                                        std::iter::repeat_n(-(0.5 * m2 as f64) / omega, c.len)
                                    })
                                    .collect();
                                v.sort_by(f64::total_cmp);
                                v
                            }
                        },
                    };
                    (name.clone(), values)
                })
                .collect();
            Level {
                e: c.energy,
                q: eb.qn.q,
                sz: eb.qn.sz(),
                s: (symmetry == Symmetry::QS).then(|| eb.qn.sz()),
                deg: c.len * d,
                de,
            }
        })
        .collect()
}
