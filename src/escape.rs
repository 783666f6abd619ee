//! Client text made safe to show: control characters written out as escapes, so that a span
//! tag (or a log line) holds what the client sent without a LF, CR, ESC or NUL of its own.

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with every control character (C0, DEL, C1) written as `\xHH` (ASCII) or `\u{HH}`;
/// borrowed when there is none, the usual case. The escapes are not reversible (a client may
/// send a literal `\x0a`): the point is that nothing it sends can end or forge a line.
pub fn controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::controls;
    use std::borrow::Cow;

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("/gettime?a=b", "/gettime?a=b"),
            ("", ""),
            ("abc\nHost: evil.example", "abc\\x0aHost: evil.example"),
            ("a\r\nb", "a\\x0d\\x0ab"),
            ("nul\0", "nul\\x00"),
            ("tab\there", "tab\\x09here"),
            ("\x1b[31mred", "\\x1b[31mred"),
            ("del\x7f", "del\\x7f"),
            ("c1\u{85}next", "c1\\u{85}next"),
            ("é ünïcode ✓", "é ünïcode ✓"),
            ("a literal \\x0a stays", "a literal \\x0a stays"),
        ];
        for (input, want) in cases {
            assert_eq!(controls(input), want, "{input:?}");
            assert!(!controls(input).chars().any(char::is_control), "{input:?}");
        }
        assert!(matches!(controls("/plain"), Cow::Borrowed(_)));
    }
}
