//! The iteration driver: one call, one shell.
//!
//! [`Iteration`] is Wilson's iteration for any initial shell (impurity + site 0, or the bare
//! site 0): diagonalize H_N block by block → shift energies so the ground state is at zero
//! (accumulating the shift, with its derivative parts, in physical units) → the shell's free
//! energy from all states at T_N → cut at a gap, decouple kept from discarded states, transform
//! f†_N → add site N+1.
//!
//! [`Run`] is the impurity problem built on it: the model's shell 0, the bare chain to subtract
//! ([`crate::bare`]), the read-out of observables ([`crate::readout`]), the level listing and the
//! run's diagnostics ([`crate::diagnostics`]). The caller gets each shell's record as soon as it is
//! computed and cancels by simply not asking for the next one.

use crate::bare::Bare;
use crate::chain::WilsonChain;
use crate::cluster;
use crate::complete_basis::{CompleteBasis, Truncated};
use crate::diagnostics::Diagnostics;
use crate::jet::Directions;
use crate::levels::{self, Sensitivity};
use crate::model::{self, ImpurityModel, SiteZero, Variable};
use crate::parallel::{Cancel, map_largest_first_until};
use crate::params::{
    FieldKind, InvalidParam, ModelKind, NrgParams, RunConfig, SymmetryChoice, ThermoStates,
};
use crate::readout::{self, Plan, Source};
use crate::record::{ChainInfo, Header, ShellRecord, Summary};
use crate::shell::{self, KeptShell, ProductShell, SiteAddition};
use crate::step::{self, EigenBlock};
use crate::su2;
use crate::symmetry::Symmetry;
use crate::thermo::{self, JetParts, ShellFreeEnergy, ShiftJet, TsParts};
use crate::truncation;
use crate::vector::{ShellInput, VectorReadout, VectorSector};
use indexmap::IndexMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Wall time spent in each stage of the shells computed so far: where a run's time goes
/// (the benchmark prints it; records never contain times, so that output is deterministic).
#[derive(Debug, Clone, Default)]
pub struct StageTimes {
    /// Eigendecompositions of the real parts and rotation of the first-order parts.
    pub diagonalize: Duration,
    /// Rotation of the second-order parts (kept rows) and their traces.
    pub pairs: Duration,
    /// Traces over all states and the free energy.
    pub thermodynamics: Duration,
    /// The discarded states' terms for later shells' partition functions (complete basis).
    pub complete_basis: Duration,
    /// Kept–discarded decoupling.
    pub decouple: Duration,
    /// Transformation of f† into the kept bases.
    pub operators: Duration,
    /// Assembly of the next shell's Hamiltonian.
    pub add_site: Duration,
    /// The bare chain subtracted for impurity contributions (zero when cached).
    pub bare_chain: Duration,
    /// The vector sector of a (Q, S) run (χ_loc, χ_cross).
    pub vector: Duration,
    /// Everything in `next_shell`.
    pub total: Duration,
}

/// Shell 0 of a run (model, directions, variable indices, site-0 couplings, ε_0, ω_0), `None`
/// if the model has no form in the chosen symmetry.
type InitialShell =
    fn(&dyn ImpurityModel, &Directions, &[usize], SiteZero, f64, f64) -> Option<ProductShell>;

/// While |h_tot| ≤ this·ω_N, the cut is decided on the field-free energies E + (h_tot/ω_N)·S_z:
/// the kept space is then the same for h and −h (and h = 0), so F(h) is smooth through zero.
/// Beyond it the field is a sizeable part of the shell's energies (states shift by |h|·S_z, up to
/// several ω_N) and the cut must follow the true energies to keep the polarized low states.
pub const FIELD_FREE_CUT: f64 = 0.1;

/// One shell of the iteration, before any impurity-specific read-out.
pub(crate) struct Shell {
    pub n: usize,
    /// T_N in physical units.
    pub t: f64,
    pub free_energy: ShellFreeEnergy,
    /// What this shell added to the accumulated shift (physical units, every part): C_N − C_{N−1}
    /// as computed, before it is rounded into the running sum. Differences of the shifts of two
    /// shells, which the spectral function's weights need at T far below ω_0, are sums of these
    /// and keep their relative precision.
    pub shift_step: ShiftJet,
    /// Every block, diagonalized and shifted (energies from the ground state, rescaled).
    pub eig: Vec<EigenBlock>,
    /// States before truncation.
    pub states: usize,
    /// States kept for the next shell.
    pub kept: usize,
    /// Kept states of every block (all zero at the last shell): the lowest ones of each block.
    pub kept_blocks: Vec<usize>,
    /// The product layout this shell was built on ([`ProductShell::subs`]).
    pub subs: Vec<shell::SubBlocks>,
    pub gap: Option<f64>,
    pub e_cut: f64,
    /// Rescaled ground energy subtracted at this shell (before the shift).
    pub ground_energy: f64,
    /// Fraction of the Boltzmann weight at T_{N+1} that the discarded states carry: what the
    /// next shell's trace misses (None at the last shell or when nothing was discarded).
    pub discarded_weight: Option<f64>,
    /// Per block, the kept–discarded decoupling of this shell, when the iteration keeps frames
    /// (the spectral function's derivatives need it); `None` otherwise and at the last shell.
    pub frames: Option<Vec<Frame>>,
    /// χ_loc and χ_cross of a (Q, S) run that carries the vector sector.
    pub vector: Option<VectorReadout>,
}

/// The solver's frame W = exp(S) of one block, as the spectral function's derivatives need it:
/// the generator's K–D blocks S^x (k×d, every part) and the second-order parts of the kept
/// Hamiltonian in that frame, H′^ij_KK = B^ij_KK − ½(Y + Yᵀ) (k×k, one per pair).
pub struct Frame {
    pub s: Vec<faer::Mat<f64>>,
    pub kept_pairs: Vec<faer::Mat<f64>>,
}

/// Wilson's iteration from a given shell 0, with derivative parts along `dirs`.
pub(crate) struct Iteration {
    nrg: NrgParams,
    chain: Arc<WilsonChain>,
    n_max: usize,
    dirs: Directions,
    /// Spin-flip parity of every first-order direction.
    odd: Vec<bool>,
    /// ±S_z blocks are exact mirror images (no field): their spectra are made identical bit for
    /// bit and every odd derivative is exactly zero. ((Q, S) blocks need neither: spin symmetry
    /// is exact by construction there.)
    spin_symmetric: bool,
    /// Block labels; in (Q, S) every level of block j stands for d_j = 2S+1 states.
    symmetry: Symmetry,
    h_total: f64,
    next: usize,
    pending: Option<ProductShell>,
    shift: ShiftJet,
    /// This shell's contribution to `shift`.
    shift_step: ShiftJet,
    /// Kept counts imposed per shell instead of the cut rule (finite-difference checks).
    frozen_kept: Option<Vec<usize>>,
    /// Keep every shell's decoupling and rotate the second-order parts on all rows: the spectral
    /// function's derivatives need the discarded blocks too (design note
    /// `spectral-derivatives.md`, §2).
    keep_frames: bool,
    times: StageTimes,
    cancel: Option<Arc<AtomicBool>>,
    /// The discarded states of earlier shells (`nrg.thermo_states = "complete"`).
    complete: Option<CompleteBasis>,
    /// The vector sector (χ_loc in (Q, S) blocks), when asked for.
    vector: Option<VectorSector>,
}

impl Iteration {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nrg: &NrgParams,
        chain: Arc<WilsonChain>,
        n_max: usize,
        dirs: Directions,
        initial: ProductShell,
        h_total: f64,
        spin_symmetric: bool,
    ) -> Iteration {
        let odd = dirs.vars().iter().map(|v| v.spin_flip_odd()).collect();
        let symmetry = initial.symmetry;
        Iteration {
            nrg: nrg.clone(),
            chain,
            n_max,
            shift: ShiftJet::zero(&dirs),
            shift_step: ShiftJet::zero(&dirs),
            dirs,
            odd,
            spin_symmetric: spin_symmetric && h_total == 0.0 && symmetry == Symmetry::QSz,
            symmetry,
            h_total,
            next: 0,
            pending: Some(initial),
            frozen_kept: None,
            keep_frames: false,
            times: StageTimes::default(),
            cancel: None,
            complete: (nrg.thermo_states == ThermoStates::Complete).then(CompleteBasis::default),
            vector: None,
        }
    }

    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = Some(flag);
    }

    fn is_cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// `None` (and the iteration ended) if cancelled.
    fn check_cancel(&mut self) -> Option<()> {
        if self.is_cancelled() {
            self.pending = None;
            None
        } else {
            Some(())
        }
    }

    /// Compute the next shell, or `None` when the chain is complete (or cancelled).
    pub fn step(&mut self) -> Option<Shell> {
        self.check_cancel()?;
        let product = self.pending.take()?;
        let n = self.next;
        let omega = self.chain.omega[n];
        let tau = 1.0 / self.nrg.beta_bar;
        let last = n == self.n_max;
        let started = Instant::now();

        let dirs = &self.dirs;
        let flag = self.cancel.clone();
        let cancel = Cancel::new(flag.as_deref());
        let mut eig: Vec<EigenBlock> = map_largest_first_until(
            &product.blocks,
            |b| b.dim(),
            |b| step::diagonalize(b, dirs, cancel),
            cancel,
        )?;
        if self.spin_symmetric {
            mirror_spectra(&mut eig);
        }
        let (ground, ground_energy) = self.shift_to_ground(&mut eig, omega);
        let mut clock = Instant::now();
        self.times.diagonalize += clock - started;
        self.check_cancel()?;
        // The cut is decided on the real energies alone; only then are the second-order parts
        // rotated, and only the rows that are kept (at the last shell: the ground cluster,
        // which fixes their shift).
        let cut = (!last).then(|| self.choose_cut(&eig, omega));
        let (pair_sums, pair_mean) =
            self.rotate_pairs(&product, &mut eig, cut.as_ref(), &ground, omega, tau)?;
        self.times.pairs += lap(&mut clock);
        self.check_cancel()?;

        let dirs = &self.dirs;
        let symmetry = self.symmetry;
        let indices: Vec<usize> = (0..eig.len()).collect();
        let traces = map_largest_first_until(
            &indices,
            |&b| eig[b].dim(),
            |&b| {
                let zeeman = symmetry.zeeman(eig[b].qn);
                let trace = thermo::block_trace(&eig[b], zeeman, tau, dirs, &pair_sums[b]);
                Some(trace)
            },
            cancel,
        )?;
        let extra = self
            .complete
            .as_mut()
            .and_then(|c| c.weight_at(n, omega, &self.shift, tau, dirs));
        let mut g = thermo::free_energy(&traces, tau, dirs, extra.as_ref());
        if self.spin_symmetric {
            thermo::keep_even(&mut g, &self.odd);
        }
        let free_energy = ShellFreeEnergy {
            omega,
            tau,
            shift: self.shift.clone(),
            g,
        };
        self.times.thermodynamics += lap(&mut clock);
        self.check_cancel()?;

        let vector = match self.vector.as_mut() {
            Some(v) => {
                let next = if last {
                    (0.0, 0.0)
                } else {
                    let w = self.chain.omega[n + 1];
                    (omega / w, self.chain.hopping[n] / w)
                };
                let readout = v.shell(ShellInput {
                    n,
                    product: &product,
                    eig: &eig,
                    ground: &ground,
                    kept: cut.as_ref().map(|c| c.kept.as_slice()),
                    next,
                    omegas: &self.chain.omega[n..=self.n_max],
                    shift: self.shift.value,
                    tau,
                });
                self.times.vector += lap(&mut clock);
                Some(readout)
            }
            None => None,
        };
        self.check_cancel()?;

        let states = product.states();
        let mut kept_blocks = vec![0; eig.len()];
        let mut frames = None;
        let (kept, gap, e_cut, discarded_weight) = match cut {
            Some(cut) => {
                kept_blocks.clone_from(&cut.kept);
                let weight = discarded_weight(
                    &eig,
                    &cut.kept,
                    &self.weights(&eig),
                    tau * self.chain.omega[n + 1] / omega,
                );
                if let Some(complete) = self.complete.as_mut() {
                    let truncated = Truncated {
                        n,
                        omegas: &self.chain.omega[n..=self.n_max],
                        shift: &self.shift,
                        eig: &eig,
                        kept: &cut.kept,
                        product: &product,
                        pair_mean: &pair_mean,
                        tau,
                        symmetry: self.symmetry,
                    };
                    complete.add_shell(
                        truncated,
                        &self.dirs,
                        Cancel::new(self.cancel.as_deref()),
                    )?;
                    self.times.complete_basis += lap(&mut clock);
                }
                let (kept_shell, f) = self.truncate(&product, &eig, &cut, &mut clock)?;
                frames = f;
                self.check_cancel()?;
                let step = SiteAddition {
                    scale: omega / self.chain.omega[n + 1],
                    hopping: self.chain.hopping[n] / self.chain.omega[n + 1],
                    onsite: self.chain.onsite[n + 1] / self.chain.omega[n + 1],
                    field: self.h_total / self.chain.omega[n + 1],
                };
                let next = match self.symmetry {
                    Symmetry::QSz => shell::add_site(&kept_shell, step, &self.dirs, cancel),
                    Symmetry::QS => su2::add_site(&kept_shell, step, &self.dirs, cancel),
                };
                self.pending = Some(next?);
                self.times.add_site += lap(&mut clock);
                (cut.total, cut.gap, cut.e_max, weight)
            }
            None => {
                let highest = eig
                    .iter()
                    .filter_map(|eb| eb.energies.last().copied())
                    .fold(0.0, f64::max);
                (states, None, highest, None)
            }
        };
        self.next += 1;
        self.times.total += started.elapsed();
        Some(Shell {
            n,
            t: omega * tau,
            free_energy,
            shift_step: self.shift_step.clone(),
            eig,
            states,
            kept,
            kept_blocks,
            subs: product.subs,
            gap,
            e_cut,
            ground_energy,
            discarded_weight,
            frames,
            vector,
        })
    }

    /// States per level of every block (1, or 2S+1 in (Q, S)).
    fn weights(&self, eig: &[EigenBlock]) -> Vec<usize> {
        eig.iter()
            .map(|eb| self.symmetry.degeneracy(eb.qn))
            .collect()
    }

    /// Subtract the ground energy and the mean first-order parts of the ground cluster, so
    /// that derivative parts stay of order one; accumulate the shift in physical units.
    /// Returns the number of ground-cluster states in every block and the (rescaled) ground
    /// energy subtracted.
    fn shift_to_ground(&mut self, eig: &mut [EigenBlock], omega: f64) -> (Vec<usize>, f64) {
        let e0 = eig
            .iter()
            .filter_map(|eb| eb.energies.first().copied())
            .fold(f64::INFINITY, f64::min);
        let energies: Vec<&[f64]> = eig.iter().map(|eb| eb.energies.as_slice()).collect();
        let ground = cluster::ground_counts(&energies);
        let mut mean = ground_mean(
            &ground,
            &self.weights(eig),
            eig.iter().map(|eb| eb.b.as_slice()),
            self.dirs.first(),
        );
        if self.spin_symmetric {
            // the ground cluster is closed under the flip: odd means vanish exactly
            for (m, &odd) in mean.iter_mut().zip(&self.odd) {
                if odd {
                    *m = 0.0;
                }
            }
        }
        for eb in eig.iter_mut() {
            eb.shift(e0, &mean);
        }
        let mut parts = mean;
        parts.resize(self.dirs.parts(), 0.0);
        self.shift.add_scaled(omega, e0, &parts);
        self.shift_step = ShiftJet::zero(&self.dirs);
        self.shift_step.add_scaled(omega, e0, &parts);
        (ground, e0)
    }

    /// Rotate the second-order parts (the kept rows, or the ground cluster at the last shell),
    /// shift them like the first-order ones, and return per block Σ_k g′(E_k) B^ij_kk over
    /// all states for every pair, and the pair parts' ground shift.
    fn rotate_pairs(
        &mut self,
        product: &ProductShell,
        eig: &mut [EigenBlock],
        cut: Option<&truncation::Cut>,
        ground: &[usize],
        omega: f64,
        tau: f64,
    ) -> Option<(Vec<Vec<f64>>, Vec<f64>)> {
        let pairs = self.dirs.pairs().len();
        if pairs == 0 {
            return Some((vec![Vec::new(); eig.len()], Vec::new()));
        }
        let rows = cut.map_or(ground, |c| c.kept.as_slice());
        let full = self.keep_frames;
        let dirs = &self.dirs;
        let cancel = Cancel::new(self.cancel.as_deref());
        let indices: Vec<usize> = (0..eig.len()).collect();
        let eig_ref: &[EigenBlock] = eig;
        let rotated = map_largest_first_until(
            &indices,
            |&b| eig_ref[b].dim(),
            |&b| {
                let (eb, block) = (&eig_ref[b], &product.blocks[b]);
                let b_pairs = if full {
                    step::rotate_all_pairs(eb, block, dirs, cancel)?
                } else {
                    step::rotate_pairs(eb, block, dirs, rows[b], cancel)?
                };
                let w = thermo::pair_weights(eb, tau);
                let sums = step::pair_traces(eb, &b_pairs, block, dirs, &w, cancel)?;
                Some((b_pairs, sums, w.iter().sum::<f64>()))
            },
            cancel,
        )?;
        // the pair parts' shift: their mean over the ground cluster, like the first-order ones
        let mut mean = ground_mean(
            ground,
            &self.weights(eig),
            rotated.iter().map(|(b, _, _)| b.as_slice()),
            pairs,
        );
        if self.spin_symmetric {
            for (m, &(i, j)) in mean.iter_mut().zip(self.dirs.pairs()) {
                if self.odd[i] != self.odd[j] {
                    *m = 0.0;
                }
            }
        }
        let mut parts = vec![0.0; self.dirs.first()];
        parts.extend_from_slice(&mean);
        self.shift.add_scaled(omega, 0.0, &parts);
        self.shift_step.add_scaled(omega, 0.0, &parts);
        let sums = rotated
            .into_iter()
            .zip(eig.iter_mut())
            .map(|((b_pairs, sums, w_total), eb)| {
                eb.b_pairs = b_pairs;
                eb.shift_pairs(&mean);
                // Σ_k w_k (B^ij_kk − s^ij)
                sums.iter()
                    .zip(&mean)
                    .map(|(s, m)| s - m * w_total)
                    .collect()
            })
            .collect();
        Some((sums, mean))
    }

    /// The cut of this shell (or the frozen one), on the field-free energies while the total
    /// field is small against ω_N (see [`FIELD_FREE_CUT`]).
    fn choose_cut(&self, eig: &[EigenBlock], omega: f64) -> truncation::Cut {
        let nrg = &self.nrg;
        let field = self.h_total / omega;
        let field_free = field != 0.0 && field.abs() <= FIELD_FREE_CUT;
        let adjusted: Vec<Vec<f64>> = if field_free {
            eig.iter()
                .map(|eb| {
                    let shift = field * eb.qn.sz();
                    eb.energies.iter().map(|e| e + shift).collect()
                })
                .collect()
        } else {
            Vec::new()
        };
        let energies: Vec<&[f64]> = if field_free {
            adjusted.iter().map(Vec::as_slice).collect()
        } else {
            eig.iter().map(|eb| eb.energies.as_slice()).collect()
        };
        let weights = self.weights(eig);
        match self.frozen_kept.as_ref().and_then(|k| k.get(self.next)) {
            Some(&total) => truncation::cut_at(&energies, &weights, total),
            None => {
                truncation::choose_cut(&energies, &weights, nrg.keep, nrg.e_cut, nrg.gap_window)
            }
        }
    }

    /// Decouple, transform f†: everything shell N+1 needs (and the frames, when kept).
    fn truncate(
        &mut self,
        product: &ProductShell,
        eig: &[EigenBlock],
        cut: &truncation::Cut,
        clock: &mut Instant,
    ) -> Option<(KeptShell, Option<Vec<Frame>>)> {
        let dirs = &self.dirs;
        let with_kept: Vec<(&EigenBlock, usize)> =
            eig.iter().zip(cut.kept.iter().copied()).collect();
        let cancel = Cancel::new(self.cancel.as_deref());
        let decoupled = map_largest_first_until(
            &with_kept,
            |(eb, _)| eb.dim(),
            |&(eb, k)| step::decouple(eb, k, dirs, cancel),
            cancel,
        )?;
        self.times.decouple += lap(clock);
        // kept blocks lose the empty ones; remember where each went
        let mut new_index = vec![None; eig.len()];
        let mut next = 0;
        for (b, &k) in cut.kept.iter().enumerate() {
            if k > 0 {
                new_index[b] = Some(next);
                next += 1;
            }
        }
        let live: Vec<_> = product
            .fdag
            .iter()
            .filter_map(|op| Some((op, new_index[op.left]?, new_index[op.right]?)))
            .collect();
        let fdag = map_largest_first_until(
            &live,
            |(op, _, _)| eig[op.left].dim() * eig[op.right].dim(),
            |&(op, l, r)| {
                step::transform_op(
                    op,
                    (&eig[op.left], &decoupled[op.left].1),
                    (&eig[op.right], &decoupled[op.right].1),
                    dirs,
                    l,
                    r,
                    cancel,
                )
            },
            cancel,
        )?;
        self.times.operators += lap(clock);
        let first = dirs.first();
        let mut frames = self.keep_frames.then(Vec::new);
        let mut blocks = Vec::new();
        for (kb, dec) in decoupled {
            if let Some(f) = frames.as_mut() {
                f.push(Frame {
                    s: dec.s,
                    kept_pairs: kb.dh[first..].to_vec(),
                });
            }
            if !kb.energies.is_empty() {
                blocks.push(kb);
            }
        }
        Some((
            KeptShell {
                blocks,
                fdag,
                orbitals: product.orbitals,
                symmetry: self.symmetry,
            },
            frames,
        ))
    }
}

/// At a spin-flip symmetric point the (Q, −S_z) block is the mirror image of (Q, S_z); the two
/// eigensolver calls agree only to round-off, and that difference grows like Λ^(N/2) in rescaled
/// units, acting as a spurious field. Copying the spectrum of S_z > 0 onto its mirror makes ±S_z
/// identical bit for bit at every shell. (The mirror's eigenvectors stay its own: they are
/// eigenvectors of its block to round-off, which does not accumulate.)
fn mirror_spectra(eig: &mut [EigenBlock]) {
    let index: HashMap<(i32, i32), usize> = eig
        .iter()
        .enumerate()
        .map(|(b, eb)| ((eb.qn.q, eb.qn.sz2), b))
        .collect();
    for b in 0..eig.len() {
        let qn = eig[b].qn;
        if qn.sz2 >= 0 {
            continue;
        }
        if let Some(&m) = index.get(&(qn.q, -qn.sz2))
            && eig[m].dim() == eig[b].dim()
        {
            let energies = eig[m].energies.clone();
            eig[b].energies = energies;
        }
    }
}

/// Fraction of the Boltzmann weight at rescaled temperature `tau` carried by the states beyond
/// the first `kept[b]` of every block (`weights[b]` states per level).
fn discarded_weight(
    eig: &[EigenBlock],
    kept: &[usize],
    weights: &[usize],
    tau: f64,
) -> Option<f64> {
    let (mut all, mut lost) = (0.0, 0.0);
    for ((eb, &k), &d) in eig.iter().zip(kept).zip(weights) {
        for (i, &e) in eb.energies.iter().enumerate() {
            let w = (-e / tau).exp() * d as f64;
            all += w;
            if i >= k {
                lost += w;
            }
        }
    }
    (all > 0.0).then(|| lost / all)
}

/// Mean diagonal element over the states of the ground cluster (`ground[b]` lowest levels of
/// block b, each standing for `weights[b]` states) of each of `parts` matrices per block.
fn ground_mean<'a>(
    ground: &[usize],
    weights: &[usize],
    blocks: impl Iterator<Item = &'a [faer::Mat<f64>]>,
    parts: usize,
) -> Vec<f64> {
    let mut mean = vec![0.0; parts];
    for ((mats, &g), &d) in blocks.zip(ground).zip(weights) {
        for (x, m) in mean.iter_mut().zip(mats) {
            *x += d as f64 * (0..g).map(|k| m[(k, k)]).sum::<f64>();
        }
    }
    let count: usize = ground.iter().zip(weights).map(|(g, d)| g * d).sum();
    mean.iter_mut().for_each(|x| *x /= count as f64);
    mean
}

/// Time since `clock`, which is reset to now.
fn lap(clock: &mut Instant) -> Duration {
    let now = Instant::now();
    let d = now - *clock;
    *clock = now;
    d
}

/// One NRG run of an impurity model, advanced shell by shell.
pub struct Run {
    config: RunConfig,
    header: Header,
    model: Box<dyn ImpurityModel>,
    iteration: Iteration,
    plan: Plan,
    bare: Bare,
    diagnostics: Diagnostics,
    /// χ_cross of the last shell, when computed ([`Run::chi_cross`]).
    last_chi_cross: Option<f64>,
}

/// A run is one chain: z-averaging (`nrg.z_average` > 1) runs one `Run` per z
/// ([`crate::z_average`] for thermodynamics, [`crate::spectral`] for spectra), so a single
/// run refuses the key rather than silently ignoring it.
fn one_chain(config: &RunConfig) -> Result<(), InvalidParam> {
    if config.nrg.z_average != 1 {
        return Err(InvalidParam {
            key: "nrg.z_average".into(),
            value: config.nrg.z_average.to_string(),
            reason: "one run is one chain: z-averaging runs one chain per z (`dnrg run` and \
                     `dnrg spectrum` do; here set nrg.z instead)"
                .into(),
        });
    }
    Ok(())
}

impl Run {
    /// Validate the parameters and prepare the chain and the impurity model.
    pub fn new(config: &RunConfig) -> Result<Run, InvalidParam> {
        config.validate()?;
        one_chain(config)?;
        let model = model::build(&config.model);
        let plan = readout::plan_directions(config, model.as_ref());
        Run::assemble(config.clone(), model, plan)
    }

    /// A run that carries exactly the derivative parts `dirs` and reports none of them
    /// (benchmarks compare the cost of derivative layouts with this).
    #[doc(hidden)]
    pub fn with_directions(config: &RunConfig, dirs: Directions) -> Result<Run, InvalidParam> {
        config.validate()?;
        one_chain(config)?;
        if config.symmetry() == Symmetry::QS && dirs.vars().contains(&Variable::HImp) {
            return Err(InvalidParam {
                key: "nrg.symmetry".into(),
                value: "QS".into(),
                reason: "a field on the impurity spin is no scalar direction in (Q, S) blocks"
                    .into(),
            });
        }
        let model = model::build(&config.model);
        let plan = Plan::bare_directions(dirs);
        Run::assemble(config.clone(), model, plan)
    }

    fn assemble(
        config: RunConfig,
        model: Box<dyn ImpurityModel>,
        plan: Plan,
    ) -> Result<Run, InvalidParam> {
        let n_max = crate::chain::last_shell(&config.nrg);
        let chain = Arc::new(WilsonChain::new(&config.nrg, n_max + 1));
        let h_total = match config.model.field {
            FieldKind::Total => config.model.h,
            FieldKind::Impurity => 0.0,
        };
        let var_index: Vec<usize> = plan
            .dirs
            .vars()
            .iter()
            .map(|&v| {
                model::variable_index(model.as_ref(), v).expect("direction is a model variable")
            })
            .collect();

        let site0 = SiteZero {
            coupling_factor: chain.coupling_factor,
            h_total,
        };
        let symmetry = config.symmetry();
        // the (Q, S) shell 0 exists only for models with a multiplet form
        let build: InitialShell = match symmetry {
            Symmetry::QSz => |m, d, v, s, o, w| Some(shell::initial_shell(m, d, v, s, o, w)),
            Symmetry::QS => su2::initial_shell,
        };
        let initial = build(
            model.as_ref(),
            &plan.dirs,
            &var_index,
            site0,
            chain.onsite[0],
            chain.omega[0],
        )
        .ok_or_else(|| InvalidParam {
            key: "nrg.symmetry".into(),
            value: "QS".into(),
            reason: format!(
                "the {} model has no (Q, S) form: use \"QSZ\"",
                config.model.kind.name()
            ),
        })?;
        let mut nrg = config.nrg.clone();
        // the header records the resolved choice, never `auto`
        nrg.symmetry = match symmetry {
            Symmetry::QSz => SymmetryChoice::Qsz,
            Symmetry::QS => SymmetryChoice::Qs,
        };
        let header = Header {
            kind: "header",
            version: env!("CARGO_PKG_VERSION"),
            preset: None,
            description: None,
            model: model_fields(&config),
            nrg,
            output: config.output.clone(),
            derive: plan.sources.iter().map(|&(p, _)| p).collect(),
            chain: ChainInfo {
                v0: model.v0(site0),
                a_lambda: chain.coupling_factor,
                hopping: chain.hopping.clone(),
                onsite: chain.onsite.clone(),
                omega: chain.omega.clone(),
            },
            n_max,
        };
        let mut iteration = Iteration::new(
            &config.nrg,
            chain.clone(),
            n_max,
            plan.dirs.clone(),
            initial,
            h_total,
            model.spin_flip_symmetric(),
        );
        if symmetry == Symmetry::QS && plan.vector {
            let x = shell::seeded_variables(model.as_ref());
            let impurity = model
                .multiplets(&x, site0)
                .expect("a (Q, S) run has the model's multiplets");
            iteration.vector = Some(VectorSector::impurity(
                &impurity.blocks,
                chain.omega[0],
                config.nrg.thermo_states == ThermoStates::Complete,
            ));
        }
        let bare = Bare::new(&config.nrg, chain, n_max, h_total, symmetry);
        Ok(Run {
            diagnostics: Diagnostics::new(&config.nrg),
            config,
            header,
            model,
            iteration,
            plan,
            bare,
            last_chi_cross: None,
        })
    }

    /// Abandon the run as soon as `flag` is set: the shell in progress stops at its next
    /// stage (eigendecompositions, traces, decoupling, …) and `next_shell` returns `None` from
    /// then on. Without a flag, a run can only be stopped between shells.
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Run {
        self.bare.set_cancel_flag(flag.clone());
        self.iteration.set_cancel_flag(flag);
        self
    }

    /// Whether the run was cancelled through its flag.
    pub fn is_cancelled(&self) -> bool {
        self.iteration.is_cancelled()
    }

    /// Where the time of the shells computed so far went.
    pub fn stage_times(&self) -> &StageTimes {
        &self.iteration.times
    }

    /// Resolved parameters and the Wilson chain (preset/description left for the caller).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Index of the last shell.
    pub fn n_max(&self) -> usize {
        self.header.n_max
    }

    /// Real parts of the blocks the next shell will diagonalize: benchmarks time the
    /// eigensolver alone on exactly these matrices.
    #[doc(hidden)]
    pub fn pending_blocks(&self) -> Vec<faer::Mat<f64>> {
        self.iteration
            .pending
            .as_ref()
            .map(|p| p.blocks.iter().map(|b| b.h.clone()).collect())
            .unwrap_or_default()
    }

    /// Compute the next shell, or `None` when the run is complete.
    pub fn next_shell(&mut self) -> Option<ShellRecord> {
        let shell = self.iteration.step()?;
        let started = Instant::now();
        let bare = self.bare.at(shell.n)?;
        let bare_time = started.elapsed();
        self.iteration.times.bare_chain += bare_time;
        self.iteration.times.total += bare_time;

        let sens: Vec<(String, Sensitivity)> = self
            .plan
            .sources
            .iter()
            .map(|&(p, s)| {
                let s = match s {
                    Source::Matrix(i) => Sensitivity::Matrix(i),
                    Source::TotalField => Sensitivity::TotalField,
                    Source::ImpurityField => Sensitivity::ImpurityField,
                };
                (p.name().to_string(), s)
            })
            .collect();
        let omega = shell.free_energy.omega;
        let levels = levels::lowest_levels(
            &shell.eig,
            self.iteration.symmetry,
            self.config.output.levels,
            omega,
            &sens,
            shell.vector.as_ref().map(|v| v.diagonal.as_slice()),
        );
        self.last_chi_cross = match (&shell.vector, self.plan.obs_dirs.h_imp) {
            (Some(v), _) => Some(v.chi_cross),
            // −∂²F/∂h∂h_loc = −G_{h_loc,η}
            (None, Some(h)) => Some(-shell.free_energy.g.first(h).first_h()),
            (None, None) => None,
        };
        let out = readout::read_out(
            &shell.free_energy,
            &bare,
            &self.plan,
            shell.vector.as_ref().map(|v| (v.chi_loc, v.chi_cross)),
        );
        let warnings = self.diagnostics.shell(&shell, &out.obs);
        if shell.n == self.header.n_max {
            self.bare.complete();
        }
        Some(ShellRecord {
            kind: "shell",
            n: shell.n,
            t: shell.t,
            omega,
            kept: shell.kept,
            states: shell.states,
            gap_cut: shell.gap,
            e_cut: shell.e_cut,
            discarded_weight: shell.discarded_weight,
            levels,
            obs: out.obs,
            grad: out.grad,
            hess: out.hess,
            obs_grad: out.obs_grad,
            warnings,
        })
    }

    /// The cross susceptibility χ_cross = −∂²F/∂h∂h_loc (h on the total spin, h_loc on the
    /// impurity spin, both at zero) of the last shell computed, whenever the run computes χ_loc
    /// ((Q, S): the vector sector; (Q, S_z): the h_loc direction's total-field derivative); the
    /// records carry it as `obs.chi_cross` when they carry χ_loc.
    pub fn chi_cross(&self) -> Option<f64> {
        self.last_chi_cross
    }

    /// The final record.
    pub fn summary(&self, cancelled: bool) -> Summary {
        let applies = self.wilson_ratio_applies();
        self.diagnostics.summary(cancelled, applies)
    }

    /// Whether the Fermi-liquid Wilson ratio is defined for this run (SIAM at zero field).
    pub fn wilson_ratio_applies(&self) -> bool {
        self.config.model.h == 0.0 && self.model.kind() == ModelKind::Siam
    }

    /// The next shell of the bare iteration, without any read-out: the spectral function
    /// ([`crate::spectral`]) keeps each shell's eigenvectors and does its own bookkeeping.
    pub(crate) fn next_raw_shell(&mut self) -> Option<Shell> {
        self.iteration.step()
    }

    /// No complete-basis terms in the shells' free energies (Wilson's shell-only partition
    /// function): for callers that read the shells but not their thermodynamics, such as the
    /// spectral function's forward pass. Nothing else of a shell changes.
    pub(crate) fn skip_complete_basis(&mut self) {
        self.iteration.complete = None;
    }

    /// Keep every shell's frame ([`Shell::frames`]) and all rows of the second-order parts, for
    /// the spectral function's derivatives.
    pub(crate) fn keep_frames(&mut self) {
        self.iteration.keep_frames = true;
    }

    /// Whether the run is symmetric under the spin flip (no field): ±S_z blocks are mirror
    /// images, and the spectral function of ↓ is that of ↑.
    pub(crate) fn spin_symmetric(&self) -> bool {
        self.iteration.spin_symmetric
    }

    /// Block labels of the run: (Q, S_z) or (Q, S) multiplets.
    pub(crate) fn symmetry(&self) -> crate::symmetry::Symmetry {
        self.iteration.symmetry
    }

    /// The impurity model of the run.
    pub(crate) fn model(&self) -> &dyn ImpurityModel {
        self.model.as_ref()
    }

    /// Impose the total kept count of every shell (as recorded by another run) instead of
    /// the cut rule: finite differences must compare runs that truncate identically.
    pub fn freeze_kept_counts(&mut self, kept: Vec<usize>) {
        self.iteration.frozen_kept = Some(kept);
    }
}

/// A run's records as `dnrg run` writes them: one chain ([`Run`]) or the average over twisted
/// chains ([`crate::z_average::ZAveragedRun`]), whichever `nrg.z_average` asks for.
pub trait Records: Iterator<Item = ShellRecord> {
    fn header(&self) -> &Header;
    /// The last shell (of the z = 1 chain).
    fn n_max(&self) -> usize;
    /// The `done` record.
    fn summary(&self, cancelled: bool) -> Summary;
}

impl Records for Run {
    fn header(&self) -> &Header {
        Run::header(self)
    }
    fn n_max(&self) -> usize {
        Run::n_max(self)
    }
    fn summary(&self, cancelled: bool) -> Summary {
        Run::summary(self, cancelled)
    }
}

/// The records `config` asks for, cancelled through `flag`.
pub fn records(
    config: &RunConfig,
    flag: Arc<AtomicBool>,
) -> Result<Box<dyn Records>, InvalidParam> {
    Ok(if config.nrg.z_average > 1 {
        Box::new(crate::z_average::ZAveragedRun::new(config)?.with_cancel_flag(flag))
    } else {
        Box::new(Run::new(config)?.with_cancel_flag(flag))
    })
}

impl Iterator for Run {
    type Item = ShellRecord;
    fn next(&mut self) -> Option<ShellRecord> {
        self.next_shell()
    }
}

/// The model parameters that belong to the model kind, for the header.
fn model_fields(config: &RunConfig) -> IndexMap<String, serde_json::Value> {
    let m = &config.model;
    let mut out = IndexMap::new();
    out.insert("kind".to_string(), m.kind.name().into());
    let params: &[(&str, f64)] = match m.kind {
        ModelKind::Siam => &[("U", m.u), ("eps_d", m.eps_d), ("Gamma", m.gamma)],
        ModelKind::Kondo => &[("J", m.j), ("K", m.k)],
    };
    for &(k, v) in params {
        out.insert(k.to_string(), v.into());
    }
    out.insert("h".to_string(), m.h.into());
    out.insert("field".to_string(), m.field.name().into());
    out
}
