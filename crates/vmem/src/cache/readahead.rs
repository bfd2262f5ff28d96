//! Read-ahead (Linux `mm/readahead.c`).
//!
//! Owns the per-open-file read-ahead state ([`RaState`], Linux `struct file_ra_state`) and
//! the on-demand algorithm that drives it: a synchronous window when a read misses the
//! cache (`page_cache_sync_ra`: a new window at the start of a file or after a sequential
//! read, just the request for a small random read), the `PG_readahead` mark placed
//! `async_size` pages before the end of each window, and the asynchronous window read
//! when a reader reaches the mark (`page_cache_async_ra`, growing ×4 then ×2 up to
//! `read_around_pages`). `read()` and the mmap fault path both drive it; the fault path's
//! read-around window is set in `cache/mod.rs`.

use crate::cache::PageError;
use crate::fs::InodeId;
use crate::hw::phys::FrameFlags;
use crate::kernel::Kernel;
use crate::process::Pid;

/// Linux `struct file_ra_state`, one per open file description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaState {
    /// First page of the current window.
    pub start: u64,
    /// Pages in the current window.
    pub size: u64,
    /// Pages at the end of the window still to be consumed when the next window starts.
    pub async_size: u64,
    /// Byte position just past the last read (`-1`: none yet).
    pub prev_pos: i64,
}

impl Default for RaState {
    fn default() -> Self {
        RaState {
            start: 0,
            size: 0,
            async_size: 0,
            prev_pos: -1,
        }
    }
}

/// Linux `get_init_ra_size`: the first window for a request of `size` pages.
fn get_init_ra_size(size: u64, max: u64) -> u64 {
    let newsize = size.max(1).next_power_of_two();
    if newsize <= max / 32 {
        newsize * 4
    } else if newsize <= max / 4 {
        newsize * 2
    } else {
        max
    }
}

/// Linux `get_next_ra_size`: the window after one of `cur` pages.
fn get_next_ra_size(cur: u64, max: u64) -> u64 {
    if cur < max / 16 {
        4 * cur
    } else if cur <= max / 2 {
        2 * cur
    } else {
        max
    }
}

impl Kernel {
    pub(crate) fn ra_state(&self, serial: u64) -> RaState {
        self.ra.get(&serial).copied().unwrap_or_default()
    }

    pub(crate) fn set_ra_state(&mut self, serial: u64, st: RaState) {
        self.ra.insert(serial, st);
    }

    /// Reads the missing pages of `[start, start + size)` inside the file and marks the
    /// page `start + size - async_size` `PG_readahead` if this call brought it in (Linux
    /// `page_cache_ra_order`, which falls back to `page_cache_ra_unbounded` around pages
    /// already cached).
    pub(crate) fn ra_submit(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        start: u64,
        size: u64,
        async_size: u64,
    ) -> Result<u64, PageError> {
        let mark = start + size - async_size.min(size);
        let mark_new = async_size > 0 && mark < start + size && !self.inode(id).has_entry(mark);
        let n = self.read_pages(pid, id, start, size)?;
        if mark_new {
            if let Some(&pfn) = self.inode(id).pages.get(&mark) {
                self.phys.meta_mut(pfn).flags.0 |= FrameFlags::READAHEAD;
            }
        }
        Ok(n)
    }

    /// Whether the cached page at `pgoff` carries the `PG_readahead` mark.
    pub(crate) fn page_readahead(&self, id: InodeId, pgoff: u64) -> bool {
        self.inode(id)
            .pages
            .get(&pgoff)
            .is_some_and(|p| self.phys.meta(*p).flags.has(FrameFlags::READAHEAD))
    }

    /// Linux `page_cache_sync_ra`: a read of `req` pages at `index` missed the cache.
    pub(crate) fn page_cache_sync_ra(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        serial: u64,
        index: u64,
        req: u64,
    ) -> Result<u64, PageError> {
        let max = self.cfg.read_around_pages;
        if max == 0 {
            return self.read_pages(pid, id, index, req.max(1));
        }
        let mut ra = self.ra_state(serial);
        let prev_index = (ra.prev_pos as u64) >> crate::addr::PAGE_SHIFT;
        if index == 0 || req > max || index.wrapping_sub(prev_index) <= 1 {
            ra.start = index;
            ra.size = get_init_ra_size(req, max);
            ra.async_size = if ra.size > req {
                ra.size - req
            } else {
                ra.size >> 1
            };
        } else {
            // Look for the trace a sequential reader would leave behind.
            let miss = self.page_cache_prev_miss(id, index - 1, max);
            let mut contig = index.wrapping_sub(miss).wrapping_sub(1);
            if contig <= req {
                // A small random read: just the request, no state change.
                return self.read_pages(pid, id, index, req);
            }
            if miss == u64::MAX {
                contig = contig.wrapping_mul(2);
            }
            ra.start = index;
            ra.size = (contig + req).min(max);
            ra.async_size = 1;
        }
        self.set_ra_state(serial, ra);
        self.ra_submit(pid, id, ra.start, ra.size, ra.async_size)
    }

    /// Linux `page_cache_async_ra`: a reader reached the `PG_readahead` page at `index`.
    pub(crate) fn page_cache_async_ra(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        serial: u64,
        index: u64,
        req: u64,
    ) -> Result<u64, PageError> {
        let max = self.cfg.read_around_pages;
        if max == 0 {
            return Ok(0);
        }
        if let Some(&pfn) = self.inode(id).pages.get(&index) {
            self.phys.meta_mut(pfn).flags.0 &= !FrameFlags::READAHEAD;
        }
        let mut ra = self.ra_state(serial);
        let expected = ra.start + ra.size - ra.async_size;
        if index == expected {
            ra.start += ra.size;
            ra.size = ra.size.max(get_next_ra_size(ra.size, max));
            ra.async_size = ra.size;
        } else {
            let start = self.page_cache_next_miss(id, index + 1, max);
            if start == 0 || start - index > max {
                return Ok(0);
            }
            ra.start = start;
            ra.size = get_next_ra_size(start - index + req, max);
            ra.async_size = ra.size;
        }
        self.set_ra_state(serial, ra);
        self.ra_submit(pid, id, ra.start, ra.size, ra.async_size)
    }

    /// The nearest uncached page at or below `index`, scanning at most `max` pages;
    /// `u64::MAX` when everything down to page 0 is cached.
    fn page_cache_prev_miss(&self, id: InodeId, index: u64, max: u64) -> u64 {
        let ino = self.inode(id);
        let mut i = index;
        for _ in 0..max {
            if !ino.has_entry(i) {
                return i;
            }
            if i == 0 {
                return u64::MAX;
            }
            i -= 1;
        }
        i
    }

    /// The nearest uncached page at or above `index`, scanning at most `max` pages.
    fn page_cache_next_miss(&self, id: InodeId, index: u64, max: u64) -> u64 {
        self.inode(id).next_miss(index, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_follow_linux() {
        // 128 KiB read-ahead (32 pages): a 1-page read starts with 4 pages, then 16, 32.
        assert_eq!(get_init_ra_size(1, 32), 4);
        assert_eq!(get_init_ra_size(4, 32), 8);
        assert_eq!(get_init_ra_size(16, 32), 32);
        assert_eq!(get_next_ra_size(4, 32), 8);
        assert_eq!(get_next_ra_size(16, 32), 32);
        assert_eq!(get_next_ra_size(32, 32), 32);
    }
}
