//! Located errors: every problem in a user's file names the file, line and column.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::{NamedSource, SourceSpan};

/// A problem found in one of the user's files, with its place and, where we can
/// tell, how to fix it.
///
/// `Display` gives the one-line form `file:line:col: message`; as a
/// [`miette::Diagnostic`] it carries the file's text and a labelled span so the
/// CLI can render the offending line.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
#[error("{}", self.one_line())]
pub struct LocatedError {
    /// Path of the file, relative to the project root where possible.
    pub file: PathBuf,
    /// 1-based line of the problem (0 when the whole file is meant).
    pub line: usize,
    /// 1-based column of the problem (0 when the whole file is meant).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when known.
    #[help]
    pub help: Option<String>,
    #[source_code]
    src: Option<NamedSource<String>>,
    #[label("here")]
    span: Option<SourceSpan>,
}

impl LocatedError {
    /// An error at byte `offset..offset+len` of `text`, the content of `file`.
    pub fn at(
        file: impl AsRef<Path>,
        text: &str,
        offset: usize,
        len: usize,
        message: impl Into<String>,
    ) -> Self {
        let offset = offset.min(text.len());
        let (line, column) = line_col(text, offset);
        let file = file.as_ref().to_path_buf();
        Self {
            src: Some(NamedSource::new(
                file.display().to_string(),
                text.to_string(),
            )),
            span: Some(SourceSpan::new(offset.into(), len.min(text.len() - offset))),
            file,
            line,
            column,
            message: message.into(),
            help: None,
        }
    }

    /// An error at a 1-based line and column of `text`, the content of `file`.
    pub fn at_line_col(
        file: impl AsRef<Path>,
        text: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        let offset = offset_of(text, line, column);
        let mut e = Self::at(file, text, offset, 1, message);
        e.line = line.max(1);
        e.column = column.max(1);
        e
    }

    /// An error about a whole file (or a file that could not be read).
    pub fn file(file: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self {
            file: file.as_ref().to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            help: None,
            src: None,
            span: None,
        }
    }

    /// Adds a hint on how to fix the problem.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `file:line:col: message (help)` on one line.
    pub fn one_line(&self) -> String {
        let mut s = if self.line == 0 {
            format!("{}: {}", self.file.display(), self.message)
        } else {
            format!(
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        };
        if let Some(h) = &self.help {
            s.push_str("; ");
            s.push_str(h);
        }
        s
    }
}

/// All the problems found in one pass over a project.
#[derive(Debug, Clone, Default, thiserror::Error)]
pub struct Errors(pub Vec<LocatedError>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", e.one_line())?;
        }
        Ok(())
    }
}

impl Errors {
    /// True when no problem was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Adds one problem.
    pub fn push(&mut self, e: LocatedError) {
        self.0.push(e);
    }
    /// `Ok(v)` when empty, otherwise these errors.
    pub fn into_result<T>(self, v: T) -> Result<T, Errors> {
        if self.0.is_empty() { Ok(v) } else { Err(self) }
    }
}

impl From<LocatedError> for Errors {
    fn from(e: LocatedError) -> Self {
        Errors(vec![e])
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// Byte offset of a 1-based line and column in `text` (clamped to the text).
pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let col_bytes: usize = l
                .chars()
                .take(column.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return offset + col_bytes;
        }
        offset += l.len();
    }
    text.len()
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The closest of `candidates` to `word`, when it is close enough to suggest.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "ab\ncd\nef";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 4), (2, 2));
        assert_eq!(offset_of(t, 2, 2), 4);
        assert_eq!(offset_of(t, 9, 1), t.len());
    }

    #[test]
    fn one_line_names_place_and_fix() {
        let e = LocatedError::at(
            "m.sql",
            "x\nmaterialised = 1",
            2,
            12,
            "unknown key `materialised`",
        )
        .with_help("did you mean `materialized`?");
        assert_eq!(
            e.one_line(),
            "m.sql:2:1: unknown key `materialised`; did you mean `materialized`?"
        );
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("materialised", ["materialized", "strategy"]),
            Some("materialized")
        );
        assert_eq!(did_you_mean("zzz", ["materialized", "strategy"]), None);
    }
}
