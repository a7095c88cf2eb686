//! Errors of the state store.

/// A state-store failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be opened.
    #[error("cannot open the state store {url}: {source}")]
    Open {
        /// The URL, without credentials.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("state store query failed ({what}): {source}")]
    Query {
        /// What we were doing.
        what: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A value stored in the state store could not be read back.
    #[error("state store holds a bad value in {what}: {detail}")]
    Corrupt {
        /// Where.
        what: &'static str,
        /// What.
        detail: String,
    },
    /// Another live process holds the run lock.
    #[error("{0}")]
    Busy(String),
    /// The folder for a SQLite file could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The folder.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait Ctx<T> {
    fn ctx(self, what: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, what: &'static str) -> Result<T> {
        self.map_err(|source| Error::Query { what, source })
    }
}
