//! The fit strip under the Thermo charts (shown once a target is marked): the targets, the
//! fit's latest run (parameters, χ², λ), how χ² went down run by run, and the result with
//! standard errors. The fit itself runs on a solver thread ([`super::worker`]).

use super::app::{App, FitStatus};
use super::plot::fmt_g;
use super::ui::fit_spans;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Lines the strip needs when shown.
pub const HEIGHT: u16 = 3;

pub fn shown(app: &App) -> bool {
    !app.targets.is_empty() || app.fit.is_some()
}

fn params(names: &[dnrg::params::Param], values: &[f64], errors: &[f64]) -> String {
    names
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let x = values.get(i).map_or("—".into(), |x| fmt_g(*x, 6));
            match errors.get(i) {
                Some(e) => format!("{p}={x}±{}", fmt_g(*e, 2)),
                None => format!("{p}={x}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let theme = app.theme;
    let targets: Vec<String> = app.targets.iter().map(|t| t.label()).collect();
    let mut head = vec![
        Span::styled("Fit ", theme.title()),
        Span::raw(format!("targets: {}", targets.join(" "))),
    ];
    let mut out = Vec::new();
    let Some(fit) = &app.fit else {
        head.push(Span::styled("  f fits, M forgets", theme.dim()));
        out.push(fit_spans(head, width));
        let free: Vec<&str> = app.config.derive.iter().map(|p| p.name()).collect();
        let free = if free.is_empty() {
            "none (d on Parameters)".into()
        } else {
            free.join(", ")
        };
        out.push(fit_spans(
            vec![Span::styled(format!("free: {free}"), theme.dim())],
            width,
        ));
        return out;
    };
    out.push(fit_spans(head, width));
    let runs = fit.steps.last().map_or(0, |s| s.runs);
    let second = match &fit.status {
        FitStatus::Running => {
            let mut spans = vec![Span::styled("fitting ", theme.warning())];
            match fit.steps.last() {
                Some(s) => spans.push(Span::raw(format!(
                    "run {runs}: {} χ²={} λ={} {}",
                    params(&fit.free, &s.theta, &[]),
                    fmt_g(s.cost, 3),
                    fmt_g(s.lambda, 1),
                    if s.accepted { "✓" } else { "✗ rejected" }
                ))),
                None => spans.push(Span::raw("run 1 computing…")),
            }
            spans.push(Span::styled("  Esc cancels", theme.dim()));
            spans
        }
        FitStatus::Finished { converged, reason } => {
            let (word, style) = if *converged {
                ("converged", theme.ok())
            } else {
                ("stopped", theme.error())
            };
            let cost = fit.steps.iter().rfind(|s| s.accepted);
            vec![
                Span::styled(format!("{word} "), style),
                Span::raw(format!(
                    "after {runs} runs: {} χ²={}",
                    params(&fit.free, &fit.best, &fit.std_err),
                    cost.map_or("—".into(), |s| fmt_g(s.cost, 2))
                )),
                Span::styled(format!("  ({reason})"), theme.dim()),
            ]
        }
        FitStatus::Failed(e) => vec![Span::styled("failed ", theme.error()), Span::raw(e.clone())],
        FitStatus::Cancelled(why) => vec![
            Span::styled("cancelled ", theme.warning()),
            Span::raw(format!("({why}) after {runs} runs")),
        ],
    };
    out.push(fit_spans(second, width));
    // χ² run by run (✗: a rejected step), newest last; cut from the left when long
    let trail: Vec<String> = fit
        .steps
        .iter()
        .map(|s| {
            if s.accepted {
                fmt_g(s.cost, 2)
            } else {
                "✗".into()
            }
        })
        .collect();
    let mut text = format!("χ² by run: {}", trail.join(" → "));
    let n = text.chars().count();
    if n > width && width > 1 {
        text = format!("…{}", text.chars().skip(n - width + 1).collect::<String>());
    }
    out.push(Line::from(Span::styled(text, theme.dim())));
    out
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    frame.render_widget(Paragraph::new(lines(app, area.width as usize)), area);
}
