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
    /// Bytes that do not decode as their dtype, or values that do not encode to it.
    #[error("{}cannot decode: {reason}", place(file.as_deref(), tensor.as_deref()))]
    Decode { file: Option<PathBuf>, tensor: Option<String>, reason: String },
    /// A tensor (or the whole plan) that cannot be saved as planned.
    #[error("{}cannot save as planned: {reason}", place(None, tensor.as_deref()))]
    Plan { tensor: Option<String>, reason: String },
    /// A saved tensor that cannot be read back (missing part, wrong dtype or shape).
    #[error("{}: tensor '{tensor}': cannot read back: {reason}", file.display())]
    ReadBack { file: PathBuf, tensor: String, reason: String },
    /// A saved tensor whose read-back differs from what the engine computed.
    #[error("{}: tensor '{tensor}': verify failed: {reason}", file.display())]
    Verify { file: PathBuf, tensor: String, reason: String },
    #[error("cancelled")]
    Cancelled,
}

/// "FILE: tensor 'NAME': " with whichever parts are known.
fn place(file: Option<&std::path::Path>, tensor: Option<&str>) -> String {
    let file = file.map(|f| format!("{}: ", f.display())).unwrap_or_default();
    let tensor = tensor.map(|t| format!("tensor '{t}': ")).unwrap_or_default();
    format!("{file}{tensor}")
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), err: source }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Format { path: path.into(), reason: reason.into() }
    }

    /// A decode failure of the tensor `tensor`, where that is known.
    pub(crate) fn decode(tensor: Option<&str>, reason: String) -> Self {
        Self::Decode { file: None, tensor: tensor.map(str::to_string), reason }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_and_tensor_on_one_line() {
        let e = Error::Decode {
            file: Some("m.safetensors".into()),
            tensor: Some("w".into()),
            reason: "odd".into(),
        };
        assert_eq!(e.to_string(), "m.safetensors: tensor 'w': cannot decode: odd");
        assert_eq!(Error::decode(None, "odd".into()).to_string(), "cannot decode: odd");
        let e = Error::Plan { tensor: Some("w".into()), reason: "scale inf does not fit in BF16".into() };
        assert_eq!(e.to_string(), "tensor 'w': cannot save as planned: scale inf does not fit in BF16");
        let e =
            Error::ReadBack { file: "out".into(), tensor: "w".into(), reason: "_scale has shape [2]".into() };
        assert_eq!(e.to_string(), "out: tensor 'w': cannot read back: _scale has shape [2]");
        let e = Error::Verify { file: "out".into(), tensor: "w".into(), reason: "R' differs".into() };
        assert!(!e.to_string().contains('\n'));
    }
}
