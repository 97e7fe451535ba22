//! Small text helpers shared by messages.

/// `text` cut after `max_chars` characters (on a char boundary) with `…` added;
/// unchanged when it is not longer.
pub fn ellipsize(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::ellipsize;

    #[test]
    fn cuts_long_text_on_a_char_boundary_and_keeps_short_text() {
        assert_eq!(ellipsize("short", 5), "short");
        assert_eq!(ellipsize("äöüäöü", 3), "äöü…");
    }
}
