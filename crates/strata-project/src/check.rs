//! Data checks declared in a model header (`[[checks]]`) or as SQL files under
//! `checks/`: the raw TOML form and the resolved [`Check`].
//!
//! ```toml
//! [[checks]]
//! not_null = ["order_id"]
//! [[checks]]
//! expression = "quantity > 0"
//! on_fail = "quarantine"          # a per-row expectation
//! [[checks]]
//! relationships = { column = "customer_id", to = "silver.customers", field = "customer_id" }
//! severity = "warn"
//! ```

use std::ops::Range;

use serde::Deserialize;

use crate::error::{Errors, LocatedError};

/// One `[[checks]]` table as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// A name for results and alerts (default: derived from the rule).
    pub name: Option<String>,
    /// Columns that must not be null.
    pub not_null: Option<Vec<String>>,
    /// Columns whose combination must be unique.
    pub unique: Option<Vec<String>>,
    /// `{ column, values = [...] }`: the only values allowed (nulls pass).
    pub accepted_values: Option<RawAcceptedValues>,
    /// `{ column, to, field }`: every non-null value exists in `to.field`.
    pub relationships: Option<RawRelationships>,
    /// `{ column, min, max }`: inclusive bounds (either may be left out).
    pub range: Option<RawRange>,
    /// `{ column, pattern }`: non-null values match the regular expression.
    pub regex: Option<RawRegex>,
    /// `{ min, max }`: the table's row count.
    pub row_count: Option<RawRowCount>,
    /// `{ column, max_age }`: the newest value is at most this old (`"36h"`, `"2d"`).
    pub freshness: Option<RawFreshness>,
    /// A boolean SQL expression every row must satisfy.
    pub expression: Option<String>,
    /// A query returning the rows that violate a rule.
    pub sql: Option<String>,
    /// `error` (default: the publish is refused) or `warn`.
    pub severity: Option<String>,
    /// For `expression` only: a per-row expectation — `warn`, `drop`, `quarantine` or `fail`.
    pub on_fail: Option<String>,
}

/// `accepted_values`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcceptedValues {
    /// The column.
    pub column: String,
    /// Allowed values.
    pub values: Vec<toml::Value>,
}

/// `relationships`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelationships {
    /// The column holding the key.
    pub column: String,
    /// The table it refers to (`layer.name`).
    pub to: String,
    /// The key column there (default: the same name).
    pub field: Option<String>,
}

/// `range`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRange {
    /// The column.
    pub column: String,
    /// Inclusive lower bound.
    pub min: Option<toml::Value>,
    /// Inclusive upper bound.
    pub max: Option<toml::Value>,
}

/// `regex`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegex {
    /// The column.
    pub column: String,
    /// The regular expression.
    pub pattern: String,
}

/// `row_count`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRowCount {
    /// At least this many rows.
    pub min: Option<i64>,
    /// At most this many rows.
    pub max: Option<i64>,
}

/// `freshness`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFreshness {
    /// A date or timestamp column.
    pub column: String,
    /// The largest allowed age, e.g. `"6h"`, `"2d"`, `"30m"`.
    pub max_age: String,
}

/// Whether a failing check refuses the publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Record and report only.
    Warn,
    /// The task fails and the table keeps its published version.
    Error,
}

/// What a per-row expectation does with a violating row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    /// Keep it and count it.
    Warn,
    /// Remove it and count it.
    Drop,
    /// Move it to `<layer>.<model>_quarantine` with the rule.
    Quarantine,
    /// Fail the task; nothing is published.
    Fail,
}

impl OnFail {
    /// The name used in config and output.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFail::Warn => "warn",
            OnFail::Drop => "drop",
            OnFail::Quarantine => "quarantine",
            OnFail::Fail => "fail",
        }
    }
}

/// The rule a check tests.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// Columns never null.
    NotNull(Vec<String>),
    /// Column combination unique.
    Unique(Vec<String>),
    /// Values within a list (as SQL literals).
    AcceptedValues {
        /// Column.
        column: String,
        /// SQL literals.
        values: Vec<String>,
    },
    /// Keys exist in another table.
    Relationships {
        /// Column.
        column: String,
        /// Referenced table.
        to: String,
        /// Referenced column.
        field: String,
    },
    /// Values within bounds (SQL literals).
    Range {
        /// Column.
        column: String,
        /// Lower bound.
        min: Option<String>,
        /// Upper bound.
        max: Option<String>,
    },
    /// Values match a pattern.
    Regex {
        /// Column.
        column: String,
        /// Pattern.
        pattern: String,
    },
    /// Row count within bounds.
    RowCount {
        /// Minimum.
        min: Option<i64>,
        /// Maximum.
        max: Option<i64>,
    },
    /// Newest value not older than `max_age_seconds`.
    Freshness {
        /// Column.
        column: String,
        /// Allowed age.
        max_age_seconds: i64,
    },
    /// A boolean expression per row.
    Expression(String),
    /// A query returning violating rows.
    Sql(String),
}

/// A resolved check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Its name in results.
    pub name: String,
    /// The rule.
    pub kind: CheckKind,
    /// For table checks.
    pub severity: Severity,
    /// Set for per-row expectations.
    pub on_fail: Option<OnFail>,
}

impl Check {
    /// The tables the check reads besides the model itself.
    pub fn tables(&self) -> Vec<String> {
        match &self.kind {
            CheckKind::Relationships { to, .. } => vec![to.clone()],
            _ => vec![],
        }
    }
}

/// Parses a duration such as `90s`, `30m`, `6h`, `2d`, `1w` into seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().ok()?;
    let mult = match unit.trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 604_800,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// A TOML value as a SQL literal.
fn literal(v: &toml::Value) -> Result<String, String> {
    Ok(match v {
        toml::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => format!("'{d}'"),
        other => return Err(format!("`{other}` is not a single value")),
    })
}

/// Resolves one raw check; `at` locates errors at the check's table.
pub fn resolve(
    raw: RawCheck,
    span: Range<usize>,
    at: &dyn Fn(Range<usize>, String) -> LocatedError,
) -> Result<Check, Errors> {
    let mut errors = Errors::default();
    let mut kinds: Vec<(CheckKind, String)> = vec![];
    if let Some(cols) = raw.not_null {
        kinds.push((
            CheckKind::NotNull(cols.clone()),
            format!("not_null({})", cols.join(", ")),
        ));
    }
    if let Some(cols) = raw.unique {
        kinds.push((
            CheckKind::Unique(cols.clone()),
            format!("unique({})", cols.join(", ")),
        ));
    }
    if let Some(a) = raw.accepted_values {
        match a.values.iter().map(literal).collect::<Result<Vec<_>, _>>() {
            Ok(values) => kinds.push((
                CheckKind::AcceptedValues {
                    column: a.column.clone(),
                    values,
                },
                format!("accepted_values({})", a.column),
            )),
            Err(e) => errors.push(at(span.clone(), format!("accepted_values: {e}"))),
        }
    }
    if let Some(r) = raw.relationships {
        let field = r.field.unwrap_or_else(|| r.column.clone());
        let name = format!("relationships({} -> {}.{field})", r.column, r.to);
        kinds.push((
            CheckKind::Relationships {
                column: r.column,
                to: r.to,
                field,
            },
            name,
        ));
    }
    if let Some(r) = raw.range {
        let min = r.min.as_ref().map(literal).transpose();
        let max = r.max.as_ref().map(literal).transpose();
        match (min, max) {
            (Ok(None), Ok(None)) => {
                errors.push(at(span.clone(), "range needs `min`, `max` or both".into()))
            }
            (Ok(min), Ok(max)) => {
                let name = format!("range({})", r.column);
                kinds.push((
                    CheckKind::Range {
                        column: r.column,
                        min,
                        max,
                    },
                    name,
                ));
            }
            (Err(e), _) | (_, Err(e)) => errors.push(at(span.clone(), format!("range: {e}"))),
        }
    }
    if let Some(r) = raw.regex {
        let name = format!("regex({})", r.column);
        kinds.push((
            CheckKind::Regex {
                column: r.column,
                pattern: r.pattern,
            },
            name,
        ));
    }
    if let Some(r) = raw.row_count {
        if r.min.is_none() && r.max.is_none() {
            errors.push(at(
                span.clone(),
                "row_count needs `min`, `max` or both".into(),
            ));
        }
        kinds.push((
            CheckKind::RowCount {
                min: r.min,
                max: r.max,
            },
            "row_count".into(),
        ));
    }
    if let Some(f) = raw.freshness {
        match parse_duration(&f.max_age) {
            Some(secs) => {
                let name = format!("freshness({})", f.column);
                kinds.push((
                    CheckKind::Freshness {
                        column: f.column,
                        max_age_seconds: secs,
                    },
                    name,
                ));
            }
            None => errors.push(
                at(
                    span.clone(),
                    format!("freshness: bad max_age `{}`", f.max_age),
                )
                .with_help("write a number and a unit: 90s, 30m, 6h, 2d, 1w"),
            ),
        }
    }
    if let Some(e) = raw.expression {
        kinds.push((CheckKind::Expression(e.clone()), format!("expression: {e}")));
    }
    if let Some(q) = raw.sql {
        kinds.push((CheckKind::Sql(q), "sql".into()));
    }
    let severity = match raw.severity.as_deref() {
        None | Some("error") => Severity::Error,
        Some("warn") => Severity::Warn,
        Some(other) => {
            errors.push(
                at(span.clone(), format!("unknown severity `{other}`"))
                    .with_help("use `warn` or `error`"),
            );
            Severity::Error
        }
    };
    let on_fail = match raw.on_fail.as_deref() {
        None => None,
        Some("warn") => Some(OnFail::Warn),
        Some("drop") => Some(OnFail::Drop),
        Some("quarantine") => Some(OnFail::Quarantine),
        Some("fail") => Some(OnFail::Fail),
        Some(other) => {
            errors.push(
                at(span.clone(), format!("unknown on_fail `{other}`"))
                    .with_help("use warn, drop, quarantine or fail"),
            );
            None
        }
    };
    if kinds.len() != 1 {
        errors.push(
            at(span.clone(), format!("a check holds exactly one rule, found {}", kinds.len())).with_help(
                "use one of not_null, unique, accepted_values, relationships, range, regex, row_count, freshness, expression, sql per [[checks]] table",
            ),
        );
        return Err(errors);
    }
    let (kind, default_name) = kinds.remove(0);
    if on_fail.is_some() && !matches!(kind, CheckKind::Expression(_)) {
        errors.push(
            at(
                span.clone(),
                "`on_fail` only applies to `expression` checks".into(),
            )
            .with_help("per-row expectations are expressions; use `severity` for table checks"),
        );
    }
    if on_fail.is_some() && raw.severity.is_some() {
        errors.push(
            at(span, "an expression check has either `severity` (a table check) or `on_fail` (a per-row expectation), not both".into()),
        );
    }
    errors.into_result(Check {
        name: raw.name.unwrap_or(default_name),
        kind,
        severity,
        on_fail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(_: Range<usize>, m: String) -> LocatedError {
        LocatedError::file("m.sql", m)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("6h"), Some(21_600));
        assert_eq!(parse_duration("2 d"), Some(172_800));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn exactly_one_rule() {
        let raw = RawCheck {
            not_null: Some(vec!["a".into()]),
            unique: Some(vec!["a".into()]),
            ..Default::default()
        };
        assert!(
            resolve(raw, 0..0, &at)
                .expect_err("two rules")
                .to_string()
                .contains("exactly one rule")
        );
        assert!(resolve(RawCheck::default(), 0..0, &at).is_err());
    }

    #[test]
    fn expectations_and_names() {
        let raw = RawCheck {
            expression: Some("q > 0".into()),
            on_fail: Some("drop".into()),
            ..Default::default()
        };
        let c = resolve(raw, 0..0, &at).expect("ok");
        assert_eq!(c.on_fail, Some(OnFail::Drop));
        assert_eq!(c.name, "expression: q > 0");
        let raw = RawCheck {
            not_null: Some(vec!["a".into()]),
            on_fail: Some("drop".into()),
            ..Default::default()
        };
        assert!(resolve(raw, 0..0, &at).is_err());
    }

    #[test]
    fn literals() {
        let raw = RawCheck {
            accepted_values: Some(RawAcceptedValues {
                column: "s".into(),
                values: vec![toml::Value::String("it's".into()), toml::Value::Integer(3)],
            }),
            ..Default::default()
        };
        let c = resolve(raw, 0..0, &at).expect("ok");
        assert_eq!(
            c.kind,
            CheckKind::AcceptedValues {
                column: "s".into(),
                values: vec!["'it''s'".into(), "3".into()]
            }
        );
    }
}

/// A SQL file under `checks/`: a query returning the rows that violate a rule.
/// It gates the publish of the model it reads that runs last.
#[derive(Debug, Clone)]
pub struct SqlCheckFile {
    /// The file name without `.sql`.
    pub name: String,
    /// Path relative to the project.
    pub path: std::path::PathBuf,
    /// The whole file.
    pub sql: String,
    /// From an optional `/* severity = "warn" */` header; default error.
    pub severity: Severity,
}

/// The header of a `checks/*.sql` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSqlCheckHeader {
    /// `error` (default) or `warn`.
    pub severity: Option<String>,
    /// What the rule means.
    pub description: Option<String>,
}

/// Parses a `checks/*.sql` file.
pub fn parse_sql_check(
    rel: &std::path::Path,
    name: &str,
    text: &str,
) -> Result<SqlCheckFile, Errors> {
    let header = crate::model::header_of(text);
    let raw = match header {
        Some((h, offset)) => toml::from_str::<RawSqlCheckHeader>(h).map_err(|e| {
            Errors::from(crate::toml_error(
                rel,
                text,
                offset,
                &e,
                &["severity", "description"],
            ))
        })?,
        None => RawSqlCheckHeader::default(),
    };
    let severity = match raw.severity.as_deref() {
        None | Some("error") => Severity::Error,
        Some("warn") => Severity::Warn,
        Some(other) => {
            return Err(
                LocatedError::file(rel, format!("unknown severity `{other}`"))
                    .with_help("use `warn` or `error`")
                    .into(),
            );
        }
    };
    Ok(SqlCheckFile {
        name: name.to_string(),
        path: rel.to_path_buf(),
        sql: text.to_string(),
        severity,
    })
}
