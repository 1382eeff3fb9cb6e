//! Colours and markers. With `NO_COLOR` set (<https://no-color.org>) everything is drawn in
//! the terminal's default colours: series are then told apart by their glyphs, line styles and
//! labels, never by colour alone (the glyphs are shown in colour mode too, in the legends).

use ratatui::style::{Color, Modifier, Style};

/// How the explorer paints itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    /// No colours at all (`NO_COLOR`).
    pub mono: bool,
}

/// Glyphs of the thermodynamic and sensitivity series, in series order.
pub const SERIES_GLYPHS: [char; 6] = ['•', '+', 'x', 'o', '*', '#'];

/// The glyph that marks the points of a pinned (comparison) run.
pub const PINNED_GLYPH: char = '·';

impl Theme {
    /// `NO_COLOR` set to anything non-empty, or `TERM=dumb`, switches colours off.
    pub fn from_env() -> Theme {
        Theme::for_env(
            std::env::var_os("NO_COLOR").as_deref(),
            std::env::var_os("TERM").as_deref(),
        )
    }

    /// The theme for these values of `NO_COLOR` and `TERM`.
    pub fn for_env(no_color: Option<&std::ffi::OsStr>, term: Option<&std::ffi::OsStr>) -> Theme {
        let no_color = no_color.is_some_and(|v| !v.is_empty());
        let dumb = term.is_some_and(|t| t == "dumb");
        Theme {
            mono: no_color || dumb,
        }
    }

    fn fg(self, color: Color) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().fg(color)
        }
    }

    pub fn text(self) -> Style {
        Style::default()
    }

    /// Secondary text: axis labels, hints, descriptions.
    pub fn dim(self) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().fg(Color::DarkGray)
        }
    }

    /// Panel titles, the active tab, headings.
    pub fn title(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    /// Keys in hints and in the help overlay.
    pub fn key(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    /// The selected row of a list or table.
    pub fn selected(self) -> Style {
        Style::default().add_modifier(Modifier::REVERSED)
    }

    /// A value being typed.
    pub fn input(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::UNDERLINED)
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn warning(self) -> Style {
        self.fg(Color::Yellow)
    }

    pub fn ok(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn border(self, focused: bool) -> Style {
        match (focused, self.mono) {
            (true, true) => Style::default().add_modifier(Modifier::BOLD),
            (true, false) => Style::default().fg(Color::Cyan),
            (false, _) => self.dim(),
        }
    }

    /// Reference lines (ln 4, ln 2, 1/4, 1/8) and the shell cursor.
    pub fn guide(self) -> Style {
        self.dim()
    }

    /// The i-th series of a plot (thermodynamics, sensitivities).
    pub fn series(self, i: usize) -> Style {
        const COLORS: [Color; 6] = [
            Color::Cyan,
            Color::Yellow,
            Color::Magenta,
            Color::Green,
            Color::LightRed,
            Color::Blue,
        ];
        self.fg(COLORS[i % COLORS.len()])
    }

    /// The pinned comparison run.
    pub fn pinned(self) -> Style {
        if self.mono {
            Style::default()
        } else {
            Style::default().fg(Color::Gray).add_modifier(Modifier::DIM)
        }
    }

    /// Style and glyph of the charge sector Q of the flow diagram.
    pub fn sector(self, q: i32) -> (Style, char) {
        let (color, glyph) = match q {
            0 => (Color::Cyan, 'o'),
            1 => (Color::Yellow, '+'),
            -1 => (Color::Magenta, 'x'),
            2 => (Color::Green, '^'),
            -2 => (Color::LightRed, 'v'),
            3 => (Color::Blue, '>'),
            -3 => (Color::LightMagenta, '<'),
            _ => (Color::White, '*'),
        };
        (self.fg(color), glyph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_colour_on_dumb_terminals_or_with_no_color() {
        let t = |no_color: Option<&str>, term: Option<&str>| {
            Theme::for_env(no_color.map(OsStr::new), term.map(OsStr::new)).mono
        };
        assert!(!t(None, Some("xterm-256color")));
        assert!(t(None, Some("dumb")));
        assert!(t(Some("1"), Some("xterm")));
        assert!(
            !t(Some(""), None),
            "an empty NO_COLOR does not count (no-color.org)"
        );
        // a colour style is plain in mono mode
        assert_eq!(Theme { mono: true }.ok(), Style::default());
    }
}
