//! The Spectrum panel: the impurity spectral function A(ω) of the SIAM (or the Kondo model's
//! T-matrix spectral function A_T(ω) = −Im T/π) at the panel's temperature T, by the library's FDM-NRG ([`dnrg::spectral`]), on a symmetric logarithmic
//! frequency axis: |ω| from T to the band edge D = 1 on each side, negative frequencies
//! mirrored on the left, and a short linear stretch |ω| < T around the zero marker in the
//! middle. With Γ > 0 the curve is πΓA(ω), with the Friedel line sin²(π⟨n_d⟩/2) (= 1 at
//! particle–hole symmetry) when there is no field; with a field both spins are drawn. For the
//! Kondo model the curve is −πρ_0 Im T = π²ρ_0 A_T (ρ_0 = ½) with the unitarity line at 1,
//! which it reaches at T, |ω| ≪ T_K.
//! ∂A/∂θ of the selected θ (`t`) is a second chart below once derivative spectra exist.
//!
//! The spectrum is a job of the solver thread, started when the run has reached its last shell
//! (the FDM runs its own forward pass, keeping every shell's eigenvectors, then the backward
//! sweep); progress goes to the status line, and a parameter change cancels it like a run.
//! Settings chosen for interactive use, and shown in the panel: no z-averaging (Nz = 1), the
//! library's broadening (b = 0.6, linear crossover below T), 50 bins per decade instead of 200
//! (πΓA(0) changes by 6e-5 on the default preset) and the self-energy trick when U ≠ 0.

use super::app::{App, View};
use super::event::JobId;
use super::plot::{Axis, HLine, Plot, Series, fmt_exact, fmt_g, fmt_sci, fmt_val};
use super::plot::{linear_axis, value_range};
use super::theme::{PINNED_GLYPH, SERIES_GLYPHS};
use super::ui;
use dnrg::params::{ModelKind, Param, RunConfig};
use dnrg::spectral::{
    SpectralOperator, SpectralOptions, differentiable_in, spectrum_with_progress,
};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use std::f64::consts::PI;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Logarithmic bins per decade of the explorer's spectra (the library's default is 200: the
/// binning error is O(Δ²), 4e-4 of max A at 50, far below what a terminal shows).
pub const BINS_PER_DECADE: usize = 50;
/// Frequencies per decade on each side (a decade is ~6 to 10 columns wide on screen).
pub const POINTS_PER_DECADE: usize = 16;
/// Half-width of the linear stretch |ω| < T around ω = 0, in decades of the axis.
const LINEAR_HALF: f64 = 0.5;
/// Points of the linear stretch on each side of 0.
const LINEAR_POINTS: usize = 4;
/// The band edge D (the chains are built for a flat band on [−D, D], D = 1).
pub const BAND_EDGE: f64 = 1.0;
/// ρ_0 = 1/(2D), the flat band's density of states per spin.
pub const RHO0: f64 = 0.5 / BAND_EDGE;

/// The library's options for the explorer's spectra at temperature `t`.
pub fn options(t: f64) -> SpectralOptions {
    let mut o = SpectralOptions::at(t);
    o.bins_per_decade = BINS_PER_DECADE;
    o
}

/// Where a spectrum job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the solver thread.
    Queued,
    /// Shells done of the forward pass and the backward sweep: `done` of `total` =
    /// 2·(N_max + 1).
    Passes { done: usize, total: usize },
    /// Broadening the binned poles and the Kramers–Kronig transform at the panel's frequencies
    /// (a fraction of a second; it runs to the end once started).
    Broadening,
}

impl Stage {
    /// Fraction done, for the progress gauge.
    pub fn ratio(self) -> f64 {
        match self {
            Stage::Queued => 0.0,
            Stage::Passes { done, total } if total > 0 => done as f64 / total as f64,
            Stage::Passes { .. } => 0.0,
            Stage::Broadening => 1.0,
        }
    }

    /// Shells done of both passes.
    pub fn shells_done(self) -> usize {
        match self {
            Stage::Queued => 0,
            Stage::Passes { done, .. } => done,
            Stage::Broadening => usize::MAX,
        }
    }

    /// `forward pass 12/47`, `backward sweep 3/47`, `broadening`.
    pub fn describe(self) -> String {
        match self {
            Stage::Queued => "starting".into(),
            Stage::Passes { done, total } => {
                let per = total / 2;
                if done <= per {
                    format!("forward pass {done}/{per}")
                } else {
                    format!("backward sweep {}/{per}", done - per)
                }
            }
            Stage::Broadening => "broadening".into(),
        }
    }
}

/// A computed spectrum, as the panel draws it.
#[derive(Debug, Clone)]
pub struct SpectrumData {
    pub t: f64,
    /// Log-Gaussian width b.
    pub b: f64,
    pub bins_per_decade: usize,
    /// A is improved by the self-energy trick (U ≠ 0).
    pub trick: bool,
    /// Frequencies, ascending, symmetric about 0 (which is one of them).
    pub omega: Vec<f64>,
    /// A_σ(ω) at `omega`, σ = ↑, ↓.
    pub a: [Vec<f64>; 2],
    /// Γ (the SIAM's hybridization).
    pub gamma: f64,
    /// The Kondo model's T-matrix (A is A_T) instead of the impurity level.
    pub t_matrix: bool,
    /// The field h (spin-resolved spectra when h ≠ 0).
    pub h: f64,
    /// ⟨n_d⟩ = Tr ρ d†d from the FDM density matrix.
    pub n_d: f64,
    /// max_σ |Σ W_σ − ⟨{X_σ, X_σ†}⟩| (the sum rule, exact for the complete basis: 1 for
    /// X = d, the local expectation value on shell 0 for the T-matrix's O).
    pub sum_rule: f64,
    /// ∂A/∂θ (spin average) at `omega` for each derived θ the spectrum is differentiable in;
    /// `None` when there is none.
    pub derivatives: Option<Vec<(Param, Vec<f64>)>>,
}

impl SpectrumData {
    pub fn spin_resolved(&self) -> bool {
        self.h != 0.0
    }

    /// The spin average of A.
    pub fn average(&self) -> Vec<f64> {
        self.a[0]
            .iter()
            .zip(&self.a[1])
            .map(|(u, d)| 0.5 * (u + d))
            .collect()
    }

    /// π²ρ_0 for the T-matrix (the plot shows −πρ_0 Im T), πΓ when Γ > 0 (the plot shows
    /// πΓA), else 1.
    pub fn scale(&self) -> f64 {
        if self.t_matrix {
            PI * PI * RHO0
        } else if self.gamma > 0.0 {
            PI * self.gamma
        } else {
            1.0
        }
    }

    /// The spin-averaged A at ω = 0.
    pub fn at_zero(&self) -> Option<f64> {
        let i = self.omega.iter().position(|&w| w == 0.0)?;
        Some(0.5 * (self.a[0][i] + self.a[1][i]))
    }

    /// The mean spin-averaged A over 10T ≤ |ω| ≤ 100T (the T-matrix's unitarity window).
    pub fn low_frequency_mean(&self) -> Option<f64> {
        let avg = self.average();
        let low: Vec<f64> = self
            .omega
            .iter()
            .zip(&avg)
            .filter(|(w, _)| w.abs() >= 10.0 * self.t && w.abs() <= 100.0 * self.t)
            .map(|(_, a)| *a)
            .collect();
        (!low.is_empty()).then(|| low.iter().sum::<f64>() / low.len() as f64)
    }

    /// The Friedel value of πΓA(0) at T ≪ T_K: sin²(π⟨n_d⟩/2).
    pub fn friedel(&self) -> f64 {
        (PI * self.n_d / 2.0).sin().powi(2)
    }

    /// ∂A/∂θ at `omega`, if computed.
    pub fn derivative(&self, theta: Param) -> Option<&[f64]> {
        self.derivatives
            .as_ref()?
            .iter()
            .find(|(p, _)| *p == theta)
            .map(|(_, d)| d.as_slice())
    }
}

/// What the app knows of the spectrum of its current run.
#[derive(Debug, Clone)]
pub enum Status {
    Computing(Stage),
    Done(Box<SpectrumData>),
    Failed(String),
    Cancelled(String),
    /// The panel's T does not fit the run (no job was started).
    Invalid(String),
}

/// The spectrum of one run at one T.
#[derive(Debug, Clone)]
pub struct SpectrumJob {
    /// The job computing it (0 when none was started).
    pub job: JobId,
    /// The run it belongs to.
    pub run_job: JobId,
    pub t: f64,
    pub status: Status,
}

/// ω_{N_max}, the last shell's energy scale: the FDM is sound for T at or above it.
pub fn last_scale(config: &RunConfig) -> f64 {
    dnrg::chain::omega(&config.nrg, dnrg::chain::last_shell(&config.nrg))
}

/// The panel's T when none was chosen: the run's T_min, or the last shell's scale when that is
/// higher (β̄ > 1).
pub fn default_t(config: &RunConfig) -> f64 {
    config.nrg.t_min.max(last_scale(config))
}

/// Refuse a T the run cannot give a spectrum at, with the reason.
pub fn check_t(t: f64, config: &RunConfig) -> Result<(), String> {
    let shown = fmt_exact(t);
    if !(t.is_finite() && t > 0.0) {
        return Err(format!("spectrum T = {shown}: must be a positive number"));
    }
    if t >= BAND_EDGE {
        return Err(format!(
            "spectrum T = {shown}: must be below the band edge D = 1"
        ));
    }
    let scale = last_scale(config);
    if t < scale {
        let n = dnrg::chain::last_shell(&config.nrg);
        return Err(format!(
            "spectrum T = {shown} is below ω_N = {} (last shell, N = {n}): lower nrg.T_min",
            fmt_g(scale, 3)
        ));
    }
    Ok(())
}

/// The next value of the 1-2-5 sequence above (or below) `t`.
pub fn step_t(t: f64, up: bool) -> f64 {
    let e = t.log10().floor() as i32;
    let candidates = (e - 1..=e + 1).flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)));
    let tol = 1e-9 * t;
    let pick = if up {
        candidates
            .filter(|&c| c > t + tol)
            .fold(f64::INFINITY, f64::min)
    } else {
        candidates
            .filter(|&c| c < t - tol)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    // 12 significant digits, so that 2e-6 is shown as 2e-6
    format!("{pick:.11e}").parse().unwrap_or(pick)
}

/// The panel's frequencies: 0, a few points of the linear stretch |ω| < T, and
/// [`POINTS_PER_DECADE`] per decade from T to the band edge, on both sides.
pub fn frequencies(t: f64) -> Vec<f64> {
    let decades = (BAND_EDGE / t).log10().max(0.0);
    let steps = (decades * POINTS_PER_DECADE as f64).ceil().max(1.0) as usize;
    let mut pos: Vec<f64> = (1..LINEAR_POINTS)
        .map(|k| t * k as f64 / LINEAR_POINTS as f64)
        .collect();
    pos.extend((0..=steps).map(|i| t * (BAND_EDGE / t).powf(i as f64 / steps as f64)));
    let mut all: Vec<f64> = pos.iter().rev().map(|w| -w).collect();
    all.push(0.0);
    all.extend(pos);
    all
}

/// The position of ω on the symmetric logarithmic axis: ±(½ + log₁₀(|ω|/T)) for |ω| ≥ T, linear
/// in between (so ω = 0 is the middle).
pub fn x_of(omega: f64, t: f64) -> f64 {
    let a = omega.abs();
    if a >= t {
        omega.signum() * (LINEAR_HALF + (a / t).log10())
    } else {
        LINEAR_HALF * omega / t
    }
}

/// The x axis: decades of ±ω from the band edge down to T, labelled `1e-4`, `-1e-4`, with `0`
/// in the middle; every `step`-th decade so that the labels fit `width` columns.
pub fn x_axis(t: f64, width: u16) -> Axis {
    let max = x_of(BAND_EDGE, t);
    let lowest = t.log10().ceil() as i32; // the smallest decade ≥ T
    let decades = (-lowest).max(0) as f64;
    // columns per decade; a label needs ~6 columns (`-1e-4` and a space)
    let per_decade = width as f64 / (2.0 * max).max(1.0);
    let step = [1, 2, 3, 5, 10, 20]
        .into_iter()
        .find(|s| per_decade * *s as f64 >= 7.0)
        .unwrap_or(50);
    let mut ticks = vec![(0.0, "0".to_string())];
    let mut k = 0;
    while k as f64 <= decades {
        let w = 10f64.powi(-k);
        let label = if k == 0 {
            "1".to_string()
        } else {
            fmt_sci(w, 0)
        };
        ticks.push((x_of(w, t), label.clone()));
        ticks.push((x_of(-w, t), format!("-{label}")));
        k += step;
    }
    ticks.sort_by(|a, b| a.0.total_cmp(&b.0));
    Axis {
        min: -max,
        max,
        ticks,
        title: "ω".into(),
    }
}

/// Compute the explorer's spectrum of `config` at `t` (`Ok(None)` when cancelled), reporting
/// progress. Runs on the solver thread.
pub fn compute(
    config: &RunConfig,
    t: f64,
    cancel: Arc<AtomicBool>,
    report: &(dyn Fn(Stage) + Sync),
) -> Result<Option<SpectrumData>, String> {
    let mut config = config.clone();
    config.nrg.z_average = 1;
    // the second chart shows ∂A/∂θ of the parameters the spectra can be differentiated in
    // (first order only: about half the parts of a full Hessian)
    let all = config.derive.clone();
    config.derive = all
        .into_iter()
        .filter(|&p| differentiable_in(&config, p))
        .collect();
    let mut opts = options(t);
    opts.second_order = false;
    let passes = |done, total| report(Stage::Passes { done, total });
    let Some(s) = spectrum_with_progress(&config, &opts, Arc::clone(&cancel), &passes)
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    if cancel.load(Ordering::SeqCst) {
        return Ok(None);
    }
    report(Stage::Broadening);
    let omega = frequencies(t);
    let points = s.evaluate(&omega);
    let a = [0, 1].map(|sigma| points.iter().map(|p| p.a[sigma]).collect());
    // ∂A/∂θ of the spin-averaged (improved) A, per derived θ
    let mut derivatives = Vec::new();
    for (i, &p) in s.derive.iter().enumerate() {
        if cancel.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if let Some(d) = s.derivative_curve(i, &omega) {
            derivatives.push((p, d));
        }
    }
    let derivatives = (!derivatives.is_empty()).then_some(derivatives);
    Ok(Some(SpectrumData {
        t,
        b: opts.b,
        bins_per_decade: opts.bins_per_decade,
        trick: s.self_energy_trick(),
        omega,
        a,
        gamma: config.model.gamma,
        t_matrix: s.operator == SpectralOperator::TMatrix,
        h: config.model.h,
        n_d: s.n_d(),
        sum_rule: s.sum_rule_residuals().weight,
        derivatives,
    }))
}

// ---- the panel -----------------------------------------------------------------------------

pub fn render(frame: &mut Frame, area: Rect, app: &App, framed: bool) {
    // the settings are in the frame's title, or (small screens, no frame) in the first line
    let note = settings(app);
    let inner = ui::panel_inner_noted(frame, area, app, View::Spectrum, framed, &note);
    let [head, body] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(inner);
    head_line(frame, head, app, (!framed).then_some(note.as_str()));
    let run = &app.run;
    let status = app.spectrum.as_ref().map(|s| &s.status);
    let text = match (&run.error, status) {
        (Some(e), _) => format!("run failed: {e}"),
        (None, Some(Status::Done(data))) => return spectrum(frame, body, app, data),
        _ if run.is_running() => format!(
            "A(ω) is computed once the run reaches its last shell ({}/{})",
            run.shells.len(),
            run.n_max().map_or("—".into(), |n| (n + 1).to_string())
        ),
        (None, Some(Status::Computing(stage))) => format!(
            "computing A(ω) at T = {}: {}…",
            fmt_exact(app.spectrum_t()),
            stage.describe()
        ),
        (None, Some(Status::Failed(e))) => format!("spectrum failed: {e}"),
        (None, Some(Status::Cancelled(why))) => {
            format!("spectrum cancelled ({why}): Enter or ←→ (T) computes it again")
        }
        (None, Some(Status::Invalid(e))) => e.clone(),
        (None, None) => "waiting for the solver…".into(),
    };
    ui::placeholder(frame, body, app, &text);
}

/// How the spectrum shown (or the one to come) is computed: `FDM b=0.6 · 50 bins/dec · Nz=1`.
fn settings(app: &App) -> String {
    let (b, bins, trick) = match app.spectrum_data() {
        Some(d) => (d.b, d.bins_per_decade, d.trick),
        None => (
            options(1.0).b,
            BINS_PER_DECADE,
            app.config.model.kind == ModelKind::Siam && app.config.model.u != 0.0,
        ),
    };
    let trick = if trick { " · Σ trick" } else { "" };
    format!("FDM b={b} · {bins} bins/dec · Nz=1{trick}")
}

/// T (editable), and the settings of the computation when the panel has no frame to show
/// them.
fn head_line(frame: &mut Frame, area: Rect, app: &App, settings: Option<&str>) {
    let theme = app.theme;
    let mut spans = vec![Span::styled("T = ", theme.title())];
    match &app.t_editing {
        Some(input) => {
            let (before, at, after) = input.view(24);
            let style = if input.fresh {
                theme.selected()
            } else {
                theme.input()
            };
            spans.push(Span::styled(before, style));
            spans.push(Span::styled(at, theme.selected()));
            spans.push(Span::styled(after, style));
            spans.push(Span::styled("  Enter applies, Esc cancels", theme.dim()));
        }
        None => {
            spans.push(Span::styled(fmt_exact(app.spectrum_t()), theme.title()));
            spans.push(Span::styled(" (←→ 1-2-5, Enter types)", theme.dim()));
        }
    }
    if let Some(settings) = settings {
        spans.push(Span::styled(format!("  {settings}"), theme.dim()));
    }
    frame.render_widget(
        Paragraph::new(ui::fit_spans(spans, area.width as usize)),
        area,
    );
}

/// (x, y) of a curve on the panel's axis.
fn points(data: &SpectrumData, values: &[f64], scale: f64) -> Vec<(f64, f64)> {
    data.omega
        .iter()
        .zip(values)
        .map(|(&w, &v)| (x_of(w, data.t), scale * v))
        .collect()
}

fn spectrum(frame: &mut Frame, area: Rect, app: &App, data: &SpectrumData) {
    let theme = app.theme;
    let theta = app.sens_param();
    let derivative = theta.and_then(|p| data.derivative(p));
    // the second chart takes 40% of the height once there is a derivative to draw, else one
    // line says why there is none
    let lower = match derivative {
        Some(_) => (area.height * 2 / 5).max(4),
        None => 1,
    };
    let [legend_area, chart_area, lower_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(lower),
    ])
    .areas(area);
    let scale = data.scale();
    let y_name = if data.t_matrix {
        "−πρ₀ImT"
    } else if data.gamma > 0.0 {
        "πΓA"
    } else {
        "A"
    };

    let mut series = Vec::new();
    let mut values = Vec::new();
    let mut legend = Vec::new();
    let pinned = app
        .pinned
        .as_ref()
        .and_then(|p| p.spectrum.as_ref())
        .filter(|p| p.t_matrix == data.t_matrix && (p.gamma > 0.0 || data.gamma <= 0.0));
    if let Some(p) = pinned {
        let pts: Vec<(f64, f64)> = p
            .omega
            .iter()
            .zip(p.average())
            .map(|(&w, v)| (x_of(w, data.t), p.scale() * v))
            .collect();
        values.extend(pts.iter().map(|q| q.1));
        series.push(Series {
            points: pts,
            style: theme.pinned(),
            glyph: Some(PINNED_GLYPH),
            line: false,
        });
    }
    let curves: Vec<(String, Vec<f64>)> = if data.spin_resolved() {
        vec![
            (format!("{y_name}↑"), data.a[0].clone()),
            (format!("{y_name}↓"), data.a[1].clone()),
        ]
    } else {
        vec![(format!("{y_name}(ω)"), data.average())]
    };
    for (i, (label, a)) in curves.iter().enumerate() {
        let style = theme.series(i);
        let glyph = SERIES_GLYPHS[i % SERIES_GLYPHS.len()];
        let mark = if theme.mono { glyph } else { '━' };
        legend.push(Span::styled(format!("{mark} {label}"), style));
        legend.push(Span::raw("  "));
        let pts = points(data, a, scale);
        values.extend(pts.iter().map(|q| q.1));
        series.push(Series {
            points: pts,
            style,
            glyph: theme.mono.then_some(glyph),
            line: true,
        });
    }
    if let Some(p) = pinned {
        // the comparison is at another temperature only if it says so
        let t = if p.t == data.t {
            String::new()
        } else {
            format!(" T={}", fmt_exact(p.t))
        };
        legend.push(Span::styled(
            format!("{PINNED_GLYPH} pinned{t}  "),
            theme.pinned(),
        ));
    }
    if data.t_matrix {
        // the raw FDM A at ω = 0 itself carries a broadening artifact (~30% low): the
        // unitarity value is read over 10T ≤ |ω| ≤ 100T, as `dnrg spectrum`'s piRhoT0
        if let Some(low) = data.low_frequency_mean() {
            legend.push(Span::raw(format!(
                "{y_name}(10–100T)={}",
                fmt_g(scale * low, 4)
            )));
        }
    } else if let Some(a0) = data.at_zero() {
        legend.push(Span::raw(format!("{y_name}(0)={}", fmt_g(scale * a0, 4))));
    }
    // the Friedel sum rule pins πΓA(0) at T ≪ T_K for h = 0; the T-matrix's unitarity
    // −πρ_0 Im T(0) = 1 (phase shift π/2)
    let friedel = if data.t_matrix {
        (!data.spin_resolved()).then_some(1.0)
    } else {
        (data.gamma > 0.0 && !data.spin_resolved()).then(|| data.friedel())
    };
    let line_name = if data.t_matrix { "unitary" } else { "Friedel" };
    if let Some(f) = friedel {
        let what = if data.t_matrix {
            "unitarity".to_string()
        } else {
            format!("Friedel sin²(πn_d/2)={}", fmt_g(f, 4))
        };
        legend.push(Span::styled(format!("  ╌ {what}"), theme.dim()));
    }
    let sums = if data.t_matrix {
        format!("  ΣW−⟨{{O,O†}}⟩ {}", sum_rule(data.sum_rule))
    } else {
        format!(
            "  n_d={}  ΣW−1 {}",
            fmt_g(data.n_d, 4),
            sum_rule(data.sum_rule)
        )
    };
    legend.push(Span::styled(sums, theme.dim()));
    frame.render_widget(
        Paragraph::new(ui::fit_spans(legend, legend_area.width as usize)),
        legend_area,
    );

    let mut include = vec![0.0];
    include.extend(friedel);
    let (lo, hi) = value_range(values, &include);
    let y = linear_axis(lo, hi, (chart_area.height / 3).max(2) as usize);
    let mut plot = Plot::new(x_axis(data.t, chart_area.width), y, theme);
    plot.series = series;
    if let Some(f) = friedel {
        plot.hlines.push(HLine {
            y: f,
            label: line_name.into(),
        });
    }
    plot.cursor = Some(0.0); // the zero marker
    frame.render_widget(plot, chart_area);

    let theta_name = theta.map_or("θ", |p| p.name());
    match derivative {
        None => {
            let text = match theta {
                None => "∂A/∂θ: the run derives no parameter".to_string(),
                Some(_) => format!("∂A/∂{theta_name}: not a derivative of spectra (t: next θ)"),
            };
            frame.render_widget(
                Paragraph::new(Line::from(Span::styled(
                    ui::fit(&text, lower_area.width as usize),
                    theme.dim(),
                ))),
                lower_area,
            );
        }
        Some(d) => derivative_chart(frame, lower_area, app, data, d, theta_name),
    }
}

/// ∂A/∂θ against the same frequency axis.
fn derivative_chart(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    data: &SpectrumData,
    d: &[f64],
    theta: &str,
) {
    let theme = app.theme;
    let [legend_area, plot_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    let style = theme.series(2);
    let glyph = SERIES_GLYPHS[2];
    let mark = if theme.mono { glyph } else { '━' };
    let at_zero = data
        .omega
        .iter()
        .position(|&w| w == 0.0)
        .map_or("—".into(), |i| fmt_val(d[i], 4));
    let legend = vec![
        Span::styled(format!("{mark} ∂A/∂{theta}"), style),
        Span::raw(format!("  at ω=0: {at_zero}  (t: next θ)")),
    ];
    frame.render_widget(
        Paragraph::new(ui::fit_spans(legend, legend_area.width as usize)),
        legend_area,
    );
    let pts = points(data, d, 1.0);
    let (lo, hi) = value_range(pts.iter().map(|p| p.1).collect::<Vec<_>>(), &[0.0]);
    let y = linear_axis(lo, hi, (plot_area.height / 3).max(2) as usize);
    let mut plot = Plot::new(x_axis(data.t, plot_area.width), y, theme);
    plot.series = vec![Series {
        points: pts,
        style,
        glyph: theme.mono.then_some(glyph),
        line: true,
    }];
    plot.cursor = Some(0.0);
    frame.render_widget(plot, plot_area);
}

/// |Σ W − ⟨{X, X†}⟩|: round-off (≈0) or a number worth reading.
fn sum_rule(r: f64) -> String {
    if r < 1e-8 { "≈0".into() } else { fmt_g(r, 2) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_is_symmetric_logarithmic_with_zero_in_the_middle() {
        let t = 1e-6;
        assert_eq!(x_of(0.0, t), 0.0);
        assert_eq!(x_of(t, t), LINEAR_HALF);
        assert_eq!(x_of(-t, t), -LINEAR_HALF);
        assert!((x_of(1e-3, t) - (LINEAR_HALF + 3.0)).abs() < 1e-12);
        assert_eq!(x_of(-0.25, t), -x_of(0.25, t));
        let w = frequencies(t);
        assert_eq!(w.len() % 2, 1);
        assert_eq!(w[w.len() / 2], 0.0);
        assert!(w.windows(2).all(|p| p[0] < p[1]), "ascending");
        assert!((w[w.len() - 1] - 1.0).abs() < 1e-12 && (w[0] + 1.0).abs() < 1e-12);
        // the decades are labelled on both sides, 0 in the middle
        let axis = x_axis(t, 200);
        let labels: Vec<&str> = axis.ticks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            labels,
            [
                "-1", "-1e-1", "-1e-2", "-1e-3", "-1e-4", "-1e-5", "-1e-6", "0", "1e-6", "1e-5",
                "1e-4", "1e-3", "1e-2", "1e-1", "1"
            ]
        );
        // a narrow plot labels every other decade or fewer
        assert!(x_axis(t, 60).ticks.len() < axis.ticks.len());
    }

    #[test]
    fn t_steps_along_1_2_5_and_is_checked_against_the_last_shell() {
        assert_eq!(step_t(1e-6, true), 2e-6);
        assert_eq!(step_t(2e-6, true), 5e-6);
        assert_eq!(step_t(5e-6, true), 1e-5);
        assert_eq!(step_t(1e-5, false), 5e-6);
        assert_eq!(step_t(3e-6, false), 2e-6);
        assert_eq!(step_t(3e-6, true), 5e-6);
        let mut c = RunConfig::default();
        c.nrg.t_min = 1e-6;
        let t0 = default_t(&c);
        assert!(check_t(t0, &c).is_ok());
        let below = check_t(last_scale(&c) / 3.0, &c).unwrap_err();
        assert!(below.contains("(last shell, N = "), "{below}");
        assert!(check_t(1.5, &c).unwrap_err().contains("band edge"));
        assert!(check_t(-1.0, &c).is_err());
    }
}
