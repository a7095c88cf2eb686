//! Engine errors, classified by whose fault they are.

use strata_runtime::{ErrorKind, TaskError};

/// An engine failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user's SQL, data or configuration is wrong; retrying will not help.
    #[error("{0}")]
    User(String),
    /// Storage or another outside system failed; a retry may pass.
    #[error("{0}")]
    External(String),
    /// A bug in Strata.
    #[error("internal error (a bug in Strata): {0}")]
    Internal(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A user error with context.
    pub fn user(msg: impl Into<String>) -> Self {
        Error::User(msg.into())
    }

    /// Whose fault, for the runtime.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::User(_) => ErrorKind::User,
            Error::External(_) => ErrorKind::External,
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<Error> for TaskError {
    fn from(e: Error) -> Self {
        TaskError {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// Longest error text shown; DataFusion sometimes prints whole plans.
const MAX_MESSAGE: usize = 1500;

fn clip(s: String) -> String {
    if s.len() <= MAX_MESSAGE {
        return s;
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{} … ({} more characters; STRATA_LOG=debug shows all)",
        &s[..end],
        s.len() - end
    )
}

/// Adds what we were doing to a DataFusion, Delta or I/O error, and classifies it.
pub trait Context<T> {
    /// Wraps the error with `what` (e.g. "planning silver.orders").
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, datafusion::error::DataFusionError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            tracing::debug!(error = %e, "query engine error");
            let root = clip(e.find_root().to_string());
            if root.starts_with("Internal") {
                return Error::Internal(format!("{}: {root}", what()));
            }
            if root.contains("Object Store error") || root.contains("IO error") {
                Error::External(format!("{}: {root}", what()))
            } else {
                Error::User(format!("{}: {root}", what()))
            }
        })
    }
}

impl<T> Context<T> for std::result::Result<T, deltalake::DeltaTableError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        use deltalake::DeltaTableError as D;
        self.map_err(|e| {
            tracing::debug!(error = %e, "delta error");
            e
        })
        .map_err(|e| match e {
            D::ObjectStore { .. } | D::Io { .. } => Error::External(format!("{}: {e}", what())),
            D::Transaction { .. } | D::VersionAlreadyExists(_) => {
                Error::External(format!("{}: {e}", what()))
            }
            D::Arrow { .. } | D::SchemaMismatch { .. } | D::InvalidData { .. } => {
                Error::User(format!("{}: {e}", what()))
            }
            other => Error::External(clip(format!("{}: {other}", what()))),
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::External(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for std::result::Result<T, datafusion::arrow::error::ArrowError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::User(format!("{}: {e}", what())))
    }
}

impl<T> Context<T> for std::result::Result<T, strata_state::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::External(format!("{}: {e}", what())))
    }
}
