//! The `?` overlay: every key, the key-script syntax of headless mode, and how to read the
//! plots.

use super::app::App;
use super::script;
use super::ui::{self, fit};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// (keys, what they do), by group.
pub const KEYS: &[(&str, &[(&str, &str)])] = &[
    (
        "Everywhere",
        &[
            (
                "q  Esc  C-c",
                "quit (Esc first closes an overlay, cancels an edit, a fit, a spectrum)",
            ),
            ("?  F1", "this help (↑↓ scroll, Esc closes)"),
            (
                "1 2 3 4  Tab  S-Tab",
                "Flow | Thermo | Sensitivities | Parameters",
            ),
            ("a", "Spectrum A(ω) as panel 3; again: Sensitivities"),
            (
                "←  →  h  l",
                "move the shell cursor (Parameters: step the value)",
            ),
            ("Home  End", "first shell / follow the newest shell"),
            (
                "+  -",
                "step the selected parameter (from any panel); restarts",
            ),
            ("r", "restart the run"),
            (
                "P",
                "pin this run and overlay it on the next ones (P again unpins)",
            ),
            ("p", "preset picker: shipped and user presets (Enter loads)"),
            (
                "s",
                "save the parameters as a user preset (asks before overwriting)",
            ),
            (
                "e",
                "export the run (.jsonl .csv) or the focused panel (.svg .png); Tab",
            ),
        ],
    ),
    (
        "Flow",
        &[
            (
                "↑  ↓  j  k",
                "select a level of the cursor shell (◆ in the diagram)",
            ),
            ("o", "even / odd shells (small screens show one at a time)"),
            ("t", "which dE/dθ the level table shows"),
        ],
    ),
    (
        "Fit (the strip under the Thermo charts)",
        &[
            (
                "↑  ↓",
                "Thermo: select the observable m marks (n_d S_imp C_imp Tχ docc)",
            ),
            (
                "m",
                "mark it as a target at the cursor T (End: last shell); edit X = v ± σ",
            ),
            ("M", "forget the targets"),
            (
                "f",
                "fit the derived parameters (d) to the targets; each run is shown",
            ),
            ("Esc", "cancel the fit (a parameter change cancels it too)"),
        ],
    ),
    (
        "Sensitivities",
        &[
            ("↑  ↓", "select the observable X of the ∂X/∂θ plot"),
            ("t", "next derivative parameter θ"),
        ],
    ),
    (
        "Spectrum (a)",
        &[
            (
                "←  →  h  l",
                "step its temperature T along 1, 2, 5 × 10^k (recomputes)",
            ),
            (
                "Enter",
                "type T (from the last shell's scale ω_N up to the band edge 1)",
            ),
            ("t", "which ∂A/∂θ the second chart shows"),
            (
                "Esc",
                "cancel the spectrum being computed (so does any parameter change)",
            ),
        ],
    ),
    (
        "Parameters",
        &[
            ("↑ ↓ PgUp PgDn Home End", "select a parameter"),
            (
                "Enter",
                "type a value (Enter applies, Esc cancels); choices: next",
            ),
            (
                "+  -  ←  →",
                "step: ×1.25 Γ U J keep, ×10 T_min, ±0.1 Λ, ±0.005 ε_d, …",
            ),
            (
                "d",
                "differentiate with respect to the parameter ([x]) or not",
            ),
        ],
    ),
];

const READING: &[&str] = &[
    "Flow: (E−E₀)/ω_N of the lowest levels vs N; colour and glyph = charge Q;",
    "  the table gives Q, S_z, degeneracy g and dE/dθ of the cursor shell.",
    "Thermo: S_imp → ln4, ln2, 0 and Tχ_imp → 1/8, 1/4, 0 (the fixed points).",
    "Spectrum: πΓA(ω) against ±log|ω| (ω < 0 mirrored on the left, 0 in the middle),",
    "  computed after the run (FDM, Nz = 1); ╌ Friedel: sin²(πn_d/2), reached at T ≪ T_K.",
    "Pinned runs are drawn as dots (·). NO_COLOR=1: no colour, glyphs per series.",
];

/// Width of the key column.
const KEY_W: usize = 24;

/// The help text for a popup `width` columns wide: a key and its description share a line
/// when they fit, else the description goes on the next line.
pub fn lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let theme = app.theme;
    let mut lines = Vec::new();
    for (group, keys) in KEYS {
        lines.push(Line::from(Span::styled(group.to_string(), theme.title())));
        for (key, what) in *keys {
            let key_text = format!("  {key:<KEY_W$}");
            if key_text.chars().count() + what.chars().count() <= width {
                lines.push(Line::from(vec![
                    Span::styled(key_text, theme.key()),
                    Span::raw(what.to_string()),
                ]));
            } else {
                lines.push(Line::from(Span::styled(format!("  {key}"), theme.key())));
                lines.push(Line::raw(fit(&format!("      {what}"), width)));
            }
        }
    }
    lines.push(Line::from(Span::styled("Reading the plots", theme.title())));
    for l in READING {
        lines.push(Line::raw(fit(&format!("  {l}"), width)));
    }
    lines.push(Line::from(Span::styled(
        "Key scripts (dnrg tui --headless --keys SCRIPT)",
        theme.title(),
    )));
    for l in script::HELP {
        lines.push(Line::raw(fit(&format!("  {l}"), width)));
    }
    lines
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, scroll: u16) {
    let width = area.width.saturating_sub(4).min(98) as usize;
    let lines = lines(app, width);
    let total = lines.len() as u16;
    let inner = ui::popup(frame, area, 100, total + 2, "Help — Esc closes", app);
    let scroll = scroll.min(total.saturating_sub(inner.height));
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), inner);
    if inner.height > 0 && total > inner.height {
        let more = fit(" ↑↓ scroll ", inner.width as usize);
        let x = inner.x + inner.width.saturating_sub(more.chars().count() as u16);
        frame
            .buffer_mut()
            .set_string(x, inner.y + inner.height, more, app.theme.key());
    }
}
