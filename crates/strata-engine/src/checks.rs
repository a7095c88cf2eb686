//! Write-audit-publish: per-row expectations and table checks run on the data
//! a task is about to publish — computed and held, not yet committed — and an
//! error-severity failure refuses the commit, so the table keeps its published
//! version. Results (with a sample of failing rows) go to the state store.

use datafusion::prelude::{DataFrame, SessionContext};
use strata_project::{Check, CheckKind, Model, OnFail, Project, Severity};
use strata_runtime::RunInfo;
use strata_state::CheckResult;

use crate::engine::{Engine, scalar_i64};
use crate::error::{Context, Error, Result};

/// Rows kept as a sample of each failing check.
const SAMPLE_ROWS: usize = 5;

/// The run's start as a SQL literal of type `Timestamp(µs, "UTC")`. Used
/// instead of a cross join with a one-row table, which the Ballista engine
/// has been seen to get wrong under a `UNION ALL` (rows counted twice).
pub(crate) fn run_ts_sql(run: &RunInfo) -> String {
    format!(
        "arrow_cast('{}', 'Timestamp(Microsecond, Some(\"UTC\"))')",
        run.started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// Whether a model has anything to audit.
pub fn has_checks(engine: &Engine, model: &Model) -> bool {
    !model.config.checks.is_empty()
        || engine
            .graph
            .node(&model.name)
            .is_some_and(|n| !n.sql_checks.is_empty())
}

/// What is audited: a model's output, or a source's ingested batch.
pub struct Subject<'a> {
    /// The table (`silver.orders`, `bronze.orders`).
    pub name: &'a str,
    /// The file the checks are declared in, for messages.
    pub path: &'a std::path::Path,
    /// Declared checks and expectations.
    pub checks: &'a [Check],
    /// `checks/*.sql` files gating it.
    pub file_checks: Vec<Check>,
    /// Other tables its checks read.
    pub tables: Vec<String>,
    /// The data interval checked (RFC 3339), for a partitioned model's run.
    pub interval: Option<(String, String)>,
}

impl<'a> Subject<'a> {
    /// A model, with the `checks/*.sql` files that gate it.
    pub fn model(engine: &'a Engine, model: &'a Model) -> Self {
        let project: &Project = &engine.project;
        let node = engine.graph.node(&model.name);
        let file_checks = node
            .map(|n| {
                n.sql_checks
                    .iter()
                    .filter_map(|i| project.sql_checks.get(*i))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .map(|f| Check {
                name: format!("checks/{}.sql", f.name),
                kind: CheckKind::Sql(f.sql.clone()),
                severity: f.severity,
                on_fail: None,
            })
            .collect();
        let mut tables: Vec<String> = node.map(|n| n.check_tables.clone()).unwrap_or_default();
        tables.retain(|t| *t != model.name);
        Subject {
            name: &model.name,
            path: &model.path,
            checks: &model.config.checks,
            file_checks,
            tables,
            interval: None,
        }
    }

    /// A source's batch (checks declared under `[sources.NAME]`).
    pub fn source(name: &'a str, checks: &'a [Check]) -> Self {
        Subject {
            name,
            path: std::path::Path::new(strata_project::CONFIG_FILE),
            checks,
            file_checks: vec![],
            tables: vec![],
            interval: None,
        }
    }
}

/// What the per-row expectations left.
pub struct Expected {
    /// The rows to publish (held in memory).
    pub kept: DataFrame,
    /// Rows to quarantine, with `_rule`, `_run_id` and `_quarantined_at`.
    pub quarantine: Option<DataFrame>,
    /// One result per expectation.
    pub results: Vec<CheckResult>,
}

fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Applies the model's per-row expectations, in order, to the rows a run produces.
pub async fn expectations(
    ctx: &SessionContext,
    model: &Subject<'_>,
    new: DataFrame,
    run: &RunInfo,
) -> Result<Expected> {
    let what = || format!("auditing {}", model.name);
    let mut kept = crate::engine::cache(ctx, new).await.context(what)?;
    let mut quarantine: Option<DataFrame> = None;
    let mut results = vec![];
    for check in model.checks.iter().filter(|c| c.on_fail.is_some()) {
        let (CheckKind::Expression(expr), Some(action)) = (&check.kind, check.on_fail) else {
            continue;
        };
        let _ = ctx.deregister_table("__new");
        ctx.register_table("__new", kept.clone().into_view())
            .context(what)?;
        let bad = format!("select * from __new where not coalesce(({expr}), false)");
        let (failing, sample) = count_and_sample(ctx, model, check, "expectation", &bad).await?;
        let mut result = result_for(model, check, run, failing, sample);
        result.kind = "row".into();
        result.severity = action.as_str().into();
        if failing > 0 {
            match action {
                OnFail::Warn => {}
                OnFail::Drop => result.action = Some(format!("dropped {failing}")),
                OnFail::Quarantine => {
                    result.action = Some(format!("quarantined {failing}"));
                    let rows = ctx
                        .sql(&format!(
                            "select n.*, {} as _rule, {} as _run_id, {} as _quarantined_at from ({bad}\n) n",
                            sql_str(&check.name),
                            sql_str(&run.run_id),
                            run_ts_sql(run)
                        ))
                        .await
                        .context(what)?;
                    quarantine = Some(match quarantine {
                        None => rows,
                        Some(q) => q.union(rows).context(what)?,
                    });
                }
                OnFail::Fail => {}
            }
            if matches!(action, OnFail::Drop | OnFail::Quarantine) {
                let df = ctx
                    .sql(&format!(
                        "select * from __new where coalesce(({expr}), false)"
                    ))
                    .await
                    .context(what)?;
                kept = crate::engine::cache(ctx, df).await.context(what)?;
            }
        }
        results.push(result);
    }
    let _ = ctx.deregister_table("__new");
    Ok(Expected {
        kept,
        quarantine,
        results,
    })
}

fn result_for(
    model: &Subject<'_>,
    check: &Check,
    run: &RunInfo,
    failing: i64,
    sample: String,
) -> CheckResult {
    let failed = failing > 0;
    CheckResult {
        run_id: run.run_id.clone(),
        model: model.name.to_string(),
        check_name: check.name.clone(),
        kind: "table".into(),
        severity: match check.severity {
            Severity::Warn => "warn".into(),
            Severity::Error => "error".into(),
        },
        status: match (failed, check.on_fail, check.severity) {
            (false, _, _) => "pass".into(),
            (true, Some(OnFail::Fail), _) => "fail".into(),
            (true, Some(_), _) => "warn".into(),
            (true, None, Severity::Warn) => "warn".into(),
            (true, None, Severity::Error) => "fail".into(),
        },
        failing_rows: failing,
        action: None,
        sample,
        checked_at: strata_state::now(),
        interval: model.interval.clone(),
    }
}

/// How many rows a violations query returns, and a sample of them as JSON.
async fn count_and_sample(
    ctx: &SessionContext,
    subject: &Subject<'_>,
    check: &Check,
    what: &str,
    violations: &str,
) -> Result<(i64, String)> {
    let failing = scalar_i64(ctx, &format!("select count(*) from ({violations}\n)"))
        .await
        .map_err(|e| {
            Error::User(format!(
                "{}: {what} `{}`: {e}",
                subject.path.display(),
                check.name
            ))
        })?;
    let sample = if failing > 0 {
        sample_json(ctx, violations).await?
    } else {
        "[]".into()
    };
    Ok((failing, sample))
}

async fn sample_json(ctx: &SessionContext, violations: &str) -> Result<String> {
    let batches = ctx
        .sql(&format!(
            "select * from ({violations}\n) limit {SAMPLE_ROWS}"
        ))
        .await
        .context(|| "sampling failing rows".into())?
        .collect()
        .await
        .context(|| "sampling failing rows".into())?;
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        for b in &batches {
            w.write(b).context(|| "sampling failing rows".into())?;
        }
        w.finish().context(|| "sampling failing rows".into())?;
    }
    let s = String::from_utf8_lossy(&buf).into_owned();
    Ok(if s.trim().is_empty() { "[]".into() } else { s })
}

/// The query returning what violates a table check on `rel`.
fn violations(kind: &CheckKind, rel: &str) -> Option<String> {
    Some(match kind {
        CheckKind::NotNull(cols) => {
            let cond = cols
                .iter()
                .map(|c| format!("{c} is null"))
                .collect::<Vec<_>>()
                .join(" or ");
            format!("select * from {rel} where {cond}")
        }
        CheckKind::Unique(cols) => {
            let k = cols.join(", ");
            let not_null = cols
                .iter()
                .map(|c| format!("{c} is not null"))
                .collect::<Vec<_>>()
                .join(" and ");
            format!(
                "select {k}, count(*) as duplicates from {rel} where {not_null} group by {k} having count(*) > 1"
            )
        }
        CheckKind::AcceptedValues { column, values } => {
            format!(
                "select * from {rel} where {column} is not null and {column} not in ({})",
                values.join(", ")
            )
        }
        CheckKind::Relationships { column, to, field } => format!(
            "select * from {rel} r where r.{column} is not null and not exists (select 1 from {to} t where t.{field} = r.{column})"
        ),
        CheckKind::Range { column, min, max } => {
            let mut conds = vec![];
            if let Some(m) = min {
                conds.push(format!("{column} < {m}"));
            }
            if let Some(m) = max {
                conds.push(format!("{column} > {m}"));
            }
            format!("select * from {rel} where {}", conds.join(" or "))
        }
        CheckKind::Regex { column, pattern } => {
            format!(
                "select * from {rel} where {column} is not null and not regexp_like({column}, {})",
                sql_str(pattern)
            )
        }
        CheckKind::RowCount { min, max } => {
            let mut conds = vec![];
            if let Some(m) = min {
                conds.push(format!("count(*) < {m}"));
            }
            if let Some(m) = max {
                conds.push(format!("count(*) > {m}"));
            }
            format!(
                "select count(*) as row_count from {rel} having {}",
                conds.join(" or ")
            )
        }
        CheckKind::Expression(e) => format!("select * from {rel} where not coalesce(({e}), false)"),
        CheckKind::Sql(q) => q.trim().trim_end_matches(';').to_string(),
        CheckKind::Freshness { .. } => return None,
    })
}

/// Runs the model's table checks (and the `checks/*.sql` files it gates) on
/// `after`, the table as it would be published, in a session of its own where
/// `after` stands under the model's name and other tables at their current versions.
pub async fn table_checks(
    engine: &Engine,
    model: &Subject<'_>,
    after: DataFrame,
    run: &RunInfo,
) -> Result<Vec<CheckResult>> {
    let what = || format!("checking {}", model.name);
    let ctx = engine.context_for(&after);
    ctx.register_table(model.name, after.into_view())
        .context(what)?;
    if !model.tables.is_empty() {
        engine.register_current(&ctx, &model.tables).await?;
    }
    let mut results = vec![];
    for check in model
        .checks
        .iter()
        .filter(|c| c.on_fail.is_none())
        .chain(model.file_checks.iter())
    {
        let (failing, sample) = match &check.kind {
            CheckKind::Freshness {
                column,
                max_age_seconds,
            } => {
                let newest = crate::engine::scalar_opt(
                    &ctx,
                    &format!(
                        "select cast(to_unixtime(max({column})) as bigint) from {}",
                        model.name
                    ),
                )
                .await
                .map_err(|e| {
                    Error::User(format!(
                        "{}: check `{}`: {e}",
                        model.path.display(),
                        check.name
                    ))
                })?;
                let now = run.started_at.timestamp();
                match newest {
                    Some(n) if now - n <= *max_age_seconds => (0, "[]".to_string()),
                    Some(n) => (
                        1,
                        format!(
                            "[{{\"newest_age_seconds\":{},\"max_age_seconds\":{max_age_seconds}}}]",
                            now - n
                        ),
                    ),
                    None => (1, "[{\"newest\":null}]".to_string()),
                }
            }
            kind => {
                let Some(v) = violations(kind, model.name) else {
                    continue;
                };
                let (failing, sample) = count_and_sample(&ctx, model, check, "check", &v).await?;
                (failing, sample)
            }
        };
        results.push(result_for(model, check, run, failing, sample));
    }
    Ok(results)
}

/// Records results and refuses the publish when an error check failed.
pub async fn gate(
    engine: &Engine,
    model: &Subject<'_>,
    results: &[CheckResult],
    published: Option<i64>,
) -> Result<()> {
    if !results.is_empty() {
        engine
            .state
            .record_checks(results)
            .await
            .context(|| "recording check results".into())?;
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.status == "fail")
        .map(|r| {
            format!(
                "`{}`: {} failing (sample: {})",
                r.check_name,
                r.failing_rows,
                clip(&r.sample, 300)
            )
        })
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    let kept = match published {
        Some(v) => format!("{} stays at version {v}", model.name),
        None => format!("{} was not created", model.name),
    };
    Err(Error::User(format!(
        "checks failed, nothing published ({kept}): {}",
        failed.join("; ")
    )))
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `strata check`: runs a model's checks on its current published table (an
/// scd2 model's current rows); expectations count the rows that would violate
/// them. Returns `None` when the table has not been built.
pub async fn check_current(
    engine: &Engine,
    model: &Model,
    run: &RunInfo,
) -> Result<Option<Vec<CheckResult>>> {
    let what = || format!("checking {}", model.name);
    let is_view = model.config.materialized == strata_project::Materialization::View;
    if !is_view && engine.lake.open_existing(&model.name).await?.is_none() {
        return Ok(None);
    }
    let ctx = engine.context();
    engine
        .register_current(&ctx, std::slice::from_ref(&model.name))
        .await?;
    let mut df = ctx.table(model.name.as_str()).await.context(what)?;
    if model.config.materialized == strata_project::Materialization::Scd2 {
        df = df
            .filter(datafusion::prelude::col("is_current").eq(datafusion::prelude::lit(true)))
            .and_then(|d| d.drop_columns(&["valid_from", "valid_to", "is_current"]))
            .context(what)?;
    }
    let subject = Subject::model(engine, model);
    let mut results = vec![];
    ctx.register_table("__current", df.clone().into_view())
        .context(what)?;
    for check in model.config.checks.iter().filter(|c| c.on_fail.is_some()) {
        let CheckKind::Expression(expr) = &check.kind else {
            continue;
        };
        let bad = format!("select * from __current where not coalesce(({expr}), false)");
        let (failing, sample) =
            count_and_sample(&ctx, &subject, check, "expectation", &bad).await?;
        let mut r = result_for(&subject, check, run, failing, sample);
        r.kind = "row".into();
        r.severity = check.on_fail.map(|a| a.as_str()).unwrap_or("warn").into();
        results.push(r);
    }
    results.extend(table_checks(engine, &subject, df, run).await?);
    if !results.is_empty() {
        engine
            .state
            .record_checks(&results)
            .await
            .context(|| "recording check results".into())?;
    }
    Ok(Some(results))
}
