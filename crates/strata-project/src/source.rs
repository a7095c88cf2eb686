//! Resolved sources: `[sources.NAME]` → what lands in `bronze.NAME`.

use crate::types::ColumnType;

/// File format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Format {
    /// Delimited text.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// Parquet files.
    Parquet,
    /// A PostgreSQL table or query.
    Postgres,
    /// A MySQL or MariaDB table or query.
    Mysql,
    /// An HTTP JSON API.
    Http,
}

impl Format {
    /// Whether the source reads a database rather than files.
    pub fn is_database(self) -> bool {
        matches!(self, Format::Postgres | Format::Mysql)
    }
}

/// What a database source reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Relation {
    /// A table (or view), possibly schema-qualified: `public.customers`.
    Table(String),
    /// A SELECT query.
    Query(String),
}

/// How an API source pages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pagination {
    /// One request.
    None,
    /// `param=start, start+1, …` until a page has fewer records than `size`
    /// (or none).
    Page {
        /// The page-number parameter.
        param: String,
        /// The first page number.
        start: i64,
        /// The page-size parameter and size, if the API takes one.
        size: Option<(String, i64)>,
    },
    /// `param=0, limit, 2·limit, …` until a page has fewer than `limit` records.
    Offset {
        /// The offset parameter.
        param: String,
        /// The limit parameter.
        limit_param: String,
        /// The page size.
        limit: i64,
    },
    /// `param=<cursor>` taken from the body at `next` until it is null or absent.
    Cursor {
        /// The cursor parameter.
        param: String,
        /// JSON pointer to the next cursor.
        next: String,
    },
    /// The `Link: <…>; rel="next"` response header.
    Link,
}

/// Where an API source reads from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Http {
    /// The first page's URL (`${ENV}` expanded).
    pub url: String,
    /// Request headers (`${ENV}` expanded; never logged).
    pub headers: Vec<(String, String)>,
    /// JSON pointer to the records array; `None`: the body is the array.
    pub records: Option<String>,
    /// Paging.
    pub pagination: Pagination,
    /// Retries after a 429 or 5xx response or a failed connection.
    pub retries: u32,
    /// The first retry's wait in milliseconds, doubled each time.
    pub retry_delay_ms: u64,
    /// Requests per second at most.
    pub rate_limit: Option<f64>,
    /// The most pages one run reads.
    pub max_pages: u32,
}

/// Where a database source reads from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Database {
    /// The connection URL, with `${ENV}` references expanded (never logged:
    /// show it with `strata_state::redact`).
    pub url: String,
    /// The table or query.
    pub relation: Relation,
    /// For `mode = "cursor"`: the watermark column (an increasing id or time).
    pub cursor: Option<String>,
}

/// Which files a run ingests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceMode {
    /// Every matching file, every run (a full snapshot each time).
    Snapshot,
    /// Only files not ingested before (a manifest in the state store).
    NewFiles,
    /// Only database rows whose cursor column is past the stored watermark.
    Cursor,
}

/// What happens when a source's data has columns it did not have before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SchemaDrift {
    /// New columns are added to bronze (older rows read as null) and the
    /// change is recorded as a schema event.
    AddColumns,
    /// The ingest fails, naming the file and the columns; nothing is loaded.
    Fail,
    /// Values of unexpected columns, and values that do not fit their
    /// column's type, go into a `_rescued` JSON column; the row is loaded.
    Rescue,
}

/// What happens to a row that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OnBadRows {
    /// Keep it in `bronze.NAME_quarantine` with the error, file and line.
    Quarantine,
    /// Fail the ingest; nothing of the batch is committed.
    Fail,
}

/// CSV reading options.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// For `postgres` and `mysql` sources: where to read.
    pub database: Option<Database>,
    /// For `http` sources: the API.
    pub http: Option<Http>,
    /// `time_column` and its grain: which data interval each row belongs to.
    pub time: Option<(String, crate::Grain)>,
    /// What new columns do.
    pub schema_drift: SchemaDrift,
    /// Freshness SLA in seconds: new rows must land at least this often.
    pub freshness_seconds: Option<i64>,
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
