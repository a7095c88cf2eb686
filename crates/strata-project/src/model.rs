//! Model files: `models/<layer>/<name>.sql`, one query with an optional TOML header.

use std::path::{Path, PathBuf};

use crate::Grain;
use crate::config::{MODEL_KEYS, RawModelConfig};
use crate::error::{Errors, LocatedError, did_you_mean};
use crate::{Layer, toml_error};

/// How a model's result is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Materialization {
    /// Rebuilt in full on every run (skipped when nothing it reads changed).
    Table,
    /// A view: stored as SQL, computed when read.
    View,
    /// Only what is new upstream is processed; see [`Strategy`].
    Incremental,
    /// Slowly changing dimension, type 2: history rows with `valid_from`,
    /// `valid_to` and `is_current`.
    Scd2,
}

impl Materialization {
    /// The name used in headers and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Table => "table",
            Self::View => "view",
            Self::Incremental => "incremental",
            Self::Scd2 => "scd2",
        }
    }
}

/// How an incremental model applies new rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Append the new rows.
    Append,
    /// Upsert the new rows on `unique_key`.
    Merge,
    /// Replace the run's data intervals of `partition_by`, one [`Grain`] each.
    ReplaceRange,
    /// Add the new rows to the table column by column, per `unique_key` (one
    /// row when it is empty): the query aggregates only the new upstream rows.
    Accumulate,
}

impl Strategy {
    /// The name used in headers and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Append => "append",
            Strategy::Merge => "merge",
            Strategy::ReplaceRange => "replace_range",
            Strategy::Accumulate => "accumulate",
        }
    }
}

/// How a `replace_range` model is partitioned in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitioning {
    /// The date or timestamp column whose value places a row in an interval.
    pub column: String,
    /// The size of one interval.
    pub grain: Grain,
    /// Earlier intervals re-processed on every run, for late-arriving data.
    pub lookback: u32,
}

/// A model's resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// How the result is stored.
    pub materialized: Materialization,
    /// For incremental models.
    pub strategy: Strategy,
    /// Key columns (merge, scd2).
    pub unique_key: Vec<String>,
    /// Docs.
    pub description: Option<String>,
    /// Owner.
    pub owner: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Upstream tables read in full by an incremental model.
    pub lookups: Vec<String>,
    /// Checks and per-row expectations, in the order written (a contract's
    /// `nullable = false` columns add `not_null` checks).
    pub checks: Vec<crate::check::Check>,
    /// The contract: columns the query must produce (empty: no contract).
    pub columns: Vec<ColumnSpec>,
    /// Retries after an outside (storage, network) failure.
    pub retries: u32,
    /// Seconds before the first retry; doubled for each next one.
    pub retry_delay_seconds: i64,
    /// Seconds a run of the model may take.
    pub timeout_seconds: Option<i64>,
    /// For `strategy = "replace_range"`: the time partitioning.
    pub partitioning: Option<Partitioning>,
    /// Freshness SLA in seconds: the table must receive new rows at least this often.
    pub freshness_seconds: Option<i64>,
}

/// One column of a model's contract.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// Column name.
    pub name: String,
    /// Required type, if declared.
    pub ty: Option<crate::ColumnType>,
    /// Whether nulls are allowed (default true).
    pub nullable: bool,
    /// Docs.
    pub description: Option<String>,
}

/// One model: a SQL file under `models/<layer>/`.
#[derive(Debug, Clone)]
pub struct Model {
    /// Qualified name, `layer.name`.
    pub name: String,
    /// Its layer (its folder).
    pub layer: Layer,
    /// The file name without `.sql`.
    pub short_name: String,
    /// Path relative to the project root.
    pub path: PathBuf,
    /// The whole file text (header included, so positions match the file).
    pub sql: String,
    /// Resolved header.
    pub config: ModelConfig,
}

/// Splits a leading `/* … */` block into (header text, byte offset of header text).
pub(crate) fn header_of(text: &str) -> Option<(&str, usize)> {
    let trimmed = text.trim_start();
    let start = text.len() - trimmed.len();
    let rest = trimmed.strip_prefix("/*")?;
    let end = rest.find("*/")?;
    Some((&rest[..end], start + 2))
}

/// Parses a model file's text. `rel` is its path relative to the project.
pub fn parse_model(
    rel: &Path,
    layer: Layer,
    short_name: &str,
    text: &str,
) -> Result<Model, Errors> {
    let mut errors = Errors::default();
    let name = format!("{}.{}", layer.as_str(), short_name);
    let raw = match header_of(text) {
        Some((header, offset)) => match toml::from_str::<RawModelConfig>(header) {
            Ok(raw) => raw,
            Err(e) => {
                errors.push(toml_error(rel, text, offset, &e, MODEL_KEYS));
                return Err(errors);
            }
        },
        None => RawModelConfig::default(),
    };
    let header_offset = header_of(text).map(|(_, o)| o).unwrap_or(0);
    let at = |span: std::ops::Range<usize>, msg: String| {
        LocatedError::at(rel, text, header_offset + span.start, span.len(), msg)
    };

    let materialized = match &raw.materialized {
        None => Materialization::Table,
        Some(m) => match m.get_ref().as_str() {
            "table" => Materialization::Table,
            "view" => Materialization::View,
            "incremental" => Materialization::Incremental,
            "scd2" => Materialization::Scd2,
            other => {
                let mut e = at(m.span(), format!("unknown materialization `{other}`"));
                e = e.with_help(
                    match did_you_mean(other, ["table", "view", "incremental", "scd2"]) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "use one of table, view, incremental, scd2".into(),
                    },
                );
                errors.push(e);
                Materialization::Table
            }
        },
    };
    let strategy = match &raw.strategy {
        None => Strategy::Append,
        Some(s) => {
            if materialized != Materialization::Incremental {
                errors.push(
                    at(
                        s.span(),
                        "`strategy` only applies to incremental models".into(),
                    )
                    .with_help("set materialized = \"incremental\" or remove `strategy`"),
                );
            }
            match s.get_ref().as_str() {
                "append" => Strategy::Append,
                "merge" => Strategy::Merge,
                "replace_range" => Strategy::ReplaceRange,
                "accumulate" => Strategy::Accumulate,
                other => {
                    let help = match did_you_mean(
                        other,
                        ["append", "merge", "replace_range", "accumulate"],
                    ) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "use `append`, `merge`, `replace_range` or `accumulate`".into(),
                    };
                    errors.push(
                        at(s.span(), format!("unknown incremental strategy `{other}`"))
                            .with_help(help),
                    );
                    Strategy::Append
                }
            }
        }
    };
    let unique_key = raw
        .unique_key
        .as_ref()
        .map(|k| k.get_ref().clone())
        .unwrap_or_default();
    let needs_key = materialized == Materialization::Scd2
        || (materialized == Materialization::Incremental && strategy == Strategy::Merge);
    if needs_key && unique_key.is_empty() {
        let span = raw
            .unique_key
            .as_ref()
            .map(|k| k.span())
            .or(raw.materialized.as_ref().map(|m| m.span()))
            .unwrap_or(0..0);
        errors.push(
            at(
                span,
                format!(
                    "{} needs `unique_key`",
                    if materialized == Materialization::Scd2 {
                        "scd2"
                    } else {
                        "strategy = \"merge\""
                    }
                ),
            )
            .with_help("add unique_key = [\"id\"] to the header"),
        );
    }
    let lookups = raw
        .lookups
        .as_ref()
        .map(|l| l.get_ref().clone())
        .unwrap_or_default();
    if let Some(l) = &raw.lookups
        && materialized != Materialization::Incremental
    {
        errors.push(
            at(
                l.span(),
                "`lookups` only applies to incremental models".into(),
            )
            .with_help("non-incremental models always read their inputs in full"),
        );
    }
    let duration =
        |v: &Option<toml::Spanned<String>>, what: &str, errors: &mut Errors| -> Option<i64> {
            let v = v.as_ref()?;
            match crate::check::parse_duration(v.get_ref()) {
                Some(s) => Some(s),
                None => {
                    errors.push(
                        at(v.span(), format!("bad {what} `{}`", v.get_ref()))
                            .with_help("write a number and a unit: 90s, 30m, 2h"),
                    );
                    None
                }
            }
        };
    let retry_delay_seconds = duration(&raw.retry_delay, "retry_delay", &mut errors).unwrap_or(5);
    let timeout_seconds = duration(&raw.timeout, "timeout", &mut errors);
    let freshness_seconds = duration(&raw.freshness, "freshness", &mut errors);
    let retries = raw.retries.unwrap_or(0);
    let partitioning = partitioning(&raw, strategy, &at, &mut errors);
    let mut columns = vec![];
    for (name, c) in raw.columns.unwrap_or_default() {
        let span = c.span();
        let c = c.into_inner();
        let ty = match c.ty.as_deref().map(str::parse::<crate::ColumnType>) {
            None => None,
            Some(Ok(t)) => Some(t),
            Some(Err(msg)) => {
                errors.push(at(span.clone(), format!("column `{name}`: {msg}")));
                None
            }
        };
        columns.push(ColumnSpec {
            name,
            ty,
            nullable: c.nullable.unwrap_or(true),
            description: c.description,
        });
    }
    let mut checks = vec![];
    let required: Vec<String> = columns
        .iter()
        .filter(|c| !c.nullable)
        .map(|c| c.name.clone())
        .collect();
    if !required.is_empty() {
        checks.push(crate::check::Check {
            name: format!("contract: not_null({})", required.join(", ")),
            kind: crate::check::CheckKind::NotNull(required),
            severity: crate::check::Severity::Error,
            on_fail: None,
        });
    }
    for c in raw.checks.unwrap_or_default() {
        let span = c.span();
        match crate::check::resolve(c.into_inner(), span, &at) {
            Ok(c) => checks.push(c),
            Err(es) => errors.0.extend(es.0),
        }
    }
    if sql_body_is_empty(text) {
        errors.push(
            LocatedError::at(rel, text, text.len(), 0, "the model has no SQL")
                .with_help("write one SELECT statement after the header"),
        );
    }
    errors.into_result(Model {
        name,
        layer,
        short_name: short_name.to_string(),
        path: rel.to_path_buf(),
        sql: text.to_string(),
        config: ModelConfig {
            materialized,
            strategy,
            unique_key,
            description: raw.description,
            owner: raw.owner,
            tags: raw.tags.unwrap_or_default(),
            lookups,
            checks,
            columns,
            retries,
            retry_delay_seconds,
            timeout_seconds,
            partitioning,
            freshness_seconds,
        },
    })
}

/// `partition_by`, `grain` and `lookback`: required by, and only allowed with,
/// `strategy = "replace_range"`.
fn partitioning(
    raw: &RawModelConfig,
    strategy: Strategy,
    at: &dyn Fn(std::ops::Range<usize>, String) -> LocatedError,
    errors: &mut Errors,
) -> Option<Partitioning> {
    if strategy != Strategy::ReplaceRange {
        let stray = [
            ("partition_by", raw.partition_by.as_ref().map(|v| v.span())),
            ("grain", raw.grain.as_ref().map(|v| v.span())),
            ("lookback", raw.lookback.as_ref().map(|v| v.span())),
        ];
        for (key, span) in stray {
            if let Some(span) = span {
                errors.push(
                    at(span, format!("`{key}` only applies to strategy = \"replace_range\"")).with_help(
                        "set materialized = \"incremental\" and strategy = \"replace_range\", or remove it",
                    ),
                );
            }
        }
        return None;
    }
    let Some(column) = &raw.partition_by else {
        let span = raw.strategy.as_ref().map(|s| s.span()).unwrap_or(0..0);
        errors.push(
            at(span, "strategy = \"replace_range\" needs `partition_by`".into())
                .with_help("name the date or timestamp column that places a row in an interval: partition_by = \"order_date\""),
        );
        return None;
    };
    let grain = match &raw.grain {
        None => Grain::Day,
        Some(g) => match Grain::parse(g.get_ref()) {
            Some(g) => g,
            None => {
                let help = match did_you_mean(g.get_ref(), ["hour", "day", "month"]) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use hour, day or month".into(),
                };
                errors
                    .push(at(g.span(), format!("unknown grain `{}`", g.get_ref())).with_help(help));
                Grain::Day
            }
        },
    };
    Some(Partitioning {
        column: column.get_ref().clone(),
        grain,
        lookback: raw.lookback.as_ref().map(|l| *l.get_ref()).unwrap_or(0),
    })
}

fn sql_body_is_empty(text: &str) -> bool {
    let rest = match header_of(text) {
        Some((h, o)) => &text[(o + h.len() + 2).min(text.len())..],
        None => text,
    };
    rest.lines()
        .map(|l| l.split("--").next().unwrap_or("").trim())
        .all(|l| l.is_empty() || l == ";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Model, Errors> {
        parse_model(
            Path::new("models/silver/orders.sql"),
            Layer::Silver,
            "orders",
            text,
        )
    }

    #[test]
    fn header_is_optional() {
        let m = parse("select 1 as x").expect("parses");
        assert_eq!(m.name, "silver.orders");
        assert_eq!(m.config.materialized, Materialization::Table);
    }

    #[test]
    fn header_sets_config() {
        let m = parse("/*\nmaterialized = \"incremental\"\nstrategy = \"merge\"\nunique_key = [\"id\"]\ntags = [\"a\"]\n*/\nselect 1 as id")
            .expect("parses");
        assert_eq!(m.config.materialized, Materialization::Incremental);
        assert_eq!(m.config.strategy, Strategy::Merge);
        assert_eq!(m.config.unique_key, vec!["id".to_string()]);
        assert_eq!(m.config.tags, vec!["a".to_string()]);
    }

    #[test]
    fn unknown_key_is_located_with_suggestion() {
        let e = parse("/*\nmaterialised = \"table\"\n*/\nselect 1").expect_err("unknown key");
        let s = e.to_string();
        assert!(
            s.starts_with("models/silver/orders.sql:2:1: unknown key `materialised`"),
            "{s}"
        );
        assert!(s.contains("did you mean `materialized`?"), "{s}");
    }

    #[test]
    fn bad_toml_is_located() {
        let e = parse("/*\nmaterialized = \n*/\nselect 1").expect_err("bad toml");
        assert!(
            e.to_string().starts_with("models/silver/orders.sql:2:"),
            "{e}"
        );
    }

    #[test]
    fn merge_needs_key() {
        let e = parse("/*\nmaterialized = \"incremental\"\nstrategy = \"merge\"\n*/\nselect 1")
            .expect_err("no key");
        assert!(e.to_string().contains("needs `unique_key`"), "{e}");
    }

    #[test]
    fn bad_materialization_suggests() {
        let e = parse("/*\nmaterialized = \"tabel\"\n*/\nselect 1").expect_err("bad");
        assert!(e.to_string().contains("did you mean `table`?"), "{e}");
        assert!(e.to_string().contains(":2:16:"), "{e}");
    }

    #[test]
    fn retries_and_timeouts() {
        let m = parse("/*\nretries = 2\nretry_delay = \"1m\"\ntimeout = \"2h\"\n*/\nselect 1")
            .expect("parses");
        assert_eq!(
            (
                m.config.retries,
                m.config.retry_delay_seconds,
                m.config.timeout_seconds
            ),
            (2, 60, Some(7200))
        );
        let e = parse("/*\ntimeout = \"soon\"\n*/\nselect 1").expect_err("bad timeout");
        assert!(e.to_string().contains(":2:11: bad timeout `soon`"), "{e}");
    }

    #[test]
    fn replace_range_needs_a_partition_column() {
        let m = parse("/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\npartition_by = \"d\"\ngrain = \"hour\"\nlookback = 3\n*/\nselect 1 as d")
            .expect("parses");
        assert_eq!(
            m.config.partitioning,
            Some(Partitioning {
                column: "d".into(),
                grain: Grain::Hour,
                lookback: 3
            })
        );
        let e =
            parse("/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\n*/\nselect 1")
                .expect_err("no column");
        assert!(
            e.to_string()
                .contains(":3:12: strategy = \"replace_range\" needs `partition_by`"),
            "{e}"
        );
        let e = parse("/*\nmaterialized = \"incremental\"\nstrategy = \"replace_range\"\npartition_by = \"d\"\ngrain = \"days\"\n*/\nselect 1")
            .expect_err("bad grain");
        assert!(e.to_string().contains("did you mean `day`?"), "{e}");
        let e = parse("/*\nlookback = 2\n*/\nselect 1").expect_err("stray");
        assert!(
            e.to_string().contains(":2:12: `lookback` only applies"),
            "{e}"
        );
    }

    #[test]
    fn empty_sql_is_an_error() {
        let e = parse("/* materialized = \"table\" */\n  -- nothing\n").expect_err("empty");
        assert!(e.to_string().contains("has no SQL"), "{e}");
    }
}
