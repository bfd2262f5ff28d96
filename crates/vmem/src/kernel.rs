//! The kernel: owns the hardware, the processes, the files and the page cache.
//!
//! Owns [`Kernel`] and the parts of the syscall surface that are not address-space or
//! file operations: `spawn`, `exit`, `sync`, the memory-access entry points (`load`,
//! `store`, ...) that run an access through the MMU and the fault handler, the frame
//! reference helpers (`get_page`/`put_page`), PTE installation and zapping, and the
//! counters. Address-space syscalls are in `mm/`, file syscalls in `fs/syscalls.rs`,
//! the page cache in `cache/`.

use crate::addr::{Pfn, PhysAddr, VirtAddr, Vpn, PAGE_SIZE};
use crate::batch::value_of;
use crate::config::MachineConfig;
use crate::errno::{Errno, SysResult};
use crate::events::{Event, Events, Observer};
use crate::fs::{Inode, InodeId, OpenFile};
use crate::hw::mmu::{self, Access, Context};
use crate::hw::phys::{FrameFlags, PhysMem};
use crate::hw::pte::Pte;
use crate::hw::tlb::Tlb;
use crate::mm::pgtable;
use crate::mm::vma::Vma;
use crate::mm::Mm;
use crate::process::{Pid, Process};
use crate::signal::{BusCode, Signal};
use crate::stats::Counters;
use std::collections::HashMap;

/// The emulated machine and its kernel.
pub struct Kernel {
    pub(crate) cfg: MachineConfig,
    pub(crate) phys: PhysMem,
    pub(crate) tlb: Tlb,
    pub(crate) events: Events,
    pub(crate) procs: Vec<Option<Process>>,
    pub(crate) inodes: Vec<Inode>,
    pub(crate) inode_index: HashMap<(u64, u64), InodeId>,
    pub(crate) files: Vec<Option<OpenFile>>,
    pub(crate) zero_pfn: Pfn,
    /// The huge zero page (512 zero frames on a 2 MiB boundary), made on first use.
    pub(crate) huge_zero: Option<Pfn>,
    /// Huge PMDs mapped now, in all processes (0: the fault path skips the huge step for
    /// areas that cannot get huge pages).
    pub(crate) huge_pmds: u64,
    /// The hugetlb pool and the files of MAP_HUGETLB mappings (`mm/hugetlb.rs`).
    pub(crate) hugetlb: crate::mm::hugetlb::Hugetlb,
    /// Counters of exited processes and of work no process caused.
    pub(crate) kstats: Counters,
    next_asid: u16,
    next_mm_id: u32,
    next_serial: u64,
    /// Read-ahead state per open file description (by serial; it outlives `close` while
    /// a mapping still uses the file, as `struct file` does).
    pub(crate) ra: std::collections::BTreeMap<u64, crate::cache::readahead::RaState>,
    pub(crate) io_buf: Vec<u8>,
    /// Stamp every access with `clock` (the exact-LRU policy needs it).
    access_clock: bool,
    clock: u32,
    pub(crate) policy: Option<Box<dyn crate::reclaim::policy::ReplacementPolicy>>,
    pub(crate) swap: Option<crate::reclaim::swap::SwapArea>,
    /// Pages reclaim evicted from the page cache, to count refaults (inode, page).
    pub(crate) shadow: std::collections::HashSet<(u32, u64)>,
    pub(crate) in_reclaim: bool,
    pub(crate) rng: u64,
    /// Bus transactions of the access in progress (only kept while observed).
    bus_log: Vec<(PhysAddr, usize, usize)>,
    /// TLB hits may take the short path (see `fast_path_allowed`).
    fast_path: bool,
    /// The short path's TLB misses may take the walk of the default geometry
    /// (`mmu::refill_x86_64_4level`): `fast_path` on a machine with 4-level x86-64 paging.
    pub(crate) fast_walk: bool,
    /// The process whose TLB hits the short path counts in `hot` rather than in its own
    /// counters (`NO_PID`: none), and its ASID: the short path then needs no process
    /// lookup. Folded into the process's counters when another process accesses memory
    /// and when it exits; added in whenever counters are read. Wider than a pid, so that
    /// `NO_PID` equals none: a caller's pid of `u32::MAX` is no process, not the hot one.
    pub(crate) hot_pid: u64,
    pub(crate) hot_asid: crate::hw::tlb::Asid,
    /// The hot process's root table (an address space keeps its root for its lifetime).
    hot_root: Pfn,
    pub(crate) hot: HotCounts,
}

/// Whether the short path must leave an access of `n` bytes at `va` to the full one: it
/// crosses a page, or no geometry translates it (one test for both: the bits of the page
/// offset and those above [`Tlb::TRANSLATABLE_VA`]).
#[inline(always)]
pub(crate) fn short_path_refuses(va: VirtAddr, n: u64) -> bool {
    va.0 & (!(crate::hw::tlb::Tlb::TRANSLATABLE_VA - 1) | (PAGE_SIZE - 1)) > PAGE_SIZE - n
}

/// No process (`Kernel::hot_pid`): no `u32` pid equals it.
const NO_PID: u64 = u64::MAX;

/// Counts of the TLB-hit short path not yet added to the process's [`Counters`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HotCounts {
    pub(crate) tlb_hits: u64,
    /// TLB misses of the short path, each with its page walk (counted in both).
    refills: u64,
    pub(crate) mapped_loads: u64,
    pub(crate) mapped_stores: u64,
}

impl HotCounts {
    fn add_to(self, c: &mut Counters) {
        c.tlb_hits += self.tlb_hits;
        c.tlb_misses += self.refills;
        c.page_walks += self.refills;
        c.mapped_loads += self.mapped_loads;
        c.mapped_stores += self.mapped_stores;
    }
}

/// What the short path's refill of a load left unfinished (`load_refilled`), packed in
/// one word so that its result comes back in registers, not through memory: an address
/// with the reason in its low 3 bits. For a fault, the leaf entry's when the walk reached
/// it (8-byte aligned; 0 for none, as frame 0 never holds a table); for a translation to
/// something other than RAM, the page's (page-aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unfinished(u64);

/// [`Unfinished`], unpacked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The default geometry's refill is off (`fast_walk`): the general translation.
    General,
    /// Translated to the page at this physical address, which is not RAM.
    NotRam(PhysAddr),
    /// The walk faulted, with the leaf entry's address when it reached the leaf table.
    Fault(mmu::HwFault, Option<PhysAddr>),
}

impl Unfinished {
    const GENERAL: Unfinished = Unfinished(0);
    const NOT_RAM: u64 = 1;
    const PROTECTION: u64 = 2;
    /// `NOT_PRESENT + level` for levels 0 to 4.
    const NOT_PRESENT: u64 = 3;
    const REASON: u64 = 7;

    #[inline(always)]
    fn fault(hw: mmu::HwFault, slot: Option<PhysAddr>) -> Unfinished {
        let reason = match hw {
            mmu::HwFault::Protection => Self::PROTECTION,
            mmu::HwFault::NotPresent { level } => {
                debug_assert!(level <= 4, "level {level}");
                Self::NOT_PRESENT + u64::from(level)
            }
        };
        let slot = slot.map_or(0, |s| s.0);
        debug_assert!(slot & Self::REASON == 0, "unaligned leaf entry {slot:#x}");
        Unfinished(slot | reason)
    }

    /// Translated to `pa`, which is not RAM.
    #[inline(always)]
    fn not_ram(pa: PhysAddr) -> Unfinished {
        Unfinished(pa.page_down().0 | Self::NOT_RAM)
    }

    fn reason(self) -> Reason {
        let addr = PhysAddr(self.0 & !Self::REASON);
        let slot = (addr.0 != 0).then_some(addr);
        match self.0 & Self::REASON {
            0 => Reason::General,
            Self::NOT_RAM => Reason::NotRam(addr),
            Self::PROTECTION => Reason::Fault(mmu::HwFault::Protection, slot),
            r => Reason::Fault(
                mmu::HwFault::NotPresent {
                    level: (r - Self::NOT_PRESENT) as u32,
                },
                slot,
            ),
        }
    }
}

/// The first `N <= 8` bytes of a little-endian value ([`value_of`] undone).
#[inline(always)]
fn bytes_of<const N: usize>(v: u64) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(&v.to_le_bytes()[..N]);
    b
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("ram_bytes", &self.phys.ram_bytes())
            .field("free_frames", &self.phys.free_frames())
            .field("processes", &self.pids())
            .field("inodes", &self.inodes.len())
            .finish()
    }
}

impl Default for Kernel {
    fn default() -> Self {
        Kernel::new(MachineConfig::default())
    }
}

impl Kernel {
    /// Boots a machine.
    ///
    /// Panics if the configured swap file cannot be created or the RAM does not fit the
    /// physical address map; [`Kernel::try_new`] reports that as an error instead.
    pub fn new(cfg: MachineConfig) -> Kernel {
        match Kernel::try_new(cfg) {
            Ok(k) => k,
            Err(e) => panic!("vmem: cannot boot the machine: {e}"),
        }
    }

    /// Boots a machine, creating its swap file if it has swap. A RAM size that reaches the
    /// geometry's device window (above 3.5 GiB on i386), or a geometry whose page size is
    /// not the one this kernel was built with, is an `InvalidInput` error.
    pub fn try_new(cfg: MachineConfig) -> std::io::Result<Kernel> {
        if let Some(why) = cfg.geometry.unfit_reason() {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
        }
        let mmio_base = cfg.geometry.mmio_base();
        if cfg.ram_bytes > mmio_base.0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} bytes of RAM do not fit below the device window at {mmio_base}",
                    cfg.ram_bytes
                ),
            ));
        }
        static SWAP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let swap = if cfg.swap_bytes >= crate::addr::PAGE_SIZE {
            let path = cfg.swap_path.clone().unwrap_or_else(|| {
                let n = SWAP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::env::temp_dir().join(format!("vmem-swap-{}-{n}", std::process::id()))
            });
            Some(crate::reclaim::swap::SwapArea::create(
                &path,
                cfg.swap_bytes,
            )?)
        } else {
            None
        };
        let mut phys = PhysMem::with_prefault(cfg.ram_bytes, cfg.prefault_ram);
        phys.set_mmio_base(mmio_base);
        phys.attach(Box::<crate::hw::device::Console>::default());
        phys.attach(Box::<crate::hw::device::Timer>::default());
        let zero_pfn = phys
            .alloc_zeroed(FrameFlags::ZERO)
            .expect("a new machine has free frames");
        let tlb = Tlb::new(cfg.tlb_sets, cfg.tlb_ways);
        let cfg_policy = cfg.policy.build();
        let mut k = Kernel {
            cfg,
            phys,
            tlb,
            events: Events::default(),
            procs: vec![None],
            inodes: Vec::new(),
            inode_index: HashMap::new(),
            files: Vec::new(),
            zero_pfn,
            huge_zero: None,
            huge_pmds: 0,
            hugetlb: Default::default(),
            kstats: Counters::default(),
            next_asid: 1,
            next_mm_id: 1,
            next_serial: 1,
            ra: std::collections::BTreeMap::new(),
            io_buf: Vec::new(),
            access_clock: cfg_policy.needs_access_clock(),
            policy: Some(cfg_policy),
            swap,
            shadow: std::collections::HashSet::new(),
            in_reclaim: false,
            rng: 0x2545_f491_4f6c_dd1d,
            bus_log: Vec::new(),
            fast_path: false,
            fast_walk: false,
            clock: 0,
            hot_pid: NO_PID,
            hot_asid: 0,
            hot_root: Pfn(0),
            hot: HotCounts::default(),
        };
        k.set_fast_path();
        let nr = k.cfg.nr_hugepages;
        k.set_nr_hugepages(nr);
        Ok(k)
    }

    /// The configuration it was booted with.
    pub fn config(&self) -> &MachineConfig {
        &self.cfg
    }

    /// Sets the event observer (or clears it with `None`); returns the previous one.
    pub fn set_observer(&mut self, o: Option<Box<dyn Observer>>) -> Option<Box<dyn Observer>> {
        let old = self.events.set_observer(o);
        self.set_fast_path();
        old
    }

    fn set_fast_path(&mut self) {
        self.fast_path = self.fast_path_allowed();
        self.fast_walk =
            self.fast_path && self.cfg.geometry == crate::config::PagingGeometry::X86_64_4LEVEL;
    }

    /// Whether TLB hits may skip the full translation path: paging, no observer, and no
    /// per-access clock (exact LRU).
    fn fast_path_allowed(&self) -> bool {
        !self.segmented()
            && !self.events.enabled()
            && !self.access_clock
            && self.cfg.geometry.format == crate::hw::pte_format::PteFormat::X86_64
    }

    /// Creates a process with an empty address space and no open files.
    pub fn spawn(&mut self) -> SysResult<Pid> {
        let root = self
            .alloc_frame_zeroed(FrameFlags::PAGE_TABLE)
            .ok_or(Errno::ENOMEM)?;
        self.phys.meta_mut(root).refcount = 1;
        let pid = Pid(self.procs.len() as u32);
        let asid = self.next_asid;
        self.next_asid = self.next_asid.wrapping_add(1).max(1);
        self.tlb.flush_asid(asid);
        let id = self.next_mm_id;
        self.next_mm_id += 1;
        self.procs.push(Some(Process {
            pid,
            mm: Mm {
                vmas: crate::mm::VmaTree::default(),
                root,
                asid,
                id,
                rss_file: 0,
                rss_anon: 0,
                pt_frames: 1,
                mmap_base: self.cfg.geometry.mmap_window() - (128 << 20),
                start_brk: VirtAddr(0),
                brk: VirtAddr(0),
                thp: std::collections::BTreeMap::new(),
            },
            fds: Vec::new(),
            stats: Counters::default(),
            segments: Vec::new(),
        }));
        Ok(pid)
    }

    /// A fresh identity for an open file, a shmem object or an anon_vma (never reused).
    pub(crate) fn next_file_serial(&mut self) -> u64 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }

    /// One past the highest user address (Linux `TASK_SIZE`), from the paging geometry:
    /// 128 TiB with 4-level paging, 64 PiB with 5-level, 3 GiB on i386, 256 GiB on Sv39
    /// (see [`crate::config::PagingGeometry::task_size`]). `mmap` still places mappings
    /// below 128 TiB unless a hint asks for more, as Linux does.
    pub fn task_size(&self) -> u64 {
        self.cfg.geometry.task_size()
    }

    /// Live process ids.
    pub fn pids(&self) -> Vec<Pid> {
        self.procs.iter().flatten().map(|p| p.pid).collect()
    }

    /// Whether `pid` names a live process.
    pub fn is_alive(&self, pid: Pid) -> bool {
        matches!(self.procs.get(pid.0 as usize), Some(Some(_)))
    }

    pub(crate) fn proc_ref(&self, pid: Pid) -> SysResult<&Process> {
        self.procs
            .get(pid.0 as usize)
            .and_then(|p| p.as_ref())
            .ok_or(Errno::ESRCH)
    }

    pub(crate) fn proc_mut(&mut self, pid: Pid) -> SysResult<&mut Process> {
        self.procs
            .get_mut(pid.0 as usize)
            .and_then(|p| p.as_mut())
            .ok_or(Errno::ESRCH)
    }

    #[inline]
    pub(crate) fn live(&mut self, pid: Pid) -> &mut Process {
        live_proc(&mut self.procs, pid)
    }

    /// The process's address space (VMAs, counters).
    pub fn mm(&self, pid: Pid) -> SysResult<&Mm> {
        Ok(&self.proc_ref(pid)?.mm)
    }

    /// The VMAs of a process, in address order.
    pub fn vmas(&self, pid: Pid) -> SysResult<Vec<Vma>> {
        Ok(self.mm(pid)?.vmas.values().copied().collect())
    }

    /// The process's address space as `/proc/pid/maps` prints it.
    pub fn maps(&self, pid: Pid) -> SysResult<String> {
        let mut s = String::new();
        for v in self.mm(pid)?.vmas.values() {
            let (path, dev_ino) = match v.inode().or(v.anon_file) {
                Some(i) => {
                    let ino = &self.inodes[i.0 as usize];
                    let name = if ino.kind == crate::fs::FileKind::Shmem {
                        "/dev/zero (deleted)".to_string()
                    } else {
                        ino.path.clone()
                    };
                    (name, ino.dev_ino)
                }
                None if v.is_hugetlb() => {
                    ("/anon_hugepage (deleted)".to_string(), (0, v.file_serial))
                }
                None => match v.special {
                    crate::mm::vma::Special::Stack => ("[stack]".to_string(), (0, 0)),
                    crate::mm::vma::Special::Heap => ("[heap]".to_string(), (0, 0)),
                    crate::mm::vma::Special::None => (String::new(), (0, 0)),
                },
            };
            let off = if v.is_anon() && v.anon_file.is_none() && !v.is_hugetlb() {
                0
            } else {
                v.pgoff.byte_offset()
            };
            // Linux show_map_vma: "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu ", then a
            // name padded to column 73 (seq_pad). The host's st_dev is decoded as glibc's
            // major()/minor() do.
            let dev = dev_ino.0;
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            let line = format!(
                "{:08x}-{:08x} {} {:08x} {:02x}:{:02x} {} ",
                v.start.0,
                v.end.0,
                v.perms(),
                off,
                major,
                minor,
                dev_ino.1
            );
            s.push_str(&line);
            if !path.is_empty() {
                s.push_str(&" ".repeat(72usize.saturating_sub(line.len())));
                s.push(' ');
                s.push_str(&path);
            }
            s.push('\n');
        }
        Ok(s)
    }

    /// A process's counters.
    pub fn process_stats(&self, pid: Pid) -> SysResult<Counters> {
        let mut c = self.proc_ref(pid)?.stats;
        if self.is_hot(pid) {
            self.hot.add_to(&mut c);
        }
        Ok(c)
    }

    /// The machine's counters: every process, live or exited, plus the kernel's own.
    pub fn stats(&self) -> Counters {
        let mut c = self.kstats;
        for p in self.procs.iter().flatten() {
            c += p.stats;
        }
        // The hot process is alive (exit folds its counts first).
        self.hot.add_to(&mut c);
        c
    }

    /// Adds the short path's pending counts to the hot process and makes `pid` (a live
    /// process) the hot one.
    #[cold]
    #[inline(never)]
    fn make_hot(&mut self, pid: Pid) {
        self.fold_hot();
        if let Some(Some(p)) = self.procs.get(pid.0 as usize) {
            self.hot_pid = u64::from(pid.0);
            self.hot_asid = p.mm.asid;
            self.hot_root = p.mm.root;
        }
    }

    /// Whether `pid` is the hot process of the short path (`hot_pid` is wider than a pid,
    /// so that `NO_PID` is no pid).
    #[inline(always)]
    fn is_hot(&self, pid: Pid) -> bool {
        u64::from(pid.0) == self.hot_pid
    }

    /// Makes `pid` the hot process of the short path if it can be; whether it is.
    #[inline(always)]
    pub(crate) fn hot_or_make(&mut self, pid: Pid) -> bool {
        if !self.is_hot(pid) {
            self.make_hot(pid);
            return self.is_hot(pid);
        }
        true
    }

    /// Adds the short path's pending counts to the hot process; no process is hot after.
    fn fold_hot(&mut self) {
        let hot = std::mem::take(&mut self.hot);
        if let Some(Some(p)) = self.procs.get_mut(self.hot_pid as usize) {
            hot.add_to(&mut p.stats);
        }
        // No pid equals `NO_PID`, so with no hot process the short path is never taken
        // (it would walk the tables of `hot_root`, which may be gone). ASID 0, which no
        // process has, is a second guard: a TLB lookup with it misses.
        self.hot_pid = NO_PID;
        self.hot_asid = 0;
    }

    /// Frames in use (allocated, including page tables, the zero page and frame 0).
    pub fn frames_in_use(&self) -> u64 {
        self.phys.total_frames() - self.phys.free_frames()
    }

    /// Free frames.
    pub fn free_frames(&self) -> u64 {
        self.phys.free_frames()
    }

    /// Total frames of RAM.
    pub fn total_frames(&self) -> u64 {
        self.phys.total_frames()
    }

    /// Pages of `path`'s file in the page cache (0 if the kernel has never opened it).
    pub fn cached_pages(&self, path: &std::path::Path) -> u64 {
        let Ok(md) = std::fs::metadata(path) else {
            return 0;
        };
        use std::os::unix::fs::MetadataExt;
        self.inode_index
            .get(&(md.dev(), md.ino()))
            .map_or(0, |i| self.inodes[i.0 as usize].pages.len() as u64)
    }

    /// The physical frame mapped at `va` in `pid`, if any (a look at the tables, no access).
    pub fn frame_of(&self, pid: Pid, va: VirtAddr) -> Option<Pfn> {
        let p = self.proc_ref(pid).ok()?;
        let pte = pgtable::read_pte(&self.phys, &self.cfg.geometry, p.mm.root, va);
        pte.has_frame().then(|| pte.pfn())
    }

    /// The leaf page-table entry for `va` in `pid` (not present if none).
    pub fn pte_of(&self, pid: Pid, va: VirtAddr) -> Pte {
        match self.proc_ref(pid) {
            Ok(p) => pgtable::read_pte(&self.phys, &self.cfg.geometry, p.mm.root, va),
            Err(_) => Pte::NONE,
        }
    }

    /// The PMD entry (level 1) for `va` in `pid` as the tables hold it: a huge page's own
    /// entry (PS bit set), a pointer to a page table, or not present.
    pub fn pmd_of(&self, pid: Pid, va: VirtAddr) -> Pte {
        self.proc_ref(pid)
            .ok()
            .and_then(|p| pgtable::pmd_slot(&self.phys, &self.cfg.geometry, p.mm.root, va))
            .map_or(Pte::NONE, |s| self.cfg.geometry.read_table(&self.phys, s))
    }

    /// The reference count of a frame (mappings plus page-cache membership).
    pub fn frame_refcount(&self, pfn: Pfn) -> u32 {
        if !self.phys.is_ram(pfn) {
            return 0;
        }
        self.phys.meta(pfn).refcount
    }

    // ----- memory access -------------------------------------------------------------

    /// Translates `va` for `access`, handling faults until the access can proceed.
    #[inline]
    pub(crate) fn translate(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, Signal> {
        if self.segmented() {
            return self.translate_segmented(pid, va, access);
        }
        self.translate_paged(pid, va, access)
    }

    /// Translates `va` through the page tables, handling faults.
    #[inline]
    pub(crate) fn translate_paged(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, Signal> {
        // The entry format is chosen once, outside the retry loop (see `mmu::translate_as`).
        if self.cfg.geometry.format == crate::hw::pte_format::PteFormat::X86_64 {
            match self.mmu_translate::<true>(pid, va, access)? {
                Ok(pa) => Ok(self.stamp_access(pa)),
                Err(hw) => self.fault_and_retry::<true>(pid, va, access, hw, None),
            }
        } else {
            match self.mmu_translate::<false>(pid, va, access)? {
                Ok(pa) => Ok(self.stamp_access(pa)),
                Err(hw) => self.fault_and_retry::<false>(pid, va, access, hw, None),
            }
        }
    }

    /// One MMU translation for `pid` (no fault handling); `Err` when the process does not
    /// exist (any more): an access by it has no mapping at all. `NATIVE`: x86-64 entries,
    /// walked inline with no decoding.
    #[inline]
    fn mmu_translate<const NATIVE: bool>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
    ) -> Result<Result<PhysAddr, mmu::HwFault>, Signal> {
        let Some(Some(p)) = self.procs.get_mut(pid.0 as usize) else {
            return Err(Signal::Segv {
                addr: va,
                code: crate::signal::SegvCode::MapErr,
            });
        };
        let ctx = Context {
            asid: p.mm.asid,
            root: p.mm.root,
        };
        Ok(mmu::translate_as::<NATIVE>(
            &mut self.phys,
            &mut self.tlb,
            &self.cfg.geometry,
            ctx,
            va,
            access,
            &mut self.events,
            &mut p.stats,
        ))
    }

    /// Stamps the frame with the access clock when the policy needs one (exact LRU).
    #[inline(always)]
    fn stamp_access(&mut self, pa: PhysAddr) -> PhysAddr {
        if self.access_clock {
            self.phys.meta_mut(pa.pfn()).last_use = self.clock;
            self.clock = self.clock.wrapping_add(1);
        }
        pa
    }

    /// Handles the fault `hw` the MMU reported for `access` at `va` and retries the
    /// translation, until it succeeds or the fault becomes a signal.
    #[inline(never)]
    pub(crate) fn fault_and_retry<const NATIVE: bool>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        mut hw: mmu::HwFault,
        mut slot: Option<PhysAddr>,
    ) -> Result<PhysAddr, Signal> {
        // Without an NX bit the CPU cannot tell a fetch from a load, and Linux sees a read
        // fault (non-PAE i386: PROT_READ implies executable).
        let fault_access = if access == Access::Exec && !self.cfg.geometry.format.has_nx() {
            Access::Read
        } else {
            access
        };
        let mut tries = 0;
        loop {
            tries += 1;
            if tries > 4 {
                // The handler claimed success but the MMU still faults: a kernel bug.
                // Report it as a bus error rather than spin.
                debug_assert!(false, "fault at {va} for {access:?} not resolved: {hw:?}");
                return Err(self.deliver(
                    pid,
                    Signal::Bus {
                        addr: va,
                        code: BusCode::ObjErr,
                    },
                ));
            }
            self.handle_mm_fault(pid, va, fault_access, hw, slot.take())?;
            match self.retry_translate::<NATIVE>(pid, va, access)? {
                Ok(pa) => return Ok(self.stamp_access(pa)),
                Err(h) => hw = h,
            }
        }
    }

    /// The translation after a fault was handled: [`Kernel::mmu_translate`], or for the
    /// hot process on the default geometry with nobody observing, its TLB lookup and the
    /// refill of the short path (`refill_hot`), which count the same.
    #[inline(always)]
    fn retry_translate<const NATIVE: bool>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
    ) -> Result<Result<PhysAddr, mmu::HwFault>, Signal> {
        if NATIVE
            && self.fast_walk
            && self.is_hot(pid)
            && self.tlb.lookup(self.hot_asid, va.vpn()).is_none()
        {
            return Ok(self.refill_hot(va, access).map_err(|(hw, _)| hw));
        }
        self.mmu_translate::<NATIVE>(pid, va, access)
    }

    /// The translation of the fast path (see `fast_path_allowed`) after its TLB lookup
    /// found no entry: the walk and fill without a second lookup, then the fault handling
    /// of [`Kernel::translate_paged`]. Counts exactly what `translate_paged` counts; on
    /// success with RAM behind it, `done` finishes the access with the process's counters
    /// at hand (one process lookup for the whole access).
    #[inline(always)]
    fn translate_fast_missed<R>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
        done: impl FnOnce(&mut PhysMem, PhysAddr, &mut Counters) -> Option<R>,
    ) -> Result<Result<R, PhysAddr>, Signal> {
        let Some(Some(p)) = self.procs.get_mut(pid.0 as usize) else {
            return Err(Signal::Segv {
                addr: va,
                code: crate::signal::SegvCode::MapErr,
            });
        };
        let ctx = Context {
            asid: p.mm.asid,
            root: p.mm.root,
        };
        // The fast path runs only on x86-64 entries (`fast_path_allowed`).
        let r = mmu::translate_missed::<true>(
            &mut self.phys,
            &mut self.tlb,
            &self.cfg.geometry,
            ctx,
            va,
            access,
            &mut self.events,
            &mut p.stats,
        );
        let pa = match r {
            Ok(pa) => {
                if !self.access_clock {
                    if let Some(v) = done(&mut self.phys, pa, &mut p.stats) {
                        return Ok(Ok(v));
                    }
                }
                self.stamp_access(pa)
            }
            Err(hw) => self.fault_and_retry::<true>(pid, va, access, hw, None)?,
        };
        Ok(Err(pa))
    }

    /// The fast path of an `N`-byte load within one page: `None` to take the full path.
    /// A TLB hit on RAM with nobody watching costs one process lookup, one TLB set scan
    /// and one arena read; a TLB miss goes straight to the walk.
    #[inline(always)]
    fn load_fast<const N: usize>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
    ) -> Option<Result<[u8; N], Signal>> {
        if !self.fast_path || short_path_refuses(va, N as u64) {
            return None;
        }
        if !self.hot_or_make(pid) {
            return None;
        }
        match self.tlb.lookup_translatable(self.hot_asid, va.vpn()) {
            // Any cached translation allows a load.
            Some(e) => {
                let b = self.phys.ram_array::<N>(e.pa(va.page_offset()))?;
                self.hot.tlb_hits += 1;
                self.hot.mapped_loads += N as u64;
                Some(Ok(b))
            }
            None => Some(match self.load_refilled::<N>(va) {
                Ok(v) => Ok(bytes_of(v)),
                Err(u) => self.load_unfinished(pid, va, u),
            }),
        }
    }

    /// The short path's TLB miss of a load by the hot process (`load_fast`): the refill
    /// and the read when the refill succeeds to RAM (the `N <= 8` bytes as a
    /// little-endian value), which is all it does itself. When the paging-structure cache
    /// holds the leaf table it calls nothing, and its result fits in two registers, so
    /// that the common case saves and restores few registers and passes nothing through
    /// memory; what it leaves unfinished, [`Kernel::load_unfinished`] finishes.
    #[inline(never)]
    fn load_refilled<const N: usize>(&mut self, va: VirtAddr) -> Result<u64, Unfinished> {
        if !self.fast_walk {
            return Err(Unfinished::GENERAL);
        }
        match self.refill_hot(va, Access::Read) {
            Ok(pa) => match self.phys.ram_array::<N>(pa) {
                Some(b) => {
                    self.hot.mapped_loads += N as u64;
                    Ok(value_of(&b))
                }
                None => Err(Unfinished::not_ram(pa)),
            },
            Err((hw, slot)) => Err(Unfinished::fault(hw, slot)),
        }
    }

    /// The rest of a load [`Kernel::load_refilled`] left unfinished: the general
    /// translation, the load from a device, or the fault handling and the load.
    #[inline(never)]
    fn load_unfinished<const N: usize>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        u: Unfinished,
    ) -> Result<[u8; N], Signal> {
        match u.reason() {
            Reason::General => self.load_missed_general(pid, va),
            Reason::NotRam(page) => Ok(self.load_after_fault(pid, page.add(va.page_offset()))),
            Reason::Fault(hw, slot) => {
                let pa = self.fault_and_retry::<true>(pid, va, Access::Read, hw, slot)?;
                Ok(self.load_after_fault(pid, pa))
            }
        }
    }

    /// A load's TLB miss without the default geometry's refill (`fast_walk` off).
    #[inline(never)]
    fn load_missed_general<const N: usize>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
    ) -> Result<[u8; N], Signal> {
        let r = self.translate_fast_missed(pid, va, Access::Read, |phys, pa, stats| {
            let b = phys.ram_array::<N>(pa)?;
            stats.mapped_loads += N as u64;
            Some(b)
        })?;
        // After a fault, or not RAM.
        match r {
            Ok(b) => Ok(b),
            Err(pa) => Ok(self.load_after_fault(pid, pa)),
        }
    }

    /// The end of a load whose translation faulted, or that is not to RAM.
    fn load_after_fault<const N: usize>(&mut self, pid: Pid, pa: PhysAddr) -> [u8; N] {
        let mut b = [0u8; N];
        match self.phys.ram_array::<N>(pa) {
            Some(r) => b = r,
            None => self.phys.cpu_read(pa, &mut b),
        }
        self.live(pid).stats.mapped_loads += N as u64;
        b
    }

    /// The TLB refill of the hot process for `va` on the default geometry (`fast_walk`),
    /// after its lookup missed: counts the miss and the walk as `translate_missed` does.
    #[inline(always)]
    pub(crate) fn refill_hot(
        &mut self,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, (mmu::HwFault, Option<PhysAddr>)> {
        self.hot.refills += 1;
        let ctx = Context {
            asid: self.hot_asid,
            root: self.hot_root,
        };
        mmu::refill_x86_64_4level(&mut self.phys, &mut self.tlb, ctx, va, access)
    }

    /// The fast path of an `N`-byte store within one page: `None` to take the full path
    /// (also for a TLB entry that does not allow the store without a walk or a fault).
    #[inline(always)]
    fn store_fast<const N: usize>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        b: [u8; N],
    ) -> Option<Result<(), Signal>> {
        if !self.fast_path || short_path_refuses(va, N as u64) {
            return None;
        }
        if !self.hot_or_make(pid) {
            return None;
        }
        match self.tlb.lookup_translatable(self.hot_asid, va.vpn()) {
            Some(e) if mmu::tlb_allows(&e, Access::Write) => {
                if !self.phys.ram_write_array(e.pa(va.page_offset()), b) {
                    return None;
                }
                self.hot.tlb_hits += 1;
                self.hot.mapped_stores += N as u64;
                Some(Ok(()))
            }
            Some(_) => None,
            None => Some(self.store_missed(pid, va, b)),
        }
    }

    #[inline(never)]
    fn store_missed<const N: usize>(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        b: [u8; N],
    ) -> Result<(), Signal> {
        if self.fast_walk {
            let pa = match self.refill_hot(va, Access::Write) {
                Ok(pa) => {
                    if self.phys.ram_write_array(pa, b) {
                        self.hot.mapped_stores += N as u64;
                        return Ok(());
                    }
                    pa
                }
                Err((hw, slot)) => {
                    self.fault_and_retry::<true>(pid, va, Access::Write, hw, slot)?
                }
            };
            self.store_after_fault(pid, pa, b);
            return Ok(());
        }
        let r = self.translate_fast_missed(pid, va, Access::Write, |phys, pa, stats| {
            phys.ram_write_array(pa, b).then(|| {
                stats.mapped_stores += N as u64;
            })
        })?;
        // After a fault, or not RAM.
        if let Err(pa) = r {
            self.store_after_fault(pid, pa, b);
        }
        Ok(())
    }

    /// The end of a store whose translation faulted, or that is not to RAM.
    fn store_after_fault<const N: usize>(&mut self, pid: Pid, pa: PhysAddr, b: [u8; N]) {
        if !self.phys.ram_write_array(pa, b) {
            self.phys.cpu_write(pa, &b);
        }
        self.live(pid).stats.mapped_stores += N as u64;
    }

    pub(crate) fn deliver(&mut self, pid: Pid, signal: Signal) -> Signal {
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.signals += 1;
        }
        self.events.emit(|| Event::Signal { pid, signal });
        signal
    }

    fn access(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        len: usize,
        access: Access,
        mut each: impl FnMut(&mut PhysMem, PhysAddr, usize, usize),
    ) -> Result<(), Signal> {
        self.bus_log.clear();
        let mut done = 0usize;
        while done < len {
            let cur = va.checked_add(done as u64).ok_or(Signal::Segv {
                addr: va,
                code: crate::signal::SegvCode::MapErr,
            })?;
            let chunk = ((PAGE_SIZE - cur.page_offset()) as usize).min(len - done);
            let pa = self.translate(pid, cur, access)?;
            each(&mut self.phys, pa, done, chunk);
            if self.events.enabled() {
                self.bus_log.push((pa, done, chunk));
            }
            done += chunk;
        }
        Ok(())
    }

    /// Emits the bus transactions of an access that just completed, with the bytes that
    /// crossed the data bus (observed runs only).
    #[cold]
    fn trace_bus(&mut self, write: bool, bytes: &[u8]) {
        for (pa, off, len) in std::mem::take(&mut self.bus_log) {
            let mut b = [0u8; 8];
            let w = len.min(8);
            b[..w].copy_from_slice(&bytes[off..off + w]);
            let data = u64::from_le_bytes(b);
            let target = self.phys.target(pa).unwrap_or("nothing");
            self.events.emit(|| Event::Bus {
                write,
                pa,
                width: len,
                data,
                target,
            });
        }
    }

    /// Loads `buf.len()` bytes at `va` (any alignment, may span pages).
    pub fn load(&mut self, pid: Pid, va: VirtAddr, buf: &mut [u8]) -> Result<(), Signal> {
        let n = buf.len();
        self.access(pid, va, n, Access::Read, |phys, pa, off, len| {
            phys.cpu_read(pa, &mut buf[off..off + len])
        })?;
        if self.events.enabled() {
            self.trace_bus(false, buf);
        }
        // A process that is not alive gets here only with nothing loaded (0 bytes).
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.mapped_loads += n as u64;
        }
        Ok(())
    }

    /// Loads `len` bytes at `va` into a new vector.
    pub fn load_vec(&mut self, pid: Pid, va: VirtAddr, len: usize) -> Result<Vec<u8>, Signal> {
        let mut v = vec![0; len];
        self.load(pid, va, &mut v)?;
        Ok(v)
    }

    /// Fetches `buf.len()` bytes at `va` as instructions (needs PROT_EXEC).
    pub fn fetch(&mut self, pid: Pid, va: VirtAddr, buf: &mut [u8]) -> Result<(), Signal> {
        let n = buf.len();
        self.access(pid, va, n, Access::Exec, |phys, pa, off, len| {
            phys.cpu_read(pa, &mut buf[off..off + len])
        })?;
        if self.events.enabled() {
            self.trace_bus(false, buf);
        }
        Ok(())
    }

    /// Stores `data` at `va` (any alignment, may span pages; a fault part-way leaves the
    /// bytes before it stored, as on real hardware).
    pub fn store(&mut self, pid: Pid, va: VirtAddr, data: &[u8]) -> Result<(), Signal> {
        self.access(pid, va, data.len(), Access::Write, |phys, pa, off, len| {
            phys.cpu_write(pa, &data[off..off + len])
        })?;
        if self.events.enabled() {
            self.trace_bus(true, data);
        }
        // A process that is not alive gets here only with nothing stored (0 bytes).
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.mapped_stores += data.len() as u64;
        }
        Ok(())
    }

    /// Loads a little-endian u64. The fast path: one translation, no allocation.
    #[inline]
    pub fn load_u64(&mut self, pid: Pid, va: VirtAddr) -> Result<u64, Signal> {
        if let Some(r) = self.load_fast::<8>(pid, va) {
            return r.map(u64::from_le_bytes);
        }
        self.load_u64_slow(pid, va)
    }

    fn load_u64_slow(&mut self, pid: Pid, va: VirtAddr) -> Result<u64, Signal> {
        if va.page_offset() <= PAGE_SIZE - 8 {
            let pa = self.translate(pid, va, Access::Read)?;
            let v = match self.phys.ram_u64(pa) {
                Some(v) => v,
                None => self.phys.cpu_read_u64(pa),
            };
            self.live(pid).stats.mapped_loads += 8;
            if self.events.enabled() {
                self.bus_log.push((pa, 0, 8));
                self.trace_bus(false, &v.to_le_bytes());
            }
            return Ok(v);
        }
        let mut b = [0u8; 8];
        self.load(pid, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Stores a little-endian u64.
    #[inline]
    pub fn store_u64(&mut self, pid: Pid, va: VirtAddr, v: u64) -> Result<(), Signal> {
        if let Some(r) = self.store_fast(pid, va, v.to_le_bytes()) {
            return r;
        }
        self.store_u64_slow(pid, va, v)
    }

    fn store_u64_slow(&mut self, pid: Pid, va: VirtAddr, v: u64) -> Result<(), Signal> {
        if va.page_offset() <= PAGE_SIZE - 8 {
            let pa = self.translate(pid, va, Access::Write)?;
            self.live(pid).stats.mapped_stores += 8;
            self.phys.cpu_write_u64(pa, v);
            if self.events.enabled() {
                self.bus_log.push((pa, 0, 8));
                self.trace_bus(true, &v.to_le_bytes());
            }
            return Ok(());
        }
        self.store(pid, va, &v.to_le_bytes())
    }

    /// Loads a byte.
    #[inline]
    pub fn load_u8(&mut self, pid: Pid, va: VirtAddr) -> Result<u8, Signal> {
        if let Some(r) = self.load_fast::<1>(pid, va) {
            return r.map(|b| b[0]);
        }
        let mut b = [0u8; 1];
        self.load(pid, va, &mut b)?;
        Ok(b[0])
    }
    /// Stores a byte.
    #[inline]
    pub fn store_u8(&mut self, pid: Pid, va: VirtAddr, v: u8) -> Result<(), Signal> {
        if let Some(r) = self.store_fast(pid, va, [v]) {
            return r;
        }
        self.store(pid, va, &[v])
    }
    /// Loads a little-endian u16.
    #[inline]
    pub fn load_u16(&mut self, pid: Pid, va: VirtAddr) -> Result<u16, Signal> {
        if let Some(r) = self.load_fast::<2>(pid, va) {
            return r.map(u16::from_le_bytes);
        }
        let mut b = [0u8; 2];
        self.load(pid, va, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Stores a little-endian u16.
    #[inline]
    pub fn store_u16(&mut self, pid: Pid, va: VirtAddr, v: u16) -> Result<(), Signal> {
        if let Some(r) = self.store_fast(pid, va, v.to_le_bytes()) {
            return r;
        }
        self.store(pid, va, &v.to_le_bytes())
    }
    /// Loads a little-endian u32.
    #[inline]
    pub fn load_u32(&mut self, pid: Pid, va: VirtAddr) -> Result<u32, Signal> {
        if let Some(r) = self.load_fast::<4>(pid, va) {
            return r.map(u32::from_le_bytes);
        }
        let mut b = [0u8; 4];
        self.load(pid, va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Stores a little-endian u32.
    #[inline]
    pub fn store_u32(&mut self, pid: Pid, va: VirtAddr, v: u32) -> Result<(), Signal> {
        if let Some(r) = self.store_fast(pid, va, v.to_le_bytes()) {
            return r;
        }
        self.store(pid, va, &v.to_le_bytes())
    }

    // ----- frames ---------------------------------------------------------------------

    /// Allocates a frame, dropping clean unmapped page-cache pages if RAM is full.
    pub(crate) fn alloc_frame(&mut self, flags: u16) -> Option<Pfn> {
        self.alloc_frame_with(flags, PhysMem::alloc)
    }

    /// Allocates a zeroed frame as [`Kernel::alloc_frame`] does (a frame never used since
    /// boot is zero already and is not cleared again).
    pub(crate) fn alloc_frame_zeroed(&mut self, flags: u16) -> Option<Pfn> {
        self.alloc_frame_with(flags, PhysMem::alloc_zeroed)
    }

    #[inline]
    fn alloc_frame_with(
        &mut self,
        flags: u16,
        alloc: fn(&mut PhysMem, u16) -> Option<Pfn>,
    ) -> Option<Pfn> {
        let (low, high) = self.watermarks();
        let free = self.phys.free_frames();
        if free < low {
            self.reclaim((high - free) as usize);
        }
        if let Some(p) = alloc(&mut self.phys, flags) {
            return Some(p);
        }
        self.reclaim(32);
        alloc(&mut self.phys, flags)
    }

    /// The devices on the physical bus: (name, base address, bytes of registers).
    pub fn devices(&self) -> Vec<(&'static str, PhysAddr, u64)> {
        self.phys.devices()
    }

    /// Attaches another device; it appears as `/dev/vmem/<name>`. Returns its base.
    pub fn attach_device(&mut self, dev: Box<dyn crate::hw::device::Device>) -> PhysAddr {
        self.phys.attach(dev)
    }

    /// What the console device printed since the last call.
    pub fn console_output(&mut self) -> Vec<u8> {
        self.phys
            .device_mut("console")
            .map(|d| d.take_output())
            .unwrap_or_default()
    }

    /// The low and high free-frame watermarks.
    pub fn watermarks(&self) -> (u64, u64) {
        let total = self.phys.total_frames();
        let low = if self.cfg.watermark_low > 0 {
            self.cfg.watermark_low
        } else {
            (total / 128).max(8).min(total / 4)
        };
        let high = if self.cfg.watermark_high > low {
            self.cfg.watermark_high
        } else {
            2 * low
        };
        (low, high.min(total / 2).max(low))
    }

    /// The swap file, if the machine has swap: (path, slots, slots in use).
    pub fn swap_usage(&self) -> Option<(std::path::PathBuf, u64, u64)> {
        self.swap
            .as_ref()
            .map(|s| (s.path().to_path_buf(), s.slots(), s.used()))
    }

    /// The name of the replacement policy.
    pub fn policy_name(&self) -> &'static str {
        self.policy.as_ref().map_or("none", |p| p.name())
    }

    /// Takes a reference on a frame (no-op for the zero page).
    pub(crate) fn get_page(&mut self, pfn: Pfn) {
        let m = self.phys.meta_mut(pfn);
        if !m.flags.has(FrameFlags::ZERO) {
            m.refcount += 1;
        }
    }

    /// Drops a reference; frees the frame at zero.
    pub(crate) fn put_page(&mut self, pfn: Pfn) {
        let m = self.phys.meta_mut(pfn);
        if m.flags.has(FrameFlags::ZERO) {
            return;
        }
        debug_assert!(m.refcount > 0, "put_page on free frame {pfn:?}");
        m.refcount -= 1;
        if m.refcount == 0 {
            self.phys.free(pfn);
        }
    }

    /// Writes the leaf PTE for `va`, allocating tables; flushes the old translation.
    /// Returns the physical address of the entry.
    pub(crate) fn set_pte(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        pte: Pte,
    ) -> Result<PhysAddr, pgtable::OutOfFrames> {
        let geom = self.cfg.geometry;
        let mm = &self.live(pid).mm;
        let root = mm.root;
        if !mm.thp.is_empty() {
            // A page of a huge page changes alone: split the huge page first.
            let haddr = va.0 & !(crate::mm::huge_memory::HPAGE_SIZE - 1);
            if mm.thp.contains_key(&haddr) {
                self.split_huge_pmd(pid, VirtAddr(haddr));
            }
        }
        let (slot, new_tables) = match pgtable::pte_slot_alloc(&mut self.phys, &geom, root, va) {
            Ok(r) => r,
            Err(pgtable::OutOfFrames) => {
                // The same reclaim that serves page allocations (policy, write-back, swap).
                self.reclaim(32);
                pgtable::pte_slot_alloc(&mut self.phys, &geom, root, va)?
            }
        };
        self.live(pid).mm.pt_frames += new_tables;
        self.set_pte_at(pid, va, slot, pte);
        Ok(slot)
    }

    /// Writes the leaf PTE for `va` at `slot`, the entry's physical address (found by a
    /// walk of `pid`'s tables during this fault: tables are only freed at exit, so it is
    /// still the entry for `va`); flushes the old translation if it was present.
    pub(crate) fn set_pte_at(&mut self, pid: Pid, va: VirtAddr, slot: PhysAddr, pte: Pte) {
        let geom = self.cfg.geometry;
        let old = geom.read_pte(&self.phys, slot);
        geom.write_pte(&mut self.phys, slot, pte);
        let asid = self.live(pid).mm.asid;
        // A not-present entry is never in the TLB (the TLB caches successful translations
        // only, and whatever made the entry not present flushed it): nothing to flush.
        if old.present() {
            self.tlb.flush_page(asid, va.vpn());
        } else {
            debug_assert!(
                self.tlb.lookup(asid, va.vpn()).is_none(),
                "{va}: stale TLB entry"
            );
        }
        self.events.emit(|| Event::PteInstall {
            pid,
            va,
            pte,
            raw: geom.raw_pte(pte),
        });
    }

    /// The physical address of the leaf entry for `va` in `pid`, if its tables exist.
    pub(crate) fn pte_slot_of(&self, pid: Pid, va: VirtAddr) -> Option<PhysAddr> {
        let p = self.proc_ref(pid).ok()?;
        pgtable::pte_slot(&self.phys, &self.cfg.geometry, p.mm.root, va)
    }

    /// Removes every mapping in `[start, end)` of `pid` (which must lie in one VMA or
    /// holes): drops the frame references and flushes the TLB. Linux `zap_page_range`.
    pub(crate) fn zap_range(&mut self, pid: Pid, start: VirtAddr, end: VirtAddr) {
        self.split_huge_pmds(pid, start, end, true);
        let geom = self.cfg.geometry;
        let p = self.live(pid);
        let root = p.mm.root;
        let asid = p.mm.asid;
        let mut freed: Vec<(VirtAddr, Pfn)> = Vec::new();
        let mut slots: Vec<u64> = Vec::new();
        let mut flush_only: Vec<VirtAddr> = Vec::new();
        pgtable::for_each_pte(
            &mut self.phys,
            &geom,
            root,
            start,
            end,
            &mut |phys, va, slot, pte| {
                geom.write_pte(phys, slot, Pte::NONE);
                if pte.special() {
                    // A device page: nothing to release, but the TLB must forget it.
                    flush_only.push(va);
                } else if pte.has_frame() {
                    freed.push((va, pte.pfn()));
                } else if pte.is_swap() {
                    slots.push(pte.swap_slot());
                }
            },
        );
        if let Some(swap) = self.swap.as_mut() {
            for s in slots {
                swap.put(s);
            }
        }
        for va in flush_only {
            self.tlb.flush_page(asid, va.vpn());
        }
        for (va, pfn) in freed {
            self.tlb.flush_page(asid, va.vpn());
            let m = *self.phys.meta(pfn);
            let p = self.live(pid);
            if m.flags.has(FrameFlags::PAGE_CACHE) {
                p.mm.rss_file -= 1;
            } else if m.flags.has(FrameFlags::ANON) {
                p.mm.rss_anon -= 1;
            }
            self.put_page(pfn);
        }
    }

    /// Flushes the TLB entry of one page of `pid`.
    pub(crate) fn flush_tlb_page(&mut self, pid: Pid, va: VirtAddr) {
        let asid = self.live(pid).mm.asid;
        self.tlb
            .flush_page(asid, Vpn(va.0 >> crate::addr::PAGE_SHIFT));
    }

    // ----- process lifetime -----------------------------------------------------------

    /// Ends a process: unmaps everything, closes every descriptor, frees its page tables.
    /// Dirty shared pages stay in the page cache (they reach the file at writeback).
    pub fn exit(&mut self, pid: Pid) -> SysResult<()> {
        self.proc_ref(pid)?;
        let vmas = self.vmas(pid)?;
        for v in &vmas {
            if v.is_hugetlb() {
                self.unmap_hugepage_range(pid, v, v.start, v.end);
                self.hugetlb_vm_close(pid, v);
            } else {
                self.zap_range(pid, v.start, v.end);
            }
        }
        let nfds = self.proc_ref(pid)?.fds.len();
        for fd in 0..nfds {
            let _ = self.close_quiet(pid, fd as i32);
        }
        let geom = self.cfg.geometry;
        self.seg_release_all(pid);
        if self.is_hot(pid) {
            self.fold_hot();
        }
        let p = self.procs[pid.0 as usize].take().expect("checked above");
        pgtable::free_tables(&mut self.phys, &geom, p.mm.root);
        for v in p.mm.vmas.values() {
            if let Some(id) = v.inode() {
                self.release_shmem_if_unused(id);
            }
            if v.is_hugetlb() {
                self.hugetlb_release_if_unused(v.file_serial);
            }
        }
        self.tlb.flush_asid(p.mm.asid);
        self.kstats += p.stats;
        Ok(())
    }

    /// Writes every dirty page of every file to disk and syncs the files (Linux `sync`).
    pub fn sync(&mut self) -> SysResult<()> {
        let mut first_err = None;
        for i in 0..self.inodes.len() {
            let id = InodeId(i as u32);
            if let Err(e) = self.writeback_range(id, 0, u64::MAX, true) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Every process exits and every dirty page is written: the clean shutdown after
    /// which all data is on disk. Returns the first write-back error.
    pub fn shutdown(&mut self) -> SysResult<()> {
        for pid in self.pids() {
            self.exit(pid)?;
        }
        self.sync()
    }

    /// Emits a syscall event (the formatting only happens when observed).
    pub(crate) fn trace_syscall<T: std::fmt::Display>(
        &mut self,
        pid: Pid,
        call: impl FnOnce() -> String,
        r: &SysResult<T>,
    ) {
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.syscalls += 1;
        }
        if self.events.enabled() {
            let result = match r {
                Ok(v) => v.to_string(),
                Err(e) => format!("-1 {}", e.name()),
            };
            let call = call();
            self.events.emit(|| Event::Syscall { pid, call, result });
        }
    }
}

/// The live process `pid`; panics if there is none (a caller bug, never user input: the
/// syscalls check pids and return ESRCH).
#[inline]
fn live_proc(procs: &mut [Option<Process>], pid: Pid) -> &mut Process {
    match procs.get_mut(pid.0 as usize) {
        Some(Some(p)) => p,
        _ => panic!("vmem: no live process with pid {pid}"),
    }
}

impl Drop for Kernel {
    /// A clean exit writes every dirty page back, as Linux does before power-off.
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_refills_unpack_to_what_was_packed() {
        assert_eq!(Unfinished::GENERAL.reason(), Reason::General);
        for page in [0, PAGE_SIZE, 0xfee0_0000] {
            let at = PhysAddr(page + 0x123);
            assert_eq!(
                Unfinished::not_ram(at).reason(),
                Reason::NotRam(PhysAddr(page))
            );
        }
        for slot in [None, Some(PhysAddr(0x1000)), Some(PhysAddr(0x7fff_fff8))] {
            let mut faults = vec![mmu::HwFault::Protection];
            faults.extend((0..=4).map(|level| mmu::HwFault::NotPresent { level }));
            for hw in faults {
                assert_eq!(
                    Unfinished::fault(hw, slot).reason(),
                    Reason::Fault(hw, slot),
                    "{hw:?} at {slot:?}"
                );
            }
        }
    }

    #[test]
    fn loaded_values_keep_their_bytes() {
        assert_eq!(value_of(&[0xab]), 0xab);
        assert_eq!(value_of(&[1, 2, 3, 4]), 0x0403_0201);
        assert_eq!(bytes_of::<2>(value_of(&[0xfe, 0xff])), [0xfe, 0xff]);
        let b = [1, 2, 3, 4, 5, 6, 7, 0xff];
        assert_eq!(bytes_of::<8>(value_of(&b)), b);
    }
}
