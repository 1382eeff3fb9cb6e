//! The two passes of the full-density-matrix NRG over one chain (design note
//! `spectral-derivatives.md`, §1–§4), with or without derivative parts.
//!
//! 1. **Forward** ([`forward`]): the ordinary iteration. Every shell's eigenvalues, eigenvectors U
//!    and kept counts are stored, and the impurity annihilator d_σ (and X_F = d_σ n_σ̄ for the
//!    self-energy trick) is carried along on all four blocks (KK, KD, DK, DD). d acts on the
//!    impurity orbital, first in the Jordan–Wigner order, so in the product basis (kept states of
//!    shell N−1) ⊗ (site N) it is d_{N−1,KK} ⊗ 1 with no sign.
//!    With derivative parts the operator goes through two frames: the solver's W = e^S (whose
//!    kept block is what the next shell is built on) and then the cluster frame e^G of
//!    [`crate::frames`], in which its poles are read. Per shell and block the pass also stores
//!    S, G and the cluster blocks of H̃, which the backward pass needs.
//!    Shells beyond a memory budget go to disk, oldest first ([`Stored`], [`crate::spill`]);
//!    energies, kept counts, shifts and the ln-trace parts stay in memory.
//! 2. **Backward** ([`backward`]), taking the shells out last-first (reading spilled ones back,
//!    freeing each when done): the weights w_N = 4^{N_max−N} Z̃_N / Z of every shell's
//!    discarded states at the user's temperature T (in logarithms: 4^{N_max−N} overflows), the
//!    reduced density matrices R_N on the kept spaces, R_{N−1} = Σ_s U_s W (R_N ⊕ ρ^D_N) Wᵀ U_sᵀ
//!    (U_s the rows of a product block that belong to site state s), and the poles of every pair
//!    (r, s) ∉ K×K ([`crate::poles`]). With parts: ∂w_N from ∂Z̃_N = Tr_D ∂g(ℋ) (Daleckii–Krein,
//!    inside clusters) and the shift C_N's parts; R^x by e^{S} ρ′ e^{−S} (the note's §2
//!    commutators, as a frame change with the opposite sign).
//!
//! **Shells far above T.** Most of a chain lies far above the spectrum's T: there a discarded
//! state weighs ρ_s ≤ 4^{N_max−N} e^{−ω_N E_s/T} < e^{−DD_CUT} ([`DD_CUT`]), and its DD sector
//! carries nothing. Such a shell ([`discarded_negligible`], decided in the forward pass and
//! checked against the weights once Z is known) sets ρ^D = 0, never forms the DD blocks of the
//! second-order parts (only their KK, KD and DK blocks enter anything), stores the operators'
//! parts on KD and DK alone ([`PoleJet`]) and drops G_D; its share of R_{N−1} is Ṽ R Ṽᵀ with Ṽ the
//! kept columns of U_s e^S ([`kept_shares`]). Plain and dual runs decide alike.
//!
//! Values never depend on the parts: a plain run and the real part of a dual run go through the
//! same operations, in the same order, and agree bit for bit.
//!
//! ## (Q, S) multiplet blocks
//!
//! Without a field (the only case (Q, S) runs allow) everything above carries over to blocks
//! j = (Q, S) whose basis vectors stand for whole multiplets (conventions of [`crate::su2`]:
//! Wigner–Eckart with the CG coefficient, ⟨j m r|X_q|j′ m′ r′⟩ = ⟨S′ m′; k q|S m⟩ X[j←j′]_rr′,
//! d_j = 2S+1). What changes:
//!
//! - **The operator.** d†_σ is the q = σ component of a rank-½ tensor; so is X_F† = (d_σ n_σ̄)† =
//!   (n_d − 1) d†_σ, since d_σ n_σ̄ = d_σ (n_d − 1) (d_σ n_σ = d_σ). The pass stores, per block
//!   pair (L, R) with Q_L = Q_R − 1 and S_L = S_R ± ½, the annihilator's orientation
//!   X[L←R] = D[R←L]ᵀ of the reduced D = ⟨R‖d†‖L⟩. At shell 0 it comes from the model's own
//!   reduced ⟨j‖d†‖j′⟩ on the impurity's multiplets (the hybridization term of
//!   [`crate::model::Multiplets`], so the phases are the iteration's), X_F's with the factor
//!   n_d − 1 = Q of the ket; shell 0 is then built from them as any shell from its predecessor.
//! - **Carrying it to the next shell.** X_{N−1} ⊗ 1 acts on the old multiplet A of a product
//!   multiplet (A, s; J) and keeps the site state s; with s of spin s_site, Edmonds (7.1.7) in
//!   the CG convention gives
//!   D′[(A_R, s) J_R ← (A_L, s) J_L] = c6 · D[A_R←A_L],
//!   c6 = (−1)^{S_{A_R} + s_site + J_L + ½} √((2S_{A_R}+1)(2J_L+1)) {S_{A_R} J_R s_site; J_L S_{A_L} ½}
//!   ([`crate::recoupling::c6`], the same factor as the vector sector's T6). Unlike (Q, S_z),
//!   where the site state pairs with itself, the doublet types 2 and 3 (old spin J ∓ ½) of the
//!   two blocks pair crosswise as well ([`couplings`]). No fermionic sign: the impurity is first.
//!   The derivative directions (ε_d, U, Γ) are scalars (design note su2 §2.1): the frames act
//!   on reduced blocks exactly as in (Q, S_z), and so do the operators' parts.
//! - **Pole weights.** With ρ = ⊕_j ρ_j ⊗ 1_{d_j}, a pole of reduced X_rs stands for the
//!   pairs (r m, s m′) with ⟨r m|d_σ|s m′⟩ = ⟨S_L m; ½ σ|S_R m′⟩ X_rs; for a fixed σ,
//!   Σ_{m m′} ⟨S_L m; ½ σ|S_R m′⟩² = d_R/2, so every W, W_F, occupation and their parts carry
//!   d_R/2: the stored operators are scaled by √(d_R/2). A_↑ = A_↓ (one tensor, both spins):
//!   ↓ is the mirror of ↑ with no odd part.
//! - **Weights and density matrices.** A level of block j is d_j states: Z̃_N and the parts of
//!   ln Tr_D (the discarded weights) carry d_j; ρ^D and R_N are per state (identity in m). The
//!   partial trace over site N of multiplet J of product (A, s) gives each state of A
//!   Σ_{M μ} ⟨A m; s μ|J M⟩⟨A m′; s μ|J M⟩ = δ_mm′ d_J/d_A: R_{N−1}[A] = Σ (d_J/d_A) U_s ρ_J U_sᵀ,
//!   and its trace is Σ_A d_A Tr R_A. Kept counts are states (Σ d_j k_j), as the cut's.
//! - **The T-matrix** (Kondo model): O_σ = [f_0σ, H_imp]/√A_Λ acts on site 0 too, so it is
//!   given on shell 0's product multiplets directly ([`crate::spectral::ReducedOps::shell0`]):
//!   H_imp is a scalar, so O[L←R] = (F[L←R] H_R − H_L F[L←R])/√A_Λ with F the transpose of the
//!   iteration's f†_0, and its parts the same with ∂H_imp. The sum rule's ⟨{O, O†}⟩ is
//!   Tr ρ_L X Xᵀ + Tr ρ_R Xᵀ X over shell 0's pairs with the same d_R/2.
//! - **Not in (Q, S).** ∂A_σ/∂h: a field is no scalar direction (spin-resolved spectra in a
//!   field, or their h derivatives, need (Q, S_z)).

use crate::broadening::PoleSink;
use crate::frames::{
    BlockClusters, BlockGen, ClusterFrame, KdGen, MatJet, PoleJet, cluster_frame,
    cluster_transform, mul_add, transform_off_dd, transform_symmetric,
};
use crate::jet::Directions;
use crate::linalg::{gemm, mul, sandwich, sym_congruence};
use crate::model::LocalSpace;
use crate::parallel::{Cancel, map_largest_first, map_largest_first_until};
use crate::poles::{BlockRho, BlockView, PoleSums, discarded_parts, exprel, pair_poles};
use crate::recoupling::c6;
use crate::shell::{SubBlocks, group_by_qn};
use crate::solver::{Frame, Run, Shell};
pub(crate) use crate::spectral::{LocalOperator, ShellZeroOps};
use crate::spill::{Reader, SpillFile, Writer};
use crate::step::EigenBlock;
use crate::su2::old_block;
use crate::symmetry::{Qn, SPINS, Symmetry, creation_qn};
use faer::Mat;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// The frames of one block (runs with derivative parts).
pub(crate) struct BlockFrame {
    /// The solver's K–D generator, k×d per part.
    s: Vec<Mat<f64>>,
    /// Cluster frames of K and of D (G and H̃).
    kf: ClusterFrame,
    df: ClusterFrame,
    /// H̃'s cluster blocks over the whole block.
    clusters: BlockClusters,
}

impl BlockFrame {
    /// The generators, the cluster blocks of H̃ (in the two frames and again in `clusters`).
    fn bytes(&self) -> usize {
        let m = |v: &[Mat<f64>]| v.iter().map(|x| x.nrows() * x.ncols()).sum::<usize>();
        let h = |f: &ClusterFrame| f.h.iter().map(|p| m(p)).sum::<usize>();
        8 * (m(&self.s) + m(&self.kf.g) + m(&self.df.g) + 2 * (h(&self.kf) + h(&self.df)))
    }

    fn write(&self, w: &mut Writer<'_>) -> io::Result<()> {
        w.mats(&self.s)?;
        for f in [&self.kf, &self.df] {
            w.ranges(&f.ranges)?;
            w.mats(&f.g)?;
            w.usize(f.h.len())?;
            f.h.iter().try_for_each(|h| w.mats(h))?;
        }
        Ok(())
    }

    /// What [`BlockFrame::write`] wrote; the joint clusters are made again as the forward pass
    /// made them.
    fn read(r: &mut Reader<'_>, kept: usize) -> io::Result<BlockFrame> {
        let s = r.mats()?;
        let mut frame = || -> io::Result<ClusterFrame> {
            let ranges = r.ranges()?;
            let g = r.mats()?;
            let n = r.usize()?;
            let h = (0..n).map(|_| r.mats()).collect::<io::Result<_>>()?;
            Ok(ClusterFrame { ranges, g, h })
        };
        let kf = frame()?;
        let df = frame()?;
        let clusters = BlockClusters::join(&kf, &df, kept);
        Ok(BlockFrame {
            s,
            kf,
            df,
            clusters,
        })
    }
}

/// One diagonalized block as the backward pass needs it.
pub(crate) struct StoredBlock {
    /// Rescaled, shifted eigenvalues (ascending).
    energies: Vec<f64>,
    u: Mat<f64>,
    kept: usize,
    /// States per level: d_j = 2S+1 in (Q, S) blocks, 1 in (Q, S_z) ([`Symmetry::degeneracy`]).
    deg: f64,
    frame: Option<BlockFrame>,
}

/// d_σ (or X_F) between two blocks of one shell: X_rs = ⟨r ∈ left|X|s ∈ right⟩ in the cluster
/// frame (the value is the eigenbasis), its parts on the blocks that hold poles.
pub(crate) struct StoredOp {
    left: usize,
    right: usize,
    x: PoleJet,
}

/// What the backward pass needs of one shell.
pub(crate) struct StoredShell {
    omega: f64,
    /// This shell's contribution to the accumulated shift C_N (ℰ = ω_N E + C_N, physical units)
    /// and its parts: the backward pass sums them into C_N − C_{N_max}, which keeps its relative
    /// precision (C_N itself is O(1) while its differences between the last shells are O(ω_N)).
    shift_step: f64,
    shift_step_parts: Vec<f64>,
    /// C_N − C_{N_max} and its parts, set by the backward pass.
    shift: f64,
    shift_parts: Vec<f64>,
    blocks: Vec<StoredBlock>,
    subs: Vec<SubBlocks>,
    d: [Vec<StoredOp>; 2],
    /// X_F = d_σ n_σ̄, on the same block pairs as d (empty when the trick is off).
    f: [Vec<StoredOp>; 2],
    /// Total kept states (for freezing the counts of another run).
    kept_total: usize,
    /// Whether the discarded states of this shell weigh nothing at the spectrum's T
    /// ([`DD_CUT`]): ρ^D is 0, and the DD blocks of the operators' parts were never formed.
    skip_dd: bool,
    /// The parts of ln Tr_D e^{−ω_N H̃_DD/T} at the spectrum's T ([`log_trace_parts`]), taken
    /// while the frames are in memory: the backward pass needs them of every shell before its
    /// sweep, when a spilled shell's frames are on disk.
    log_trace: Vec<f64>,
}

impl StoredShell {
    pub(crate) fn bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                8 * (b.u.nrows() * b.u.ncols() + b.energies.len())
                    + b.frame.as_ref().map_or(0, BlockFrame::bytes)
            })
            .sum();
        let ops: usize = self
            .d
            .iter()
            .chain(&self.f)
            .flatten()
            .map(|o| o.x.bytes())
            .sum();
        blocks + ops
    }

    pub(crate) fn kept_total(&self) -> usize {
        self.kept_total
    }

    /// Write the bulk — eigenvectors, frames, operators — and drop it from memory; energies,
    /// kept counts and shifts stay (the backward pass's weights need them of every shell).
    fn spill(&mut self, w: &mut Writer<'_>) -> io::Result<()> {
        for b in &self.blocks {
            w.mat(&b.u)?;
            match &b.frame {
                Some(f) => {
                    w.u64(1)?;
                    f.write(w)?;
                }
                None => w.u64(0)?,
            }
        }
        for ops in self.d.iter().chain(&self.f) {
            w.usize(ops.len())?;
            for o in ops {
                w.usize(o.left)?;
                w.usize(o.right)?;
                w.usize(o.x.kl)?;
                w.usize(o.x.kr)?;
                w.mat(&o.x.v)?;
                w.mats(&o.x.kd)?;
                w.mats(&o.x.dk)?;
                match &o.x.dd {
                    Some(dd) => {
                        w.u64(1)?;
                        w.mats(dd)?;
                    }
                    None => w.u64(0)?,
                }
            }
        }
        for b in &mut self.blocks {
            b.u = Mat::zeros(0, 0);
            b.frame = None;
        }
        self.d = [Vec::new(), Vec::new()];
        self.f = [Vec::new(), Vec::new()];
        Ok(())
    }

    /// Read back what [`StoredShell::spill`] wrote.
    fn unspill(&mut self, r: &mut Reader<'_>) -> io::Result<()> {
        for b in &mut self.blocks {
            b.u = r.mat()?;
            b.frame = match r.u64()? {
                0 => None,
                _ => Some(BlockFrame::read(r, b.kept)?),
            };
        }
        for ops in self.d.iter_mut().chain(&mut self.f) {
            let n = r.usize()?;
            *ops = (0..n)
                .map(|_| {
                    let (left, right) = (r.usize()?, r.usize()?);
                    let (kl, kr) = (r.usize()?, r.usize()?);
                    let x = PoleJet {
                        v: r.mat()?,
                        kl,
                        kr,
                        kd: r.mats()?,
                        dk: r.mats()?,
                        dd: match r.u64()? {
                            0 => None,
                            _ => Some(r.mats()?),
                        },
                    };
                    Ok(StoredOp { left, right, x })
                })
                .collect::<io::Result<_>>()?;
        }
        Ok(())
    }
}

/// Every shell of a forward pass: the last ones in memory, the first ones — whatever did not
/// fit the budget — on disk ([`crate::spill`]), to be read back last-first by the backward
/// pass.
pub(crate) struct Stored {
    shells: Vec<StoredShell>,
    /// Shells `0..on_disk` are in the spill file (their bulk; the rest of them is here).
    on_disk: usize,
    spill: Option<SpillFile>,
    /// Bytes of the shells' bulk held in memory now, and at most during the forward pass.
    in_memory: usize,
    peak_in_memory: usize,
    budget: usize,
    /// Bytes of every shell's bulk, whether in memory or on disk.
    total: usize,
    /// Whether every shell that left out its DD sector has discarded weights below e^{−DD_CUT}
    /// (false: the bound of [`discarded_negligible`] failed, and the pass must be run again
    /// with [`DdSkip::Never`]).
    pub(crate) skips_hold: bool,
}

impl Stored {
    fn new(budget: usize) -> Stored {
        Stored {
            shells: Vec::new(),
            on_disk: 0,
            spill: None,
            in_memory: 0,
            peak_in_memory: 0,
            budget,
            total: 0,
            skips_hold: true,
        }
    }

    /// Add the next shell; spill the oldest ones in memory while the budget is exceeded.
    fn push(&mut self, shell: StoredShell) -> io::Result<()> {
        let bytes = shell.bytes();
        self.total += bytes;
        self.in_memory += bytes;
        self.shells.push(shell);
        while self.in_memory > self.budget && self.on_disk < self.shells.len() {
            let spill = match self.spill.as_mut() {
                Some(s) => s,
                None => self.spill.insert(SpillFile::create()?),
            };
            let sh = &mut self.shells[self.on_disk];
            let bytes = sh.bytes();
            spill.push(|w| sh.spill(w))?;
            self.in_memory -= bytes;
            self.on_disk += 1;
        }
        self.peak_in_memory = self.peak_in_memory.max(self.in_memory);
        Ok(())
    }

    /// The last shell, whole (read back from disk if it was spilled), taken out of the list.
    fn pop(&mut self) -> io::Result<Option<StoredShell>> {
        let Some(mut sh) = self.shells.pop() else {
            return Ok(None);
        };
        if self.shells.len() < self.on_disk {
            let spill = self.spill.as_mut().expect("spilled shells have a file");
            spill.pop(|r| sh.unspill(r))?;
            self.on_disk -= 1;
        } else {
            self.in_memory -= sh.bytes();
        }
        Ok(Some(sh))
    }

    pub(crate) fn shells(&self) -> &[StoredShell] {
        &self.shells
    }

    /// Bytes of every shell's stored data (what an all-in-memory run holds).
    pub(crate) fn total_bytes(&self) -> usize {
        self.total
    }

    /// The most bytes of it held in memory at once.
    pub(crate) fn peak_in_memory(&self) -> usize {
        self.peak_in_memory
    }

    /// Bytes written to the spill file (0 if nothing was spilled).
    pub(crate) fn spilled_bytes(&self) -> u64 {
        self.spill.as_ref().map_or(0, SpillFile::written)
    }
}

/// The frames of one block: H′ in the solver's frame on K and on D (design note §2), then the
/// cluster Schrieffer–Wolff of each.
///   H′^i_KK = B^i_KK,  H′^i_DD = B^i_DD,  H′^ij_KK from the solver,
///   H′^ij_DD = B^ij_DD + ½(V + Vᵀ),  V = S^iᵀ B^j_KD + S^jᵀ B^i_KD.
fn block_frame(eb: &EigenBlock, k: usize, frame: Option<&Frame>, dirs: &Directions) -> BlockFrame {
    let n = eb.dim();
    let d = n - k;
    let m = dirs.first();
    let s: Vec<Mat<f64>> = match frame {
        Some(f) => f.s.clone(),
        None => (0..dirs.parts()).map(|_| Mat::zeros(k, d)).collect(),
    };
    let sub = |x: &Mat<f64>, r: usize, c: usize, nr: usize, nc: usize| {
        x.as_ref().submatrix(r, c, nr, nc).to_owned()
    };
    let mut hk: Vec<Mat<f64>> = (0..m).map(|i| sub(&eb.b[i], 0, 0, k, k)).collect();
    let mut hd: Vec<Mat<f64>> = (0..m).map(|i| sub(&eb.b[i], k, k, d, d)).collect();
    for (p, &(i, j)) in dirs.pairs().iter().enumerate() {
        hk.push(match frame {
            Some(f) => f.kept_pairs[p].clone(),
            None => Mat::zeros(k, k),
        });
        let mut h = sub(&eb.b_pairs[p], k, k, d, d);
        if k > 0 && d > 0 {
            let mut v = Mat::<f64>::zeros(d, d);
            let bkd = |x: usize| eb.b[x].as_ref().submatrix(0, k, k, d);
            gemm(v.as_mut(), true, s[i].transpose(), bkd(j), 1.0);
            gemm(v.as_mut(), true, s[j].transpose(), bkd(i), 1.0);
            for c in 0..d {
                for r in 0..d {
                    h[(r, c)] += 0.5 * (v[(r, c)] + v[(c, r)]);
                }
            }
        }
        hd.push(h);
    }
    let kf = cluster_frame(&eb.energies[..k], &hk, dirs);
    let df = cluster_frame(&eb.energies[k..], &hd, dirs);
    let clusters = BlockClusters::join(&kf, &df, k);
    BlockFrame {
        s,
        kf,
        df,
        clusters,
    }
}

/// d_σ (or any local operator with its quantum numbers, such as d_σ n_σ̄ or the Kondo model's
/// O_σ = [f_0σ, H_imp]) at shell 0, from the local Fock space: the product blocks of shell 0 are
/// the local states grouped by (Q, S_z) exactly as [`group_by_qn`] orders them. Its parts are
/// the operator's own explicit dependence on the parameters (none for d_σ); the frames add theirs.
fn initial_op(
    space: &LocalSpace,
    c: &LocalOperator,
    eig: &[EigenBlock],
    index: &HashMap<Qn, usize>,
    sigma: usize,
    parts: usize,
) -> Vec<(usize, usize, MatJet)> {
    let (groups, _) = group_by_qn(space);
    let mut ops = Vec::new();
    for (right, eb) in eig.iter().enumerate() {
        let Some(&left) = index.get(&eb.qn.minus(creation_qn(sigma))) else {
            continue;
        };
        let (rows, cols) = (&groups[&eig[left].qn], &groups[&eb.qn]);
        let local = |m: &nalgebra::DMatrix<f64>| {
            Mat::<f64>::from_fn(rows.len(), cols.len(), |a, b| m[(rows[a], cols[b])])
        };
        let zero = |m: &Mat<f64>| (0..m.ncols()).all(|j| (0..m.nrows()).all(|i| m[(i, j)] == 0.0));
        let value = local(&c.value);
        let own: Vec<Mat<f64>> = c.parts.iter().map(local).collect();
        if zero(&value) && own.iter().all(zero) {
            continue;
        }
        let rotate = |m: &Mat<f64>| sandwich(eig[left].u.as_ref(), m.as_ref(), eb.u.as_ref());
        let mut x = MatJet::constant(rotate(&value), parts);
        for (p, m) in own.iter().enumerate().take(parts) {
            if !zero(m) {
                x.p[p] = rotate(m);
            }
        }
        ops.push((left, right, x));
    }
    ops
}

/// The block pairs (left, right) of X_σ at shell N ≥ 1 that have a sub-block in common.
fn op_pairs(
    sym: Symmetry,
    eig: &[EigenBlock],
    subs: &[SubBlocks],
    index: &HashMap<Qn, usize>,
    kept: &HashMap<(usize, usize), MatJet>,
    sigma: usize,
) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for (right, eb) in eig.iter().enumerate() {
        for left in left_blocks(sym, eb.qn, sigma) {
            let Some(&left) = index.get(&left) else {
                continue;
            };
            let any = couplings(sym, eig, subs, left, right)
                .into_iter()
                .any(|(tl, tr, _)| match (subs[right][tr], subs[left][tl]) {
                    (Some((kr, _)), Some((kl, _))) => kept.contains_key(&(kl, kr)),
                    _ => false,
                });
            if any {
                out.push((left, right));
            }
        }
    }
    out
}

/// The blocks X_σ can map block `right` to: (Q − 1, S_z − s_σ) in (Q, S_z); (Q − 1, S ± ½) in
/// (Q, S), where X is the rank-½ tensor.
fn left_blocks(sym: Symmetry, right: Qn, sigma: usize) -> Vec<Qn> {
    match sym {
        Symmetry::QSz => vec![right.minus(creation_qn(sigma))],
        Symmetry::QS => [1, -1]
            .into_iter()
            .filter(|&d| right.sz2 + d >= 0)
            .map(|d| Qn::new(right.q - 1, right.sz2 + d))
            .collect(),
    }
}

/// Product types of the site state s (0, doublet, 0, |↑↓⟩) in (Q, S) blocks: the number of its
/// electrons, and its spin (doubled).
const TYPE_ELECTRONS: [usize; 4] = [0, 1, 1, 2];
const TYPE_SPIN: [i32; 4] = [0, 1, 1, 0];

/// The sub-block pairs (left type, right type, factor) through which X_{N−1} ⊗ 1 connects the
/// product blocks `left` and `right`: in (Q, S_z) the same site state s, factor 1; in (Q, S) any
/// two types with the same site state, factor c6 (the rank-½ operator of the old multiplets
/// recoupled with the site, see the module's notes).
fn couplings(
    sym: Symmetry,
    eig: &[EigenBlock],
    subs: &[SubBlocks],
    left: usize,
    right: usize,
) -> Vec<(usize, usize, f64)> {
    match sym {
        Symmetry::QSz => (0..subs[right].len()).map(|s| (s, s, 1.0)).collect(),
        Symmetry::QS => {
            let (jl, jr) = (eig[left].qn, eig[right].qn);
            let mut out = Vec::new();
            for tr in 0..4 {
                for tl in 0..4 {
                    if TYPE_ELECTRONS[tl] != TYPE_ELECTRONS[tr] {
                        continue;
                    }
                    let (Some(ar), Some(al)) = (old_block(jr, tr), old_block(jl, tl)) else {
                        continue;
                    };
                    // d† of the old multiplets: bra (A_R, s; J_R), ket (A_L, s; J_L)
                    let c = c6(ar.sz2, jr.sz2, TYPE_SPIN[tr], jl.sz2, al.sz2, 1);
                    if c != 0.0 {
                        out.push((tl, tr, c));
                    }
                }
            }
            out
        }
    }
}

/// X at shell N ≥ 1 between `left` and `right`: X_{N−1,KK} ⊗ 1 in the product basis (the
/// impurity is first in the Jordan–Wigner order, so no sign), rotated into the eigenbases of
/// both blocks, every part alike. The product operator is never formed: (X ⊗ 1)·U_right is
/// assembled sub-block by sub-block. With `skip_dd` = Some((kl, kr, m)), the parts from m on
/// (the second-order ones) are left zero on their DD block, which a shell far above T never
/// reads ([`transform_off_dd`]).
#[allow(clippy::too_many_arguments)]
fn propagate(
    sym: Symmetry,
    eig: &[EigenBlock],
    subs: &[SubBlocks],
    kept: &HashMap<(usize, usize), MatJet>,
    left: usize,
    right: usize,
    parts: usize,
    skip_dd: Option<(usize, usize, usize)>,
) -> MatJet {
    let eb = &eig[right];
    let (nl, nr) = (eig[left].dim(), eb.dim());
    let pairs = couplings(sym, eig, subs, left, right);
    // (X ⊗ 1)·U_right
    let product = |pick: &dyn Fn(&MatJet) -> &Mat<f64>| {
        let mut du = Mat::<f64>::zeros(nl, nr);
        for &(tl, tr, factor) in &pairs {
            let (Some((kr, off_r)), Some((kl, off_l))) = (subs[right][tr], subs[left][tl]) else {
                continue;
            };
            let Some(x) = kept.get(&(kl, kr)) else {
                continue;
            };
            let x = pick(x);
            gemm(
                du.as_mut().submatrix_mut(off_l, 0, x.nrows(), nr),
                true,
                x.as_ref(),
                eb.u.as_ref().submatrix(off_r, 0, x.ncols(), nr),
                factor,
            );
        }
        du
    };
    let ul = eig[left].u.as_ref();
    let rotate = |pick: &dyn Fn(&MatJet) -> &Mat<f64>, off_dd: Option<(usize, usize)>| {
        let du = product(pick);
        match off_dd {
            None => mul(ul.transpose(), du.as_ref()),
            Some((kl, kr)) => {
                // Uᵀ_L du on the K columns, and on the K rows of the D columns
                let mut o = Mat::<f64>::zeros(nl, nr);
                gemm(
                    o.as_mut().subcols_mut(0, kr),
                    false,
                    ul.transpose(),
                    du.as_ref().subcols(0, kr),
                    1.0,
                );
                gemm(
                    o.as_mut().submatrix_mut(0, kr, kl, nr - kr),
                    false,
                    ul.subcols(0, kl).transpose(),
                    du.as_ref().subcols(kr, nr - kr),
                    1.0,
                );
                o
            }
        }
    };
    MatJet {
        v: rotate(&|x| &x.v, None),
        p: (0..parts)
            .map(|p| {
                let off_dd = skip_dd
                    .filter(|&(_, _, m)| p >= m)
                    .map(|(kl, kr, _)| (kl, kr));
                rotate(&|x| &x.p[p], off_dd)
            })
            .collect(),
    }
}

/// The kept blocks of a shell, in the order the next shell's layout refers to them.
fn compact_index(kept_blocks: &[usize]) -> Vec<Option<usize>> {
    let mut compact = vec![None; kept_blocks.len()];
    let mut next = 0;
    for (b, &k) in kept_blocks.iter().enumerate() {
        if k > 0 {
            compact[b] = Some(next);
            next += 1;
        }
    }
    compact
}

/// The forward pass: run the iteration and keep, per shell, the eigenbases, the frames and the
/// operators on all four blocks; beyond `budget` bytes of them, the oldest shells go to disk
/// ([`Stored`]). `t` is the backward pass's temperature (for [`log_trace_parts`]). `Ok(None)`
/// if the run was cancelled; an error if the spill file could not be written.
pub(crate) fn forward(
    run: &mut Run,
    space: &LocalSpace,
    ops: &ShellZeroOps,
    dirs: &Directions,
    (t, budget, dd_skip): (f64, usize, DdSkip),
    on_shell: &(dyn Fn() + Sync),
) -> io::Result<Option<Stored>> {
    let parts = dirs.parts();
    let m = dirs.first();
    let n_max = run.header().n_max;
    let trick = ops.f.is_some();
    let sym = run.symmetry();
    // (Q, S): one rank-½ tensor stands for both spins
    let spins: &[usize] = if run.spin_symmetric() || sym == Symmetry::QS {
        &[0]
    } else {
        &SPINS
    };
    let mut shells = Stored::new(budget);
    // X′_KK of d_σ and X_F in the solver's frame of the previous shell, keyed by (left, right)
    // kept-block index
    let mut kept_d: [HashMap<(usize, usize), MatJet>; 2] = [HashMap::new(), HashMap::new()];
    let mut kept_f: [HashMap<(usize, usize), MatJet>; 2] = [HashMap::new(), HashMap::new()];
    // (Q, S): shell 0 is built like any shell, on the impurity's multiplets (as "shell −1")
    if sym == Symmetry::QS {
        let reduced = ops
            .reduced
            .as_ref()
            .expect("(Q, S) runs carry the reduced operators");
        let jets = |m: &HashMap<(usize, usize), Mat<f64>>| {
            m.iter()
                .map(|(&k, x)| (k, MatJet::constant(x.clone(), parts)))
                .collect::<HashMap<_, _>>()
        };
        kept_d[0] = jets(&reduced.d);
        if let Some(f) = &reduced.f {
            kept_f[0] = jets(f);
        }
    }
    while let Some(shell) = run.next_raw_shell() {
        let Shell {
            n,
            eig,
            kept_blocks,
            subs,
            frames,
            free_energy,
            shift_step,
            ..
        } = shell;
        let index: HashMap<Qn, usize> = eig.iter().enumerate().map(|(b, eb)| (eb.qn, b)).collect();
        let skip_dd = match dd_skip {
            DdSkip::Auto => {
                let e_min = eig
                    .iter()
                    .zip(&kept_blocks)
                    .filter_map(|(eb, &k)| eb.energies.get(k).copied())
                    .fold(f64::INFINITY, f64::min);
                discarded_negligible(n_max - n, free_energy.omega * e_min / t)
            }
            DdSkip::Never => false,
            DdSkip::AllButLast => n < n_max,
        };
        let block_frames: Vec<Option<BlockFrame>> = if parts == 0 {
            eig.iter().map(|_| None).collect()
        } else {
            let indices: Vec<usize> = (0..eig.len()).collect();
            map_largest_first(
                &indices,
                |&b| eig[b].dim(),
                |&b| {
                    let f = frames.as_ref().map(|f| &f[b]);
                    Some(block_frame(&eig[b], kept_blocks[b], f, dirs))
                },
            )
        };
        // every operator job: (kind, σ, left, right); kind 0 = d, 1 = X_F
        let mut initial: HashMap<(usize, usize, usize, usize), MatJet> = HashMap::new();
        let mut jobs: Vec<(usize, usize, usize, usize)> = Vec::new();
        for kind in 0..(1 + trick as usize) {
            for &sigma in spins {
                if n == 0 && sym == Symmetry::QSz {
                    let c = match (kind, &ops.f) {
                        (0, _) => &ops.x[sigma],
                        (_, Some(f)) => &f[sigma],
                        (_, None) => unreachable!("X_F only with the trick"),
                    };
                    for (l, r, x) in initial_op(space, c, &eig, &index, sigma, parts) {
                        jobs.push((kind, sigma, l, r));
                        initial.insert((kind, sigma, l, r), x);
                    }
                } else {
                    let kept = if kind == 0 {
                        &kept_d[sigma]
                    } else {
                        &kept_f[sigma]
                    };
                    for (l, r) in op_pairs(sym, &eig, &subs, &index, kept, sigma) {
                        jobs.push((kind, sigma, l, r));
                    }
                    // (Q, S): an operator given on shell 0's product blocks
                    let given = ops.reduced.as_ref().filter(|_| n == 0 && kind == 0);
                    for op in given.map_or(&[][..], |r| &r.shell0[..]) {
                        let (Some(&l), Some(&r)) = (index.get(&op.left), index.get(&op.right))
                        else {
                            continue;
                        };
                        let rotate = |m: &Mat<f64>| {
                            sandwich(eig[l].u.as_ref(), m.as_ref(), eig[r].u.as_ref())
                        };
                        let x = MatJet {
                            v: rotate(&op.value),
                            p: op.parts.iter().take(parts).map(rotate).collect(),
                        };
                        jobs.push((kind, sigma, l, r));
                        initial.insert((kind, sigma, l, r), x);
                    }
                }
            }
        }
        let compact = compact_index(&kept_blocks);
        let results = map_largest_first(
            &jobs,
            |&(_, _, l, r)| eig[l].dim() * eig[r].dim(),
            |&(kind, sigma, l, r)| {
                let o = match initial.get(&(kind, sigma, l, r)) {
                    Some(x) => x.clone(),
                    None => {
                        let kept = if kind == 0 {
                            &kept_d[sigma]
                        } else {
                            &kept_f[sigma]
                        };
                        let off_dd = skip_dd.then_some((kept_blocks[l], kept_blocks[r], m));
                        propagate(sym, &eig, &subs, kept, l, r, parts, off_dd)
                    }
                };
                let (kl, kr) = (kept_blocks[l], kept_blocks[r]);
                let kept_block = |w: &MatJet| match (compact[l], compact[r]) {
                    (Some(a), Some(b)) => Some(((a, b), w.sub(0..kl, 0..kr))),
                    _ => None,
                };
                let (fl, fr) = (block_frames[l].as_ref(), block_frames[r].as_ref());
                // the solver's frame (whose kept block the next shell is built on), then the
                // cluster frame (in which the poles are read), on the blocks that hold poles
                let (next, mut x) = match (fl, fr) {
                    (Some(fl), Some(fr)) => {
                        let off_dd = skip_dd.then_some((kl, kr));
                        let (sl, sr) = (KdGen { s: &fl.s }, KdGen { s: &fr.s });
                        let w = transform_off_dd(&o, &sl, &sr, 1.0, dirs, off_dd);
                        let gl = (&fl.kf.g[..], &fl.df.g[..]);
                        let gr = (&fr.kf.g[..], &fr.df.g[..]);
                        let x = cluster_transform(&w, gl, gr, (kl, kr), !skip_dd, dirs);
                        (kept_block(&w), x)
                    }
                    _ => (kept_block(&o), PoleJet::value(o.v, kl, kr)),
                };
                // (Q, S): the poles of one pair of multiplets stand for all their states; for a
                // fixed σ, Σ_{m m′} ⟨J_L m; ½ σ|J_R m′⟩² = d_{J_R}/2 (module notes), a factor
                // of the stored operator's square
                if sym == Symmetry::QS {
                    x.scale((0.5 * sym.degeneracy(eig[r].qn) as f64).sqrt());
                }
                (
                    StoredOp {
                        left: l,
                        right: r,
                        x,
                    },
                    next,
                )
            },
        );
        let mut d: [Vec<StoredOp>; 2] = [Vec::new(), Vec::new()];
        let mut f: [Vec<StoredOp>; 2] = [Vec::new(), Vec::new()];
        let mut next_d: [HashMap<(usize, usize), MatJet>; 2] = [HashMap::new(), HashMap::new()];
        let mut next_f: [HashMap<(usize, usize), MatJet>; 2] = [HashMap::new(), HashMap::new()];
        for (&(kind, sigma, _, _), (op, next)) in jobs.iter().zip(results) {
            let (ops, nexts) = if kind == 0 {
                (&mut d[sigma], &mut next_d[sigma])
            } else {
                (&mut f[sigma], &mut next_f[sigma])
            };
            ops.push(op);
            if let Some((key, x)) = next {
                nexts.insert(key, x);
            }
        }
        kept_d = next_d;
        kept_f = next_f;
        let kept_total = eig
            .iter()
            .zip(&kept_blocks)
            .map(|(eb, &k)| sym.degeneracy(eb.qn) * k)
            .sum();
        let blocks = eig
            .into_iter()
            .zip(&kept_blocks)
            .zip(block_frames)
            .map(|((eb, &kept), mut frame)| {
                if let Some(f) = frame.as_mut().filter(|_| skip_dd) {
                    // G_D acts on ρ^D only, which is 0 here
                    f.df.g = Vec::new();
                }
                StoredBlock {
                    deg: sym.degeneracy(eb.qn) as f64,
                    energies: eb.energies,
                    u: eb.u,
                    kept,
                    frame,
                }
            })
            .collect();
        let mut shell = StoredShell {
            omega: free_energy.omega,
            shift_step: shift_step.value,
            shift_step_parts: shift_step.parts,
            shift: 0.0,
            shift_parts: vec![0.0; parts],
            blocks,
            subs,
            d,
            f,
            kept_total,
            skip_dd,
            log_trace: Vec::new(),
        };
        shell.log_trace = log_trace_parts(&shell, t, dirs);
        shells.push(shell)?;
        on_shell();
    }
    if run.is_cancelled() {
        return Ok(None);
    }
    // C_N − C_{N_max} = −Σ_{M>N} (C_M − C_{M−1}): the reference shift cancels in every weight
    let (mut c, mut c_parts) = (0.0, vec![0.0; parts]);
    for sh in shells.shells.iter_mut().rev() {
        sh.shift = c;
        sh.shift_parts.clone_from(&c_parts);
        c -= sh.shift_step;
        for (a, b) in c_parts.iter_mut().zip(&sh.shift_step_parts) {
            *a -= b;
        }
    }
    // the skips were decided on a bound; now that Z is known, check them against the weights
    // themselves
    let (ln_mz, ln_z) = log_shell_weights(&shells.shells, t);
    shells.skips_hold = shells.shells.iter().enumerate().all(|(n, sh)| {
        !sh.skip_dd
            || sh
                .blocks
                .iter()
                .flat_map(|b| discarded_exponents(sh, b, t))
                .fold(f64::NEG_INFINITY, f64::max)
                + (ln_mz.len() - 1 - n) as f64 * 4f64.ln()
                - ln_z
                < -DD_CUT
    });
    Ok(Some(shells))
}

/// Which shells leave out their discarded–discarded sector ([`DD_CUT`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DdSkip {
    /// Those whose discarded states weigh less than e^{−DD_CUT} by the bound of
    /// [`discarded_negligible`] (checked against the weights once the forward pass is done).
    #[default]
    Auto,
    Never,
    /// Every shell but the last: the check then fails, so a caller's fallback can be tested.
    AllButLast,
}

/// A discarded state of a shell whose weight ρ_s = 4^{N_max−N} e^{−ℰ_s/T}/Z is below e^{−DD_CUT}
/// ≈ 1e-87 carries nothing: even times (ω_N/T)² ≤ 1e40 in a second derivative it stays below
/// 1e-47 of the spectrum. Such a shell's DD sector (ρ^D, the DD poles, the DD blocks of the
/// operators' parts) is left out; a shell far above T (most of a chain) then costs about half.
pub(crate) const DD_CUT: f64 = 200.0;

/// Whether the discarded states of a shell `above` shells before the last, whose lowest
/// discarded level lies `gap_over_t` = ω_N E_min/T above its ground state, weigh below
/// e^{−DD_CUT}. The bound takes Z ≥ 1 (the last shell's ground state, at the reference energy)
/// and C_N ≥ C_{N_max} (the ground-state energy does not rise along the chain: the product
/// space of shell N+1 holds shell N's ground state times an empty site). Both are checked
/// against the weights after the forward pass ([`Stored::skips_hold`]).
fn discarded_negligible(above: usize, gap_over_t: f64) -> bool {
    above as f64 * 4f64.ln() - gap_over_t < -DD_CUT
}

/// ln(4^{N_max−N} Z̃_N) of every shell, with Z̃_N = Tr_{D_N} e^{−ℰ/T} (E_ref = 0; it cancels in
/// w_N and ρ^D), and ln Z = ln Σ_N 4^{N_max−N} Z̃_N.
fn log_shell_weights(shells: &[StoredShell], t: f64) -> (Vec<f64>, f64) {
    let n_max = shells.len() - 1;
    let ln4 = 4f64.ln();
    let ln_mz: Vec<f64> = shells
        .iter()
        .enumerate()
        .map(|(n, sh)| {
            // a level of block j stands for d_j states (ln 1 = 0 in (Q, S_z): exact)
            let x: Vec<f64> = sh
                .blocks
                .iter()
                .flat_map(|b| {
                    let ln_deg = b.deg.ln();
                    discarded_exponents(sh, b, t)
                        .into_iter()
                        .map(move |x| x + ln_deg)
                })
                .collect();
            (n_max - n) as f64 * ln4 + log_sum_exp(x.iter().copied())
        })
        .collect();
    let ln_z = log_sum_exp(ln_mz.iter().copied());
    (ln_mz, ln_z)
}

/// ln Σ exp(x_i) without overflow (−∞ for an empty sum).
fn log_sum_exp(x: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = x.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + x.map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// Physical energies −ℰ/T of the discarded states of one block.
fn discarded_exponents(sh: &StoredShell, b: &StoredBlock, t: f64) -> Vec<f64> {
    b.energies[b.kept..]
        .iter()
        .map(|&e| -(sh.omega * e + sh.shift) / t)
        .collect()
}

/// The parts of ln Tr_{D_N} e^{−ω_N H̃_DD/T} of one shell (design note §2, "FDM weights"):
///   (ln t)^i  = −(ω/T) Σ_r p_r H̃^i_rr,
///   (ln t)^ij = −(ω/T) Σ_r p_r H̃^ij_rr + (ω/T)² Σ_c Σ_{r,q∈c} p_min exprel(−|x_r − x_q|/T)
///               H̃^i_rq H̃^j_qr − (ln t)^i (ln t)^j,
/// p_r = e^{−(x_r − x_min)/T} / Σ the Boltzmann weights of the discarded states, x = ω_N E.
fn log_trace_parts(sh: &StoredShell, t: f64, dirs: &Directions) -> Vec<f64> {
    let parts = dirs.parts();
    let m = dirs.first();
    let x_min = sh
        .blocks
        .iter()
        .filter_map(|b| b.energies.get(b.kept).copied())
        .fold(f64::INFINITY, f64::min)
        * sh.omega;
    let mut total = 0.0;
    let mut first = vec![0.0; parts];
    let mut second = vec![0.0; dirs.pairs().len()];
    for b in &sh.blocks {
        let Some(fr) = b.frame.as_ref() else { continue };
        let e = &b.energies[b.kept..];
        let p: Vec<f64> = e
            .iter()
            .map(|&x| (-(sh.omega * x - x_min) / t).exp())
            .collect();
        // every level stands for d_j states (1 in (Q, S_z): multiplying by it is exact)
        let p: Vec<f64> = p.into_iter().map(|x| b.deg * x).collect();
        total += p.iter().sum::<f64>();
        for (c, r) in fr.df.ranges.iter().enumerate() {
            for (ii, i) in r.clone().enumerate() {
                for x in 0..parts {
                    first[x] += p[i] * fr.df.h[x][c][(ii, ii)];
                }
            }
            for (q, &(a, bb)) in dirs.pairs().iter().enumerate() {
                let (ha, hb) = (&fr.df.h[a][c], &fr.df.h[bb][c]);
                for (ii, i) in r.clone().enumerate() {
                    for (kk, k) in r.clone().enumerate() {
                        let lo = if e[i] <= e[k] { i } else { k };
                        let z = -(sh.omega * (e[i] - e[k])).abs() / t;
                        second[q] += p[lo] * exprel(z) * ha[(ii, kk)] * hb[(kk, ii)];
                    }
                }
            }
        }
    }
    if total == 0.0 {
        return vec![0.0; parts];
    }
    let w = sh.omega / t;
    let mut out: Vec<f64> = first.iter().map(|f| -w * f / total).collect();
    for (q, &(a, b)) in dirs.pairs().iter().enumerate() {
        out[m + q] += w * w * second[q] / total - out[a] * out[b];
    }
    out
}

/// What the backward pass returns.
pub(crate) struct Backward<S> {
    /// Per spin: the sink of d's poles and, with the trick, of X_F's.
    pub sinks: [S; 2],
    pub sinks_f: Option<[S; 2]>,
    pub sums: [PoleSums; 2],
    /// w_N of every shell (Σ = 1) and their parts (per shell, per part).
    pub weights: Vec<f64>,
    pub weight_parts: Vec<Vec<f64>>,
    /// max_N |Tr R_{N−1} − Σ_{M≥N} w_M|, and the same for every part.
    pub trace_residual: f64,
    pub trace_residual_parts: Vec<f64>,
    /// The density matrix on shell 0, per block in its eigenbasis (value only), and those
    /// eigenbases (shell 0 is gone from the store once the sweep is done).
    pub shell0_rho: Vec<Mat<f64>>,
    pub shell0_u: Vec<Mat<f64>>,
    /// Tr ρ{X_↑, X_↑†} from the stored operator on shell 0 (with the pole weights' factors, so
    /// in (Q, S) blocks the multiplets' d_R/2): the sum rule's right-hand side for the (Q, S)
    /// T-matrix.
    pub shell0_anticommutator: f64,
}

/// Jobs of one chunk of pole work are run in parallel and merged in their fixed order: the
/// result does not depend on the number of threads, and at most this many partial sinks exist.
const POLE_CHUNK: usize = 8;

/// The odd parts under the spin flip (one field direction, or an odd pair), or `None` when the
/// run is not spin-flip symmetric: then ↓ is computed like ↑.
pub(crate) fn mirror_parts(run: &Run, dirs: &Directions) -> Option<Vec<bool>> {
    if run.symmetry() == Symmetry::QS {
        // no field and no field direction in (Q, S) (refused by the run): A_↓ = A_↑, part by
        // part
        return Some(vec![false; dirs.parts()]);
    }
    if !run.spin_symmetric() {
        return None;
    }
    let odd: Vec<bool> = dirs.vars().iter().map(|v| v.spin_flip_odd()).collect();
    let mut parts = odd.clone();
    parts.extend(dirs.pairs().iter().map(|&(i, j)| odd[i] != odd[j]));
    Some(parts)
}

/// What a caller watches a pass by: its cancel flag, and a call after every shell (progress).
#[derive(Clone, Copy)]
pub(crate) struct Watch<'a> {
    pub cancel: &'a AtomicBool,
    pub on_shell: &'a (dyn Fn() + Sync),
}

/// The backward pass: weights, density matrices, poles into copies of `template` (`None` if
/// cancelled). With `mirror` (a spin-flip symmetric run, [`mirror_parts`]) only ↑ is computed
/// (the forward pass stored no ↓ operators): ↓ is its mirror image, equal except for the parts
/// odd in the field, which change sign (A_↓(ω; h) = A_↑(ω; −h)).
pub(crate) fn backward<S: PoleSink + Sync + Clone>(
    stored: &mut Stored,
    t: f64,
    dirs: &Directions,
    template: &S,
    trick: bool,
    mirror: Option<&[bool]>,
    watch: Watch<'_>,
) -> io::Result<Option<Backward<S>>> {
    let Watch { cancel, on_shell } = watch;
    let parts = dirs.parts();
    let m = dirs.first();
    let shells = &stored.shells;
    let n_max = shells.len() - 1;
    let ln4 = 4f64.ln();
    let (ln_mz, mut ln_z) = log_shell_weights(shells, t);
    let mut weights: Vec<f64> = ln_mz.iter().map(|&l| (l - ln_z).exp()).collect();
    // The exponents are of order |ℰ|/T (10³ and more), so each w_N carries a relative round-off
    // of ~|ℰ|/T·ε and Σ w_N misses 1 by ~1e-13. Folding the measured sum into Z makes the
    // normalization exact to the last bits (it is a multiplicative correction of 1 + O(1e-13)).
    let total: f64 = weights.iter().sum();
    ln_z += total.ln();
    weights.iter_mut().for_each(|w| *w /= total);

    // the parts: ℓ_N = ln 4^{N_max−N} − C_N/T + ln t_N, ln Z = ln Σ e^{ℓ_N}, w_N = e^{ℓ_N − ln Z},
    // and the prefactor of ρ^D_N, L_N = ln 4^{N_max−N} − ln Z − C_N/T
    let ell: Vec<Vec<f64>> = shells
        .iter()
        .map(|sh| {
            let lt = &sh.log_trace;
            (0..parts).map(|x| lt[x] - sh.shift_parts[x] / t).collect()
        })
        .collect();
    let mut lnz_parts = vec![0.0; parts];
    for (w, l) in weights.iter().zip(&ell) {
        for x in 0..m {
            lnz_parts[x] += w * l[x];
        }
        for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
            lnz_parts[m + q] += w * (l[m + q] + l[i] * l[j]);
        }
    }
    for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
        lnz_parts[m + q] -= lnz_parts[i] * lnz_parts[j];
    }
    let weight_parts: Vec<Vec<f64>> = weights
        .iter()
        .zip(&ell)
        .map(|(&w, l)| {
            let d: Vec<f64> = (0..parts).map(|x| l[x] - lnz_parts[x]).collect();
            let mut out: Vec<f64> = (0..m).map(|x| w * d[x]).collect();
            for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
                out.push(w * (d[m + q] + d[i] * d[j]));
            }
            out
        })
        .collect();

    let mut sinks = [template.empty_like(), template.empty_like()];
    let mut sinks_f = trick.then(|| [template.empty_like(), template.empty_like()]);
    let mut sums = [PoleSums::new(parts), PoleSums::new(parts)];
    let mut trace_residual = 0.0f64;
    let mut trace_residual_parts = vec![0.0f64; parts];
    // R_N per block of the current shell (k_b × k_b, solver's frame); empty at the last shell
    let mut r: Vec<MatJet> = shells[n_max]
        .blocks
        .iter()
        .map(|b| MatJet::zeros(b.kept, b.kept, parts))
        .collect();
    let none: Vec<Mat<f64>> = (0..parts).map(|_| Mat::zeros(0, 0)).collect();
    let empty = BlockClusters::default();
    let mut shell0_rho: Vec<Mat<f64>> = Vec::new();
    let mut shell0_u: Vec<Mat<f64>> = Vec::new();
    let mut shell0_anticommutator = 0.0;
    for n in (0..=n_max).rev() {
        if cancel.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // the shells are taken out last-first (from disk if spilled) and freed when done
        let sh = stored.pop()?.expect("one stored shell per N");
        let sh = &sh;
        let ln_pref = (n_max - n) as f64 * ln4 - ln_z;
        let l_parts: Vec<f64> = (0..parts)
            .map(|x| -lnz_parts[x] - sh.shift_parts[x] / t)
            .collect();
        // the density matrix of every block in the cluster frame
        let indices: Vec<usize> = (0..sh.blocks.len()).collect();
        let rho: Vec<BlockRho> = map_largest_first(
            &indices,
            |&b| sh.blocks[b].energies.len(),
            |&b| {
                let blk = &sh.blocks[b];
                // a shell far above T: its discarded states weigh below e^{−DD_CUT}, exactly 0
                let d: Vec<f64> = if sh.skip_dd {
                    vec![0.0; blk.energies.len() - blk.kept]
                } else {
                    discarded_exponents(sh, blk, t)
                        .into_iter()
                        .map(|x| (x + ln_pref).exp())
                        .collect()
                };
                match blk.frame.as_ref() {
                    None => BlockRho::new(r[b].clone(), d, Vec::new(), Vec::new()),
                    Some(fr) => {
                        let x: Vec<f64> = blk.energies[blk.kept..]
                            .iter()
                            .map(|&e| sh.omega * e)
                            .collect();
                        let d_parts = if sh.skip_dd {
                            // ρ^D = 0 with all its parts (its G_D is gone with it)
                            (0..dirs.parts())
                                .map(|_| {
                                    fr.df
                                        .ranges
                                        .iter()
                                        .map(|c| Mat::zeros(c.len(), c.len()))
                                        .collect()
                                })
                                .collect()
                        } else {
                            discarded_parts(&d, &x, t, sh.omega, &fr.df, &l_parts, dirs)
                        };
                        let g = BlockGen {
                            gk: &fr.kf.g,
                            gd: &none,
                        };
                        BlockRho::new(
                            transform_symmetric(&r[b], &g, 1.0, false, dirs),
                            d,
                            fr.df.ranges.clone(),
                            d_parts,
                        )
                    }
                }
            },
        );

        // the poles: every operator of both spins, in chunks merged in a fixed order
        let jobs: Vec<(usize, usize)> = SPINS
            .iter()
            .flat_map(|&s| (0..sh.d[s].len()).map(move |i| (s, i)))
            .collect();
        for chunk in jobs.chunks(POLE_CHUNK) {
            let Some(partial) = map_largest_first_until(
                chunk,
                |&(s, i)| {
                    let op = &sh.d[s][i];
                    sh.blocks[op.left].energies.len() * sh.blocks[op.right].energies.len()
                },
                |&(s, i)| {
                    let op = &sh.d[s][i];
                    let f = sh.f[s]
                        .iter()
                        .find(|o| o.left == op.left && o.right == op.right)
                        .filter(|_| trick);
                    let view = |b: usize| BlockView {
                        energies: &sh.blocks[b].energies,
                        kept: sh.blocks[b].kept,
                        rho: &rho[b],
                        clusters: sh.blocks[b].frame.as_ref().map_or(&empty, |f| &f.clusters),
                    };
                    let mut sink = template.empty_like();
                    let mut sink_f = f.map(|_| template.empty_like());
                    let mut s_sums = PoleSums::new(parts);
                    // a shell far above T stores no DD parts; ρ^D = 0 makes its DD poles vanish
                    debug_assert!(op.x.dd.is_some() || op.x.kd.is_empty() || sh.skip_dd);
                    let (x, xf) = (op.x.to_jet(), f.map(|o| o.x.to_jet()));
                    pair_poles(
                        sh.omega,
                        t,
                        &view(op.left),
                        &view(op.right),
                        &x,
                        xf.as_ref(),
                        dirs,
                        &mut sink,
                        sink_f.as_mut(),
                        &mut s_sums,
                    );
                    Some((sink, sink_f, s_sums))
                },
                Cancel::new(Some(cancel)),
            ) else {
                return Ok(None);
            };
            for (&(s, _), (sink, sink_f, s_sums)) in chunk.iter().zip(partial) {
                sinks[s].merge(&sink, 1.0);
                if let (Some(all), Some(one)) = (sinks_f.as_mut(), sink_f.as_ref()) {
                    all[s].merge(one, 1.0);
                }
                sums[s].merge(&s_sums, 1.0);
            }
        }
        on_shell();
        if n == 0 {
            // ρ on shell 0 in each block's eigenbasis (R_0 ⊕ ρ^D_0): local expectation values
            shell0_u = sh.blocks.iter().map(|b| b.u.clone()).collect();
            shell0_rho = rho
                .iter()
                .map(|b| {
                    let (k, d) = (b.r.v.nrows(), b.d.len());
                    let mut m = Mat::<f64>::zeros(k + d, k + d);
                    m.as_mut().submatrix_mut(0, 0, k, k).copy_from(&b.r.v);
                    for (i, &x) in b.d.iter().enumerate() {
                        m[(k + i, k + i)] = x;
                    }
                    m
                })
                .collect();
            // Tr ρ_L X Xᵀ + Tr ρ_R Xᵀ X over the pairs of ↑ (ρ per block in its eigenbasis,
            // which is the value of X's frame)
            for op in &sh.d[0] {
                let x = &op.x.v;
                let xxt = mul(x.as_ref(), x.transpose());
                let xtx = mul(x.transpose(), x.as_ref());
                let tr = |r: &Mat<f64>, m: &Mat<f64>| {
                    (0..r.nrows())
                        .flat_map(|i| (0..r.ncols()).map(move |j| (i, j)))
                        .map(|(i, j)| r[(i, j)] * m[(j, i)])
                        .sum::<f64>()
                };
                shell0_anticommutator +=
                    tr(&shell0_rho[op.left], &xxt) + tr(&shell0_rho[op.right], &xtx);
            }
            break;
        }
        // the sweep to shell N−1: R_{N−1} = Σ_s U_s W (R_N ⊕ ρ^D_N) Wᵀ U_sᵀ
        let prev = &stored.shells[n - 1];
        let kept_prev: Vec<usize> = prev
            .blocks
            .iter()
            .map(|b| b.kept)
            .filter(|&k| k > 0)
            .collect();
        // the partial trace over site N of a multiplet J of product (A, s) gives each state of
        // A the weight d_J/d_A (Σ_{M μ} ⟨A m; s μ|J M⟩⟨A m′; s μ|J M⟩ = δ_mm′ d_J/d_A); 1 in
        // (Q, S_z)
        let deg_prev: Vec<f64> = prev
            .blocks
            .iter()
            .filter(|b| b.kept > 0)
            .map(|b| b.deg)
            .collect();
        // the parts of ρ in the eigenbasis of each block (its value is R ⊕ ρ^D), and of every
        // block its shares U_s ρ^x U_sᵀ of R^x_{N−1}, computed in parallel
        #[allow(clippy::type_complexity)]
        let shares: Vec<Option<Vec<(usize, Vec<Mat<f64>>)>>> = if parts == 0 {
            sh.blocks.iter().map(|_| None).collect()
        } else {
            map_largest_first(
                &indices,
                |&b| sh.blocks[b].energies.len(),
                |&b| {
                    let blk = &sh.blocks[b];
                    let fr = blk.frame.as_ref()?;
                    let (k, nb) = (blk.kept, blk.energies.len());
                    let d = nb - k;
                    if sh.skip_dd || rho[b].discarded_is_zero() {
                        // discarded states far above T: only the kept columns of U_s e^S enter
                        return Some(kept_shares(
                            blk,
                            &fr.s,
                            &r[b],
                            &sh.subs[b],
                            &kept_prev,
                            &deg_prev,
                            dirs,
                        ));
                    }
                    // ρ̃^D (cluster frame) as a dense jet, back to the solver's frame
                    let mut dense = MatJet::zeros(d, d, parts);
                    for i in 0..d {
                        dense.v[(i, i)] = rho[b].d[i];
                    }
                    for x in 0..parts {
                        for (rg, blkm) in rho[b].d_ranges.iter().zip(&rho[b].d_parts[x]) {
                            for (jj, j) in rg.clone().enumerate() {
                                for (ii, i) in rg.clone().enumerate() {
                                    dense.p[x][(i, j)] = blkm[(ii, jj)];
                                }
                            }
                        }
                    }
                    let gd = BlockGen {
                        gk: &none,
                        gd: &fr.df.g,
                    };
                    // discarded states far above T carry nothing, nor do their parts
                    let dw = transform_symmetric(&dense, &gd, -1.0, true, dirs);
                    let mut full = MatJet::zeros(nb, nb, parts);
                    for x in 0..=parts {
                        let (dst, a, bm) = if x == 0 {
                            (&mut full.v, &r[b].v, &dw.v)
                        } else {
                            (&mut full.p[x - 1], &r[b].p[x - 1], &dw.p[x - 1])
                        };
                        dst.as_mut().submatrix_mut(0, 0, k, k).copy_from(a);
                        dst.as_mut().submatrix_mut(k, k, d, d).copy_from(bm);
                    }
                    let kd = KdGen { s: &fr.s };
                    let ru = transform_symmetric(&full, &kd, -1.0, false, dirs);
                    // its share of R^x_{N−1}: U_s ρ^x U_sᵀ for every site state s
                    let shares = sh.subs[b]
                        .iter()
                        .flatten()
                        .map(|&(kc, off)| {
                            let v = blk.u.as_ref().submatrix(off, 0, kept_prev[kc], nb);
                            let w = blk.deg / deg_prev[kc];
                            // ρ^x is symmetric: half of the larger product
                            let mats =
                                ru.p.iter()
                                    .map(|m| {
                                        let s = sym_congruence(v, m.as_ref());
                                        if w == 1.0 {
                                            s
                                        } else {
                                            Mat::from_fn(s.nrows(), s.ncols(), |i, j| w * s[(i, j)])
                                        }
                                    })
                                    .collect::<Vec<Mat<f64>>>();
                            (kc, mats)
                        })
                        .collect::<Vec<_>>();
                    Some(shares)
                },
            )
        };
        let mut r_prev: Vec<MatJet> = kept_prev
            .iter()
            .map(|&k| MatJet::zeros(k, k, parts))
            .collect();
        for (p, b) in sh.blocks.iter().enumerate() {
            for &(kc, off) in sh.subs[p].iter().flatten() {
                let mm = kept_prev[kc];
                let nb = b.energies.len();
                let w = b.deg / deg_prev[kc];
                let v = b.u.as_ref().submatrix(off, 0, mm, nb);
                let (vk, vd) = (v.subcols(0, b.kept), v.subcols(b.kept, nb - b.kept));
                let t1 = mul(vk, r[p].v.as_ref());
                gemm(r_prev[kc].v.as_mut(), true, t1.as_ref(), vk.transpose(), w);
                let rd = &rho[p].d;
                let t2 = Mat::<f64>::from_fn(mm, nb - b.kept, |i, j| vd[(i, j)] * rd[j]);
                gemm(r_prev[kc].v.as_mut(), true, t2.as_ref(), vd.transpose(), w);
            }
            // the parts' shares, computed in parallel above, added in block order
            for (kc, mats) in shares[p].iter().flatten() {
                for (dst, m) in r_prev[*kc].p.iter_mut().zip(mats) {
                    *dst += m;
                }
            }
        }
        let expected: f64 = weights[n..].iter().sum();
        let trace = |pick: &dyn Fn(&MatJet) -> &Mat<f64>| -> f64 {
            r_prev
                .iter()
                .zip(&deg_prev)
                .map(|(j, &deg)| {
                    let mm = pick(j);
                    deg * (0..mm.nrows()).map(|i| mm[(i, i)]).sum::<f64>()
                })
                .sum()
        };
        trace_residual = trace_residual.max((trace(&|j| &j.v) - expected).abs());
        for x in 0..parts {
            let expected: f64 = weight_parts[n..].iter().map(|w| w[x]).sum();
            let got = trace(&|j| &j.p[x]);
            trace_residual_parts[x] = trace_residual_parts[x].max((got - expected).abs());
        }
        // back to block indexing of shell N−1 (blocks with nothing kept get 0×0)
        let mut it = r_prev.into_iter();
        r = prev
            .blocks
            .iter()
            .map(|b| {
                if b.kept > 0 {
                    it.next().expect("one R per kept block")
                } else {
                    MatJet::zeros(0, 0, parts)
                }
            })
            .collect();
    }
    if let Some(odd) = mirror {
        let [up, _] = &sinks;
        let mut down = up.clone();
        down.negate_parts(odd);
        sinks[1] = down;
        if let Some(f) = sinks_f.as_mut() {
            let mut down = f[0].clone();
            down.negate_parts(odd);
            f[1] = down;
        }
        let mut down = sums[0].clone();
        down.negate_parts(odd);
        sums[1] = down;
    }
    Ok(Some(Backward {
        sinks,
        sinks_f,
        sums,
        weights,
        weight_parts,
        trace_residual,
        trace_residual_parts,
        shell0_rho,
        shell0_u,
        shell0_anticommutator,
    }))
}

/// The shares U_s ρ^x U_sᵀ of one block in R^x_{N−1} (per site state s: the kept block `kc` of
/// shell N−1 it adds to, and the parts) when its discarded states carry no weight, ρ = e^S (R ⊕ 0)
/// e^{−S} (R in the solver's frame, S its K–D generator `s`). Then U_s ρ U_sᵀ = Ṽ R Ṽᵀ with Ṽ
/// the kept columns of U_s e^S, whose parts are (V = U_s = [V_K V_D]; e^S's kept columns are
/// I_K − s^iᵀ on D at first order, −s^{ij}ᵀ on D and −½(s^i s^jᵀ + s^j s^iᵀ) on K at second):
///
/// ```text
/// Ṽ = V_K,   Ṽ^i = −V_D s^iᵀ,   Ṽ^ij = −V_D s^ijᵀ − ½ V_K (s^i s^jᵀ + s^j s^iᵀ)
/// ```
///
/// products of k columns instead of the whole n×n frame change (k ≈ n/4): the same numbers as
/// the general path up to round-off.
fn kept_shares(
    blk: &StoredBlock,
    s: &[Mat<f64>],
    r: &MatJet,
    subs: &SubBlocks,
    kept_prev: &[usize],
    deg_prev: &[f64],
    dirs: &Directions,
) -> Vec<(usize, Vec<Mat<f64>>)> {
    let (k, nb) = (blk.kept, blk.energies.len());
    let d = nb - k;
    let m = dirs.first();
    let parts = dirs.parts();
    // ½(s^i s^jᵀ + s^j s^iᵀ) per pair, shared by every site state
    let ss: Vec<Mat<f64>> = dirs
        .pairs()
        .iter()
        .map(|&(i, j)| {
            let mut x = Mat::<f64>::zeros(k, k);
            if d > 0 {
                gemm(x.as_mut(), false, s[i].as_ref(), s[j].transpose(), 0.5);
                gemm(x.as_mut(), true, s[j].as_ref(), s[i].transpose(), 0.5);
            }
            x
        })
        .collect();
    subs.iter()
        .flatten()
        .map(|&(kc, off)| {
            let mm = kept_prev[kc];
            let v = blk.u.as_ref().submatrix(off, 0, mm, nb);
            let (vk, vd) = (v.subcols(0, k), v.subcols(k, d));
            let mut vt = MatJet::zeros(mm, k, parts);
            vt.v.copy_from(vk);
            for x in 0..parts {
                if d > 0 {
                    gemm(vt.p[x].as_mut(), false, vd, s[x].transpose(), -1.0);
                }
                if x >= m {
                    gemm(vt.p[x].as_mut(), true, vk, ss[x - m].as_ref(), -1.0);
                }
            }
            let mut t = MatJet::zeros(mm, k, parts);
            mul_add(&mut t, (0, 0), &vt, r, 1.0, dirs, true);
            let vtt = MatJet {
                v: vt.v.transpose().to_owned(),
                p: vt.p.iter().map(|x| x.transpose().to_owned()).collect(),
            };
            let mut y = MatJet::zeros(mm, mm, parts);
            mul_add(
                &mut y,
                (0, 0),
                &t,
                &vtt,
                blk.deg / deg_prev[kc],
                dirs,
                false,
            );
            (kc, y.p)
        })
        .collect()
}

/// ⟨X⟩ = Tr ρ X for an operator `x` of the local space of shell 0 that conserves (Q, S_z), from
/// the full density matrix reduced to shell 0 ([`Backward::shell0_rho`] in the eigenbases [`Backward::shell0_u`]): independent of the
/// poles, it is the right-hand side of a sum rule Σ W = ⟨{X, X†}⟩.
pub(crate) fn local_expectation(
    shell0_u: &[Mat<f64>],
    rho: &[Mat<f64>],
    space: &LocalSpace,
    x: &nalgebra::DMatrix<f64>,
) -> f64 {
    let (groups, _) = group_by_qn(space);
    // shell 0's blocks are the local space's (Q, S_z) groups in the same order
    groups
        .values()
        .zip(shell0_u)
        .zip(rho)
        .map(|((states, u), r)| {
            assert_eq!(
                states.len(),
                u.nrows(),
                "shell 0's blocks are the local groups"
            );
            let local =
                Mat::<f64>::from_fn(states.len(), states.len(), |i, j| x[(states[i], states[j])]);
            let xe = sandwich(u.as_ref(), local.as_ref(), u.as_ref());
            (0..r.nrows())
                .flat_map(|i| (0..r.ncols()).map(move |j| (i, j)))
                .map(|(i, j)| r[(i, j)] * xe[(j, i)])
                .sum::<f64>()
        })
        .sum()
}
