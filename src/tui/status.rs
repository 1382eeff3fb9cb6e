//! The tab bar (top), the status line (shell N / N_max, a progress gauge, kept/total states,
//! time per shell, what is being computed: the run, then the spectrum when its panel is open)
//! and the message line (bottom).

use super::app::{App, MessageKind, View};
use super::ui::{self, fit};
use dnrg::symmetry::Symmetry;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use std::time::Duration;

pub fn render_tabs(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let mut spans = vec![Span::styled(" dnrg ", theme.title())];
    for (i, v) in app.tabs().iter().enumerate() {
        // brackets, not only reverse video, mark the active tab (readable without colour)
        let (label, style) = if *v == app.view {
            (format!("[{} {}]", i + 1, v.title()), theme.selected())
        } else {
            (format!(" {} {} ", i + 1, v.title()), theme.dim())
        };
        spans.push(Span::styled(label, style));
    }
    let star = if app.modified() { "*" } else { "" };
    spans.push(Span::raw("  "));
    spans.push(Span::styled(
        format!("{}{star}", app.preset_name),
        theme.text(),
    ));
    if let Some(diff) = app.pinned_diff() {
        spans.push(Span::styled(format!("  pinned: {diff}"), theme.pinned()));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let help = " ? help ";
    if used + help.len() <= area.width as usize {
        spans.push(Span::raw(
            " ".repeat(area.width as usize - used - help.len()),
        ));
        spans.push(Span::styled(help, theme.key()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn fmt_duration(app: &App, d: Duration) -> String {
    if !app.show_times {
        return "—".into();
    }
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

pub fn render_status(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let run = &app.run;
    let shown = run.shells.len();
    let total = run.n_max().map(|n| n + 1);

    // the spectrum job follows the complete run
    let spectrum = app.spectrum_stage().filter(|_| run.summary.is_some());
    let (state, state_style) = if app.fit_running() {
        ("fitting", theme.warning())
    } else if run.error.is_some() {
        ("failed", theme.error())
    } else if spectrum.is_some() {
        ("spectrum", theme.warning())
    } else if run.summary.is_some() {
        ("done", theme.ok())
    } else if run.header.is_none() {
        ("starting", theme.warning())
    } else {
        ("running", theme.warning())
    };
    // Fields in display order with a rank: when the line does not fit, the lowest rank goes
    // first (the gauge repeats "N 12/46", the time per shell is the least needed number);
    // the state, the shell counter and what is being computed always stay, the last cut to
    // the width.
    let mut fields: Vec<(u8, Vec<Span<'static>>)> = Vec::new();
    // the state pads to 7 and the next field starts with a space, so even "starting" keeps
    // its separator
    fields.push((
        u8::MAX,
        vec![Span::styled(format!(" {state:<7}"), state_style)],
    ));

    let last_n = run.shells.last().map_or("—".into(), |s| s.n.to_string());
    let n_max = run.n_max().map_or("—".into(), |n| n.to_string());
    fields.push((
        u8::MAX,
        vec![Span::raw(format!(" shell {last_n:>3}/{n_max:<3}"))],
    ));

    // progress gauge: heavy line done, light line to do (readable without colour)
    let gauge_w = if area.width >= 100 { 20 } else { 10 };
    let ratio = match (spectrum, total) {
        (Some(stage), _) => stage.ratio(),
        (None, Some(t)) if t > 0 => shown as f64 / t as f64,
        _ => 0.0,
    };
    let filled = ((ratio * gauge_w as f64).round() as usize).min(gauge_w);
    fields.push((
        1,
        vec![
            Span::raw(" "),
            Span::styled("━".repeat(filled), theme.ok()),
            Span::styled("─".repeat(gauge_w - filled), theme.dim()),
        ],
    ));

    // the blocks this run uses (`auto` resolved): multiplets or S_z states
    let blocks = match run.config.symmetry() {
        Symmetry::QS => "(Q,S)",
        Symmetry::QSz => "(Q,Sz)",
    };
    // and the number of twisted chains averaged, when more than one
    let chains = match run.config.nrg.z_average {
        0 | 1 => String::new(),
        nz => format!(" Nz={nz}"),
    };
    fields.push((
        2,
        vec![Span::styled(format!(" {blocks}{chains}"), theme.dim())],
    ));

    if let Some(last) = run.shells.last() {
        fields.push((
            3,
            vec![
                Span::styled("  kept ", theme.dim()),
                Span::raw(format!("{}/{}", last.kept, last.states)),
            ],
        ));
    }
    if !run.elapsed.is_empty() {
        let mean = run.elapsed.iter().sum::<Duration>() / run.elapsed.len() as u32;
        fields.push((
            2,
            vec![
                Span::raw(format!("  {}", fmt_duration(app, mean))),
                Span::styled("/shell", theme.dim()),
            ],
        ));
    }
    let warnings: usize = run.shells.iter().map(|s| s.warnings.len()).sum();
    if warnings > 0 {
        fields.push((
            4,
            vec![Span::styled(format!("  ⚠ {warnings}"), theme.warning())],
        ));
    }
    // what is being computed
    let doing = if let Some(e) = &run.error {
        e.clone()
    } else if let Some(stage) = spectrum {
        format!(
            "A(ω) at T={}: {}",
            super::plot::fmt_exact(app.spectrum_t()),
            stage.describe()
        )
    } else if run.summary.is_some() {
        let total: Duration = run.elapsed.iter().sum();
        format!("{shown} shells in {}", fmt_duration(app, total))
    } else if run.header.is_none() {
        "setting up the Wilson chain".into()
    } else {
        let derive = run.derive();
        let with = if derive.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = derive.iter().map(|p| p.name()).collect();
            format!(" with d/d({})", names.join(","))
        };
        format!("computing N={shown}{with}")
    };
    fields.push((
        u8::MAX,
        vec![Span::styled(format!("  {doing}"), theme.dim())],
    ));

    let width = |fields: &[(u8, Vec<Span>)]| -> usize {
        fields
            .iter()
            .flat_map(|(_, spans)| spans)
            .map(|s| s.content.chars().count())
            .sum()
    };
    while width(&fields) > area.width as usize {
        let Some(drop) = fields
            .iter()
            .enumerate()
            .filter(|(_, (rank, _))| *rank < u8::MAX)
            .min_by_key(|(_, (rank, _))| *rank)
            .map(|(i, _)| i)
        else {
            break;
        };
        fields.remove(drop);
    }
    let spans = fields.into_iter().flat_map(|(_, spans)| spans).collect();
    let line = ui::fit_spans(spans, area.width as usize);
    frame.render_widget(Paragraph::new(line), area);
}

const HINTS: [(&str, &str); 11] = [
    ("?", "help"),
    ("q", "quit"),
    ("1-4", "panels"),
    ("↑↓", "select"),
    ("←→", "shell"),
    ("Enter", "edit"),
    ("+/-", "step"),
    ("d", "derive"),
    ("p", "presets"),
    ("s/e/P", "save/export/pin"),
    ("a", "spectrum"),
];

pub fn render_message(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let w = area.width as usize;
    let line = match &app.message {
        // an edit's error is shown in the parameters panel itself when that is on screen
        Some(m)
            if !(m.kind == MessageKind::Error
                && app.editing.is_some()
                && (app.view == View::Parameters || app.is_large())) =>
        {
            let style = match m.kind {
                MessageKind::Info => theme.text(),
                MessageKind::Ok => theme.ok(),
                MessageKind::Error => theme.error(),
            };
            Line::from(Span::styled(fit(&format!(" {}", m.text), w), style))
        }
        _ if app.is_editing() => Line::from(vec![
            Span::styled(" Enter", theme.key()),
            Span::raw(" apply  "),
            Span::styled("Esc", theme.key()),
            Span::raw(" cancel  "),
            Span::styled("C-u", theme.key()),
            Span::raw(" clear"),
        ]),
        _ => {
            let mut spans = vec![Span::raw(" ")];
            let mut used = 1;
            let step = format!("step {}", app.selected_field().name());
            for (key, what) in HINTS {
                // +/− act on the selected parameter from any panel: name it
                let what = if key == "+/-" { step.as_str() } else { what };
                let n = key.chars().count() + what.chars().count() + 3;
                if used + n > w {
                    break;
                }
                used += n;
                spans.push(Span::styled(key, theme.key()));
                spans.push(Span::styled(format!(" {what}  "), theme.dim()));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}
