//! A large CSV file streamed into bronze: each decoding thread encodes the
//! rows it decoded into Parquet files of its own, in the table's folder, as
//! it goes, so the file is never held in memory and decoding and encoding
//! share every core. Strata then commits the files in one Delta version with
//! their statistics ([`crate::file_stats`]). Files of a batch that is not
//! committed (a bad row under `on_bad_rows = "fail"`, an error) are removed.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use deltalake::kernel::Add;

/// A writer rolls over to a new file past this many bytes.
const FILE_BYTES: usize = 256 << 20;

/// One open file of one thread.
struct Open {
    writer: ArrowWriter<BufWriter<File>>,
    name: String,
}

/// What one decoding thread has written.
#[derive(Default)]
struct Slot {
    open: Option<Open>,
    closed: Vec<(String, datafusion::parquet::file::metadata::ParquetMetaData)>,
}

/// One Parquet writer per decoding thread, writing into a table's folder on
/// local disk. Rows get the bronze metadata columns on the way in.
pub(super) struct LocalWriters {
    dir: PathBuf,
    schema: SchemaRef,
    props: WriterProperties,
    slots: Vec<Mutex<Slot>>,
    ingested_at: i64,
    source: String,
    batch_id: String,
}

impl LocalWriters {
    /// Writers for `threads` threads into `dir` (created if missing), rows
    /// of `schema` (the metadata columns included).
    pub(super) fn new(
        dir: &Path,
        schema: SchemaRef,
        props: WriterProperties,
        threads: usize,
        (ingested_at, source, batch_id): (i64, &str, &str),
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            schema,
            props,
            slots: (0..threads).map(|_| Mutex::new(Slot::default())).collect(),
            ingested_at,
            source: source.to_string(),
            batch_id: batch_id.to_string(),
        })
    }

    /// Writes a chunk's rows on thread `worker`.
    pub(super) fn put(&self, worker: usize, batches: Vec<RecordBatch>) -> Result<(), String> {
        let slot = self
            .slots
            .get(worker)
            .ok_or_else(|| format!("no writer for thread {worker}"))?;
        let mut slot = slot.lock().map_err(|_| "a writer failed".to_string())?;
        for b in batches {
            let b = super::with_metadata(&b, self.ingested_at, &self.source, &self.batch_id)
                .map_err(|e| e.to_string())?;
            if slot.open.is_none() {
                let name = format!("part-{}-c000.parquet", uuid::Uuid::new_v4());
                let file = File::create(self.dir.join(&name))
                    .map_err(|e| format!("creating {name}: {e}"))?;
                let writer = ArrowWriter::try_new(
                    BufWriter::with_capacity(1 << 20, file),
                    self.schema.clone(),
                    Some(self.props.clone()),
                )
                .map_err(|e| e.to_string())?;
                slot.open = Some(Open { writer, name });
            }
            let Some(open) = slot.open.as_mut() else {
                continue;
            };
            open.writer.write(&b).map_err(|e| e.to_string())?;
            if open.writer.bytes_written() + open.writer.in_progress_size() >= FILE_BYTES
                && let Some(open) = slot.open.take()
            {
                let meta = open.writer.close().map_err(|e| e.to_string())?;
                slot.closed.push((open.name, meta));
            }
        }
        Ok(())
    }

    /// Closes every file and returns their `add` actions (paths relative to
    /// the table).
    pub(super) fn finish(self) -> Result<Vec<Add>, String> {
        let now = chrono::Utc::now().timestamp_millis();
        let mut adds = vec![];
        let mut first_error = None;
        for slot in self.slots {
            let mut slot = slot
                .into_inner()
                .map_err(|_| "a writer failed".to_string())?;
            if let Some(open) = slot.open.take() {
                match open.writer.close() {
                    Ok(meta) => slot.closed.push((open.name, meta)),
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                        let _ = std::fs::remove_file(self.dir.join(&open.name));
                    }
                }
            }
            for (name, meta) in slot.closed {
                let size = std::fs::metadata(self.dir.join(&name)).map_or(0, |m| m.len() as i64);
                adds.push(Add {
                    path: name,
                    size,
                    modification_time: now,
                    data_change: true,
                    stats: Some(crate::file_stats::stats_json(&meta)),
                    ..Default::default()
                });
            }
        }
        match first_error {
            Some(e) => {
                remove(&self.dir, &adds);
                Err(e)
            }
            None => Ok(adds),
        }
    }

    /// Removes every file written so far (the batch is not committed).
    pub(super) fn discard(self) {
        for slot in self.slots {
            let Ok(mut slot) = slot.into_inner() else {
                continue;
            };
            if let Some(open) = slot.open.take() {
                drop(open.writer);
                let _ = std::fs::remove_file(self.dir.join(&open.name));
            }
            for (name, _) in slot.closed {
                let _ = std::fs::remove_file(self.dir.join(&name));
            }
        }
    }
}

/// Removes written files that will not be committed.
pub(super) fn remove(dir: &Path, adds: &[Add]) {
    for a in adds {
        let _ = std::fs::remove_file(dir.join(&a.path));
    }
}
