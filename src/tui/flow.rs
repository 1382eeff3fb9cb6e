//! Energy flow: the lowest rescaled levels (E − E₀)/ω_N against the shell index N, even and
//! odd shells separately (they flow to different fixed-point spectra). A track connects the
//! k-th level of one (Q, S_z) block from shell N to shell N+2. Colour (or glyph, with
//! NO_COLOR) is the charge Q; the table beside the diagram lists the levels of the cursor
//! shell with Q, S_z, degeneracy and dE/dθ.

use super::app::{App, View};
use super::plot::{Axis, Mark, Plot, Series, fmt_g, fmt_val, integer_ticks, linear_axis};
use super::theme::PINNED_GLYPH;
use super::ui::{self, fit, rpad};
use dnrg::record::{Level, ShellRecord};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use std::collections::BTreeMap;

/// Width of the level table.
const TABLE_WIDTH: u16 = 30;
/// A flow diagram needs at least this many columns.
const MIN_DIAGRAM: u16 = 34;
/// Levels above this (in units of ω_N) are clipped.
const E_CLIP: f64 = 4.0;

/// The levels of a shell in display order: by energy (degenerate ones by Q, then S_z, so the
/// order does not depend on rounding noise).
pub fn sorted_levels(shell: &ShellRecord) -> Vec<&Level> {
    let mut levels: Vec<&Level> = shell.levels.iter().collect();
    levels.sort_by(|a, b| {
        let key = |l: &Level| (l.e * 1e4).round() as i64;
        key(a)
            .cmp(&key(b))
            .then(a.q.cmp(&b.q))
            .then(a.sz.total_cmp(&b.sz))
    });
    levels
}

/// Whether the flow panel is wide enough for the even and the odd diagram side by side.
pub fn both_parities(app: &App) -> bool {
    let area = Rect::new(0, 0, app.size.0, app.size.1);
    let p = ui::panels(area, View::Flow, View::Sensitivities);
    p.flow.is_some_and(|r| {
        let inner = if p.framed {
            r.width.saturating_sub(2)
        } else {
            r.width
        };
        inner >= TABLE_WIDTH + 2 * MIN_DIAGRAM + 2
    })
}

/// The shell whose levels the table lists and the diagram marks: the cursor shell, or on a
/// single diagram the newest shell of its parity at or before the cursor.
pub fn table_shell(app: &App) -> Option<usize> {
    let c = app.cursor_shell()?;
    if both_parities(app) || c % 2 == app.parity {
        Some(c)
    } else {
        c.checked_sub(1)
    }
}

/// Top of the energy axis: the highest level shown (both parities, so that the two diagrams
/// share a scale), at most [`E_CLIP`], rounded up to a half.
fn energy_top(shells: &[ShellRecord]) -> f64 {
    let top = shells
        .iter()
        .flat_map(|s| s.levels.iter().map(|l| l.e))
        .filter(|e| e.is_finite())
        .fold(0.0f64, f64::max);
    ((top.clamp(1.0, E_CLIP) * 2.0).ceil() / 2.0).max(1.0)
}

/// dE/dθ of a cluster: one number, or the range of its first-order shifts.
pub fn fmt_de(values: &[f64]) -> String {
    match values {
        [] => "—".into(),
        [v] => fmt_val(*v, 3),
        _ => {
            let (lo, hi) = values
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            if (hi - lo).abs() <= 1e-9 * (1.0 + hi.abs()) {
                fmt_val(lo, 3)
            } else {
                format!("{}…{}", fmt_val(lo, 2), fmt_val(hi, 2))
            }
        }
    }
}

/// S_z as a fraction: 0, ½, −1, 3/2.
pub fn fmt_sz(sz: f64) -> String {
    let twice = (2.0 * sz).round() as i64;
    if twice % 2 == 0 {
        format!("{}", twice / 2)
    } else {
        format!("{twice}/2")
    }
}

/// Signed charge label: +1, −1, 0.
fn fmt_q(q: i32) -> String {
    if q > 0 {
        format!("+{q}")
    } else {
        q.to_string()
    }
}

type TrackKey = (i32, i64, usize);

/// Tracks (Q, 2S_z, rank) → points (N, E) of the shells of one parity, NaN-separated gaps.
fn tracks(shells: &[ShellRecord], parity: usize) -> BTreeMap<TrackKey, Vec<(f64, f64)>> {
    let mut out: BTreeMap<TrackKey, Vec<(f64, f64)>> = BTreeMap::new();
    for shell in shells.iter().filter(|s| s.n % 2 == parity) {
        let mut rank: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        let mut levels: Vec<&Level> = shell.levels.iter().collect();
        levels.sort_by(|a, b| a.e.total_cmp(&b.e));
        for l in levels {
            let block = (l.q, (2.0 * l.sz).round() as i64);
            let k = rank.entry(block).or_insert(0);
            let points = out.entry((block.0, block.1, *k)).or_default();
            if let Some(&(n_prev, _)) = points.last()
                && n_prev + 2.0 != shell.n as f64
            {
                points.push((f64::NAN, f64::NAN));
            }
            points.push((shell.n as f64, l.e));
            *k += 1;
        }
    }
    out
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, framed: bool) {
    let inner = ui::panel_inner(frame, area, app, View::Flow, framed);
    let run = &app.run;
    if ui::no_shells_yet(frame, inner, app) {
        return;
    }
    let table_w = TABLE_WIDTH.min(inner.width / 2);
    let [diagrams, _, table] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(2),
        Constraint::Length(table_w),
    ])
    .areas(inner);
    let y_max = energy_top(&run.shells);
    if both_parities(app) {
        let [even, _, odd] = Layout::horizontal([
            Constraint::Fill(1),
            Constraint::Length(2),
            Constraint::Fill(1),
        ])
        .areas(diagrams);
        diagram(frame, even, app, 0, y_max);
        diagram(frame, odd, app, 1, y_max);
    } else {
        diagram(frame, diagrams, app, app.parity, y_max);
    }
    level_table(frame, table, app);
}

fn diagram(frame: &mut Frame, area: Rect, app: &App, parity: usize, y_max: f64) {
    let theme = app.theme;
    let run = &app.run;
    let [legend_area, plot_area] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);

    let tracks = tracks(&run.shells, parity);
    let n_max = run
        .n_max()
        .unwrap_or(run.shells.len().saturating_sub(1))
        .max(2);
    let x_ticks = integer_ticks(0.0, n_max as f64, (plot_area.width / 6).max(2) as usize);
    let x = Axis {
        min: 0.0,
        max: n_max as f64,
        ticks: x_ticks.into_iter().map(|v| (v, format!("{v}"))).collect(),
        title: "N".into(),
    };
    let y = linear_axis(0.0, y_max, (plot_area.height / 3).max(2) as usize);
    let mut plot = Plot::new(x, y, theme);

    if let Some(pinned) = &app.pinned {
        let points: Vec<(f64, f64)> = pinned
            .run
            .shells
            .iter()
            .filter(|s| s.n % 2 == parity)
            .flat_map(|s| s.levels.iter().map(move |l| (s.n as f64, l.e)))
            .collect();
        plot.series.push(Series {
            points,
            style: theme.pinned(),
            glyph: Some(PINNED_GLYPH),
            line: false,
        });
    }
    // charge sectors far from Q = 0 first, so that Q = 0 ends up on top
    let mut keys: Vec<&TrackKey> = tracks.keys().collect();
    keys.sort_by_key(|(q, sz2, k)| (std::cmp::Reverse(q.abs()), *q, *sz2, *k));
    for key in keys {
        let (style, glyph) = theme.sector(key.0);
        plot.series.push(Series {
            points: tracks[key].clone(),
            style,
            glyph: theme.mono.then_some(glyph),
            line: true,
        });
    }

    // cursor and the selected level
    if let Some(c) = app.cursor_shell() {
        let c_here = if c % 2 == parity {
            Some(c)
        } else {
            c.checked_sub(1)
        };
        if let Some(n) = c_here {
            plot.cursor = Some(n as f64);
            if table_shell(app) == Some(n) {
                let levels = sorted_levels(&run.shells[n]);
                if let Some(l) = levels.get(app.level_sel.min(levels.len().saturating_sub(1))) {
                    plot.marks.push(Mark {
                        x: n as f64,
                        y: l.e.min(y_max),
                        glyph: '◆',
                        style: theme.title().add_modifier(Modifier::BOLD),
                    });
                }
            }
        }
    }
    frame.render_widget(plot, plot_area);

    // legend: parity, then the charge sectors present
    let mut qs: Vec<i32> = tracks.keys().map(|k| k.0).collect();
    qs.sort_by_key(|q| (q.abs(), -q));
    qs.dedup();
    let name = if parity == 0 { "even N" } else { "odd N" };
    let mut spans = vec![Span::styled(name, theme.title())];
    // the symmetry in use, when it is not the (Q, S_z) default: tracks are then multiplets
    // (one line per (Q, S) level, not per member)
    if run
        .shells
        .iter()
        .find_map(|s| s.levels.first())
        .is_some_and(|l| l.s.is_some())
    {
        spans.push(Span::styled(" (Q,S)", theme.title()));
    }
    let unit = spans.len();
    spans.push(Span::styled(" E/ω_N  Q:", theme.dim()));
    for q in qs {
        let (style, glyph) = theme.sector(q);
        let mark = if theme.mono { glyph } else { '━' };
        spans.push(Span::styled(format!(" {mark}{}", fmt_q(q)), style));
    }
    if app.pinned.is_some() {
        spans.push(Span::styled(
            format!(" {PINNED_GLYPH}pinned"),
            theme.pinned(),
        ));
    }
    let width = legend_area.width as usize;
    if spans
        .iter()
        .map(|s| s.content.chars().count())
        .sum::<usize>()
        > width
    {
        spans[unit] = Span::styled(" Q:", theme.dim());
    }
    frame.render_widget(Paragraph::new(ui::fit_spans(spans, width)), legend_area);
}

fn level_table(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let run = &app.run;
    let Some(c) = table_shell(app) else { return };
    let shell = &run.shells[c];
    let levels = sorted_levels(shell);
    let theta = app.sens_param();
    let w = area.width as usize;

    let mut lines = vec![Line::from(vec![
        Span::styled(format!("N={c}"), theme.title()),
        Span::styled(format!(" T={}", fmt_g(shell.t, 3)), theme.text()),
    ])];
    let de_head = theta.map_or(String::new(), |p| format!("dE/d{p}"));
    // (Q, S) runs list multiplets: the spin column is S, `g` counts states
    let spin_head = if levels.first().is_some_and(|l| l.s.is_some()) {
        "S"
    } else {
        "Sz"
    };
    lines.push(Line::from(Span::styled(
        fit(
            &format!(
                " {} {} {} g{}",
                rpad("E", 6),
                rpad("Q", 3),
                rpad(spin_head, 4),
                rpad(&de_head, 11)
            ),
            w,
        ),
        theme.dim(),
    )));
    let rows = (area.height as usize).saturating_sub(2);
    let sel = app.level_sel.min(levels.len().saturating_sub(1));
    let first = sel.saturating_sub(rows.saturating_sub(1));
    for (i, l) in levels.iter().enumerate().skip(first).take(rows) {
        let de = theta
            .and_then(|p| l.de.get(p.name()))
            .map_or(String::new(), |v| fmt_de(v));
        let text = format!(
            "{} {} {} {}{}",
            rpad(&format!("{:.3}", l.e), 6),
            rpad(&fmt_q(l.q), 3),
            rpad(&fmt_sz(l.sz), 4),
            rpad(&l.deg.to_string(), 1),
            rpad(&de, 11),
        );
        let (sector_style, glyph) = theme.sector(l.q);
        let style = if i == sel {
            theme.selected()
        } else {
            theme.text()
        };
        let marker = if theme.mono { glyph } else { '━' };
        lines.push(Line::from(vec![
            Span::styled(format!("{marker}"), sector_style),
            Span::styled(fit(&text, w.saturating_sub(1)), style),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_labels() {
        assert_eq!(fmt_sz(0.5), "1/2");
        assert_eq!(fmt_sz(-1.0), "-1");
        assert_eq!(fmt_sz(0.0), "0");
        assert_eq!(fmt_de(&[0.5, 0.5]), "0.5");
        assert_eq!(fmt_de(&[-0.5, 0.25]), "-0.5…0.25");
    }
}
