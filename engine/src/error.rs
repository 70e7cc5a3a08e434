//! Typed errors with enough context (file, tensor, fault) to print as one line.

use std::path::PathBuf;

/// Everything the engine can refuse. Each variant renders as one line that names
/// the file or tensor and what was wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OS error is part of the message (not a `source`), so that printing
    /// the error chain does not repeat it.
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{}: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    #[error("{}: tensor '{tensor}': {reason}", path.display())]
    Tensor { path: PathBuf, tensor: String, reason: String },
    #[error("no tensor named '{0}' in this model")]
    NotFound(String),
    #[error("invalid scheme: {0}")]
    Scheme(String),
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), err: source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format { path: path.into(), reason: reason.into() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
