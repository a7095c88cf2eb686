//! The `replace_range` materialization: a partitioned model's task replaces
//! exactly its data intervals of the table — the rows whose `partition_by`
//! value falls in `[start, end)` — in one Delta commit, after the audit.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use strata_project::{Grain, Model, Partitioning};
use strata_runtime::{Interval, IntervalRows, RunInfo, TaskOutput, rfc3339};

use crate::engine::{Engine, scalar_i64};
use crate::error::{Context, Error, Result};
use crate::lake::{last_commit_rows, version_of};
use crate::materialize::{
    After, audit, check_schema, plan, provenance, ts_literal, write_quarantine,
};

/// Builds `intervals` (contiguous, oldest first) of a partitioned model.
pub(crate) async fn build(
    engine: &Engine,
    model: &Model,
    p: &Partitioning,
    upstream: &[String],
    run: &RunInfo,
    intervals: &[Interval],
) -> Result<TaskOutput> {
    let (Some(first), Some(last)) = (intervals.first(), intervals.last()) else {
        return Ok(TaskOutput {
            skipped: true,
            message: Some(format!(
                "no whole {} ends within the run's interval",
                p.grain.as_str()
            )),
            ..Default::default()
        });
    };
    let (start, end) = (first.start, last.end);
    // `:start`/`:end` are the task's whole range, lookback included.
    let run = RunInfo {
        interval: Some((start, end)),
        ..run.clone()
    };
    let target = engine.lake.open(&model.name).await?;
    let ctx = engine.context();
    let versions = engine.register_current(&ctx, upstream).await?;
    let df = plan(&ctx, model, &run).await?;
    let col = &p.column;
    if df.schema().field_with_unqualified_name(col).is_err() {
        return Err(Error::User(format!(
            "{}: partition_by column `{col}` is not in the query's output",
            model.path.display()
        )));
    }
    let is_date = matches!(
        df.schema()
            .field_with_unqualified_name(col)
            .map(|f| f.data_type().clone()),
        Ok(datafusion::arrow::datatypes::DataType::Date32
            | datafusion::arrow::datatypes::DataType::Date64)
    );
    if is_date && p.grain == Grain::Hour {
        return Err(Error::User(format!(
            "{}: partition_by column `{col}` is a date, so the grain cannot be `hour`; use day or month, or partition by a timestamp",
            model.path.display()
        )));
    }
    let df = crate::engine::cache(&ctx, df)
        .await
        .context(|| format!("computing {}", model.name))?;
    let nulls = {
        let _ = ctx.deregister_table("__strata_range");
        ctx.register_table("__strata_range", df.clone().into_view())
            .context(|| "registering the new rows".into())?;
        scalar_i64(
            &ctx,
            &format!("select count(*) from __strata_range where \"{col}\" is null"),
        )
        .await?
    };
    if nulls > 0 {
        return Err(Error::User(format!(
            "{}: {nulls} rows have a null `{col}`, so they belong to no interval; filter them out or give them a time",
            model.path.display()
        )));
    }
    let in_range = range_predicate(col, is_date, start, end);
    let df = ctx
        .sql(&format!("select * from __strata_range where {in_range}"))
        .await
        .context(|| format!("selecting the rows of {}", model.name))?;
    let (rows, newest) = rows_per_interval(&ctx, col, p.grain).await?;

    let published = version_of(&target);
    let a = audit(engine, &ctx, model, df, &run, After::Replace, published).await?;
    // Tasks writing other intervals of this table wait here; the work above ran in parallel.
    let _turn = engine.write_lock(&model.name).await;
    let target = engine.lake.open(&model.name).await?;
    let exists = version_of(&target).is_some() && !run.full_refresh;
    let kept = a.kept;
    if exists {
        check_schema(&target, &kept, model)?;
    }
    write_quarantine(engine, &ctx, model, &run, &target, a.quarantine).await?;
    let before: BTreeMap<String, Option<i64>> = engine
        .state
        .intervals_in(&model.name, &rfc3339(start), &rfc3339(end))
        .await
        .context(|| "reading interval state".into())?
        .into_iter()
        .filter(|r| r.status == "done" || r.status == "late")
        .map(|r| (r.start, r.rows))
        .collect();
    if run.full_refresh {
        engine
            .state
            .clear_intervals(&model.name)
            .await
            .context(|| "clearing interval state".into())?;
    }
    let p = provenance(model, &run, versions);
    // On a cluster the executors rewrite the files that hold rows of these
    // intervals (see `replace_on_cluster`).
    #[cfg(feature = "ballista")]
    let rewritten = if exists && engine.on_cluster() {
        replace_on_cluster(&ctx, model, &kept, &target, &in_range, &p).await?
    } else {
        None
    };
    #[cfg(not(feature = "ballista"))]
    let rewritten: Option<(deltalake::DeltaTable, i64)> = None;
    let (table, rows_written) = match rewritten {
        Some(done) => done,
        None => {
            let table = replace_here(engine, &ctx, model, kept, target, exists, &in_range, &p)
                .await
                .context(|| format!("replacing {} of {}", describe(start, end), model.name))?;
            let n = last_commit_rows(&table).await?;
            (table, n)
        }
    };
    let out_rows: Vec<IntervalRows> = intervals
        .iter()
        .map(|i| {
            let n = rows.get(&i.start.timestamp_micros()).copied().unwrap_or(0);
            let key = rfc3339(i.start);
            let late = !run.full_refresh
                && before
                    .get(&key)
                    .is_some_and(|old| old.is_some_and(|old| old != n));
            IntervalRows {
                interval: *i,
                rows: n,
                late,
            }
        })
        .collect();
    let late = out_rows.iter().filter(|r| r.late).count();
    let mut message = format!(
        "replaced {} ({} interval{})",
        describe(start, end),
        intervals.len(),
        if intervals.len() == 1 { "" } else { "s" }
    );
    if late > 0 {
        message.push_str(&format!("; late data in {late}"));
    }
    Ok(TaskOutput {
        rows_written,
        rows_quarantined: a.quarantined,
        delta_version: version_of(&table),
        message: Some(message),
        intervals: out_rows,
        data_time: newest.and_then(micros_rfc3339),
        ..Default::default()
    })
}

/// Writes `kept` over the rows of `[start, end)` with delta-rs (its
/// replace-where write), or as the table's first version.
#[allow(clippy::too_many_arguments)]
async fn replace_here(
    engine: &Engine,
    ctx: &SessionContext,
    model: &Model,
    kept: datafusion::prelude::DataFrame,
    target: deltalake::DeltaTable,
    exists: bool,
    in_range: &str,
    p: &crate::lake::Provenance,
) -> std::result::Result<deltalake::DeltaTable, deltalake::DeltaTableError> {
    // delta-rs's replace-where write reads the table through its own file
    // scan, whose columns do not survive a trip through a cluster: on one,
    // it runs here (only with fallback = "local").
    let write_state = if exists && engine.on_cluster() {
        #[cfg(feature = "ballista")]
        crate::cluster::local_step(
            engine,
            &model.name,
            "replace-where write",
            "replacing the intervals of this table (its columns or layout differ from the query's) uses delta-rs's replace-where write, which",
        )
        .map_err(|e| deltalake::DeltaTableError::Generic(e.to_string()))?;
        engine.local_context().state()
    } else {
        ctx.state()
    };
    let mut w = target
        .write(vec![])
        .with_input_plan(kept.logical_plan().clone())
        .with_session_state(Arc::new(write_state))
        .with_table_name(&model.name)
        .with_save_mode(SaveMode::Overwrite)
        .with_commit_properties(p.commit_properties());
    w = if exists {
        w.with_replace_where(in_range.to_string())
    } else {
        w.with_schema_mode(SchemaMode::Overwrite)
    };
    w.await
}

/// Replaces the rows of `in_range` on a cluster: the table's files that may
/// hold such rows (by the log's statistics) are rewritten by the executors
/// as their other rows plus `kept`, and Strata commits the new files in
/// their place in one version. Returns the table and the rows written;
/// `None` when the files cannot be staged (a partitioned table, or columns
/// whose types differ), which delta-rs's write then handles here.
#[cfg(feature = "ballista")]
async fn replace_on_cluster(
    ctx: &SessionContext,
    model: &Model,
    kept: &datafusion::prelude::DataFrame,
    target: &deltalake::DeltaTable,
    in_range: &str,
    p: &crate::lake::Provenance,
) -> Result<Option<(deltalake::DeltaTable, i64)>> {
    use crate::cluster::table::LakeTable;
    use datafusion::catalog::TableProvider as _;
    let what = || format!("replacing the intervals of {}", model.name);
    let lake = LakeTable::try_new(&model.name, target, None)?;
    let schema = datafusion::common::DFSchema::try_from(lake.schema()).context(what)?;
    let predicate = ctx.parse_sql_expr(in_range, &schema).context(what)?;
    let replaced = lake.files_matching(&ctx.state(), predicate).context(what)?;
    let cols = lake
        .schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name().replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(", ");
    for t in ["__strata_new", "__strata_old"] {
        let _ = ctx.deregister_table(t);
    }
    ctx.register_table("__strata_new", kept.clone().into_view())
        .context(what)?;
    let rewrite = if replaced.is_empty() {
        format!("select {cols} from __strata_new")
    } else {
        let old = LakeTable::try_new(&model.name, target, Some(&replaced))?;
        ctx.register_table("__strata_old", Arc::new(old))
            .context(what)?;
        // Rows outside the range stay, nulls included.
        format!(
            "select {cols} from __strata_old where ({in_range}) is not true union all select {cols} from __strata_new"
        )
    };
    let written = scalar_i64(ctx, "select count(*) from __strata_new").await?;
    let df = ctx.sql(&rewrite).await.context(what)?;
    let staged = crate::staged::stage(target, df, &model.name).await;
    for t in ["__strata_new", "__strata_old"] {
        let _ = ctx.deregister_table(t);
    }
    let Some(staged) = staged? else {
        return Ok(None);
    };
    let table = staged
        .commit_replacing(&replaced, in_range, p, &model.name)
        .await?;
    Ok(Some((table, written)))
}

/// `col >= start and col < end`, as SQL both DataFusion and delta-rs accept
/// (delta-rs writes the predicate into the commit, so a date column gets date
/// literals rather than a cast).
fn range_predicate(
    col: &str,
    is_date: bool,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) -> String {
    let lit = |t: chrono::DateTime<chrono::Utc>| {
        if is_date {
            format!("'{}'::date", t.format("%Y-%m-%d"))
        } else {
            ts_literal(t)
        }
    };
    format!("\"{col}\" >= {} AND \"{col}\" < {}", lit(start), lit(end))
}

/// `[2024-01-01, 2024-01-02)`, for messages.
fn describe(start: chrono::DateTime<chrono::Utc>, end: chrono::DateTime<chrono::Utc>) -> String {
    format!("[{}, {})", rfc3339(start), rfc3339(end))
}

/// Rows of `__strata_range` per interval of `grain` (keyed by the interval's
/// start in microseconds), and the newest value of `col` (microseconds).
pub(crate) async fn rows_per_interval(
    ctx: &SessionContext,
    col: &str,
    grain: Grain,
) -> Result<(BTreeMap<i64, i64>, Option<i64>)> {
    let sql = format!(
        "select date_trunc('{}', cast(\"{col}\" as timestamp)) as s, count(*) as n, max(cast(\"{col}\" as timestamp)) as m from __strata_range where \"{col}\" is not null group by 1",
        grain.as_str()
    );
    let batches = ctx
        .sql(&sql)
        .await
        .context(|| "counting rows per interval".into())?
        .collect()
        .await
        .context(|| "counting rows per interval".into())?;
    let micros = |a: &datafusion::arrow::array::ArrayRef| -> Result<datafusion::arrow::array::TimestampMicrosecondArray> {
        let c = datafusion::arrow::compute::cast(
            a,
            &datafusion::arrow::datatypes::DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                None,
            ),
        )
        .context(|| "counting rows per interval".into())?;
        c.as_any()
            .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
            .cloned()
            .ok_or_else(|| Error::Internal("interval starts are not timestamps".into()))
    };
    let mut out = BTreeMap::new();
    let mut newest: Option<i64> = None;
    for b in batches {
        let s = micros(b.column(0))?;
        let m = micros(b.column(2))?;
        let n = b
            .column(1)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()
            .ok_or_else(|| Error::Internal("interval counts are not integers".into()))?;
        for i in 0..b.num_rows() {
            out.insert(s.value(i), n.value(i));
            if datafusion::arrow::array::Array::is_valid(&m, i) {
                newest = Some(newest.map_or(m.value(i), |x| x.max(m.value(i))));
            }
        }
    }
    Ok((out, newest))
}

/// Microseconds since the epoch as RFC 3339.
pub(crate) fn micros_rfc3339(us: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(us).map(strata_runtime::rfc3339)
}
