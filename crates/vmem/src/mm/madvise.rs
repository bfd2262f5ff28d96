//! `madvise` (Linux `mm/madvise.c`).
//!
//! Owns advice on a range: access-pattern hints (NORMAL, RANDOM, SEQUENTIAL) stored in the
//! VMA flags and used by the fault path's read-around; WILLNEED (read the file pages into
//! the page cache now); DONTNEED (drop the mappings: private anonymous memory reads back
//! as zeros, private file pages re-read the file, shared pages keep their data in the
//! cache); POPULATE_READ/WRITE; the fork flags; and the no-op hints. A hole in the range is
//! ENOMEM after the advice has been applied to the mapped parts, as in Linux.

use crate::addr::{page_align_up, VirtAddr, PAGE_SHIFT};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::kernel::Kernel;
use crate::mm::vma::{vm, Vma};
use crate::process::Pid;
use crate::signal::Signal;

fn advice_valid(a: i32) -> bool {
    matches!(
        a,
        MADV_NORMAL
            | MADV_RANDOM
            | MADV_SEQUENTIAL
            | MADV_WILLNEED
            | MADV_DONTNEED
            | MADV_FREE
            | MADV_REMOVE
            | MADV_DONTFORK
            | MADV_DOFORK
            | MADV_MERGEABLE
            | MADV_UNMERGEABLE
            | MADV_HUGEPAGE
            | MADV_NOHUGEPAGE
            | MADV_DONTDUMP
            | MADV_DODUMP
            | MADV_WIPEONFORK
            | MADV_KEEPONFORK
            | MADV_COLD
            | MADV_PAGEOUT
            | MADV_POPULATE_READ
            | MADV_POPULATE_WRITE
    )
}

/// The name of an advice value.
pub fn advice_name(a: i32) -> String {
    let n = match a {
        MADV_NORMAL => "MADV_NORMAL",
        MADV_RANDOM => "MADV_RANDOM",
        MADV_SEQUENTIAL => "MADV_SEQUENTIAL",
        MADV_WILLNEED => "MADV_WILLNEED",
        MADV_DONTNEED => "MADV_DONTNEED",
        MADV_FREE => "MADV_FREE",
        MADV_REMOVE => "MADV_REMOVE",
        MADV_DONTFORK => "MADV_DONTFORK",
        MADV_DOFORK => "MADV_DOFORK",
        MADV_WIPEONFORK => "MADV_WIPEONFORK",
        MADV_KEEPONFORK => "MADV_KEEPONFORK",
        MADV_COLD => "MADV_COLD",
        MADV_PAGEOUT => "MADV_PAGEOUT",
        MADV_POPULATE_READ => "MADV_POPULATE_READ",
        MADV_POPULATE_WRITE => "MADV_POPULATE_WRITE",
        _ => return a.to_string(),
    };
    n.to_string()
}

impl Kernel {
    /// `madvise(addr, len, advice)`.
    pub fn madvise(&mut self, pid: Pid, addr: VirtAddr, len: u64, advice: i32) -> SysResult<()> {
        let r = match self.cfg.translation {
            crate::config::TranslationMode::Paging => self.do_madvise(pid, addr, len, advice),
            crate::config::TranslationMode::Segmentation => Err(Errno::ENOSYS),
            crate::config::TranslationMode::SegmentPaging => self
                .seg_linear(pid, addr, len)
                .and_then(|linear| self.do_madvise(pid, linear, len, advice)),
        };
        self.trace_syscall(
            pid,
            || format!("madvise({addr}, {len}, {})", advice_name(advice)),
            &r.map(|_| 0),
        );
        r
    }

    fn do_madvise(&mut self, pid: Pid, start: VirtAddr, len_in: u64, advice: i32) -> SysResult<()> {
        self.proc_ref(pid)?;
        if !advice_valid(advice) {
            return Err(Errno::EINVAL);
        }
        if !start.is_aligned() {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len_in).ok_or(Errno::EINVAL)?;
        if len_in != 0 && len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
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
                unmapped_error = Err(Errno::ENOMEM);
                cur = v.start;
                if cur >= end {
                    return unmapped_error;
                }
            }
            let piece_end = v.end.min(end);
            self.madvise_vma(pid, v, cur, piece_end, advice)?;
            cur = piece_end;
            if cur >= end {
                return unmapped_error;
            }
        }
    }

    fn madvise_vma(
        &mut self,
        pid: Pid,
        v: Vma,
        start: VirtAddr,
        end: VirtAddr,
        advice: i32,
    ) -> SysResult<()> {
        let set_flags = |k: &mut Kernel, set: u32, clear: u32| -> SysResult<()> {
            if (v.flags & !clear) | set != v.flags {
                // A hugetlb area may only be split on a huge-page boundary.
                crate::mm::hugetlb::hugetlb_may_split(&v, start)?;
                crate::mm::hugetlb::hugetlb_may_split(&v, end)?;
            }
            // An area whose flags change is split at `start` and `end`; a huge page either
            // cuts in two is split first (Linux `vma_adjust_trans_huge`).
            for at in [start, end] {
                let cuts = k.proc_ref(pid).is_ok_and(|p| {
                    p.mm.find_vma(at)
                        .is_some_and(|v| v.start < at && (v.flags & !clear) | set != v.flags)
                });
                if cuts {
                    k.split_huge_pmd_at(pid, at);
                }
            }
            let Ok(p) = k.proc_mut(pid) else {
                return Ok(());
            };
            p.mm.split_at(start);
            p.mm.split_at(end);
            let mut key = start.0;
            while key < end.0 {
                let Some(vma) = p.mm.vmas.get_mut(&key) else {
                    break;
                };
                vma.flags = (vma.flags & !clear) | set;
                key = vma.end.0;
            }
            p.mm.merge_around(start);
            Ok(())
        };
        if v.is_hugetlb() {
            // Linux's hugetlb rules: DONTNEED in whole huge pages, REMOVE punches the
            // shared file, no lazy free, no LRU advice, no wipe-on-fork (a file mapping).
            match advice {
                MADV_DONTNEED => return self.hugetlb_madv_dontneed(pid, &v, start, end),
                MADV_REMOVE => return self.hugetlb_madv_remove(&v, start, end),
                MADV_FREE | MADV_COLD | MADV_PAGEOUT | MADV_WIPEONFORK => {
                    return Err(Errno::EINVAL)
                }
                _ => {}
            }
        }
        match advice {
            MADV_NORMAL => set_flags(self, 0, vm::SEQ_READ | vm::RAND_READ)?,
            MADV_RANDOM => set_flags(self, vm::RAND_READ, vm::SEQ_READ)?,
            MADV_SEQUENTIAL => set_flags(self, vm::SEQ_READ, vm::RAND_READ)?,
            MADV_DONTFORK => set_flags(self, vm::DONTCOPY, 0)?,
            MADV_DOFORK => set_flags(self, 0, vm::DONTCOPY)?,
            MADV_WIPEONFORK | MADV_KEEPONFORK => {
                if v.flags & vm::SHARED != 0 || v.inode().is_some() {
                    return Err(Errno::EINVAL);
                }
                if advice == MADV_WIPEONFORK {
                    set_flags(self, vm::WIPEONFORK, 0)?
                } else {
                    set_flags(self, 0, vm::WIPEONFORK)?
                }
            }
            MADV_DONTDUMP => set_flags(self, vm::DONTDUMP, 0)?,
            MADV_DODUMP => set_flags(self, 0, vm::DONTDUMP)?,
            MADV_HUGEPAGE => set_flags(self, vm::HUGEPAGE, vm::NOHUGEPAGE)?,
            MADV_NOHUGEPAGE => set_flags(self, vm::NOHUGEPAGE, vm::HUGEPAGE)?,
            MADV_MERGEABLE => set_flags(self, vm::MERGEABLE, 0)?,
            MADV_UNMERGEABLE => set_flags(self, 0, vm::MERGEABLE)?,
            MADV_WILLNEED => {
                if let Some(id) = v.inode() {
                    let first = v.pgoff_of(start).0;
                    let n = (end.0 - start.0) >> PAGE_SHIFT;
                    let _ = self.read_pages(Some(pid), id, first, n);
                }
            }
            MADV_DONTNEED => {
                if v.flags & vm::LOCKED != 0 {
                    return Err(Errno::EINVAL);
                }
                self.zap_range(pid, start, end);
            }
            MADV_FREE => {
                // Lazy free: the pages may be reclaimed instead of swapped; until memory is
                // short they keep their data, which is what a program observes here.
                if !v.is_anon() {
                    return Err(Errno::EINVAL);
                }
            }
            MADV_REMOVE => {
                if v.flags & vm::SHARED == 0 {
                    return Err(Errno::EINVAL);
                }
                // Hole punching needs filesystem support this model does not give.
                return Err(Errno::EOPNOTSUPP);
            }
            MADV_COLD | MADV_PAGEOUT => {
                if v.flags & vm::LOCKED != 0 {
                    return Err(Errno::EINVAL);
                }
                // COLD clears the pages' Accessed bits, so reclaim takes them first;
                // PAGEOUT reclaims them now (clean file pages dropped, dirty ones written
                // back, anonymous ones swapped out when there is swap).
                let mut frames = Vec::new();
                let mut a = start;
                while a < end {
                    let pte = self.pte_of(pid, a);
                    if pte.present() && !pte.special() && pte.pfn() != self.zero_pfn {
                        frames.push(pte.pfn());
                    }
                    a = a.add(crate::addr::PAGE_SIZE);
                }
                for pfn in frames {
                    if advice == MADV_COLD {
                        self.folio_referenced(pfn);
                    } else {
                        self.evict(pfn);
                    }
                }
            }
            MADV_POPULATE_READ | MADV_POPULATE_WRITE => {
                let write = advice == MADV_POPULATE_WRITE;
                if write && !v.writable() || !write && !v.readable() {
                    return Err(Errno::EINVAL);
                }
                self.populate_range(pid, start, end, write)
                    .map_err(|s| match s {
                        Signal::OomKill { .. } => Errno::ENOMEM,
                        _ => Errno::EFAULT,
                    })?;
            }
            _ => return Err(Errno::EINVAL),
        }
        Ok(())
    }
}
