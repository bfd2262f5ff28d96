//! `mprotect` (Linux `mm/mprotect.c`).
//!
//! Owns changing the protection of a range: argument checks in Linux's order, the
//! `VM_MAY*` rule (a shared mapping of a read-only descriptor cannot gain PROT_WRITE:
//! EACCES), splitting and re-merging VMAs, and rewriting the PTEs already installed
//! (removing write access write-protects them at once; PROT_NONE keeps the frame but
//! makes the entry not present; adding write access is left to the next write fault,
//! which reuses or copies the page). A hole in the range is ENOMEM after the part before
//! it has been changed, as in Linux.

use crate::addr::{page_align_up, VirtAddr};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::events::Event;
use crate::hw::pte::Pte;
use crate::kernel::Kernel;
use crate::mm::mmap::prot_str;
use crate::mm::pgtable;
use crate::mm::vma::{vm, Vma};
use crate::process::Pid;

impl Kernel {
    /// `mprotect(addr, len, prot)`.
    pub fn mprotect(&mut self, pid: Pid, addr: VirtAddr, len: u64, prot: i32) -> SysResult<()> {
        let r = if self.segmented() {
            self.seg_mprotect(pid, addr, prot)
        } else {
            self.do_mprotect(pid, addr, len, prot)
        };
        self.trace_syscall(
            pid,
            || format!("mprotect({addr}, {len}, {})", prot_str(prot)),
            &r.map(|_| 0),
        );
        r
    }

    pub(crate) fn do_mprotect(
        &mut self,
        pid: Pid,
        start: VirtAddr,
        len: u64,
        prot: i32,
    ) -> SysResult<()> {
        self.proc_ref(pid)?;
        let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
        let prot = prot & !grows;
        if grows == (PROT_GROWSDOWN | PROT_GROWSUP) {
            return Err(Errno::EINVAL);
        }
        if !start.is_aligned() {
            return Err(Errno::EINVAL);
        }
        if len == 0 {
            return Ok(());
        }
        let len = page_align_up(len).ok_or(Errno::ENOMEM)?;
        let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM) != 0 {
            return Err(Errno::EINVAL);
        }
        let first = self
            .proc_ref(pid)?
            .mm
            .find_vma_after(start)
            .copied()
            .ok_or(Errno::ENOMEM)?;
        if first.start > start {
            return Err(Errno::ENOMEM);
        }
        if grows & PROT_GROWSUP != 0
            || (grows & PROT_GROWSDOWN != 0 && first.flags & vm::GROWSDOWN == 0)
        {
            return Err(Errno::EINVAL);
        }
        let newprot = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
        let mut cur = start;
        while cur < end {
            let Some(v) = self.proc_ref(pid)?.mm.find_vma(cur).copied() else {
                return Err(Errno::ENOMEM);
            };
            if newprot & PROT_WRITE != 0 && v.flags & vm::MAYWRITE == 0
                || newprot & PROT_READ != 0 && v.flags & vm::MAYREAD == 0
                || newprot & PROT_EXEC != 0 && v.flags & vm::MAYEXEC == 0
            {
                return Err(Errno::EACCES);
            }
            let piece_end = v.end.min(end);
            if v.prot != newprot {
                crate::mm::hugetlb::hugetlb_may_split(&v, cur)?;
                crate::mm::hugetlb::hugetlb_may_split(&v, piece_end)?;
            }
            self.mprotect_fixup(pid, cur, piece_end, newprot);
            cur = piece_end;
        }
        Ok(())
    }

    /// Applies `prot` to `[start, end)`, which lies in one VMA (Linux `mprotect_fixup`).
    pub(crate) fn mprotect_fixup(&mut self, pid: Pid, start: VirtAddr, end: VirtAddr, prot: i32) {
        let Ok(p) = self.proc_mut(pid) else { return };
        if p.mm.find_vma(start).is_some_and(|v| v.prot == prot) {
            return;
        }
        p.mm.split_at(start);
        p.mm.split_at(end);
        let v = p.mm.vmas.get_mut(&start.0).expect("split made this VMA");
        // Commit accounting: private memory that becomes writable is charged (and keeps
        // VM_ACCOUNT); anonymous memory that never had a page is uncharged again.
        if prot & PROT_WRITE != 0 {
            if v.prot & PROT_WRITE == 0
                && v.flags & (vm::ACCOUNT | vm::SHARED | vm::NORESERVE | vm::HUGETLB) == 0
            {
                v.flags |= vm::ACCOUNT;
            }
        } else if v.flags & vm::ACCOUNT != 0
            && v.is_anon()
            && v.anon_file.is_none()
            && v.anon_vma == 0
        {
            v.flags &= !vm::ACCOUNT;
        }
        v.prot = prot;
        let v: Vma = *v;
        let merged = p.mm.merge_around(start);
        self.change_protection(pid, &v);
        if self.events.enabled() {
            let desc = self.describe_vma(&merged);
            self.events.emit(|| Event::VmaMapped {
                pid,
                start: merged.start,
                end: merged.end,
                desc,
            });
        }
    }

    /// Rewrites the installed PTEs of `v`'s range to match its protection
    /// (Linux `change_protection`).
    fn change_protection(&mut self, pid: Pid, v: &Vma) {
        if v.is_hugetlb() {
            return self.hugetlb_change_protection(pid, v);
        }
        // Entries change page by page (Linux keeps a wholly covered huge page huge:
        // `change_huge_pmd`; here it is split).
        self.split_huge_pmds(pid, v.start, v.end, false);
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_ref(pid) else { return };
        let (root, asid) = (p.mm.root, p.mm.asid);
        let none = !v.readable();
        let writable = v.writable();
        let exec = v.executable();
        let mut touched = Vec::new();
        pgtable::for_each_pte(
            &mut self.phys,
            &geom,
            root,
            v.start,
            v.end,
            &mut |phys, va, slot, pte| {
                if !pte.has_frame() {
                    return;
                }
                let mut n = pte;
                if none {
                    n = n.without(Pte::PRESENT).with(Pte::PROTNONE);
                } else {
                    n = n.without(Pte::PROTNONE).with(Pte::PRESENT);
                }
                if !writable {
                    n = n.without(Pte::WRITABLE);
                }
                n = if exec {
                    n.without(Pte::NX)
                } else {
                    n.with(Pte::NX)
                };
                if n != pte {
                    geom.write_pte(phys, slot, n);
                    touched.push(va);
                }
            },
        );
        for va in touched {
            self.tlb.flush_page(asid, va.vpn());
        }
    }
}
