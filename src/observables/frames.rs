//! Matrices with derivative parts and the changes of frame that the spectral function's
//! derivatives go through (design note `spectral-derivatives.md`, §2 and §4, Steps 1–3).
//!
//! - [`MatJet`]: a matrix with derivative parts in the layout of [`Directions`].
//! - [`transform`]: X = e^{−S_L} O e^{S_R} for an antisymmetric generator S without a value
//!   part (e^S = I + S^i + S^ij + ½{S^i, S^j}, the solver's convention), to second order:
//!
//!   ```text
//!   X^i  = O^i + Z_i,    Z_i = ad_i(O),   ad_x(M) := M S^x_R − S^x_L M
//!   X^ij = O^ij + ad_j(O^i + ½Z_i) + ad_i(O^j + ½Z_j) + ad_ij(O)
//!   ```
//!
//!   Expanded, this is the note's X′^ab of §2; written with ad it costs three commutators per
//!   pair instead of ten products, and the same function serves every frame change: the
//!   operator into the solver's frame W = e^S (generator [`KdGen`]), into the cluster frame e^G
//!   ([`BlockGen`]), and the density matrix back (sign −1: e^{S} ρ e^{−S}).
//!   [`transform_off_dd`] leaves out the pairs' DD block where nobody reads it (shells far above
//!   T); [`cluster_transform`] forms only the blocks that hold poles ([`PoleJet`]): G is
//!   block-diagonal in K ⊕ D, so each block is its own small frame change.
//! - [`cluster_frame`]: the cluster Schrieffer–Wolff generator G of one subspace (K or D) of a
//!   block and the cluster-block-diagonal H̃ = e^{−G} H′ e^{G} (Step 2). Clusters are
//!   [`crate::cluster`]'s, so exact and round-off degeneracies are one object, as everywhere else.
//!
//! The value part never changes in a frame change (the generators have none), so a plain run and
//! the real part of a dual run see the very same numbers.

use crate::cluster;
use crate::jet::Directions;
use crate::linalg::gemm;
use faer::{Mat, MatMut, MatRef};
use std::ops::Range;

/// A matrix with derivative parts (first-order parts, then pairs, as in [`Directions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MatJet {
    pub v: Mat<f64>,
    pub p: Vec<Mat<f64>>,
}

impl MatJet {
    /// `v` with `parts` zero parts.
    pub fn constant(v: Mat<f64>, parts: usize) -> MatJet {
        let (r, c) = (v.nrows(), v.ncols());
        MatJet {
            v,
            p: (0..parts).map(|_| Mat::zeros(r, c)).collect(),
        }
    }

    pub fn zeros(rows: usize, cols: usize, parts: usize) -> MatJet {
        MatJet::constant(Mat::zeros(rows, cols), parts)
    }

    pub fn nrows(&self) -> usize {
        self.v.nrows()
    }

    pub fn ncols(&self) -> usize {
        self.v.ncols()
    }

    /// The sub-matrix (rows, cols) of every part.
    pub fn sub(&self, rows: Range<usize>, cols: Range<usize>) -> MatJet {
        let cut = |m: &Mat<f64>| {
            m.as_ref()
                .submatrix(rows.start, cols.start, rows.len(), cols.len())
                .to_owned()
        };
        MatJet {
            v: cut(&self.v),
            p: self.p.iter().map(cut).collect(),
        }
    }

    /// Bytes of all parts.
    pub fn bytes(&self) -> usize {
        8 * self.nrows() * self.ncols() * (1 + self.p.len())
    }
}

/// One term of the product rule: (part of a, part of b), `None` for the value.
pub type Term = (Option<usize>, Option<usize>);

/// The terms of part `x` of a product a·b by the hyper-dual product rule, as (part of a, part
/// of b) with `None` for the value: x = i gives a⁰b^i + a^i b⁰, a pair x = (i, j) gives
/// a⁰b^x + a^x b⁰ + a^i b^j + a^j b^i (twice a^i b^i for i = j). Returns the terms and their count.
pub fn product_terms(dirs: &Directions, x: usize) -> ([Term; 4], usize) {
    let m = dirs.first();
    let mut t = [(None, None); 4];
    t[0] = (None, Some(x));
    t[1] = (Some(x), None);
    if x < m {
        return (t, 2);
    }
    let (i, j) = dirs.pairs()[x - m];
    t[2] = (Some(i), Some(j));
    t[3] = (Some(j), Some(i));
    (t, 4)
}

impl MatJet {
    /// The value (`None`) or part `x`.
    pub fn part(&self, x: Option<usize>) -> &Mat<f64> {
        x.map_or(&self.v, |x| &self.p[x])
    }
}

/// dst += c·(a·b) as jets: every part by the hyper-dual product rule, the value too when
/// `value` (the value part is left alone otherwise, for callers that compute it their own way).
pub fn mul_add(
    dst: &mut MatJet,
    at: (usize, usize),
    a: &MatJet,
    b: &MatJet,
    c: f64,
    dirs: &Directions,
    value: bool,
) {
    let (r, k) = (a.nrows(), b.ncols());
    if r == 0 || k == 0 || a.ncols() == 0 {
        return;
    }
    fn view(m: &mut Mat<f64>, at: (usize, usize), r: usize, k: usize) -> MatMut<'_, f64> {
        m.as_mut().submatrix_mut(at.0, at.1, r, k)
    }
    let m = dirs.first();
    if value {
        gemm(
            view(&mut dst.v, at, r, k),
            true,
            a.v.as_ref(),
            b.v.as_ref(),
            c,
        );
    }
    for i in 0..m {
        gemm(
            view(&mut dst.p[i], at, r, k),
            true,
            a.v.as_ref(),
            b.p[i].as_ref(),
            c,
        );
        gemm(
            view(&mut dst.p[i], at, r, k),
            true,
            a.p[i].as_ref(),
            b.v.as_ref(),
            c,
        );
    }
    for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
        let x = m + q;
        gemm(
            view(&mut dst.p[x], at, r, k),
            true,
            a.v.as_ref(),
            b.p[x].as_ref(),
            c,
        );
        gemm(
            view(&mut dst.p[x], at, r, k),
            true,
            a.p[x].as_ref(),
            b.v.as_ref(),
            c,
        );
        gemm(
            view(&mut dst.p[x], at, r, k),
            true,
            a.p[i].as_ref(),
            b.p[j].as_ref(),
            c,
        );
        gemm(
            view(&mut dst.p[x], at, r, k),
            true,
            a.p[j].as_ref(),
            b.p[i].as_ref(),
            c,
        );
    }
}

/// An antisymmetric generator S (no value part) acting on matrices from either side.
pub trait Generator: Sync {
    /// dst += c·S^part·x.
    fn left(&self, part: usize, x: MatRef<'_, f64>, c: f64, dst: MatMut<'_, f64>);
    /// dst += c·x·S^part.
    fn right(&self, part: usize, x: MatRef<'_, f64>, c: f64, dst: MatMut<'_, f64>);
    /// dst += c·diag(v)·S^part, O(n²).
    fn right_of_diagonal(&self, part: usize, v: &[f64], c: f64, dst: &mut Mat<f64>);
    /// [`Generator::left`] for a caller that never reads dst's DD block (rows beyond this
    /// generator's kept states, columns from `kr` on): it may be left unwritten.
    fn left_off_dd(
        &self,
        part: usize,
        x: MatRef<'_, f64>,
        c: f64,
        dst: MatMut<'_, f64>,
        kr: usize,
    ) {
        let _ = kr;
        self.left(part, x, c, dst);
    }
    /// [`Generator::right`] for a caller that never reads dst's DD block (rows from `kl` on,
    /// columns beyond this generator's kept states): it may be left unwritten.
    fn right_off_dd(
        &self,
        part: usize,
        x: MatRef<'_, f64>,
        c: f64,
        dst: MatMut<'_, f64>,
        kl: usize,
    ) {
        let _ = kl;
        self.right(part, x, c, dst);
    }
}

/// The solver's kept–discarded decoupling: S = [[0, s], [−sᵀ, 0]] with s = S_KD (k×d) per part.
pub struct KdGen<'a> {
    pub s: &'a [Mat<f64>],
}

impl Generator for KdGen<'_> {
    fn left(&self, part: usize, x: MatRef<'_, f64>, c: f64, mut dst: MatMut<'_, f64>) {
        let s = self.s[part].as_ref();
        let (k, d) = (s.nrows(), s.ncols());
        if k == 0 || d == 0 || x.ncols() == 0 {
            return;
        }
        // (S x)_K = s x_D, (S x)_D = −sᵀ x_K
        gemm(dst.as_mut().subrows_mut(0, k), true, s, x.subrows(k, d), c);
        gemm(
            dst.subrows_mut(k, d),
            true,
            s.transpose(),
            x.subrows(0, k),
            -c,
        );
    }

    fn right(&self, part: usize, x: MatRef<'_, f64>, c: f64, mut dst: MatMut<'_, f64>) {
        let s = self.s[part].as_ref();
        let (k, d) = (s.nrows(), s.ncols());
        if k == 0 || d == 0 || x.nrows() == 0 {
            return;
        }
        // (x S)_{·K} = −x_D sᵀ, (x S)_{·D} = x_K s
        gemm(
            dst.as_mut().subcols_mut(0, k),
            true,
            x.subcols(k, d),
            s.transpose(),
            -c,
        );
        gemm(dst.subcols_mut(k, d), true, x.subcols(0, k), s, c);
    }

    fn right_of_diagonal(&self, part: usize, v: &[f64], c: f64, dst: &mut Mat<f64>) {
        let s = &self.s[part];
        let (k, d) = (s.nrows(), s.ncols());
        // (diag(v) S)_{K,D} = v_K s, (diag(v) S)_{D,K} = −v_D sᵀ
        for l in 0..d {
            for kk in 0..k {
                let x = s[(kk, l)];
                dst[(kk, k + l)] += c * v[kk] * x;
                dst[(k + l, kk)] -= c * v[k + l] * x;
            }
        }
    }

    fn left_off_dd(
        &self,
        part: usize,
        x: MatRef<'_, f64>,
        c: f64,
        mut dst: MatMut<'_, f64>,
        kr: usize,
    ) {
        let s = self.s[part].as_ref();
        let (k, d) = (s.nrows(), s.ncols());
        let kr = kr.min(x.ncols());
        if k == 0 || d == 0 || x.ncols() == 0 {
            return;
        }
        // (S x)_K = s x_D on every column; (S x)_D = −sᵀ x_K on the K columns only
        gemm(dst.as_mut().subrows_mut(0, k), true, s, x.subrows(k, d), c);
        if kr > 0 {
            gemm(
                dst.submatrix_mut(k, 0, d, kr),
                true,
                s.transpose(),
                x.submatrix(0, 0, k, kr),
                -c,
            );
        }
    }

    fn right_off_dd(
        &self,
        part: usize,
        x: MatRef<'_, f64>,
        c: f64,
        dst: MatMut<'_, f64>,
        kl: usize,
    ) {
        // x S = −(S xᵀ)ᵀ: the left action on the transposes, rows and columns swapped
        self.left_off_dd(part, x.transpose(), -c, dst.transpose_mut(), kl);
    }
}

/// A generator block-diagonal in K ⊕ D: the cluster generator, dense k×k and d×d per part.
pub struct BlockGen<'a> {
    pub gk: &'a [Mat<f64>],
    pub gd: &'a [Mat<f64>],
}

impl Generator for BlockGen<'_> {
    fn left(&self, part: usize, x: MatRef<'_, f64>, c: f64, mut dst: MatMut<'_, f64>) {
        let (gk, gd) = (self.gk[part].as_ref(), self.gd[part].as_ref());
        let (k, d) = (gk.nrows(), gd.nrows());
        if x.ncols() == 0 {
            return;
        }
        if k > 0 {
            gemm(dst.as_mut().subrows_mut(0, k), true, gk, x.subrows(0, k), c);
        }
        if d > 0 {
            gemm(dst.subrows_mut(k, d), true, gd, x.subrows(k, d), c);
        }
    }

    fn right(&self, part: usize, x: MatRef<'_, f64>, c: f64, mut dst: MatMut<'_, f64>) {
        let (gk, gd) = (self.gk[part].as_ref(), self.gd[part].as_ref());
        let (k, d) = (gk.nrows(), gd.nrows());
        if x.nrows() == 0 {
            return;
        }
        if k > 0 {
            gemm(dst.as_mut().subcols_mut(0, k), true, x.subcols(0, k), gk, c);
        }
        if d > 0 {
            gemm(dst.subcols_mut(k, d), true, x.subcols(k, d), gd, c);
        }
    }

    fn right_of_diagonal(&self, part: usize, v: &[f64], c: f64, dst: &mut Mat<f64>) {
        let (gk, gd) = (&self.gk[part], &self.gd[part]);
        let k = gk.nrows();
        for (g, off) in [(gk, 0), (gd, k)] {
            for j in 0..g.ncols() {
                for i in 0..g.nrows() {
                    dst[(off + i, off + j)] += c * v[off + i] * g[(i, j)];
                }
            }
        }
    }
}

/// An operator between two blocks as the poles read it: the value whole, the parts only on the
/// blocks that hold poles ([`PoleBlocks`]: KD, DK, and DD unless the shell's discarded states
/// carry no weight). The parts of the KK block never enter a pole, and those of DD none of a
/// shell far above T: they are neither computed nor stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PoleJet {
    pub v: Mat<f64>,
    pub kl: usize,
    pub kr: usize,
    /// Per part: KD (kl × (nr − kr)), DK ((nl − kl) × kr), and DD when stored.
    pub kd: Vec<Mat<f64>>,
    pub dk: Vec<Mat<f64>>,
    pub dd: Option<Vec<Mat<f64>>>,
}

impl PoleJet {
    /// A value without parts (a plain run).
    pub fn value(v: Mat<f64>, kl: usize, kr: usize) -> PoleJet {
        PoleJet {
            v,
            kl,
            kr,
            kd: Vec::new(),
            dk: Vec::new(),
            dd: None,
        }
    }

    /// Every part as a whole matrix, zero on the blocks not stored.
    pub fn to_jet(&self) -> MatJet {
        let (nl, nr) = (self.v.nrows(), self.v.ncols());
        let (kl, kr) = (self.kl, self.kr);
        let p = (0..self.kd.len())
            .map(|x| {
                let mut m = Mat::<f64>::zeros(nl, nr);
                m.as_mut()
                    .submatrix_mut(0, kr, kl, nr - kr)
                    .copy_from(&self.kd[x]);
                m.as_mut()
                    .submatrix_mut(kl, 0, nl - kl, kr)
                    .copy_from(&self.dk[x]);
                if let Some(dd) = &self.dd {
                    m.as_mut()
                        .submatrix_mut(kl, kr, nl - kl, nr - kr)
                        .copy_from(&dd[x]);
                }
                m
            })
            .collect();
        MatJet {
            v: self.v.clone(),
            p,
        }
    }

    /// Value and every part multiplied by `c`.
    pub fn scale(&mut self, c: f64) {
        let all = std::iter::once(&mut self.v)
            .chain(self.kd.iter_mut())
            .chain(self.dk.iter_mut())
            .chain(self.dd.iter_mut().flatten());
        for m in all {
            *m *= faer::Scale(c);
        }
    }

    pub fn bytes(&self) -> usize {
        let m = |v: &[Mat<f64>]| v.iter().map(|x| x.nrows() * x.ncols()).sum::<usize>();
        8 * (self.v.nrows() * self.v.ncols()
            + m(&self.kd)
            + m(&self.dk)
            + self.dd.as_deref().map_or(0, m))
    }
}

/// X′ = e^{−G_L} X e^{G_R} on the blocks that hold poles, for cluster generators G = G_K ⊕ G_D
/// of the two blocks (`left`, `right`: (G_K, G_D) per part). G is block-diagonal in K ⊕ D, so
/// every block of X′ comes from the same block of X alone: each is its own small frame change,
/// and the KK block (and DD, unless `dd`) is never formed.
pub fn cluster_transform(
    x: &MatJet,
    left: (&[Mat<f64>], &[Mat<f64>]),
    right: (&[Mat<f64>], &[Mat<f64>]),
    (kl, kr): (usize, usize),
    dd: bool,
    dirs: &Directions,
) -> PoleJet {
    let (nl, nr) = (x.nrows(), x.ncols());
    // G_K or G_D alone: the block generator with an empty other half
    let none: Vec<Mat<f64>> = (0..dirs.parts()).map(|_| Mat::zeros(0, 0)).collect();
    let on_k = |g| BlockGen { gk: g, gd: &none };
    let on_d = |g| BlockGen { gk: &none, gd: g };
    let block = |rows: Range<usize>, cols: Range<usize>, gl: BlockGen<'_>, gr: BlockGen<'_>| {
        transform(&x.sub(rows, cols), &gl, &gr, 1.0, dirs).p
    };
    PoleJet {
        v: x.v.clone(),
        kl,
        kr,
        kd: block(0..kl, kr..nr, on_k(left.0), on_d(right.1)),
        dk: block(kl..nl, 0..kr, on_d(left.1), on_k(right.0)),
        dd: dd.then(|| block(kl..nl, kr..nr, on_d(left.1), on_d(right.1))),
    }
}

/// e^{−σS_L} O e^{σS_R} to second order (σ = ±1; see the module documentation). The value part
/// is copied unchanged.
pub fn transform(
    o: &MatJet,
    left: &dyn Generator,
    right: &dyn Generator,
    sign: f64,
    dirs: &Directions,
) -> MatJet {
    transform_off_dd(o, left, right, sign, dirs, None)
}

/// [`transform`] for a caller that never reads the second-order parts' DD block: with
/// `Some((kl, kr))` (the kept counts of the two sides) that block (rows kl.., columns kr..) of
/// the pair parts is left at O^ij's, and generators that can ([`KdGen`]) skip computing it. The
/// first-order parts stay whole: their DD block enters the pairs' KD and DK blocks.
pub fn transform_off_dd(
    o: &MatJet,
    left: &dyn Generator,
    right: &dyn Generator,
    sign: f64,
    dirs: &Directions,
    skip_dd: Option<(usize, usize)>,
) -> MatJet {
    let (r, c) = (o.nrows(), o.ncols());
    let m = dirs.first();
    // dst += w·σ·ad_part(x), on a pair part's blocks only when skip_dd
    let ad_in =
        |dst: &mut Mat<f64>, x: MatRef<'_, f64>, part: usize, w: f64, pair: bool| match skip_dd
            .filter(|_| pair)
        {
            Some((kl, kr)) => {
                right.right_off_dd(part, x, w * sign, dst.as_mut(), kl);
                left.left_off_dd(part, x, -w * sign, dst.as_mut(), kr);
            }
            None => {
                right.right(part, x, w * sign, dst.as_mut());
                left.left(part, x, -w * sign, dst.as_mut());
            }
        };
    // `ad` builds pair parts only; `ad_value` every part
    let ad =
        |dst: &mut Mat<f64>, x: MatRef<'_, f64>, part: usize, w: f64| ad_in(dst, x, part, w, true);
    let ad_value =
        |dst: &mut Mat<f64>, part: usize, w: f64| ad_in(dst, o.v.as_ref(), part, w, part >= m);
    second_order(o, (r, c), dirs, &ad_value, &ad)
}

/// [`transform`] of a symmetric O (value and every part) with the same generator on both sides:
/// then ad(M) = M S − S M = M S + (M S)ᵀ for every symmetric M that occurs (O^i, Z_i and
/// O^i + ½Z_i are all symmetric), one product instead of two. With `diagonal`, O's value is
/// diagonal (a density matrix in its eigenbasis) and its products cost O(n²).
pub fn transform_symmetric(
    o: &MatJet,
    generator: &dyn Generator,
    sign: f64,
    diagonal: bool,
    dirs: &Directions,
) -> MatJet {
    let n = o.nrows();
    // dst += w·σ·(M S + (M S)ᵀ)
    let ad = |dst: &mut Mat<f64>, x: MatRef<'_, f64>, part: usize, w: f64| {
        let mut p = Mat::<f64>::zeros(n, n);
        generator.right(part, x, w * sign, p.as_mut());
        for j in 0..n {
            for i in 0..n {
                dst[(i, j)] += p[(i, j)] + p[(j, i)];
            }
        }
    };
    let value_diagonal: Vec<f64> = if diagonal {
        (0..n).map(|i| o.v[(i, i)]).collect()
    } else {
        Vec::new()
    };
    let ad_value = |dst: &mut Mat<f64>, part: usize, w: f64| {
        if diagonal {
            let mut p = Mat::<f64>::zeros(n, n);
            generator.right_of_diagonal(part, &value_diagonal, w * sign, &mut p);
            for j in 0..n {
                for i in 0..n {
                    dst[(i, j)] += p[(i, j)] + p[(j, i)];
                }
            }
        } else {
            ad(dst, o.v.as_ref(), part, w);
        }
    };
    second_order(o, (n, n), dirs, &ad_value, &ad)
}

/// dst += w·σ·ad_part(x), as (dst, x, part, w).
type AdjointAction<'a> = dyn Fn(&mut Mat<f64>, MatRef<'_, f64>, usize, f64) + 'a;

/// The parts of e^{−σS_L} O e^{σS_R} to second order, given the adjoint action on O's value
/// (`ad_value(dst, part, w)`: dst += w·σ·ad_part(O)) and on any matrix (`ad`): shared by
/// [`transform`] and [`transform_symmetric`], which differ only in how they apply it.
fn second_order(
    o: &MatJet,
    (r, c): (usize, usize),
    dirs: &Directions,
    ad_value: &dyn Fn(&mut Mat<f64>, usize, f64),
    ad: &AdjointAction<'_>,
) -> MatJet {
    let m = dirs.first();
    let mut p: Vec<Mat<f64>> = Vec::with_capacity(o.p.len());
    // O^i + ½Z_i, needed by the pairs that contain i
    let mut half: Vec<Option<Mat<f64>>> = Vec::with_capacity(m);
    for i in 0..m {
        let mut z = Mat::<f64>::zeros(r, c);
        ad_value(&mut z, i, 1.0);
        half.push(dirs.in_pair(i).then(|| {
            let mut h = o.p[i].clone();
            h += faer::Scale(0.5) * &z;
            h
        }));
        z += &o.p[i];
        p.push(z);
    }
    for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
        let mut x = o.p[m + q].clone();
        let hi = half[i].as_ref().expect("direction in a pair").as_ref();
        if i == j {
            ad(&mut x, hi, i, 2.0);
        } else {
            let hj = half[j].as_ref().expect("direction in a pair").as_ref();
            ad(&mut x, hi, j, 1.0);
            ad(&mut x, hj, i, 1.0);
        }
        ad_value(&mut x, m + q, 1.0);
        p.push(x);
    }
    MatJet { v: o.v.clone(), p }
}

/// The cluster frame of one subspace (K or D) of a block (Step 2 of the design note).
#[derive(Debug, Clone)]
pub struct ClusterFrame {
    /// The clusters, as index ranges of the subspace.
    pub ranges: Vec<Range<usize>>,
    /// G^x per part: antisymmetric, zero on the clusters' diagonal blocks.
    pub g: Vec<Mat<f64>>,
    /// H̃^x per part and cluster (the cluster's diagonal block), rescaled units.
    pub h: Vec<Vec<Mat<f64>>>,
}

/// The cluster Schrieffer–Wolff generator of one subspace with ascending `energies` and
/// Hamiltonian parts `parts` (H′^x in the solver's frame, symmetric). With A = H′^i, B = H′^j,
/// C = H′^ij, subscripts c (cluster-diagonal blocks) and o (the rest), and r, q in different
/// clusters:
///
/// ```text
/// G^i_rq  = A_rq/(E_q − E_r),                 H̃^i = A_c
/// N       = C + [A_c + ½A_o, G^j] + [B_c + ½B_o, G^i]
/// G^ij_rq = N_rq/(E_q − E_r),                 H̃^ij = N_c
/// ```
///
/// so that e^{−G}H′e^{G} is cluster-block-diagonal to second order. The only divisions are by
/// gaps between clusters, ≥ [`cluster::TOL`].
pub fn cluster_frame(energies: &[f64], parts: &[Mat<f64>], dirs: &Directions) -> ClusterFrame {
    let n = energies.len();
    let e = energies;
    let ranges = cluster::split(energies);
    let mut id = vec![0usize; n];
    for (c, r) in ranges.iter().enumerate() {
        for i in r.clone() {
            id[i] = c;
        }
    }
    let divide = |x: &Mat<f64>| {
        Mat::<f64>::from_fn(n, n, |r, q| {
            if id[r] == id[q] {
                0.0
            } else {
                x[(r, q)] / (e[q] - e[r])
            }
        })
    };
    let blocks = |x: &Mat<f64>| -> Vec<Mat<f64>> {
        ranges
            .iter()
            .map(|r| {
                x.as_ref()
                    .submatrix(r.start, r.start, r.len(), r.len())
                    .to_owned()
            })
            .collect()
    };
    let m = dirs.first();
    let mut g = Vec::with_capacity(parts.len());
    let mut h = Vec::with_capacity(parts.len());
    let mut half: Vec<Option<Mat<f64>>> = Vec::with_capacity(m);
    for i in 0..m {
        g.push(divide(&parts[i]));
        h.push(blocks(&parts[i]));
        half.push(dirs.in_pair(i).then(|| {
            Mat::from_fn(n, n, |r, q| {
                let a = parts[i][(r, q)];
                if id[r] == id[q] { a } else { 0.5 * a }
            })
        }));
    }
    for (p, &(i, j)) in dirs.pairs().iter().enumerate() {
        let mut nm = parts[m + p].clone();
        if n > 0 {
            // [M, G] = MG + (MG)ᵀ for symmetric M and antisymmetric G
            let mi = half[i].as_ref().expect("direction in a pair");
            let mut prod = Mat::<f64>::zeros(n, n);
            if i == j {
                gemm(prod.as_mut(), false, mi.as_ref(), g[i].as_ref(), 2.0);
            } else {
                let mj = half[j].as_ref().expect("direction in a pair");
                gemm(prod.as_mut(), false, mi.as_ref(), g[j].as_ref(), 1.0);
                gemm(prod.as_mut(), true, mj.as_ref(), g[i].as_ref(), 1.0);
            }
            for c in 0..n {
                for r in 0..n {
                    nm[(r, c)] += prod[(r, c)] + prod[(c, r)];
                }
            }
        }
        g.push(divide(&nm));
        h.push(blocks(&nm));
    }
    ClusterFrame { ranges, g, h }
}

/// A cluster-block-diagonal matrix over a whole block (K clusters, then D clusters), per part:
/// the cluster frame's H̃^x, which moves the poles.
#[derive(Debug, Clone, Default)]
pub struct BlockClusters {
    pub ranges: Vec<Range<usize>>,
    /// Per part, per cluster.
    pub h: Vec<Vec<Mat<f64>>>,
    /// Per part, the value of every single-state cluster on the diagonal (0 for the states of
    /// larger clusters): most clusters are single states, and they act by scaling.
    diag: Vec<Vec<f64>>,
    /// The clusters of more than one state.
    multi: Vec<usize>,
}

impl BlockClusters {
    /// K's clusters followed by D's (offset by k).
    pub fn join(kept: &ClusterFrame, discarded: &ClusterFrame, k: usize) -> BlockClusters {
        let ranges: Vec<Range<usize>> = kept
            .ranges
            .iter()
            .cloned()
            .chain(discarded.ranges.iter().map(|r| r.start + k..r.end + k))
            .collect();
        let h: Vec<Vec<Mat<f64>>> = kept
            .h
            .iter()
            .zip(&discarded.h)
            .map(|(a, b)| a.iter().chain(b).cloned().collect())
            .collect();
        let n = ranges.last().map_or(0, |r| r.end);
        let diag = h
            .iter()
            .map(|blocks| {
                let mut d = vec![0.0; n];
                for (r, b) in ranges.iter().zip(blocks) {
                    if r.len() == 1 {
                        d[r.start] = b[(0, 0)];
                    }
                }
                d
            })
            .collect();
        let multi = (0..ranges.len()).filter(|&c| ranges[c].len() > 1).collect();
        BlockClusters {
            ranges,
            h,
            diag,
            multi,
        }
    }

    /// dst = c·(z·B_R − B_L·z) for the part `part` of `left` (rows) and `right` (columns), on a
    /// window of columns: z and dst hold the columns c0.. of the whole (their column jj is the
    /// pair's column c0 + jj), and the window is a union of whole clusters of `right`. The
    /// commutator-like action that moves poles, O(rows·cols·cluster size). Only the entries of
    /// the blocks in `poles` are written (B̃ is cluster-block-diagonal, so they depend on those
    /// blocks of z alone); the others are left as they are.
    #[allow(clippy::too_many_arguments)]
    pub fn ad_into(
        left: &BlockClusters,
        right: &BlockClusters,
        part: usize,
        z: MatRef<'_, f64>,
        c0: usize,
        c: f64,
        mut dst: MatMut<'_, f64>,
        poles: PoleBlocks,
    ) {
        let rows = z.nrows();
        let w = z.ncols();
        let (dl, dr) = (&left.diag[part], &right.diag[part]);
        // single-state clusters on both sides: a scaling of every entry
        for jj in 0..w {
            let j = c0 + jj;
            let range = poles.rows(j, rows);
            let out = &mut dst
                .as_mut()
                .col_mut(jj)
                .try_as_col_major_mut()
                .expect("contiguous")
                .as_slice_mut()[range.clone()];
            let zc = &z.col(jj).try_as_col_major().expect("contiguous").as_slice()[range.clone()];
            let b = dr[j];
            let dl = &dl[range];
            for i in 0..out.len() {
                out[i] = c * (zc[i] * b - dl[i] * zc[i]);
            }
        }
        for &cl in &right.multi {
            let r = &right.ranges[cl];
            if r.end <= c0 || r.start >= c0 + w {
                continue;
            }
            let b = &right.h[part][cl];
            let range = poles.rows(r.start, rows);
            for (jj, j) in r.clone().enumerate() {
                for i in range.clone() {
                    let mut s = 0.0;
                    for (ll, l) in r.clone().enumerate() {
                        s += z[(i, l - c0)] * b[(ll, jj)];
                    }
                    dst[(i, j - c0)] += c * s;
                }
            }
        }
        for &cl in &left.multi {
            let (r, b) = (&left.ranges[cl], &left.h[part][cl]);
            let cols = poles.cols(r.start, c0 + w);
            for j in cols.start.max(c0)..cols.end {
                for (ii, i) in r.clone().enumerate() {
                    let mut s = 0.0;
                    for (ll, l) in r.clone().enumerate() {
                        s += b[(ii, ll)] * z[(l, j - c0)];
                    }
                    dst[(i, j - c0)] -= c * s;
                }
            }
        }
    }

    /// Column windows of at most `width` columns (or one cluster, if wider) that are unions of
    /// whole clusters, covering 0..`cols` in order: what [`BlockClusters::ad_into`] works on.
    /// Without clusters (a plain run) every column is its own.
    pub fn windows(&self, cols: usize, width: usize) -> Vec<Range<usize>> {
        let ends: Vec<usize> = if self.ranges.is_empty() {
            (1..=cols).collect()
        } else {
            debug_assert_eq!(self.ranges.last().map(|r| r.end), Some(cols));
            self.ranges.iter().map(|r| r.end).collect()
        };
        let mut out = Vec::new();
        let (mut start, mut end) = (0, 0);
        for e in ends {
            if e - start > width && end > start {
                out.push(start..end);
                start = end;
            }
            end = e;
        }
        if end > start {
            out.push(start..end);
        }
        out
    }
}

/// The blocks of a block pair (kept rows `kl`, kept columns `kr`) that hold poles: KD and DK
/// always, DD unless ρ^D vanishes on both sides (`dd` false), KK never.
#[derive(Debug, Clone, Copy)]
pub struct PoleBlocks {
    pub kl: usize,
    pub kr: usize,
    pub dd: bool,
}

impl PoleBlocks {
    /// Every entry (tests, and callers that want the whole matrix).
    pub fn all() -> PoleBlocks {
        PoleBlocks {
            kl: 0,
            kr: 0,
            dd: true,
        }
    }

    /// The rows of column `j` (of `rows` rows) that hold poles.
    pub fn rows(&self, j: usize, rows: usize) -> Range<usize> {
        if j < self.kr {
            self.kl.min(rows)..rows
        } else if self.dd {
            0..rows
        } else {
            0..self.kl.min(rows)
        }
    }

    /// The columns of row `i` (of `cols` columns) that hold poles.
    pub fn cols(&self, i: usize, cols: usize) -> Range<usize> {
        if i < self.kl {
            self.kr.min(cols)..cols
        } else if self.dd {
            0..cols
        } else {
            0..self.kr.min(cols)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The closed forms against brute-force hyper-dual products of dense matrices.
    use super::*;
    use crate::linalg::mul;
    use crate::model::Variable;

    fn random(n: usize, m: usize, seed: &mut u64) -> Mat<f64> {
        Mat::from_fn(n, m, |_, _| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
    }

    fn antisym(n: usize, seed: &mut u64) -> Mat<f64> {
        let a = random(n, n, seed);
        Mat::from_fn(n, n, |i, j| a[(i, j)] - a[(j, i)])
    }

    fn sym(n: usize, seed: &mut u64) -> Mat<f64> {
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

    /// e^{σS} = I + σS^a + σS^b + σS^ab + ½{S^a, S^b}.
    fn exp(s: &[Mat<f64>; 3], sign: f64) -> Hd {
        let n = s[0].nrows();
        let anti = mul(s[0].as_ref(), s[1].as_ref()) + mul(s[1].as_ref(), s[0].as_ref());
        [
            Mat::identity(n, n),
            &s[0] * faer::Scale(sign),
            &s[1] * faer::Scale(sign),
            &s[2] * faer::Scale(sign) + anti * faer::Scale(0.5),
        ]
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

    /// Directions a, b and the mixed pair: parts [a, b, ab].
    fn dirs() -> Directions {
        Directions::new(vec![Variable::EpsD, Variable::U], [(0, 1)])
    }

    fn kd_full(s: &Mat<f64>, n: usize) -> Mat<f64> {
        let k = s.nrows();
        Mat::from_fn(n, n, |i, j| {
            if i < k && j >= k {
                s[(i, j - k)]
            } else if i >= k && j < k {
                -s[(j, i - k)]
            } else {
                0.0
            }
        })
    }

    #[test]
    fn transform_matches_hyper_dual_products() {
        let mut seed = 3;
        let (nl, nr, kl, kr) = (7, 5, 3, 2);
        let o = MatJet {
            v: random(nl, nr, &mut seed),
            p: (0..3).map(|_| random(nl, nr, &mut seed)).collect(),
        };
        let sl: Vec<Mat<f64>> = (0..3).map(|_| random(kl, nl - kl, &mut seed)).collect();
        let sr: Vec<Mat<f64>> = (0..3).map(|_| random(kr, nr - kr, &mut seed)).collect();
        let gl: [Vec<Mat<f64>>; 2] = [
            (0..3).map(|_| antisym(kl, &mut seed)).collect(),
            (0..3).map(|_| antisym(nl - kl, &mut seed)).collect(),
        ];
        let gr: [Vec<Mat<f64>>; 2] = [
            (0..3).map(|_| antisym(kr, &mut seed)).collect(),
            (0..3).map(|_| antisym(nr - kr, &mut seed)).collect(),
        ];
        let block_full = |g: &[Vec<Mat<f64>>; 2], p: usize, n: usize, k: usize| {
            Mat::from_fn(n, n, |i, j| {
                if i < k && j < k {
                    g[0][p][(i, j)]
                } else if i >= k && j >= k {
                    g[1][p][(i - k, j - k)]
                } else {
                    0.0
                }
            })
        };
        let ohd: Hd = [o.v.clone(), o.p[0].clone(), o.p[1].clone(), o.p[2].clone()];
        for sign in [1.0, -1.0] {
            // K–D generators
            let x = transform(&o, &KdGen { s: &sl }, &KdGen { s: &sr }, sign, &dirs());
            let fl = [0, 1, 2].map(|p| kd_full(&sl[p], nl));
            let fr = [0, 1, 2].map(|p| kd_full(&sr[p], nr));
            let full = hd_mul(&hd_mul(&exp(&fl, -sign), &ohd), &exp(&fr, sign));
            for part in 0..3 {
                let e = max_abs((&full[part + 1] - &x.p[part]).as_ref());
                assert!(e < 1e-13, "KD, σ = {sign}, part {part}: {e}");
            }
            // block generators
            let bl = BlockGen {
                gk: &gl[0],
                gd: &gl[1],
            };
            let br = BlockGen {
                gk: &gr[0],
                gd: &gr[1],
            };
            let x = transform(&o, &bl, &br, sign, &dirs());
            let fl = [0, 1, 2].map(|p| block_full(&gl, p, nl, kl));
            let fr = [0, 1, 2].map(|p| block_full(&gr, p, nr, kr));
            let full = hd_mul(&hd_mul(&exp(&fl, -sign), &ohd), &exp(&fr, sign));
            for part in 0..3 {
                let e = max_abs((&full[part + 1] - &x.p[part]).as_ref());
                assert!(e < 1e-13, "block, σ = {sign}, part {part}: {e}");
            }
        }
        // a diagonal pair (a, a) is the same algebra with b = a
        let d = Directions::new(vec![Variable::EpsD], [(0, 0)]);
        let o1 = MatJet {
            v: o.v.clone(),
            p: vec![o.p[0].clone(), o.p[2].clone()],
        };
        let s1 = vec![sl[0].clone(), sl[2].clone()];
        let r1 = vec![sr[0].clone(), sr[2].clone()];
        let x = transform(&o1, &KdGen { s: &s1 }, &KdGen { s: &r1 }, 1.0, &d);
        let fl = [
            kd_full(&s1[0], nl),
            kd_full(&s1[0], nl),
            kd_full(&s1[1], nl),
        ];
        let fr = [
            kd_full(&r1[0], nr),
            kd_full(&r1[0], nr),
            kd_full(&r1[1], nr),
        ];
        let ohd: Hd = [o.v.clone(), o.p[0].clone(), o.p[0].clone(), o.p[2].clone()];
        let full = hd_mul(&hd_mul(&exp(&fl, -1.0), &ohd), &exp(&fr, 1.0));
        assert!(max_abs((&full[3] - &x.p[1]).as_ref()) < 1e-13);
    }

    #[test]
    fn symmetric_transform_agrees_with_the_general_one() {
        let mut seed = 13;
        let (n, k) = (7, 3);
        for diagonal in [false, true] {
            let v = if diagonal {
                Mat::from_fn(n, n, |i, j| if i == j { 0.1 * i as f64 + 0.2 } else { 0.0 })
            } else {
                sym(n, &mut seed)
            };
            let o = MatJet {
                v,
                p: (0..3).map(|_| sym(n, &mut seed)).collect(),
            };
            let s: Vec<Mat<f64>> = (0..3).map(|_| random(k, n - k, &mut seed)).collect();
            let g: [Vec<Mat<f64>>; 2] = [
                (0..3).map(|_| antisym(k, &mut seed)).collect(),
                (0..3).map(|_| antisym(n - k, &mut seed)).collect(),
            ];
            let gens: [&dyn Generator; 2] = [
                &KdGen { s: &s },
                &BlockGen {
                    gk: &g[0],
                    gd: &g[1],
                },
            ];
            for generator in gens {
                for sign in [1.0, -1.0] {
                    let a = transform(&o, generator, generator, sign, &dirs());
                    let b = transform_symmetric(&o, generator, sign, diagonal, &dirs());
                    for part in 0..3 {
                        let e = max_abs((&a.p[part] - &b.p[part]).as_ref());
                        assert!(
                            e < 1e-13,
                            "diagonal {diagonal}, σ = {sign}, part {part}: {e}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn block_restricted_transforms_agree_with_the_whole_ones() {
        // The cluster frame on the pole blocks alone, and the solver's frame without the pairs'
        // DD block, against the whole transforms on every block they compute.
        let mut seed = 29;
        let (nl, nr, kl, kr) = (9, 7, 3, 2);
        let o = MatJet {
            v: random(nl, nr, &mut seed),
            p: (0..3).map(|_| random(nl, nr, &mut seed)).collect(),
        };
        let gens = |k: usize, n: usize, seed: &mut u64| -> [Vec<Mat<f64>>; 2] {
            [
                (0..3).map(|_| antisym(k, seed)).collect(),
                (0..3).map(|_| antisym(n - k, seed)).collect(),
            ]
        };
        let (gl, gr) = (gens(kl, nl, &mut seed), gens(kr, nr, &mut seed));
        let block = |m: &Mat<f64>, (r, c): (Range<usize>, Range<usize>)| {
            m.as_ref()
                .submatrix(r.start, c.start, r.len(), c.len())
                .to_owned()
        };
        let (kk, kd, dk, dd) = (
            (0..kl, 0..kr),
            (0..kl, kr..nr),
            (kl..nl, 0..kr),
            (kl..nl, kr..nr),
        );
        let whole = transform(
            &o,
            &BlockGen {
                gk: &gl[0],
                gd: &gl[1],
            },
            &BlockGen {
                gk: &gr[0],
                gd: &gr[1],
            },
            1.0,
            &dirs(),
        );
        // measured 0 (the same products); bound: round-off of n-term sums
        let tol = 1e-14;
        for with_dd in [false, true] {
            let x = cluster_transform(
                &o,
                (&gl[0], &gl[1]),
                (&gr[0], &gr[1]),
                (kl, kr),
                with_dd,
                &dirs(),
            );
            assert_eq!(x.v, o.v);
            let j = x.to_jet();
            for part in 0..3 {
                for b in [kd.clone(), dk.clone()] {
                    let e = block(&j.p[part], b.clone()) - block(&whole.p[part], b);
                    assert!(max_abs(e.as_ref()) < tol, "part {part}");
                }
                assert_eq!(max_abs(block(&j.p[part], kk.clone()).as_ref()), 0.0);
                let e = block(&j.p[part], dd.clone()) - block(&whole.p[part], dd.clone());
                let stale = max_abs(block(&j.p[part], dd.clone()).as_ref());
                if with_dd {
                    assert!(max_abs(e.as_ref()) < tol, "part {part}, DD");
                } else {
                    assert_eq!(stale, 0.0, "part {part}: DD not stored");
                }
            }
        }
        let sl: Vec<Mat<f64>> = (0..3).map(|_| random(kl, nl - kl, &mut seed)).collect();
        let sr: Vec<Mat<f64>> = (0..3).map(|_| random(kr, nr - kr, &mut seed)).collect();
        let (a, b) = (&KdGen { s: &sl }, &KdGen { s: &sr });
        let whole = transform(&o, a, b, 1.0, &dirs());
        let off = transform_off_dd(&o, a, b, 1.0, &dirs(), Some((kl, kr)));
        for part in 0..3 {
            let blocks = if part < dirs().first() {
                vec![kk.clone(), kd.clone(), dk.clone(), dd.clone()]
            } else {
                vec![kk.clone(), kd.clone(), dk.clone()]
            };
            for bl in blocks {
                let e = block(&off.p[part], bl.clone()) - block(&whole.p[part], bl);
                assert!(max_abs(e.as_ref()) < tol, "part {part}");
            }
        }
    }

    #[test]
    fn windows_are_unions_of_whole_clusters() {
        let frame = |ranges: Vec<Range<usize>>| ClusterFrame {
            ranges,
            g: Vec::new(),
            h: Vec::new(),
        };
        // K: {0}, {1, 2}, {3}; D (from 4): {0..9}, {9}, {10}, {11}
        let kept = frame(vec![0..1, 1..3, 3..4]);
        let discarded = frame(vec![0..9, 9..10, 10..11, 11..12]);
        let c = BlockClusters::join(&kept, &discarded, 4);
        let w = c.windows(16, 4);
        assert_eq!(w, vec![0..4, 4..13, 13..16]);
        // without clusters (a plain run) every column is its own
        let w = BlockClusters::default().windows(10, 4);
        assert_eq!(w, vec![0..4, 4..8, 8..10]);
    }

    #[test]
    fn cluster_frame_block_diagonalizes_to_second_order() {
        let mut seed = 5;
        // clusters {0,1}, {2}, {3,4,5}, {6}: exact and round-off degeneracies
        let e = [0.0, 1e-12, 0.5, 0.9, 0.9, 0.9 + 5e-9, 1.4];
        let n = e.len();
        let parts: Vec<Mat<f64>> = (0..3).map(|_| sym(n, &mut seed)).collect();
        let cf = cluster_frame(&e, &parts, &dirs());
        assert_eq!(cf.ranges, vec![0..2, 2..3, 3..6, 6..7]);
        let h: Hd = [
            Mat::from_fn(n, n, |i, j| if i == j { e[i] } else { 0.0 }),
            parts[0].clone(),
            parts[1].clone(),
            parts[2].clone(),
        ];
        let g = [cf.g[0].clone(), cf.g[1].clone(), cf.g[2].clone()];
        let ht = hd_mul(&hd_mul(&exp(&g, -1.0), &h), &exp(&g, 1.0));
        let id = |i: usize| cf.ranges.iter().position(|r| r.contains(&i)).unwrap();
        for part in 1..4 {
            for i in 0..n {
                for j in 0..n {
                    let x = ht[part][(i, j)];
                    if id(i) != id(j) {
                        assert!(x.abs() < 1e-11, "part {part} ({i},{j}): {x}");
                    } else {
                        let c = id(i);
                        let s = cf.ranges[c].start;
                        let y = cf.h[part - 1][c][(i - s, j - s)];
                        assert!((x - y).abs() < 1e-11, "part {part} ({i},{j}): {x} vs {y}");
                    }
                }
            }
        }
    }

    #[test]
    fn jet_product_follows_the_product_rule() {
        let mut seed = 9;
        let a = MatJet {
            v: random(4, 3, &mut seed),
            p: (0..3).map(|_| random(4, 3, &mut seed)).collect(),
        };
        let b = MatJet {
            v: random(3, 2, &mut seed),
            p: (0..3).map(|_| random(3, 2, &mut seed)).collect(),
        };
        let mut c = MatJet::zeros(5, 4, 3);
        mul_add(&mut c, (1, 2), &a, &b, 2.0, &dirs(), true);
        let ah: Hd = [a.v.clone(), a.p[0].clone(), a.p[1].clone(), a.p[2].clone()];
        let bh: Hd = [b.v.clone(), b.p[0].clone(), b.p[1].clone(), b.p[2].clone()];
        let full = hd_mul(&ah, &bh);
        for part in 0..4 {
            let got = if part == 0 { &c.v } else { &c.p[part - 1] };
            let sub = got.as_ref().submatrix(1, 2, 4, 2).to_owned();
            assert!(max_abs((&sub - &full[part] * faer::Scale(2.0)).as_ref()) < 1e-14);
        }
    }
}
