//! The swap area: a real file of page-sized slots.
//!
//! Owns [`SwapArea`]: slot allocation with reference counts (a slot is shared by the
//! swap entries that fork copies), and page I/O to the file with `pread`/`pwrite`.

use crate::addr::{PAGE_SHIFT, PAGE_SIZE};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A swap file.
#[derive(Debug)]
pub struct SwapArea {
    file: File,
    path: PathBuf,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl SwapArea {
    /// Creates (or truncates) a swap file of `bytes` at `path`.
    pub fn create(path: &Path, bytes: u64) -> io::Result<SwapArea> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let slots = (bytes >> PAGE_SHIFT) as u32;
        file.set_len(u64::from(slots) << PAGE_SHIFT)?;
        Ok(SwapArea {
            file,
            path: path.to_path_buf(),
            refs: vec![0; slots as usize],
            free: (0..slots).rev().collect(),
        })
    }

    /// The file behind it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Total slots.
    pub fn slots(&self) -> u64 {
        self.refs.len() as u64
    }

    /// Slots in use.
    pub fn used(&self) -> u64 {
        self.slots() - self.free.len() as u64
    }

    /// References to `slot`.
    pub fn refs(&self, slot: u64) -> u32 {
        self.refs.get(slot as usize).copied().unwrap_or(0)
    }

    /// Writes a page to a fresh slot with `refs` references; `None` when full.
    pub fn swap_out(&mut self, page: &[u8], refs: u32) -> io::Result<Option<u64>> {
        let Some(slot) = self.free.pop() else {
            return Ok(None);
        };
        if let Err(e) = self.file.write_all_at(page, u64::from(slot) << PAGE_SHIFT) {
            self.free.push(slot);
            return Err(e);
        }
        self.refs[slot as usize] = refs;
        Ok(Some(u64::from(slot)))
    }

    /// Reads the page in `slot`.
    pub fn read(&self, slot: u64, page: &mut [u8]) -> io::Result<()> {
        debug_assert_eq!(page.len() as u64, PAGE_SIZE);
        self.file.read_exact_at(page, slot << PAGE_SHIFT)
    }

    /// Adds a reference (fork copied a swap entry).
    pub fn dup(&mut self, slot: u64) {
        if let Some(r) = self.refs.get_mut(slot as usize) {
            *r += 1;
        }
    }

    /// Drops a reference; the slot is free at zero.
    pub fn put(&mut self, slot: u64) {
        if let Some(r) = self.refs.get_mut(slot as usize) {
            if *r > 0 {
                *r -= 1;
                if *r == 0 {
                    self.free.push(slot as u32);
                }
            }
        }
    }
}

impl Drop for SwapArea {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
