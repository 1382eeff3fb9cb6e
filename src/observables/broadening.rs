//! How poles become a smooth spectral function: the broadening kernel with its derivatives in
//! the pole position, logarithmic bins for pole weights and for their derivative moments, and an
//! exact (unbinned) sum for validation (design note `spectral-derivatives.md`, §1.5 and §5).
//!
//! A pole p contributes W_p K(ω, Ω_p) to A(ω). Its derivatives contribute through moments
//! (design note §4, Step 4): ∂_i A = Σ_p W^i_p K + D^i_p ∂_Ω K and
//! ∂_i∂_j A = Σ_p W^ij_p K + D^ij_p ∂_Ω K + Q^ij_p ∂²_Ω K. Every moment is binned like a weight
//! and the kernel's Ω-derivatives are applied once, at the end: nothing is done per frequency
//! before the end, whatever the number of poles.

use std::f64::consts::PI;

/// The broadening kernel K(ω, Ω), normalized (∫K dω = 1) for every pole Ω:
///
///   K = h(Ω)·P(ω, Ω) + (1 − h(Ω))·G(ω − Ω),   h(Ω) = 1 − exp(−(Ω/ω₀)²),
///   P = θ(ωΩ)/(√π b|Ω|)·exp(−u²), u = ln|ω/Ω|/b + b/4   (log-Gaussian),
///   G(x) = exp(−(x/γ)²)/(√π γ)                             (linear Gaussian, width γ ~ T).
///
/// The log-Gaussian is Weichselbaum–von Delft's θ(ωΩ)/(√π b|ω|)·exp(−(ln|ω/Ω|/b − b/4)²),
/// rewritten with the prefactor 1/|Ω| (the two are identical). The design note's §1.5 pairs
/// 1/|Ω| with −b/4, which integrates over ω to e^{b²/2} (1.197 at b = 0.6; the unit test below
/// caught it); with +b/4 it is normalized. Its Ω-derivatives keep the note's form
/// (∂_Ω P = κP/Ω, κ = 2u/b − 1), as a constant in u does not enter them.
///
/// Why the crossover is in the pole position Ω rather than in ω: each pole keeps exactly its
/// weight whatever the mix, so the broadened A integrates to Σ W. Poles with |Ω| ≪ T (discarded
/// pairs nearly degenerate at the scale T) would give the log-Gaussian's spikes at |ω| ≪ T; they
/// are smeared over ~T instead, which is the physical resolution at temperature T.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kernel {
    pub b: f64,
    /// ω₀ (0: no crossover).
    pub omega0: f64,
    /// γ.
    pub gamma: f64,
}

impl Kernel {
    /// Weight of the log-Gaussian part for a pole at Ω.
    fn log_share(&self, big: f64) -> f64 {
        if self.omega0 == 0.0 {
            1.0
        } else {
            -(-(big / self.omega0).powi(2)).exp_m1()
        }
    }

    /// K(ω, Ω).
    pub fn eval(&self, omega: f64, big: f64) -> f64 {
        let h = self.log_share(big);
        let mut k = 0.0;
        if h > 0.0 && omega * big > 0.0 {
            let u = (omega / big).ln() / self.b + self.b / 4.0;
            k += h * (-u * u).exp() / (PI.sqrt() * self.b * big.abs());
        }
        if h < 1.0 {
            let x = (omega - big) / self.gamma;
            k += (1.0 - h) * (-x * x).exp() / (PI.sqrt() * self.gamma);
        }
        k
    }
}

/// Pole weights on a logarithmic grid, one per sign of Ω: bins at |Ω_j| = exp(ℓ₀ + jΔ), each
/// weight split linearly in ln|Ω| between its two neighbouring bins (design note §5), so the
/// total weight is exact and the error of the broadened A is O(Δ²).
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    l0: f64,
    dl: f64,
    /// Weights of the bins at +|Ω_j| and at −|Ω_j|.
    pub pos: Vec<f64>,
    pub neg: Vec<f64>,
}

impl Binned {
    /// Bins from `lo` to (at least) `hi`, `per_decade` per decade.
    pub fn new(lo: f64, hi: f64, per_decade: usize) -> Binned {
        let dl = std::f64::consts::LN_10 / per_decade as f64;
        let l0 = lo.ln();
        let n = ((hi.ln() - l0) / dl).ceil().max(1.0) as usize + 1;
        Binned {
            l0,
            dl,
            pos: vec![0.0; n],
            neg: vec![0.0; n],
        }
    }

    /// |Ω| of bin j.
    pub fn center(&self, j: usize) -> f64 {
        (self.l0 + j as f64 * self.dl).exp()
    }

    /// Add weight `w` at Ω. A pole at exactly zero (degenerate states of neighbouring charge) is
    /// split evenly between the two signs, which keeps a particle–hole symmetric spectrum so.
    pub fn add(&mut self, big: f64, w: f64) {
        self.add_at(self.slot(big), w);
    }

    fn add_at(&mut self, slot: Slot, w: f64) {
        match slot {
            Slot::Zero => {
                self.pos[0] += 0.5 * w;
                self.neg[0] += 0.5 * w;
            }
            Slot::Edge { pos, j } => {
                let bins = if pos { &mut self.pos } else { &mut self.neg };
                bins[j] += w;
            }
            Slot::Split { pos, j, f } => {
                let bins = if pos { &mut self.pos } else { &mut self.neg };
                bins[j] += (1.0 - f) * w;
                bins[j + 1] += f * w;
            }
        }
    }

    /// Σ_j M_j K(ω, ±|Ω_j|).
    pub fn broaden(&self, kernel: &Kernel, omega: f64) -> f64 {
        let mut a = 0.0;
        for j in 0..self.pos.len() {
            let c = self.center(j);
            if self.pos[j] != 0.0 {
                a += self.pos[j] * kernel.eval(omega, c);
            }
            if self.neg[j] != 0.0 {
                a += self.neg[j] * kernel.eval(omega, -c);
            }
        }
        a
    }

    /// Total weight.
    pub fn total(&self) -> f64 {
        self.pos.iter().sum::<f64>() + self.neg.iter().sum::<f64>()
    }
}

/// K(ω, Ω) with its first and second derivatives in the pole position Ω (the moments D and Q of
/// a pole's motion are broadened with them):
///
///   ∂_Ω P = κP/Ω,  ∂²_Ω P = (κ² − κ − 2/b²)P/Ω²,  κ = 2u/b − 1;
///   ∂_Ω G = (2x/γ)G,  ∂²_Ω G = ((4x² − 2)/γ²)G,  x = (ω − Ω)/γ;
///   h′ = (2Ω/ω₀²)e^{−(Ω/ω₀)²},  h″ = (2/ω₀²)(1 − 2Ω²/ω₀²)e^{−(Ω/ω₀)²};
///   K′ = h′(P − G) + hP′ + (1 − h)G′,  K″ = h″(P − G) + 2h′(P′ − G′) + hP″ + (1 − h)G″.
impl Kernel {
    /// [`Kernel::eval_derivatives`] with ln|ω| and ln|Ω| given (bins know theirs) and each
    /// Gaussian skipped beyond 9 widths (e^{−81}): for derivative moments, whose round-off is
    /// far larger. The log-share h is 1 beyond 6ω₀ (1 − h = e^{−36}).
    pub fn eval_derivatives_cut(
        &self,
        omega: f64,
        ln_omega: f64,
        big: f64,
        ln_big: f64,
    ) -> [f64; 3] {
        const CUT: f64 = 9.0;
        let near = self.omega0 != 0.0 && big.abs() < 6.0 * self.omega0;
        let (h, h1, h2) = if near {
            let y = big / self.omega0;
            let e = (-y * y).exp();
            let w2 = self.omega0 * self.omega0;
            (
                -(-y * y).exp_m1(),
                2.0 * big / w2 * e,
                2.0 / w2 * (1.0 - 2.0 * y * y) * e,
            )
        } else {
            (1.0, 0.0, 0.0)
        };
        let (mut p0, mut p1, mut p2) = (0.0, 0.0, 0.0);
        if omega * big > 0.0 {
            let b = self.b;
            let u = (ln_omega - ln_big) / b + b / 4.0;
            if u.abs() < CUT {
                p0 = (-u * u).exp() / (PI.sqrt() * b * big.abs());
                let kappa = 2.0 * u / b - 1.0;
                p1 = kappa * p0 / big;
                p2 = (kappa * kappa - kappa - 2.0 / (b * b)) * p0 / (big * big);
            }
        }
        let (mut g0, mut g1, mut g2) = (0.0, 0.0, 0.0);
        if near {
            let x = (omega - big) / self.gamma;
            if x.abs() < CUT {
                g0 = (-x * x).exp() / (PI.sqrt() * self.gamma);
                g1 = 2.0 * x / self.gamma * g0;
                g2 = (4.0 * x * x - 2.0) / (self.gamma * self.gamma) * g0;
            }
        }
        [
            h * p0 + (1.0 - h) * g0,
            h1 * (p0 - g0) + h * p1 + (1.0 - h) * g1,
            h2 * (p0 - g0) + 2.0 * h1 * (p1 - g1) + h * p2 + (1.0 - h) * g2,
        ]
    }

    pub fn eval_derivatives(&self, omega: f64, big: f64) -> [f64; 3] {
        let (h, h1, h2) = if self.omega0 == 0.0 {
            (1.0, 0.0, 0.0)
        } else {
            let y = big / self.omega0;
            let e = (-y * y).exp();
            let w2 = self.omega0 * self.omega0;
            (
                -(-y * y).exp_m1(),
                2.0 * big / w2 * e,
                2.0 / w2 * (1.0 - 2.0 * y * y) * e,
            )
        };
        let (mut p0, mut p1, mut p2) = (0.0, 0.0, 0.0);
        if omega * big > 0.0 && (h > 0.0 || h1 != 0.0) {
            let b = self.b;
            let u = (omega / big).ln() / b + b / 4.0;
            p0 = (-u * u).exp() / (PI.sqrt() * b * big.abs());
            let kappa = 2.0 * u / b - 1.0;
            p1 = kappa * p0 / big;
            p2 = (kappa * kappa - kappa - 2.0 / (b * b)) * p0 / (big * big);
        }
        let (mut g0, mut g1, mut g2) = (0.0, 0.0, 0.0);
        if h < 1.0 || h1 != 0.0 {
            let x = (omega - big) / self.gamma;
            g0 = (-x * x).exp() / (PI.sqrt() * self.gamma);
            g1 = 2.0 * x / self.gamma * g0;
            g2 = (4.0 * x * x - 2.0) / (self.gamma * self.gamma) * g0;
        }
        [
            h * p0 + (1.0 - h) * g0,
            h1 * (p0 - g0) + h * p1 + (1.0 - h) * g1,
            h2 * (p0 - g0) + 2.0 * h1 * (p1 - g1) + h * p2 + (1.0 - h) * g2,
        ]
    }
}

/// Where a pole lands in a [`Binned`] grid: Ω = 0 (split evenly over the two sides), beyond
/// either end of the grid (all in bin j), or between bins j and j + 1 (share f in j + 1).
#[derive(Debug, Clone, Copy)]
pub enum Slot {
    Zero,
    Edge { pos: bool, j: usize },
    Split { pos: bool, j: usize, f: f64 },
}

impl Binned {
    fn slot(&self, big: f64) -> Slot {
        if big == 0.0 {
            return Slot::Zero;
        }
        let n = self.pos.len();
        let pos = big > 0.0;
        let x = (big.abs().ln() - self.l0) / self.dl;
        if x <= 0.0 {
            Slot::Edge { pos, j: 0 }
        } else if x >= (n - 1) as f64 {
            Slot::Edge { pos, j: n - 1 }
        } else {
            // x > 0: truncation is the floor, without a call
            let j = x as usize;
            Slot::Split {
                pos,
                j,
                f: x - j as f64,
            }
        }
    }

    /// Number of bins per side.
    pub fn len(&self) -> usize {
        self.pos.len()
    }

    /// Whether the grid has no bins (never: [`Binned::new`] makes at least two).
    pub fn is_empty(&self) -> bool {
        self.pos.is_empty()
    }

    /// self += other (same grid).
    pub fn add_scaled(&mut self, other: &Binned, c: f64) {
        for (x, y) in self.pos.iter_mut().zip(&other.pos) {
            *x += c * y;
        }
        for (x, y) in self.neg.iter_mut().zip(&other.neg) {
            *x += c * y;
        }
    }
}

/// The derivative moments of poles on the grid of a [`Binned`]: per bin, `width` numbers laid
/// out as [W^x for every part, D^x for every part, Q^ij for every pair] (see [`PoleSink`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MomentBins {
    pub grid: Binned,
    pub parts: usize,
    pub pairs: usize,
    /// bin-major: bin j's moments at j·width … (j + 1)·width.
    pub pos: Vec<f64>,
    pub neg: Vec<f64>,
}

impl MomentBins {
    /// Empty moment bins on the grid of `grid` for `parts` parts of which the last `pairs` are
    /// second order.
    pub fn new(grid: &Binned, parts: usize, pairs: usize) -> MomentBins {
        let mut g = grid.clone();
        g.pos.iter_mut().for_each(|x| *x = 0.0);
        g.neg.iter_mut().for_each(|x| *x = 0.0);
        let width = 2 * parts + pairs;
        MomentBins {
            pos: vec![0.0; width * g.len()],
            neg: vec![0.0; width * g.len()],
            grid: g,
            parts,
            pairs,
        }
    }

    pub fn width(&self) -> usize {
        2 * self.parts + self.pairs
    }

    fn add(&mut self, slot: Slot, moments: &[f64]) {
        let w = self.width();
        match slot {
            Slot::Zero => {
                for (k, &m) in moments.iter().enumerate() {
                    self.pos[k] += 0.5 * m;
                    self.neg[k] += 0.5 * m;
                }
            }
            Slot::Edge { pos, j } => {
                let bins = if pos { &mut self.pos } else { &mut self.neg };
                for (b, &m) in bins[j * w..(j + 1) * w].iter_mut().zip(moments) {
                    *b += m;
                }
            }
            Slot::Split { pos, j, f } => {
                let bins = if pos { &mut self.pos } else { &mut self.neg };
                let (lo, hi) = bins[j * w..(j + 2) * w].split_at_mut(w);
                for ((a, b), &m) in lo.iter_mut().zip(hi.iter_mut()).zip(moments) {
                    *a += (1.0 - f) * m;
                    *b += f * m;
                }
            }
        }
    }

    /// ∂A/∂x at ω for every part x: Σ_j W^x_j K + D^x_j ∂_ΩK (+ Q^x_j ∂²_ΩK for pairs), with
    /// the kernel cut where it falls below e^{−81} of its peak ([`Kernel::eval_derivatives_cut`]).
    pub fn broaden(&self, kernel: &Kernel, omega: f64, out: &mut [f64]) {
        let (p, w) = (self.parts, self.width());
        let first = p - self.pairs;
        out.iter_mut().for_each(|x| *x = 0.0);
        let ln_omega = omega.abs().ln();
        for j in 0..self.grid.len() {
            let ln_big = self.grid.l0 + j as f64 * self.grid.dl;
            let c = self.grid.center(j);
            for (bins, big) in [(&self.pos, c), (&self.neg, -c)] {
                let m = &bins[j * w..(j + 1) * w];
                if m.iter().all(|&x| x == 0.0) {
                    continue;
                }
                let [k0, k1, k2] = kernel.eval_derivatives_cut(omega, ln_omega, big, ln_big);
                if k0 == 0.0 && k1 == 0.0 && k2 == 0.0 {
                    continue;
                }
                for x in 0..p {
                    out[x] += m[x] * k0 + m[p + x] * k1;
                }
                for q in 0..self.pairs {
                    out[first + q] += m[2 * p + q] * k2;
                }
            }
        }
    }

    /// self += c·other (same grid and layout).
    pub fn add_scaled(&mut self, other: &MomentBins, c: f64) {
        for (x, y) in self.pos.iter_mut().zip(&other.pos) {
            *x += c * y;
        }
        for (x, y) in self.neg.iter_mut().zip(&other.neg) {
            *x += c * y;
        }
    }

    /// Negate the moments of the parts marked `odd` (W^x, D^x of part x; Q of an odd pair).
    pub fn negate_parts(&mut self, odd: &[bool]) {
        let (p, w) = (self.parts, self.width());
        let first = p - self.pairs;
        let mut flip = vec![false; w];
        for (x, &o) in odd.iter().enumerate() {
            flip[x] = o;
            flip[p + x] = o;
            if x >= first {
                flip[2 * p + x - first] = o;
            }
        }
        for bins in [&mut self.pos, &mut self.neg] {
            for chunk in bins.chunks_mut(w) {
                for (v, &f) in chunk.iter_mut().zip(&flip) {
                    if f {
                        *v = -*v;
                    }
                }
            }
        }
    }

    /// Σ over all bins of moment k (for sum rules: the W^x moments sum to Σ_p W^x_p).
    pub fn total(&self, k: usize) -> f64 {
        let w = self.width();
        (0..self.grid.len())
            .map(|j| self.pos[j * w + k] + self.neg[j * w + k])
            .sum()
    }
}

/// Where the poles of one spectrum go. A pole is its position Ω, its weight W and (with
/// derivative parts) its moments [W^x (every part), D^x (every part), Q^ij (every pair)].
pub trait PoleSink: Send + Sized {
    /// Where a pole lands (its bin and share): found once per pole and reused by the sinks of d
    /// and of X_F, which share a grid.
    type Slot: Copy;
    /// An empty sink of the same kind and layout.
    fn empty_like(&self) -> Self;
    fn locate(&self, big: f64) -> Self::Slot;
    fn add_at(&mut self, slot: Self::Slot, big: f64, w: f64, moments: &[f64]);
    fn add(&mut self, big: f64, w: f64, moments: &[f64]) {
        let slot = self.locate(big);
        self.add_at(slot, big, w, moments);
    }
    /// self += c·other.
    fn merge(&mut self, other: &Self, c: f64);
    /// Negate every moment of the parts marked `odd` (the other spin's sink at a spin-flip
    /// symmetric point: derivatives odd in the field change sign).
    fn negate_parts(&mut self, odd: &[bool]);
}

/// Binned weights and, with derivative parts, binned moments on the same grid. The bins that
/// were touched are tracked per side, so that merging the small sink of one block pair into the
/// total costs its poles' range of bins, not the whole grid.
#[derive(Debug, Clone, PartialEq)]
pub struct BinSink {
    pub weights: Binned,
    pub moments: Option<MomentBins>,
    /// Per side (Ω > 0, Ω < 0): the touched bins lo..=hi (lo > hi: none).
    touched: [(usize, usize); 2],
}

const UNTOUCHED: (usize, usize) = (usize::MAX, 0);

impl BinSink {
    pub fn new(grid: &Binned, parts: usize, pairs: usize) -> BinSink {
        let mut weights = grid.clone();
        weights.pos.iter_mut().for_each(|x| *x = 0.0);
        weights.neg.iter_mut().for_each(|x| *x = 0.0);
        BinSink {
            moments: (parts > 0).then(|| MomentBins::new(&weights, parts, pairs)),
            weights,
            touched: [UNTOUCHED; 2],
        }
    }

    fn touch(&mut self, side: usize, lo: usize, hi: usize) {
        let t = &mut self.touched[side];
        t.0 = t.0.min(lo);
        t.1 = t.1.max(hi);
    }
}

impl PoleSink for BinSink {
    type Slot = Slot;

    fn empty_like(&self) -> BinSink {
        BinSink::new(
            &self.weights,
            self.moments.as_ref().map_or(0, |m| m.parts),
            self.moments.as_ref().map_or(0, |m| m.pairs),
        )
    }

    fn locate(&self, big: f64) -> Slot {
        self.weights.slot(big)
    }

    fn add_at(&mut self, slot: Slot, _big: f64, w: f64, moments: &[f64]) {
        self.weights.add_at(slot, w);
        if let Some(m) = self.moments.as_mut() {
            m.add(slot, moments);
        }
        match slot {
            Slot::Zero => {
                self.touch(0, 0, 0);
                self.touch(1, 0, 0);
            }
            Slot::Edge { pos, j } => self.touch(usize::from(!pos), j, j),
            Slot::Split { pos, j, .. } => self.touch(usize::from(!pos), j, j + 1),
        }
    }

    fn merge(&mut self, other: &BinSink, c: f64) {
        for side in 0..2 {
            let (lo, hi) = other.touched[side];
            if lo > hi {
                continue;
            }
            let (dst, src) = if side == 0 {
                (&mut self.weights.pos, &other.weights.pos)
            } else {
                (&mut self.weights.neg, &other.weights.neg)
            };
            for (x, y) in dst[lo..=hi].iter_mut().zip(&src[lo..=hi]) {
                *x += c * y;
            }
            if let (Some(a), Some(b)) = (self.moments.as_mut(), other.moments.as_ref()) {
                let w = a.width();
                let (dst, src) = if side == 0 {
                    (&mut a.pos, &b.pos)
                } else {
                    (&mut a.neg, &b.neg)
                };
                for (x, y) in dst[lo * w..(hi + 1) * w]
                    .iter_mut()
                    .zip(&src[lo * w..(hi + 1) * w])
                {
                    *x += c * y;
                }
            }
            self.touch(side, lo, hi);
        }
    }

    fn negate_parts(&mut self, odd: &[bool]) {
        if let Some(m) = self.moments.as_mut() {
            m.negate_parts(odd);
        }
    }
}

/// Every pole broadened exactly at fixed frequencies, no bins: the reference that validation
/// needs (the binned derivative is not the derivative of binned A, design note §5). Costs
/// #poles × #frequencies kernel evaluations.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectSink {
    pub kernel: Kernel,
    pub omega: Vec<f64>,
    pub parts: usize,
    pub pairs: usize,
    /// A(ω_i).
    pub value: Vec<f64>,
    /// ∂_x A(ω_i) at i·parts + x.
    pub derivatives: Vec<f64>,
}

impl DirectSink {
    pub fn new(kernel: Kernel, omega: Vec<f64>, parts: usize, pairs: usize) -> DirectSink {
        DirectSink {
            kernel,
            value: vec![0.0; omega.len()],
            derivatives: vec![0.0; omega.len() * parts],
            omega,
            parts,
            pairs,
        }
    }
}

impl PoleSink for DirectSink {
    type Slot = ();

    fn empty_like(&self) -> DirectSink {
        DirectSink::new(self.kernel, self.omega.clone(), self.parts, self.pairs)
    }

    fn locate(&self, _big: f64) {}

    fn add_at(&mut self, _slot: (), big: f64, w: f64, moments: &[f64]) {
        let (p, first) = (self.parts, self.parts - self.pairs);
        for (i, &om) in self.omega.iter().enumerate() {
            if p == 0 {
                self.value[i] += w * self.kernel.eval(om, big);
                continue;
            }
            let [k0, k1, k2] = self.kernel.eval_derivatives(om, big);
            self.value[i] += w * k0;
            let out = &mut self.derivatives[i * p..(i + 1) * p];
            for x in 0..p {
                out[x] += moments[x] * k0 + moments[p + x] * k1;
            }
            for q in 0..self.pairs {
                out[first + q] += moments[2 * p + q] * k2;
            }
        }
    }

    fn merge(&mut self, other: &DirectSink, c: f64) {
        for (x, y) in self.value.iter_mut().zip(&other.value) {
            *x += c * y;
        }
        for (x, y) in self.derivatives.iter_mut().zip(&other.derivatives) {
            *x += c * y;
        }
    }

    fn negate_parts(&mut self, odd: &[bool]) {
        if self.parts == 0 {
            return;
        }
        for row in self.derivatives.chunks_mut(self.parts) {
            for (v, &o) in row.iter_mut().zip(odd) {
                if o {
                    *v = -*v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_is_normalized_on_both_sides_of_the_crossover() {
        // ∫K dω by the trapezoid rule on a fine grid, for poles below, at and above ω₀
        let k = Kernel {
            b: 0.6,
            omega0: 1e-3,
            gamma: 1e-3,
        };
        for big in [-3e-2f64, 1e-4, 1e-3, 5e-3, 0.3] {
            let lo = -big.abs() * 20.0 - 1e-2;
            let hi = big.abs() * 20.0 + 1e-2;
            let n = 400_000;
            let h = (hi - lo) / n as f64;
            let s: f64 = (0..=n)
                .map(|i| {
                    let w = if i == 0 || i == n { 0.5 } else { 1.0 };
                    w * k.eval(lo + i as f64 * h, big)
                })
                .sum::<f64>()
                * h;
            // the log-Gaussian tail beyond 20|Ω| and the grid's resolution of the peak: 1e-4
            assert!((s - 1.0).abs() < 3e-4, "Ω = {big}: ∫K = {s}");
        }
    }

    #[test]
    fn bins_keep_the_total_weight() {
        let mut b = Binned::new(1e-6, 10.0, 200);
        for (big, w) in [
            (1e-9, 0.1),
            (-3e-3, 0.2),
            (0.0, 0.3),
            (0.7, 0.25),
            (50.0, 0.15),
        ] {
            b.add(big, w);
        }
        assert!((b.total() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn kernel_derivatives_match_finite_differences() {
        // on both sides of the crossover and for both signs; central differences in Ω with
        // step 1e-6·|Ω|: truncation ~1e-12 relative, round-off ~1e-10 relative for K″
        let k = Kernel {
            b: 0.6,
            omega0: 1e-3,
            gamma: 1e-3,
        };
        for (omega, big) in [(2e-3, 1.5e-3), (-0.3, -0.25), (1e-3, 4e-4), (5e-4, -2e-4)] {
            let [k0, k1, k2] = k.eval_derivatives(omega, big);
            assert!((k0 - k.eval(omega, big)).abs() < 1e-14 * k0);
            let cut = k.eval_derivatives_cut(omega, omega.abs().ln(), big, big.abs().ln());
            for (a, b) in cut.iter().zip([k0, k1, k2]) {
                assert!((a - b).abs() <= 1e-13 * b.abs(), "cut kernel: {a} vs {b}");
            }
            let d = 1e-6 * big.abs();
            let f = |x: f64| k.eval(omega, x);
            let fd1 = (f(big + d) - f(big - d)) / (2.0 * d);
            let g = |x: f64| k.eval_derivatives(omega, x)[1];
            let fd2 = (g(big + d) - g(big - d)) / (2.0 * d);
            assert!(
                (k1 - fd1).abs() < 1e-7 * k1.abs().max(k0 / big.abs()),
                "{omega} {big}: {k1} vs {fd1}"
            );
            assert!(
                (k2 - fd2).abs() < 1e-7 * k2.abs().max(k0 / (big * big)),
                "{omega} {big}: {k2} vs {fd2}"
            );
        }
    }

    #[test]
    fn moments_bin_like_weights() {
        // one pole: binned moments broaden to W K + D K′ + Q K″ up to the binning error O(Δ²)
        let k = Kernel {
            b: 0.6,
            omega0: 0.0,
            gamma: 1.0,
        };
        let grid = Binned::new(1e-4, 10.0, 2000);
        let mut sink = BinSink::new(&grid, 2, 1);
        // parts [a, ab]: W^a = 0.3, W^ab = −0.2, D^a = 0.05, D^ab = 0.1, Q^ab = 0.02
        sink.add(0.0123, 1.0, &[0.3, -0.2, 0.05, 0.1, 0.02]);
        let mut out = [0.0; 2];
        let m = sink.moments.as_ref().unwrap();
        assert!((m.total(0) - 0.3).abs() < 1e-15 && (m.total(4) - 0.02).abs() < 1e-15);
        for omega in [0.005, 0.0123, 0.03] {
            m.broaden(&k, omega, &mut out);
            let [k0, k1, k2] = k.eval_derivatives(omega, 0.0123);
            let exact = [0.3 * k0 + 0.05 * k1, -0.2 * k0 + 0.1 * k1 + 0.02 * k2];
            let scale = [
                0.3 * k0 + (0.05 * k1).abs(),
                0.2 * k0 + (0.1 * k1).abs() + (0.02 * k2).abs(),
            ];
            for x in 0..2 {
                // Δ = ln10/2000: the hat functions' error is O(Δ²·∂⁴_ℓK) ≈ 1e-5 of the terms
                let e = (out[x] - exact[x]).abs() / scale[x];
                assert!(
                    e < 1e-5,
                    "ω = {omega}, part {x}: {} vs {} ({e:e})",
                    out[x],
                    exact[x]
                );
            }
        }
    }
}
