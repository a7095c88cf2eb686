//! Where tables live: `<lake>/<layer>/<name>` as Delta tables, and the
//! provenance Strata writes into each commit.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use deltalake::DeltaTable;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Context, Error, Result};

/// The key under which Strata stores its provenance in a commit's app metadata.
pub const COMMIT_KEY: &str = "strata";

/// What Strata records in every commit it makes (Delta `commitInfo` app metadata),
/// so a table's own log says what it was built from — atomically with the data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The run that made the commit.
    pub run_id: String,
    /// The task (table) that made it.
    pub task: String,
    /// Fingerprint of the model's SQL and config (models only).
    #[serde(default)]
    pub fingerprint: String,
    /// Upstream tables' Delta versions consumed by this commit (models only).
    #[serde(default)]
    pub upstream_versions: BTreeMap<String, i64>,
    /// The ingest batch (sources only).
    #[serde(default)]
    pub batch_id: String,
    /// Files ingested by this commit (sources only).
    #[serde(default)]
    pub files: Vec<String>,
    /// Row accounting of each file (sources only).
    #[serde(default)]
    pub accounts: Option<Vec<crate::ingest::FileAccount>>,
    /// The data interval the model was built for, when its SQL reads `:start`/`:end`.
    #[serde(default)]
    pub interval: Option<(String, String)>,
    /// A cursor source's watermark after this commit (sources only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<crate::ingest::db::Watermark>,
}

impl Provenance {
    /// As commit properties for a delta-rs operation.
    pub fn commit_properties(&self) -> deltalake::kernel::transaction::CommitProperties {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        deltalake::kernel::transaction::CommitProperties::default()
            .with_metadata([(COMMIT_KEY.to_string(), value)])
    }
}

/// The lake root, and the object-store options its tables are opened with.
#[derive(Clone)]
pub struct Lake {
    root: String,
    /// `[storage]` options (may hold secrets: never shown).
    options: Arc<HashMap<String, String>>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Lake {
    /// A lake at `root` (an absolute folder or a URL), with no storage options.
    pub fn new(root: &str) -> Self {
        Self::with_options(root, &[])
    }

    /// A lake at `root` whose tables are opened with `options` (`[storage]`).
    pub fn with_options(root: &str, options: &[(String, String)]) -> Self {
        crate::storage::install();
        Self {
            root: root.trim_end_matches('/').to_string(),
            options: Arc::new(options.iter().cloned().collect()),
        }
    }

    /// The project's lake, opened with its `[storage]` options.
    pub fn of(project: &strata_project::Project) -> Self {
        Self::with_options(&project.lake, &project.storage)
    }

    /// The object-store options tables are opened with.
    pub fn options(&self) -> &HashMap<String, String> {
        &self.options
    }

    /// The lake root as given.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The location of a table (`silver.orders` → `<lake>/silver/orders`).
    fn location(&self, name: &str) -> Result<String> {
        let (layer, table) = name
            .split_once('.')
            .ok_or_else(|| Error::Internal(format!("table name `{name}` has no layer")))?;
        Ok(format!("{}/{layer}/{table}", self.root))
    }

    /// The URL of a table; a local folder is created if missing.
    pub fn table_url(&self, name: &str) -> Result<Url> {
        let location = self.location(name)?;
        deltalake::ensure_table_uri(&location)
            .context(|| format!("locating table {name} at {location}"))
    }

    /// Opens a table's handle; `version()` is `None` when no table exists there yet.
    pub async fn open(&self, name: &str) -> Result<DeltaTable> {
        let url = self.table_url(name)?;
        DeltaTable::try_from_url_with_storage_options(url, self.options.as_ref().clone())
            .await
            .context(|| format!("opening {name}"))
    }

    /// Opens a table if one exists there (`None` otherwise).
    pub async fn open_existing(&self, name: &str) -> Result<Option<DeltaTable>> {
        let location = self.location(name)?;
        if !location.contains("://") && !std::path::Path::new(&location).join("_delta_log").is_dir()
        {
            return Ok(None); // and create no empty folder for it
        }
        let t = self.open(name).await?;
        Ok(t.version().map(|_| t))
    }
}

/// A table's loaded version as stored in Strata's records (`None`: no table yet).
pub fn version_of(table: &DeltaTable) -> Option<i64> {
    table.version().map(|v| v as i64)
}

/// The Strata provenance of the table's newest `n` commits that carry one,
/// newest first, each read from its own log entry; with `first_only`, reading
/// stops at the first (the usual case: the latest commit is Strata's), so the
/// cost does not grow with the table's history.
async fn recent_provenance(
    table: &DeltaTable,
    n: usize,
    first_only: bool,
) -> Result<Vec<Provenance>> {
    let Some(latest) = table.version() else {
        return Ok(vec![]);
    };
    let log = table.log_store();
    let mut out = vec![];
    for v in (0..=latest).rev().take(n) {
        // An entry cleaned up by log retention is skipped.
        if let Some(p) = read_commit(&log, v).await?.and_then(|c| c.provenance) {
            out.push(p);
            if first_only {
                break;
            }
        }
    }
    Ok(out)
}

/// The newest Strata provenance in a table's log (looking back over commits
/// Strata did not make, such as OPTIMIZE).
pub async fn latest_provenance(table: &DeltaTable) -> Result<Option<Provenance>> {
    Ok(recent_provenance(table, 20, true).await?.into_iter().next())
}

/// The watermark of the newest of the table's last 100 commits that carries one.
pub async fn latest_watermark(table: &DeltaTable) -> Result<Option<crate::ingest::db::Watermark>> {
    Ok(recent_provenance(table, 100, false)
        .await?
        .into_iter()
        .find_map(|p| p.watermark))
}

/// The runs that made the table's recent commits (none when it does not exist).
pub async fn committing_runs(table: &DeltaTable) -> Result<std::collections::HashSet<String>> {
    if table.version().is_none() {
        return Ok(Default::default());
    }
    Ok(recent_provenance(table, 100, false)
        .await?
        .into_iter()
        .map(|p| p.run_id)
        .collect())
}

/// Rows added by the table's latest commit, from its operation metrics (read
/// from that commit's log entry alone).
pub async fn last_commit_rows(table: &DeltaTable) -> Result<i64> {
    let Some(version) = table.version() else {
        return Ok(0);
    };
    // A commit of files written elsewhere (on a cluster) has no operation
    // metrics: its files' statistics count the rows.
    Ok(read_commit(&table.log_store(), version)
        .await?
        .map(|c| {
            if c.operation_rows > 0 {
                c.operation_rows
            } else {
                c.rows_added
            }
        })
        .unwrap_or(0))
}

/// What one commit did, read from its log entry alone (no table state is
/// loaded): the bytes and rows of the data files it added, Strata's
/// provenance, and the table's rows afterwards when the commit replaced the
/// whole table.
#[derive(Debug, Clone, Default)]
pub struct CommitSummary {
    /// Bytes of the data files added.
    pub bytes_added: i64,
    /// Rows of the data files added (from their statistics).
    pub rows_added: i64,
    /// Rows added according to the operation's metrics.
    pub operation_rows: i64,
    /// Rows in the table after the commit, when it replaced the whole table.
    pub table_rows: Option<i64>,
    /// Strata's provenance in the commit, if Strata made it.
    pub provenance: Option<Provenance>,
    /// The operation (`WRITE`, `MERGE`, `OPTIMIZE`, …).
    pub operation: Option<String>,
    /// When it was committed (milliseconds since the epoch).
    pub timestamp_ms: Option<i64>,
    /// The data files it added (paths as the log has them).
    pub adds: Vec<FileAction>,
    /// The data files it removed (paths as the log has them).
    pub removes: Vec<FileAction>,
    /// Whether it changed the table's schema or properties (a `metaData` action).
    pub metadata_changed: bool,
}

/// A file added to or removed from a table by one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAction {
    /// The file's path, relative to the table root as the log has it.
    pub path: String,
    /// Whether rows changed with it. `false` for maintenance that only
    /// rearranges rows (OPTIMIZE), which readers of changes skip.
    pub data_change: bool,
}

impl FileAction {
    fn of(action: &serde_json::Value) -> Option<Self> {
        Some(Self {
            path: action.get("path")?.as_str()?.to_string(),
            // A missing flag is read as a change, the safe side.
            data_change: action
                .get("dataChange")
                .and_then(|v| v.as_bool())
                .unwrap_or(true),
        })
    }
}

impl CommitSummary {
    /// Whether the commit changed the table's rows or schema (false for
    /// OPTIMIZE, and for commits that only add a tag).
    pub fn changes_data(&self) -> bool {
        self.metadata_changed
            || self.adds.iter().any(|a| a.data_change)
            || self.removes.iter().any(|r| r.data_change)
    }
}

impl CommitSummary {
    /// Parses a commit's log entry (one JSON action per line).
    fn parse(entry: &[u8]) -> Self {
        let mut s = CommitSummary::default();
        let mut full_overwrite = false;
        let mut rows_known = true;
        for action in entry
            .split(|b| *b == b'\n')
            .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        {
            if let Some(remove) = action.get("remove") {
                s.removes.extend(FileAction::of(remove));
            } else if action.get("metaData").is_some() {
                s.metadata_changed = true;
            }
            if let Some(add) = action.get("add") {
                s.adds.extend(FileAction::of(add));
                s.bytes_added += add.get("size").and_then(|v| v.as_i64()).unwrap_or(0);
                let rows = add
                    .get("stats")
                    .and_then(|v| v.as_str())
                    .and_then(|st| serde_json::from_str::<serde_json::Value>(st).ok())
                    .and_then(|st| st.get("numRecords").and_then(|n| n.as_i64()));
                match rows {
                    Some(n) => s.rows_added += n,
                    None => rows_known = false,
                }
            } else if let Some(info) = action.get("commitInfo") {
                s.provenance = info
                    .get(COMMIT_KEY)
                    .and_then(|v| serde_json::from_value::<Provenance>(v.clone()).ok());
                let metric = |k: &str| {
                    info.get("operationMetrics")
                        .and_then(|m| m.get(k))
                        .and_then(|v| {
                            v.as_i64()
                                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        })
                };
                s.operation_rows = metric("num_added_rows")
                    .or_else(|| metric("numOutputRows"))
                    .unwrap_or(0);
                let params = info.get("operationParameters");
                let op = info.get("operation").and_then(|v| v.as_str()).unwrap_or("");
                s.operation = Some(op.to_string()).filter(|o| !o.is_empty());
                s.timestamp_ms = info.get("timestamp").and_then(|v| v.as_i64());
                let mode = params
                    .and_then(|p| p.get("mode"))
                    .and_then(|v| v.as_str())
                    .unwrap_or("");
                let predicate = params
                    .and_then(|p| p.get("predicate"))
                    .is_some_and(|v| !v.is_null());
                full_overwrite =
                    (op == "WRITE" && mode == "Overwrite" && !predicate) || op == "CREATE TABLE";
            }
        }
        if full_overwrite && rows_known {
            s.table_rows = Some(s.rows_added);
        }
        s
    }
}

/// Reads and parses commit `version` from a table's log (None when absent).
async fn read_commit(
    log: &deltalake::logstore::LogStoreRef,
    version: u64,
) -> Result<Option<CommitSummary>> {
    Ok(log
        .read_commit_entry(version)
        .await
        .context(|| format!("reading commit {version}"))?
        .map(|bytes| CommitSummary::parse(&bytes)))
}

/// How a table's rows changed between two of its versions, read from the
/// log entries in between. Maintenance (OPTIMIZE, `dataChange = false`)
/// changes no rows, so the files it writes are not news; rows that arrived
/// in the range and were then compacted are read from their original files,
/// which stay on storage until VACUUM deletes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataChanges {
    /// Files of new rows still in the table (full URIs).
    pub added: Vec<String>,
    /// Files of new rows since compacted into others: the last version each
    /// was part of the table, and the files (full URIs).
    pub compacted: BTreeMap<i64, Vec<String>>,
    /// Files whose rows were removed or rewritten (full URIs).
    pub removed: Vec<String>,
    /// Whether the schema or the table's properties changed.
    pub metadata_changed: bool,
}

impl DataChanges {
    /// Whether no row (and no schema) changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.compacted.is_empty()
            && self.removed.is_empty()
            && !self.metadata_changed
    }
}

/// A log path as the full URI delta-rs gives the same file (`get_file_uris`).
fn file_uri(log: &deltalake::logstore::LogStoreRef, path: &str) -> String {
    let p = deltalake::Path::parse(path).unwrap_or_else(|_| deltalake::Path::from(path));
    log.to_uri(&p)
}

/// The changes to `table`'s rows after version `since` up to `until`; None
/// when a log entry in between is gone (cleaned up by log retention), and
/// the caller must compare the two versions' files instead.
pub async fn data_changes(
    log: &deltalake::logstore::LogStoreRef,
    since: i64,
    until: i64,
) -> Result<Option<DataChanges>> {
    // Files of new rows, and where compacted, the last version they were in.
    let mut new: BTreeMap<String, Option<i64>> = BTreeMap::new();
    let mut out = DataChanges::default();
    for v in since.saturating_add(1).max(0)..=until {
        let Some(c) = read_commit(log, v as u64).await? else {
            return Ok(None);
        };
        out.metadata_changed |= c.metadata_changed;
        for r in &c.removes {
            let uri = file_uri(log, &r.path);
            match (r.data_change, new.get(&uri)) {
                // Rows that arrived in the range and left again: the
                // reader never saw them, so it is no removal to it.
                (true, Some(_)) => {
                    new.remove(&uri);
                }
                (true, None) => out.removed.push(uri),
                (false, Some(None)) => {
                    new.insert(uri, Some(v - 1));
                }
                // Old rows rearranged: no news.
                (false, _) => {}
            }
        }
        for a in c.adds.iter().filter(|a| a.data_change) {
            new.insert(file_uri(log, &a.path), None);
        }
    }
    for (uri, compacted) in new {
        match compacted {
            None => out.added.push(uri),
            Some(v) => out.compacted.entry(v).or_default().push(uri),
        }
    }
    out.removed.sort();
    out.removed.dedup();
    Ok(Some(out))
}

impl Lake {
    /// `name`'s log, to read commit entries without loading the table.
    fn log_of(&self, name: &str) -> Result<deltalake::logstore::LogStoreRef> {
        let url = self.table_url(name)?;
        let handle = deltalake::DeltaTableBuilder::from_url(url)
            .and_then(|b| {
                b.with_storage_options(self.options.as_ref().clone())
                    .build()
            })
            .context(|| format!("opening {name}"))?;
        Ok(handle.log_store())
    }

    /// Whether `name`'s rows or schema changed after version `since` up to
    /// `until` (true when its log no longer says).
    pub async fn data_changed(&self, name: &str, since: i64, until: i64) -> Result<bool> {
        if since >= until {
            return Ok(since != until);
        }
        let log = self.log_of(name)?;
        for v in since + 1..=until {
            match read_commit(&log, v as u64).await? {
                Some(c) if !c.changes_data() => continue,
                _ => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Reads the log entry of `name`'s commit `version`, without loading the table.
    pub async fn commit_summary(&self, name: &str, version: i64) -> Result<CommitSummary> {
        Ok(read_commit(
            &self.log_of(name)?,
            u64::try_from(version).unwrap_or_default(),
        )
        .await?
        .unwrap_or_default())
    }
}

/// One version of a table, for people: when, what operation, which run.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// The Delta version.
    pub version: i64,
    /// When it was committed (RFC 3339).
    pub timestamp: Option<String>,
    /// `WRITE`, `MERGE`, `OPTIMIZE`, ….
    pub operation: Option<String>,
    /// The Strata run that made it.
    pub run_id: Option<String>,
    /// Rows of the data files it added.
    pub rows_added: i64,
    /// Bytes of the data files it added.
    pub bytes_added: i64,
}

impl Lake {
    /// The newest `limit` versions of `name`, newest first, each read from its
    /// own log entry (none when the table does not exist).
    pub async fn versions(&self, name: &str, limit: usize) -> Result<Vec<VersionInfo>> {
        let Some(table) = self.open_existing(name).await? else {
            return Ok(vec![]);
        };
        let latest = table.version().unwrap_or(0);
        let log = table.log_store();
        let mut out = vec![];
        for v in (0..=latest).rev().take(limit) {
            let Some(c) = read_commit(&log, v).await? else {
                continue; // cleaned up by log retention
            };
            out.push(VersionInfo {
                version: v as i64,
                timestamp: c.timestamp_ms.and_then(|ms| {
                    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
                }),
                operation: c.operation,
                run_id: c.provenance.map(|p| p.run_id),
                rows_added: c.rows_added,
                bytes_added: c.bytes_added,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_tells_data_changes_from_maintenance() {
        let optimize = br#"{"commitInfo":{"operation":"OPTIMIZE","timestamp":1}}
{"add":{"path":"part-2.parquet","size":30,"dataChange":false,"stats":"{\"numRecords\":3}"}}
{"remove":{"path":"part-0.parquet","dataChange":false}}
{"remove":{"path":"part-1.parquet","dataChange":false}}"#;
        let c = CommitSummary::parse(optimize);
        assert!(!c.changes_data());
        assert_eq!(c.operation.as_deref(), Some("OPTIMIZE"));
        assert_eq!(c.adds.len(), 1);
        assert_eq!(c.removes.len(), 2);
        assert_eq!(c.rows_added, 3);

        let merge = br#"{"commitInfo":{"operation":"MERGE"}}
{"add":{"path":"part-3.parquet","size":10,"dataChange":true}}
{"remove":{"path":"part-2.parquet","dataChange":true}}"#;
        assert!(CommitSummary::parse(merge).changes_data());

        // A flag left out counts as a change; so does a new schema.
        let bare = br#"{"add":{"path":"x.parquet","size":1}}"#;
        assert!(CommitSummary::parse(bare).changes_data());
        let schema = br#"{"metaData":{"id":"t","schemaString":"{}"}}"#;
        assert!(CommitSummary::parse(schema).changes_data());
        assert!(!CommitSummary::parse(b"{\"commitInfo\":{}}").changes_data());
    }
}
