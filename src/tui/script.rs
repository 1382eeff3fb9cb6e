//! The key-script language of `dnrg tui --headless --keys SCRIPT`.
//!
//! Plain characters are key presses (`4`, `+`, `q`, `0.2`, a space is the space key).
//! Named keys and commands are written in angle brackets (case-insensitive):
//!
//! | token | meaning |
//! |---|---|
//! | `<Enter>` `<Esc>` `<Tab>` `<S-Tab>` `<BS>` `<Del>` `<Space>` | those keys |
//! | `<Up>` `<Down>` `<Left>` `<Right>` `<Home>` `<End>` `<PgUp>` `<PgDn>` | cursor keys |
//! | `<C-x>` | Ctrl + x (e.g. `<C-c>`, `<C-u>`) |
//! | `<lt>` | a literal `<` |
//! | `<wait>` | wait until the current job has computed all its shells (or failed), a fit has finished, and the spectrum of an open Spectrum panel is computed |
//! | `<wait:500ms>` `<wait:2s>` | keep handling solver messages for that long |
//! | `<shells:10>` | wait until the current job shows at least 10 shells |
//! | `<spectrum:5>` | wait until the spectrum job has done at least 5 shells of its two passes |
//! | `<resize:120x40>` | resize the virtual terminal |
//! | `<paste:TEXT>` | TEXT pasted in one piece (bracketed paste; TEXT has no `>`) |

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::time::Duration;

/// Largest width or height of the virtual terminal (a larger one only exhausts memory).
pub const MAX_SIDE: u16 = 1000;

/// One step of a key script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(KeyEvent),
    /// Until the current job is complete (or failed).
    WaitDone,
    /// Handle events for this long.
    Sleep(Duration),
    /// Until the current job shows this many shells.
    WaitShells(usize),
    /// Until the spectrum job has done this many shells of its passes.
    WaitSpectrum(usize),
    Resize(u16, u16),
    /// Text pasted in one piece (bracketed paste).
    Paste(String),
}

/// The script syntax, for the help overlay and error messages.
pub const SYNTAX: &str = "plain characters are key presses; <Enter> <Esc> <Tab> <S-Tab> <BS> \
    <Del> <Space> <Up> <Down> <Left> <Right> <Home> <End> <PgUp> <PgDn> <C-x> <lt>; \
    <wait> (current job complete), <wait:500ms>, <wait:2s>, <shells:N>, <spectrum:N>, \
    <resize:WxH>, <paste:TEXT>";

/// The syntax as help lines.
pub const HELP: &[&str] = &[
    "plain characters are key presses, e.g. 4<Down><Enter>0.2<Enter>",
    "<Enter> <Esc> <Tab> <S-Tab> <BS> <Del> <Space> <Up> <Down> <Left> <Right>",
    "<Home> <End> <PgUp> <PgDn> <C-x> (Ctrl+x) <lt> (a literal <)",
    "<wait>: until the current run (or fit) is complete, and an open spectrum",
    "<shells:N>: until the current run shows N shells",
    "<spectrum:N>: until the spectrum has done N shells of its two passes",
    "<wait:500ms>, <wait:2s>: keep handling events that long",
    "<resize:WxH>: resize the virtual terminal",
    "<paste:TEXT>: TEXT pasted in one piece",
];

pub fn parse(script: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rest = script;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            let Some(end) = rest.find('>') else {
                return Err(format!(
                    "unterminated '<' in key script at '{rest}' (write <lt> for a literal '<')"
                ));
            };
            let inside = &rest[1..end];
            // the pasted text keeps its case and may contain anything but '>'
            match inside.get(..6) {
                Some(head) if head.eq_ignore_ascii_case("paste:") => {
                    steps.push(Step::Paste(inside[6..].to_string()))
                }
                _ => steps.push(token(inside)?),
            }
            rest = &rest[end + 1..];
        } else {
            let key = match c {
                '\n' | '\r' => KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE),
                '\t' => KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE),
                c => KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE),
            };
            steps.push(Step::Key(key));
            rest = &rest[c.len_utf8()..];
        }
    }
    Ok(steps)
}

fn token(name: &str) -> Result<Step, String> {
    let key = |code| Ok(Step::Key(KeyEvent::new(code, KeyModifiers::NONE)));
    let lower = name.to_ascii_lowercase();
    let bad = |why: &str| Err(format!("key script: <{name}>: {why} (syntax: {SYNTAX})"));
    if let Some(arg) = lower.strip_prefix("wait:") {
        return match parse_duration(arg) {
            Some(d) => Ok(Step::Sleep(d)),
            None => bad("expected a duration such as 500ms or 2s"),
        };
    }
    if let Some(arg) = lower.strip_prefix("shells:") {
        return match arg.parse::<usize>() {
            Ok(n) => Ok(Step::WaitShells(n)),
            Err(_) => bad("expected a number of shells"),
        };
    }
    if let Some(arg) = lower.strip_prefix("spectrum:") {
        return match arg.parse::<usize>() {
            Ok(n) => Ok(Step::WaitSpectrum(n)),
            Err(_) => bad("expected a number of shells"),
        };
    }
    if let Some(arg) = lower.strip_prefix("resize:") {
        let size = arg.split_once('x').and_then(|(w, h)| {
            let (w, h) = (w.parse::<u16>().ok()?, h.parse::<u16>().ok()?);
            (w > 0 && h > 0 && w <= MAX_SIDE && h <= MAX_SIDE).then_some((w, h))
        });
        return match size {
            Some((w, h)) => Ok(Step::Resize(w, h)),
            None => bad("expected WIDTHxHEIGHT such as 120x40, each at most 1000"),
        };
    }
    if let Some(c) = lower.strip_prefix("c-") {
        let mut chars = c.chars();
        return match (chars.next(), chars.next()) {
            (Some(c), None) => Ok(Step::Key(KeyEvent::new(
                KeyCode::Char(c),
                KeyModifiers::CONTROL,
            ))),
            _ => bad("expected one character after C-"),
        };
    }
    match lower.as_str() {
        "wait" => Ok(Step::WaitDone),
        "enter" | "cr" | "return" => key(KeyCode::Enter),
        "esc" | "escape" => key(KeyCode::Esc),
        "tab" => key(KeyCode::Tab),
        "s-tab" | "backtab" => Ok(Step::Key(KeyEvent::new(
            KeyCode::BackTab,
            KeyModifiers::SHIFT,
        ))),
        "bs" | "backspace" => key(KeyCode::Backspace),
        "del" | "delete" => key(KeyCode::Delete),
        "space" => key(KeyCode::Char(' ')),
        "up" => key(KeyCode::Up),
        "down" => key(KeyCode::Down),
        "left" => key(KeyCode::Left),
        "right" => key(KeyCode::Right),
        "home" => key(KeyCode::Home),
        "end" => key(KeyCode::End),
        "pgup" | "pageup" => key(KeyCode::PageUp),
        "pgdn" | "pagedown" => key(KeyCode::PageDown),
        "lt" => key(KeyCode::Char('<')),
        "gt" => key(KeyCode::Char('>')),
        _ => bad("unknown key or command"),
    }
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1e-3)
    };
    let v: f64 = number.trim().parse().ok()?;
    (0.0..3600.0)
        .contains(&v)
        .then(|| Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(c: char) -> Step {
        Step::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
    }

    #[test]
    fn parses_keys_and_commands() {
        let steps =
            parse("4<Down><enter>0.2<Enter><wait><wait:250ms><shells:10><C-c><lt>").unwrap();
        assert_eq!(steps[0], k('4'));
        assert_eq!(
            steps[1],
            Step::Key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE))
        );
        assert_eq!(steps[3], k('0'));
        assert_eq!(steps[4], k('.'));
        assert_eq!(steps[7], Step::WaitDone);
        assert_eq!(steps[8], Step::Sleep(Duration::from_millis(250)));
        assert_eq!(steps[9], Step::WaitShells(10));
        assert_eq!(
            steps[10],
            Step::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL))
        );
        assert_eq!(steps[11], k('<'));
        assert_eq!(
            parse("<wait:2s>").unwrap(),
            [Step::Sleep(Duration::from_secs(2))]
        );
        assert_eq!(parse("<resize:120x40>").unwrap(), [Step::Resize(120, 40)]);
        assert_eq!(parse("<Spectrum:7>").unwrap(), [Step::WaitSpectrum(7)]);
        assert_eq!(
            parse("<Paste:A b<c>x").unwrap(),
            [Step::Paste("A b<c".into()), k('x')]
        );
    }

    #[test]
    fn rejects_bad_tokens_with_the_syntax() {
        let err = parse("<Bogus>").unwrap_err();
        assert!(err.contains("<Bogus>: unknown key"), "{err}");
        assert!(err.contains("<shells:N>"), "{err}");
        assert!(parse("abc<wait").unwrap_err().contains("unterminated"));
        assert!(parse("<wait:soon>").is_err());
        assert!(parse("<shells:x>").is_err());
        assert!(parse("<spectrum:-1>").is_err());
        assert!(parse("<resize:0x10>").is_err());
    }
}
