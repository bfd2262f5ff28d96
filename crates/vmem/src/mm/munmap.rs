//! `munmap` (Linux `do_vmi_munmap`).
//!
//! Owns the removal of a range from an address space: split the VMAs that straddle its
//! ends, remove the ones inside, zap their PTEs (dropping frame references and flushing
//! the TLB). Holes inside the range are fine; the page cache is untouched, so dirty shared
//! pages still reach the file at write-back.

use crate::addr::{page_align_up, VirtAddr};
use crate::errno::{Errno, SysResult};
use crate::events::Event;
use crate::kernel::Kernel;
use crate::process::Pid;

impl Kernel {
    /// `munmap(addr, len)`.
    pub fn munmap(&mut self, pid: Pid, addr: VirtAddr, len: u64) -> SysResult<()> {
        let r = (|| {
            self.proc_ref(pid)?;
            if self.segmented() {
                return self.seg_munmap(pid, addr, len);
            }
            if !addr.is_aligned() || addr.0 > self.task_size() || len > self.task_size() - addr.0 {
                return Err(Errno::EINVAL);
            }
            let len = page_align_up(len).ok_or(Errno::EINVAL)?;
            if len == 0 {
                return Err(Errno::EINVAL);
            }
            // A hugetlb area may only be cut on a huge-page boundary (no rounding).
            self.hugetlb_check_split(pid, addr)?;
            self.hugetlb_check_split(pid, addr.add(len))?;
            self.unmap_range(pid, addr, addr.add(len));
            Ok(())
        })();
        self.trace_syscall(pid, || format!("munmap({addr}, {len})"), &r.map(|_| 0));
        r
    }

    /// Frees a shared-memory object's pages once no VMA maps it any more (it has no name
    /// to be opened by again, like an unlinked shmem file).
    pub(crate) fn release_shmem_if_unused(&mut self, id: crate::fs::InodeId) {
        if self.inode(id).kind != crate::fs::FileKind::Shmem {
            return;
        }
        let used = self
            .procs
            .iter()
            .flatten()
            .any(|p| p.mm.vmas.values().any(|v| v.inode() == Some(id)));
        if !used {
            self.truncate_inode_pages(id, 0);
        }
    }

    /// Removes every mapping in `[start, end)` (page aligned).
    pub(crate) fn unmap_range(&mut self, pid: Pid, start: VirtAddr, end: VirtAddr) {
        let Ok(p) = self.proc_mut(pid) else { return };
        p.mm.split_at(start);
        p.mm.split_at(end);
        let doomed = p.mm.vmas_in(start, end);
        for v in &doomed {
            p.mm.vmas.remove(&v.start.0);
        }
        for v in doomed {
            if v.is_hugetlb() {
                self.hugetlb_unmap_vma(pid, &v);
            } else {
                self.zap_range(pid, v.start, v.end);
            }
            self.events.emit(|| Event::VmaUnmapped {
                pid,
                start: v.start,
                end: v.end,
            });
            if let Some(id) = v.inode() {
                self.release_shmem_if_unused(id);
            }
        }
    }
}
