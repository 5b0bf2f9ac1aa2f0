//! Renderers: a `Plan` (or an apply `Report`) in, text out: `text` for the terminal, `json`
//! for machines, `markdown` for a pull-request comment, `diff` for `--diff`. Pure: no I/O, no
//! terminal probing; the caller decides colour and writes the bytes.

pub mod diff;
pub mod json;
pub mod markdown;
pub mod text;

/// How text output is styled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// Emit ANSI colours.
    pub color: bool,
}

impl Style {
    pub(crate) fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_diff;
#[cfg(test)]
mod tests_markdown;
