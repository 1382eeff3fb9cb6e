//! Text from users (preset keys and values, `--set` arguments, file names, descriptions) that
//! goes into messages: control characters are shown escaped (`\u{1b}`), never sent raw to a
//! terminal, where they could move the cursor, change colours or retitle the window.

use std::borrow::Cow;

/// `s` with every control character (also newlines and tabs) replaced by its Rust escape.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("U = 0.1 → ok"), "U = 0.1 → ok");
        assert_eq!(printable("a\u{1b}[31mb\n\u{7}"), "a\\u{1b}[31mb\\n\\u{7}");
        assert!(
            !printable("\u{9b}2J").chars().any(char::is_control),
            "C1 too"
        );
    }
}
