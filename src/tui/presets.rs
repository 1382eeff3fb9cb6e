//! The preset picker: shipped and user presets; a broken user preset is listed with its error
//! and cannot be loaded, and the explorer carries on.

use super::app::{App, PresetPicker};
use super::ui::{self, fit, pad};
use dnrg::preset::PresetSource;
use dnrg::text::printable;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

pub fn render(frame: &mut Frame, area: Rect, app: &App, picker: &PresetPicker) {
    let theme = app.theme;
    let height = picker.items.len() as u16 + 6;
    let inner = ui::popup(
        frame,
        area,
        110,
        height,
        "Presets — Enter loads, Esc closes",
        app,
    );
    let w = inner.width as usize;
    let name_w = picker
        .items
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(8)
        .clamp(8, 24)
        + 2;
    let footer_h: u16 = if picker.error.is_some() { 3 } else { 1 };
    let rows = inner.height.saturating_sub(footer_h) as usize;
    let first = picker.selected.saturating_sub(rows.saturating_sub(1));
    let mut lines = Vec::new();
    for (i, p) in picker.items.iter().enumerate().skip(first).take(rows) {
        let source = match p.source {
            PresetSource::Shipped => "shipped",
            PresetSource::User(_) => "user",
        };
        let name_style = if i == picker.selected {
            theme.selected()
        } else {
            theme.text()
        };
        let mut spans = vec![
            Span::styled(pad(&printable(&p.name), name_w), name_style),
            Span::styled(pad(source, 9), theme.dim()),
        ];
        let rest = w.saturating_sub(name_w + 9);
        match &p.error {
            Some(e) => spans.push(Span::styled(
                fit(&format!("✗ {}", printable(e)), rest),
                theme.error(),
            )),
            None => spans.push(Span::raw(fit(&printable(&p.description), rest))),
        }
        lines.push(Line::from(spans));
    }
    let [body, foot] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(footer_h)]).areas(inner);
    frame.render_widget(Paragraph::new(lines), body);
    let footer = match &picker.error {
        Some(e) => Paragraph::new(Span::styled(printable(e).into_owned(), theme.error())),
        None => {
            let dir = app
                .store
                .user_dir()
                .map_or("no user preset directory".into(), |d| {
                    format!("user presets: {}", d.display())
                });
            Paragraph::new(Span::styled(dir, theme.dim()))
        }
    };
    frame.render_widget(footer.wrap(Wrap { trim: true }), foot);
}
