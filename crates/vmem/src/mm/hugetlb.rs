//! HugeTLB pages (Linux `mm/hugetlb.c`, `fs/hugetlbfs/inode.c`): 2 MiB pages for
//! `mmap(MAP_ANONYMOUS | MAP_HUGETLB)`, from a pool set aside in advance.
//!
//! Owns the pool ([`Hugetlb`]): `vm.nr_hugepages` huge pages taken from RAM as 512
//! contiguous frames on a 2 MiB boundary ([`Kernel::set_nr_hugepages`], Linux
//! `set_max_huge_pages`), its free list and its counters (`HugePages_Total/Free/Rsvd/Surp`,
//! [`Kernel::huge_pages_info`]); the anonymous hugetlbfs files behind each mapping
//! (`hugetlb_file_setup`): for a shared mapping, the page cache of huge pages that every
//! process mapping it shares; for a private one, the reservation map of the process that
//! made it (`HPAGE_RESV_OWNER`). And the mapping operations Linux sends to
//! `is_vm_hugetlb_page` areas:
//!
//! - `mmap`: length rounded up to 2 MiB, address on a 2 MiB boundary
//!   (`hugetlb_get_unmapped_area`), pages reserved at once (`hugetlb_reserve_pages`:
//!   ENOMEM when the pool's free pages not yet promised to someone else are too few),
//!   unless `MAP_NORESERVE`, where a fault that finds no free page is SIGBUS.
//! - faults (`hugetlb_fault`): one PMD entry (PS bit) maps a whole zeroed 2 MiB page
//!   (`hugetlb_no_page`, `alloc_hugetlb_folio`); a write to a private page shared after
//!   fork copies the 2 MiB (`hugetlb_wp`). There is no huge zero page: a read fault takes a
//!   page from the pool too.
//! - unmapping (`__unmap_hugepage_range`, `free_huge_folio`): pages go back to the pool;
//!   the owner of a private mapping gets its reservation back (MADV_DONTNEED then a new
//!   fault cannot fail); munmap/exit release the reservations never used
//!   (`hugetlb_vm_op_close`).
//! - `fork` (`copy_hugetlb_page_range`), `mprotect` (`hugetlb_change_protection`),
//!   `mremap` (`move_hugetlb_page_tables`), MADV_REMOVE on a shared mapping
//!   (`hugetlbfs_punch_hole`), and the rule that an area is never split off a huge-page
//!   boundary (`hugetlb_vm_op_split`: EINVAL).
//!
//! Hugetlb pages are never on the LRU lists: reclaim and swap leave them alone, and they
//! do not count in a process's RSS (Linux shows them as `HugetlbPages`).
//!
//! The pool exists on x86-64 machines (4- and 5-level: a PMD entry maps 2 MiB), RISC-V
//! Sv39 (a megapage: a leaf at the PMD level) and arm64 ones (a block descriptor: 2 MiB,
//! or 32 and 512 MiB in kernels built with 16 and 64 KiB pages, where every "2 MiB" here
//! reads as that size). On non-PAE i386 the pool stays empty and cannot be grown, so
//! MAP_HUGETLB gets what Linux answers with `vm.nr_hugepages = 0`: ENOMEM (and
//! MAP_NORESERVE mappings SIGBUS at the first touch). Linux's huge page there is 4 MiB (a
//! PDE with PS), which this machine's i386 entries do not model, so a `MAP_HUGE_2MB`
//! request on i386 is EINVAL (Linux has no 2 MiB size there) and `MAP_HUGE_4MB` is
//! accepted and gets ENOMEM.

use crate::addr::{Pfn, PgOff, VirtAddr, PAGE_SHIFT};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::events::{Event, FaultKind};
use crate::hw::mmu::Access;
use crate::hw::phys::FrameFlags;
use crate::hw::pte::Pte;
use crate::hw::pte_format::PteFormat;
use crate::kernel::Kernel;
use crate::mm::fault::pte_flags;
use crate::mm::huge_memory::{HPAGE_PAGES, HPAGE_SHIFT, HPAGE_SIZE};
use crate::mm::pgtable;
use crate::mm::vma::{vm, Backing, Special, Vma};
use crate::process::Pid;
use crate::signal::{BusCode, Signal};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The hugetlb pool and the anonymous hugetlbfs files (Linux `struct hstate` and the
/// inodes of `hugetlb_file_setup`).
#[derive(Debug, Default)]
pub(crate) struct Hugetlb {
    /// Free huge pages (first frames), the most recently freed last (taken first).
    free: Vec<Pfn>,
    /// Huge pages in the pool, free or in use (`nr_huge_pages`, `HugePages_Total`).
    nr: u64,
    /// Free pages promised to mappings (`resv_huge_pages`, `HugePages_Rsvd`).
    resv: u64,
    /// Pages above the persistent count, freed back to RAM when no longer used
    /// (`surplus_huge_pages`, `HugePages_Surp`).
    surplus: u64,
    /// The file behind each hugetlb mapping, by the mapping's `file_serial`.
    files: HashMap<u64, HugeFile>,
}

/// An anonymous hugetlbfs file: one per `mmap(MAP_HUGETLB)`.
#[derive(Debug, Default)]
struct HugeFile {
    /// MAP_SHARED: the pages live in `pages`, shared by every mapping of the file.
    shared: bool,
    /// A private mapping's owner (`HPAGE_RESV_OWNER`): the mm that made it with a
    /// reservation. Processes forked from it share the pages but own no reservation.
    owner: Option<u32>,
    /// A shared file's pages by huge-page index (its page cache).
    pages: BTreeMap<u64, Pfn>,
    /// Huge-page indices holding a reservation not used yet (the reservation map).
    resv: BTreeSet<u64>,
    /// Processes whose pages the owner took back when a copy-on-write found the pool
    /// empty (`HPAGE_RESV_UNMAPPED`): their next fault in the mapping is SIGBUS.
    unmapped: BTreeSet<u32>,
}

/// The huge-page lines of `/proc/meminfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugePagesInfo {
    /// `HugePages_Total`: pages in the pool, free or in use (surplus ones included).
    pub total: u64,
    /// `HugePages_Free`: pages not mapped by anyone (reserved ones included).
    pub free: u64,
    /// `HugePages_Rsvd`: free pages promised to mappings that have not faulted them yet.
    pub rsvd: u64,
    /// `HugePages_Surp`: pages above `vm.nr_hugepages`, returned to RAM once freed.
    pub surp: u64,
    /// `Hugepagesize` in bytes (0 when the machine has no huge-page pool).
    pub page_size: u64,
}

impl std::fmt::Display for HugePagesInfo {
    /// As `/proc/meminfo` prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HugePages_Total: {:>5}", self.total)?;
        writeln!(f, "HugePages_Free:  {:>5}", self.free)?;
        writeln!(f, "HugePages_Rsvd:  {:>5}", self.rsvd)?;
        writeln!(f, "HugePages_Surp:  {:>5}", self.surp)?;
        writeln!(f, "Hugepagesize:   {:>8} kB", self.page_size >> 10)?;
        write!(
            f,
            "Hugetlb:        {:>8} kB",
            (self.total * self.page_size) >> 10
        )
    }
}

/// `addr` rounded up to a huge-page boundary, if that fits in 64 bits.
fn hpage_align_up(addr: u64) -> Option<u64> {
    addr.checked_add(HPAGE_SIZE - 1)
        .map(|a| a & !(HPAGE_SIZE - 1))
}

fn hpage_aligned(addr: u64) -> bool {
    addr & (HPAGE_SIZE - 1) == 0
}

fn sigbus(va: VirtAddr) -> Signal {
    Signal::Bus {
        addr: va,
        code: BusCode::AdrErr,
    }
}

impl Vma {
    /// A hugetlb mapping (Linux `is_vm_hugetlb_page`).
    #[inline]
    pub fn is_hugetlb(&self) -> bool {
        self.flags & vm::HUGETLB != 0
    }

    /// The huge-page index (in its hugetlbfs file) of the huge page at `haddr`.
    fn hpage_index(&self, haddr: u64) -> u64 {
        self.pgoff_of(VirtAddr(haddr)).0 >> (HPAGE_SHIFT - PAGE_SHIFT)
    }
}

impl Kernel {
    // ----- the pool ---------------------------------------------------------------------

    /// Whether this machine has a huge-page pool: page tables whose PMD entry maps 2 MiB
    /// (x86-64). See the module header for the other geometries.
    fn hugetlb_supported(&self) -> bool {
        self.huge_pmd_supported()
    }

    /// log2 of the size Linux's default huge page has on this machine's architecture
    /// (2 MiB; 4 MiB on non-PAE i386), the only size `MAP_HUGE_*` may ask for.
    fn hstate_shift(&self) -> u32 {
        match self.cfg.geometry.format {
            PteFormat::X86_32 => 22,
            PteFormat::X86_64 | PteFormat::Sv39 | PteFormat::Arm64 => HPAGE_SHIFT,
        }
    }

    /// `vm.nr_hugepages`: the persistent pool size (pages in the pool minus surplus ones).
    pub fn nr_hugepages(&self) -> u64 {
        self.hugetlb.nr - self.hugetlb.surplus
    }

    /// Writes `vm.nr_hugepages` (Linux `set_max_huge_pages`); returns the value it reads
    /// back. Growing takes 2 MiB-aligned runs of 512 free frames from RAM and stops softly
    /// at the first that cannot be found (the pool gets what RAM has). Shrinking frees
    /// free pages, but never those in use or reserved: the pages above the new size that
    /// cannot go yet become surplus pages, freed when released. On a machine without a
    /// pool (see the module header) it stays 0.
    pub fn set_nr_hugepages(&mut self, count: u64) -> u64 {
        if !self.hugetlb_supported() {
            return 0;
        }
        // Surplus pages count again as persistent ones first (adjust_pool_surplus).
        while self.hugetlb.surplus > 0 && count > self.nr_hugepages() {
            self.hugetlb.surplus -= 1;
        }
        while count > self.nr_hugepages() {
            let Some(head) =
                self.phys
                    .alloc_contiguous_aligned(HPAGE_PAGES, HPAGE_PAGES, FrameFlags::HUGETLB)
            else {
                break;
            };
            self.hugetlb.nr += 1;
            self.hugetlb.free.push(head);
        }
        // Never below the pages in use or promised to mappings.
        let h = &self.hugetlb;
        let min_count = count.max(h.resv + h.nr - h.free.len() as u64);
        while min_count < self.nr_hugepages() {
            if self.hugetlb.free.is_empty() {
                break;
            }
            let head = self.hugetlb.free.remove(0);
            self.update_and_free_hugetlb_folio(head);
        }
        while count < self.nr_hugepages() && self.hugetlb.surplus < self.hugetlb.nr {
            self.hugetlb.surplus += 1;
        }
        self.nr_hugepages()
    }

    /// The pool's counters as `/proc/meminfo` shows them.
    pub fn huge_pages_info(&self) -> HugePagesInfo {
        let h = &self.hugetlb;
        HugePagesInfo {
            total: h.nr,
            free: h.free.len() as u64,
            rsvd: h.resv,
            surp: h.surplus,
            page_size: if self.hugetlb_supported() {
                HPAGE_SIZE
            } else {
                0
            },
        }
    }

    /// Returns a huge page's 512 frames to RAM (it leaves the pool).
    fn update_and_free_hugetlb_folio(&mut self, head: Pfn) {
        for i in 0..HPAGE_PAGES {
            self.phys.free(Pfn(head.0 + i));
        }
        self.hugetlb.nr -= 1;
    }

    /// Free pages not promised to anyone.
    fn hugetlb_available(&self) -> u64 {
        self.hugetlb.free.len() as u64 - self.hugetlb.resv
    }

    /// Reserves `n` pages for a new mapping (Linux `hugetlb_acct_memory`; with no
    /// overcommit pool, `gather_surplus_pages` can add nothing). False: not enough.
    fn hugetlb_acct_reserve(&mut self, n: u64) -> bool {
        if self.hugetlb_available() < n {
            return false;
        }
        self.hugetlb.resv += n;
        true
    }

    /// Linux `return_unused_surplus_pages`: `n` reservations are given up; surplus pages
    /// that were kept free for them go back to RAM.
    fn hugetlb_unreserve(&mut self, n: u64) {
        self.hugetlb.resv -= n;
        let mut k = n.min(self.hugetlb.surplus);
        while k > 0 {
            let Some(head) = self.hugetlb.free.pop() else {
                break;
            };
            self.update_and_free_hugetlb_folio(head);
            self.hugetlb.surplus -= 1;
            k -= 1;
        }
    }

    /// Linux `alloc_hugetlb_folio`: a free page, using one of the reservations when
    /// `reserved`, else one no mapping was promised. `None`: the pool has none.
    fn alloc_hugetlb_folio(&mut self, reserved: bool) -> Option<Pfn> {
        if !reserved && self.hugetlb_available() == 0 {
            return None;
        }
        let head = self.hugetlb.free.pop()?;
        if reserved {
            self.hugetlb.resv -= 1;
        }
        Some(head)
    }

    /// Drops a reference to the huge page `head`; at the last one it goes back to the
    /// pool (Linux `free_huge_folio`), or to RAM when it is a surplus page. `restore`: the
    /// private mapping (file, index) whose owner unmapped it gets its reservation back
    /// (`hugetlb_restore_reserve`), unless the pool has surplus pages.
    fn put_huge_page(&mut self, head: Pfn, restore: Option<(u64, u64)>) {
        let m = self.phys.meta_mut(head);
        debug_assert!(m.refcount > 0, "put_huge_page on a free huge page {head:?}");
        m.refcount -= 1;
        if m.refcount > 0 {
            return;
        }
        m.owner = 0;
        m.index = 0;
        if let Some((serial, idx)) = restore {
            if self.hugetlb.surplus == 0 {
                if let Some(f) = self.hugetlb.files.get_mut(&serial) {
                    if f.resv.insert(idx) {
                        self.hugetlb.resv += 1;
                    }
                }
            }
        }
        if self.hugetlb.surplus > 0 {
            self.update_and_free_hugetlb_folio(head);
            self.hugetlb.surplus -= 1;
        } else {
            self.hugetlb.free.push(head);
        }
    }

    // ----- mmap -------------------------------------------------------------------------

    /// `mmap` of `MAP_ANONYMOUS | MAP_HUGETLB` (Linux `ksys_mmap_pgoff` with
    /// `hugetlb_file_setup`, then `do_mmap` and `hugetlbfs_file_mmap`), in the kernel's
    /// order of checks. `offset` is page aligned already.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hugetlb_mmap(
        &mut self,
        pid: Pid,
        addr: VirtAddr,
        len: u64,
        prot: i32,
        mut flags: i32,
        offset: i64,
    ) -> SysResult<VirtAddr> {
        // hstate_sizelog: 0 is the default size; any other must be the one pool's.
        let log = ((flags >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK) as u32;
        if log != 0 && log != self.hstate_shift() {
            return Err(Errno::EINVAL);
        }
        // len = ALIGN(len, huge_page_size): a length that wraps is 0, refused by do_mmap.
        let len = hpage_align_up(len).unwrap_or(0);
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let (start, pgoff) = self.mmap_place(pid, addr, len, &mut flags, offset, true)?;
        let end = start.add(len);
        // do_mmap, for the hugetlbfs file.
        let mut vm_flags = vm::MAYREAD | vm::MAYWRITE | vm::MAYEXEC | vm::HUGETLB;
        match flags & MAP_TYPE {
            MAP_SHARED | MAP_SHARED_VALIDATE => {
                if flags & MAP_TYPE == MAP_SHARED {
                    flags &= LEGACY_MAP_MASK;
                }
                if flags & !LEGACY_MAP_MASK != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                vm_flags |= vm::SHARED | vm::MAYSHARE;
            }
            MAP_PRIVATE => {}
            _ => return Err(Errno::EINVAL),
        }
        if flags & MAP_GROWSDOWN != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_NORESERVE != 0 {
            vm_flags |= vm::NORESERVE;
        }
        if flags & MAP_LOCKED != 0 {
            vm_flags |= vm::LOCKED;
        }
        // mmap_region: what MAP_FIXED replaces must split on huge-page boundaries too.
        if flags & MAP_FIXED != 0 {
            self.hugetlb_check_split(pid, start)?;
            self.hugetlb_check_split(pid, end)?;
        }
        // hugetlbfs_file_mmap: the offset is in whole huge pages; the pages are reserved
        // now (while what MAP_FIXED replaces still holds its own reservations).
        if pgoff & (HPAGE_PAGES - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let shared = vm_flags & vm::MAYSHARE != 0;
        let first = pgoff >> (HPAGE_SHIFT - PAGE_SHIFT);
        let n = len >> HPAGE_SHIFT;
        let mut file = HugeFile {
            shared,
            ..HugeFile::default()
        };
        if vm_flags & vm::NORESERVE == 0 {
            if !self.hugetlb_acct_reserve(n) {
                return Err(Errno::ENOMEM);
            }
            file.resv = (first..first + n).collect();
            if !shared {
                file.owner = Some(self.proc_ref(pid)?.mm.id);
            }
        }
        if flags & MAP_FIXED != 0 {
            self.unmap_range(pid, start, end);
        }
        let serial = self.next_file_serial();
        self.hugetlb.files.insert(serial, file);
        let vma = Vma {
            start,
            end,
            prot: prot & (PROT_READ | PROT_WRITE | PROT_EXEC),
            flags: vm_flags,
            backing: Backing::Anon,
            pgoff: PgOff(pgoff),
            anon_file: None,
            file_serial: serial,
            anon_vma: 0,
            special: Special::None,
        };
        self.insert_vma_and_populate(pid, vma, flags)
    }

    /// Linux `hugetlb_get_unmapped_area`: like `get_unmapped_area`, on a huge-page
    /// boundary (MAP_FIXED elsewhere is EINVAL; a hint is rounded up to one).
    pub(crate) fn hugetlb_get_unmapped_area(
        &self,
        pid: Pid,
        addr: VirtAddr,
        len: u64,
        flags: i32,
    ) -> SysResult<VirtAddr> {
        let task_size = self.task_size();
        if len > task_size {
            return Err(Errno::ENOMEM);
        }
        let mm = &self.proc_ref(pid)?.mm;
        if flags & MAP_FIXED != 0 {
            if addr.0 > task_size - len {
                return Err(Errno::ENOMEM);
            }
            if !hpage_aligned(addr.0) {
                return Err(Errno::EINVAL);
            }
            return Ok(addr);
        }
        if addr.0 != 0 {
            if let Some(a) = hpage_align_up(addr.0) {
                if a <= task_size - len && !mm.intersects(VirtAddr(a), VirtAddr(a + len)) {
                    return Ok(VirtAddr(a));
                }
            }
        }
        let low = self.cfg.mmap_min_addr;
        // The highest aligned gap below mmap_base that fits.
        let fits_below = |gap_end: u64, floor: u64| -> Option<u64> {
            let a = gap_end.checked_sub(len)? & !(HPAGE_SIZE - 1);
            (a >= floor).then_some(a)
        };
        let mut gap_end = mm.mmap_base;
        for v in mm.vmas.range(..mm.mmap_base).rev().map(|(_, v)| v) {
            if v.end.0 < gap_end {
                if let Some(a) = fits_below(gap_end, v.end.0) {
                    return Ok(VirtAddr(a));
                }
            }
            gap_end = gap_end.min(v.start.0);
        }
        if let Some(a) = fits_below(gap_end, low) {
            return Ok(VirtAddr(a));
        }
        // Bottom-up over the whole user range.
        let mut cur = hpage_align_up(low).ok_or(Errno::ENOMEM)?;
        for v in mm.vmas.values() {
            if v.start.0 >= cur && v.start.0 - cur >= len {
                return Ok(VirtAddr(cur));
            }
            cur = hpage_align_up(cur.max(v.end.0)).ok_or(Errno::ENOMEM)?;
        }
        if task_size >= cur && task_size - cur >= len {
            return Ok(VirtAddr(cur));
        }
        Err(Errno::ENOMEM)
    }

    /// Linux `hugetlb_vm_op_split`: a hugetlb area may only be split on a huge-page
    /// boundary; splitting the area that strictly contains `at` anywhere else is EINVAL.
    pub(crate) fn hugetlb_check_split(&self, pid: Pid, at: VirtAddr) -> SysResult<()> {
        match self.proc_ref(pid)?.mm.find_vma(at) {
            Some(v) => hugetlb_may_split(v, at),
            None => Ok(()),
        }
    }

    // ----- faults -----------------------------------------------------------------------

    /// Linux `hugetlb_fault`: the fault path of a hugetlb area (it never reaches the
    /// 4 KiB paths). A missing page is mapped whole by its PMD entry; a write to a
    /// write-protected one goes to `hugetlb_wp`.
    pub(crate) fn hugetlb_fault(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        vma: &Vma,
    ) -> Result<(FaultKind, bool), Signal> {
        let haddr = va.0 & !(HPAGE_SIZE - 1);
        let geom = self.cfg.geometry;
        let root = self.proc_ref(pid).map_err(|_| sigbus(va))?.mm.root;
        // huge_pte_alloc: the tables above the PMD entry.
        let (slot, new_tables) =
            pgtable::pmd_slot_alloc(&mut self.phys, &geom, root, VirtAddr(haddr))
                .map_err(|_| Signal::OomKill { addr: va })?;
        let mut pmd = geom.read_table(&self.phys, slot);
        let mut pt_delta = new_tables as i64;
        if pmd.present() && !pmd.huge() {
            // A page table an earlier mapping of these addresses left behind (tables are
            // kept until exit): every entry of it was zapped when that mapping went, so
            // it is freed now, as Linux's free_pgtables would have at munmap.
            let table = pmd.pfn();
            let empty = (0..geom.entries())
                .all(|i| geom.read_pte(&self.phys, geom.entry_addr(table, i)) == Pte::NONE);
            if !empty {
                return Err(Signal::Bus {
                    addr: va,
                    code: BusCode::ObjErr,
                });
            }
            geom.write_table(&mut self.phys, slot, Pte::NONE);
            self.phys.free(table);
            pt_delta -= 1;
            pmd = Pte::NONE;
        }
        if let Ok(p) = self.proc_mut(pid) {
            p.mm.pt_frames = (p.mm.pt_frames as i64 + pt_delta) as u64;
        }
        if pmd.huge() {
            if access == Access::Write && !pmd.writable() {
                return self.hugetlb_wp(pid, va, haddr, vma, slot, pmd);
            }
            // Only the TLB was stale.
            let asid = self.proc_ref(pid).map_err(|_| sigbus(va))?.mm.asid;
            self.flush_huge_range(asid, haddr);
            return Ok((FaultKind::Spurious, false));
        }
        self.hugetlb_no_page(pid, va, haddr, access, vma, slot)
    }

    /// Linux `hugetlb_no_page`: a shared file's page from its cache, else a zeroed page
    /// from the pool (with the mapping's reservation when it has one for this page),
    /// mapped by the PMD entry at `slot`. SIGBUS when the pool has no page for it.
    fn hugetlb_no_page(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        haddr: u64,
        access: Access,
        vma: &Vma,
        slot: crate::addr::PhysAddr,
    ) -> Result<(FaultKind, bool), Signal> {
        let idx = vma.hpage_index(haddr);
        let mm_id = self.proc_ref(pid).map_err(|_| sigbus(va))?.mm.id;
        let serial = vma.file_serial;
        let Some(file) = self.hugetlb.files.get(&serial) else {
            return Err(sigbus(va));
        };
        if file.unmapped.contains(&mm_id) {
            // The owner took this process's pages back (see hugetlb_wp): Linux kills it
            // "due to inadequate hugepage pool".
            return Err(sigbus(va));
        }
        let shared = file.shared;
        let cached = if shared {
            file.pages.get(&idx).copied()
        } else {
            None
        };
        let head = match cached {
            Some(head) => {
                self.phys.meta_mut(head).refcount += 1;
                head
            }
            None => {
                let reserved = file.resv.contains(&idx) && (shared || file.owner == Some(mm_id));
                let head = self.alloc_hugetlb_folio(reserved).ok_or(sigbus(va))?;
                let f = self
                    .hugetlb
                    .files
                    .get_mut(&serial)
                    .expect("looked up above");
                if reserved {
                    f.resv.remove(&idx);
                }
                // clear_huge_page.
                for i in 0..HPAGE_PAGES {
                    self.phys.frame_bytes_mut(Pfn(head.0 + i)).fill(0);
                }
                let m = self.phys.meta_mut(head);
                m.refcount = 1;
                m.owner = mm_id;
                m.index = idx;
                if shared {
                    // One reference for the file's page cache, one for this mapping.
                    m.refcount = 2;
                    f.pages.insert(idx, head);
                }
                self.events.emit(|| Event::FrameAlloc {
                    pfn: head,
                    purpose: "hugetlb page from the pool, 512 frames",
                });
                head
            }
        };
        // A shared mapping maps the page writable at once; a private one on a write
        // (a read maps it read-only, and a later write makes it writable: hugetlb_wp).
        let writable = vma.writable() && (shared || access == Access::Write);
        let pmd = Pte::new(head, pte_flags(vma, writable) | Pte::HUGE);
        self.cfg.geometry.write_table(&mut self.phys, slot, pmd);
        let raw = self.cfg.geometry.raw_table(pmd);
        self.events.emit(|| Event::PmdInstall {
            pid,
            va: VirtAddr(haddr),
            pmd,
            raw,
        });
        Ok((FaultKind::HugetlbNoPage, false))
    }

    /// Linux `hugetlb_wp`: a write to a write-protected huge page of a writable area.
    /// Shared, or private with no other user: made writable in place. Private and shared
    /// with another process since fork: copied into a page from the pool; when the pool
    /// has none, the owner of the mapping takes the page back from the others
    /// (`unmap_ref_private`) and keeps it, anyone else gets SIGBUS.
    fn hugetlb_wp(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        haddr: u64,
        vma: &Vma,
        slot: crate::addr::PhysAddr,
        pmd: Pte,
    ) -> Result<(FaultKind, bool), Signal> {
        let old = pmd.pfn();
        let (asid, mm_id) = {
            let p = self.proc_ref(pid).map_err(|_| sigbus(va))?;
            (p.mm.asid, p.mm.id)
        };
        let geom = self.cfg.geometry;
        let make_writable = |k: &mut Kernel| {
            let pmd = pmd.with(Pte::WRITABLE | Pte::DIRTY);
            geom.write_table(&mut k.phys, slot, pmd);
            k.flush_huge_range(asid, haddr);
            let raw = geom.raw_table(pmd);
            k.events.emit(|| Event::PmdInstall {
                pid,
                va: VirtAddr(haddr),
                pmd,
                raw,
            });
        };
        if vma.is_mayshare() || self.phys.meta(old).refcount == 1 {
            make_writable(self);
            return Ok((FaultKind::HugetlbWpReuse, false));
        }
        let owner = self
            .hugetlb
            .files
            .get(&vma.file_serial)
            .is_some_and(|f| f.owner == Some(mm_id));
        let Some(new) = self.alloc_hugetlb_folio(false) else {
            if !owner {
                return Err(sigbus(va));
            }
            self.unmap_ref_private(pid, vma, haddr, old);
            make_writable(self);
            return Ok((FaultKind::HugetlbWpReuse, false));
        };
        for i in 0..HPAGE_PAGES {
            self.phys.copy_frame(Pfn(old.0 + i), Pfn(new.0 + i));
        }
        let m = self.phys.meta_mut(new);
        m.refcount = 1;
        m.owner = mm_id;
        m.index = vma.hpage_index(haddr);
        let npmd = Pte::new(new, pte_flags(vma, true) | Pte::HUGE);
        geom.write_table(&mut self.phys, slot, npmd);
        self.flush_huge_range(asid, haddr);
        self.put_huge_page(old, None);
        self.events.emit(|| Event::CowCopy {
            pid,
            va: VirtAddr(haddr),
            from: old,
            to: new,
        });
        let raw = self.cfg.geometry.raw_table(npmd);
        self.events.emit(|| Event::PmdInstall {
            pid,
            va: VirtAddr(haddr),
            pmd: npmd,
            raw,
        });
        Ok((FaultKind::HugetlbWpCopy, false))
    }

    /// Linux `unmap_ref_private`: the owner of a private mapping needs its page `head` at
    /// `haddr` for itself and the pool has none to copy into: every other process that
    /// maps it through this mapping loses it, and is marked so that its next fault there
    /// is SIGBUS.
    fn unmap_ref_private(&mut self, pid: Pid, vma: &Vma, haddr: u64, head: Pfn) {
        let idx = vma.hpage_index(haddr);
        let geom = self.cfg.geometry;
        let mut victims = Vec::new();
        for (pi, p) in self.procs.iter().enumerate() {
            let Some(p) = p else { continue };
            if pi == pid.0 as usize {
                continue;
            }
            for v in p.mm.vmas.values() {
                if !v.is_hugetlb() || v.file_serial != vma.file_serial {
                    continue;
                }
                let Some(va) = v.addr_of(PgOff(idx << (HPAGE_SHIFT - PAGE_SHIFT))) else {
                    continue;
                };
                if let Some(slot) = pgtable::pmd_slot(&self.phys, &geom, p.mm.root, va) {
                    let e = geom.read_table(&self.phys, slot);
                    if e.0 & Pte::HUGE != 0 && e.pfn() == head {
                        victims.push((Pid(pi as u32), p.mm.id, p.mm.asid, va, slot));
                    }
                }
            }
        }
        for (_, mm_id, asid, va, slot) in victims {
            geom.write_table(&mut self.phys, slot, Pte::NONE);
            self.flush_huge_range(asid, va.0);
            self.put_huge_page(head, None);
            if let Some(f) = self.hugetlb.files.get_mut(&vma.file_serial) {
                f.unmapped.insert(mm_id);
            }
        }
    }

    // ----- unmapping --------------------------------------------------------------------

    /// Linux `__unmap_hugepage_range`: clears the PMD entries of `[start, end)` (huge-page
    /// aligned) in `v`, an area of `pid`, and drops their pages. The owner of a private
    /// mapping gets the reservation of each page it frees back.
    pub(crate) fn unmap_hugepage_range(
        &mut self,
        pid: Pid,
        v: &Vma,
        start: VirtAddr,
        end: VirtAddr,
    ) {
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_ref(pid) else { return };
        let (root, asid, mm_id) = (p.mm.root, p.mm.asid, p.mm.id);
        let owner = self
            .hugetlb
            .files
            .get(&v.file_serial)
            .is_some_and(|f| !f.shared && f.owner == Some(mm_id));
        let mut haddr = start.0 & !(HPAGE_SIZE - 1);
        while haddr < end.0 {
            if let Some(slot) = pgtable::pmd_slot(&self.phys, &geom, root, VirtAddr(haddr)) {
                let pmd = geom.read_table(&self.phys, slot);
                // A huge entry, present or made PROT_NONE.
                if pmd.0 & Pte::HUGE != 0 {
                    geom.write_table(&mut self.phys, slot, Pte::NONE);
                    self.flush_huge_range(asid, haddr);
                    let restore = owner.then(|| (v.file_serial, v.hpage_index(haddr)));
                    self.put_huge_page(pmd.pfn(), restore);
                }
            }
            haddr += HPAGE_SIZE;
        }
    }

    /// Linux `hugetlb_vm_op_close`: `v` (of `pid`) is going away. The owner of a private
    /// mapping gives up the reservations of its range that no fault used.
    pub(crate) fn hugetlb_vm_close(&mut self, pid: Pid, v: &Vma) {
        let Ok(p) = self.proc_ref(pid) else { return };
        let mm_id = p.mm.id;
        let Some(f) = self.hugetlb.files.get_mut(&v.file_serial) else {
            return;
        };
        if f.shared || f.owner != Some(mm_id) {
            return;
        }
        let (first, last) = (v.hpage_index(v.start.0), v.hpage_index(v.end.0));
        let gone: Vec<u64> = f.resv.range(first..last).copied().collect();
        for i in &gone {
            f.resv.remove(i);
        }
        self.hugetlb_unreserve(gone.len() as u64);
    }

    /// The file of a hugetlb mapping goes when no area maps it any more: a shared one's
    /// pages leave its cache (back to the pool when no one maps them) and its unused
    /// reservations are given back (Linux `hugetlbfs_evict_inode`).
    pub(crate) fn hugetlb_release_if_unused(&mut self, serial: u64) {
        let used = self.procs.iter().flatten().any(|p| {
            p.mm.vmas
                .values()
                .any(|v| v.is_hugetlb() && v.file_serial == serial)
        });
        if used {
            return;
        }
        let Some(f) = self.hugetlb.files.remove(&serial) else {
            return;
        };
        for head in f.pages.into_values() {
            self.put_huge_page(head, None);
        }
        self.hugetlb_unreserve(f.resv.len() as u64);
    }

    /// `munmap` and `exit` of a hugetlb area: its pages unmapped, its unused reservations
    /// released, its file gone if this was the last area mapping it. `v` must already be
    /// out of the VMA tree.
    pub(crate) fn hugetlb_unmap_vma(&mut self, pid: Pid, v: &Vma) {
        self.unmap_hugepage_range(pid, v, v.start, v.end);
        self.hugetlb_vm_close(pid, v);
        self.hugetlb_release_if_unused(v.file_serial);
    }

    /// MADV_DONTNEED on a hugetlb area (Linux `madvise_dontneed_free_valid_vma`): the
    /// start must be on a huge-page boundary (EINVAL); the end is rounded down to one, so
    /// that a length in 4 KiB pages never drops more than asked.
    pub(crate) fn hugetlb_madv_dontneed(
        &mut self,
        pid: Pid,
        v: &Vma,
        start: VirtAddr,
        end: VirtAddr,
    ) -> SysResult<()> {
        if !hpage_aligned(start.0) {
            return Err(Errno::EINVAL);
        }
        let end = VirtAddr(end.0 & !(HPAGE_SIZE - 1));
        if start < end {
            self.unmap_hugepage_range(pid, v, start, end);
        }
        Ok(())
    }

    /// MADV_REMOVE on a hugetlb area: a private one is EACCES (its file is not written
    /// through the mapping); for a shared one, the whole huge pages of the range are
    /// punched out of the file (Linux `hugetlbfs_punch_hole`): unmapped from every
    /// process, dropped from its cache, their reservations given back. They read as
    /// zeros again afterwards.
    pub(crate) fn hugetlb_madv_remove(
        &mut self,
        v: &Vma,
        start: VirtAddr,
        end: VirtAddr,
    ) -> SysResult<()> {
        if v.flags & vm::LOCKED != 0 {
            return Err(Errno::EINVAL);
        }
        if !v.is_shared() {
            return Err(Errno::EACCES);
        }
        let first =
            hpage_align_up(v.pgoff_of(start).0 << PAGE_SHIFT).ok_or(Errno::EINVAL)? >> HPAGE_SHIFT;
        let last = (v.pgoff_of(end).0 << PAGE_SHIFT) >> HPAGE_SHIFT;
        if first >= last {
            return Ok(());
        }
        let serial = v.file_serial;
        // hugetlb_vmdelete_list: every mapping of the hole, in every process.
        let mut areas = Vec::new();
        for p in self.procs.iter().flatten() {
            for w in p.mm.vmas.values() {
                if w.is_hugetlb() && w.file_serial == serial {
                    areas.push((p.pid, *w));
                }
            }
        }
        for (pid, w) in areas {
            let lo = w.addr_of(PgOff(first << (HPAGE_SHIFT - PAGE_SHIFT)));
            let from = lo.unwrap_or(if w.hpage_index(w.start.0) >= first {
                w.start
            } else {
                w.end
            });
            let to = w
                .addr_of(PgOff(last << (HPAGE_SHIFT - PAGE_SHIFT)))
                .unwrap_or(if w.hpage_index(w.start.0) >= last {
                    w.start
                } else {
                    w.end
                });
            if from < to {
                self.unmap_hugepage_range(pid, &w, from, to);
            }
        }
        let Some(f) = self.hugetlb.files.get_mut(&serial) else {
            return Ok(());
        };
        let pages: Vec<(u64, Pfn)> = f.pages.range(first..last).map(|(&i, &p)| (i, p)).collect();
        let unused: Vec<u64> = f.resv.range(first..last).copied().collect();
        for (i, _) in &pages {
            f.pages.remove(i);
        }
        for i in &unused {
            f.resv.remove(i);
        }
        for (_, head) in pages {
            self.put_huge_page(head, None);
        }
        self.hugetlb_unreserve(unused.len() as u64);
        Ok(())
    }

    // ----- fork, mprotect, mremap -------------------------------------------------------

    /// Linux `copy_hugetlb_page_range`: the child maps the parent's huge pages of `v`; in
    /// a private area both sides are write-protected, so that the first write on either
    /// copies the 2 MiB (`hugetlb_wp`). The child owns no reservation of the mapping.
    pub(crate) fn copy_hugetlb_page_range(
        &mut self,
        parent: Pid,
        child: Pid,
        v: &Vma,
    ) -> SysResult<()> {
        let geom = self.cfg.geometry;
        let (proot, pasid) = {
            let p = self.proc_ref(parent)?;
            (p.mm.root, p.mm.asid)
        };
        let croot = self.proc_ref(child)?.mm.root;
        let cow = v.flags & (vm::SHARED | vm::MAYWRITE) == vm::MAYWRITE;
        let mut haddr = v.start.0;
        while haddr < v.end.0 {
            let va = VirtAddr(haddr);
            haddr += HPAGE_SIZE;
            let Some(pslot) = pgtable::pmd_slot(&self.phys, &geom, proot, va) else {
                continue;
            };
            let mut pmd = geom.read_table(&self.phys, pslot);
            if pmd.0 & Pte::HUGE == 0 {
                continue;
            }
            if cow && pmd.writable() {
                pmd = pmd.without(Pte::WRITABLE);
                geom.write_table(&mut self.phys, pslot, pmd);
                self.flush_huge_range(pasid, va.0);
            }
            let (cslot, new_tables) = pgtable::pmd_slot_alloc(&mut self.phys, &geom, croot, va)
                .map_err(|_| Errno::ENOMEM)?;
            geom.write_table(&mut self.phys, cslot, pmd);
            self.phys.meta_mut(pmd.pfn()).refcount += 1;
            self.proc_mut(child)?.mm.pt_frames += new_tables;
        }
        Ok(())
    }

    /// Linux `hugetlb_change_protection`: the huge PMD entries of `v` take its protection
    /// (PROT_NONE keeps the page but makes the entry not present; adding write access is
    /// left to the next write fault).
    pub(crate) fn hugetlb_change_protection(&mut self, pid: Pid, v: &Vma) {
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_ref(pid) else { return };
        let (root, asid) = (p.mm.root, p.mm.asid);
        let mut haddr = v.start.0;
        while haddr < v.end.0 {
            let va = VirtAddr(haddr);
            haddr += HPAGE_SIZE;
            let Some(slot) = pgtable::pmd_slot(&self.phys, &geom, root, va) else {
                continue;
            };
            let pmd = geom.read_table(&self.phys, slot);
            if pmd.0 & Pte::HUGE == 0 {
                continue;
            }
            let mut n = if v.readable() {
                pmd.without(Pte::PROTNONE).with(Pte::PRESENT)
            } else {
                pmd.without(Pte::PRESENT).with(Pte::PROTNONE)
            };
            if !v.writable() {
                n = n.without(Pte::WRITABLE);
            }
            n = if v.executable() {
                n.without(Pte::NX)
            } else {
                n.with(Pte::NX)
            };
            if n != pmd {
                geom.write_table(&mut self.phys, slot, n);
                self.flush_huge_range(asid, va.0);
            }
        }
    }

    /// Linux `move_hugetlb_page_tables`: the huge PMD entries of `[old, old + len)` move to
    /// `dst` (the pages go with them, no copy): the old entries are cleared and the new
    /// ones returned, for [`Kernel::install_moved_hugetlb`] once the new area exists.
    pub(crate) fn move_hugetlb_page_tables(
        &mut self,
        pid: Pid,
        old: VirtAddr,
        len: u64,
        dst: VirtAddr,
    ) -> Vec<(VirtAddr, Pte)> {
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_ref(pid) else {
            return Vec::new();
        };
        let (root, asid) = (p.mm.root, p.mm.asid);
        let mut moved = Vec::new();
        let mut off = 0;
        while off < len {
            let va = old.add(off);
            if let Some(slot) = pgtable::pmd_slot(&self.phys, &geom, root, va) {
                let pmd = geom.read_table(&self.phys, slot);
                if pmd.0 & Pte::HUGE != 0 {
                    geom.write_table(&mut self.phys, slot, Pte::NONE);
                    self.flush_huge_range(asid, va.0);
                    moved.push((dst.add(off), pmd));
                }
            }
            off += HPAGE_SIZE;
        }
        moved
    }

    /// Writes the huge PMD entries `moved` (from [`Kernel::move_hugetlb_page_tables`]) at
    /// their new addresses in `v`; a page whose table cannot be allocated is dropped.
    pub(crate) fn install_moved_hugetlb(&mut self, pid: Pid, v: &Vma, moved: Vec<(VirtAddr, Pte)>) {
        let geom = self.cfg.geometry;
        let Ok(p) = self.proc_ref(pid) else { return };
        let root = p.mm.root;
        for (va, pmd) in moved {
            match pgtable::pmd_slot_alloc(&mut self.phys, &geom, root, va) {
                Ok((slot, new_tables)) => {
                    let e = geom.read_table(&self.phys, slot);
                    let mut freed = 0;
                    if e.present() && !e.huge() {
                        // An empty table left by an earlier mapping (see hugetlb_fault).
                        self.phys.free(e.pfn());
                        freed = 1;
                    }
                    geom.write_table(&mut self.phys, slot, pmd);
                    if let Ok(p) = self.proc_mut(pid) {
                        p.mm.pt_frames = p.mm.pt_frames + new_tables - freed;
                    }
                }
                Err(_) => {
                    let owner = self.proc_ref(pid).map(|p| p.mm.id).ok();
                    let restore = self
                        .hugetlb
                        .files
                        .get(&v.file_serial)
                        .is_some_and(|f| !f.shared && f.owner.is_some() && f.owner == owner)
                        .then(|| (v.file_serial, v.hpage_index(va.0)));
                    self.put_huge_page(pmd.pfn(), restore);
                }
            }
        }
    }

    /// The frame checks of [`Kernel::check_invariants`] for the pool: every huge page is
    /// free in the pool with no reference, or used with one reference per mapping (plus
    /// one in a shared file's cache); the counters add up.
    pub(crate) fn hugetlb_check(&self, mapcount: &HashMap<u64, u32>) -> Vec<String> {
        let mut errors = Vec::new();
        let h = &self.hugetlb;
        let free: BTreeSet<u64> = h.free.iter().map(|p| p.0).collect();
        let cached: BTreeSet<u64> = h
            .files
            .values()
            .flat_map(|f| f.pages.values().map(|p| p.0))
            .collect();
        let mut heads = 0;
        for n in (0..self.phys.total_frames()).step_by(HPAGE_PAGES as usize) {
            let m = self.phys.meta(Pfn(n));
            if !m.flags.has(FrameFlags::HUGETLB) {
                continue;
            }
            heads += 1;
            let maps = mapcount.get(&n).copied().unwrap_or(0);
            if free.contains(&n) {
                if m.refcount != 0 || maps != 0 {
                    errors.push(format!(
                        "free huge page {n:#x}: refcount {}, {maps} mappings",
                        m.refcount
                    ));
                }
                continue;
            }
            let expected = maps + cached.contains(&n) as u32;
            if expected == 0 {
                errors.push(format!(
                    "huge page {n:#x} is in no pool list and unused (leaked)"
                ));
            } else if m.refcount != expected {
                errors.push(format!(
                    "huge page {n:#x}: refcount {} != {maps} mappings + cache",
                    m.refcount
                ));
            }
        }
        if heads != h.nr {
            errors.push(format!(
                "{heads} huge pages in RAM, the pool counts {}",
                h.nr
            ));
        }
        if h.resv > h.free.len() as u64 || h.surplus > h.nr {
            errors.push(format!(
                "pool counters: {} free, {} reserved, {} surplus of {}",
                h.free.len(),
                h.resv,
                h.surplus,
                h.nr
            ));
        }
        let promised: u64 = h.files.values().map(|f| f.resv.len() as u64).sum();
        if promised != h.resv {
            errors.push(format!(
                "{promised} reservations held by mappings, the pool counts {}",
                h.resv
            ));
        }
        errors
    }
}

/// Linux `hugetlb_vm_op_split` for `v` split at `at`.
pub(crate) fn hugetlb_may_split(v: &Vma, at: VirtAddr) -> SysResult<()> {
    if v.is_hugetlb() && v.start < at && at < v.end && !hpage_aligned(at.0) {
        return Err(Errno::EINVAL);
    }
    Ok(())
}

/// Used by `mremap`: the lengths of a hugetlb area rounded up to huge pages, and the
/// checks Linux makes (`align_hugetlb`): both addresses on huge-page boundaries and no
/// growth (EINVAL otherwise).
pub(crate) fn hugetlb_mremap_lens(
    old: VirtAddr,
    old_len: u64,
    new_len: u64,
    new_addr: VirtAddr,
) -> SysResult<(u64, u64)> {
    let old_len = hpage_align_up(old_len).ok_or(Errno::EINVAL)?;
    let new_len = hpage_align_up(new_len).ok_or(Errno::EINVAL)?;
    if !hpage_aligned(old.0) || !hpage_aligned(new_addr.0) || new_len > old_len {
        return Err(Errno::EINVAL);
    }
    Ok((old_len, new_len))
}

const _: () = assert!(HPAGE_SIZE == 1 << HPAGE_SHIFT);
