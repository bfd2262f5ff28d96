//! `mincore` (Linux `mm/mincore.c`).
//!
//! Owns reporting residency: one byte per page, 1 if the page is resident. For a file
//! mapping a page counts as resident when it is in the page cache, even if this process
//! has never touched it; for anonymous memory, when a PTE maps it (the zero page included).

use crate::addr::{VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::errno::{Errno, SysResult};
use crate::kernel::Kernel;
use crate::process::Pid;

impl Kernel {
    /// `mincore(addr, len)`: the residency vector.
    pub fn mincore(&mut self, pid: Pid, addr: VirtAddr, len: u64) -> SysResult<Vec<u8>> {
        let r = match self.cfg.translation {
            crate::config::TranslationMode::Paging => self.do_mincore(pid, addr, len),
            crate::config::TranslationMode::Segmentation => Err(Errno::ENOSYS),
            crate::config::TranslationMode::SegmentPaging => self
                .seg_linear(pid, addr, len)
                .and_then(|linear| self.do_mincore(pid, linear, len)),
        };
        self.trace_syscall(
            pid,
            || format!("mincore({addr}, {len}, vec)"),
            &r.as_ref().map(|_| 0).map_err(|e| *e),
        );
        r
    }

    fn do_mincore(&mut self, pid: Pid, start: VirtAddr, len: u64) -> SysResult<Vec<u8>> {
        self.proc_ref(pid)?;
        if !start.is_aligned() {
            return Err(Errno::EINVAL);
        }
        if start.0 > self.task_size() || len > self.task_size() - start.0 {
            return Err(Errno::ENOMEM);
        }
        let pages = len.div_ceil(PAGE_SIZE);
        // Grown page by page: an unmapped page ends the call before a huge `len` costs.
        let mut out = Vec::new();
        let mut va = start;
        for _ in 0..pages {
            let v = self
                .proc_ref(pid)?
                .mm
                .find_vma(va)
                .copied()
                .ok_or(Errno::ENOMEM)?;
            let pte = self.pte_of(pid, va);
            let resident = if pte.has_frame() {
                true
            } else if let Some(id) = v.inode() {
                self.inode(id).pages.contains_key(&v.pgoff_of(va).0)
            } else {
                false
            };
            out.push(resident as u8);
            va = va.add(1 << PAGE_SHIFT);
        }
        Ok(out)
    }
}
