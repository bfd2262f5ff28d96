//! The page-fault handler (Linux `mm/memory.c`).
//!
//! Owns [`Kernel::handle_mm_fault`] and the paths it dispatches to, named after their
//! Linux twins: `do_anonymous_page` (zero page on read, fresh zeroed frame on write),
//! `do_read_fault` (page-cache page mapped read-only, plus `do_fault_around`),
//! `do_cow_fault` (private write: copy of the cache page), `do_shared_fault` (shared
//! write: the cache page itself, marked dirty) and `do_wp_page` (write to a present
//! read-only page: `wp_page_shared`, `wp_page_reuse` or `wp_page_copy`). A fault that
//! cannot be resolved becomes a [`Signal`]: SIGSEGV with MAPERR or ACCERR, SIGBUS past end
//! of file, or the OOM killer's SIGKILL when no frame is left.

use crate::addr::{Pfn, PhysAddr, VirtAddr, PAGE_SHIFT};
use crate::cache::PageError;
use crate::events::{Event, FaultKind};
use crate::fs::InodeId;
use crate::hw::mmu::{Access, HwFault};
use crate::hw::phys::FrameFlags;
use crate::hw::pte::Pte;
use crate::kernel::Kernel;
use crate::mm::vma::{Backing, Vma};
use crate::process::Pid;
use crate::signal::{BusCode, SegvCode, Signal};

/// The PTE flag bits for a page of `vma`, writable or not.
pub(crate) fn pte_flags(vma: &Vma, writable: bool) -> u64 {
    let mut f = Pte::PRESENT | Pte::USER | Pte::ACCESSED;
    if writable {
        f |= Pte::WRITABLE | Pte::DIRTY;
    }
    if !vma.executable() {
        f |= Pte::NX;
    }
    f
}

fn page_error(va: VirtAddr, e: PageError) -> Signal {
    match e {
        PageError::BeyondEof => Signal::Bus {
            addr: va,
            code: BusCode::AdrErr,
        },
        PageError::Io => Signal::Bus {
            addr: va,
            code: BusCode::ObjErr,
        },
        PageError::NoMemory => Signal::OomKill { addr: va },
    }
}

impl Kernel {
    /// Resolves a fault the MMU reported for `access` at `va`, or returns the signal.
    /// `slot`: the physical address of `va`'s leaf entry if the MMU's walk just found it
    /// (saves walking again to find it).
    pub(crate) fn handle_mm_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        hw: HwFault,
        slot: Option<PhysAddr>,
    ) -> Result<(), Signal> {
        self.events.emit(|| Event::FaultBegin {
            pid,
            va,
            access,
            present: hw == HwFault::Protection,
        });
        match self.do_fault(pid, va, access, slot) {
            Ok((kind, major)) => {
                if let Ok(p) = self.proc_mut(pid) {
                    if major {
                        p.stats.major_faults += 1;
                    } else {
                        p.stats.minor_faults += 1;
                    }
                    if matches!(
                        kind,
                        FaultKind::CowFault | FaultKind::WpCopy | FaultKind::HugetlbWpCopy
                    ) {
                        p.stats.cow_faults += 1;
                    }
                    if matches!(
                        kind,
                        FaultKind::WpCopy
                            | FaultKind::WpReuse
                            | FaultKind::WpShared
                            | FaultKind::HugeWpZero
                            | FaultKind::HugetlbWpCopy
                            | FaultKind::HugetlbWpReuse
                    ) {
                        p.stats.wp_faults += 1;
                    }
                }
                self.events.emit(|| Event::Fault {
                    pid,
                    va,
                    kind,
                    major,
                });
                if matches!(kind, FaultKind::SharedFault | FaultKind::WpShared) {
                    self.balance_dirty_pages();
                }
                Ok(())
            }
            Err(sig) => {
                // si_addr is the faulting address itself, not its page.
                let sig = match sig {
                    Signal::Bus { code, .. } => Signal::Bus { addr: va, code },
                    Signal::OomKill { .. } => {
                        if let Ok(p) = self.proc_mut(pid) {
                            p.stats.oom_kills += 1;
                        }
                        Signal::OomKill { addr: va }
                    }
                    s => s,
                };
                Err(self.deliver(pid, sig))
            }
        }
    }

    fn do_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        mut slot: Option<PhysAddr>,
    ) -> Result<(FaultKind, bool), Signal> {
        let vma = self
            .proc_ref(pid)
            .ok()
            .and_then(|p| p.mm.find_vma_cached(va))
            .or_else(|| self.expand_stack(pid, va))
            .ok_or(Signal::Segv {
                addr: va,
                code: SegvCode::MapErr,
            })?;
        let allowed = match access {
            Access::Read => vma.readable(),
            Access::Write => vma.writable(),
            Access::Exec => vma.executable(),
        };
        if !allowed {
            return Err(Signal::Segv {
                addr: va,
                code: SegvCode::AccErr,
            });
        }
        if vma.is_hugetlb() {
            return self.hugetlb_fault(pid, va, access, &vma);
        }
        if self.huge_pmds != 0 || self.thp_wanted(&vma) {
            // The huge step may change the tables above the leaf.
            slot = None;
            if let Some(r) = self.do_huge_pmd_fault(pid, va, access, &vma)? {
                return Ok(r);
            }
        }
        let page = va.page_down();
        // One walk finds the entry (the MMU's, when it reached the leaf table); a fault
        // that maps a page writes it there.
        debug_assert!(slot.is_none() || slot == self.pte_slot_of(pid, page));
        let slot = slot.or_else(|| self.pte_slot_of(pid, page));
        let geom = self.cfg.geometry;
        let pte = slot.map_or(Pte::NONE, |s| geom.read_pte(&self.phys, s));
        if pte.is_swap() {
            return self.do_swap_page(pid, page, access, &vma, pte);
        }
        if !pte.has_frame() {
            return self.do_pte_missing(pid, page, access, &vma, slot);
        }
        if pte.protnone() || (access == Access::Write && !pte.writable()) {
            if access == Access::Write {
                return self.do_wp_page(pid, page, &vma, pte);
            }
            // A PROT_NONE entry the VMA now allows: make it present again.
            let restored = Pte::new(pte.pfn(), pte_flags(&vma, false) | (pte.0 & Pte::WRITABLE));
            self.set_pte(pid, page, restored)
                .map_err(|_| Signal::OomKill { addr: va })?;
            return Ok((FaultKind::Spurious, false));
        }
        self.flush_tlb_page(pid, page);
        Ok((FaultKind::Spurious, false))
    }

    /// Linux `expand_stack`: an access just below a grows-down area extends it, within
    /// the stack limit and keeping the guard gap to the area below.
    fn expand_stack(&mut self, pid: Pid, va: VirtAddr) -> Option<Vma> {
        use crate::exec::{STACK_GUARD_GAP, STACK_LIMIT};
        let p = self.proc_mut(pid).ok()?;
        let next = *p.mm.find_vma_after(va)?;
        if next.flags & crate::mm::vma::vm::GROWSDOWN == 0 || next.start <= va {
            return None;
        }
        let new_start = va.page_down();
        if next.end.0 - new_start.0 > STACK_LIMIT {
            return None;
        }
        if let Some((_, prev)) = p.mm.vmas.range(..next.start.0).next_back() {
            if prev.end.0.saturating_add(STACK_GUARD_GAP) > new_start.0 {
                return None;
            }
        }
        let mut grown = next;
        grown.pgoff =
            crate::addr::PgOff(next.pgoff.0 - ((next.start.0 - new_start.0) >> PAGE_SHIFT));
        grown.start = new_start;
        p.mm.vmas.remove(&next.start.0);
        p.mm.vmas.insert(new_start.0, grown);
        Some(grown)
    }

    /// A fault on an address with no entry; `slot` is where its entry lives if the tables
    /// that lead to it exist.
    fn do_pte_missing(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        vma: &Vma,
        slot: Option<PhysAddr>,
    ) -> Result<(FaultKind, bool), Signal> {
        match vma.backing {
            Backing::Anon => self.do_anonymous_page(pid, va, access, vma, slot),
            Backing::File(id) => {
                if let crate::fs::FileKind::Device(i) = self.inode(id).kind {
                    return self.do_device_fault(pid, va, vma, i, slot);
                }
                if access != Access::Write {
                    self.do_read_fault(pid, va, vma, id, slot)
                } else if !vma.is_shared() {
                    self.do_cow_fault(pid, va, vma, id, slot)
                } else {
                    self.do_shared_fault(pid, va, vma, id, slot)
                }
            }
        }
    }

    /// A fault in a device mapping: map the device's register page itself (Linux
    /// `vmf_insert_pfn`): no page cache, no reference count, no copy-on-write.
    fn do_device_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        vma: &Vma,
        dev: u16,
        slot: Option<PhysAddr>,
    ) -> Result<(FaultKind, bool), Signal> {
        let pa = self.phys.device_base(dev).0 + vma.pgoff_of(va).byte_offset();
        let flags = pte_flags(vma, vma.writable()) | Pte::SPECIAL;
        self.install_at(pid, va, slot, Pfn(pa >> PAGE_SHIFT), flags)?;
        Ok((FaultKind::DevicePage, false))
    }

    fn install(&mut self, pid: Pid, va: VirtAddr, pfn: Pfn, flags: u64) -> Result<(), Signal> {
        self.install_at(pid, va, None, pfn, flags).map(|_| ())
    }

    /// Installs the PTE for `va` at `slot` when the fault's walk found the entry, else
    /// through a walk that allocates the missing tables. Returns where the entry is.
    fn install_at(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        slot: Option<PhysAddr>,
        pfn: Pfn,
        flags: u64,
    ) -> Result<PhysAddr, Signal> {
        let pte = Pte::new(pfn, flags);
        match slot {
            Some(slot) => {
                self.set_pte_at(pid, va, slot, pte);
                Ok(slot)
            }
            None => self
                .set_pte(pid, va, pte)
                .map_err(|_| Signal::OomKill { addr: va }),
        }
    }

    /// A new anonymous frame for `va` in `vma` (its anon_vma prepared first, so that the
    /// reverse map can find the page as soon as it is mapped).
    fn new_anon_frame(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        vma: &Vma,
        zero: bool,
    ) -> Result<Pfn, Signal> {
        self.anon_vma_prepare(pid, va, vma);
        let pfn = if zero {
            self.alloc_frame_zeroed(FrameFlags::ANON)
        } else {
            self.alloc_frame(FrameFlags::ANON)
        }
        .ok_or(Signal::OomKill { addr: va })?;
        let mm_id = self.proc_ref(pid).map(|p| p.mm.id).unwrap_or(0);
        let m = self.phys.meta_mut(pfn);
        m.refcount = 1;
        m.owner = mm_id;
        m.index = vma.pgoff_of(va).0;
        self.lru_add(pfn);
        self.events.emit(|| Event::FrameAlloc {
            pfn,
            purpose: if zero { "anonymous" } else { "cow copy" },
        });
        Ok(pfn)
    }

    /// Linux `do_anonymous_page`.
    fn do_anonymous_page(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        vma: &Vma,
        slot: Option<PhysAddr>,
    ) -> Result<(FaultKind, bool), Signal> {
        if access != Access::Write {
            let zero = self.zero_pfn;
            self.install_at(pid, va, slot, zero, pte_flags(vma, false))?;
            return Ok((FaultKind::AnonZeroPage, false));
        }
        let pfn = self.new_anon_frame(pid, va, vma, true)?;
        if let Err(s) = self.install_at(pid, va, slot, pfn, pte_flags(vma, true)) {
            self.put_page(pfn);
            return Err(s);
        }
        self.live_mm_rss(pid, 0, 1);
        Ok((FaultKind::AnonNewPage, false))
    }

    /// Gives the VMA at `va` an anon_vma if it has none (Linux `anon_vma_prepare`),
    /// reusing a compatible neighbour's as `find_mergeable_anon_vma` does. `vma` is the
    /// faulting VMA as the fault found it: when it has an anon_vma already, nothing is
    /// looked up.
    pub(crate) fn anon_vma_prepare(&mut self, pid: Pid, va: VirtAddr, vma: &Vma) {
        if vma.anon_vma != 0 {
            return;
        }
        let fresh = self.next_file_serial();
        let Ok(p) = self.proc_mut(pid) else { return };
        let Some(v) = p.mm.find_vma(va).copied() else {
            return;
        };
        if v.anon_vma != 0 {
            return;
        }
        let next = p.mm.vmas.get(&v.end.0).copied();
        let prev = p.mm.vmas.range(..v.start.0).next_back().map(|(_, x)| *x);
        let reuse = next
            .filter(|n| v.anon_vma_compatible(n) && n.anon_vma != 0)
            .map(|n| n.anon_vma)
            .or_else(|| {
                prev.filter(|pv| pv.anon_vma_compatible(&v) && pv.anon_vma != 0)
                    .map(|pv| pv.anon_vma)
            });
        if let Some(vm) = p.mm.vmas.get_mut(&v.start.0) {
            vm.anon_vma = reuse.unwrap_or(fresh);
        }
    }

    fn live_mm_rss(&mut self, pid: Pid, file: i64, anon: i64) {
        if let Ok(p) = self.proc_mut(pid) {
            p.mm.rss_file = (p.mm.rss_file as i64 + file) as u64;
            p.mm.rss_anon = (p.mm.rss_anon as i64 + anon) as u64;
        }
    }

    /// Linux `do_read_fault`: map the cache page read-only, and the cached pages around it.
    ///
    /// Linux calls `->map_pages()` first and `->fault()` only when that did not map the
    /// faulting page. With nobody watching, this does the same for a page that is cached,
    /// up to date and not marked for read-ahead: the window's pass maps it with the others.
    /// Any other page (and every page when watched, so that the events come in the order
    /// the explain mode narrates: the lookup, the fault's own entry, then the window) goes
    /// through `filemap_fault`, which reads it or starts the next read-ahead window; then
    /// the window is mapped. Either way the counts are the same.
    fn do_read_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        vma: &Vma,
        id: InodeId,
        slot: Option<PhysAddr>,
    ) -> Result<(FaultKind, bool), Signal> {
        let pgoff = vma.pgoff_of(va);
        let in_window =
            slot.filter(|&s| !self.events.enabled() && self.map_pages_can_map(id, pgoff, s));
        let (slot, major) = match in_window {
            Some(slot) => {
                // The lookup that finds it, as filemap_fault would have counted it.
                self.count_cache_lookup(Some(pid), id, pgoff, true);
                (slot, false)
            }
            None => {
                let (pfn, major) = self
                    .filemap_fault(pid, id, pgoff, vma)
                    .map_err(|e| page_error(va, e))?;
                self.get_page(pfn);
                let slot = match self.install_at(pid, va, slot, pfn, pte_flags(vma, false)) {
                    Ok(slot) => slot,
                    Err(s) => {
                        self.put_page(pfn);
                        return Err(s);
                    }
                };
                self.live_mm_rss(pid, 1, 0);
                (slot, major)
            }
        };
        self.do_fault_around(pid, va, vma, id, slot, in_window.is_some());
        Ok((FaultKind::ReadFault, major))
    }

    /// Pages in the fault-around window (Linux's fault_around_bytes: a power of two, at
    /// most one leaf table, so the aligned window always lies in the table the faulting
    /// page's entry uses); 1 or less: no fault-around.
    fn fault_around_window(&self) -> u64 {
        let want = self.cfg.fault_around_pages.min(self.cfg.geometry.entries());
        if want <= 1 {
            return want;
        }
        1 << want.ilog2()
    }

    /// Whether the window's pass ([`Kernel::do_fault_around`]) would map the faulting page
    /// `pgoff` itself, whose entry is at `slot`: fault-around is on, the entry is empty,
    /// and the page is inside the file, cached, up to date and not marked for read-ahead.
    fn map_pages_can_map(&self, id: InodeId, pgoff: crate::addr::PgOff, slot: PhysAddr) -> bool {
        if self.fault_around_window() <= 1 || pgoff.0 >= self.size_pages(id) {
            return false;
        }
        let Some(&pfn) = self.inode(id).pages.get(&pgoff.0) else {
            return false;
        };
        !self.phys.meta(pfn).flags.has(FrameFlags::READAHEAD)
            && self.cfg.geometry.read_pte(&self.phys, slot) == Pte::NONE
    }

    /// Linux `do_fault_around` / `filemap_map_pages`: map the already-cached pages of the
    /// aligned window around `va` ([`Kernel::fault_around_window`]) that have no PTE yet,
    /// read-only, without I/O;
    /// the faulting page too when `with_fault_page` (else the fault mapped it already; it
    /// is only ever true with nobody watching). `slot` is where the PTE of `va`
    /// (page-aligned) lives; the window's entries are its neighbours in the same leaf
    /// table. The faulting page counts in the process's pages but not as one mapped
    /// around it.
    fn do_fault_around(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        vma: &Vma,
        id: InodeId,
        slot: PhysAddr,
        with_fault_page: bool,
    ) {
        let n = self.fault_around_window();
        if n <= 1 {
            return;
        }
        let window = n << PAGE_SHIFT;
        let start = VirtAddr(va.0 & !(window - 1)).max(vma.start);
        let end = VirtAddr((va.0 & !(window - 1)) + window).min(vma.end);
        let geom = self.cfg.geometry;
        let base_slot = PhysAddr(slot.0 - ((va.0 - start.0) >> PAGE_SHIFT) * geom.entry_size());
        // One page-cache range scan; pages carrying the read-ahead mark are left for a
        // fault of their own, which starts the next window. The faulting page, when the
        // fault mapped it, is left too: its entry is no longer empty. Pages at or past the
        // end of the file stay unmapped.
        let first_pg = vma.pgoff_of(start).0;
        let size_pages = self.size_pages(id);
        if size_pages <= first_pg {
            return;
        }
        let last_pg = vma.pgoff_of(VirtAddr(end.0 - 1)).0.min(size_pages - 1);
        let flags = pte_flags(vma, false);
        let mut mapped = 0;
        let mut first = None;
        // The cache index, the frames and the event sink are separate fields: the scan
        // maps as it goes, with no list in between.
        let pages = &self.inodes[id.0 as usize].pages;
        let phys = &mut self.phys;
        let events = &mut self.events;
        if geom.format == crate::hw::pte_format::PteFormat::X86_64 && !events.enabled() {
            // Nobody watching, x86-64 entries (the kernel's own layout): the window's
            // entries and the frames' metadata, borrowed once for the window.
            let (slots, frames) =
                phys.bytes_and_meta_mut(base_slot, ((last_pg - first_pg + 1) * 8) as usize);
            pages.for_each_in(first_pg, last_pg, |pg, pfn| {
                let m = &mut frames[pfn.index()];
                if m.flags.has(FrameFlags::READAHEAD) {
                    return true;
                }
                let i = (pg - first_pg) as usize * 8;
                let Some(entry) = slots.get_mut(i..i + 8) else {
                    return false;
                };
                // A not-present entry is never in the TLB, so writing it needs no flush.
                if *entry != [0u8; 8] {
                    return true;
                }
                // get_page.
                if !m.flags.has(FrameFlags::ZERO) {
                    m.refcount += 1;
                }
                entry.copy_from_slice(&Pte::new(pfn, flags).0.to_le_bytes());
                mapped += 1;
                true
            });
        } else {
            Self::fault_around_decoded(
                phys,
                events,
                pages,
                &geom,
                pid,
                start,
                base_slot,
                first_pg,
                last_pg,
                flags,
                &mut first,
                &mut mapped,
            );
        }
        debug_assert!(
            !with_fault_page || geom.read_pte(&self.phys, slot) != Pte::NONE,
            "{va}: the window's pass did not map the faulting page"
        );
        if mapped == 0 {
            return;
        }
        self.live_mm_rss(pid, mapped as i64, 0);
        // Pages mapped around the faulting one.
        let mapped = mapped - u64::from(with_fault_page);
        if mapped == 0 {
            return;
        }
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.fault_around_pages += mapped;
        }
        let start = first.unwrap_or(start);
        self.events.emit(|| Event::FaultAround {
            pid,
            start,
            pages: mapped,
        });
    }

    /// The mapping loop of [`Kernel::do_fault_around`] for any entry format (read and
    /// written through the geometry), telling the observer of each entry it writes.
    #[allow(clippy::too_many_arguments)]
    fn fault_around_decoded(
        phys: &mut crate::hw::phys::PhysMem,
        events: &mut crate::events::Events,
        pages: &crate::cache::index::PageIndex,
        geom: &crate::config::PagingGeometry,
        pid: Pid,
        start: VirtAddr,
        base_slot: PhysAddr,
        first_pg: u64,
        last_pg: u64,
        flags: u64,
        first: &mut Option<VirtAddr>,
        mapped: &mut u64,
    ) {
        pages.for_each_in(first_pg, last_pg, |pg, pfn| {
            if phys.meta(pfn).flags.has(FrameFlags::READAHEAD) {
                return true;
            }
            // A not-present entry is never in the TLB, so writing it needs no flush.
            let slot = base_slot.add((pg - first_pg) * geom.entry_size());
            if geom.read_pte(phys, slot) != Pte::NONE {
                return true;
            }
            let a = start.add((pg - first_pg) << PAGE_SHIFT);
            // get_page.
            let m = phys.meta_mut(pfn);
            if !m.flags.has(FrameFlags::ZERO) {
                m.refcount += 1;
            }
            let pte = Pte::new(pfn, flags);
            geom.write_pte(phys, slot, pte);
            events.emit(|| Event::PteInstall {
                pid,
                va: a,
                pte,
                raw: geom.raw_pte(pte),
            });
            first.get_or_insert(a);
            *mapped += 1;
            true
        });
    }

    /// Linux `do_cow_fault`: a private write to a file page copies it into a new frame.
    fn do_cow_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        vma: &Vma,
        id: InodeId,
        slot: Option<PhysAddr>,
    ) -> Result<(FaultKind, bool), Signal> {
        let pgoff = vma.pgoff_of(va);
        let (src, major) = self
            .filemap_fault(pid, id, pgoff, vma)
            .map_err(|e| page_error(va, e))?;
        // Hold the source while a frame is found for the copy: reclaim skips busy pages.
        self.get_page(src);
        let new = self.new_anon_frame(pid, va, vma, false);
        if let Ok(new) = new {
            self.phys.copy_frame(src, new);
        }
        self.put_page(src);
        let new = new?;
        if let Err(s) = self.install_at(pid, va, slot, new, pte_flags(vma, true)) {
            self.put_page(new);
            return Err(s);
        }
        self.live_mm_rss(pid, 0, 1);
        self.events.emit(|| Event::CowCopy {
            pid,
            va,
            from: src,
            to: new,
        });
        Ok((FaultKind::CowFault, major))
    }

    /// Linux `do_shared_fault`: a shared write maps the cache page writable and dirties it.
    fn do_shared_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        vma: &Vma,
        id: InodeId,
        slot: Option<PhysAddr>,
    ) -> Result<(FaultKind, bool), Signal> {
        let pgoff = vma.pgoff_of(va);
        let (pfn, major) = self
            .filemap_fault(pid, id, pgoff, vma)
            .map_err(|e| page_error(va, e))?;
        self.get_page(pfn);
        if let Err(s) = self.install_at(pid, va, slot, pfn, pte_flags(vma, true)) {
            self.put_page(pfn);
            return Err(s);
        }
        self.set_page_dirty(pfn);
        self.live_mm_rss(pid, 1, 0);
        Ok((FaultKind::SharedFault, major))
    }

    /// Linux `do_swap_page`: the page was written to swap by reclaim; read it back into a
    /// new frame (a major fault). It is mapped writable only if no other process still
    /// shares the slot (after fork), else the next write copies it.
    fn do_swap_page(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        vma: &Vma,
        pte: Pte,
    ) -> Result<(FaultKind, bool), Signal> {
        let slot = pte.swap_slot();
        let new = self.new_anon_frame(pid, va, vma, false)?;
        let read = match self.swap.as_ref() {
            Some(s) => s.read(slot, self.phys.frame_bytes_mut(new)).is_ok(),
            None => false,
        };
        if !read {
            self.put_page(new);
            return Err(Signal::Bus {
                addr: va,
                code: BusCode::ObjErr,
            });
        }
        let exclusive = self.swap.as_ref().is_some_and(|s| s.refs(slot) == 1);
        let writable = vma.writable() && exclusive && access == Access::Write;
        let mut flags = pte_flags(vma, writable);
        if !vma.readable() {
            flags = (flags & !Pte::PRESENT) | Pte::PROTNONE;
        }
        if let Err(s) = self.install(pid, va, new, flags) {
            self.put_page(new);
            return Err(s);
        }
        if let Some(s) = self.swap.as_mut() {
            s.put(slot);
        }
        self.live_mm_rss(pid, 0, 1);
        self.kstats.disk_reads += 1;
        self.kstats.disk_read_pages += 1;
        self.kstats.disk_read_bytes += crate::addr::PAGE_SIZE;
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.swap_ins += 1;
            p.stats.refaults += 1;
        }
        self.events.emit(|| Event::SwapIn { pid, va, slot });
        Ok((FaultKind::SwapIn, true))
    }

    /// Linux `do_wp_page`: a write to a present, write-protected page of a writable VMA.
    fn do_wp_page(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        vma: &Vma,
        pte: Pte,
    ) -> Result<(FaultKind, bool), Signal> {
        let old = pte.pfn();
        if pte.special() {
            // A device page made read-only by mprotect and writable again.
            self.install(pid, va, old, pte_flags(vma, true) | Pte::SPECIAL)?;
            return Ok((FaultKind::WpShared, false));
        }
        let meta = *self.phys.meta(old);
        if vma.is_shared() {
            // wp_page_shared: dirty tracking of a shared file page.
            if meta.flags.has(FrameFlags::PAGE_CACHE) {
                self.set_page_dirty(old);
            }
            self.install(pid, va, old, pte_flags(vma, true))?;
            return Ok((FaultKind::WpShared, false));
        }
        if meta.flags.has(FrameFlags::ANON) && meta.refcount == 1 {
            // wp_page_reuse: the only reference; no copy needed.
            self.install(pid, va, old, pte_flags(vma, true))?;
            return Ok((FaultKind::WpReuse, false));
        }
        // wp_page_copy.
        let zero = old == self.zero_pfn;
        self.get_page(old);
        let new = self.new_anon_frame(pid, va, vma, zero);
        if let (Ok(new), false) = (&new, zero) {
            self.phys.copy_frame(old, *new);
        }
        self.put_page(old);
        let new = new?;
        if let Err(s) = self.install(pid, va, new, pte_flags(vma, true)) {
            self.put_page(new);
            return Err(s);
        }
        if meta.flags.has(FrameFlags::PAGE_CACHE) {
            self.live_mm_rss(pid, -1, 1);
        } else if zero {
            self.live_mm_rss(pid, 0, 1);
        }
        self.put_page(old);
        self.events.emit(|| Event::CowCopy {
            pid,
            va,
            from: old,
            to: new,
        });
        Ok((FaultKind::WpCopy, false))
    }

    /// Faults in every page of `[start, end)` as `populate` does (MAP_POPULATE,
    /// MADV_POPULATE_*): write faults for writable private mappings, read faults otherwise.
    /// Stops at the first page that cannot be faulted in.
    pub(crate) fn populate_range(
        &mut self,
        pid: Pid,
        start: VirtAddr,
        end: VirtAddr,
        write: bool,
    ) -> Result<(), Signal> {
        let mut a = start;
        while a < end {
            let access = if write { Access::Write } else { Access::Read };
            let pte = self.pte_of(pid, a);
            let needed = !pte.present() || (write && !pte.writable());
            if needed {
                let hw = if pte.present() {
                    HwFault::Protection
                } else {
                    HwFault::NotPresent { level: 0 }
                };
                self.handle_mm_fault(pid, a, access, hw, None)?;
            }
            a = a.add(1 << PAGE_SHIFT);
        }
        Ok(())
    }
}
