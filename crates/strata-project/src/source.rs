//! Resolved sources: `[sources.NAME]` → what lands in `bronze.NAME`.

use crate::types::ColumnType;

/// File format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Delimited text.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Parquet files.
    Parquet,
}

/// Which files a run ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    /// Every matching file, every run (a full snapshot each time).
    Snapshot,
    /// Only files not ingested before (a manifest in the state store).
    NewFiles,
}

/// What happens to a row that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBadRows {
    /// Keep it in `bronze.NAME_quarantine` with the error, file and line.
    Quarantine,
    /// Fail the ingest; nothing of the batch is committed.
    Fail,
}

/// CSV reading options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// The first line holds column names.
    pub header: bool,
    /// Field delimiter.
    pub delimiter: u8,
    /// Quote character.
    pub quote: u8,
}

/// One resolved source.
#[derive(Debug, Clone)]
pub struct Source {
    /// The source's name: it lands in `bronze.<name>`.
    pub name: String,
    /// File format.
    pub format: Format,
    /// Absolute glob of the files to read.
    pub path: String,
    /// The glob as written (for messages).
    pub path_as_written: String,
    /// Which files a run reads.
    pub mode: SourceMode,
    /// What to do with rows that do not parse.
    pub on_bad_rows: OnBadRows,
    /// Declared columns in order; `None` to infer.
    pub columns: Option<Vec<(String, ColumnType)>>,
    /// CSV options.
    pub csv: CsvOptions,
    /// Strings read as null.
    pub null_values: Vec<String>,
    /// Docs.
    pub description: Option<String>,
    /// Checks and expectations run on each ingested batch before it is committed.
    pub checks: Vec<crate::check::Check>,
}

impl Source {
    /// The bronze table the source lands in.
    pub fn table(&self) -> String {
        format!("bronze.{}", self.name)
    }
    /// The quarantine table for rows that do not parse.
    pub fn quarantine_table(&self) -> String {
        format!("bronze.{}_quarantine", self.name)
    }
}
