//! Screen layout: a tab bar, the panels, the status line and the message line.
//!
//! Small terminals (80×24 and up) show one panel at a time (tabs 1–4); from 120×36 on, four
//! panels are shown at once and the "tab" is the focused panel that receives the arrow keys.
//! The third place shows Sensitivities or, after `a`, the Spectrum.

use super::app::{App, Overlay, View};
use super::{flow, help, parameters, presets, prompt, sensitivities, spectrum, status, thermo};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

/// Smallest usable screen.
pub const MIN_SIZE: (u16, u16) = (60, 16);

/// All four panels at once from this size on.
pub fn is_large((w, h): (u16, u16)) -> bool {
    w >= 120 && h >= 36
}

/// Where each panel goes for a screen size (`None`: not shown).
pub struct Panels {
    pub flow: Option<Rect>,
    pub thermo: Option<Rect>,
    pub sensitivities: Option<Rect>,
    pub spectrum: Option<Rect>,
    pub parameters: Option<Rect>,
    /// Panels are framed (large layout).
    pub framed: bool,
}

/// `third`: the panel in the third place (Sensitivities or Spectrum).
pub fn panels(area: Rect, view: View, third: View) -> Panels {
    let [_, main, _, _] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    if is_large((area.width, area.height)) {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(main);
        let [flow, parameters] =
            Layout::horizontal([Constraint::Percentage(64), Constraint::Percentage(36)]).areas(top);
        let [thermo, lower_right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(bottom);
        let spectrum = third == View::Spectrum;
        Panels {
            flow: Some(flow),
            thermo: Some(thermo),
            sensitivities: (!spectrum).then_some(lower_right),
            spectrum: spectrum.then_some(lower_right),
            parameters: Some(parameters),
            framed: true,
        }
    } else {
        let only = |v: View| (view == v).then_some(main);
        Panels {
            flow: only(View::Flow),
            thermo: only(View::Thermo),
            sensitivities: only(View::Sensitivities),
            spectrum: only(View::Spectrum),
            parameters: only(View::Parameters),
            framed: false,
        }
    }
}

/// The inside of a panel: framed with its number and title on large screens.
pub fn panel_inner(frame: &mut Frame, area: Rect, app: &App, view: View, framed: bool) -> Rect {
    panel_inner_noted(frame, area, app, view, framed, "")
}

/// [`panel_inner`] with a note after the title of the frame (dimmed).
pub fn panel_inner_noted(
    frame: &mut Frame,
    area: Rect,
    app: &App,
    view: View,
    framed: bool,
    note: &str,
) -> Rect {
    if !framed {
        return area;
    }
    let focused = app.view == view;
    let number = view.number();
    let mut title = vec![
        Span::styled(format!(" {number} "), app.theme.key()),
        Span::styled(format!("{} ", view.title()), app.theme.title()),
    ];
    if !note.is_empty() {
        title.push(Span::styled(format!("{note} "), app.theme.dim()));
    }
    let title = fit_spans(title, area.width.saturating_sub(2) as usize);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.border(focused))
        .title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let text = format!(
            "terminal too small: {}×{} (need {}×{}; q quits, other keys are ignored)",
            area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
        );
        frame.render_widget(
            Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let [tabs, _, status_area, message_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    status::render_tabs(frame, tabs, app);
    let p = panels(area, app.view, app.tabs()[2]);
    if let Some(r) = p.flow {
        flow::render(frame, r, app, p.framed);
    }
    if let Some(r) = p.thermo {
        thermo::render(frame, r, app, p.framed);
    }
    if let Some(r) = p.sensitivities {
        sensitivities::render(frame, r, app, p.framed);
    }
    if let Some(r) = p.spectrum {
        spectrum::render(frame, r, app, p.framed);
    }
    if let Some(r) = p.parameters {
        parameters::render(frame, r, app, p.framed);
    }
    status::render_status(frame, status_area, app);
    status::render_message(frame, message_area, app);

    match &app.overlay {
        Overlay::None => {}
        Overlay::Help { scroll } => help::render(frame, area, app, *scroll),
        Overlay::Presets(picker) => presets::render(frame, area, app, picker),
        Overlay::Prompt(p) => prompt::render_prompt(frame, area, app, p),
        Overlay::Confirm(c) => prompt::render_confirm(frame, area, app, c),
    }
}

/// A centered popup of at most `w`×`h`, cleared, framed, with a title; returns its inside.
pub fn popup(frame: &mut Frame, area: Rect, w: u16, h: u16, title: &str, app: &App) -> Rect {
    let w = w.min(area.width.saturating_sub(2)).max(10);
    let h = h.min(area.height.saturating_sub(2)).max(3);
    let rect = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, rect);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.border(true))
        .title(Span::styled(format!(" {title} "), app.theme.title()));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    inner
}

/// Cut `s` to `width` characters, with `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        s.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut out: String = s.chars().take(width - 1).collect();
        out.push('…');
        out
    }
}

/// The spans cut to `width` characters (the last one with `…`).
pub fn fit_spans(spans: Vec<Span<'static>>, width: usize) -> Line<'static> {
    let mut out = Vec::new();
    let mut used = 0;
    for span in spans {
        let n = span.content.chars().count();
        if used + n <= width {
            used += n;
            out.push(span);
        } else {
            let room = width - used;
            if room > 1 {
                out.push(Span::styled(fit(&span.content, room), span.style));
            }
            break;
        }
    }
    Line::from(out)
}

/// `s` padded with spaces (or cut) to exactly `width` characters.
pub fn pad(s: &str, width: usize) -> String {
    let s = fit(s, width);
    let n = s.chars().count();
    format!("{s}{}", " ".repeat(width - n))
}

/// `s` right-aligned in `width` characters.
pub fn rpad(s: &str, width: usize) -> String {
    let s = fit(s, width);
    let n = s.chars().count();
    format!("{}{s}", " ".repeat(width - n))
}

/// Log10 of the temperatures of every shell the run will have, from the header (so that the
/// temperature axis is fixed from the first shell on).
pub fn log_t_range(app: &App) -> Option<(f64, f64)> {
    let run = &app.run;
    let header = run.header.as_ref()?;
    let ts = header.temperatures();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for t in ts.chain(run.shells.iter().map(|s| s.t)) {
        if t > 0.0 && t.is_finite() {
            lo = lo.min(t.log10());
            hi = hi.max(t.log10());
        }
    }
    if let Some(p) = &app.pinned {
        for s in &p.run.shells {
            if s.t > 0.0 && s.t.is_finite() {
                lo = lo.min(s.t.log10());
                hi = hi.max(s.t.log10());
            }
        }
    }
    lo.is_finite()
        .then(|| (lo.floor(), hi.ceil().max(lo.floor() + 1.0)))
}

/// A one-line placeholder in the middle of an empty panel.
/// Until the first shell arrives, a panel says so (or why it never will); `true` if it did.
pub fn no_shells_yet(frame: &mut Frame, area: Rect, app: &App) -> bool {
    if !app.run.shells.is_empty() {
        return false;
    }
    let text = match &app.run.error {
        Some(e) => format!("run failed: {e}"),
        None => "waiting for the first shell…".into(),
    };
    placeholder(frame, area, app, &text);
    true
}

pub fn placeholder(frame: &mut Frame, area: Rect, app: &App, text: &str) {
    if area.height == 0 {
        return;
    }
    let y = area.y + area.height / 2;
    let line = Line::from(Span::styled(
        fit(text, area.width as usize),
        app.theme.dim(),
    ))
    .alignment(ratatui::layout::Alignment::Center);
    frame.render_widget(
        Paragraph::new(line),
        Rect {
            y,
            height: 1,
            ..area
        },
    );
}
