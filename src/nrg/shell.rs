//! The Hilbert space of one shell, before and after diagonalization.
//!
//! - [`ProductShell`]: H_N in the product basis (kept states of shell N−1) ⊗ (site N), block by
//!   block in (Q, S_z), with its derivative parts, and f†_Nσ of the newest site, which is a
//!   signed identity between sub-blocks and so is stored as a list of [`Piece`]s.
//! - [`KeptShell`]: the kept eigenstates of shell N after truncation and decoupling: their
//!   energies, the derivative parts of H in that basis, and f†_Nσ between kept blocks with its
//!   derivative parts. This is all the next shell needs.
//!
//! Units: every matrix is rescaled by the shell's ω_N.
//!
//! This module builds (Q, S_z) shells; [`crate::su2`] builds the (Q, S) ones into the same types
//! (a basis vector is then a multiplet and f† a reduced matrix), so that everything downstream
//! is shared.

use crate::jet::Directions;
use crate::model::{ImpurityModel, LocalSpace, SITE0, SiteZero, Term};
use crate::parallel::{Cancel, map_largest_first_until};
use crate::symmetry::{
    Qn, SITE_STATES, SPINS, Symmetry, creation_qn, fermion_sign, site_creation, site_qn,
};
use faer::Mat;
use num_dual::Dual2DVec64;
use std::collections::BTreeMap;

/// One (Q, S_z) block of H in the product basis.
pub struct ProductBlock {
    pub qn: Qn,
    /// Real part of H.
    pub h: Mat<f64>,
    /// Derivative parts of H, in the order of [`Directions`].
    pub dh: Vec<Mat<f64>>,
}

impl ProductBlock {
    pub fn dim(&self) -> usize {
        self.h.nrows()
    }
}

/// `sign` times an identity of size `len`, placed at rows `row_l..` of the left block and
/// columns `row_r..` of the right block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    pub row_l: usize,
    pub row_r: usize,
    pub len: usize,
    pub sign: f64,
}

/// f†_σ of the newest site between two product blocks (left = right + one σ electron).
pub struct ProductOp {
    pub sigma: usize,
    pub left: usize,
    pub right: usize,
    pub pieces: Vec<Piece>,
}

/// H_N in the product basis, ready to be diagonalized.
pub struct ProductShell {
    pub blocks: Vec<ProductBlock>,
    /// f†_Nσ of the newest site.
    pub fdag: Vec<ProductOp>,
    /// Fermionic orbitals so far (impurity included): fixes the Jordan–Wigner signs.
    pub orbitals: usize,
    /// Per block: for each site state s, the kept block of the previous shell it pairs with and
    /// the row offset of that sub-block (empty at shell 0, which has no previous shell). Only
    /// the spectral function reads it: its backward sweep and the impurity operators need to
    /// know which rows of a product block belong to which (kept state, site state). In (Q, S)
    /// shells the slots are the four product types of `su2` instead of site states.
    pub subs: Vec<SubBlocks>,
    pub symmetry: Symmetry,
}

impl ProductShell {
    /// Total number of states (multiplets count 2S+1 each).
    pub fn states(&self) -> usize {
        self.blocks
            .iter()
            .map(|b| b.dim() * self.symmetry.degeneracy(b.qn))
            .sum()
    }
}

/// One block of kept eigenstates.
pub struct KeptBlock {
    pub qn: Qn,
    /// Real part of H: diagonal, the kept eigenvalues.
    pub energies: Vec<f64>,
    /// Derivative parts of H in the kept basis (dense).
    pub dh: Vec<Mat<f64>>,
}

/// f†_Nσ between kept blocks, with derivative parts.
pub struct KeptOp {
    pub sigma: usize,
    pub left: usize,
    pub right: usize,
    pub value: Mat<f64>,
    pub parts: Vec<Mat<f64>>,
}

/// What survives shell N: the kept space and the operator that couples it to site N+1.
pub struct KeptShell {
    pub blocks: Vec<KeptBlock>,
    pub fdag: Vec<KeptOp>,
    pub orbitals: usize,
    pub symmetry: Symmetry,
}

/// Shell 0 (impurity + site 0) from the model.
///
/// `x` are the model's variables seeded for differentiation; `dirs` picks which of their
/// derivatives become matrix parts (`var_index[i]` is the model index of direction i).
/// `onsite0` and `h_total` are the chain's on-site energy of site 0 and the total field,
/// `omega0` the shell scale.
pub fn initial_shell(
    model: &dyn ImpurityModel,
    dirs: &Directions,
    var_index: &[usize],
    site0: SiteZero,
    onsite0: f64,
    omega0: f64,
) -> ProductShell {
    let space = model.space();
    let x = seeded_variables(model);
    let terms = model.hamiltonian(&space, &x, site0);
    local_shell(
        &space,
        terms,
        dirs,
        var_index,
        site0.h_total,
        onsite0,
        omega0,
    )
}

/// Shell 0 of the bare chain: site 0 alone. (The impurity orbital of the local space is kept
/// empty, so charges and fermionic signs count exactly as in the impurity run.)
pub fn bare_site_zero(h_total: f64, onsite0: f64, omega0: f64) -> ProductShell {
    let space = LocalSpace::restricted(2, |occ| occ[0] == 0);
    let none = Directions::default();
    local_shell(&space, Vec::new(), &none, &[], h_total, onsite0, omega0)
}

/// Shell 0 from the local space and the model's terms; the chain's own part of site 0 (on-site
/// energy, total field) is added here.
fn local_shell(
    space: &LocalSpace,
    mut terms: Vec<Term>,
    dirs: &Directions,
    var_index: &[usize],
    h_total: f64,
    onsite0: f64,
    omega0: f64,
) -> ProductShell {
    let constant = |c: f64| Dual2DVec64::from_re(c);
    terms.push(Term {
        coef: constant(onsite0),
        op: space.occupation(SITE0),
    });
    terms.push(Term {
        coef: constant(-h_total),
        op: space.sz(SITE0),
    });

    let part_coef = |c: &Dual2DVec64, part: usize| part_coefficient(c, part, dirs, var_index);

    let (groups, position) = group_by_qn(space);
    let blocks = groups
        .iter()
        .map(|(&qn, states)| {
            let dim = states.len();
            let assemble = |coef: &dyn Fn(&Dual2DVec64) -> f64| {
                let mut m = Mat::<f64>::zeros(dim, dim);
                for t in &terms {
                    let c = coef(&t.coef) / omega0;
                    if c == 0.0 {
                        continue;
                    }
                    for (a, &sa) in states.iter().enumerate() {
                        for (b, &sb) in states.iter().enumerate() {
                            m[(a, b)] += c * t.op[(sa, sb)];
                        }
                    }
                }
                m
            };
            ProductBlock {
                qn,
                h: assemble(&|c| c.re),
                dh: (0..dirs.parts())
                    .map(|p| assemble(&|c| part_coef(c, p)))
                    .collect(),
            }
        })
        .collect();
    check_block_diagonal(space, &terms);

    let block_index: BTreeMap<Qn, usize> =
        groups.keys().enumerate().map(|(i, &q)| (q, i)).collect();
    let mut fdag = Vec::new();
    for sigma in SPINS {
        let op = space.cdag(SITE0, sigma);
        let mut by_pair: BTreeMap<(usize, usize), Vec<Piece>> = BTreeMap::new();
        for i in 0..space.dim() {
            for j in 0..space.dim() {
                if op[(i, j)] != 0.0 {
                    let (bl, rl) = position[i];
                    let (br, rr) = position[j];
                    by_pair
                        .entry((block_index[&bl], block_index[&br]))
                        .or_default()
                        .push(Piece {
                            row_l: rl,
                            row_r: rr,
                            len: 1,
                            sign: op[(i, j)],
                        });
                }
            }
        }
        for ((left, right), pieces) in by_pair {
            fdag.push(ProductOp {
                sigma,
                left,
                right,
                pieces,
            });
        }
    }
    ProductShell {
        blocks,
        fdag,
        orbitals: space.orbitals(),
        subs: Vec::new(),
        symmetry: Symmetry::QSz,
    }
}

/// The coefficient of derivative part `part` of `dirs` in a model coefficient `c`: ∂_i c or
/// ∂_i∂_j c (`var_index[i]` is the model variable of direction i).
pub(crate) fn part_coefficient(
    c: &Dual2DVec64,
    part: usize,
    dirs: &Directions,
    var_index: &[usize],
) -> f64 {
    if part < dirs.first() {
        c.v1.0.as_ref().map_or(0.0, |g| g[var_index[part]])
    } else {
        let (i, j) = dirs.pairs()[part - dirs.first()];
        c.v2.0
            .as_ref()
            .map_or(0.0, |h| h[(var_index[i], var_index[j])])
    }
}

/// The model's variables as num-dual numbers seeded for first and second derivatives.
pub(crate) fn seeded_variables(model: &dyn ImpurityModel) -> Vec<Dual2DVec64> {
    let values = model.variables();
    let nvars = values.len();
    values
        .iter()
        .enumerate()
        .map(|(i, &(_, v))| Dual2DVec64::from_re(v).derivative(nvars, i))
        .collect()
}

/// Basis states grouped by quantum numbers, and each state's (block, row).
#[allow(clippy::type_complexity)]
pub(crate) fn group_by_qn(space: &LocalSpace) -> (BTreeMap<Qn, Vec<usize>>, Vec<(Qn, usize)>) {
    let mut groups: BTreeMap<Qn, Vec<usize>> = BTreeMap::new();
    let mut position = Vec::with_capacity(space.dim());
    for i in 0..space.dim() {
        let g = groups.entry(space.qn(i)).or_default();
        position.push((space.qn(i), g.len()));
        g.push(i);
    }
    (groups, position)
}

/// A model term that mixes quantum numbers would silently be dropped by the block assembly.
fn check_block_diagonal(space: &LocalSpace, terms: &[Term]) {
    for t in terms {
        for i in 0..space.dim() {
            for j in 0..space.dim() {
                assert!(
                    t.op[(i, j)] == 0.0 || space.qn(i) == space.qn(j),
                    "model term does not conserve (Q, S_z)"
                );
            }
        }
    }
}

/// Scalars that define the step from shell N to N+1 (rescaled by ω_{N+1}).
#[derive(Debug, Clone, Copy)]
pub struct SiteAddition {
    /// ω_N/ω_{N+1} (= √Λ): rescales the old Hamiltonian.
    pub scale: f64,
    /// t_N/ω_{N+1}: hopping between the last and the new site.
    pub hopping: f64,
    /// ε_{N+1}/ω_{N+1}.
    pub onsite: f64,
    /// h_tot/ω_{N+1}: the total field on the new site.
    pub field: f64,
}

/// Add site N+1 to the kept space of shell N:
/// H_{N+1} = scale·H_N + hopping·Σ_σ (f†_Nσ f_{N+1,σ} + h.c.) + onsite·n_{N+1} − field·S_z,{N+1}.
/// `None` if cancelled (checked between blocks and between the derivative parts of a block).
pub fn add_site(
    kept: &KeptShell,
    step: SiteAddition,
    dirs: &Directions,
    cancel: Cancel<'_>,
) -> Option<ProductShell> {
    let kept_index: BTreeMap<Qn, usize> = kept
        .blocks
        .iter()
        .enumerate()
        .map(|(i, b)| (b.qn, i))
        .collect();
    // new blocks: sub-block s of block qn holds kept block qn − site_qn(s)
    let mut layout: BTreeMap<Qn, SubBlocks> = BTreeMap::new();
    for b in &kept.blocks {
        for s in 0..SITE_STATES {
            layout
                .entry(b.qn.plus(site_qn(s)))
                .or_insert([None; SITE_STATES]);
        }
    }
    let mut dims = BTreeMap::new();
    for (qn, subs) in layout.iter_mut() {
        let mut offset = 0;
        for (s, sub) in subs.iter_mut().enumerate() {
            if let Some(&k) = kept_index.get(&qn.minus(site_qn(s))) {
                *sub = Some((k, offset));
                offset += kept.blocks[k].energies.len();
            }
        }
        dims.insert(*qn, offset);
    }
    let new_index: BTreeMap<Qn, usize> = layout.keys().enumerate().map(|(i, &q)| (q, i)).collect();

    // hopping: ⟨β′ s|f†_Nσ f_{N+1,σ}|β s′⟩ = ⟨β′|f†_Nσ|β⟩ (−1)^{n_β} ⟨s|c_σ|s′⟩, plus h.c.;
    // collected per new block first so that the blocks can be assembled in parallel
    let mut hops: Vec<Vec<Hop>> = vec![Vec::new(); layout.len()];
    for op in &kept.fdag {
        let left_qn = kept.blocks[op.left].qn; // β′
        let right_qn = kept.blocks[op.right].qn; // β
        let jw = fermion_sign(right_qn.q, kept.orbitals);
        for (s_dag, s_from, sign) in site_creation(op.sigma) {
            // c_σ|s_dag⟩ = sign |s_from⟩: the block is β′ + s_from = β + s_dag
            let qn = left_qn.plus(site_qn(s_from));
            debug_assert_eq!(qn, right_qn.plus(site_qn(s_dag)));
            let subs = layout[&qn];
            let (_, row) = subs[s_from].expect("sub-block of β′");
            let (_, col) = subs[s_dag].expect("sub-block of β");
            hops[new_index[&qn]].push((op, row, col, step.hopping * jw * sign));
        }
    }
    let local = std::array::from_fn(|s| {
        let sq = site_qn(s);
        step.onsite * (sq.q + 1) as f64 - step.field * sq.sz()
    });
    let blocks = assemble_blocks(
        &layout,
        &dims,
        &hops,
        (local, step.scale),
        kept,
        dirs,
        cancel,
    )?;

    // f†_{N+1,σ}: identity between sub-blocks with the same kept state, signed by JW
    let mut fdag = Vec::new();
    for sigma in SPINS {
        for (&qn_r, subs_r) in &layout {
            let qn_l = qn_r.plus(creation_qn(sigma));
            let Some(subs_l) = layout.get(&qn_l) else {
                continue;
            };
            let mut pieces = Vec::new();
            for (s_dag, s_from, sign) in site_creation(sigma) {
                if let (Some((k, row_r)), Some((k2, row_l))) = (subs_r[s_from], subs_l[s_dag]) {
                    debug_assert_eq!(k, k2);
                    let jw = fermion_sign(kept.blocks[k].qn.q, kept.orbitals);
                    pieces.push(Piece {
                        row_l,
                        row_r,
                        len: kept.blocks[k].energies.len(),
                        sign: sign * jw,
                    });
                }
            }
            if !pieces.is_empty() {
                fdag.push(ProductOp {
                    sigma,
                    left: new_index[&qn_l],
                    right: new_index[&qn_r],
                    pieces,
                });
            }
        }
    }
    Some(ProductShell {
        blocks,
        fdag,
        orbitals: kept.orbitals + 1,
        subs: layout.into_values().collect(),
        symmetry: Symmetry::QSz,
    })
}

/// One block of shell N+1 to assemble from the kept shell N.
/// Every block of the next shell from its layout and hopping terms, largest first on the block
/// pool; `site` is each sub-block's site energy and the rescaling of H_N (see [`BlockAssembly`]).
/// Shared by the (Q, S_z) and (Q, S) product shells, which differ only in layout and hopping.
pub(crate) fn assemble_blocks(
    layout: &BTreeMap<Qn, SubBlocks>,
    dims: &BTreeMap<Qn, usize>,
    hops: &[Vec<Hop<'_>>],
    site: ([f64; SITE_STATES], f64),
    kept: &KeptShell,
    dirs: &Directions,
    cancel: Cancel<'_>,
) -> Option<Vec<ProductBlock>> {
    let specs: Vec<(Qn, &SubBlocks, &[Hop])> = layout
        .iter()
        .zip(hops)
        .map(|((&qn, subs), h)| (qn, subs, h.as_slice()))
        .collect();
    map_largest_first_until(
        &specs,
        |&(qn, _, _)| dims[&qn],
        |&(qn, subs, hops)| {
            let block = BlockAssembly {
                qn,
                dim: dims[&qn],
                subs,
                local: site.0,
                scale: site.1,
                hops,
            };
            block.assemble(kept, dirs, cancel)
        },
        cancel,
    )
}

pub(crate) struct BlockAssembly<'a> {
    pub qn: Qn,
    pub dim: usize,
    /// Where each sub-block's kept states sit.
    pub subs: &'a SubBlocks,
    /// The site energy of each sub-block, on its diagonal.
    pub local: [f64; SITE_STATES],
    /// ω_N/ω_{N+1}: rescales H_N.
    pub scale: f64,
    pub hops: &'a [Hop<'a>],
}

impl BlockAssembly<'_> {
    /// `scale`·H_N on the kept states of every sub-block plus its site energy on the diagonal,
    /// then the hopping terms. `None` if cancelled (checked between the derivative parts).
    pub fn assemble(
        &self,
        kept: &KeptShell,
        dirs: &Directions,
        cancel: Cancel<'_>,
    ) -> Option<ProductBlock> {
        let dim = self.dim;
        let mut h = Mat::<f64>::zeros(dim, dim);
        let mut dh: Vec<Mat<f64>> = (0..dirs.parts()).map(|_| Mat::zeros(dim, dim)).collect();
        for (s, sub) in self.subs.iter().enumerate() {
            let Some((k, off)) = *sub else { continue };
            let b = &kept.blocks[k];
            for (a, &e) in b.energies.iter().enumerate() {
                h[(off + a, off + a)] = self.scale * e + self.local[s];
            }
            let n = b.energies.len();
            for (m, src) in dh.iter_mut().zip(&b.dh) {
                cancel.check()?;
                for j in 0..n {
                    for i in 0..n {
                        m[(off + i, off + j)] = self.scale * src[(i, j)];
                    }
                }
            }
        }
        for &(op, row, col, c) in self.hops {
            cancel.check()?;
            add_symmetric(&mut h, row, col, &op.value, c);
            for (m, part) in dh.iter_mut().zip(&op.parts) {
                add_symmetric(m, row, col, part, c);
            }
        }
        Some(ProductBlock { qn: self.qn, h, dh })
    }
}

/// For each site state: the kept block it is paired with and the offset of that sub-block.
pub type SubBlocks = [Option<(usize, usize)>; SITE_STATES];

/// A hopping term of a new block: c·f†_N between rows `row..` and columns `col..` (plus h.c.).
pub(crate) type Hop<'a> = (&'a KeptOp, usize, usize, f64);

/// m[row.., col..] += c·x and m[col.., row..] += c·xᵀ.
pub(crate) fn add_symmetric(m: &mut Mat<f64>, row: usize, col: usize, x: &Mat<f64>, c: f64) {
    let (r, k) = (x.nrows(), x.ncols());
    for j in 0..k {
        for i in 0..r {
            let v = c * x[(i, j)];
            m[(row + i, col + j)] += v;
            m[(col + j, row + i)] += v;
        }
    }
}
