//! Transparent huge pages (Linux `mm/huge_memory.c`).
//!
//! Owns the 2 MiB pages of anonymous memory: when an area may have them
//! ([`crate::config::ThpMode`], `MADV_HUGEPAGE`, an aligned 2 MiB block inside the area), the
//! first fault in a block whose page table does not exist yet maps the whole block with
//! one PMD entry (the PS bit): a write gets 512 fresh contiguous frames
//! (`do_huge_pmd_anonymous_page`), a read the shared huge zero page, which a later write
//! replaces (`do_huge_zero_wp_pmd`). Every huge PMD keeps a page-table frame in reserve
//! ([`crate::mm::Mm::thp`], Linux's deposited page table), so that splitting it into 512
//! PTEs (`split_huge_pmd`) never needs memory. The rest of the memory manager works on
//! PTEs: whatever changes part of a huge page (munmap, mprotect, mremap, fork, reclaim)
//! splits it first, as Linux does for partial changes; `zap_huge_pmd` frees a whole one
//! without splitting. The hardware walker stops at a huge PMD and the TLB caches the
//! 4 KiB page used (`hw/walk.rs`, `hw/mmu.rs`). The sizes here are those of 4 KiB pages; a
//! kernel built with 16 or 64 KiB pages has arm64's 32 or 512 MiB PMD blocks instead
//! ([`HPAGE_SIZE`]).

use crate::addr::{Pfn, PhysAddr, VirtAddr, PAGE_SHIFT};
use crate::config::ThpMode;
use crate::events::{Event, FaultKind};
use crate::hw::mmu::Access;
use crate::hw::phys::FrameFlags;
use crate::hw::pte::Pte;
use crate::kernel::Kernel;
use crate::mm::fault::pte_flags;
use crate::mm::pgtable;
use crate::mm::vma::{vm, Backing, Vma};
use crate::process::Pid;
use crate::signal::Signal;

/// log2 of a huge page's size: what one PMD entry spans when a table is one page of 8-byte
/// entries (Linux `HPAGE_PMD_SHIFT`): 21 (2 MiB) with 4 KiB pages, 25 (32 MiB) with 16 KiB
/// and 29 (512 MiB) with 64 KiB, as on arm64.
pub const HPAGE_SHIFT: u32 = 2 * PAGE_SHIFT - 3;
/// Bytes of a huge page.
pub const HPAGE_SIZE: u64 = 1 << HPAGE_SHIFT;
/// Pages in a huge page (Linux `HPAGE_PMD_NR`: 512 with 4 KiB pages).
pub const HPAGE_PAGES: u64 = HPAGE_SIZE >> PAGE_SHIFT;

/// How a huge PMD's entry is labelled when printed.
pub(crate) const HUGE_PAGE_AT: &str = match HPAGE_SHIFT {
    25 => "32 MiB page at ",
    29 => "512 MiB page at ",
    _ => "2 MiB page at ",
};

/// The huge page size in words: `2 MiB` (or `32 MiB`, `512 MiB` with 16 or 64 KiB pages).
pub fn huge_page_size_name() -> String {
    format!("{} MiB", HPAGE_SIZE >> 20)
}

impl Kernel {
    /// Whether this machine's page tables can map a huge page with a PMD entry (the x86-64
    /// PS bit, an arm64 block).
    pub(crate) fn huge_pmd_supported(&self) -> bool {
        let g = &self.cfg.geometry;
        g.format.has_huge_pmd() && g.levels >= 2 && g.span(1) == HPAGE_SIZE
    }

    /// Whether the THP mode and the area's advice let `vma` have huge pages (the cheap
    /// part of [`Kernel::thp_vma_suitable`], checked on every fault).
    #[inline]
    pub(crate) fn thp_wanted(&self, vma: &Vma) -> bool {
        match self.cfg.thp {
            ThpMode::Never => false,
            ThpMode::Madvise => vma.flags & vm::HUGEPAGE != 0,
            ThpMode::Always => vma.flags & vm::NOHUGEPAGE == 0,
        }
    }

    /// Whether the huge page at `haddr` may be given to `vma` (Linux
    /// `thp_vma_allowable_order` for anonymous memory): private anonymous memory, allowed
    /// by the THP mode and the area's advice, the whole block inside the area.
    fn thp_vma_suitable(&self, vma: &Vma, haddr: u64) -> bool {
        self.thp_wanted(vma)
            && vma.flags & vm::NOHUGEPAGE == 0
            && vma.backing == Backing::Anon
            && vma.flags & (vm::SHARED | vm::MAYSHARE) == 0
            && haddr >= vma.start.0
            && haddr + HPAGE_SIZE <= vma.end.0
            && self.huge_pmd_supported()
    }

    /// The fault path's huge-page step, before the 4 KiB one: `Some` when a huge page
    /// resolved the fault; `None` to go on with 4 KiB pages (a huge page mapping `va`
    /// that the fault needs in pages is split first).
    pub(crate) fn do_huge_pmd_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        vma: &Vma,
    ) -> Result<Option<(FaultKind, bool)>, Signal> {
        let haddr = va.0 & !(HPAGE_SIZE - 1);
        let Ok(p) = self.proc_ref(pid) else {
            return Ok(None);
        };
        if p.mm.thp.contains_key(&haddr) {
            // The hardware faulted on a present huge PMD: a write to the huge zero page, a
            // stale TLB entry, or something only 4 KiB pages can do.
            let pmd = self.read_pmd(pid, haddr);
            if access == Access::Write && Some(pmd.pfn()) == self.huge_zero && vma.writable() {
                if let Some(r) = self.do_huge_zero_wp_pmd(pid, haddr, vma)? {
                    return Ok(Some(r));
                }
            } else if access != Access::Write || pmd.writable() {
                let asid = p.mm.asid;
                self.tlb.flush_page(asid, va.vpn());
                return Ok(Some((FaultKind::Spurious, false)));
            }
            self.split_huge_pmd(pid, VirtAddr(haddr));
            return Ok(None);
        }
        if !self.thp_vma_suitable(vma, haddr) {
            return Ok(None);
        }
        let (root, geom) = (p.mm.root, self.cfg.geometry);
        // A page table below this PMD already: the block is mapped in pages.
        if let Some(slot) = pgtable::pmd_slot(&self.phys, &geom, root, VirtAddr(haddr)) {
            if geom.read_table(&self.phys, slot) != Pte::NONE {
                return Ok(None);
            }
        }
        if access != Access::Write {
            return Ok(self
                .map_huge_zero_page(pid, haddr, vma)
                .then_some((FaultKind::HugeZeroPage, false)));
        }
        Ok(self
            .do_huge_pmd_anonymous_page(pid, haddr, vma)
            .then_some((FaultKind::HugeAnonPage, false)))
    }

    /// The PMD entry of `haddr` in `pid`'s tables.
    fn read_pmd(&self, pid: Pid, haddr: u64) -> Pte {
        let Ok(p) = self.proc_ref(pid) else {
            return Pte::NONE;
        };
        pgtable::pmd_slot(&self.phys, &self.cfg.geometry, p.mm.root, VirtAddr(haddr))
            .map_or(Pte::NONE, |s| self.cfg.geometry.read_table(&self.phys, s))
    }

    /// 512 zeroed frames on a huge-page boundary for `vma`'s block at `haddr`, set up as
    /// anonymous pages of the area (so that they are ordinary pages once split).
    fn alloc_huge_frames(&mut self, pid: Pid, haddr: u64, vma: &Vma) -> Option<Pfn> {
        let head = self.phys.alloc_contiguous_aligned(
            HPAGE_PAGES,
            HPAGE_PAGES,
            FrameFlags::ANON | FrameFlags::THP,
        )?;
        let mm_id = self.proc_ref(pid).map(|p| p.mm.id).unwrap_or(0);
        for i in 0..HPAGE_PAGES {
            let pfn = Pfn(head.0 + i);
            self.phys.frame_bytes_mut(pfn).fill(0);
            let m = self.phys.meta_mut(pfn);
            m.refcount = 1;
            m.owner = mm_id;
            m.index = vma.pgoff_of(VirtAddr(haddr + (i << PAGE_SHIFT))).0;
            self.lru_add(pfn);
        }
        self.events.emit(|| Event::FrameAlloc {
            pfn: head,
            purpose: "transparent huge page (512 frames)",
        });
        Some(head)
    }

    /// Writes `pmd` for the block at `haddr` with `deposit` as its reserve table.
    /// False (nothing changed) when a table above it cannot be allocated.
    fn set_huge_pmd(&mut self, pid: Pid, haddr: u64, pmd: Pte, deposit: Pfn) -> bool {
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_ref(pid) else {
            return false;
        };
        let root = p.mm.root;
        let Ok((slot, new_tables)) =
            pgtable::pmd_slot_alloc(&mut self.phys, &geom, root, VirtAddr(haddr))
        else {
            return false;
        };
        geom.write_table(&mut self.phys, slot, pmd);
        let Ok(p) = self.proc_mut(pid) else {
            return false;
        };
        p.mm.pt_frames += new_tables + 1;
        p.mm.thp.insert(haddr, deposit);
        self.huge_pmds += 1;
        let raw = self.cfg.geometry.raw_table(pmd);
        self.events.emit(|| Event::PmdInstall {
            pid,
            va: VirtAddr(haddr),
            pmd,
            raw,
        });
        true
    }

    /// A page-table frame to deposit with a huge PMD.
    fn alloc_deposit(&mut self) -> Option<Pfn> {
        let t = self.alloc_frame_zeroed(FrameFlags::PAGE_TABLE)?;
        self.phys.meta_mut(t).refcount = 1;
        Some(t)
    }

    /// Linux `do_huge_pmd_anonymous_page` for a write: 512 fresh zeroed frames mapped
    /// writable by the PMD. False (nothing done) when no aligned run of free frames is
    /// left: the fault falls back to 4 KiB pages.
    fn do_huge_pmd_anonymous_page(&mut self, pid: Pid, haddr: u64, vma: &Vma) -> bool {
        self.anon_vma_prepare(pid, VirtAddr(haddr), vma);
        let Some(deposit) = self.alloc_deposit() else {
            return false;
        };
        let Some(head) = self.alloc_huge_frames(pid, haddr, vma) else {
            self.phys.free(deposit);
            return false;
        };
        let pmd = Pte::new(head, pte_flags(vma, true) | Pte::HUGE);
        if !self.set_huge_pmd(pid, haddr, pmd, deposit) {
            for i in 0..HPAGE_PAGES {
                self.put_page(Pfn(head.0 + i));
            }
            self.phys.free(deposit);
            return false;
        }
        if let Ok(p) = self.proc_mut(pid) {
            p.mm.rss_anon += HPAGE_PAGES;
            p.stats.thp_fault_alloc += 1;
        }
        true
    }

    /// The huge zero page mapped read-only at `haddr` (Linux maps it for a read fault in a
    /// huge-page area, so that reading a large zeroed area costs neither memory nor
    /// 512 faults). False when it cannot be made.
    fn map_huge_zero_page(&mut self, pid: Pid, haddr: u64, vma: &Vma) -> bool {
        if self.huge_zero.is_none() {
            let Some(head) =
                self.phys
                    .alloc_contiguous_aligned(HPAGE_PAGES, HPAGE_PAGES, FrameFlags::ZERO)
            else {
                return false;
            };
            for i in 0..HPAGE_PAGES {
                self.phys.frame_bytes_mut(Pfn(head.0 + i)).fill(0);
            }
            self.events.emit(|| Event::FrameAlloc {
                pfn: head,
                purpose: "huge zero page (512 frames)",
            });
            self.huge_zero = Some(head);
        }
        let Some(zero) = self.huge_zero else {
            return false;
        };
        let Some(deposit) = self.alloc_deposit() else {
            return false;
        };
        let pmd = Pte::new(zero, pte_flags(vma, false) | Pte::HUGE);
        if !self.set_huge_pmd(pid, haddr, pmd, deposit) {
            self.phys.free(deposit);
            return false;
        }
        true
    }

    /// Linux `do_huge_zero_wp_pmd`: a write to the huge zero page gets a fresh huge page in
    /// its place. `None` when none can be had (the caller splits and goes on in pages).
    fn do_huge_zero_wp_pmd(
        &mut self,
        pid: Pid,
        haddr: u64,
        vma: &Vma,
    ) -> Result<Option<(FaultKind, bool)>, Signal> {
        self.anon_vma_prepare(pid, VirtAddr(haddr), vma);
        let Some(head) = self.alloc_huge_frames(pid, haddr, vma) else {
            return Ok(None);
        };
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_mut(pid) else {
            return Ok(None);
        };
        let (root, asid) = (p.mm.root, p.mm.asid);
        p.mm.rss_anon += HPAGE_PAGES;
        p.stats.thp_fault_alloc += 1;
        let slot = pgtable::pmd_slot(&self.phys, &geom, root, VirtAddr(haddr))
            .expect("a huge PMD is mapped here");
        let pmd = Pte::new(head, pte_flags(vma, true) | Pte::HUGE);
        geom.write_table(&mut self.phys, slot, pmd);
        self.flush_huge_range(asid, haddr);
        let raw = self.cfg.geometry.raw_table(pmd);
        self.events.emit(|| Event::PmdInstall {
            pid,
            va: VirtAddr(haddr),
            pmd,
            raw,
        });
        Ok(Some((FaultKind::HugeWpZero, false)))
    }

    /// Forgets every cached translation of the huge page at `haddr`.
    pub(crate) fn flush_huge_range(&mut self, asid: crate::hw::tlb::Asid, haddr: u64) {
        for i in 0..HPAGE_PAGES {
            self.tlb
                .flush_page(asid, VirtAddr(haddr + (i << PAGE_SHIFT)).vpn());
        }
    }

    /// Linux `split_huge_pmd`: the huge page at `haddr` (if one is mapped there) becomes
    /// 512 PTEs in its deposited table, with the PMD's permissions and Accessed/Dirty
    /// bits; its frames become ordinary anonymous pages (the huge zero page: the 4 KiB
    /// zero page, 512 times). The contents and every translation stay as they were.
    pub(crate) fn split_huge_pmd(&mut self, pid: Pid, haddr: VirtAddr) {
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_mut(pid) else { return };
        let Some(table) = p.mm.thp.remove(&haddr.0) else {
            return;
        };
        let (root, asid) = (p.mm.root, p.mm.asid);
        p.stats.thp_split_pmd += 1;
        self.huge_pmds -= 1;
        let slot =
            pgtable::pmd_slot(&self.phys, &geom, root, haddr).expect("a huge PMD is mapped here");
        let pmd = geom.read_table(&self.phys, slot);
        debug_assert!(pmd.huge(), "split_huge_pmd of {pmd}");
        let zero = Some(pmd.pfn()) == self.huge_zero;
        let flags = pmd.0 & !Pte::ADDR_MASK & !Pte::HUGE;
        for i in 0..HPAGE_PAGES {
            let pfn = if zero {
                self.zero_pfn
            } else {
                let pfn = Pfn(pmd.pfn().0 + i);
                self.phys.meta_mut(pfn).flags.0 &= !FrameFlags::THP;
                pfn
            };
            geom.write_pte(
                &mut self.phys,
                geom.entry_addr(table, i),
                Pte::new(pfn, flags),
            );
        }
        geom.write_table(&mut self.phys, slot, Pte::new(table, pgtable::TABLE_FLAGS));
        self.flush_huge_range(asid, haddr.0);
        self.events.emit(|| Event::HugePageSplit { pid, va: haddr });
    }

    /// Linux `vma_adjust_trans_huge`: an area is about to be split at `at`; a huge page
    /// that `at` cuts in two is split first, so that a huge PMD never maps memory of two
    /// areas (a later write to the huge zero page would give one area a huge page over
    /// the other's memory, outside its page offsets and its anon_vma).
    pub(crate) fn split_huge_pmd_at(&mut self, pid: Pid, at: VirtAddr) {
        if at.0 % HPAGE_SIZE == 0 {
            return;
        }
        let haddr = at.0 & !(HPAGE_SIZE - 1);
        if self
            .proc_ref(pid)
            .is_ok_and(|p| p.mm.thp.contains_key(&haddr))
        {
            self.split_huge_pmd(pid, VirtAddr(haddr));
        }
    }

    /// Splits every huge page that `[start, end)` covers only in part, and unmaps (Linux
    /// `zap_huge_pmd`) those it covers whole when `zap_whole`; leaves the others.
    pub(crate) fn split_huge_pmds(
        &mut self,
        pid: Pid,
        start: VirtAddr,
        end: VirtAddr,
        zap_whole: bool,
    ) {
        let Ok(p) = self.proc_ref(pid) else { return };
        if p.mm.thp.is_empty() {
            return;
        }
        let from = start.0 & !(HPAGE_SIZE - 1);
        let blocks: Vec<u64> = p.mm.thp.range(from..end.0).map(|(&k, _)| k).collect();
        for haddr in blocks {
            if zap_whole && haddr >= start.0 && haddr + HPAGE_SIZE <= end.0 {
                self.zap_huge_pmd(pid, haddr);
            } else {
                self.split_huge_pmd(pid, VirtAddr(haddr));
            }
        }
    }

    /// Linux `zap_huge_pmd`: unmaps a whole huge page: its frames are released (freed at
    /// their last reference), its deposited table freed, the PMD cleared.
    fn zap_huge_pmd(&mut self, pid: Pid, haddr: u64) {
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_mut(pid) else { return };
        let Some(table) = p.mm.thp.remove(&haddr) else {
            return;
        };
        let (root, asid) = (p.mm.root, p.mm.asid);
        self.huge_pmds -= 1;
        let slot = pgtable::pmd_slot(&self.phys, &geom, root, VirtAddr(haddr))
            .expect("a huge PMD is mapped here");
        let pmd = geom.read_table(&self.phys, slot);
        geom.write_table(&mut self.phys, slot, Pte::NONE);
        self.flush_huge_range(asid, haddr);
        self.phys.free(table);
        let zero = Some(pmd.pfn()) == self.huge_zero;
        if let Ok(p) = self.proc_mut(pid) {
            p.mm.pt_frames -= 1;
            if !zero {
                p.mm.rss_anon -= HPAGE_PAGES;
            }
        }
        if !zero {
            for i in 0..HPAGE_PAGES {
                self.put_page(Pfn(pmd.pfn().0 + i));
            }
        }
    }

    /// Reclaim is about to evict `pfn`, a frame of a huge page still mapped by a PMD:
    /// splits that mapping, so that the page can be unmapped alone (Linux splits a huge
    /// page before swapping it out).
    pub(crate) fn split_huge_page_of(&mut self, pfn: Pfn) {
        if let Some((pid, haddr, _, _)) = self.huge_pmd_mapping(pfn) {
            self.split_huge_pmd(pid, VirtAddr(haddr));
        }
    }

    /// The huge PMD that maps `pfn` when it is a frame of a huge page still mapped by one
    /// (found through its owner's private areas, as `rmap` finds 4 KiB pages): the
    /// process, the block's address, the PMD's slot and the PMD.
    fn huge_pmd_mapping(&self, pfn: Pfn) -> Option<(Pid, u64, PhysAddr, Pte)> {
        let m = *self.phys.meta(pfn);
        if !m.flags.has(FrameFlags::THP) {
            return None;
        }
        let geom = &self.cfg.geometry;
        for (pi, p) in self.procs.iter().enumerate() {
            let Some(p) = p else { continue };
            if p.mm.id != m.owner {
                continue;
            }
            for v in p.mm.vmas.values() {
                if v.anon_vma == 0 || v.flags & vm::SHARED != 0 {
                    continue;
                }
                let Some(va) = v.addr_of(crate::addr::PgOff(m.index)) else {
                    continue;
                };
                let haddr = va.0 & !(HPAGE_SIZE - 1);
                if !p.mm.thp.contains_key(&haddr) {
                    continue;
                }
                let Some(slot) = pgtable::pmd_slot(&self.phys, geom, p.mm.root, VirtAddr(haddr))
                else {
                    continue;
                };
                let pmd = geom.read_table(&self.phys, slot);
                // Another area may use the same page offsets: the PMD must map this frame.
                if pmd.huge() && (pmd.pfn().0..pmd.pfn().0 + HPAGE_PAGES).contains(&pfn.0) {
                    return Some((Pid(pi as u32), haddr, slot, pmd));
                }
            }
        }
        None
    }

    /// Linux `folio_referenced` of a huge page mapped by a PMD: whether the PMD's
    /// Accessed bit was set since the last look (it is cleared, and the TLB forgets the
    /// huge page's translations so that the next use sets it again). Linux ages a huge
    /// page as one folio; here each of its 512 frames is on the LRU, so a used huge page
    /// marks its other frames referenced too: each keeps the second chance the page
    /// earned, instead of the next one looked at being split off and swapped.
    pub(crate) fn huge_pmd_referenced(&mut self, pfn: Pfn) -> bool {
        let Some((pid, haddr, slot, pmd)) = self.huge_pmd_mapping(pfn) else {
            return false;
        };
        if !pmd.accessed() {
            return false;
        }
        let geom = self.cfg.geometry;
        geom.write_table(&mut self.phys, slot, pmd.without(Pte::ACCESSED));
        if let Ok(p) = self.proc_ref(pid) {
            let asid = p.mm.asid;
            self.flush_huge_range(asid, haddr);
        }
        for i in 0..HPAGE_PAGES {
            let f = Pfn(pmd.pfn().0 + i);
            if f != pfn {
                self.phys.meta_mut(f).flags.0 |= FrameFlags::REFERENCED;
            }
        }
        true
    }
}
