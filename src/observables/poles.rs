//! The poles of one block pair of one shell, with their derivative moments (design note
//! `spectral-derivatives.md`, §1.4 and §4, Steps 3–4).
//!
//! In the cluster frame of the shell, with X = d_σ (or X_F = d_σ n_σ̄) from block L to block R,
//! ρ = R̃ ⊕ ρ̃^D on each side and Ŷ = ρ_L X + X ρ_R (n_L×n_R), every pair (r, s) ∉ K×K is a pole
//! at Ω_rs = ω_N(E_s − E_r) with weight W = X_rs Ŷ_rs. Its moments, with
//! ad_x(Z) = Z B̃^x_R − B̃^x_L Z for the cluster-block-diagonal B̃^x = ω_N H̃^x (pole motion; C_N
//! cancels in it) and 𝒟(X, Y; x) = ½(ad_x(X)∘Y + X∘ad_x(Y)):
//!
//! ```text
//! W^i  = (X∘Ŷ)^i            (product rule)
//! D^i  = 𝒟(X, Ŷ; i)
//! W^ij = (X∘Ŷ)^ij
//! D^ij = 𝒟(X, Ŷ; ij) + 𝒟(X^j, Ŷ; i) + 𝒟(X, Ŷ^j; i) + 𝒟(X^i, Ŷ; j) + 𝒟(X, Ŷ^i; j)
//! Q^ij = ¼(ad_i ad_j X + ad_j ad_i X)∘Ŷ + ¼X∘(ad_i ad_j Ŷ + ad_j ad_i Ŷ)
//! ```
//!
//! For an isolated pole D^i = W ∂_iΩ and Q^ij = W ∂_iΩ ∂_jΩ; inside a cluster the same sums are
//! the exact Taylor coefficients of the broadening kernel, with no eigenvector of a degenerate
//! cluster ever chosen. The F poles of the self-energy trick use X_F on the X side and the same Ŷ.
//!
//! ρ̃^D is a function of the cluster-block-diagonal H̃_DD: its parts follow from Daleckii–Krein
//! with divided differences inside clusters only ([`discarded_parts`]), which never overflow.

use crate::broadening::PoleSink;
use crate::frames::{BlockClusters, ClusterFrame, MatJet, PoleBlocks, product_terms};
use crate::jet::Directions;
use crate::linalg::gemm;
use faer::{Mat, MatMut, MatRef};
use std::ops::Range;

/// The density matrix of one block in the cluster frame: R̃ on the kept states (dense k×k) and
/// ρ̃^D on the discarded ones (diagonal value, cluster-block-diagonal parts).
pub struct BlockRho {
    pub r: MatJet,
    /// ρ^D, the value (diagonal).
    pub d: Vec<f64>,
    /// D's clusters (indices within D) and ρ̃^D's parts on them: part → cluster → block.
    pub d_ranges: Vec<Range<usize>>,
    pub d_parts: Vec<Vec<Mat<f64>>>,
    /// Per part, the parts of the single-state clusters on the diagonal (0 elsewhere), and the
    /// clusters of more than one state: most act by scaling.
    d_diag: Vec<Vec<f64>>,
    d_multi: Vec<usize>,
    /// ρ^D and all its parts are 0 (discarded states far above T): the D side adds nothing.
    d_zero: bool,
}

impl BlockRho {
    pub fn new(
        r: MatJet,
        d: Vec<f64>,
        d_ranges: Vec<Range<usize>>,
        d_parts: Vec<Vec<Mat<f64>>>,
    ) -> BlockRho {
        let d_diag = d_parts
            .iter()
            .map(|blocks| {
                let mut v = vec![0.0; d.len()];
                for (rg, b) in d_ranges.iter().zip(blocks) {
                    if rg.len() == 1 {
                        v[rg.start] = b[(0, 0)];
                    }
                }
                v
            })
            .collect();
        let d_multi = (0..d_ranges.len())
            .filter(|&c| d_ranges[c].len() > 1)
            .collect();
        let d_zero = d.iter().all(|&x| x == 0.0)
            && d_parts
                .iter()
                .flatten()
                .all(|b| (0..b.ncols()).all(|j| (0..b.nrows()).all(|i| b[(i, j)] == 0.0)));
        BlockRho {
            r,
            d,
            d_ranges,
            d_parts,
            d_diag,
            d_multi,
            d_zero,
        }
    }

    /// Whether ρ^D and all its parts vanish (discarded states far above T).
    pub fn discarded_is_zero(&self) -> bool {
        self.d_zero
    }

    fn k(&self) -> usize {
        self.r.nrows()
    }

    /// dst += c·ρ^part·x, x with the block's rows (the left side of a pair), on the blocks of
    /// `poles` only.
    fn left(
        &self,
        part: Option<usize>,
        x: MatRef<'_, f64>,
        c: f64,
        mut dst: MatMut<'_, f64>,
        poles: PoleBlocks,
    ) {
        let (k, d) = (self.k(), self.d.len());
        let cols = x.ncols();
        if k > 0 {
            // K rows: the columns of their poles
            let cr = poles.cols(0, cols);
            gemm(
                dst.as_mut().submatrix_mut(0, cr.start, k, cr.len()),
                true,
                self.r.part(part).as_ref(),
                x.submatrix(0, cr.start, k, cr.len()),
                c,
            );
        }
        if d == 0 || self.d_zero {
            return;
        }
        let cr = poles.cols(k, cols);
        match part {
            None => {
                for j in cr {
                    for i in 0..d {
                        dst[(k + i, j)] += c * self.d[i] * x[(k + i, j)];
                    }
                }
            }
            Some(p) => {
                let diag = &self.d_diag[p];
                for j in cr {
                    for i in 0..d {
                        dst[(k + i, j)] += c * diag[i] * x[(k + i, j)];
                    }
                    for &cl in &self.d_multi {
                        let (r, b) = (&self.d_ranges[cl], &self.d_parts[p][cl]);
                        for (ii, i) in r.clone().enumerate() {
                            let mut s = 0.0;
                            for (ll, l) in r.clone().enumerate() {
                                s += b[(ii, ll)] * x[(k + l, j)];
                            }
                            dst[(k + i, j)] += c * s;
                        }
                    }
                }
            }
        }
    }

    /// dst += c·x·ρ^part, x with the block's columns (the right side of a pair), on the blocks
    /// of `poles` only.
    fn right(
        &self,
        part: Option<usize>,
        x: MatRef<'_, f64>,
        c: f64,
        mut dst: MatMut<'_, f64>,
        poles: PoleBlocks,
    ) {
        let (k, d) = (self.k(), self.d.len());
        let rows = x.nrows();
        if k > 0 {
            // K columns: the rows of their poles
            let rr = poles.rows(0, rows);
            gemm(
                dst.as_mut().submatrix_mut(rr.start, 0, rr.len(), k),
                true,
                x.submatrix(rr.start, 0, rr.len(), k),
                self.r.part(part).as_ref(),
                c,
            );
        }
        if d == 0 || self.d_zero {
            return;
        }
        let rr = poles.rows(k, rows);
        match part {
            None => {
                for j in 0..d {
                    let w = c * self.d[j];
                    for i in rr.clone() {
                        dst[(i, k + j)] += w * x[(i, k + j)];
                    }
                }
            }
            Some(p) => {
                let diag = &self.d_diag[p];
                for j in 0..d {
                    let w = c * diag[j];
                    if w == 0.0 {
                        continue;
                    }
                    for i in rr.clone() {
                        dst[(i, k + j)] += w * x[(i, k + j)];
                    }
                }
                for &cl in &self.d_multi {
                    let (r, b) = (&self.d_ranges[cl], &self.d_parts[p][cl]);
                    for (jj, j) in r.clone().enumerate() {
                        for i in rr.clone() {
                            let mut s = 0.0;
                            for (ll, l) in r.clone().enumerate() {
                                s += x[(i, k + l)] * b[(ll, jj)];
                            }
                            dst[(i, k + j)] += c * s;
                        }
                    }
                }
            }
        }
    }
}

/// exprel(z) = (e^z − 1)/z, continuous at 0.
pub fn exprel(z: f64) -> f64 {
    if z == 0.0 { 1.0 } else { z.exp_m1() / z }
}

/// The parts of ρ̃^D = e^L g(ω H̃_DD), g(x) = e^{−x/T}, in D's cluster frame (design note §4,
/// Step 3). `rho` is the value ρ_r = e^{L⁰ − x_r/T} (as the value pass computes it), `x` the
/// physical energies ω_N E_r, `l` the parts of the scalar L = ln 4^{N_max−N} − ln Z − C_N/T.
/// Inside a cluster, with ĝ the divided differences of e^{L⁰}g:
///
/// ```text
/// ρ^i  = L^i ρ δ + ĝ^[1]∘(ωH̃^i)
/// ρ^ij = (L^ij + L^i L^j) ρ δ + L^i ĝ^[1]∘(ωH̃^j) + L^j ĝ^[1]∘(ωH̃^i) + ĝ^[1]∘(ωH̃^ij)
///        + Σ_q ĝ^[2](r, q, s) ω²(H̃^i_rq H̃^j_qs + H̃^j_rq H̃^i_qs)
/// ```
///
/// with ĝ^[1](r, s) = −T⁻¹ max(ρ_r, ρ_s) exprel(−|x_r − x_s|/T), exact, and ĝ^[2] the second
/// divided difference: ½ĝ″ at the mean when the three energies lie within 2e-5·T (its error is
/// (spread/T)²/24 ≤ 2e-11 relative), else the difference of two ĝ^[1] (whose cancellation costs
/// ε·T/spread ≤ 1e-11).
#[allow(clippy::too_many_arguments)]
pub fn discarded_parts(
    rho: &[f64],
    x: &[f64],
    t: f64,
    omega: f64,
    frame: &ClusterFrame,
    l: &[f64],
    dirs: &Directions,
) -> Vec<Vec<Mat<f64>>> {
    let g1 =
        |a: usize, b: usize| -> f64 { -rho[a].max(rho[b]) / t * exprel(-(x[a] - x[b]).abs() / t) };
    let g2 = |a: usize, q: usize, b: usize| -> f64 {
        let mut idx = [a, q, b];
        idx.sort_by(|&u, &v| x[u].total_cmp(&x[v]));
        let [lo, mid, hi] = idx;
        if x[hi] - x[lo] < 2e-5 * t {
            let mean = (x[a] + x[q] + x[b]) / 3.0;
            0.5 / (t * t) * rho[lo] * (-(mean - x[lo]) / t).exp()
        } else {
            (g1(lo, mid) - g1(mid, hi)) / (x[lo] - x[hi])
        }
    };
    let m = dirs.first();
    let mut out: Vec<Vec<Mat<f64>>> = Vec::with_capacity(dirs.parts());
    for a in 0..m {
        let blocks = frame
            .ranges
            .iter()
            .zip(&frame.h[a])
            .map(|(r, h)| {
                let s = r.start;
                Mat::from_fn(r.len(), r.len(), |i, j| {
                    let diag = if i == j { l[a] * rho[s + i] } else { 0.0 };
                    diag + g1(s + i, s + j) * omega * h[(i, j)]
                })
            })
            .collect();
        out.push(blocks);
    }
    for (q, &(a, b)) in dirs.pairs().iter().enumerate() {
        let p = m + q;
        let blocks = frame
            .ranges
            .iter()
            .enumerate()
            .map(|(c, r)| {
                let s = r.start;
                let (ha, hb, hp) = (&frame.h[a][c], &frame.h[b][c], &frame.h[p][c]);
                let n = r.len();
                Mat::from_fn(n, n, |i, j| {
                    let d1 = g1(s + i, s + j) * omega;
                    let mut v = l[a] * d1 * hb[(i, j)] + l[b] * d1 * ha[(i, j)] + d1 * hp[(i, j)];
                    if i == j {
                        v += (l[p] + l[a] * l[b]) * rho[s + i];
                    }
                    for k in 0..n {
                        v += g2(s + i, s + k, s + j)
                            * omega
                            * omega
                            * (ha[(i, k)] * hb[(k, j)] + hb[(i, k)] * ha[(k, j)]);
                    }
                    v
                })
            })
            .collect();
        out.push(blocks);
    }
    out
}

/// A matrix and the cluster actions on it that the moments need: ad_i, ad_ij of the value,
/// ad_i of part j and ad_j of part i (per pair), and ad_i ad_j + ad_j ad_i of the value — on
/// one window of columns at a time ([`BlockClusters::windows`]), in buffers reused from window
/// to window: the actions never mix columns of different clusters, so no whole matrix of them
/// is ever formed.
struct Side<'a> {
    m: &'a MatJet,
    /// The first column of the current window (column 0 of every buffer).
    c0: usize,
    ad1: Vec<Mat<f64>>,
    ad_pair: Vec<Mat<f64>>,
    /// Per pair (i, j): [ad_i(M^j), ad_j(M^i)].
    ad_cross: Vec<[Mat<f64>; 2]>,
    ad2: Vec<Mat<f64>>,
    tmp: Mat<f64>,
}

impl<'a> Side<'a> {
    /// Buffers for windows of up to `width` columns.
    fn new(m: &'a MatJet, width: usize, dirs: &Directions) -> Side<'a> {
        let buf = || Mat::<f64>::zeros(m.nrows(), width);
        let pairs = dirs.pairs().len();
        Side {
            m,
            c0: 0,
            ad1: (0..dirs.first()).map(|_| buf()).collect(),
            ad_pair: (0..pairs).map(|_| buf()).collect(),
            ad_cross: (0..pairs).map(|_| [buf(), buf()]).collect(),
            ad2: (0..pairs).map(|_| buf()).collect(),
            tmp: buf(),
        }
    }

    /// The actions on the columns `window` (a union of whole clusters of the right block).
    fn fill(
        &mut self,
        bl: &BlockClusters,
        br: &BlockClusters,
        dirs: &Directions,
        poles: PoleBlocks,
        window: Range<usize>,
    ) {
        let (c0, w) = (window.start, window.len());
        self.c0 = c0;
        let m = self.m;
        let ad = |z: MatRef<'_, f64>, part: usize, dst: &mut Mat<f64>| {
            BlockClusters::ad_into(
                bl,
                br,
                part,
                z,
                c0,
                1.0,
                dst.as_mut().subcols_mut(0, w),
                poles,
            );
        };
        let cols = |x: &'a Mat<f64>| x.as_ref().subcols(c0, w);
        let first = dirs.first();
        for i in 0..first {
            ad(cols(&m.v), i, &mut self.ad1[i]);
        }
        for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
            ad(cols(&m.v), first + q, &mut self.ad_pair[q]);
            let [c0m, c1m] = &mut self.ad_cross[q];
            if i == j {
                // a diagonal pair: the two halves coincide
                ad(cols(&m.p[i]), i, c0m);
                c1m.as_mut()
                    .subcols_mut(0, w)
                    .copy_from(c0m.as_ref().subcols(0, w));
                ad(self.ad1[i].as_ref().subcols(0, w), i, &mut self.ad2[q]);
                for jj in 0..w {
                    let rows = poles.rows(c0 + jj, m.nrows());
                    for x in &mut self.ad2[q].col_as_slice_mut(jj)[rows] {
                        *x *= 2.0;
                    }
                }
            } else {
                ad(cols(&m.p[j]), i, c0m);
                ad(cols(&m.p[i]), j, c1m);
                ad(self.ad1[j].as_ref().subcols(0, w), i, &mut self.ad2[q]);
                ad(self.ad1[i].as_ref().subcols(0, w), j, &mut self.tmp);
                for jj in 0..w {
                    let rows = poles.rows(c0 + jj, m.nrows());
                    let t = &self.tmp.col_as_slice(jj)[rows.clone()];
                    for (x, y) in self.ad2[q].col_as_slice_mut(jj)[rows].iter_mut().zip(t) {
                        *x += y;
                    }
                }
            }
        }
    }
}

/// Moments of every pole (r, s) of column s, from the X side `x` and the Ŷ side `y`:
/// `buf[k·rows + r]` for moment k of [W^x (parts), D^x (parts), Q^ij (pairs)], D in physical
/// units (× ω_N) and Q × ω_N². Column slices, so that every loop is a plain vector operation;
/// only the rows `rows_used` (the poles of the column) are computed.
fn column_moments(
    x: &Side<'_>,
    y: &Side<'_>,
    s: usize,
    rows_used: Range<usize>,
    omega: f64,
    dirs: &Directions,
    buf: &mut [f64],
) {
    let parts = dirs.parts();
    let first = dirs.first();
    let rows = x.m.nrows();
    fn column(m: &Mat<f64>, s: usize) -> &[f64] {
        m.col_as_slice(s)
    }
    let c = |m| column(m, s);
    // the actions' buffers hold the window's columns from x.c0 on (y's are the same window)
    let a = |m| column(m, s - x.c0);
    let (xv, yv) = (c(&x.m.v), c(&y.m.v));
    let (w_part, rest) = buf.split_at_mut(parts * rows);
    let (d_part, q_part) = rest.split_at_mut(parts * rows);
    for p in 0..parts {
        let out = &mut w_part[p * rows..(p + 1) * rows];
        out.fill(0.0);
        let (terms, n) = product_terms(dirs, p);
        for &(a, b) in &terms[..n] {
            let (xa, yb) = (c(x.m.part(a)), c(y.m.part(b)));
            for r in rows_used.clone() {
                out[r] += xa[r] * yb[r];
            }
        }
    }
    let half = 0.5 * omega;
    for i in 0..first {
        let out = &mut d_part[i * rows..(i + 1) * rows];
        let (ax, ay) = (a(&x.ad1[i]), a(&y.ad1[i]));
        for r in rows_used.clone() {
            out[r] = half * (ax[r] * yv[r] + xv[r] * ay[r]);
        }
    }
    for (q, &(i, j)) in dirs.pairs().iter().enumerate() {
        // 𝒟(X, Ŷ; ij) + 𝒟(X^j, Ŷ; i) + 𝒟(X, Ŷ^j; i) + 𝒟(X^i, Ŷ; j) + 𝒟(X, Ŷ^i; j)
        let out = &mut d_part[(first + q) * rows..(first + q + 1) * rows];
        let (px, py) = (a(&x.ad_pair[q]), a(&y.ad_pair[q]));
        let (cx0, cy0) = (a(&x.ad_cross[q][0]), a(&y.ad_cross[q][0]));
        let (cx1, cy1) = (a(&x.ad_cross[q][1]), a(&y.ad_cross[q][1]));
        let (xj, yj, xi, yi) = (c(&x.m.p[j]), c(&y.m.p[j]), c(&x.m.p[i]), c(&y.m.p[i]));
        let (axi, ayi, axj, ayj) = (a(&x.ad1[i]), a(&y.ad1[i]), a(&x.ad1[j]), a(&y.ad1[j]));
        for r in rows_used.clone() {
            out[r] = half
                * ((px[r] + cx0[r] + cx1[r]) * yv[r]
                    + xv[r] * (py[r] + cy0[r] + cy1[r])
                    + xj[r] * ayi[r]
                    + axi[r] * yj[r]
                    + xi[r] * ayj[r]
                    + axj[r] * yi[r]);
        }
        let out = &mut q_part[q * rows..(q + 1) * rows];
        let (x2, y2) = (a(&x.ad2[q]), a(&y.ad2[q]));
        let quarter = 0.25 * omega * omega;
        for r in rows_used.clone() {
            out[r] = quarter * (x2[r] * yv[r] + xv[r] * y2[r]);
        }
    }
}

/// One block (its energies, kept count, density matrix, cluster parts of H̃) as a side of a pair.
pub struct BlockView<'a> {
    pub energies: &'a [f64],
    pub kept: usize,
    pub rho: &'a BlockRho,
    /// H̃'s cluster blocks (empty for a plain run).
    pub clusters: &'a BlockClusters,
}

/// Sums over the poles of one spin: Σ W, Σ W_F, ⟨d†d⟩ and ∫A f dω, with the parts of the first
/// three.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoleSums {
    pub weight: f64,
    pub weight_f: f64,
    pub occupation: f64,
    pub occupation_spectral: f64,
    pub weight_parts: Vec<f64>,
    /// Σ|∂W|: the scale against which Σ∂W = 0 is round-off.
    pub weight_abs_parts: Vec<f64>,
    pub weight_f_parts: Vec<f64>,
    pub occupation_parts: Vec<f64>,
}

impl PoleSums {
    pub fn new(parts: usize) -> PoleSums {
        PoleSums {
            weight_parts: vec![0.0; parts],
            weight_abs_parts: vec![0.0; parts],
            weight_f_parts: vec![0.0; parts],
            occupation_parts: vec![0.0; parts],
            ..PoleSums::default()
        }
    }

    /// Negate the parts marked `odd` (see [`crate::broadening::PoleSink::negate_parts`]).
    pub fn negate_parts(&mut self, odd: &[bool]) {
        for v in [
            &mut self.weight_parts,
            &mut self.weight_f_parts,
            &mut self.occupation_parts,
        ] {
            for (x, &o) in v.iter_mut().zip(odd) {
                if o {
                    *x = -*x;
                }
            }
        }
    }

    /// self += c·other.
    pub fn merge(&mut self, o: &PoleSums, c: f64) {
        self.weight += c * o.weight;
        self.weight_f += c * o.weight_f;
        self.occupation += c * o.occupation;
        self.occupation_spectral += c * o.occupation_spectral;
        for (a, b) in [
            (&mut self.weight_parts, &o.weight_parts),
            (&mut self.weight_abs_parts, &o.weight_abs_parts),
            (&mut self.weight_f_parts, &o.weight_f_parts),
            (&mut self.occupation_parts, &o.occupation_parts),
        ] {
            for (x, y) in a.iter_mut().zip(b) {
                *x += c * y;
            }
        }
    }
}

/// The poles of X between blocks `l` and `r` of a shell at scale `omega` (and of X_F, with
/// `xf`), into `sink` (and `sink_f`), with their sums. The values are computed exactly as a
/// plain run computes them, whatever the parts.
#[allow(clippy::too_many_arguments)]
pub fn pair_poles<S: PoleSink>(
    omega: f64,
    t: f64,
    l: &BlockView<'_>,
    r: &BlockView<'_>,
    x: &MatJet,
    xf: Option<&MatJet>,
    dirs: &Directions,
    sink: &mut S,
    sink_f: Option<&mut S>,
    sums: &mut PoleSums,
) {
    let pair = (l, r, x, xf);
    pair_poles_in_windows(omega, t, pair, dirs, sink, sink_f, sums, WINDOW);
}

/// [`pair_poles`] with the cluster actions computed `window` columns at a time (or one cluster,
/// if wider): the result does not depend on it.
#[allow(clippy::too_many_arguments)]
fn pair_poles_in_windows<S: PoleSink>(
    omega: f64,
    t: f64,
    (l, r, x, xf): (&BlockView<'_>, &BlockView<'_>, &MatJet, Option<&MatJet>),
    dirs: &Directions,
    sink: &mut S,
    mut sink_f: Option<&mut S>,
    sums: &mut PoleSums,
    window: usize,
) {
    let (kl, kr) = (l.kept, r.kept);
    let (nl, nr) = (l.energies.len(), r.energies.len());
    let xv = x.v.as_ref();
    // ρ_L X: kept rows through R_L, discarded rows scaled by ρ^D
    let mut rx = Mat::<f64>::zeros(nl, nr);
    for j in 0..nr {
        let (dst, src) = (rx.col_as_slice_mut(j), x.v.col_as_slice(j));
        for i in kl..nl {
            dst[i] = l.rho.d[i - kl] * src[i];
        }
    }
    if kl > 0 {
        gemm(
            rx.as_mut().submatrix_mut(0, 0, kl, nr),
            false,
            l.rho.r.v.as_ref(),
            xv.submatrix(0, 0, kl, nr),
            1.0,
        );
    }
    // X ρ_R: kept columns through R_R, discarded columns scaled by ρ^D
    let mut xr = Mat::<f64>::zeros(nl, nr);
    for j in kr..nr {
        let w = r.rho.d[j - kr];
        let (dst, src) = (xr.col_as_slice_mut(j), x.v.col_as_slice(j));
        for i in 0..nl {
            dst[i] = src[i] * w;
        }
    }
    if kr > 0 {
        gemm(
            xr.as_mut().submatrix_mut(0, 0, nl, kr),
            false,
            xv.submatrix(0, 0, nl, kr),
            r.rho.r.v.as_ref(),
            1.0,
        );
    }
    let parts = dirs.parts();
    // Where ρ^D is exactly zero on both sides (shells far above T, whose discarded states carry
    // no weight), every discarded–discarded pole has W = 0 and zero moments (Ŷ_DD = 0, and the
    // cluster actions do not mix K with D): skipping them changes nothing.
    let dd_zero = l.rho.d.iter().all(|&x| x == 0.0) && r.rho.d.iter().all(|&x| x == 0.0);
    // the blocks that hold poles: the derivative side computes those alone (ρ and the cluster
    // actions are block-diagonal in K ⊕ D, so no other entry enters them)
    let poles = PoleBlocks {
        kl,
        kr,
        dd: !dd_zero,
    };
    // the derivative side: Ŷ = ρ_L X + X ρ_R and X ρ_R as jets, their cluster actions
    let jets = (parts > 0).then(|| {
        let mut y = MatJet::zeros(nl, nr, parts);
        let mut xrj = MatJet::zeros(nl, nr, parts);
        for p in 0..parts {
            let (terms, n) = product_terms(dirs, p);
            // a diagonal pair's two cross terms coincide: once, twice the weight
            let (n, twice) = if n == 4 && terms[2] == terms[3] {
                (3, true)
            } else {
                (n, false)
            };
            for (t, &(a, b)) in terms[..n].iter().enumerate() {
                let c = if twice && t == 2 { 2.0 } else { 1.0 };
                l.rho.left(a, x.part(b).as_ref(), c, y.p[p].as_mut(), poles);
                r.rho
                    .right(a, x.part(b).as_ref(), c, xrj.p[p].as_mut(), poles);
            }
            y.p[p] += &xrj.p[p];
        }
        y.v = &rx + &xr;
        xrj.v = xr.clone();
        (y, xrj)
    });
    // windows of whole clusters of the right block; one cluster may be wider than WINDOW
    let windows = r.clusters.windows(nr, window);
    let buffer = windows.iter().map(Range::len).fold(window, usize::max);
    let mut sides = jets.as_ref().map(|(y, _)| {
        let side = |m| Side::new(m, buffer, dirs);
        (side(y), side(x), xf.map(side))
    });
    let width = 2 * parts + dirs.pairs().len();
    let mut mom = vec![0.0; width];
    let mut mom_f = vec![0.0; width];
    let mut col = vec![0.0; width * nl];
    let mut col_f = vec![0.0; width * nl];
    for window in windows {
        if let Some((ys, xs, fs)) = sides.as_mut() {
            for side in [Some(ys), Some(xs), fs.as_mut()].into_iter().flatten() {
                side.fill(l.clusters, r.clusters, dirs, poles, window.clone());
            }
        }
        for j in window {
            let rows = poles.rows(j, nl);
            if rows.is_empty() {
                continue;
            }
            if let Some((ys, xs, fs)) = sides.as_ref() {
                column_moments(xs, ys, j, rows.clone(), omega, dirs, &mut col);
                if let Some(fs) = fs {
                    column_moments(fs, ys, j, rows.clone(), omega, dirs, &mut col_f);
                }
                // Σ ∂W, Σ ∂W_F and ∂⟨d†d⟩ = Σ (X∘Xρ)^x over the poles of this column
                let (_, xrj) = jets.as_ref().expect("jets with sides");
                for p in 0..parts {
                    let w = &col[p * nl..(p + 1) * nl][rows.clone()];
                    sums.weight_parts[p] += w.iter().sum::<f64>();
                    sums.weight_abs_parts[p] += w.iter().map(|x| x.abs()).sum::<f64>();
                    if fs.is_some() {
                        sums.weight_f_parts[p] += col_f[p * nl..(p + 1) * nl][rows.clone()]
                            .iter()
                            .sum::<f64>();
                    }
                    let (terms, n) = product_terms(dirs, p);
                    for &(a, b) in &terms[..n] {
                        let (xa, yb) = (x.part(a).col_as_slice(j), xrj.part(b).col_as_slice(j));
                        for i in rows.clone() {
                            sums.occupation_parts[p] += xa[i] * yb[i];
                        }
                    }
                }
            }
            let (xc, rxc, xrc) = (x.v.col_as_slice(j), rx.col_as_slice(j), xr.col_as_slice(j));
            let xfc = xf.map(|f| f.v.col_as_slice(j));
            let ej = r.energies[j];
            for i in rows {
                let v = xc[i];
                let y = rxc[i] + xrc[i];
                let w = v * y;
                let big = omega * (ej - l.energies[i]);
                if sides.is_some() {
                    for k in 0..width {
                        mom[k] = col[k * nl + i];
                        mom_f[k] = col_f[k * nl + i];
                    }
                }
                let slot = sink.locate(big);
                sink.add_at(slot, big, w, &mom);
                sums.weight += w;
                if let (Some(fsink), Some(xfc)) = (sink_f.as_mut(), xfc) {
                    let wf = xfc[i] * y;
                    fsink.add_at(slot, big, wf, &mom_f);
                    sums.weight_f += wf;
                }
                sums.occupation += v * xrc[i];
                sums.occupation_spectral += w * fermi(big, t);
            }
        }
    }
}

/// Columns per window of the derivative side's cluster actions: their buffers (14 per side, three
/// sides) stay in cache while the window's moments are read.
const WINDOW: usize = 16;

/// Beyond |x/T| = 40 it is 0 or 1 to e^{−40} = 4e-18 (relative), and most poles are that far
/// from the Fermi level: no exponential for them.
pub fn fermi(x: f64, t: f64) -> f64 {
    let y = x / t;
    if y > 40.0 {
        0.0
    } else if y < -40.0 {
        1.0
    } else if y > 0.0 {
        let e = (-y).exp();
        e / (1.0 + e)
    } else {
        1.0 / (1.0 + y.exp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Variable;

    /// Every pole as it arrives: (Ω, W, moments).
    #[derive(Default)]
    struct Recorder(Vec<(f64, f64, Vec<f64>)>);

    impl PoleSink for Recorder {
        type Slot = ();
        fn empty_like(&self) -> Self {
            Recorder::default()
        }
        fn locate(&self, _: f64) {}
        fn add_at(&mut self, _: (), big: f64, w: f64, moments: &[f64]) {
            self.0.push((big, w, moments.to_vec()));
        }
        fn merge(&mut self, other: &Self, _: f64) {
            self.0.extend(other.0.iter().cloned());
        }
        fn negate_parts(&mut self, _: &[bool]) {}
    }

    fn random(n: usize, m: usize, seed: &mut u64) -> Mat<f64> {
        Mat::from_fn(n, m, |_, _| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        })
    }

    fn sym(n: usize, seed: &mut u64) -> Mat<f64> {
        let a = random(n, n, seed);
        Mat::from_fn(n, n, |i, j| a[(i, j)] + a[(j, i)])
    }

    /// A cluster frame over `ranges` with symmetric cluster blocks for every part.
    fn frame(ranges: Vec<Range<usize>>, parts: usize, seed: &mut u64) -> ClusterFrame {
        let h = (0..parts)
            .map(|_| ranges.iter().map(|r| sym(r.len(), seed)).collect())
            .collect();
        ClusterFrame {
            ranges,
            g: Vec::new(),
            h,
        }
    }

    /// Single-state clusters on 0..n, with one cluster over `wide`.
    fn ranges(n: usize, wide: Range<usize>) -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = (0..wide.start).map(|i| i..i + 1).collect();
        out.push(wide.clone());
        out.extend((wide.end..n).map(|i| i..i + 1));
        out
    }

    #[test]
    fn a_cluster_wider_than_a_window_gives_the_same_poles() {
        // A right block whose discarded states hold one cluster of 20 (more than a window),
        // diagonal and mixed pairs, ρ^D on both sides: windows of 4 columns and one window
        // over the whole block must give every pole and moment bit for bit.
        let mut seed = 17;
        let dirs = Directions::new(vec![Variable::EpsD, Variable::U], [(0, 0), (0, 1), (1, 1)]);
        let parts = dirs.parts();
        let (nl, kl, nr, kr) = (12, 4, 30, 6);
        // ascending, the wide cluster's discarded states all at one energy
        let energies = |n: usize, k: usize, wide: &Range<usize>| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    let in_wide = i >= k && wide.contains(&(i - k));
                    0.3 * if in_wide { k + wide.start } else { i } as f64
                })
                .collect()
        };
        let (wide_l, wide_r) = (2..5, 3..23);
        let (el, er) = (energies(nl, kl, &wide_l), energies(nr, kr, &wide_r));
        let block = |k: usize, n: usize, wide: Range<usize>, seed: &mut u64| {
            let kf = frame((0..k).map(|i| i..i + 1).collect(), parts, seed);
            let df = frame(ranges(n - k, wide), parts, seed);
            let clusters = BlockClusters::join(&kf, &df, k);
            let r = MatJet {
                v: sym(k, seed),
                p: (0..parts).map(|_| sym(k, seed)).collect(),
            };
            let d: Vec<f64> = (0..n - k).map(|i| 0.1 / (1.0 + i as f64)).collect();
            let d_parts = df.h.clone();
            (clusters, BlockRho::new(r, d, df.ranges.clone(), d_parts))
        };
        let (cl, rl) = block(kl, nl, wide_l, &mut seed);
        let (cr, rr) = block(kr, nr, wide_r, &mut seed);
        let l = BlockView {
            energies: &el,
            kept: kl,
            rho: &rl,
            clusters: &cl,
        };
        let r = BlockView {
            energies: &er,
            kept: kr,
            rho: &rr,
            clusters: &cr,
        };
        let jet = |seed: &mut u64| MatJet {
            v: random(nl, nr, seed),
            p: (0..parts).map(|_| random(nl, nr, seed)).collect(),
        };
        let (x, xf) = (jet(&mut seed), jet(&mut seed));
        let run = |window: usize| {
            let (mut sink, mut sink_f) = (Recorder::default(), Recorder::default());
            let mut sums = PoleSums::new(parts);
            pair_poles_in_windows(
                0.7,
                0.05,
                (&l, &r, &x, Some(&xf)),
                &dirs,
                &mut sink,
                Some(&mut sink_f),
                &mut sums,
                window,
            );
            (sink.0, sink_f.0, sums)
        };
        let (narrow, whole) = (run(4), run(1000));
        assert_eq!(narrow.0.len(), nl * nr - kl * kr);
        assert_eq!(narrow.0, whole.0);
        assert_eq!(narrow.1, whole.1);
        assert_eq!(narrow.2, whole.2);
    }
}
