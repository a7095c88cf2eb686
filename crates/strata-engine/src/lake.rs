//! Where tables live: `<lake>/<layer>/<name>` as Delta tables, and the
//! provenance Strata writes into each commit.

use std::collections::BTreeMap;

use deltalake::DeltaTable;
use futures::TryStreamExt;
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

/// The lake root.
#[derive(Debug, Clone)]
pub struct Lake {
    root: String,
}

impl Lake {
    /// A lake at `root` (an absolute folder or a URL).
    pub fn new(root: &str) -> Self {
        Self {
            root: root.trim_end_matches('/').to_string(),
        }
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
        DeltaTable::try_from_url(url)
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

/// The Strata provenance of the table's last `n` commits that carry one, newest first.
async fn recent_provenance(table: &DeltaTable, n: usize) -> Result<Vec<Provenance>> {
    let infos: Vec<_> = table
        .history(Some(n))
        .try_collect()
        .await
        .context(|| "reading table history".into())?;
    Ok(infos
        .iter()
        .filter_map(|i| i.info.get(COMMIT_KEY))
        .filter_map(|v| serde_json::from_value::<Provenance>(v.clone()).ok())
        .collect())
}

/// The newest Strata provenance in a table's log (looking back over commits
/// Strata did not make, such as OPTIMIZE).
pub async fn latest_provenance(table: &DeltaTable) -> Result<Option<Provenance>> {
    Ok(recent_provenance(table, 20).await?.into_iter().next())
}

/// The watermark of the newest of the table's last 100 commits that carries one.
pub async fn latest_watermark(table: &DeltaTable) -> Result<Option<crate::ingest::db::Watermark>> {
    Ok(recent_provenance(table, 100)
        .await?
        .into_iter()
        .find_map(|p| p.watermark))
}

/// The runs that made the table's recent commits (none when it does not exist).
pub async fn committing_runs(table: &DeltaTable) -> Result<std::collections::HashSet<String>> {
    if table.version().is_none() {
        return Ok(Default::default());
    }
    Ok(recent_provenance(table, 100)
        .await?
        .into_iter()
        .map(|p| p.run_id)
        .collect())
}

/// Rows added by the table's latest commit, from its operation metrics.
pub async fn last_commit_rows(table: &DeltaTable) -> Result<i64> {
    let infos: Vec<_> = table
        .history(Some(1))
        .try_collect()
        .await
        .context(|| "reading table history".into())?;
    let Some(info) = infos.into_iter().next() else {
        return Ok(0);
    };
    let metrics = info.info.get("operationMetrics");
    let get = |k: &str| {
        metrics.and_then(|m| m.get(k)).and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    Ok(get("num_added_rows")
        .or_else(|| get("numOutputRows"))
        .unwrap_or(0))
}

/// What a table holds after a commit: its rows (None when a data file has no
/// row-count statistics) and the bytes of the data files the commit of
/// `version` added (read from that commit's log entry).
pub async fn commit_metrics(table: &DeltaTable, version: Option<i64>) -> (Option<i64>, i64) {
    let rows = table.snapshot().ok().and_then(|s| {
        s.log_data()
            .iter()
            .map(|f| f.num_records().map(|n| n as i64))
            .sum::<Option<i64>>()
    });
    let mut added = 0;
    if let Some(v) = version.and_then(|v| u64::try_from(v).ok())
        && let Ok(Some(bytes)) = table.log_store().read_commit_entry(v).await
    {
        for line in bytes.split(|b| *b == b'\n') {
            if let Ok(action) = serde_json::from_slice::<serde_json::Value>(line)
                && let Some(size) = action
                    .get("add")
                    .and_then(|a| a.get("size"))
                    .and_then(|s| s.as_i64())
            {
                added += size;
            }
        }
    }
    (rows, added)
}
