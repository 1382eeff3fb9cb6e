//! Parameter sensitivities: ∂X/∂θ of each observable X against log₁₀ T (the records'
//! `obs_grad`, and `grad` for F_imp), for the derived parameters θ; beside it the table of all
//! ∂X/∂θ at the cursor shell and dE/dθ of its lowest levels.

use super::app::{App, RunData, View};
use super::flow::{fmt_de, fmt_sz, sorted_levels};
use super::plot::{Plot, Series, fmt_g, fmt_val, linear_axis, value_range};
use super::theme::{PINNED_GLYPH, SERIES_GLYPHS};
use super::thermo::t_axis;
use super::ui::{self, fit, pad, rpad};
use dnrg::record::{Observables, ShellRecord};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Observables with derivatives in this run: F_imp (its gradient) first, then those of
/// `obs_grad` in record order.
pub fn observables(run: &RunData) -> Vec<&'static str> {
    if run.derive().is_empty() {
        return Vec::new();
    }
    let mut out = vec!["F_imp"];
    for (name, _) in Observables::default().entries() {
        if name != "F_imp" && run.shells.iter().any(|s| s.obs_grad.contains_key(name)) {
            out.push(name);
        }
    }
    out
}

/// ∂X/∂θ at one shell.
pub fn derivative(shell: &ShellRecord, obs: &str, param: &str) -> Option<f64> {
    if obs == "F_imp" {
        shell.grad.get(param).copied()
    } else {
        shell.obs_grad.get(obs)?.get(param).copied()
    }
}

/// Display name of an observable.
fn label(obs: &str) -> &str {
    match obs {
        "Tchi_imp" => "Tχ_imp",
        other => other,
    }
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, framed: bool) {
    let inner = ui::panel_inner(frame, area, app, View::Sensitivities, framed);
    let run = &app.run;
    let Some(theta) = app.sens_param() else {
        return ui::placeholder(
            frame,
            inner,
            app,
            "no derivatives in this run: select a parameter (4) and press d",
        );
    };
    if ui::no_shells_yet(frame, inner, app) {
        return;
    }
    let obs = observables(run);
    let selected = obs[app.sens_obs.min(obs.len() - 1)];
    let table_w = (inner.width * 2 / 5).clamp(26, 44).min(inner.width / 2);
    let [chart_area, _, table_area] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(table_w),
    ])
    .areas(inner);
    chart(frame, chart_area, app, selected, theta.name());
    table(frame, table_area, app, &obs, selected);
}

fn chart(frame: &mut Frame, area: Rect, app: &App, obs: &str, theta: &str) {
    let theme = app.theme;
    let run = &app.run;
    let [legend_area, plot_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    let cursor = app.cursor_shell();
    let pts = |r: &RunData| -> Vec<(f64, f64)> {
        r.shells
            .iter()
            .map(|s| (s.t.log10(), derivative(s, obs, theta).unwrap_or(f64::NAN)))
            .collect()
    };
    let mut series = Vec::new();
    if let Some(p) = &app.pinned {
        series.push(Series {
            points: pts(&p.run),
            style: theme.pinned(),
            glyph: Some(PINNED_GLYPH),
            line: false,
        });
    }
    let style = theme.series(0);
    series.push(Series {
        points: pts(run),
        style,
        glyph: theme.mono.then_some(SERIES_GLYPHS[0]),
        line: true,
    });
    let value = cursor
        .and_then(|c| derivative(&run.shells[c], obs, theta))
        .map_or("—".into(), |v| fmt_val(v, 4));
    let mark = if theme.mono { SERIES_GLYPHS[0] } else { '━' };
    let mut legend = vec![
        Span::styled(format!("{mark} ∂{}/∂{theta}", label(obs)), style),
        Span::raw(format!(" {value}")),
    ];
    if app.pinned.is_some() {
        legend.insert(
            2,
            Span::styled(format!("  {PINNED_GLYPH} pinned"), theme.pinned()),
        );
    }
    frame.render_widget(Paragraph::new(Line::from(legend)), legend_area);

    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = value_range(values.collect::<Vec<_>>(), &[0.0]);
    let y = linear_axis(lo, hi, (plot_area.height / 3).max(2) as usize);
    let mut plot = Plot::new(t_axis(app, plot_area.width), y, theme);
    plot.series = series;
    plot.cursor = cursor.map(|c| run.shells[c].t.log10());
    frame.render_widget(plot, plot_area);
}

fn table(frame: &mut Frame, area: Rect, app: &App, obs: &[&str], selected: &str) {
    let theme = app.theme;
    let run = &app.run;
    let Some(c) = app.cursor_shell() else { return };
    let shell = &run.shells[c];
    let derive = run.derive();
    let theta = app.sens_param();
    let w = area.width as usize;
    let name_w = 9;
    let col_w = ((w.saturating_sub(name_w)) / derive.len().max(1)).clamp(8, 11);

    let title = vec![
        Span::styled(format!("N={c}"), theme.title()),
        Span::raw(format!(" T={}", fmt_g(shell.t, 3))),
        Span::styled("  ↑↓ X  t θ", theme.dim()),
    ];
    let mut lines = vec![ui::fit_spans(title, w)];
    let mut head = vec![Span::styled(pad("∂X/∂θ", name_w), theme.dim())];
    for p in &derive {
        let style = if Some(*p) == theta {
            theme.title()
        } else {
            theme.dim()
        };
        head.push(Span::styled(rpad(p.name(), col_w), style));
    }
    lines.push(Line::from(head));
    for &o in obs {
        let mut row = vec![Span::styled(
            pad(label(o), name_w),
            if o == selected {
                theme.selected()
            } else {
                theme.text()
            },
        )];
        for p in &derive {
            let v = derivative(shell, o, p.name()).map_or("—".into(), |v| fmt_val(v, 3));
            row.push(Span::raw(rpad(&v, col_w)));
        }
        lines.push(Line::from(row));
    }

    // dE/dθ of the lowest levels
    if let Some(p) = theta {
        let room = (area.height as usize).saturating_sub(lines.len() + 2);
        if room > 0 {
            // (Q, S) runs list multiplets: the spin column is S
            let spin_head = if shell.levels.first().is_some_and(|l| l.s.is_some()) {
                "S"
            } else {
                "Sz"
            };
            lines.push(Line::raw(""));
            lines.push(Line::from(Span::styled(
                fit(
                    &format!(
                        "{} {} {}{}",
                        rpad("E", 6),
                        rpad("Q", 3),
                        rpad(spin_head, 4),
                        rpad(&format!("dE/d{p}"), 12)
                    ),
                    w,
                ),
                theme.dim(),
            )));
            let levels = sorted_levels(shell);
            let sel = app.level_sel.min(levels.len().saturating_sub(1));
            let first = sel.saturating_sub(room.saturating_sub(1));
            for (i, l) in levels.iter().enumerate().skip(first).take(room) {
                let de = l.de.get(p.name()).map_or("—".into(), |v| fmt_de(v));
                let q = if l.q > 0 {
                    format!("+{}", l.q)
                } else {
                    l.q.to_string()
                };
                let text = format!(
                    "{} {} {}{}",
                    rpad(&format!("{:.3}", l.e), 6),
                    rpad(&q, 3),
                    rpad(&fmt_sz(l.sz), 4),
                    rpad(&de, 12)
                );
                let style = if i == sel {
                    theme.selected()
                } else {
                    theme.text()
                };
                lines.push(Line::from(Span::styled(fit(&text, w), style)));
            }
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}
