//! Prometheus text exposition (format 0.0.4) of the state store's records,
//! computed at scrape time so that runs made by any process (a CLI run, a
//! scheduler on another host) show up. Labels are bounded: `model` takes only
//! tables of the project, `layer` and `status` a handful of values, `rule`
//! only configured alert rules.
//!
//! The text is written here rather than through a client library because the
//! values are not in-process counters but a snapshot of the store; the format
//! is small and `promtool check metrics` validates it in the tests.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use strata_graph::Graph;
use strata_project::Project;
use strata_state::StateStore;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family being written.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind,
            samples: vec![],
        }
    }
    fn add(&mut self, labels: Vec<(&'static str, String)>, v: f64) {
        self.samples.push((labels, v));
    }
    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        for (labels, v) in &self.samples {
            out.push_str(self.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(val));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*v));
        }
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn layer_of(table: &str) -> String {
    table.split('.').next().unwrap_or("").to_string()
}

fn ts(s: &str) -> Option<f64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
}

/// Renders every metric at `now`.
pub async fn render(
    store: &StateStore,
    project: &Project,
    graph: &Graph,
    now: DateTime<Utc>,
) -> Result<String, strata_state::Error> {
    let health = strata_runtime::monitor::evaluate(store, project, graph, now).await?;
    let totals = store.task_totals().await?;
    let runs = store.run_counts().await?;
    let checks = store.latest_check_results().await?;
    let open = store.open_incidents().await?;
    let ml = |t: &str| vec![("model", t.to_string()), ("layer", layer_of(t))];

    let mut fams = vec![];
    let mut info = Family::new(
        "strata_build_info",
        "gauge",
        "Strata's version and the project served (always 1).",
    );
    info.add(
        vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("project", project.name.clone()),
        ],
        1.0,
    );
    fams.push(info);

    let mut run_total = Family::new(
        "strata_runs_total",
        "counter",
        "Runs recorded, by final status.",
    );
    for (status, n) in &runs {
        run_total.add(vec![("status", status.clone())], *n as f64);
    }
    fams.push(run_total);

    let mut tasks_total = Family::new(
        "strata_tasks_total",
        "counter",
        "Tasks recorded per model, by status.",
    );
    let mut counters: BTreeMap<&'static str, Family> = BTreeMap::new();
    let defs: [(&'static str, &'static str); 7] = [
        ("strata_rows_read_total", "Rows read by a model's tasks."),
        (
            "strata_rows_written_total",
            "Rows written by a model's tasks.",
        ),
        (
            "strata_rows_quarantined_total",
            "Rows a model's tasks sent to quarantine.",
        ),
        (
            "strata_rows_dropped_total",
            "Rows a model's tasks dropped by expectation.",
        ),
        (
            "strata_read_bytes_total",
            "Bytes a model's tasks read (ingest: input files).",
        ),
        (
            "strata_written_bytes_total",
            "Bytes of data files a model's tasks committed.",
        ),
        ("strata_cpu_seconds_total", "CPU time a model's tasks used."),
    ];
    for (name, help) in defs {
        counters.insert(name, Family::new(name, "counter", help));
    }
    for (model, t) in totals.iter().filter(|(m, _)| project.has_table(m)) {
        for (status, n) in &t.by_status {
            let mut l = ml(model);
            l.push(("status", status.clone()));
            tasks_total.add(l, *n as f64);
        }
        let vals = [
            ("strata_rows_read_total", t.rows_read as f64),
            ("strata_rows_written_total", t.rows_written as f64),
            ("strata_rows_quarantined_total", t.rows_quarantined as f64),
            ("strata_rows_dropped_total", t.rows_dropped as f64),
            ("strata_read_bytes_total", t.bytes_read as f64),
            ("strata_written_bytes_total", t.bytes_written as f64),
            ("strata_cpu_seconds_total", t.cpu_ms as f64 / 1000.0),
        ];
        for (name, v) in vals {
            if let Some(f) = counters.get_mut(name) {
                f.add(ml(model), v);
            }
        }
    }
    fams.push(tasks_total);
    fams.extend(counters.into_values());

    let mut dur = Family::new(
        "strata_last_task_duration_seconds",
        "gauge",
        "Wall time of each model's latest task.",
    );
    let mut cpu = Family::new(
        "strata_last_task_cpu_seconds",
        "gauge",
        "CPU time of each model's latest task.",
    );
    let mut rows = Family::new(
        "strata_last_task_written_rows",
        "gauge",
        "Rows written by each model's latest task.",
    );
    let mut failed = Family::new(
        "strata_last_task_failed",
        "gauge",
        "1 when the model's latest task failed, else 0.",
    );
    let mut ended = Family::new(
        "strata_last_task_end_timestamp_seconds",
        "gauge",
        "When each model's latest task ended (Unix time).",
    );
    let mut memory = Family::new(
        "strata_last_task_peak_memory_bytes",
        "gauge",
        "The most memory the query operators of each model's latest task held at once.",
    );
    let mut table_rows = Family::new(
        "strata_table_rows",
        "gauge",
        "Rows in each table after its latest task.",
    );
    let mut version = Family::new(
        "strata_table_delta_version",
        "gauge",
        "Each table's Delta version after its latest task.",
    );
    for (model, t) in health.latest.iter().filter(|(m, _)| project.has_table(m)) {
        if let Some(d) = t.duration() {
            dur.add(ml(model), d.num_milliseconds() as f64 / 1000.0);
        }
        cpu.add(ml(model), t.cpu_ms as f64 / 1000.0);
        rows.add(ml(model), t.rows_written as f64);
        memory.add(ml(model), t.peak_memory as f64);
        failed.add(ml(model), if t.status == "failed" { 1.0 } else { 0.0 });
        if let Some(e) = t.ended_at.as_deref().and_then(ts) {
            ended.add(ml(model), e);
        }
        if let Some(r) = t.table_rows {
            table_rows.add(ml(model), r as f64);
        }
        if let Some(v) = t.delta_version {
            version.add(ml(model), v as f64);
        }
    }
    fams.extend([dur, cpu, rows, memory, failed, ended, table_rows, version]);

    let mut lag = Family::new(
        "strata_freshness_lag_seconds",
        "gauge",
        "Now minus when each table last received rows.",
    );
    let mut sla = Family::new(
        "strata_freshness_sla_seconds",
        "gauge",
        "Each table's freshness SLA (the strictest of its own and its data products').",
    );
    let mut stale = Family::new(
        "strata_freshness_sla_missed",
        "gauge",
        "1 when the table is staler than its SLA, else 0.",
    );
    let mut data_lag = Family::new(
        "strata_data_lag_seconds",
        "gauge",
        "Now minus the newest data timestamp in each table with a time column.",
    );
    for f in &health.freshness {
        if let Some(l) = f.lag_seconds {
            lag.add(ml(&f.table), l as f64);
        }
        if let Some(s) = f.sla_seconds {
            sla.add(ml(&f.table), s as f64);
            stale.add(ml(&f.table), if f.stale() { 1.0 } else { 0.0 });
        }
        if let Some(t) = f.data_time.as_deref().and_then(ts) {
            data_lag.add(
                ml(&f.table),
                (now.timestamp_millis() as f64 / 1000.0 - t).max(0.0),
            );
        }
    }
    fams.extend([lag, sla, stale, data_lag]);

    let mut chk = Family::new(
        "strata_checks",
        "gauge",
        "Checks per model by the status of their latest result.",
    );
    let mut by: BTreeMap<(String, String), i64> = BTreeMap::new();
    for c in checks.iter().filter(|c| project.has_table(&c.model)) {
        *by.entry((c.model.clone(), c.status.clone())).or_default() += 1;
    }
    for ((model, status), n) in by {
        let mut l = ml(&model);
        l.push(("status", status));
        chk.add(l, n as f64);
    }
    fams.push(chk);

    let mut anomalies = Family::new(
        "strata_anomalies",
        "gauge",
        "Anomalies (volume or duration) of each model's latest run.",
    );
    let mut an: BTreeMap<String, i64> = BTreeMap::new();
    for a in &health.anomalies {
        *an.entry(a.table.clone()).or_default() += 1;
    }
    for (m, n) in an {
        anomalies.add(ml(&m), n as f64);
    }
    fams.push(anomalies);

    let mut firing = Family::new(
        "strata_alerts_firing",
        "gauge",
        "Open alert incidents per configured rule.",
    );
    for rule in project.alerts.keys() {
        let n = open.iter().filter(|i| &i.rule == rule).count();
        firing.add(vec![("rule", rule.clone())], n as f64);
    }
    fams.push(firing);

    let mut out = String::new();
    for f in &fams {
        f.write(&mut out);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut f = Family::new("x_total", "counter", "X.");
        f.add(vec![("model", "a\"b\\c\nd".into())], 1.5);
        let mut s = String::new();
        f.write(&mut s);
        assert_eq!(
            s,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{model=\"a\\\"b\\\\c\\nd\"} 1.5\n"
        );
    }
}
