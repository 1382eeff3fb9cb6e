//! Small dialogs: the name of a user preset, the export path, and yes/no confirmations
//! before anything is overwritten.

use super::app::{App, Confirm, Prompt, PromptKind};
use super::export;
use super::ui;
use dnrg::text::printable;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub fn render_prompt(frame: &mut Frame, area: Rect, app: &App, prompt: &Prompt) {
    let theme = app.theme;
    let (title, label, hint) = match prompt.kind {
        PromptKind::SavePreset => (
            "Save as user preset",
            "name: ",
            "letters, digits, - and _; Enter saves, Esc cancels".to_string(),
        ),
        PromptKind::FitTarget => (
            "Fit target",
            "target: ",
            format!(
                "at {}; OBS = VALUE ± σ; Enter marks it, Esc cancels",
                app.target_at_label()
            ),
        ),
        PromptKind::Export => (
            "Export the run",
            "file: ",
            format!(
                "format: {} (from the extension; Tab switches); Enter writes, Esc cancels",
                export::describe(&prompt.input.text)
            ),
        ),
    };
    // however long the input, the hint and the error keep their lines: the input scrolls
    // and the error is cut to three lines
    let width = popup_inner_width(area);
    let error = prompt
        .error
        .as_deref()
        .map(|e| chunks(&printable(e), width, 3))
        .unwrap_or_default();
    let height = 2 + 2 + error.len() as u16;
    let inner = ui::popup(frame, area, POPUP_W, height, title, app);
    let (before, at, after) = prompt.input.view(width.saturating_sub(label.len()));
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
        Line::from(Span::styled(ui::fit(&hint, width), theme.dim())),
    ];
    lines.extend(
        error
            .into_iter()
            .map(|e| Line::from(Span::styled(e, theme.error()))),
    );
    frame.render_widget(Paragraph::new(lines), inner);
}

const POPUP_W: u16 = 76;

/// Width inside a popup of [`POPUP_W`] on `area` (see [`ui::popup`]).
fn popup_inner_width(area: Rect) -> usize {
    (POPUP_W.min(area.width.saturating_sub(2)).max(10) - 2) as usize
}

/// `text` in lines of `width` characters, at most `max` of them. A longer text loses its
/// middle (marked `…`): messages start with the path and end with the reason, both wanted.
fn chunks(text: &str, width: usize, max: usize) -> Vec<String> {
    let width = width.max(1);
    let room = width * max.max(1);
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() > room {
        let head = width.min(room / 2);
        let tail = room - head - 1;
        let mut cut: Vec<char> = chars[..head].to_vec();
        cut.push('…');
        cut.extend_from_slice(&chars[chars.len() - tail..]);
        chars = cut;
    }
    chars.chunks(width).map(|c| c.iter().collect()).collect()
}

pub fn render_confirm(frame: &mut Frame, area: Rect, app: &App, confirm: &Confirm) {
    let theme = app.theme;
    let width = popup_inner_width(area);
    let question = chunks(&printable(&confirm.question), width, 3);
    let inner = ui::popup(
        frame,
        area,
        POPUP_W,
        3 + question.len() as u16,
        "Overwrite?",
        app,
    );
    let mut lines: Vec<Line> = question.into_iter().map(Line::from).collect();
    lines.push(Line::from(vec![
        Span::styled("y", theme.key()),
        Span::raw(" overwrite   "),
        Span::styled("n", theme.key()),
        Span::raw("/"),
        Span::styled("Esc", theme.key()),
        Span::raw(" keep the existing file"),
    ]));
    frame.render_widget(Paragraph::new(lines), inner);
}
