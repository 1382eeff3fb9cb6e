//! One NRG step on hyper-dual matrices (design note `differentiable-nrg.md`, §3).
//!
//! 1. [`diagonalize`]: only the real part A⁰ = U E Uᵀ is diagonalized; the first-order parts
//!    are rotated in full, B^i = Uᵀ A^i U (every block of them is needed).
//! 2. The caller picks the kept states (a cut at a gap, see `truncation`); then
//!    [`rotate_pairs`] rotates the second-order parts, of which only the kept rows B^ij_K· are
//!    ever needed (plus their diagonal in traces, see [`pair_traces`]): 4kn² instead of 4n³.
//! 3. [`decouple`]: the orthogonal W = exp(S), S antisymmetric with only kept–discarded (K–D)
//!    blocks and no real part, removes the K–D coupling order by order:
//!    S^a_kd = B^a_kd/(E_d − E_k);  S^ab_kd = (B^ab + X)_kd/(E_d − E_k),
//!    X = B^a_KK S^b − S^b B^a_DD + B^b_KK S^a − S^a B^b_DD.
//!    The kept Hamiltonian is then E_K + B^a_KK + B^ab_KK − ½(Y + Yᵀ), Y = S^a B^b_DK + S^b B^a_DK.
//!    The only divisions are by kept–discarded gaps, so degeneracies inside the kept space are
//!    harmless and need no noise.
//! 4. [`transform_op`]: an operator O′ = (W_Lᵀ U_Lᵀ O U_R W_R)_KK in closed form.
//!
//! Here S^x denotes the k×d block S^x_KD (S^x_DK = −S^xᵀ).
//!
//! Every function takes the run's cancel flag and returns `None` once it is set: it is checked
//! between the derivative parts and between the column panels of large products, so that only
//! the eigendecomposition itself runs to its end after a cancellation.

use crate::jet::Directions;
use crate::linalg::{
    eigh, gemm_until, mul_until, rows_sandwich, sym_sandwich, trace_sym, weighted_gram_lower,
};
use crate::parallel::Cancel;
use crate::shell::{KeptBlock, KeptOp, ProductBlock, ProductOp};
use crate::symmetry::Qn;
use faer::{Mat, MatRef};

/// A diagonalized block: all eigenvalues, eigenvectors and the rotated derivative parts.
pub struct EigenBlock {
    pub qn: Qn,
    /// Eigenvalues in ascending order (rescaled units).
    pub energies: Vec<f64>,
    pub u: Mat<f64>,
    /// B^i = Uᵀ A^i U for every first-order direction, n×n.
    pub b: Vec<Mat<f64>>,
    /// Rows 0..r of B^ij = Uᵀ A^ij U for every pair, r×n (empty until rotated, see
    /// [`rotate_pairs`]).
    pub b_pairs: Vec<Mat<f64>>,
}

impl EigenBlock {
    pub fn dim(&self) -> usize {
        self.energies.len()
    }

    /// Subtract a constant from H: `value` from the eigenvalues and `first[i]` from the
    /// diagonal of first-order part i (a multiple of the identity commutes with everything).
    pub fn shift(&mut self, value: f64, first: &[f64]) {
        for e in &mut self.energies {
            *e -= value;
        }
        for (b, &d) in self.b.iter_mut().zip(first) {
            for i in 0..b.nrows() {
                b[(i, i)] -= d;
            }
        }
    }

    /// Subtract `pairs[p]` from the diagonal of pair part p (its rotated rows).
    pub fn shift_pairs(&mut self, pairs: &[f64]) {
        for (b, &d) in self.b_pairs.iter_mut().zip(pairs) {
            for i in 0..b.nrows() {
                b[(i, i)] -= d;
            }
        }
    }
}

/// Diagonalize the real part and rotate the first-order parts into the eigenbasis.
pub fn diagonalize(
    block: &ProductBlock,
    dirs: &Directions,
    cancel: Cancel<'_>,
) -> Option<EigenBlock> {
    let (energies, u) = eigh(block.h.as_ref());
    let b = block.dh[..dirs.first()]
        .iter()
        .map(|a| sym_sandwich(u.as_ref(), a.as_ref(), cancel))
        .collect::<Option<_>>()?;
    Some(EigenBlock {
        qn: block.qn,
        energies,
        u,
        b,
        b_pairs: Vec::new(),
    })
}

/// The pair parts of `block` in the eigenbasis of `eb`, rows 0..rows only.
pub fn rotate_pairs(
    eb: &EigenBlock,
    block: &ProductBlock,
    dirs: &Directions,
    rows: usize,
    cancel: Cancel<'_>,
) -> Option<Vec<Mat<f64>>> {
    let u = eb.u.as_ref();
    block.dh[dirs.first()..]
        .iter()
        .map(|a| rows_sandwich(u.subcols(0, rows), a.as_ref(), u, cancel))
        .collect()
}

/// The pair parts of `block` in the eigenbasis of `eb`, every row (the spectral function needs
/// their discarded block): the symmetric product, a quarter cheaper than all rows of
/// [`rotate_pairs`].
pub fn rotate_all_pairs(
    eb: &EigenBlock,
    block: &ProductBlock,
    dirs: &Directions,
    cancel: Cancel<'_>,
) -> Option<Vec<Mat<f64>>> {
    block.dh[dirs.first()..]
        .iter()
        .map(|a| sym_sandwich(eb.u.as_ref(), a.as_ref(), cancel))
        .collect()
}

/// Σ_k w_k B^ij_kk over *all* states of the block for every pair part: the rotated rows give
/// the first terms, the rest is Tr(U_R diag(w) U_Rᵀ A^ij) with one Gram matrix shared by all
/// pairs, so the discarded rows are never rotated.
pub fn pair_traces(
    eb: &EigenBlock,
    b_pairs: &[Mat<f64>],
    block: &ProductBlock,
    dirs: &Directions,
    w: &[f64],
    cancel: Cancel<'_>,
) -> Option<Vec<f64>> {
    let rows = b_pairs.first().map_or(0, |b| b.nrows());
    let n = eb.dim();
    let rest = if rows < n && !b_pairs.is_empty() {
        let discarded = eb.u.as_ref().subcols(rows, n - rows);
        Some(weighted_gram_lower(discarded, &w[rows..], cancel)?)
    } else {
        None
    };
    let traces = b_pairs
        .iter()
        .zip(&block.dh[dirs.first()..])
        .map(|(b, a)| {
            let kept: f64 = (0..rows).map(|k| w[k] * b[(k, k)]).sum();
            kept + rest
                .as_ref()
                .map_or(0.0, |g| trace_sym(g.as_ref(), a.as_ref()))
        })
        .collect();
    Some(traces)
}

/// The generators S^x (k×d) of the kept–discarded decoupling of one block.
pub struct Decoupling {
    pub kept: usize,
    pub s: Vec<Mat<f64>>,
    /// S^i S^jᵀ + S^j S^iᵀ (k×k) for every pair.
    pub anticommutators: Vec<Mat<f64>>,
}

/// Decouple the lowest `kept` states of `eb` from the rest, to the orders in `dirs`.
pub fn decouple(
    eb: &EigenBlock,
    kept: usize,
    dirs: &Directions,
    cancel: Cancel<'_>,
) -> Option<(KeptBlock, Decoupling)> {
    let n = eb.dim();
    let (k, d) = (kept, n - kept);
    let e = &eb.energies;
    let kk = |m: &Mat<f64>| m.as_ref().submatrix(0, 0, k, k).to_owned();
    // 1/(E_d − E_k): bounded by the gap at the cut
    let inv_gap = Mat::<f64>::from_fn(k, d, |a, b| 1.0 / (e[k + b] - e[a]));
    let hadamard =
        |m: MatRef<'_, f64>| Mat::<f64>::from_fn(k, d, |a, b| m[(a, b)] * inv_gap[(a, b)]);
    fn kd(m: &Mat<f64>, k: usize, d: usize) -> MatRef<'_, f64> {
        m.as_ref().submatrix(0, k, k, d)
    }
    fn dd(m: &Mat<f64>, k: usize, d: usize) -> MatRef<'_, f64> {
        m.as_ref().submatrix(k, k, d, d)
    }
    fn dk(m: &Mat<f64>, k: usize, d: usize) -> MatRef<'_, f64> {
        m.as_ref().submatrix(k, 0, d, k)
    }

    let m = dirs.first();
    let mut s: Vec<Mat<f64>> = Vec::with_capacity(dirs.parts());
    let mut dh: Vec<Mat<f64>> = Vec::with_capacity(dirs.parts());
    let mut anticommutators = Vec::with_capacity(dirs.pairs().len());
    for i in 0..m {
        s.push(hadamard(kd(&eb.b[i], k, d)));
        dh.push(kk(&eb.b[i]));
    }
    for (p, &(i, j)) in dirs.pairs().iter().enumerate() {
        cancel.check()?;
        let bp = &eb.b_pairs[p];
        debug_assert!(bp.nrows() >= k, "pair parts rotated for the kept rows");
        // X = B^i_KK S^j − S^j B^i_DD + B^j_KK S^i − S^i B^j_DD, added to B^ij_KD
        let mut x = bp.as_ref().submatrix(0, k, k, d).to_owned();
        // for i = j the two halves of X, Y and {S^i, S^j} coincide: compute one, weight 2
        let (halves, w): (&[(usize, usize)], f64) = if i == j {
            (&[(i, i)], 2.0)
        } else {
            (&[(i, j), (j, i)], 1.0)
        };
        if d > 0 && k > 0 {
            for &(a, b) in halves {
                gemm_until(
                    x.as_mut(),
                    true,
                    eb.b[a].as_ref().submatrix(0, 0, k, k),
                    s[b].as_ref(),
                    w,
                    cancel,
                )?;
                gemm_until(
                    x.as_mut(),
                    true,
                    s[b].as_ref(),
                    dd(&eb.b[a], k, d),
                    -w,
                    cancel,
                )?;
            }
        }
        s.push(hadamard(x.as_ref()));
        // kept part: B^ij_KK − ½(Y + Yᵀ), Y = S^i B^j_DK + S^j B^i_DK
        let mut h = bp.as_ref().submatrix(0, 0, k, k).to_owned();
        // {S^i, S^j}_KK = −(S^i S^jᵀ + S^j S^iᵀ), needed by every operator touching this block
        let mut anti = Mat::<f64>::zeros(k, k);
        if d > 0 && k > 0 {
            let mut y = Mat::<f64>::zeros(k, k);
            for &(a, b) in halves {
                gemm_until(
                    y.as_mut(),
                    true,
                    s[a].as_ref(),
                    dk(&eb.b[b], k, d),
                    w,
                    cancel,
                )?;
                gemm_until(
                    anti.as_mut(),
                    true,
                    s[a].as_ref(),
                    s[b].as_ref().transpose(),
                    w,
                    cancel,
                )?;
            }
            for c in 0..k {
                for r in 0..k {
                    h[(r, c)] -= 0.5 * (y[(r, c)] + y[(c, r)]);
                }
            }
        }
        dh.push(h);
        anticommutators.push(anti);
    }
    let block = KeptBlock {
        qn: eb.qn,
        energies: e[..k].to_vec(),
        dh,
    };
    Some((
        block,
        Decoupling {
            kept: k,
            s,
            anticommutators,
        },
    ))
}

/// Σ_pieces sign · U_L[rows, cols_l]ᵀ U_R[rows, cols_r], the rotated product-basis operator
/// restricted to the given eigenvector columns (`None` if cancelled).
pub(crate) fn rotate_op(
    op: &ProductOp,
    ul: &Mat<f64>,
    ur: &Mat<f64>,
    cols_l: (usize, usize),
    cols_r: (usize, usize),
    cancel: Cancel<'_>,
) -> Option<Mat<f64>> {
    let mut out = Mat::<f64>::zeros(cols_l.1, cols_r.1);
    for (n, p) in op.pieces.iter().enumerate() {
        let l = ul.as_ref().submatrix(p.row_l, cols_l.0, p.len, cols_l.1);
        let r = ur.as_ref().submatrix(p.row_r, cols_r.0, p.len, cols_r.1);
        gemm_until(out.as_mut(), n > 0, l.transpose(), r, p.sign, cancel)?;
    }
    Some(out)
}

/// f† of the newest site in the kept bases of its two blocks, with derivative parts
/// (design note §3.5 with O^a = O^ab = 0: the product-basis operator is a constant).
///   O′^i  = −O_KD S^iᵀ_R − S^i_L O_DK
///   O′^ij = −O_KD S^ijᵀ_R − S^ij_L O_DK − ½[O_KK (S^i S^jᵀ + S^j S^iᵀ)_R + (S^i S^jᵀ + S^j S^iᵀ)_L O_KK]
///           + S^i_L O_DD S^jᵀ_R + S^j_L O_DD S^iᵀ_R
pub fn transform_op(
    op: &ProductOp,
    left: (&EigenBlock, &Decoupling),
    right: (&EigenBlock, &Decoupling),
    dirs: &Directions,
    new_left: usize,
    new_right: usize,
    cancel: Cancel<'_>,
) -> Option<KeptOp> {
    let (el, dl) = left;
    let (er, dr) = right;
    let (kl, kr) = (dl.kept, dr.kept);
    let (nl, nr) = (el.dim(), er.dim());
    let (dl_n, dr_n) = (nl - kl, nr - kr);
    // the real part is computed by exactly the same products with or without derivatives,
    // so a plain run and the real part of a dual run agree bit for bit
    let o_kk = rotate_op(op, &el.u, &er.u, (0, kl), (0, kr), cancel)?;
    let mut parts = Vec::with_capacity(dirs.parts());
    if dirs.parts() > 0 {
        let o_kd = rotate_op(op, &el.u, &er.u, (0, kl), (kr, dr_n), cancel)?;
        let o_dk = rotate_op(op, &el.u, &er.u, (kl, dl_n), (0, kr), cancel)?;
        let o_dd = if dirs.pairs().is_empty() {
            None
        } else {
            Some(rotate_op(op, &el.u, &er.u, (kl, dl_n), (kr, dr_n), cancel)?)
        };
        let gemm = |o: &mut Mat<f64>, lhs: MatRef<'_, f64>, rhs: MatRef<'_, f64>, alpha| {
            gemm_until(o.as_mut(), true, lhs, rhs, alpha, cancel)
        };
        let first_order = |sl: &Mat<f64>, sr: &Mat<f64>| {
            let mut o = Mat::<f64>::zeros(kl, kr);
            gemm(&mut o, o_kd.as_ref(), sr.as_ref().transpose(), -1.0)?;
            gemm(&mut o, sl.as_ref(), o_dk.as_ref(), -1.0)?;
            Some(o)
        };
        let m = dirs.first();
        for i in 0..m {
            parts.push(first_order(&dl.s[i], &dr.s[i])?);
        }
        // S^i_L O_DD once per direction, shared by every pair that contains i
        let mut s_o_dd: Vec<Option<Mat<f64>>> = Vec::with_capacity(m);
        for i in 0..m {
            s_o_dd.push(match o_dd.as_ref().filter(|_| dirs.in_pair(i)) {
                Some(o_dd) => Some(mul_until(dl.s[i].as_ref(), o_dd.as_ref(), cancel)?),
                None => None,
            });
        }
        let s_o_dd = |i: usize| s_o_dd[i].as_ref().expect("direction in a pair").as_ref();
        for (p, &(i, j)) in dirs.pairs().iter().enumerate() {
            let mut o = first_order(&dl.s[m + p], &dr.s[m + p])?;
            gemm(&mut o, o_kk.as_ref(), dr.anticommutators[p].as_ref(), -0.5)?;
            gemm(&mut o, dl.anticommutators[p].as_ref(), o_kk.as_ref(), -0.5)?;
            if i == j {
                gemm(&mut o, s_o_dd(i), dr.s[i].as_ref().transpose(), 2.0)?;
            } else {
                gemm(&mut o, s_o_dd(i), dr.s[j].as_ref().transpose(), 1.0)?;
                gemm(&mut o, s_o_dd(j), dr.s[i].as_ref().transpose(), 1.0)?;
            }
            parts.push(o);
        }
    }
    Some(KeptOp {
        sigma: op.sigma,
        left: new_left,
        right: new_right,
        value: o_kk,
        parts,
    })
}

#[cfg(test)]
mod tests {
    //! The closed forms above against brute-force hyper-dual products in the eigenbasis.
    use super::*;
    use crate::linalg::{mul, sandwich};
    use crate::model::Variable;
    use crate::shell::Piece;

    fn random(n: usize, m: usize, seed: &mut u64) -> Mat<f64> {
        Mat::from_fn(n, m, |_, _| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
    }

    fn symmetric(n: usize, seed: &mut u64) -> Mat<f64> {
        let a = random(n, n, seed);
        Mat::from_fn(n, n, |i, j| a[(i, j)] + a[(j, i)])
    }

    /// Hyper-dual matrix in two directions: [value, a, b, ab].
    type Hd = [Mat<f64>; 4];

    fn hd_mul(x: &Hd, y: &Hd) -> Hd {
        let m = |a: &Mat<f64>, b: &Mat<f64>| mul(a.as_ref(), b.as_ref());
        [
            m(&x[0], &y[0]),
            m(&x[0], &y[1]) + m(&x[1], &y[0]),
            m(&x[0], &y[2]) + m(&x[2], &y[0]),
            m(&x[0], &y[3]) + m(&x[1], &y[2]) + m(&x[2], &y[1]) + m(&x[3], &y[0]),
        ]
    }

    fn hd_transpose(x: &Hd) -> Hd {
        [0, 1, 2, 3].map(|i| x[i].transpose().to_owned())
    }

    /// W = I + S^a + S^b + (S^ab + ½{S^a, S^b}) with S antisymmetric from its K–D blocks.
    fn w_of(n: usize, k: usize, sa: &Mat<f64>, sb: &Mat<f64>, sab: &Mat<f64>) -> Hd {
        let full = |s: &Mat<f64>| {
            Mat::from_fn(n, n, |i, j| {
                if i < k && j >= k {
                    s[(i, j - k)]
                } else if i >= k && j < k {
                    -s[(j, i - k)]
                } else {
                    0.0
                }
            })
        };
        let (a, b, ab) = (full(sa), full(sb), full(sab));
        let anti = mul(a.as_ref(), b.as_ref()) + mul(b.as_ref(), a.as_ref());
        [Mat::identity(n, n), a, b, ab + anti * faer::Scale(0.5)]
    }

    fn max_abs(m: MatRef<'_, f64>) -> f64 {
        let mut x: f64 = 0.0;
        for j in 0..m.ncols() {
            for i in 0..m.nrows() {
                x = x.max(m[(i, j)].abs());
            }
        }
        x
    }

    fn block(n: usize, seed: &mut u64) -> ProductBlock {
        ProductBlock {
            qn: Qn::new(0, 0),
            h: symmetric(n, seed),
            dh: (0..3).map(|_| symmetric(n, seed)).collect(),
        }
    }

    /// Directions a, b with the mixed pair only: parts [a, b, ab].
    fn dirs() -> Directions {
        Directions::new(vec![Variable::EpsD, Variable::U], [(0, 1)])
    }

    /// Diagonalize with the pair parts rotated for the kept rows, as the solver does, and
    /// return every part in full for the brute-force side.
    fn eigen(block: &ProductBlock, dirs: &Directions, k: usize) -> (EigenBlock, Vec<Mat<f64>>) {
        let mut eb = diagonalize(block, dirs, Cancel::NEVER).unwrap();
        eb.b_pairs = rotate_pairs(&eb, block, dirs, k, Cancel::NEVER).unwrap();
        let full = block
            .dh
            .iter()
            .map(|a| sandwich(eb.u.as_ref(), a.as_ref(), eb.u.as_ref()))
            .collect();
        (eb, full)
    }

    #[test]
    fn decoupling_removes_kept_discarded_blocks() {
        let mut seed = 7;
        let (n, k) = (9, 4);
        let (eb, b) = eigen(&block(n, &mut seed), &dirs(), k);
        let (kept, dec) = decouple(&eb, k, &dirs(), Cancel::NEVER).unwrap();
        let h: Hd = [
            Mat::from_fn(n, n, |i, j| if i == j { eb.energies[i] } else { 0.0 }),
            b[0].clone(),
            b[1].clone(),
            b[2].clone(),
        ];
        let w = w_of(n, k, &dec.s[0], &dec.s[1], &dec.s[2]);
        let hp = hd_mul(&hd_mul(&hd_transpose(&w), &h), &w);
        for part in 1..4 {
            // round-off of a few products of O(1) matrices
            let kd = hp[part].as_ref().submatrix(0, k, k, n - k);
            assert!(
                max_abs(kd) < 1e-12,
                "part {part}: K–D block {}",
                max_abs(kd)
            );
            let diff = hp[part].as_ref().submatrix(0, 0, k, k).to_owned() - &kept.dh[part - 1];
            assert!(max_abs(diff.as_ref()) < 1e-12, "part {part}: kept block");
        }
        // a diagonal pair (a, a) is the same algebra with b = a
        let diag = Directions::new(vec![Variable::EpsD], [(0, 0)]);
        let mut blk2 = block(n, &mut seed);
        blk2.dh.truncate(2);
        let (eb2, b2) = eigen(&blk2, &diag, k);
        let (kept2, dec2) = decouple(&eb2, k, &diag, Cancel::NEVER).unwrap();
        let e2 = Mat::from_fn(n, n, |i, j| if i == j { eb2.energies[i] } else { 0.0 });
        let h2: Hd = [e2, b2[0].clone(), b2[0].clone(), b2[1].clone()];
        let w2 = w_of(n, k, &dec2.s[0], &dec2.s[0], &dec2.s[1]);
        let hp2 = hd_mul(&hd_mul(&hd_transpose(&w2), &h2), &w2);
        assert!(max_abs(hp2[3].as_ref().submatrix(0, k, k, n - k)) < 1e-12);
        let diff = hp2[3].as_ref().submatrix(0, 0, k, k).to_owned() - &kept2.dh[1];
        assert!(max_abs(diff.as_ref()) < 1e-12, "pair (a, a): kept block");
        // W is orthogonal to second order
        let wtw = hd_mul(&hd_transpose(&w), &w);
        for part in 1..4 {
            assert!(max_abs(wtw[part].as_ref()) < 1e-13);
        }
    }

    #[test]
    fn operator_transform_matches_brute_force() {
        let mut seed = 11;
        let (nl, nr, kl, kr) = (7, 6, 3, 2);
        let (bl, br) = (block(nl, &mut seed), block(nr, &mut seed));
        let ((el, _), (er, _)) = (eigen(&bl, &dirs(), kl), eigen(&br, &dirs(), kr));
        let (_, dl) = decouple(&el, kl, &dirs(), Cancel::NEVER).unwrap();
        let (_, dr) = decouple(&er, kr, &dirs(), Cancel::NEVER).unwrap();
        // a dense product-basis operator written as unit pieces
        let o = random(nl, nr, &mut seed);
        let pieces = (0..nl)
            .flat_map(|i| (0..nr).map(move |j| (i, j)))
            .map(|(i, j)| Piece {
                row_l: i,
                row_r: j,
                len: 1,
                sign: o[(i, j)],
            })
            .collect();
        let op = ProductOp {
            sigma: 0,
            left: 0,
            right: 1,
            pieces,
        };
        let kept = transform_op(&op, (&el, &dl), (&er, &dr), &dirs(), 0, 1, Cancel::NEVER).unwrap();
        let o_eig = sandwich(el.u.as_ref(), o.as_ref(), er.u.as_ref());
        let zero = |r, c| Mat::<f64>::zeros(r, c);
        let ohd: Hd = [o_eig, zero(nl, nr), zero(nl, nr), zero(nl, nr)];
        let wl = w_of(nl, kl, &dl.s[0], &dl.s[1], &dl.s[2]);
        let wr = w_of(nr, kr, &dr.s[0], &dr.s[1], &dr.s[2]);
        let full = hd_mul(&hd_mul(&hd_transpose(&wl), &ohd), &wr);
        let sub = |m: &Mat<f64>| m.as_ref().submatrix(0, 0, kl, kr).to_owned();
        assert!(max_abs((sub(&full[0]) - &kept.value).as_ref()) < 1e-13);
        for part in 1..4 {
            let diff = sub(&full[part]) - &kept.parts[part - 1];
            // the design note's closed forms agree with full products to 1e-14
            assert!(
                max_abs(diff.as_ref()) < 1e-12,
                "part {part}: {}",
                max_abs(diff.as_ref())
            );
        }
    }
}
