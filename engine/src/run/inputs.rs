//! The inputs a forward runs on: one sample per non-empty line of a text file, or
//! the calibration text shipped with quantscope (`sample-models/calibration.txt`,
//! 300 sentences written for the project).

use std::path::Path;

use crate::error::{Error, Result};

/// The shipped calibration text, used when no inputs file is given.
pub const BUILTIN_TEXT: &str = include_str!("../../../sample-models/calibration.txt");

/// The name reports give the shipped text.
pub const BUILTIN_NAME: &str = "built-in calibration text";

/// Samples of `text`: each non-empty line, trimmed, at most `max` of them.
pub fn samples_of(text: &str, max: usize) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).take(max).map(str::to_string).collect()
}

/// The samples of a UTF-8 text file; an empty file is an error naming it.
pub fn read_samples(path: &Path, max: usize) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| Error::format(path, "inputs file is not UTF-8 text"))?;
    let samples = samples_of(&text, max);
    if samples.is_empty() {
        return Err(Error::format(path, "inputs file has no non-empty line (one sample per line)"));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_non_empty_line() {
        assert_eq!(samples_of("a b\n\n  c  \r\n", 10), ["a b", "c"]);
        assert_eq!(samples_of("a\nb\nc", 2), ["a", "b"]);
        assert!(samples_of(BUILTIN_TEXT, usize::MAX).len() >= 256);
    }

    #[test]
    fn empty_or_binary_files_are_one_line_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("in.txt");
        std::fs::write(&p, "\n \n").expect("write");
        let e = read_samples(&p, 10).expect_err("empty").to_string();
        assert!(e.contains("in.txt") && e.contains("no non-empty line") && !e.contains('\n'), "{e}");
        std::fs::write(&p, [0xff, 0xfe]).expect("write");
        assert!(read_samples(&p, 10).expect_err("binary").to_string().contains("not UTF-8"));
    }
}
