//! Structured logs: one JSON object per line, with the `run_id` and `task`
//! of the span the event happened in as top-level fields. `--log-format json`
//! writes them to stderr; every run's log is also kept in
//! `.strata/logs/RUN_ID.jsonl` in the project, whatever the format, and
//! `strata runs RUN_ID --log` prints it.

use std::io::Write;
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Where a [`JsonLines`] layer writes.
pub(crate) enum Sink {
    /// Standard error, every event.
    Stderr,
    /// One file per run in this folder, only events inside a run.
    RunFiles(PathBuf),
}

/// A layer writing events as JSON lines.
pub(crate) struct JsonLines {
    sink: Sink,
    /// The open log file of the run written last (runs log many events in a row).
    open: std::sync::Mutex<Option<(String, std::fs::File)>>,
}

impl JsonLines {
    /// A layer writing to `sink`.
    pub(crate) fn new(sink: Sink) -> Self {
        Self {
            sink,
            open: std::sync::Mutex::new(None),
        }
    }

    /// Appends `text` to the run's log file, reusing the open file.
    fn append(&self, dir: &Path, run: &str, text: &str) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        if open.as_ref().is_none_or(|(r, _)| r != run) {
            let _ = std::fs::create_dir_all(dir);
            *open = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{run}.jsonl")))
                .ok()
                .map(|f| (run.to_string(), f));
        }
        if let Some((_, f)) = open.as_mut() {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

#[derive(Default, Clone)]
struct Ids {
    run_id: Option<String>,
    task: Option<String>,
}

impl Visit for Ids {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "run_id" => self.run_id = Some(value.to_string()),
            "task" => self.task = Some(value.to_string()),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

#[derive(Default)]
struct Fields(serde_json::Map<String, serde_json::Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut ids = Ids::default();
        attrs.record(&mut ids);
        if (ids.run_id.is_some() || ids.task.is_some())
            && let Some(span) = ctx.span(id)
        {
            span.extensions_mut().replace(ids);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut ids = Ids::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(x) = span.extensions().get::<Ids>() {
                    if x.run_id.is_some() {
                        ids.run_id = x.run_id.clone();
                    }
                    if x.task.is_some() {
                        ids.task = x.task.clone();
                    }
                }
            }
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert(
            "ts".into(),
            strata_runtime::rfc3339(chrono::Utc::now()).into(),
        );
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        if let Some(m) = fields.0.remove("message") {
            line.insert("message".into(), m);
        }
        if let Some(r) = &ids.run_id {
            line.insert("run_id".into(), r.clone().into());
        }
        if let Some(t) = &ids.task {
            line.insert("task".into(), t.clone().into());
        }
        for (k, v) in fields.0 {
            line.entry(k).or_insert(v);
        }
        let mut text = serde_json::Value::Object(line).to_string();
        text.push('\n');
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
            Sink::RunFiles(dir) => {
                if let Some(run) = ids.run_id.filter(|r| is_safe_id(r)) {
                    self.append(dir, &run, &text);
                }
            }
        }
    }
}

/// Run ids are ours (`20260101T020000Z-1a2b3c`), but never trust a path part.
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The folder run logs are kept in.
pub(crate) fn log_dir(project_dir: &Path) -> PathBuf {
    std::path::absolute(project_dir)
        .unwrap_or_else(|_| project_dir.to_path_buf())
        .join(".strata/logs")
}

/// `strata runs RUN_ID --log`.
pub(crate) fn print_run_log(project: &strata_project::Project, run_id: &str) -> Result<(), String> {
    if !is_safe_id(run_id) {
        return Err(format!("`{run_id}` is not a run id"));
    }
    let path = log_dir(&project.root).join(format!("{run_id}.jsonl"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "no log kept for run `{run_id}` ({}: {e}); logs are kept by the machine that ran it",
            path.display()
        )
    })?;
    print!("{text}");
    Ok(())
}
