//! SU(2) spin symmetry: the (Q, S) product shell (design note `su2-derivatives.md` §1).
//!
//! Without a field the Hamiltonian conserves the total spin, so blocks can be j = (Q, S)
//! (stored as [`Qn`] with `sz2` = 2S) and a basis vector can stand for a whole multiplet. An
//! operator of rank k is then stored as reduced matrices X[j←j′] (Wigner–Eckart, CG convention
//! without 1/√(2S+1)): ⟨j m r|X_q|j′ m′ r′⟩ = ⟨S′ m′; k q|S m⟩ X[j←j′]_rr′. H and its derivative
//! parts are scalars (ordinary block matrices), f†_N is a rank-½ tensor. Every trace over a
//! block carries the weight d_j = 2S+1 ([`Symmetry::degeneracy`]).
//!
//! Adding site N+1 to the kept multiplets of shell N, a new block J = (Q, S) is spanned by four
//! types of product multiplets (old system first, new site last, §1.1):
//!
//! | type | old block | site state |
//! |---|---|---|
//! | 1 | (Q+1, S) | \|0⟩ |
//! | 2 | (Q, S−½), S ≥ ½ | doublet, coupled to S |
//! | 3 | (Q, S+½) | doublet, coupled to S |
//! | 4 | (Q−1, S) | \|↑↓⟩ |
//!
//! The hopping and f†_{N+1} are closed-form multiples of the old f†_N and of identities (§1.2,
//! §1.3, checked against brute-force Clebsch–Gordan sums in the tests below). Only this
//! bookkeeping is new: diagonalization, the cut, the decoupling and the operator transform act
//! per block on reduced matrices exactly as in (Q, S_z) (§2.1), so they are shared.
//!
//! Here the four types are the four slots of [`SubBlocks`] (index = type − 1).

use crate::jet::Directions;
use crate::model::{ImpurityModel, LocalOp, SiteZero};
use crate::parallel::Cancel;
use crate::shell::{
    self, Hop, KeptOp, KeptShell, Piece, ProductBlock, ProductOp, ProductShell, SiteAddition,
    SubBlocks, add_symmetric, part_coefficient,
};
use crate::symmetry::{Qn, SITE_STATES, Symmetry, fermion_sign};
use faer::Mat;
use num_dual::Dual2DVec64;
use std::collections::{BTreeMap, HashMap};

/// Electrons on the new site in each product type.
const TYPE_ELECTRONS: [usize; SITE_STATES] = [0, 1, 1, 2];

/// The impurity counts as one orbital: shell 0 (impurity + site 0) has two.
const IMPURITY_ORBITALS: usize = 1;

/// The old block that type `t` of the new block `j` is built on (None if S would be negative).
pub(crate) fn old_block(j: Qn, t: usize) -> Option<Qn> {
    match t {
        0 => Some(Qn::new(j.q + 1, j.sz2)),
        1 => (j.sz2 >= 1).then(|| Qn::new(j.q, j.sz2 - 1)),
        2 => Some(Qn::new(j.q, j.sz2 + 1)),
        3 => Some(Qn::new(j.q - 1, j.sz2)),
        _ => unreachable!("four product types"),
    }
}

/// The new block that old block `a` feeds as type `t` (None if S would be negative).
fn new_block(a: Qn, t: usize) -> Option<Qn> {
    match t {
        0 => Some(Qn::new(a.q - 1, a.sz2)),
        1 => Some(Qn::new(a.q, a.sz2 + 1)),
        2 => (a.sz2 >= 1).then(|| Qn::new(a.q, a.sz2 - 1)),
        3 => Some(Qn::new(a.q + 1, a.sz2)),
        _ => unreachable!("four product types"),
    }
}

/// Spin S of a (Q, S) block.
fn spin(j: Qn) -> f64 {
    0.5 * j.sz2 as f64
}

/// The hopping Σ_σ (f†_Nσ f_{N+1,σ} + h.c.) inside block J of spin 2S = `s2` (§1.2), as
/// (row type, column type, factor): the term is p·factor·F[A_row←A_col] at those rows and
/// columns, plus its transpose, with F the reduced f†_N and p = (−1)^{Q + n_orb(N)}.
pub(crate) fn hopping_terms(s2: i32) -> [(usize, usize, f64); 4] {
    let s = 0.5 * s2 as f64;
    [
        (0, 1, 1.0),
        (0, 2, 1.0),
        (1, 3, (2.0 * s / (2.0 * s + 1.0)).sqrt()),
        (2, 3, -((2.0 * s + 2.0) / (2.0 * s + 1.0)).sqrt()),
    ]
}

/// f†_{N+1} from block J = (Q, S) to (Q+1, S″) (§1.3), as (type in J, 2S″ − 2S, type in the
/// left block): a multiple p·factor of the identity on the old multiplets.
const CREATION: [(usize, i32, usize); 4] = [(0, 1, 1), (0, -1, 2), (1, -1, 3), (2, 1, 3)];

/// The factor of one [`CREATION`] entry for J of spin S (only called where the types exist).
fn creation_factor(entry: usize, s: f64) -> f64 {
    match entry {
        0 | 1 => -1.0,
        2 => -((2.0 * s + 1.0) / (2.0 * s)).sqrt(),
        3 => ((2.0 * s + 1.0) / (2.0 * s + 2.0)).sqrt(),
        _ => unreachable!("four creation entries"),
    }
}

/// The new blocks fed by the old blocks `old` ((Q, 2S), multiplets): per block its four type
/// slots (old block index, row offset), and its dimension.
fn layout(old: &[(Qn, usize)]) -> (BTreeMap<Qn, SubBlocks>, BTreeMap<Qn, usize>) {
    let index: HashMap<Qn, usize> = old.iter().enumerate().map(|(i, b)| (b.0, i)).collect();
    let mut layout: BTreeMap<Qn, SubBlocks> = BTreeMap::new();
    for &(a, _) in old {
        for t in 0..SITE_STATES {
            if let Some(j) = new_block(a, t) {
                layout.entry(j).or_insert([None; SITE_STATES]);
            }
        }
    }
    let mut dims = BTreeMap::new();
    for (j, subs) in layout.iter_mut() {
        let mut offset = 0;
        for (t, sub) in subs.iter_mut().enumerate() {
            if let Some(&k) = old_block(*j, t).and_then(|a| index.get(&a)) {
                *sub = Some((k, offset));
                offset += old[k].1;
            }
        }
        dims.insert(*j, offset);
    }
    (layout, dims)
}

/// f†_{N+1} between the new blocks (§1.3); `orbitals` = n_orb(N), `len[k]` the multiplets of
/// old block k.
fn creation_ops(
    layout: &BTreeMap<Qn, SubBlocks>,
    orbitals: usize,
    len: &[usize],
) -> Vec<ProductOp> {
    let index: BTreeMap<Qn, usize> = layout.keys().enumerate().map(|(i, &q)| (q, i)).collect();
    let mut by_pair: BTreeMap<(usize, usize), Vec<Piece>> = BTreeMap::new();
    for (&j, subs_r) in layout {
        let p = fermion_sign(j.q, orbitals);
        for (e, &(t, ds2, t_left)) in CREATION.iter().enumerate() {
            let left = Qn::new(j.q + 1, j.sz2 + ds2);
            let (Some((k, row_r)), Some(subs_l)) = (subs_r[t], layout.get(&left)) else {
                continue;
            };
            let Some((k2, row_l)) = subs_l[t_left] else {
                continue;
            };
            debug_assert_eq!(k, k2, "f† of the new site keeps the old multiplet");
            by_pair
                .entry((index[&left], index[&j]))
                .or_default()
                .push(Piece {
                    row_l,
                    row_r,
                    len: len[k],
                    sign: p * creation_factor(e, spin(j)),
                });
        }
    }
    by_pair
        .into_iter()
        .map(|((left, right), pieces)| ProductOp {
            sigma: 0,
            left,
            right,
            pieces,
        })
        .collect()
}

/// Add site N+1 to the kept multiplets of shell N (the (Q, S) form of [`shell::add_site`]):
/// H_{N+1} = scale·H_N + hopping·Σ_σ (f†_Nσ f_{N+1,σ} + h.c.) + onsite·n_{N+1}. There is no
/// field term: a (Q, S) run has none. `None` if cancelled.
pub fn add_site(
    kept: &KeptShell,
    step: SiteAddition,
    dirs: &Directions,
    cancel: Cancel<'_>,
) -> Option<ProductShell> {
    debug_assert_eq!(step.field, 0.0, "no field in (Q, S) blocks");
    let old: Vec<(Qn, usize)> = kept
        .blocks
        .iter()
        .map(|b| (b.qn, b.energies.len()))
        .collect();
    let (layout, dims) = layout(&old);
    let ops: HashMap<(usize, usize), &KeptOp> = kept
        .fdag
        .iter()
        .map(|op| ((op.left, op.right), op))
        .collect();
    let hops: Vec<Vec<Hop>> = layout
        .iter()
        .map(|(&j, subs)| {
            let p = fermion_sign(j.q, kept.orbitals);
            hopping_terms(j.sz2)
                .into_iter()
                .filter_map(|(tr, tc, factor)| {
                    let ((a, row), (b, col)) = (subs[tr]?, subs[tc]?);
                    let op = ops.get(&(a, b))?;
                    Some((*op, row, col, step.hopping * p * factor))
                })
                .collect()
        })
        .collect();
    let local = TYPE_ELECTRONS.map(|n| step.onsite * n as f64);
    let blocks = shell::assemble_blocks(
        &layout,
        &dims,
        &hops,
        (local, step.scale),
        kept,
        dirs,
        cancel,
    )?;
    let len: Vec<usize> = old.iter().map(|b| b.1).collect();
    Some(ProductShell {
        blocks,
        fdag: creation_ops(&layout, kept.orbitals, &len),
        orbitals: kept.orbitals + 1,
        subs: layout.into_values().collect(),
        symmetry: Symmetry::QS,
    })
}

/// Shell 0 (impurity + site 0) in (Q, S) blocks from the model's multiplets (§1.4); the
/// arguments are those of [`shell::initial_shell`]. `None` if the model has no SU(2) form.
pub fn initial_shell(
    model: &dyn ImpurityModel,
    dirs: &Directions,
    var_index: &[usize],
    site0: SiteZero,
    onsite0: f64,
    omega0: f64,
) -> Option<ProductShell> {
    let x = shell::seeded_variables(model);
    let m = model.multiplets(&x, site0)?;
    Some(local_shell(
        &m.blocks, m.terms, dirs, var_index, onsite0, omega0,
    ))
}

/// Shell 0 of the bare chain: site 0 next to an empty impurity orbital (block (−1, 0)), so that
/// charges and fermionic signs count as in the impurity run.
pub fn bare_site_zero(onsite0: f64, omega0: f64) -> ProductShell {
    let none = Directions::default();
    local_shell(
        &[(Qn::new(-1, 0), 1)],
        Vec::new(),
        &none,
        &[],
        onsite0,
        omega0,
    )
}

/// Shell 0 from the impurity's blocks and H_0's terms, plus the chain's on-site energy of site 0.
fn local_shell(
    impurity: &[(Qn, usize)],
    terms: Vec<(Dual2DVec64, LocalOp)>,
    dirs: &Directions,
    var_index: &[usize],
    onsite0: f64,
    omega0: f64,
) -> ProductShell {
    let (layout, dims) = layout(impurity);
    let site = Dual2DVec64::from_re(onsite0);
    let blocks = layout
        .iter()
        .map(|(&j, subs)| {
            let dim = dims[&j];
            // the model's terms, then the chain's on-site energy times n_0
            let mut ops: Vec<(&Dual2DVec64, Mat<f64>)> = terms
                .iter()
                .map(|(c, op)| (c, local_operator(op, j, subs, impurity, dim)))
                .collect();
            let mut occupation = local_operator(&LocalOp::SiteCharge, j, subs, impurity, dim);
            for i in 0..dim {
                occupation[(i, i)] += 1.0;
            }
            ops.push((&site, occupation));
            let assemble = |coef: &dyn Fn(&Dual2DVec64) -> f64| {
                let mut m = Mat::<f64>::zeros(dim, dim);
                for (c, op) in &ops {
                    let c = coef(c) / omega0;
                    if c == 0.0 {
                        continue;
                    }
                    for b in 0..dim {
                        for a in 0..dim {
                            m[(a, b)] += c * op[(a, b)];
                        }
                    }
                }
                m
            };
            ProductBlock {
                qn: j,
                h: assemble(&|c| c.re),
                dh: (0..dirs.parts())
                    .map(|p| assemble(&|c| part_coefficient(c, p, dirs, var_index)))
                    .collect(),
            }
        })
        .collect();
    let len: Vec<usize> = impurity.iter().map(|b| b.1).collect();
    ProductShell {
        blocks,
        fdag: creation_ops(&layout, IMPURITY_ORBITALS, &len),
        orbitals: IMPURITY_ORBITALS + 1,
        subs: layout.into_values().collect(),
        symmetry: Symmetry::QS,
    }
}

/// One scalar operator of impurity + site 0 on the product block `j`.
fn local_operator(
    op: &LocalOp,
    j: Qn,
    subs: &SubBlocks,
    impurity: &[(Qn, usize)],
    dim: usize,
) -> Mat<f64> {
    let mut m = Mat::<f64>::zeros(dim, dim);
    let mut diagonal = |value: &dyn Fn(usize, usize, usize) -> f64| {
        for (t, sub) in subs.iter().enumerate() {
            let Some((a, off)) = *sub else { continue };
            for r in 0..impurity[a].1 {
                m[(off + r, off + r)] += value(t, a, r);
            }
        }
    };
    match op {
        LocalOp::Impurity(values) => diagonal(&|_, a, r| values[a][r]),
        LocalOp::SiteCharge => diagonal(&|t, _, _| TYPE_ELECTRONS[t] as f64 - 1.0),
        LocalOp::Exchange => diagonal(&|t, a, _| {
            // S_A·s = [S(S+1) − S_A(S_A+1) − ¾]/2 for the types with the site doublet
            if t == 1 || t == 2 {
                let (s, sa) = (spin(j), spin(impurity[a].0));
                0.5 * (s * (s + 1.0) - sa * (sa + 1.0) - 0.75)
            } else {
                0.0
            }
        }),
        LocalOp::Hopping(ddag) => {
            let p = fermion_sign(j.q, IMPURITY_ORBITALS);
            for (tr, tc, factor) in hopping_terms(j.sz2) {
                let (Some((a, row)), Some((b, col))) = (subs[tr], subs[tc]) else {
                    continue;
                };
                for (l, r, f) in ddag {
                    if (*l, *r) == (a, b) {
                        let f = Mat::<f64>::from_fn(f.nrows(), f.ncols(), |i, k| f[(i, k)]);
                        add_symmetric(&mut m, row, col, &f, p * factor);
                    }
                }
            }
        }
    }
    m
}

#[cfg(test)]
mod tests {
    //! The closed forms of §1.2–1.3 against brute-force Clebsch–Gordan sums over the M-resolved
    //! product states (design note §4: agreement to 5e-16 for S ≤ 4).
    use super::*;

    fn factorial(n: i32) -> f64 {
        (1..=n).map(f64::from).product()
    }

    /// ⟨j1 m1; j2 m2|j m⟩ by Racah's formula; all arguments doubled.
    fn cg(j1: i32, m1: i32, j2: i32, m2: i32, j: i32, m: i32) -> f64 {
        let valid = m1 + m2 == m
            && m1.abs() <= j1
            && m2.abs() <= j2
            && m.abs() <= j
            && (j1 - j2).abs() <= j
            && j <= j1 + j2
            && (j1 + j2 + j) % 2 == 0
            && (j1 + m1) % 2 == 0
            && (j2 + m2) % 2 == 0
            && (j + m) % 2 == 0;
        if !valid {
            return 0.0;
        }
        let f = |x: i32| factorial(x / 2);
        let pre = (f64::from(j + 1) * f(j1 + j2 - j) * f(j1 - j2 + j) * f(-j1 + j2 + j)
            / f(j1 + j2 + j + 2))
        .sqrt()
            * (f(j1 + m1) * f(j1 - m1) * f(j2 + m2) * f(j2 - m2) * f(j + m) * f(j - m)).sqrt();
        let mut sum = 0.0;
        for k in (0..=2 * (j1 + j2 + j)).step_by(2) {
            let a = [
                j1 + j2 - j - k,
                j1 - m1 - k,
                j2 + m2 - k,
                j - j2 + m1 + k,
                j - j1 - m2 + k,
            ];
            if a.iter().any(|&x| x < 0) {
                continue;
            }
            let sign = if (k / 2) % 2 == 0 { 1.0 } else { -1.0 };
            sum += sign / (f(k) * a.iter().map(|&x| f(x)).product::<f64>());
        }
        pre * sum
    }

    /// Site states: 0 = |0⟩, 1 = doublet, 2 = |↑↓⟩; their doubled spins.
    const SITE_SPIN: [i32; 3] = [0, 1, 0];

    /// ⟨kind″ μ″|f†_σ|kind μ⟩ of one site (doubled projections).
    fn site_fdag(kb: usize, mb: i32, sigma: i32, kk: usize, mk: i32) -> f64 {
        match (kb, kk) {
            (1, 0) if mb == sigma => 1.0,
            // f†↑|↓⟩ = |↑↓⟩, f†↓|↑⟩ = −|↑↓⟩
            (2, 1) if sigma == 1 && mk == -1 => 1.0,
            (2, 1) if sigma == -1 && mk == 1 => -1.0,
            _ => 0.0,
        }
    }

    fn projections(j: i32) -> impl Iterator<Item = i32> {
        (-j..=j).step_by(2)
    }

    /// Site kind and old spin (doubled) of product type t in a block of spin s2.
    fn type_content(t: usize, s2: i32) -> (usize, i32) {
        let kind = [0, 1, 1, 2][t];
        (kind, old_block(Qn::new(0, s2), t).expect("type exists").sz2)
    }

    /// A reduced matrix element from all (M, q) components, checking that Wigner–Eckart holds:
    /// ⟨S″ M″|X_q|S M⟩ = ⟨S M; k q|S″ M″⟩ X_red.
    fn reduced(s2b: i32, s2k: i32, k2: i32, element: &dyn Fn(i32, i32, i32) -> f64) -> f64 {
        let mut value = None;
        for mk in projections(s2k) {
            for q in projections(k2) {
                let mb = mk + q;
                if mb.abs() > s2b {
                    continue;
                }
                let c = cg(s2k, mk, k2, q, s2b, mb);
                let x = element(mb, q, mk);
                if c.abs() < 1e-8 {
                    assert!(x.abs() < 1e-13, "selection rule");
                    continue;
                }
                let r = x / c;
                match value {
                    None => value = Some(r),
                    Some(v) => assert!((v - r).abs() < 1e-13, "Wigner–Eckart: {v} vs {r}"),
                }
            }
        }
        value.expect("a nonzero component")
    }

    #[test]
    fn clebsch_gordan_values() {
        let r = 0.5f64.sqrt();
        assert!((cg(1, 1, 1, -1, 0, 0) - r).abs() < 1e-15);
        assert!((cg(1, -1, 1, 1, 0, 0) + r).abs() < 1e-15);
        assert!((cg(2, 2, 1, -1, 1, 1) - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert!((cg(2, 0, 1, 1, 3, 1) - (2.0f64 / 3.0).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn creation_factors_match_clebsch_gordan_sums() {
        // f†_{N+1,σ} acting on the site only; the old multiplet's JW sign is set to +1, so the
        // sum equals the factor of §1.3 divided by p/π: −1 for type 1 (π = −p), +1 otherwise
        let mut checked = 0;
        for s2 in 0..=8 {
            for (e, &(t, ds2, t_left)) in CREATION.iter().enumerate() {
                let s2l = s2 + ds2;
                if s2l < 0 || (t == 1 && s2 == 0) {
                    continue;
                }
                let (kk, sa) = type_content(t, s2);
                let (kb, sa_b) = type_content(t_left, s2l);
                assert_eq!(sa, sa_b, "the old multiplet is kept");
                let element = |mb: i32, sigma: i32, mk: i32| {
                    let mut x = 0.0;
                    for ma in projections(sa) {
                        for mub in projections(SITE_SPIN[kb]) {
                            for muk in projections(SITE_SPIN[kk]) {
                                x += cg(sa, ma, SITE_SPIN[kb], mub, s2l, mb)
                                    * cg(sa, ma, SITE_SPIN[kk], muk, s2, mk)
                                    * site_fdag(kb, mub, sigma, kk, muk);
                            }
                        }
                    }
                    x
                };
                let brute = reduced(s2l, s2, 1, &element);
                let parity = if t == 0 { -1.0 } else { 1.0 };
                let closed = creation_factor(e, 0.5 * s2 as f64) * parity;
                assert!((brute - closed).abs() < 1e-12, "2S = {s2}, entry {e}");
                checked += 1;
            }
        }
        assert!(checked > 30);
        // the SIAM's impurity (an orbital added to the vacuum, n_orb = 0), as siam.rs has it
        let p = |q| fermion_sign(q, 0);
        assert_eq!(p(-1) * creation_factor(0, 0.0), 1.0);
        assert!((p(0) * creation_factor(2, 0.5) + 2f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn hopping_factors_match_clebsch_gordan_sums() {
        // ⟨t_c|Σ_σ f†_{N+1,σ} f_{Nσ}|t_r⟩ with ⟨A_r‖f†_N‖A_c⟩ = 1 and the bra's old multiplet's
        // JW sign +1: the factor of §1.2 divided by p/π, which is −1 for a type-4 bra
        let mut checked = 0;
        for s2 in 0..=8 {
            for (tr, tc, factor) in hopping_terms(s2) {
                if s2 == 0 && (tr == 1 || tc == 1) {
                    continue;
                }
                let (kk, sa_k) = type_content(tr, s2);
                let (kb, sa_b) = type_content(tc, s2);
                let element = |mb: i32, _q: i32, mk: i32| {
                    let mut x = 0.0;
                    for sigma in [1, -1] {
                        for ma_b in projections(sa_b) {
                            for ma_k in projections(sa_k) {
                                // ⟨A_b m|f_σ|A_k m′⟩ = ⟨A_k m′|f†_σ|A_b m⟩
                                let old = cg(sa_b, ma_b, 1, sigma, sa_k, ma_k);
                                if old == 0.0 {
                                    continue;
                                }
                                for mub in projections(SITE_SPIN[kb]) {
                                    for muk in projections(SITE_SPIN[kk]) {
                                        x += cg(sa_b, ma_b, SITE_SPIN[kb], mub, s2, mb)
                                            * cg(sa_k, ma_k, SITE_SPIN[kk], muk, s2, mk)
                                            * site_fdag(kb, mub, sigma, kk, muk)
                                            * old;
                                    }
                                }
                            }
                        }
                    }
                    x
                };
                let brute = reduced(s2, s2, 0, &element);
                let parity = if tc == 3 { -1.0 } else { 1.0 };
                assert!(
                    (brute - factor * parity).abs() < 1e-12,
                    "2S = {s2}, types ({tr}, {tc}): {brute} vs {}",
                    factor * parity
                );
                checked += 1;
            }
        }
        assert!(checked > 30);
    }
}
