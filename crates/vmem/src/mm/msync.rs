//! `msync` (Linux `mm/msync.c`).
//!
//! Owns flushing a mapped range: MS_SYNC writes the dirty page-cache pages of every shared
//! file mapping in the range to the real file (pwrite) and fsyncs it; MS_ASYNC is a no-op
//! (since Linux 2.6.19 dirty pages are already tracked and written back in time);
//! MS_INVALIDATE is accepted (the page cache is coherent) but refused with EBUSY on
//! locked memory. A hole in the range is ENOMEM: with exactly MS_SYNC the call stops at
//! the hole (what lies before it was synced, what lies after it is not); with other flags
//! the rest of the range is still processed.

use crate::addr::{page_align_up, VirtAddr, PAGE_SHIFT};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::kernel::Kernel;
use crate::mm::vma::vm;
use crate::process::Pid;

impl Kernel {
    /// `msync(addr, len, flags)`.
    pub fn msync(&mut self, pid: Pid, addr: VirtAddr, len: u64, flags: i32) -> SysResult<()> {
        let r = if self.segmented() {
            self.seg_msync(pid, addr, len, flags)
        } else {
            self.do_msync(pid, addr, len, flags)
        };
        self.trace_syscall(
            pid,
            || format!("msync({addr}, {len}, {})", ms_flags_str(flags)),
            &r.map(|_| 0),
        );
        r
    }

    pub(crate) fn do_msync(
        &mut self,
        pid: Pid,
        start: VirtAddr,
        len: u64,
        flags: i32,
    ) -> SysResult<()> {
        self.proc_ref(pid)?;
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0 {
            return Err(Errno::EINVAL);
        }
        if !start.is_aligned() {
            return Err(Errno::EINVAL);
        }
        if flags & MS_ASYNC != 0 && flags & MS_SYNC != 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len).ok_or(Errno::ENOMEM)?;
        let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
        if end == start {
            return Ok(());
        }
        let mut unmapped_error = Ok(());
        let mut cur = start;
        loop {
            let Some(v) = self.proc_ref(pid)?.mm.find_vma_after(cur).copied() else {
                return Err(Errno::ENOMEM);
            };
            if cur < v.start {
                // Linux: with exactly MS_SYNC a hole ends the call at once; the
                // mappings after it are not synced.
                if flags == MS_SYNC {
                    return Err(Errno::ENOMEM);
                }
                unmapped_error = Err(Errno::ENOMEM);
                cur = v.start;
                if cur >= end {
                    return unmapped_error;
                }
            }
            if flags & MS_INVALIDATE != 0 && v.flags & vm::LOCKED != 0 {
                return Err(Errno::EBUSY);
            }
            let piece_end = v.end.min(end);
            if flags & MS_SYNC != 0 && v.flags & vm::SHARED != 0 {
                if let Some(id) = v.inode() {
                    let first = v.pgoff_of(cur).0;
                    let last = first + ((piece_end.0 - cur.0) >> PAGE_SHIFT) - 1;
                    self.writeback_range(id, first, last, true)?;
                }
            }
            cur = v.end;
            if cur >= end {
                return unmapped_error;
            }
        }
    }
}

/// `MS_SYNC|MS_INVALIDATE` style rendering.
pub fn ms_flags_str(flags: i32) -> String {
    let mut parts = Vec::new();
    for (bit, name) in [
        (MS_ASYNC, "MS_ASYNC"),
        (MS_SYNC, "MS_SYNC"),
        (MS_INVALIDATE, "MS_INVALIDATE"),
    ] {
        if flags & bit != 0 {
            parts.push(name.to_string());
        }
    }
    let rest = flags & !(MS_ASYNC | MS_SYNC | MS_INVALIDATE);
    if rest != 0 {
        parts.push(format!("0x{rest:x}"));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    }
}
