//! Processes (Linux `task_struct`, reduced to what memory management needs).
//!
//! Owns [`Process`]: its pid, address space ([`Mm`]), descriptor table and counters.

use crate::fs::FileId;
use crate::mm::Mm;
use crate::stats::Counters;
use std::fmt;

/// A process id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Pid(pub u32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A process.
#[derive(Debug)]
pub struct Process {
    /// Its id.
    pub pid: Pid,
    /// Its address space.
    pub mm: Mm,
    /// Descriptor table: `fds[n]` is descriptor `n`.
    pub fds: Vec<Option<FileId>>,
    /// What it caused.
    pub stats: Counters,
    /// Segment table (segmented machines), indexed by segment number; 0 is null.
    pub segments: Vec<Option<crate::mm::segmentation::SegmentMapping>>,
}

impl Process {
    /// The lowest free descriptor number.
    pub fn lowest_free_fd(&self) -> usize {
        self.fds
            .iter()
            .position(|f| f.is_none())
            .unwrap_or(self.fds.len())
    }
}
