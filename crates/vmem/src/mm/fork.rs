//! `fork` (Linux `kernel/fork.c: dup_mm`, `mm/memory.c: copy_page_range`).
//!
//! Owns duplicating an address space. The child gets a copy of every VMA (except
//! MADV_DONTFORK ones; MADV_WIPEONFORK ones come back empty) and of the descriptor table.
//! Page-table entries are copied only for areas that hold anonymous pages (Linux skips the
//! others: the child refaults them from the page cache). In a private area both copies of
//! an anonymous page are write-protected and share the frame, whose reference count goes
//! up: the first write on either side copies (`wp_page_copy`), and the last one left
//! reuses it (`wp_page_reuse`). Shared areas stay shared: a store in one process is seen by
//! the other at once.

use crate::errno::{Errno, SysResult};
use crate::hw::phys::FrameFlags;
use crate::hw::pte::Pte;
use crate::kernel::Kernel;
use crate::mm::pgtable;
use crate::mm::vma::{vm, Vma};
use crate::process::Pid;
use std::collections::HashMap;

impl Kernel {
    /// `fork()`: returns the child's pid.
    pub fn fork(&mut self, pid: Pid) -> SysResult<Pid> {
        let r = if self.segmented() {
            Err(Errno::ENOSYS)
        } else {
            self.do_fork(pid)
        };
        self.trace_syscall(pid, || "fork()".to_string(), &r.map(|p| p.0));
        r
    }

    fn do_fork(&mut self, parent: Pid) -> SysResult<Pid> {
        let (vmas, fds, mmap_base) = {
            let p = self.proc_ref(parent)?;
            (
                p.mm.vmas.values().copied().collect::<Vec<Vma>>(),
                p.fds.clone(),
                p.mm.mmap_base,
            )
        };
        let child = self.spawn()?;
        for f in fds.iter().flatten() {
            if let Some(of) = self.files[f.0 as usize].as_mut() {
                of.refs += 1;
            }
        }
        let geom = self.cfg.geometry;
        let (proot, pasid) = {
            let p = self.proc_ref(parent)?;
            (p.mm.root, p.mm.asid)
        };
        // Each parent anon_vma gets one child anon_vma (anon_vma_fork), so areas that
        // shared one in the parent can still merge in the child.
        let mut anon_map: HashMap<u64, u64> = HashMap::new();
        {
            let c = self.proc_mut(child)?;
            c.fds = fds;
            c.mm.mmap_base = mmap_base;
        }
        for v in vmas {
            if v.flags & vm::DONTCOPY != 0 {
                continue;
            }
            let mut cv = v;
            let wipe = v.flags & vm::WIPEONFORK != 0;
            if wipe || v.anon_vma == 0 {
                cv.anon_vma = 0;
            } else {
                let fresh = self.next_file_serial();
                cv.anon_vma = *anon_map.entry(v.anon_vma).or_insert(fresh);
            }
            self.proc_mut(child)?.mm.vmas.insert(cv.start.0, cv);
            if v.is_hugetlb() {
                if let Err(e) = self.copy_hugetlb_page_range(parent, child, &v) {
                    self.exit(child)?;
                    return Err(e);
                }
                continue;
            }
            if wipe || v.anon_vma == 0 {
                continue;
            }
            // copy_page_range. (Linux shares a huge page with the child write-protected,
            // `copy_huge_pmd`; here the parent's huge pages are split and their pages
            // shared one by one.)
            self.split_huge_pmds(parent, v.start, v.end, false);
            let cow = v.flags & (vm::SHARED | vm::MAYWRITE) == vm::MAYWRITE;
            let mut entries: Vec<(crate::addr::VirtAddr, Pte)> = Vec::new();
            pgtable::for_each_pte(
                &mut self.phys,
                &geom,
                proot,
                v.start,
                v.end,
                &mut |phys, va, slot, pte| {
                    if !pte.has_frame() && !pte.is_swap() {
                        return;
                    }
                    let mut pte = pte;
                    if cow && pte.writable() {
                        pte = pte.without(Pte::WRITABLE);
                        geom.write_pte(phys, slot, pte);
                    }
                    entries.push((va, pte));
                },
            );
            for (va, pte) in entries {
                if pte.is_swap() {
                    // swap_duplicate: the child's entry shares the slot.
                    if self.set_pte(child, va, pte).is_err() {
                        self.exit(child)?;
                        return Err(Errno::ENOMEM);
                    }
                    if let Some(s) = self.swap.as_mut() {
                        s.dup(pte.swap_slot());
                    }
                    continue;
                }
                self.tlb.flush_page(pasid, va.vpn());
                let pfn = pte.pfn();
                if self.set_pte(child, va, pte).is_err() {
                    self.exit(child)?;
                    return Err(Errno::ENOMEM);
                }
                self.get_page(pfn);
                let flags = self.phys.meta(pfn).flags;
                let c = self.proc_mut(child)?;
                if flags.has(FrameFlags::ANON) {
                    c.mm.rss_anon += 1;
                } else if flags.has(FrameFlags::PAGE_CACHE) {
                    c.mm.rss_file += 1;
                }
            }
        }
        Ok(child)
    }
}
