//! A one-line text input (parameter values, preset names, export paths).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub text: String,
    /// Cursor position in characters.
    pub cursor: usize,
    /// The initial text is selected: the first typed character replaces it.
    pub fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Editing,
    Submit,
    Cancel,
}

impl Input {
    pub fn new(text: &str) -> Input {
        Input {
            text: text.to_string(),
            cursor: text.chars().count(),
            fresh: !text.is_empty(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        self.text
            .char_indices()
            .nth(char_index)
            .map_or(self.text.len(), |(i, _)| i)
    }

    pub fn handle(&mut self, key: KeyEvent) -> Outcome {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let len = self.text.chars().count();
        match key.code {
            KeyCode::Enter => return Outcome::Submit,
            KeyCode::Esc => return Outcome::Cancel,
            KeyCode::Char('c') if ctrl => return Outcome::Cancel,
            KeyCode::Char('u') if ctrl => {
                self.text.clear();
                self.cursor = 0;
            }
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = len,
            KeyCode::Char(c) if !ctrl => {
                if self.fresh {
                    self.text.clear();
                    self.cursor = 0;
                }
                let at = self.byte(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace => {
                if self.fresh {
                    self.text.clear();
                    self.cursor = 0;
                } else if self.cursor > 0 {
                    let at = self.byte(self.cursor - 1);
                    self.text.remove(at);
                    self.cursor -= 1;
                }
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte(self.cursor);
                self.text.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            _ => {}
        }
        self.fresh = false;
        Outcome::Editing
    }

    /// Insert pasted text at the cursor as one edit (replacing the initial text if it is still
    /// selected). Control characters are dropped: a pasted line break does not submit.
    pub fn paste(&mut self, text: &str) {
        if self.fresh {
            self.text.clear();
            self.cursor = 0;
            self.fresh = false;
        }
        let clean: String = text.chars().filter(|c| !c.is_control()).collect();
        let at = self.byte(self.cursor);
        self.text.insert_str(at, &clean);
        self.cursor += clean.chars().count();
    }

    /// Like [`Input::parts`], scrolled so that the cursor is visible in `width` characters
    /// (`…` marks text cut off on either side).
    pub fn view(&self, width: usize) -> (String, String, String) {
        let width = width.max(4);
        let len = self.text.chars().count();
        if len < width {
            return self.parts();
        }
        // room for the cursor cell and the two ellipses
        let first = self.cursor.saturating_sub(width - 2);
        let chars: Vec<char> = self.text.chars().collect();
        let mut before: String = chars[first..self.cursor.min(len)].iter().collect();
        if first > 0 {
            before = format!("…{}", before.chars().skip(1).collect::<String>());
        }
        let at = chars.get(self.cursor).map_or(" ".into(), |c| c.to_string());
        let used = before.chars().count() + 1;
        let room = width.saturating_sub(used);
        let rest = chars.get(self.cursor + 1..).unwrap_or(&[]);
        let after: String = if rest.len() > room {
            let mut a: String = rest[..room.saturating_sub(1)].iter().collect();
            a.push('…');
            a
        } else {
            rest.iter().collect()
        };
        (before, at, after)
    }

    /// The text split around the cursor: (before, at cursor, after).
    pub fn parts(&self) -> (String, String, String) {
        let before: String = self.text.chars().take(self.cursor).collect();
        let at: String = self
            .text
            .chars()
            .nth(self.cursor)
            .map_or(" ".into(), |c| c.to_string());
        let after: String = self.text.chars().skip(self.cursor + 1).collect();
        (before, at, after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn typing_replaces_the_initial_text_then_edits() {
        let mut input = Input::new("0.1");
        input.handle(key(KeyCode::Char('0')));
        input.handle(key(KeyCode::Char('.')));
        input.handle(key(KeyCode::Char('3')));
        assert_eq!(input.text, "0.3");
        input.handle(key(KeyCode::Left));
        input.handle(key(KeyCode::Backspace));
        assert_eq!(input.text, "03");
        assert_eq!(input.handle(key(KeyCode::Enter)), Outcome::Submit);
        let mut input = Input::new("0.1");
        input.handle(key(KeyCode::End));
        input.handle(key(KeyCode::Char('5')));
        assert_eq!(input.text, "0.15");
    }

    #[test]
    fn a_paste_is_one_edit_and_the_view_keeps_the_cursor_visible() {
        let mut input = Input::new("0.1");
        let long = "7".repeat(100_000);
        input.paste(&format!("{long}\n"));
        assert_eq!(
            input.text, long,
            "replaces the selected text, drops the line break"
        );
        assert_eq!(input.cursor, 100_000);
        let (before, at, after) = input.view(40);
        // 38 characters before the cursor (the first shown as …), the cursor cell, nothing after
        assert_eq!(before.chars().count(), 38);
        assert!(before.starts_with('…'));
        assert_eq!((at.as_str(), after.as_str()), (" ", ""));
        input.handle(key(KeyCode::Home));
        let (before, _, after) = input.view(40);
        assert_eq!(before, "");
        assert_eq!(after.chars().count(), 39, "cut to the width with …");
        assert!(after.ends_with('…'));
    }
}
