//! Data-interval placeholders: `:start` and `:end` in a model's SQL stand for
//! the run's interval `[start, end)`. They are found with the SQL tokenizer, so
//! text in strings and comments is never touched.

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, Tokenizer};
use strata_project::error::offset_of;

/// The two placeholders.
pub const PLACEHOLDERS: [&str; 2] = ["start", "end"];

/// Byte ranges of `:start` / `:end` in `sql`, with which one each is.
fn placeholders(sql: &str) -> Vec<(std::ops::Range<usize>, &'static str)> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return vec![];
    };
    let mut out = vec![];
    for w in tokens.windows(2) {
        let (Token::Colon, Token::Word(word)) = (&w[0].token, &w[1].token) else {
            continue;
        };
        let Some(name) = PLACEHOLDERS
            .iter()
            .find(|p| word.quote_style.is_none() && word.value.eq_ignore_ascii_case(p))
        else {
            continue;
        };
        let colon = w[0].span.start;
        let word_start = w[1].span.start;
        // `:start` written together, not `x : start`
        if colon.line != word_start.line || colon.column + 1 != word_start.column {
            continue;
        }
        let from = offset_of(sql, colon.line as usize, colon.column as usize);
        out.push((from..from + 1 + word.value.len(), *name));
    }
    out
}

/// Whether `sql` reads the run's interval.
pub fn uses_interval(sql: &str) -> bool {
    !placeholders(sql).is_empty()
}

/// `sql` with `:start` and `:end` replaced by the given SQL expressions.
pub fn bind_interval(sql: &str, start: &str, end: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut last = 0;
    for (range, name) in placeholders(sql) {
        out.push_str(&sql[last..range.start]);
        out.push_str(if name == "start" { start } else { end });
        last = range.end;
    }
    out.push_str(&sql[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_placeholders_but_not_strings_or_comments() {
        let sql =
            "select ':start' as s -- :end\nfrom t where ts >= :start and ts < :END and x::int > 0";
        assert!(uses_interval(sql));
        assert_eq!(
            bind_interval(sql, "A", "B"),
            "select ':start' as s -- :end\nfrom t where ts >= A and ts < B and x::int > 0"
        );
        assert!(!uses_interval("select 1 from t where a = 'x:start'"));
    }
}
