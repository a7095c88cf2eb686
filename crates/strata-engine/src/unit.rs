//! `strata test`: runs a model's SQL in memory on fixture rows and compares
//! the result with the expected rows (only the expected columns, in any
//! order), reporting a row diff on failure. The lake is never touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, new_null_array};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use strata_graph::Graph;
use strata_project::unit::{Rows, UnitTest};
use strata_project::{ColumnType, CsvOptions, Project};

use crate::engine::session_context;
use crate::error::{Context, Error, Result};

/// The outcome of one unit test.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutcome {
    /// The test's name (its file name).
    pub name: String,
    /// The model under test.
    pub model: String,
    /// Whether the rows matched.
    pub passed: bool,
    /// Rows expected but missing (`-`) and produced but not expected (`+`).
    pub diff: Vec<String>,
    /// An error that kept the test from running.
    pub error: Option<String>,
}

/// Runs every unit test whose model is in `selected` (all when `None`).
pub async fn run_tests(
    project: &Project,
    graph: &Graph,
    selected: Option<&std::collections::BTreeSet<String>>,
) -> Vec<TestOutcome> {
    let check = crate::validate::check_plans(project, graph).await;
    let mut out = vec![];
    for t in &project.unit_tests {
        if selected.is_some_and(|s| !s.contains(&t.model)) {
            continue;
        }
        let outcome = match run_one(project, graph, &check.schemas, t).await {
            Ok((passed, diff)) => TestOutcome {
                name: t.name.clone(),
                model: t.model.clone(),
                passed,
                diff,
                error: None,
            },
            Err(e) => TestOutcome {
                name: t.name.clone(),
                model: t.model.clone(),
                passed: false,
                diff: vec![],
                error: Some(e.to_string()),
            },
        };
        out.push(outcome);
    }
    out
}

async fn run_one(
    project: &Project,
    graph: &Graph,
    schemas: &BTreeMap<String, SchemaRef>,
    t: &UnitTest,
) -> Result<(bool, Vec<String>)> {
    let model = project
        .models
        .get(&t.model)
        .ok_or_else(|| Error::User(format!("{}: unknown model {}", t.path.display(), t.model)))?;
    let ctx = session_context(1, Arc::default());
    let reads = graph
        .node(&t.model)
        .map(|n| n.tables.clone())
        .unwrap_or_default();
    for table in &reads {
        let schema = schemas.get(table).cloned().ok_or_else(|| {
            Error::User(format!(
                "{}: the columns of {table} are unknown (declare the source's `columns`, or ingest it once)",
                t.path.display()
            ))
        })?;
        let batch = match t.given.iter().find(|g| g.table == *table) {
            Some(g) => fixture_batch(&schema, &g.rows)
                .map_err(|e| Error::User(format!("{}: given {table}: {e}", t.path.display())))?,
            None => RecordBatch::new_empty(schema.clone()),
        };
        let mem = MemTable::try_new(schema, vec![vec![batch]])
            .context(|| format!("fixture for {table}"))?;
        ctx.register_table(table.as_str(), Arc::new(mem))
            .context(|| format!("fixture for {table}"))?;
    }
    if let Some(g) = t.given.iter().find(|g| !reads.contains(&g.table)) {
        return Err(Error::User(format!(
            "{}: {} does not read {}",
            t.path.display(),
            t.model,
            g.table
        )));
    }
    let sql = crate::materialize::sql_for_planning(model);
    let df = ctx
        .sql(&sql)
        .await
        .map_err(|e| Error::User(format!("{}: {}", model.path.display(), e.find_root())))?;
    let out_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let actual = df
        .collect()
        .await
        .context(|| format!("running {}", t.model))?;
    // Compare only the columns the expectation names.
    let expected_cols: Vec<String> = match &t.expect {
        Rows::Inline(rows) => {
            let mut cols: Vec<String> = vec![];
            for r in rows {
                for k in r.keys() {
                    if !cols.contains(k) {
                        cols.push(k.clone());
                    }
                }
            }
            cols
        }
        Rows::Csv(p) => {
            csv_header(p).map_err(|e| Error::User(format!("{}: expect: {e}", t.path.display())))?
        }
    };
    let mut fields = vec![];
    for c in &expected_cols {
        let f = out_schema.field_with_name(c).map_err(|_| {
            Error::User(format!(
                "{}: expected column `{c}` is not produced by {}",
                t.path.display(),
                t.model
            ))
        })?;
        fields.push(f.clone());
    }
    let projected: SchemaRef = Arc::new(Schema::new(fields));
    let expected = fixture_batch(&projected, &t.expect)
        .map_err(|e| Error::User(format!("{}: expect: {e}", t.path.display())))?;
    let mut want = rows_as_text(&[expected], &expected_cols)?;
    let mut got = rows_as_text(&actual, &expected_cols)?;
    want.sort();
    got.sort();
    if want == got {
        return Ok((true, vec![]));
    }
    let mut diff = vec![];
    let mut rest = got.clone();
    for w in &want {
        match rest.iter().position(|g| g == w) {
            Some(i) => {
                rest.remove(i);
            }
            None => diff.push(format!("- {w}")),
        }
    }
    diff.extend(rest.into_iter().map(|g| format!("+ {g}")));
    diff.insert(0, format!("  ({})", expected_cols.join(", ")));
    Ok((false, diff))
}

fn rows_as_text(batches: &[RecordBatch], cols: &[String]) -> Result<Vec<String>> {
    let opts = FormatOptions::default().with_null("null");
    let mut out = vec![];
    for b in batches {
        let mut formatters = vec![];
        for c in cols {
            let i = b.schema().index_of(c).context(|| format!("column {c}"))?;
            formatters.push(
                ArrayFormatter::try_new(b.column(i).as_ref(), &opts)
                    .context(|| format!("column {c}"))?,
            );
        }
        for row in 0..b.num_rows() {
            out.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect::<Vec<_>>()
                    .join(" | "),
            );
        }
    }
    Ok(out)
}

fn csv_header(path: &std::path::Path) -> std::result::Result<Vec<String>, String> {
    let mut r = csv::Reader::from_path(path).map_err(|e| e.to_string())?;
    Ok(r.headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect())
}

/// Fixture rows as a batch of `schema` (columns not given are null).
fn fixture_batch(schema: &SchemaRef, rows: &Rows) -> std::result::Result<RecordBatch, String> {
    match rows {
        Rows::Inline(rows) => {
            let values: Vec<serde_json::Value> = rows
                .iter()
                .map(|r| toml_to_json(&toml::Value::Table(r.clone())))
                .collect();
            for r in rows {
                if let Some(k) = r.keys().find(|k| schema.field_with_name(k).is_err()) {
                    return Err(format!("no column `{k}` in the table"));
                }
            }
            let mut decoder = ReaderBuilder::new(schema.clone())
                .build_decoder()
                .map_err(|e| e.to_string())?;
            decoder.serialize(&values).map_err(|e| e.to_string())?;
            Ok(decoder
                .flush()
                .map_err(|e| e.to_string())?
                .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
        }
        Rows::Csv(path) => {
            let header = csv_header(path)?;
            let mut cols = vec![];
            for h in &header {
                let f = schema
                    .field_with_name(h)
                    .map_err(|_| format!("no column `{h}` in the table"))?;
                let ty =
                    crate::ingest::rows::column_type(f.data_type()).unwrap_or(ColumnType::Utf8);
                cols.push((h.clone(), ty));
            }
            let opts = CsvOptions {
                header: true,
                delimiter: b',',
                quote: b'"',
            };
            let data = crate::ingest::files::decode_csv(
                path,
                &cols,
                &opts,
                &[String::new()],
                strata_project::SchemaDrift::Fail,
                &[],
            )?;
            if let Some(b) = data.bad.first() {
                return Err(format!("line {}: {}", b.line, b.error));
            }
            let n: usize = data.batches.iter().map(|b| b.num_rows()).sum();
            let decoded = datafusion::arrow::compute::concat_batches(
                &crate::ingest::rows::schema_of(&cols),
                &data.batches,
            )
            .map_err(|e| e.to_string())?;
            let mut arrays = vec![];
            for f in schema.fields() {
                match decoded.schema().index_of(f.name()) {
                    Ok(i) => arrays.push(
                        datafusion::arrow::compute::cast(decoded.column(i), f.data_type())
                            .map_err(|e| e.to_string())?,
                    ),
                    Err(_) => arrays.push(new_null_array(f.data_type(), n)),
                }
            }
            RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
        }
    }
}

/// TOML to JSON, with dates and times as strings.
fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
