//! The parameters panel: every model, NRG and output parameter of the run with its value,
//! the derive toggles ([x] = differentiated) and an inline editor. Edits are applied through
//! the preset machinery; a refused value stays in the editor and the reason is shown below.

use super::app::{App, MessageKind, View};
use super::fields::Field;
use super::ui::{self, fit, pad};
use dnrg::params::SymmetryChoice;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

const SECTION_W: usize = 7;
const MARK_W: usize = 4;
const NAME_W: usize = 21;
const VALUE_W: usize = 15;

pub fn render(frame: &mut Frame, area: Rect, app: &App, framed: bool) {
    let inner = ui::panel_inner(frame, area, app, View::Parameters, framed);
    let theme = app.theme;
    let rows = app.visible_fields();
    let sel = app.param_sel.min(rows.len() - 1);
    let w = inner.width as usize;
    // narrow panels lose the section column, then the descriptions
    let section_w = if w >= SECTION_W + MARK_W + NAME_W + VALUE_W + 20 {
        SECTION_W
    } else {
        0
    };
    let name_w = if w >= MARK_W + NAME_W + VALUE_W {
        NAME_W
    } else {
        15
    };
    let desc_w = w.saturating_sub(section_w + MARK_W + name_w + VALUE_W);
    let compact = desc_w < 12;

    let mut lines = Vec::new();
    let head = format!(
        "{}{}{}{}",
        pad("", section_w),
        pad("∂", MARK_W),
        pad("parameter", name_w),
        pad("value", VALUE_W)
    );
    let mut head_spans = vec![Span::styled(head, theme.dim())];
    if !compact {
        head_spans.push(Span::styled("meaning", theme.dim()));
    }
    lines.push(Line::from(head_spans));

    // bottom: help for the selected row and the message (edit errors)
    let footer = footer(app, rows[sel], w);
    let body_rows = (inner.height as usize).saturating_sub(1 + footer.len());
    let first = sel.saturating_sub(body_rows.saturating_sub(1));
    let mut last_section = "";
    for (i, &field) in rows.iter().enumerate() {
        let section = field.section();
        let show_section = section != last_section;
        last_section = section;
        if i < first || i >= first + body_rows {
            continue;
        }
        let selected = i == sel;
        let mark = match field.param() {
            Some(p) if app.config.derive.contains(&p) => "[x]",
            Some(_) => "[ ]",
            None => "",
        };
        let name = field.name();
        let mut spans = vec![
            Span::styled(
                pad(if show_section { section } else { "" }, section_w),
                theme.dim(),
            ),
            Span::styled(pad(mark, MARK_W), theme.text()),
            Span::styled(
                pad(name, name_w),
                if selected {
                    theme.selected()
                } else {
                    theme.text()
                },
            ),
        ];
        let mut describe = !compact;
        match (&app.editing, selected) {
            (Some(input), true) => {
                // the value being typed may use the description's room, and scrolls beyond
                let room = VALUE_W - 1 + if compact { 0 } else { desc_w };
                let (before, at, after) = input.view(room);
                let style = if input.fresh {
                    theme.selected()
                } else {
                    theme.input()
                };
                let used = 1 + before.chars().count() + 1 + after.chars().count();
                spans.push(Span::styled(format!(" {before}"), style));
                spans.push(Span::styled(at, theme.selected()));
                spans.push(Span::styled(after, style));
                if used > VALUE_W {
                    describe = false;
                } else {
                    spans.push(Span::raw(" ".repeat(VALUE_W - used)));
                }
            }
            _ => {
                let mut value = field.value(&app.config);
                // `auto` says what it resolves to for this run's field
                if field == Field::Symmetry && app.config.nrg.symmetry == SymmetryChoice::Auto {
                    value = format!("{value}→{}", app.config.symmetry().name());
                }
                let style = if field.choices().is_some() {
                    theme.key()
                } else {
                    theme.text()
                };
                spans.push(Span::styled(pad(&format!(" {value}"), VALUE_W), style));
            }
        }
        if describe {
            spans.push(Span::styled(fit(field.description(), desc_w), theme.dim()));
        }
        lines.push(Line::from(spans));
    }
    let [body, foot] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(footer.len() as u16)])
            .areas(inner);
    frame.render_widget(Paragraph::new(lines), body);
    frame.render_widget(Paragraph::new(footer).wrap(Wrap { trim: true }), foot);
}

/// One or two lines under the table: the error of a refused edit, else how to change the
/// selected parameter.
fn footer(app: &App, field: Field, width: usize) -> Vec<Line<'static>> {
    let theme = app.theme;
    if let Some(m) = &app.message
        && m.kind == MessageKind::Error
    {
        return vec![Line::from(Span::styled(m.text.clone(), theme.error()))];
    }
    let hint = ui::fit_spans(hint(app, field), width);
    vec![hint, estimate_line(app, width)]
}

/// How to change the selected parameter.
fn hint(app: &App, field: Field) -> Vec<Span<'static>> {
    let theme = app.theme;
    let mut spans = vec![Span::styled(format!("{}: ", field.key()), theme.title())];
    if app.editing.is_some() {
        spans.push(Span::raw("Enter applies, Esc cancels"));
    } else if field.choices().is_some() {
        spans.push(Span::raw("Enter or +/− cycles"));
    } else {
        spans.push(Span::raw(format!(
            "Enter types a value, {}",
            field.step_hint()
        )));
    }
    if field.param().is_some() && app.editing.is_none() {
        spans.push(Span::raw(", d toggles ∂"));
    }
    spans
}

/// What the current parameters will cost (the budget only when it is exceeded: it depends on
/// the machine, and screens are meant to be reproducible).
fn estimate_line(app: &App, width: usize) -> Line<'static> {
    let theme = app.theme;
    let e = dnrg::estimate::Estimate::of(&app.config);
    let memory = dnrg::files::fmt_bytes(e.memory);
    let time = match dnrg::estimate::fmt_duration(e.time) {
        t if t.starts_with('<') => t,
        t => format!("~{t}"),
    };
    if e.memory > app.config.nrg.max_memory {
        let budget = dnrg::files::fmt_bytes(app.config.nrg.max_memory);
        Line::from(Span::styled(
            fit(
                &format!("estimate ~{memory} > nrg.max_memory = {budget}: refused"),
                width,
            ),
            theme.error(),
        ))
    } else {
        Line::from(Span::styled(
            fit(
                &format!("estimate ~{memory}, {time} for {} shells", e.shells),
                width,
            ),
            theme.dim(),
        ))
    }
}
