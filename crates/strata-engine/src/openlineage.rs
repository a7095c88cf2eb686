//! OpenLineage run events: with `[openlineage] url` set, each task sends
//! START, then COMPLETE or FAIL, naming the tables it read and wrote, with the
//! output's schema facet, column-lineage facet and output statistics. A lost
//! event never fails a task: it is logged as a warning.

use serde_json::{Value, json};
use strata_project::OpenLineage;

use crate::lineage::ModelLineage;

const PRODUCER: &str = concat!(
    "https://github.com/strata-data/strata/tree/v",
    env!("CARGO_PKG_VERSION")
);
const RUN_EVENT: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const FACETS: &str = "https://openlineage.io/spec/facets";

/// Sends events to one endpoint.
#[derive(Clone)]
pub struct Emitter {
    client: reqwest::Client,
    cfg: OpenLineage,
    /// Namespace of the datasets: the lake's location.
    datasets: String,
}

/// One task's event, before it is sent.
pub struct TaskEvent<'a> {
    /// `START`, `COMPLETE` or `FAIL`.
    pub kind: &'a str,
    /// The OpenLineage run id (a UUID per task attempt).
    pub run_id: uuid::Uuid,
    /// Strata's run id.
    pub strata_run: &'a str,
    /// The table written (the job's name).
    pub table: &'a str,
    /// `ingest` or the materialization.
    pub job_type: &'a str,
    /// The model's SQL (none for a source).
    pub sql: Option<&'a str>,
    /// Tables read.
    pub inputs: &'a [String],
    /// Output columns (name, type) when known.
    pub columns: Option<Vec<(String, String)>>,
    /// Column lineage of the output.
    pub lineage: Option<&'a ModelLineage>,
    /// Rows and bytes written.
    pub stats: Option<(i64, i64)>,
    /// The data interval, for a run over one.
    pub interval: Option<(String, String)>,
    /// Why it failed.
    pub error: Option<&'a str>,
}

fn facet(name: &str, version: &str) -> Value {
    json!({
        "_producer": PRODUCER,
        "_schemaURL": format!("{FACETS}/{version}/{name}.json#/$defs/{name}"),
    })
}

fn with(mut base: Value, fields: Value) -> Value {
    if let (Some(b), Some(f)) = (base.as_object_mut(), fields.as_object()) {
        for (k, v) in f {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

impl Emitter {
    /// An emitter for `cfg`, naming datasets under the lake at `lake`.
    pub fn new(cfg: &OpenLineage, lake: &str) -> Option<Self> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(cfg.timeout_seconds))
            .build()
            .ok()?;
        let datasets = if lake.contains("://") {
            lake.to_string()
        } else {
            format!("file://{lake}")
        };
        Some(Self {
            client,
            cfg: cfg.clone(),
            datasets,
        })
    }

    /// The event as JSON.
    pub fn event(&self, e: &TaskEvent<'_>) -> Value {
        let mut run_facets = serde_json::Map::new();
        run_facets.insert(
            "strata".into(),
            with(
                json!({"_producer": PRODUCER, "_schemaURL": format!("{PRODUCER}/docs/openlineage.json#/$defs/StrataRunFacet")}),
                json!({"runId": e.strata_run}),
            ),
        );
        if let Some((start, end)) = &e.interval {
            run_facets.insert(
                "nominalTime".into(),
                with(
                    facet("NominalTimeRunFacet", "1-0-1"),
                    json!({"nominalStartTime": start, "nominalEndTime": end}),
                ),
            );
        }
        if let Some(msg) = e.error {
            run_facets.insert(
                "errorMessage".into(),
                with(
                    facet("ErrorMessageRunFacet", "1-0-1"),
                    json!({"message": msg, "programmingLanguage": "Rust"}),
                ),
            );
        }
        let mut job_facets = serde_json::Map::new();
        job_facets.insert(
            "jobType".into(),
            with(
                facet("JobTypeJobFacet", "2-0-4"),
                json!({"processingType": "BATCH", "integration": "STRATA",
                       "jobType": if e.job_type == "ingest" { "INGEST" } else { "MODEL" }}),
            ),
        );
        if let Some(sql) = e.sql {
            job_facets.insert(
                "sql".into(),
                with(facet("SQLJobFacet", "1-1-0"), json!({"query": sql})),
            );
        }
        let inputs: Vec<Value> = e
            .inputs
            .iter()
            .map(|t| json!({"namespace": self.datasets, "name": t}))
            .collect();
        let mut output = json!({"namespace": self.datasets, "name": e.table});
        let mut facets = serde_json::Map::new();
        if let Some(cols) = &e.columns {
            let fields: Vec<Value> = cols
                .iter()
                .map(|(n, t)| json!({"name": n, "type": t}))
                .collect();
            facets.insert(
                "schema".into(),
                with(
                    facet("SchemaDatasetFacet", "1-2-0"),
                    json!({"fields": fields}),
                ),
            );
        }
        if let Some(lineage) = e.lineage {
            let mut fields = serde_json::Map::new();
            for (column, edges) in lineage {
                if edges.is_empty() {
                    continue;
                }
                let inputs: Vec<Value> = edges
                    .iter()
                    .map(|edge| {
                        json!({
                            "namespace": self.datasets,
                            "name": edge.from.table,
                            "field": edge.from.column,
                            "transformations": [{
                                "type": "DIRECT",
                                "subtype": if edge.copy { "IDENTITY" } else { "TRANSFORMATION" },
                            }],
                        })
                    })
                    .collect();
                fields.insert(column.clone(), json!({"inputFields": inputs}));
            }
            facets.insert(
                "columnLineage".into(),
                with(
                    facet("ColumnLineageDatasetFacet", "1-2-0"),
                    json!({"fields": fields}),
                ),
            );
        }
        if let Some(o) = output.as_object_mut() {
            if !facets.is_empty() {
                o.insert("facets".into(), Value::Object(facets));
            }
            if let Some((rows, bytes)) = e.stats {
                o.insert(
                    "outputFacets".into(),
                    json!({"outputStatistics": with(
                        facet("OutputStatisticsOutputDatasetFacet", "1-0-2"),
                        json!({"rowCount": rows, "size": bytes}),
                    )}),
                );
            }
        }
        json!({
            "eventType": e.kind,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "run": {"runId": e.run_id.to_string(), "facets": run_facets},
            "job": {"namespace": self.cfg.namespace, "name": e.table, "facets": job_facets},
            "inputs": inputs,
            "outputs": [output],
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT,
        })
    }

    /// Sends one event; a failure is logged, never returned.
    pub async fn send(&self, e: &TaskEvent<'_>) {
        let body = self.event(e).to_string();
        let mut req = self
            .client
            .post(&self.cfg.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                table = e.table,
                status = r.status().as_u16(),
                "the OpenLineage endpoint refused a {} event",
                e.kind
            ),
            Err(err) => tracing::warn!(
                table = e.table,
                error = %err,
                "an OpenLineage {} event was not delivered",
                e.kind
            ),
        }
    }
}
