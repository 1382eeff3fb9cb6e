//! Impurity thermodynamics against log₁₀ T: entropy S_imp, specific heat C_imp and occupation
//! ⟨n_d⟩ with the fixed-point entropies ln 4 (free orbital) and ln 2 (local moment); Tχ_imp and
//! the double occupancy ⟨n↑n↓⟩ with Tχ = 1/8 (free orbital) and 1/4 (free moment).
//! Values at the cursor shell are in the legends; a pinned run is overlaid in dots.

use super::app::{App, RunData, View};
use super::plot::{
    Axis, HLine, Plot, Series, fmt_g, fmt_val, integer_ticks, linear_axis, value_range,
};
use super::theme::{PINNED_GLYPH, SERIES_GLYPHS};
use super::ui;
use dnrg::record::ShellRecord;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// An observable of the record, with its label.
struct Quantity {
    label: &'static str,
    get: fn(&ShellRecord) -> Option<f64>,
}

const ENTROPY_CHART: [Quantity; 3] = [
    Quantity {
        label: "S_imp",
        get: |s| Some(s.obs.s_imp),
    },
    Quantity {
        label: "C_imp",
        get: |s| Some(s.obs.c_imp),
    },
    Quantity {
        label: "n_d",
        get: |s| s.obs.n_d,
    },
];

const SUSCEPTIBILITY_CHART: [Quantity; 2] = [
    Quantity {
        label: "Tχ_imp",
        get: |s| Some(s.obs.tchi_imp),
    },
    Quantity {
        label: "docc",
        get: |s| s.obs.docc,
    },
];

pub fn render(frame: &mut Frame, area: Rect, app: &App, framed: bool) {
    let inner = ui::panel_inner(frame, area, app, View::Thermo, framed);
    if ui::no_shells_yet(frame, inner, app) {
        return;
    }
    let strip = if super::fitpanel::shown(app) {
        super::fitpanel::HEIGHT
    } else {
        0
    };
    let [summary, charts, fit_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(strip),
    ])
    .areas(inner);
    summary_line(frame, summary, app);
    if strip > 0 {
        super::fitpanel::render(frame, fit_area, app);
    }
    let [a, _, b] = if charts.width >= 100 {
        Layout::horizontal([
            Constraint::Fill(1),
            Constraint::Length(2),
            Constraint::Fill(1),
        ])
        .areas(charts)
    } else {
        Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(0),
            Constraint::Fill(1),
        ])
        .areas(charts)
    };
    chart(
        frame,
        a,
        app,
        &ENTROPY_CHART,
        &[(4f64.ln(), "ln4"), (2f64.ln(), "ln2")],
        0,
    );
    chart(
        frame,
        b,
        app,
        &SUSCEPTIBILITY_CHART,
        &[(0.25, "1/4"), (0.125, "1/8")],
        ENTROPY_CHART.len(),
    );
}

fn summary_line(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let run = &app.run;
    let mut spans = Vec::new();
    if let Some(c) = app.cursor_shell() {
        let s = &run.shells[c];
        spans.push(Span::styled(format!("N={c}"), theme.title()));
        spans.push(Span::raw(format!(" T={}", fmt_g(s.t, 3))));
    }
    match &run.summary {
        Some(summary) => {
            let tk = summary.t_k.map_or("—".into(), |t| fmt_g(t, 3));
            spans.push(Span::styled("   T_K ", theme.dim()));
            spans.push(Span::raw(tk));
            spans.push(Span::styled(" (Tχ_imp=0.07)", theme.dim()));
            if let Some(r) = summary.wilson_ratio {
                spans.push(Span::styled("   Wilson ratio ", theme.dim()));
                spans.push(Span::raw(format!("{r:.3}")));
            }
        }
        None if run.is_running() => spans.push(Span::styled("   T_K: when complete", theme.dim())),
        None => {}
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// The x axis: log₁₀ T over the whole run.
pub fn t_axis(app: &App, width: u16) -> Axis {
    let (lo, hi) = ui::log_t_range(app).unwrap_or((-8.0, 0.0));
    Axis {
        min: lo,
        max: hi,
        ticks: integer_ticks(lo, hi, (width / 5).max(2) as usize)
            .into_iter()
            .map(|v| (v, format!("{v}")))
            .collect(),
        title: "log10 T".into(),
    }
}

/// (log₁₀ T, value) of a run.
fn points(run: &RunData, get: impl Fn(&ShellRecord) -> Option<f64>) -> Vec<(f64, f64)> {
    run.shells
        .iter()
        .map(|s| (s.t.log10(), get(s).unwrap_or(f64::NAN)))
        .collect()
}

fn chart(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    quantities: &[Quantity],
    refs: &[(f64, &str)],
    first_series: usize,
) {
    let theme = app.theme;
    let run = &app.run;
    let [legend_area, plot_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    let cursor = app.cursor_shell();

    let mut series = Vec::new();
    let mut legend = Vec::new();
    let mut values = Vec::new();
    if let Some(pinned) = &app.pinned {
        for q in quantities {
            let pts = points(&pinned.run, q.get);
            values.extend(pts.iter().map(|p| p.1));
            series.push(Series {
                points: pts,
                style: theme.pinned(),
                glyph: Some(PINNED_GLYPH),
                line: false,
            });
        }
    }
    for (i, q) in quantities.iter().enumerate() {
        let pts = points(run, q.get);
        if pts.iter().all(|p| !p.1.is_finite()) {
            continue; // not computed in this run (plain NRG, Kondo model)
        }
        values.extend(pts.iter().map(|p| p.1));
        let style = theme.series(first_series + i);
        let glyph = SERIES_GLYPHS[(first_series + i) % SERIES_GLYPHS.len()];
        let value = cursor
            .and_then(|c| (q.get)(&run.shells[c]))
            .map_or("—".into(), |v| fmt_val(v, 4));
        let mark = if theme.mono { glyph } else { '━' };
        legend.push(Span::styled(format!("{mark} {}", q.label), style));
        legend.push(Span::raw(format!(" {value}  ")));
        series.push(Series {
            points: pts,
            style,
            glyph: theme.mono.then_some(glyph),
            line: true,
        });
    }
    if app.pinned.is_some() {
        legend.push(Span::styled(
            format!("{PINNED_GLYPH} pinned"),
            theme.pinned(),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(legend)), legend_area);

    let mut include: Vec<f64> = refs.iter().map(|r| r.0).collect();
    include.push(0.0);
    let (lo, hi) = value_range(values, &include);
    let y = linear_axis(lo, hi, (plot_area.height / 3).max(2) as usize);
    let mut plot = Plot::new(t_axis(app, plot_area.width), y, theme);
    plot.series = series;
    plot.hlines = refs
        .iter()
        .map(|&(y, label)| HLine {
            y,
            label: label.into(),
        })
        .collect();
    plot.cursor = cursor.map(|c| run.shells[c].t.log10());
    frame.render_widget(plot, plot_area);
}
