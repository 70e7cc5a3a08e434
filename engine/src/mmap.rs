//! The one place that memory-maps files. Mapping is the only `unsafe` in the
//! engine; everything else sees a plain `&[u8]`.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::error::{Error, Result};

/// A read-only view of a whole file. Empty files cannot be mapped on every
/// platform, so they are represented without a mapping; bytes already in memory
/// (the app's embedded sample) are held as they are.
pub struct MappedFile {
    map: Option<Mmap>,
    owned: Vec<u8>,
}

impl MappedFile {
    /// Maps `path` read-only.
    ///
    /// # Safety contract (upheld by the caller's environment, not by types)
    /// The mapping is only valid while no other process truncates the file. quantscope
    /// never writes to a file it has open (saves go to a temp file + rename), so a
    /// source file changes only if another program rewrites it in place.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Ok(Self { map: None, owned: Vec::new() });
        }
        // SAFETY: the file is opened read-only and quantscope never modifies files it
        // has mapped; see the contract above. Truncation by another process would
        // raise SIGBUS, which is the accepted cost of mmap for multi-GB checkpoints.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        Ok(Self { map: Some(map), owned: Vec::new() })
    }

    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self { map: None, owned: bytes }
    }

    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&self.owned)
    }

    /// Maps all of `range`'s pages in one call before a tensor is read, instead of
    /// taking a page fault every few KB (Linux ≥ 5.14 `MADV_POPULATE_READ`; best
    /// effort elsewhere).
    pub fn prefetch(&self, range: std::ops::Range<usize>) {
        #[cfg(target_os = "linux")]
        if let Some(map) = &self.map
            && range.end <= map.len()
            && !range.is_empty()
        {
            let _ = map.advise_range(memmap2::Advice::PopulateRead, range.start, range.len());
        }
        #[cfg(not(target_os = "linux"))]
        let _ = range;
    }

    /// Lets the OS drop the resident pages of `range` (a tensor already processed),
    /// so streaming a model through keeps memory near one tensor, not the model.
    /// Best effort: an error only means the pages stay cached.
    pub fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Some(map) = &self.map
            && range.end <= map.len()
            && !range.is_empty()
        {
            // SAFETY: the map is read-only and file-backed (MAP_SHARED, PROT_READ),
            // so MADV_DONTNEED drops clean page-cache references only: a later read
            // faults the same file bytes back in, and no slice can observe a change.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
            };
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}
