//! Small dialogs: the name of a user preset, the export path, and yes/no confirmations
//! before anything is overwritten.

use super::app::{App, Confirm, Prompt, PromptKind};
use super::export;
use super::ui;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

pub fn render_prompt(frame: &mut Frame, area: Rect, app: &App, prompt: &Prompt) {
    let theme = app.theme;
    let (title, label, hint) = match prompt.kind {
        PromptKind::SavePreset => (
            "Save as user preset",
            "name: ",
            "letters, digits, - and _; Enter saves, Esc cancels".to_string(),
        ),
        PromptKind::Export => (
            "Export the run",
            "file: ",
            format!(
                "format: {} (from the extension; Tab switches); Enter writes, Esc cancels",
                export::format_for(&prompt.input.text)
            ),
        ),
    };
    let inner = ui::popup(frame, area, 76, 7, title, app);
    let (before, at, after) = prompt.input.parts();
    let input_style = if prompt.input.fresh {
        theme.selected()
    } else {
        theme.input()
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled(label, theme.title()),
            Span::styled(before, input_style),
            Span::styled(at, theme.selected()),
            Span::styled(after, input_style),
        ]),
        Line::from(Span::styled(hint, theme.dim())),
    ];
    if let Some(e) = &prompt.error {
        lines.push(Line::from(Span::styled(e.clone(), theme.error())));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}

pub fn render_confirm(frame: &mut Frame, area: Rect, app: &App, confirm: &Confirm) {
    let theme = app.theme;
    let inner = ui::popup(frame, area, 76, 6, "Overwrite?", app);
    let lines = vec![
        Line::from(Span::raw(confirm.question.clone())),
        Line::from(vec![
            Span::styled("y", theme.key()),
            Span::raw(" overwrite   "),
            Span::styled("n", theme.key()),
            Span::raw("/"),
            Span::styled("Esc", theme.key()),
            Span::raw(" keep the existing file"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), inner);
}
