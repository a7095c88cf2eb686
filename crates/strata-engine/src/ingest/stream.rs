//! A large CSV file streamed into bronze: each decoding thread encodes the
//! rows it decoded into Parquet files of its own, in the table's folder, as
//! it goes, so the file is never held in memory and decoding and encoding
//! share every core. Strata then commits the files in one Delta version with
//! their statistics ([`crate::file_stats`]). For a lake on object storage the
//! files are written into a local spool folder and uploaded before the
//! commit. Files of a batch that is not committed (a bad row under
//! `on_bad_rows = "fail"`, an error) are removed.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::file::properties::WriterProperties;
use deltalake::kernel::Add;
use object_store::ObjectStoreExt as _;

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
        let with = batches
            .iter()
            .map(|b| super::with_metadata(b, self.ingested_at, &self.source, &self.batch_id))
            .collect::<crate::error::Result<Vec<_>>>()
            .map_err(|e| e.to_string())?;
        self.put_ready(worker, with)
    }

    /// Writes rows that already carry the metadata columns on thread `worker`.
    pub(super) fn put_ready(&self, worker: usize, batches: Vec<RecordBatch>) -> Result<(), String> {
        let slot = self
            .slots
            .get(worker)
            .ok_or_else(|| format!("no writer for thread {worker}"))?;
        let mut slot = slot.lock().map_err(|_| "a writer failed".to_string())?;
        for b in batches {
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

    /// Writes with `put`, then closes every file and returns their `add`
    /// actions; removes what was written if `put` fails.
    #[cfg(feature = "ballista")]
    pub(super) fn finish_after(
        self,
        put: impl FnOnce(&Self) -> Result<(), String>,
    ) -> Result<Vec<Add>, String> {
        match put(&self) {
            Ok(()) => self.finish(),
            Err(e) => {
                self.discard();
                Err(e)
            }
        }
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

/// Where files for the table at `table` are written: its own folder when it
/// is on this disk, else a new spool folder (returned, to keep it alive
/// until the files are uploaded).
pub(super) fn folder_for(
    table: &url::Url,
) -> std::io::Result<(PathBuf, Option<tempfile::TempDir>)> {
    match table.to_file_path() {
        Ok(dir) => Ok((dir, None)),
        Err(()) => {
            let spool = tempfile::tempdir()?;
            Ok((spool.path().to_path_buf(), Some(spool)))
        }
    }
}

/// Where a batch's files are, to remove them if it is not committed.
pub(super) enum Written {
    /// In the table's folder on local disk.
    Local(PathBuf),
    /// Uploaded into the table on object storage.
    Store(deltalake::logstore::ObjectStoreRef),
}

impl Written {
    /// Removes the files (they will not be committed).
    pub(super) async fn remove(&self, adds: &[Add]) {
        match self {
            Written::Local(dir) => remove(dir, adds),
            Written::Store(store) => {
                for a in adds {
                    let _ = store
                        .delete(&object_store::path::Path::from(a.path.as_str()))
                        .await;
                }
            }
        }
    }
}

/// Uploads files written into `dir` into the table's store (paths relative
/// to the table), in parts of 8 MB; on failure, removes what was uploaded.
pub(super) async fn upload(
    store: &deltalake::logstore::ObjectStoreRef,
    dir: &Path,
    adds: &[Add],
) -> Result<(), String> {
    use std::io::Read as _;
    for (i, a) in adds.iter().enumerate() {
        let sent = async {
            let to = object_store::path::Path::from(a.path.as_str());
            let part = store.put_multipart(&to).await.map_err(|e| e.to_string())?;
            let mut w = object_store::WriteMultipart::new(part);
            let mut f = File::open(dir.join(&a.path)).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 8 << 20];
            loop {
                let n = f.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(4).await.map_err(|e| e.to_string())?;
                w.write(&buf[..n]);
            }
            w.finish().await.map_err(|e| e.to_string())?;
            Ok::<(), String>(())
        }
        .await;
        if let Err(e) = sent {
            Written::Store(store.clone()).remove(&adds[..=i]).await;
            return Err(format!("uploading {}: {e}", a.path));
        }
    }
    Ok(())
}

/// Removes written files that will not be committed.
pub(super) fn remove(dir: &Path, adds: &[Add]) {
    for a in adds {
        let _ = std::fs::remove_file(dir.join(&a.path));
    }
}
