//! Models → tables: `table`, `view`, `incremental` (`append` / `merge`) and
//! `scd2`. Each change is one Delta commit carrying its provenance (the SQL
//! fingerprint and the upstream versions consumed), so a rerun knows exactly
//! what it has already processed.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::Dependency;
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use deltalake::DeltaTable;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use sha2::{Digest, Sha256};
use strata_project::{Materialization, Model, Strategy};
use strata_runtime::{RunInfo, TaskOutput};

use crate::checks;
use crate::engine::Engine;
use crate::error::{Context, Error, Result};
use crate::lake::{Provenance, last_commit_rows, latest_provenance, version_of};

/// A fingerprint of everything in a model that changes its output.
pub fn fingerprint(model: &Model) -> String {
    let mut h = Sha256::new();
    h.update(model.sql.as_bytes());
    h.update(format!(
        "|{}|{:?}|{:?}|{:?}",
        model.config.materialized.as_str(),
        model.config.strategy,
        model.config.unique_key,
        model.config.lookups
    ));
    hex::encode(&h.finalize()[..16])
}

/// Builds one model for a run; a partitioned model builds `intervals`.
pub async fn build(
    engine: &Engine,
    model: &Model,
    run: &RunInfo,
    intervals: &[strata_runtime::Interval],
) -> Result<TaskOutput> {
    let upstream: Vec<String> = engine
        .graph
        .node(&model.name)
        .map(|n| n.tables.clone())
        .unwrap_or_default();
    if let Some(p) = &model.config.partitioning {
        return crate::replace_range::build(engine, model, p, &upstream, run, intervals).await;
    }
    match model.config.materialized {
        Materialization::View => build_view(engine, model, &upstream, run).await,
        Materialization::Table => build_table(engine, model, &upstream, run).await,
        Materialization::Incremental => build_incremental(engine, model, &upstream, run).await,
        Materialization::Scd2 => build_scd2(engine, model, &upstream, run).await,
    }
}

/// The run's interval as stored, when the model reads `:start`/`:end`.
fn interval_of(model: &Model, run: &RunInfo) -> Option<(String, String)> {
    if !strata_graph::interval::uses_interval(&model.sql) {
        return None;
    }
    run.interval
        .map(|(a, b)| (strata_runtime::rfc3339(a), strata_runtime::rfc3339(b)))
}

/// Why a model was skipped.
fn unchanged_note(model: &Model) -> String {
    if strata_graph::interval::uses_interval(&model.sql) {
        "unchanged: same SQL, same upstream rows, same interval".into()
    } else {
        "unchanged: same SQL, same upstream rows".into()
    }
}

/// A model's SQL with any `:start`/`:end` bound to a fixed time: for planning
/// and unit tests, where no run interval exists.
pub(crate) fn sql_for_planning(model: &Model) -> String {
    let t = ts_literal(chrono::DateTime::UNIX_EPOCH);
    strata_graph::interval::bind_interval(&model.sql, &t, &t)
}

/// A timestamp literal (UTC) for `:start` / `:end`.
pub(crate) fn ts_literal(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("CAST('{}' AS TIMESTAMP)", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
}

pub(crate) fn provenance(
    model: &Model,
    run: &RunInfo,
    versions: BTreeMap<String, i64>,
) -> Provenance {
    Provenance {
        interval: interval_of(model, run),
        run_id: run.run_id.clone(),
        task: model.name.clone(),
        fingerprint: fingerprint(model),
        upstream_versions: versions,
        ..Default::default()
    }
}

pub(crate) async fn plan(ctx: &SessionContext, model: &Model, run: &RunInfo) -> Result<DataFrame> {
    let sql = if strata_graph::interval::uses_interval(&model.sql) {
        let Some((start, end)) = run.interval else {
            return Err(Error::User(format!(
                "{}: the model reads :start/:end; give the run its data interval with --start and --end",
                model.path.display()
            )));
        };
        strata_graph::interval::bind_interval(&model.sql, &ts_literal(start), &ts_literal(end))
    } else {
        model.sql.clone()
    };
    let df = ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::User(format!("{}: {}", model.path.display(), e.find_root())))?;
    let problems = crate::validate::contract_violations(model, df.schema().as_arrow());
    if !problems.is_empty() {
        return Err(Error::User(format!(
            "{}: {}",
            model.path.display(),
            problems.join("; ")
        )));
    }
    Ok(df)
}

async fn build_view(
    engine: &Engine,
    model: &Model,
    upstream: &[String],
    run: &RunInfo,
) -> Result<TaskOutput> {
    let ctx = engine.context();
    engine.register_current(&ctx, upstream).await?;
    plan(&ctx, model, run).await?;
    Ok(TaskOutput {
        message: Some("view (computed when read)".into()),
        ..Default::default()
    })
}

/// What the table would look like after publishing, for table checks.
pub(crate) enum After<'a> {
    /// The new rows are the whole table.
    Replace,
    /// Appended to the current table.
    Append(&'a DeltaTable),
    /// Upserted on the unique key into the current table.
    Merge(&'a DeltaTable),
}

/// Rows that passed the audit, ready to publish.
pub(crate) struct Audited {
    pub(crate) kept: DataFrame,
    pub(crate) quarantine: Option<DataFrame>,
    pub(crate) quarantined: i64,
}

/// Write-audit-publish: applies expectations to `new`, runs table checks on the
/// table as it would be after publishing, records the results, and fails the
/// task (publishing nothing) when an error check fails.
pub(crate) async fn audit(
    engine: &Engine,
    ctx: &SessionContext,
    model: &Model,
    new: DataFrame,
    run: &RunInfo,
    after: After<'_>,
    published: Option<i64>,
) -> Result<Audited> {
    if !checks::has_checks(engine, model) {
        return Ok(Audited {
            kept: new,
            quarantine: None,
            quarantined: 0,
        });
    }
    let what = || format!("auditing {}", model.name);
    let mut subject = checks::Subject::model(engine, model);
    if model.config.partitioning.is_some() {
        // A partitioned model's checks run on (and are recorded for) its intervals.
        subject.interval = run
            .interval
            .map(|(a, b)| (strata_runtime::rfc3339(a), strata_runtime::rfc3339(b)));
    }
    let exp = checks::expectations(ctx, &subject, new, run).await?;
    let after_df = match after {
        After::Replace => exp.kept.clone(),
        After::Append(t) | After::Merge(t) => {
            let provider = engine.provider(&model.name, t, None).await?;
            let _ = ctx.deregister_table("__target");
            let _ = ctx.deregister_table("__kept");
            ctx.register_table("__target", provider).context(what)?;
            ctx.register_table("__kept", exp.kept.clone().into_view())
                .context(what)?;
            let sql = if let After::Merge(_) = after {
                let on = model
                    .config
                    .unique_key
                    .iter()
                    .map(|k| format!("k.{k} = t.{k}"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                format!(
                    "select t.* from __target t where not exists (select 1 from __kept k where {on}) union all select * from __kept"
                )
            } else {
                "select * from __target union all select * from __kept".to_string()
            };
            ctx.sql(&sql).await.context(what)?
        }
    };
    let mut results = exp.results;
    results.extend(checks::table_checks(engine, &subject, after_df, run).await?);
    checks::gate(engine, &subject, &results, published).await?;
    let quarantined = results
        .iter()
        .filter(|r| {
            r.action
                .as_deref()
                .is_some_and(|a| a.starts_with("quarantined"))
        })
        .map(|r| r.failing_rows)
        .sum();
    Ok(Audited {
        kept: exp.kept,
        quarantine: exp.quarantine,
        quarantined,
    })
}

/// Appends quarantined rows to `<model>_quarantine`, before the model's own
/// commit so that a crash in between loses no row. Rows left by an attempt
/// whose model commit never happened (the quarantine's last writer is not the
/// model's last writer) are replaced in the same commit, so a rerun or
/// `--resume` does not quarantine them twice.
pub(crate) async fn write_quarantine(
    engine: &Engine,
    ctx: &SessionContext,
    model: &Model,
    run: &RunInfo,
    target: &DeltaTable,
    rows: Option<DataFrame>,
) -> Result<()> {
    let name = format!("{}_quarantine", model.name);
    let table = engine.lake.open(&name).await?;
    // The last quarantine write is an orphan when its run never committed the model.
    let last_writer = if version_of(&table).is_some() {
        latest_provenance(&table).await?
    } else {
        None
    };
    let orphan = match last_writer {
        Some(q) if q.run_id != run.run_id => {
            let committed = crate::lake::committing_runs(target).await?;
            (!committed.contains(&q.run_id)).then_some(q.run_id)
        }
        _ => None,
    };
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let p = Provenance {
        run_id: run.run_id.clone(),
        task: name.clone(),
        ..Default::default()
    };
    match (rows, orphan) {
        (None, None) => {}
        (None, Some(orphan)) => {
            table
                .delete()
                .with_predicate(format!("_run_id = {}", quote(&orphan)))
                .with_commit_properties(p.commit_properties())
                .await
                .context(|| format!("removing unpublished rows from {name}"))?;
        }
        (Some(rows), orphan) => {
            // On a cluster the executors write an append's files.
            #[cfg(feature = "ballista")]
            if orphan.is_none()
                && crate::engine::is_cluster_session(&ctx.state())
                && crate::staged::write(&table, rows.clone(), &p, &name, SaveMode::Append)
                    .await?
                    .is_some()
            {
                return Ok(());
            }
            let mut w = table
                .write(vec![])
                .with_input_plan(rows.logical_plan().clone())
                .with_session_state(Arc::new(ctx.state()))
                .with_schema_mode(SchemaMode::Merge)
                .with_commit_properties(p.commit_properties());
            w = match orphan {
                Some(o) => w
                    .with_save_mode(SaveMode::Overwrite)
                    .with_replace_where(format!(
                        "_run_id IN ({}, {})",
                        quote(&o),
                        quote(&run.run_id)
                    )),
                None => w.with_save_mode(SaveMode::Append),
            };
            w.await.context(|| format!("writing {name}"))?;
        }
    }
    Ok(())
}

/// Whether a previous build from the same SQL consumed these versions, or
/// older ones of the same rows (the commits since only maintained the
/// tables, as OPTIMIZE does).
async fn unchanged(
    engine: &Engine,
    prev: &Option<Provenance>,
    model: &Model,
    versions: &BTreeMap<String, i64>,
    run: &RunInfo,
) -> Result<bool> {
    let Some(p) = prev else {
        return Ok(false);
    };
    if p.fingerprint != fingerprint(model)
        || p.interval != interval_of(model, run)
        || !p.upstream_versions.keys().eq(versions.keys())
    {
        return Ok(false);
    }
    for (u, now) in versions {
        let then = p.upstream_versions.get(u).copied().unwrap_or(-1);
        if then != *now && engine.reader_lake(u).data_changed(u, then, *now).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn build_table(
    engine: &Engine,
    model: &Model,
    upstream: &[String],
    run: &RunInfo,
) -> Result<TaskOutput> {
    let target = engine.lake.open(&model.name).await?;
    let ctx = engine.context();
    let versions = engine.register_current(&ctx, upstream).await?;
    if target.version().is_some() && !run.full_refresh {
        let prev = latest_provenance(&target).await?;
        if unchanged(engine, &prev, model, &versions, run).await? {
            return Ok(TaskOutput {
                skipped: true,
                delta_version: version_of(&target),
                message: Some(unchanged_note(model)),
                ..Default::default()
            });
        }
    }
    let df = plan(&ctx, model, run).await?;
    let published = version_of(&target);
    let a = audit(engine, &ctx, model, df, run, After::Replace, published).await?;
    write_quarantine(engine, &ctx, model, run, &target, a.quarantine).await?;
    let table = overwrite(
        &ctx,
        target,
        a.kept,
        provenance(model, run, versions),
        &model.name,
    )
    .await?;
    Ok(TaskOutput {
        rows_written: last_commit_rows(&table).await?,
        rows_quarantined: a.quarantined,
        delta_version: version_of(&table),
        message: Some("rebuilt".into()),
        ..Default::default()
    })
}

/// Overwrites `target` with the result of `sql`, planned in `ctx`.
async fn overwrite_sql(
    ctx: &SessionContext,
    target: DeltaTable,
    sql: &str,
    p: Provenance,
    name: &str,
) -> Result<DeltaTable> {
    let df = ctx.sql(sql).await.context(|| format!("building {name}"))?;
    overwrite(ctx, target, df, p, name).await
}

async fn overwrite(
    ctx: &SessionContext,
    target: DeltaTable,
    df: DataFrame,
    p: Provenance,
    name: &str,
) -> Result<DeltaTable> {
    // The files are written first (by DataFusion's parallel writer, or by
    // the executors on a cluster); this process commits them.
    if staged_writes(ctx, &target)
        && let Some(t) =
            crate::staged::write(&target, df.clone(), &p, name, SaveMode::Overwrite).await?
    {
        return Ok(t);
    }
    // On a cluster, new columns too: the executors write the files and the
    // commit records the new schema.
    #[cfg(feature = "ballista")]
    if crate::engine::is_cluster_session(&ctx.state())
        && let Some(staged) = crate::staged::stage_new_schema(&target, df.clone(), name).await?
    {
        return staged.commit(&p, name, SaveMode::Overwrite).await;
    }
    target
        .write(vec![])
        .with_input_plan(df.logical_plan().clone())
        .with_session_state(Arc::new(ctx.state()))
        .with_save_mode(SaveMode::Overwrite)
        .with_schema_mode(SchemaMode::Overwrite)
        .with_table_name(name)
        .with_commit_properties(p.commit_properties())
        .await
        .context(|| format!("writing {name}"))
}

/// Registers, for each incremental input, only the rows added since the
/// version `prev` consumed; lookups and first builds read everything.
/// Returns (current versions, rows read from incremental inputs, whether any
/// input has news, and for an accumulating model the first input rewritten
/// since `prev`: then it stops there, and the caller reads everything).
async fn register_incremental(
    engine: &Engine,
    ctx: &SessionContext,
    model: &Model,
    upstream: &[String],
    prev: Option<&Provenance>,
) -> Result<(BTreeMap<String, i64>, i64, bool, Option<String>)> {
    let mut versions = BTreeMap::new();
    let mut rows_read = 0;
    let mut news = false;
    for u in upstream {
        let is_lookup = model.config.lookups.contains(u);
        let consumed = prev.and_then(|p| p.upstream_versions.get(u).copied());
        let is_view = engine
            .project
            .models
            .get(u)
            .is_some_and(|m| m.config.materialized == Materialization::View);
        if is_view
            && !is_lookup
            && consumed.is_some()
            && matches!(
                model.config.strategy,
                Strategy::Append | Strategy::Accumulate
            )
        {
            return Err(Error::User(format!(
                "{}: {u} is a view, so new rows cannot be told from old ones; list it in `lookups`, use strategy = \"merge\", or read its tables directly",
                model.path.display()
            )));
        }
        if is_lookup || consumed.is_none() || is_view {
            let v = engine
                .register_current(ctx, std::slice::from_ref(u))
                .await?;
            if !is_lookup {
                news = true;
                rows_read += count(ctx, u).await?;
            }
            versions.extend(v);
            continue;
        }
        let Some(table) = engine.reader_lake(u).open_existing(u).await? else {
            return Err(Error::User(format!(
                "table {u} has not been built yet; run `strata run --select +{}`",
                model.name
            )));
        };
        let current = version_of(&table).unwrap_or(0);
        versions.insert(u.clone(), current);
        let consumed = consumed.unwrap_or(current);
        let provider = engine.provider(u, &table, None).await?;
        if current == consumed {
            let empty = MemTable::try_new(provider.schema(), vec![vec![]])
                .context(|| format!("reading {u}"))?;
            ctx.register_table(u.as_str(), Arc::new(empty))
                .context(|| format!("registering {u}"))?;
            continue;
        }
        let changes = files_since(&table, consumed).await?;
        if !changes.removed.is_empty() && model.config.strategy == Strategy::Accumulate {
            return Ok((versions, rows_read, news, Some(u.clone())));
        }
        if !changes.removed.is_empty() && model.config.strategy == Strategy::Append {
            return Err(Error::User(format!(
                "{}: upstream {u} was rewritten since version {consumed} (not append-only), so an incremental append cannot tell new rows from old; use strategy = \"merge\" or run with --full-refresh",
                model.path.display()
            )));
        }
        if changes.added.is_empty() && changes.compacted.is_empty() {
            let empty = MemTable::try_new(provider.schema(), vec![vec![]])
                .context(|| format!("reading {u}"))?;
            ctx.register_table(u.as_str(), Arc::new(empty))
                .context(|| format!("registering {u}"))?;
            continue;
        }
        let only_new = new_rows(engine, ctx, u, &table, changes).await?;
        ctx.register_table(u.as_str(), only_new)
            .context(|| format!("registering {u}"))?;
        news = true;
        rows_read += count(ctx, u).await?;
    }
    Ok((versions, rows_read, news, None))
}

/// What an accumulating model publishes: `new` (the query over the new
/// upstream rows) added, column by column in the table's column types, to
/// the table's current rows. Without `unique_key`, the one new row of the
/// table; with it, the rows of the keys `new` touches (their new totals, or
/// the new rows themselves for keys the table does not have yet), to be
/// upserted.
async fn accumulate(
    engine: &Engine,
    ctx: &SessionContext,
    model: &Model,
    new: DataFrame,
    target: &DeltaTable,
) -> Result<DataFrame> {
    use datafusion::common::{Column, JoinType};
    use datafusion::functions::expr_fn::coalesce;
    use datafusion::functions_aggregate::expr_fn::sum;
    use datafusion::prelude::{Expr, cast, ident};
    let what = || format!("accumulating {}", model.name);
    let current = ctx
        .read_table(engine.provider(&model.name, target, None).await?)
        .context(what)?;
    let fields = current.schema().as_arrow().fields().clone();
    let keys = &model.config.unique_key;
    for f in fields.iter().filter(|f| !keys.contains(f.name())) {
        if !f.data_type().is_numeric() {
            return Err(Error::User(format!(
                "{}: strategy = \"accumulate\" adds up every column not in unique_key, and `{}` is {}; add it to unique_key, or compute it in a model downstream",
                model.path.display(),
                f.name(),
                f.data_type()
            )));
        }
    }
    for k in keys {
        if fields.find(k).is_none() {
            return Err(Error::User(format!(
                "{}: unique_key column `{k}` is not among the query's columns",
                model.path.display()
            )));
        }
    }
    let values: Vec<_> = fields
        .iter()
        .filter(|f| !keys.contains(f.name()))
        .cloned()
        .collect();
    // The new rows in the table's column order and types, added up per key.
    let in_table_types = |df: DataFrame| {
        df.select(
            fields
                .iter()
                .map(|f| cast(ident(f.name()), f.data_type().clone()).alias(f.name()))
                .collect::<Vec<_>>(),
        )
    };
    let add_up = |df: DataFrame| {
        df.aggregate(
            keys.iter().map(ident).collect(),
            values
                .iter()
                .map(|f| sum(ident(f.name())).alias(f.name()))
                .collect(),
        )
    };
    let new = in_table_types(new).context(what)?;
    if keys.is_empty() {
        let both = current.union(new).context(what)?;
        return in_table_types(add_up(both).context(what)?).context(what);
    }
    let new = in_table_types(add_up(new).context(what)?).context(what)?;
    // Each touched key's current row, if any, joined on and added in (a sum
    // skips nulls: either side alone when the other is null).
    let at = |side: &str, name: &str| Expr::Column(Column::new(Some(side), name));
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let joined = new
        .alias("n")
        .context(what)?
        .join(
            current.alias("t").context(what)?,
            JoinType::Left,
            &key_refs,
            &key_refs,
            None,
        )
        .context(what)?;
    let cols = fields
        .iter()
        .map(|f| {
            let name = f.name();
            if keys.contains(name) {
                at("n", name).alias(name)
            } else {
                let (n, t) = (at("n", name), at("t", name));
                cast(
                    coalesce(vec![n.clone() + t.clone(), n, t]),
                    f.data_type().clone(),
                )
                .alias(name)
            }
        })
        .collect::<Vec<_>>();
    joined.select(cols).context(what)
}

async fn count(ctx: &SessionContext, table: &str) -> Result<i64> {
    crate::engine::scalar_i64(ctx, &format!("select count(*) from {table}")).await
}

/// How `table`'s rows changed after version `since`: from the log entries
/// in between (maintenance such as OPTIMIZE is no change), or where those
/// are gone, by comparing the two versions' files.
async fn files_since(table: &DeltaTable, since: i64) -> Result<crate::lake::DataChanges> {
    let until = version_of(table).unwrap_or(0);
    // (A table recreated since has a shorter log: the load below says so.)
    if since <= until
        && let Some(changes) = crate::lake::data_changes(&table.log_store(), since, until).await?
    {
        return Ok(changes);
    }
    let mut old = table.clone();
    old.load_version(since as u64)
        .await
        .context(|| format!("loading version {since}"))?;
    let before: std::collections::HashSet<String> = old
        .get_file_uris()
        .context(|| "listing files".into())?
        .collect();
    let now: std::collections::HashSet<String> = table
        .get_file_uris()
        .context(|| "listing files".into())?
        .collect();
    let mut added: Vec<String> = now.difference(&before).cloned().collect();
    let mut removed: Vec<String> = before.difference(&now).cloned().collect();
    added.sort();
    removed.sort();
    Ok(crate::lake::DataChanges {
        added,
        removed,
        ..Default::default()
    })
}

/// A reader of the rows `changes` added to `u`: the files still in the table,
/// and those since compacted, each from the last version that had them.
async fn new_rows(
    engine: &Engine,
    ctx: &SessionContext,
    u: &str,
    table: &DeltaTable,
    changes: crate::lake::DataChanges,
) -> Result<Arc<dyn datafusion::catalog::TableProvider>> {
    let mut readers = vec![];
    if !changes.added.is_empty() {
        crate::engine::count_bytes_read(crate::engine::table_bytes(table, Some(&changes.added)));
        readers.push(engine.provider(u, table, Some(changes.added)).await?);
    }
    for (version, files) in changes.compacted {
        let mut old = table.clone();
        old.load_version(version as u64)
            .await
            .context(|| format!("loading {u} at version {version}"))?;
        crate::engine::count_bytes_read(crate::engine::table_bytes(&old, Some(&files)));
        readers.push(engine.provider(u, &old, Some(files)).await?);
    }
    if readers.len() == 1
        && let Some(only) = readers.pop()
    {
        return Ok(only);
    }
    // Some were compacted since: the files still here and each older version's.
    let mut frames = readers.into_iter().map(|r| {
        ctx.read_table(r)
            .context(|| format!("reading the new rows of {u}"))
    });
    let mut all = frames
        .next()
        .ok_or_else(|| Error::Internal(format!("no new rows of {u} to read")))??;
    for df in frames {
        all = all
            .union(df?)
            .context(|| format!("reading the new rows of {u} (some since compacted)"))?;
    }
    Ok(all.into_view())
}

async fn build_incremental(
    engine: &Engine,
    model: &Model,
    upstream: &[String],
    run: &RunInfo,
) -> Result<TaskOutput> {
    let target = engine.lake.open(&model.name).await?;
    let exists = target.version().is_some() && !run.full_refresh;
    let prev = if exists {
        latest_provenance(&target).await?
    } else {
        None
    };
    if exists && prev.is_none() {
        // Without its record of what it consumed, a rerun would read everything again.
        return Err(Error::User(format!(
            "{} has no record of the upstream versions it consumed (its recent commits were not made by Strata); run `strata run --select {} --full-refresh` to rebuild it",
            model.name, model.name
        )));
    }
    let ctx = engine.context();
    let (mut versions, mut rows_read, mut news, rewritten) =
        register_incremental(engine, &ctx, model, upstream, prev.as_ref()).await?;
    if rewritten.is_some() {
        // An accumulating model cannot tell new rows from rewritten old ones,
        // so a rewritten upstream rebuilds it in full.
        (versions, rows_read, news, _) =
            register_incremental(engine, &ctx, model, upstream, None).await?;
    }
    if exists && !news {
        let mut msg = "0 new rows upstream".to_string();
        if prev
            .as_ref()
            .is_some_and(|p| p.fingerprint != fingerprint(model))
        {
            msg.push_str(
                "; the SQL changed since the last build: run with --full-refresh to rebuild",
            );
        }
        return Ok(TaskOutput {
            skipped: true,
            delta_version: version_of(&target),
            message: Some(msg),
            ..Default::default()
        });
    }
    let df = plan(&ctx, model, run).await?;
    let p = provenance(model, run, versions);
    let published = version_of(&target);
    if !exists || rewritten.is_some() {
        let mut a = audit(engine, &ctx, model, df, run, After::Replace, published).await?;
        let merge = model.config.strategy == Strategy::Merge
            || (model.config.strategy == Strategy::Accumulate
                && !model.config.unique_key.is_empty());
        let unique = unique_by_construction(&a.kept, &model.config.unique_key);
        let staged = if merge && !unique && staged_writes(&ctx, &target) {
            crate::staged::stage(&target, a.kept.clone(), &model.name).await?
        } else {
            None
        };
        let table = match staged {
            Some(staged) => {
                // Written once, then the keys are checked on the written
                // files; they are committed only if the keys hold.
                let checked = async {
                    let written = ctx
                        .read_parquet(staged.url(), ParquetReadOptions::default())
                        .await
                        .context(|| format!("reading back {}", model.name))?;
                    check_unique(&ctx, &written, model).await?;
                    write_quarantine(engine, &ctx, model, run, &target, a.quarantine).await
                }
                .await;
                if let Err(e) = checked {
                    staged.discard().await;
                    return Err(e);
                }
                staged.commit(&p, &model.name, SaveMode::Overwrite).await?
            }
            None => {
                if merge {
                    if !unique {
                        // Computed once, then checked and written from memory:
                        // the key checks would otherwise run the query twice more.
                        a.kept = crate::engine::cache(&ctx, a.kept)
                            .await
                            .context(|| format!("computing {}", model.name))?;
                    }
                    check_unique(&ctx, &a.kept, model).await?;
                }
                write_quarantine(engine, &ctx, model, run, &target, a.quarantine).await?;
                overwrite(&ctx, target, a.kept, p, &model.name).await?
            }
        };
        return Ok(TaskOutput {
            rows_read,
            rows_quarantined: a.quarantined,
            rows_written: last_commit_rows(&table).await?,
            delta_version: version_of(&table),
            message: Some(if let Some(u) = &rewritten {
                format!("rebuilt in full: {u} was rewritten since the last build")
            } else if run.full_refresh {
                "full refresh".into()
            } else {
                "first build".into()
            }),
            ..Default::default()
        });
    }
    check_schema(&target, &df, model)?;
    match model.config.strategy {
        Strategy::ReplaceRange => Err(Error::Internal(format!(
            "{} is partitioned and is built by replace_range",
            model.name
        ))),
        Strategy::Accumulate if model.config.unique_key.is_empty() => {
            // One row: the current row and the new one, added up, replace it.
            let combined = accumulate(engine, &ctx, model, df, &target).await?;
            let a = audit(
                engine,
                &ctx,
                model,
                combined,
                run,
                After::Replace,
                published,
            )
            .await?;
            write_quarantine(engine, &ctx, model, run, &target, a.quarantine).await?;
            let table = overwrite(&ctx, target, a.kept, p, &model.name).await?;
            Ok(TaskOutput {
                rows_read,
                rows_written: last_commit_rows(&table).await?,
                rows_quarantined: a.quarantined,
                delta_version: version_of(&table),
                message: Some(format!("accumulated {rows_read} new upstream rows")),
                ..Default::default()
            })
        }
        Strategy::Append => {
            let a = audit(
                engine,
                &ctx,
                model,
                df,
                run,
                After::Append(&target),
                published,
            )
            .await?;
            write_quarantine(engine, &ctx, model, run, &target, a.quarantine).await?;
            let df = a.kept;
            let staged = if staged_writes(&ctx, &target) {
                crate::staged::write(&target, df.clone(), &p, &model.name, SaveMode::Append).await?
            } else {
                None
            };
            let table = match staged {
                Some(t) => t,
                None => target
                    .write(vec![])
                    .with_input_plan(df.logical_plan().clone())
                    .with_session_state(Arc::new(ctx.state()))
                    .with_save_mode(SaveMode::Append)
                    .with_commit_properties(p.commit_properties())
                    .await
                    .context(|| format!("appending to {}", model.name))?,
            };
            Ok(TaskOutput {
                rows_read,
                rows_written: last_commit_rows(&table).await?,
                rows_quarantined: a.quarantined,
                delta_version: version_of(&table),
                message: Some(format!("appended {rows_read} new upstream rows")),
                ..Default::default()
            })
        }
        Strategy::Merge => {
            merge_rows(
                engine, &ctx, model, df, target, run, &p, published, rows_read, "merged",
            )
            .await
        }
        Strategy::Accumulate => {
            // The keys the new rows touch, with their new totals, upserted.
            let touched = accumulate(engine, &ctx, model, df, &target).await?;
            let verb = format!("accumulated {rows_read} new upstream rows");
            merge_rows(
                engine, &ctx, model, touched, target, run, &p, published, rows_read, &verb,
            )
            .await
        }
    }
}

/// Upserts `df` into `target` on the model's `unique_key` (matched rows
/// updated, the others inserted) after auditing it as a merge, and reports it
/// as `VERB: N inserted, M updated`.
#[allow(clippy::too_many_arguments)]
async fn merge_rows(
    engine: &Engine,
    ctx: &SessionContext,
    model: &Model,
    df: DataFrame,
    target: DeltaTable,
    run: &RunInfo,
    p: &Provenance,
    published: Option<i64>,
    rows_read: i64,
    verb: &str,
) -> Result<TaskOutput> {
    // On a cluster an unpartitioned table is rewritten there; elsewhere
    // delta-rs's MERGE runs here.
    #[cfg(feature = "ballista")]
    let on_cluster = crate::engine::is_cluster_session(&ctx.state())
        && target
            .snapshot()
            .is_ok_and(|s| s.metadata().partition_columns().is_empty());
    #[cfg(feature = "ballista")]
    if !on_cluster {
        crate::cluster::local_step(
            engine,
            &model.name,
            "MERGE",
            "an incremental merge into an existing table uses delta-rs's MERGE, which",
        )?;
    }
    let a = audit(
        engine,
        ctx,
        model,
        df,
        run,
        After::Merge(&target),
        published,
    )
    .await?;
    #[cfg(feature = "ballista")]
    if on_cluster {
        check_unique(ctx, &a.kept, model).await?;
        write_quarantine(engine, ctx, model, run, &target, a.quarantine).await?;
        let (table, inserted, updated) =
            merge_by_rewrite(engine, ctx, model, a.kept, &target, p).await?;
        return Ok(TaskOutput {
            rows_read,
            rows_quarantined: a.quarantined,
            rows_written: inserted + updated,
            delta_version: version_of(&table),
            message: Some(format!(
                "{verb}: {inserted} inserted, {updated} updated (table rewritten on the cluster)"
            )),
            ..Default::default()
        });
    }
    let df = crate::engine::cache(ctx, a.kept)
        .await
        .context(|| format!("computing {}", model.name))?;
    check_unique(ctx, &df, model).await?;
    write_quarantine(engine, ctx, model, run, &target, a.quarantine).await?;
    let keys = &model.config.unique_key;
    let predicate = keys
        .iter()
        .map(|k| format!("target.{k} = source.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let cols: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let (table, metrics) = target
        .merge(df, predicate)
        .with_source_alias("source")
        .with_target_alias("target")
        .with_session_state(Arc::new(ctx.state()))
        .with_commit_properties(p.commit_properties())
        .when_matched_update(|mut u| {
            for c in &cols {
                u = u.update(c.as_str(), format!("source.{c}"));
            }
            u
        })
        .and_then(|m| {
            m.when_not_matched_insert(|mut i| {
                for c in &cols {
                    i = i.set(c.as_str(), format!("source.{c}"));
                }
                i
            })
        })
        .context(|| format!("preparing the merge into {}", model.name))?
        .await
        .context(|| format!("merging into {}", model.name))?;
    Ok(TaskOutput {
        rows_read,
        rows_quarantined: a.quarantined,
        rows_written: (metrics.num_target_rows_inserted + metrics.num_target_rows_updated) as i64,
        delta_version: version_of(&table),
        message: Some(format!(
            "{verb}: {} inserted, {} updated",
            metrics.num_target_rows_inserted, metrics.num_target_rows_updated
        )),
        ..Default::default()
    })
}

/// A merge on a Ballista cluster, where delta-rs's MERGE cannot run: the
/// table is rewritten as its rows whose key the new rows do not have, plus
/// the new rows (matched rows updated, the others inserted, as MERGE does),
/// written by the executors and committed by Strata as one overwrite. Returns
/// the table and the rows inserted and updated.
#[cfg(feature = "ballista")]
async fn merge_by_rewrite(
    engine: &Engine,
    ctx: &SessionContext,
    model: &Model,
    new_rows: DataFrame,
    target: &DeltaTable,
    p: &Provenance,
) -> Result<(DeltaTable, i64, i64)> {
    let what = || format!("merging into {}", model.name);
    ctx.register_table("__strata_src", new_rows.into_view())
        .context(what)?;
    let current = engine.provider(&model.name, target, None).await?;
    ctx.register_table("__strata_target", current)
        .context(what)?;
    let on = model
        .config
        .unique_key
        .iter()
        .map(|k| format!("t.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" and ");
    let cols = target
        .snapshot()
        .context(what)?
        .snapshot()
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name().replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(", ");
    let first_key = model.config.unique_key.first().cloned().unwrap_or_default();
    let (total, matched) = crate::engine::scalar_pair(
        ctx,
        &format!(
            "select count(*), count(t.{first_key}) from __strata_src s left join __strata_target t on {on}"
        ),
    )
    .await?;
    let (total, matched) = (total.unwrap_or(0), matched.unwrap_or(0));
    let rewrite = ctx
        .sql(&format!(
            "select {cols} from __strata_target t where not exists (select 1 from __strata_src s where {on}) \
             union all select {cols} from __strata_src"
        ))
        .await
        .context(what)?;
    let written = crate::staged::write(target, rewrite, p, &model.name, SaveMode::Overwrite).await;
    let _ = ctx.deregister_table("__strata_src");
    let _ = ctx.deregister_table("__strata_target");
    let table = written?.ok_or_else(|| {
        Error::Internal(format!(
            "{}: the rewritten table's columns differ from the table's",
            model.name
        ))
    })?;
    Ok((table, total - matched, matched))
}

/// Whether results are written as files first and then committed
/// ([`crate::staged`]): on a cluster (the executors write them), and for a
/// lake on local disk (DataFusion's parallel Parquet writer writes them). On
/// object storage from this process, delta-rs writes them.
fn staged_writes(ctx: &SessionContext, target: &DeltaTable) -> bool {
    #[cfg(feature = "ballista")]
    if crate::engine::is_cluster_session(&ctx.state()) {
        return true;
    }
    let _ = ctx;
    target.table_url().scheme() == "file"
}

pub(crate) fn check_schema(target: &DeltaTable, df: &DataFrame, model: &Model) -> Result<()> {
    let want: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    check_columns(target, want, model, "")
}

/// Fails unless the table's columns are `want`, in order.
fn check_columns(target: &DeltaTable, want: Vec<String>, model: &Model, note: &str) -> Result<()> {
    let snapshot = target
        .snapshot()
        .context(|| format!("reading {}", model.name))?;
    let have: Vec<String> = snapshot
        .snapshot()
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    if have != want {
        return Err(Error::User(format!(
            "{}: the query's columns ({}) differ from the table's ({}); run with --full-refresh to rebuild {}{note}",
            model.path.display(),
            want.join(", "),
            have.join(", "),
            model.name
        )));
    }
    Ok(())
}

/// Fails when two rows of `df` share the model's unique key.
async fn check_unique(ctx: &SessionContext, df: &DataFrame, model: &Model) -> Result<()> {
    let keys = model.config.unique_key.join(", ");
    for k in &model.config.unique_key {
        if df.schema().field_with_unqualified_name(k).is_err() {
            return Err(Error::User(format!(
                "{}: unique_key column `{k}` is not in the query's output",
                model.path.display()
            )));
        }
    }
    ctx.register_table("__strata_new", df.clone().into_view())
        .context(|| "checking keys".into())?;
    let any_null = model
        .config
        .unique_key
        .iter()
        .map(|k| format!("{k} is null"))
        .collect::<Vec<_>>()
        .join(" or ");
    // One pass over the result: rows with a null key and, unless the plan
    // makes the key unique, the largest number of rows sharing one key.
    let by_construction = unique_by_construction(df, &model.config.unique_key);
    let (nulls, most) = if by_construction {
        let sql = format!("select count(*) from __strata_new where {any_null}");
        (crate::engine::scalar_i64(ctx, &sql).await?, 1)
    } else {
        let sql = format!(
            "select coalesce(sum(case when {any_null} then n end), 0), coalesce(max(case when not ({any_null}) then n end), 0) from (select {keys}, count(*) as n from __strata_new group by {keys}) g"
        );
        let pair = crate::engine::scalar_pair(ctx, &sql).await?;
        (pair.0.unwrap_or(0), pair.1.unwrap_or(0))
    };
    if nulls > 0 {
        let _ = ctx.deregister_table("__strata_new");
        return Err(Error::User(format!(
            "{}: {nulls} rows have a null unique_key ({keys}); filter them in the SQL or quarantine them with an expectation",
            model.path.display()
        )));
    }
    if most <= 1 {
        let _ = ctx.deregister_table("__strata_new");
        return Ok(());
    }
    // A key is shared: find the first one to show.
    let dup = ctx
        .sql(&format!("select {keys}, count(*) as n from __strata_new group by {keys} having count(*) > 1 limit 1"))
        .await
        .context(|| "checking keys".into())?
        .collect()
        .await
        .context(|| "checking keys".into())?;
    let _ = ctx.deregister_table("__strata_new");
    if let Some(b) = dup.iter().find(|b| b.num_rows() > 0) {
        let shown = datafusion::arrow::util::pretty::pretty_format_batches(std::slice::from_ref(b))
            .map(|s| s.to_string())
            .unwrap_or_default();
        return Err(Error::User(format!(
            "{}: several rows share unique_key ({keys}); deduplicate in the SQL, e.g. row_number() over (partition by {keys} order by …) = 1. First duplicate:\n{shown}",
            model.path.display()
        )));
    }
    Ok(())
}

/// Whether the query's plan guarantees that no two rows share `keys`: it
/// groups by (a subset of) them, so DataFusion's functional dependencies mark
/// them as a key of the output. The duplicate check, a second aggregation over
/// the whole result, is then skipped; nulls are still checked.
fn unique_by_construction(df: &DataFrame, keys: &[String]) -> bool {
    let schema = df.schema();
    schema
        .functional_dependencies()
        .iter()
        .filter(|d| d.mode == Dependency::Single && !d.source_indices.is_empty())
        .any(|d| {
            d.source_indices
                .iter()
                .all(|&i| keys.iter().any(|k| k == schema.field(i).name()))
        })
}

async fn build_scd2(
    engine: &Engine,
    model: &Model,
    upstream: &[String],
    run: &RunInfo,
) -> Result<TaskOutput> {
    let target = engine.lake.open(&model.name).await?;
    let exists = target.version().is_some() && !run.full_refresh;
    let ctx = engine.context();
    let versions = engine.register_current(&ctx, upstream).await?;
    if exists {
        let prev = latest_provenance(&target).await?;
        if unchanged(engine, &prev, model, &versions, run).await? {
            return Ok(TaskOutput {
                skipped: true,
                delta_version: version_of(&target),
                message: Some(unchanged_note(model)),
                ..Default::default()
            });
        }
    }
    let src = crate::engine::cache(&ctx, plan(&ctx, model, run).await?)
        .await
        .context(|| format!("computing {}", model.name))?;
    check_unique(&ctx, &src, model).await?;
    for c in ["valid_from", "valid_to", "is_current"] {
        if src.schema().field_with_unqualified_name(c).is_ok() {
            return Err(Error::User(format!(
                "{}: an scd2 model's query must not produce `{c}`; Strata adds it",
                model.path.display()
            )));
        }
    }
    // Keys present upstream, before expectations drop or quarantine rows: a
    // key whose new row was held back is not a deletion.
    ctx.register_table("__src_all", src.clone().into_view())
        .context(|| "registering scd2 source".into())?;
    // Table checks of an scd2 model see its current rows: this snapshot.
    let a = audit(
        engine,
        &ctx,
        model,
        src,
        run,
        After::Replace,
        version_of(&target),
    )
    .await?;
    write_quarantine(engine, &ctx, model, run, &target, a.quarantine).await?;
    let src = a.kept;
    let rows_read = src
        .clone()
        .count()
        .await
        .context(|| format!("counting {}", model.name))? as i64;
    ctx.register_table("__src", src.clone().into_view())
        .context(|| "registering scd2 source".into())?;
    let cols: Vec<String> = src
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let keys = &model.config.unique_key;
    let key_eq = |a: &str, b: &str| {
        keys.iter()
            .map(|k| format!("{a}.{k} = {b}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let s_cols = cols
        .iter()
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let k0 = &keys[0];

    if !exists {
        let sql = format!(
            "select {s_cols}, {ts} as valid_from, case when false then {ts} end as valid_to, true as is_current from __src s",
            ts = crate::checks::run_ts_sql(run)
        );
        let table = overwrite_sql(
            &ctx,
            target,
            &sql,
            provenance(model, run, versions),
            &model.name,
        )
        .await?;
        return Ok(TaskOutput {
            rows_read,
            rows_written: last_commit_rows(&table).await?,
            delta_version: version_of(&table),
            message: Some(if run.full_refresh {
                "full refresh".into()
            } else {
                "first build".into()
            }),
            ..Default::default()
        });
    }
    check_schema_scd2(&target, &cols, model)?;
    let target_provider = engine.provider(&model.name, &target, None).await?;
    ctx.register_table("__tgt", target_provider)
        .context(|| "registering scd2 target".into())?;
    let same = cols
        .iter()
        .filter(|c| !keys.contains(c))
        .map(|c| format!("(c.{c} IS NOT DISTINCT FROM s.{c})"))
        .chain(std::iter::once("true".to_string()))
        .collect::<Vec<_>>()
        .join(" AND ");
    // Current rows that are closed now: deleted upstream or changed.
    let closing = format!(
        "select {c_keys} from __tgt c left join __src s on {eq} where c.is_current and ((s.{k0} is null and not exists (select 1 from __src_all a where {eq_a})) or (s.{k0} is not null and not ({same})))",
        eq_a = key_eq("a", "c"),
        c_keys = keys
            .iter()
            .map(|k| format!("c.{k}"))
            .collect::<Vec<_>>()
            .join(", "),
        eq = key_eq("c", "s"),
    );
    // Source rows that open a new current row: new keys, changed keys, keys that came back.
    let opening = format!(
        "select {s_cols} from __src s left join (select * from __tgt where is_current) c on {eq} where c.{k0} is null or not ({same})",
        eq = key_eq("c", "s"),
    );
    let closed =
        crate::engine::scalar_i64(&ctx, &format!("select count(*) from ({closing})")).await?;
    let opened =
        crate::engine::scalar_i64(&ctx, &format!("select count(*) from ({opening})")).await?;
    if closed == 0 && opened == 0 {
        return Ok(TaskOutput {
            skipped: true,
            rows_read,
            delta_version: version_of(&target),
            message: Some("no changes to the dimension".into()),
            ..Default::default()
        });
    }
    let t_cols = cols
        .iter()
        .map(|c| format!("t.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "with closing as ({closing})
         select {t_cols}, t.valid_from,
                case when t.is_current and x.{k0} is not null then {ts} else t.valid_to end as valid_to,
                t.is_current and x.{k0} is null as is_current
           from __tgt t left join closing x on {eq_tx}
         union all
         select {o_cols}, {ts} as valid_from, case when false then {ts} end as valid_to, true as is_current
           from ({opening}) o",
        ts = crate::checks::run_ts_sql(run),
        eq_tx = keys.iter().map(|k| format!("t.{k} = x.{k}")).collect::<Vec<_>>().join(" AND "),
        o_cols = cols.iter().map(|c| format!("o.{c}")).collect::<Vec<_>>().join(", "),
    );
    let table = overwrite_sql(
        &ctx,
        target,
        &sql,
        provenance(model, run, versions),
        &model.name,
    )
    .await?;
    Ok(TaskOutput {
        rows_read,
        rows_written: closed + opened,
        delta_version: version_of(&table),
        message: Some(format!("{opened} rows opened, {closed} closed")),
        ..Default::default()
    })
}

fn check_schema_scd2(target: &DeltaTable, cols: &[String], model: &Model) -> Result<()> {
    let mut want: Vec<String> = cols.to_vec();
    want.extend(["valid_from", "valid_to", "is_current"].map(String::from));
    check_columns(target, want, model, " (this drops its history)")
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;

    use super::unique_by_construction;

    async fn df(sql: &str) -> datafusion::prelude::DataFrame {
        let ctx = SessionContext::new();
        ctx.sql(
            "create table t (a bigint, b bigint, c varchar) as values (1, 1, 'x'), (1, 2, 'y')",
        )
        .await
        .expect("test query")
        .collect()
        .await
        .expect("test query");
        ctx.sql(sql).await.expect("test query")
    }

    #[tokio::test]
    async fn a_query_grouped_by_the_key_is_unique_by_construction() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let grouped =
            df("select a, b, first_value(c order by c desc) as c from t group by a, b").await;
        assert!(unique_by_construction(&grouped, &keys(&["a", "b"])));
        // A key wider than the grouping is unique too; a narrower one is not.
        let by_a = df("select a, max(b) as b from t group by a").await;
        assert!(unique_by_construction(&by_a, &keys(&["a", "b"])));
        assert!(!unique_by_construction(&grouped, &keys(&["a"])));
        // A plain select proves nothing: `a` repeats here.
        let plain = df("select a, b, c from t").await;
        assert!(!unique_by_construction(&plain, &keys(&["a", "b"])));
        // Renamed in a projection: the proof follows the output names.
        let renamed =
            df("select x as k, n from (select a as x, count(*) as n from t group by a)").await;
        assert!(unique_by_construction(&renamed, &keys(&["k"])));
    }
}
