//! Read-only queries for every client: the sessions per set of visible
//! layers, the check that refuses anything but reading (failing closed when a
//! statement cannot be planned), and results as JSON, CSV, Arrow IPC or
//! Parquet, streamed batch by batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use strata_engine::Engine;

/// Why a query is not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// It would write or change something (SQLSTATE 25006).
    #[error("{0}")]
    ReadOnly(String),
    /// It does not parse or plan (a syntax error, an unknown table or column).
    #[error("{0}")]
    Invalid(String),
    /// It failed while running.
    #[error("{0}")]
    Failed(String),
}

impl QueryError {
    /// The SQLSTATE Postgres clients expect.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::ReadOnly(_) => "25006",
            QueryError::Invalid(_) => "42601",
            QueryError::Failed(_) => "XX000",
        }
    }
}

/// The message for a refused write.
pub fn read_only_message(what: &str) -> String {
    format!(
        "{what} is not allowed: the Strata SQL endpoint is read-only (tables change only through pipeline runs)"
    )
}

/// Checks a plan only reads: no DDL (CREATE, DROP, CREATE EXTERNAL TABLE),
/// no DML (INSERT, UPDATE, DELETE, COPY … TO) and no statements (SET,
/// transactions), anywhere in it, subqueries and EXPLAIN included.
pub fn verify_read_only(plan: &LogicalPlan) -> Result<(), QueryError> {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(plan)
        .map_err(|e| {
            QueryError::ReadOnly(read_only_message(&format!(
                "this statement ({})",
                e.strip_backtrace()
                    .trim_start_matches("Error during planning: ")
            )))
        })
}

/// Plans `sql` (one statement) and checks it only reads. A statement that
/// does not plan is refused too: nothing unplanned ever runs.
pub async fn plan_read_only(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan, QueryError> {
    let state = ctx.state();
    let statement = state
        .sql_to_statement(sql, &datafusion::config::Dialect::PostgreSQL)
        .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
    let plan = state
        .statement_to_plan(statement)
        .await
        .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
    verify_read_only(&plan)?;
    Ok(plan)
}

/// One session per set of visible layers, made on first use and shared by
/// every client with that set (their tables read live; see
/// [`Engine::serving_context`]).
#[derive(Clone)]
pub struct Sessions {
    engine: Engine,
    by_layers: Arc<Mutex<HashMap<Vec<String>, SessionContext>>>,
}

impl Sessions {
    /// Sessions over `engine`'s lake.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            by_layers: Default::default(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The session that sees exactly `layers`.
    pub fn for_layers(&self, layers: &[String]) -> SessionContext {
        let mut key = layers.to_vec();
        key.sort();
        key.dedup();
        let mut map = self.by_layers.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key.clone())
            .or_insert_with(|| self.engine.serving_context(&key))
            .clone()
    }

    /// Plans and runs a read-only query, streaming its batches.
    pub async fn stream(
        &self,
        layers: &[String],
        sql: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream), QueryError> {
        let ctx = self.for_layers(layers);
        let plan = plan_read_only(&ctx, sql).await?;
        let df = ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| QueryError::Invalid(e.strip_backtrace()))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df
            .execute_stream()
            .await
            .map_err(|e| QueryError::Failed(e.strip_backtrace()))?;
        Ok((schema, stream))
    }

    /// Plans, runs and collects a read-only query.
    pub async fn collect(
        &self,
        layers: &[String],
        sql: &str,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let (schema, mut stream) = self.stream(layers, sql).await?;
        let mut batches = vec![];
        while let Some(b) = stream.next().await {
            batches.push(b.map_err(|e| QueryError::Failed(e.strip_backtrace()))?);
        }
        Ok((schema, batches))
    }
}

/// `[{"name": .., "type": ..}]` for a schema.
pub fn columns_json(schema: &SchemaRef) -> serde_json::Value {
    serde_json::Value::Array(
        schema
            .fields()
            .iter()
            .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
            .collect(),
    )
}

/// A batch's rows as JSON arrays, in column order (numbers stay numbers;
/// dates, times and decimals are strings).
pub fn rows_json(batch: &RecordBatch) -> Result<Vec<serde_json::Value>, QueryError> {
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        w.write(batch)
            .map_err(|e| QueryError::Failed(format!("encoding rows as JSON: {e}")))?;
        w.finish()
            .map_err(|e| QueryError::Failed(format!("encoding rows as JSON: {e}")))?;
    }
    if buf.is_empty() {
        return Ok(vec![]);
    }
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&buf)
        .map_err(|e| QueryError::Failed(format!("encoding rows as JSON: {e}")))?;
    let names: Vec<&String> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name())
        .collect();
    Ok(objects
        .into_iter()
        .map(|mut o| {
            serde_json::Value::Array(
                names
                    .iter()
                    .map(|n| o.remove(n.as_str()).unwrap_or(serde_json::Value::Null))
                    .collect(),
            )
        })
        .collect())
}

/// `select … from … where … order by … limit … offset …` over one table,
/// quoting the table name's parts.
pub fn page_sql(
    table: &str,
    filter: Option<&str>,
    order_by: Option<&str>,
    limit: usize,
    offset: usize,
) -> String {
    let filter = where_clause(filter);
    let order = order_by
        .filter(|o| !o.trim().is_empty())
        .map(|o| format!(" order by {o}"))
        .unwrap_or_default();
    format!(
        "select * from {}{filter}{order} limit {limit} offset {offset}",
        quote_table(table)
    )
}

/// ` where FILTER`, or nothing for no (or a blank) filter.
pub fn where_clause(filter: Option<&str>) -> String {
    filter
        .filter(|f| !f.trim().is_empty())
        .map(|f| format!(" where {f}"))
        .unwrap_or_default()
}

/// `silver.orders` → `"silver"."orders"`.
pub fn quote_table(table: &str) -> String {
    table
        .split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// The SQL of a sliced analysis: `metrics` by the `by` columns, optionally filtered.
pub fn slice_sql(
    table: &str,
    by: &[String],
    metrics: &[String],
    filter: Option<&str>,
) -> Result<String, String> {
    let by: Vec<&str> = by
        .iter()
        .map(|c| c.trim())
        .filter(|c| !c.is_empty())
        .collect();
    if by.is_empty() {
        return Err("slice needs at least one column to slice by".into());
    }
    let metrics: Vec<String> = if metrics.iter().all(|m| m.trim().is_empty()) {
        vec!["count(*)".into()]
    } else {
        metrics
            .iter()
            .filter(|m| !m.trim().is_empty())
            .cloned()
            .collect()
    };
    let cols = by.join(", ");
    let aggs = metrics
        .iter()
        .map(|m| format!("{m} as \"{}\"", m.replace('"', "'")))
        .collect::<Vec<_>>()
        .join(", ");
    let filter = where_clause(filter);
    Ok(format!(
        "select {cols}, {aggs} from {table}{filter} group by {cols} order by {cols}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_and_unplannable_statements_are_refused() {
        let ctx = SessionContext::new();
        ctx.sql("create table t as values (1)")
            .await
            .expect("setup")
            .collect()
            .await
            .expect("setup");
        for sql in [
            "insert into t values (2)",
            "create table u as select 1",
            "drop table t",
            "copy t to '/tmp/strata-should-not-exist.csv'",
            "create external table x stored as csv location '/etc/passwd'",
            "set datafusion.execution.batch_size = 1",
            "explain insert into t values (3)",
        ] {
            let err = plan_read_only(&ctx, sql).await.err();
            assert!(
                matches!(err, Some(QueryError::ReadOnly(_))),
                "{sql}: {err:?}"
            );
        }
        for sql in [
            "update t set column1 = 2",
            "delete from t",
            "declare c cursor for select 1",
        ] {
            // Not plannable by DataFusion here: refused all the same.
            assert!(plan_read_only(&ctx, sql).await.is_err(), "{sql}");
        }
        assert!(plan_read_only(&ctx, "select * from t").await.is_ok());
        assert!(!std::path::Path::new("/tmp/strata-should-not-exist.csv").exists());
    }

    #[test]
    fn slice_and_page_sql() {
        assert_eq!(
            slice_sql("gold.t", &["a".into(), " b".into()], &[], Some("x > 1")).expect("sql"),
            "select a, b, count(*) as \"count(*)\" from gold.t where x > 1 group by a, b order by a, b"
        );
        assert!(slice_sql("gold.t", &[], &[], None).is_err());
        assert_eq!(
            page_sql("gold.t", None, Some("a desc"), 10, 20),
            "select * from \"gold\".\"t\" order by a desc limit 10 offset 20"
        );
    }
}
