//! The event stream.
//!
//! Owns [`Event`] (everything the hardware and kernel do that a learner may want to see)
//! and the [`Observer`] trait. The kernel holds an [`Events`] sink; with no observer set,
//! [`Events::emit`] is one branch on a `None` and the event is never even constructed.

use crate::addr::{Pfn, PgOff, PhysAddr, VirtAddr};
use crate::hw::mmu::Access;
use crate::hw::pte::Pte;
use crate::hw::pte_format::RawPte;
use crate::process::Pid;
use crate::signal::Signal;

/// How a fault was resolved (Linux's fault-path function names).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultKind {
    /// Anonymous read: the shared zero page mapped read-only (`do_anonymous_page`).
    AnonZeroPage,
    /// Anonymous write: a fresh zeroed frame (`do_anonymous_page`).
    AnonNewPage,
    /// File read: the page-cache page mapped read-only (`do_read_fault`).
    ReadFault,
    /// Private file write: copy of the cache page (`do_cow_fault`).
    CowFault,
    /// Shared file write: the cache page mapped writable and marked dirty (`do_shared_fault`).
    SharedFault,
    /// Write to a present private page: copy it (`wp_page_copy`).
    WpCopy,
    /// Write to a present private page with one reference: reuse it (`wp_page_reuse`).
    WpReuse,
    /// Write to a present shared page: mark it dirty (`wp_page_shared`).
    WpShared,
    /// The page was in swap: read it back (`do_swap_page`).
    SwapIn,
    /// A device register page mapped directly (`vmf_insert_pfn`).
    DevicePage,
    /// The PTE was already right; only the TLB was stale.
    Spurious,
    /// Anonymous write in a huge-page area: a 2 MiB page mapped by the PMD
    /// (`do_huge_pmd_anonymous_page`).
    HugeAnonPage,
    /// Anonymous read in a huge-page area: the huge zero page mapped read-only
    /// (`do_huge_pmd_anonymous_page`).
    HugeZeroPage,
    /// Write to the huge zero page: a fresh 2 MiB page replaces it (`do_huge_zero_wp_pmd`).
    HugeWpZero,
    /// First touch of a hugetlb page: a zeroed 2 MiB page from the pool (or a shared
    /// mapping's page from its file) mapped by the PMD (`hugetlb_no_page`).
    HugetlbNoPage,
    /// Write to a write-protected hugetlb page no one else maps: made writable in place
    /// (`hugetlb_wp`).
    HugetlbWpReuse,
    /// Write to a private hugetlb page shared since fork: the 2 MiB are copied into a
    /// page from the pool (`hugetlb_wp`).
    HugetlbWpCopy,
}

impl FaultKind {
    /// The Linux function that handles this case.
    pub fn linux_name(self) -> &'static str {
        match self {
            FaultKind::AnonZeroPage | FaultKind::AnonNewPage => "do_anonymous_page",
            FaultKind::ReadFault => "do_read_fault",
            FaultKind::CowFault => "do_cow_fault",
            FaultKind::SharedFault => "do_shared_fault",
            FaultKind::WpCopy => "wp_page_copy",
            FaultKind::WpReuse => "wp_page_reuse",
            FaultKind::WpShared => "wp_page_shared",
            FaultKind::SwapIn => "do_swap_page",
            FaultKind::DevicePage => "vmf_insert_pfn (device)",
            FaultKind::Spurious => "spurious fault",
            FaultKind::HugeAnonPage | FaultKind::HugeZeroPage => "do_huge_pmd_anonymous_page",
            FaultKind::HugeWpZero => "do_huge_zero_wp_pmd",
            FaultKind::HugetlbNoPage => "hugetlb_no_page",
            FaultKind::HugetlbWpReuse | FaultKind::HugetlbWpCopy => "hugetlb_wp",
        }
    }
}

/// Something that happened in the machine. New kinds of event may be added: match with a
/// wildcard arm (every event also implements `Display`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A syscall returned.
    Syscall {
        /// Caller.
        pid: Pid,
        /// The call as C would spell it, e.g. `mmap(NULL, 8192, PROT_READ, MAP_SHARED, 3, 0)`.
        call: String,
        /// Its result, e.g. `0x7ffff7ffe000` or `-1 EACCES`.
        result: String,
    },
    /// A VMA now covers a range (created, merged or resized).
    VmaMapped {
        /// Owner.
        pid: Pid,
        /// Start.
        start: VirtAddr,
        /// End (exclusive).
        end: VirtAddr,
        /// Permissions and backing, as `/proc/pid/maps` prints them.
        desc: String,
    },
    /// A range stopped being mapped.
    VmaUnmapped {
        /// Owner.
        pid: Pid,
        /// Start.
        start: VirtAddr,
        /// End (exclusive).
        end: VirtAddr,
    },
    /// The TLB held the translation.
    TlbHit {
        /// Address.
        va: VirtAddr,
        /// Frame.
        pfn: Pfn,
    },
    /// The TLB did not hold the translation: a walk follows.
    TlbMiss {
        /// Address.
        va: VirtAddr,
    },
    /// The walker read one table entry.
    WalkStep {
        /// Table level name (PGD, PUD, PMD, PTE).
        level: &'static str,
        /// Index into the table.
        index: u64,
        /// Physical address of the entry.
        entry_pa: PhysAddr,
        /// The entry's value, decoded.
        entry: Pte,
        /// The entry exactly as stored in RAM, in the machine's format.
        raw: RawPte,
    },
    /// A page fault reached the kernel.
    FaultBegin {
        /// Process.
        pid: Pid,
        /// Address.
        va: VirtAddr,
        /// Access that faulted.
        access: Access,
        /// Whether the PTE was present (a protection fault) or not.
        present: bool,
    },
    /// A page fault was resolved.
    Fault {
        /// Process.
        pid: Pid,
        /// Address.
        va: VirtAddr,
        /// How.
        kind: FaultKind,
        /// Whether it needed disk I/O.
        major: bool,
    },
    /// A page-cache lookup.
    CacheLookup {
        /// File (path as opened).
        file: String,
        /// Page offset.
        pgoff: PgOff,
        /// Found or not.
        hit: bool,
    },
    /// Pages read from a real file into frames.
    DiskRead {
        /// File.
        file: String,
        /// First page.
        pgoff: PgOff,
        /// Pages.
        pages: u64,
        /// Bytes read.
        bytes: u64,
    },
    /// Dirty pages written to a real file.
    DiskWrite {
        /// File.
        file: String,
        /// First page.
        pgoff: PgOff,
        /// Pages.
        pages: u64,
        /// Bytes written.
        bytes: u64,
    },
    /// A frame was taken for a purpose.
    FrameAlloc {
        /// The frame.
        pfn: Pfn,
        /// What for ("page cache", "anonymous", "page table", "cow copy").
        purpose: &'static str,
    },
    /// A copy-on-write copy.
    CowCopy {
        /// Process.
        pid: Pid,
        /// Address.
        va: VirtAddr,
        /// Source frame.
        from: Pfn,
        /// New frame.
        to: Pfn,
    },
    /// A PTE was written.
    PteInstall {
        /// Process.
        pid: Pid,
        /// Address.
        va: VirtAddr,
        /// New entry.
        pte: Pte,
        /// The new entry as stored in RAM, in the machine's format.
        raw: RawPte,
    },
    /// A PMD entry now maps a huge page (2 MiB with 4 KiB pages) itself.
    PmdInstall {
        /// Process.
        pid: Pid,
        /// First address of the huge page.
        va: VirtAddr,
        /// New entry.
        pmd: Pte,
        /// The new entry as stored in RAM, in the machine's format.
        raw: RawPte,
    },
    /// A huge page's PMD mapping was replaced by a table of 512 page entries
    /// (Linux `split_huge_pmd`), so that part of it can be changed alone.
    HugePageSplit {
        /// Process.
        pid: Pid,
        /// First address of the huge page.
        va: VirtAddr,
    },
    /// Pages mapped by fault-around.
    FaultAround {
        /// Process.
        pid: Pid,
        /// First page mapped.
        start: VirtAddr,
        /// Pages mapped besides the faulting one.
        pages: u64,
    },
    /// A TLB invalidation.
    TlbFlush {
        /// Process.
        pid: Pid,
        /// Address, or `None` for the whole address space.
        va: Option<VirtAddr>,
    },
    /// A signal was delivered to an access.
    Signal {
        /// Process.
        pid: Pid,
        /// The signal.
        signal: Signal,
    },
    /// A CPU access on the physical bus: the control bus command, the address bus, the
    /// data bus, and who answered.
    Bus {
        /// Write (true) or read.
        write: bool,
        /// The physical address.
        pa: PhysAddr,
        /// Bytes transferred.
        width: usize,
        /// The data (the first 8 bytes, little-endian).
        data: u64,
        /// `"RAM"` or the device's name.
        target: &'static str,
    },
    /// The segmentation unit translated a logical address.
    SegmentTranslate {
        /// Process.
        pid: Pid,
        /// Segment number.
        seg: u64,
        /// Offset in the segment.
        offset: u64,
        /// The descriptor, if any.
        desc: Option<crate::hw::segment::Segment>,
        /// The linear (or physical) address, or the fault.
        result: Result<u64, crate::hw::segment::SegFault>,
    },
    /// Reclaim wrote an anonymous page to swap.
    SwapOut {
        /// The frame freed.
        pfn: Pfn,
        /// The swap slot.
        slot: u64,
    },
    /// A fault read a page back from swap.
    SwapIn {
        /// Process.
        pid: Pid,
        /// Address.
        va: VirtAddr,
        /// The swap slot.
        slot: u64,
    },
    /// A page left the page cache (truncate, invalidate, reclaim).
    CacheEvict {
        /// File.
        file: String,
        /// Page offset.
        pgoff: PgOff,
    },
}

/// Receives events. The CLI's explain mode and JSON output implement this.
pub trait Observer {
    /// Called for each event, in order.
    fn event(&mut self, event: &Event);
}

/// A sink that forwards to an optional observer.
#[derive(Default)]
pub struct Events {
    observer: Option<Box<dyn Observer>>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("observed", &self.observer.is_some())
            .finish()
    }
}

impl Events {
    /// Sets (or clears) the observer; returns the previous one.
    pub fn set_observer(&mut self, o: Option<Box<dyn Observer>>) -> Option<Box<dyn Observer>> {
        std::mem::replace(&mut self.observer, o)
    }

    /// Whether anyone is listening.
    #[inline]
    pub fn enabled(&self) -> bool {
        self.observer.is_some()
    }

    /// Builds and delivers an event, only if someone is listening.
    #[inline(always)]
    pub fn emit(&mut self, make: impl FnOnce() -> Event) {
        if let Some(o) = self.observer.as_mut() {
            o.event(&make());
        }
    }
}

/// An observer that keeps every event (for tests and tools).
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    /// The shared list of events seen so far.
    pub events: std::rc::Rc<std::cell::RefCell<Vec<Event>>>,
}

impl Observer for Recorder {
    fn event(&mut self, event: &Event) {
        self.events.borrow_mut().push(event.clone());
    }
}

impl std::fmt::Display for Event {
    /// One line per event, as the explain mode prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Syscall { pid, call, result } => write!(f, "[pid {pid}] {call} = {result}"),
            Event::VmaMapped {
                pid,
                start,
                end,
                desc,
            } => {
                write!(
                    f,
                    "[pid {pid}] VMA {start}-{end} {desc} (nothing loaded yet)"
                )
            }
            Event::VmaUnmapped { pid, start, end } => {
                write!(f, "[pid {pid}] VMA {start}-{end} removed")
            }
            Event::TlbHit { va, pfn } => write!(f, "  TLB hit {va} -> frame 0x{:x}", pfn.0),
            Event::TlbMiss { va } => write!(f, "  TLB miss {va}: walking the page tables"),
            Event::WalkStep {
                level,
                index,
                entry_pa,
                raw,
                ..
            } => {
                write!(f, "    {level}[{index:3}] @ {entry_pa} = {raw}")
            }
            Event::FaultBegin {
                pid,
                va,
                access,
                present,
            } => write!(
                f,
                "  [pid {pid}] page fault: {} at {va} ({})",
                access.name(),
                if *present {
                    "protection"
                } else {
                    "page not present"
                }
            ),
            Event::Fault {
                va, kind, major, ..
            } => write!(
                f,
                "  {} fault at {va} resolved by {}",
                if *major { "major" } else { "minor" },
                kind.linux_name()
            ),
            Event::CacheLookup { file, pgoff, hit } => write!(
                f,
                "    page cache {} for {file} page {}",
                if *hit { "hit" } else { "miss" },
                pgoff.0
            ),
            Event::DiskRead {
                file,
                pgoff,
                pages,
                bytes,
            } => write!(
                f,
                "    disk read {file}: pages {}..{} ({bytes} bytes)",
                pgoff.0,
                pgoff.0 + pages
            ),
            Event::DiskWrite {
                file,
                pgoff,
                pages,
                bytes,
            } => write!(
                f,
                "    disk write {file}: pages {}..{} ({bytes} bytes)",
                pgoff.0,
                pgoff.0 + pages
            ),
            Event::FrameAlloc { pfn, purpose } => {
                write!(f, "    frame 0x{:x} allocated ({purpose})", pfn.0)
            }
            Event::CowCopy { va, from, to, .. } => write!(
                f,
                "    copy-on-write at {va}: frame 0x{:x} copied to frame 0x{:x}",
                from.0, to.0
            ),
            Event::PteInstall { va, raw, .. } => write!(f, "    PTE for {va} := {raw}"),
            Event::PmdInstall { va, raw, .. } => write!(f, "    PMD for {va} := {raw}"),
            Event::HugePageSplit { va, .. } => write!(
                f,
                "    split_huge_pmd: the {} page at {va} is now mapped by {} PTEs",
                crate::mm::huge_memory::huge_page_size_name(),
                crate::mm::huge_memory::HPAGE_PAGES
            ),
            Event::FaultAround { start, pages, .. } => {
                write!(
                    f,
                    "    fault-around mapped {pages} more cached page(s) from {start}"
                )
            }
            Event::TlbFlush { pid, va } => match va {
                Some(va) => write!(f, "    [pid {pid}] TLB flush {va}"),
                None => write!(f, "    [pid {pid}] TLB flush (all)"),
            },
            Event::Signal { pid, signal } => write!(f, "  [pid {pid}] {signal}"),
            Event::Bus {
                write,
                pa,
                width,
                data,
                target,
            } => write!(
                f,
                "    bus: {} addr={pa} data=0x{data:x} ({width} byte{}) -> {target}",
                if *write { "WRITE" } else { "READ " },
                if *width == 1 { "" } else { "s" }
            ),
            Event::SegmentTranslate { seg, offset, desc, result, .. } => match (desc, result) {
                (Some(d), Ok(a)) => write!(
                    f,
                    "  segment {seg} (base 0x{:x}, limit 0x{:x}): offset 0x{offset:x} -> 0x{a:x}",
                    d.base, d.limit
                ),
                (Some(d), Err(e)) => write!(
                    f,
                    "  segment {seg} (base 0x{:x}, limit 0x{:x}): offset 0x{offset:x} -> fault ({e:?})",
                    d.base, d.limit
                ),
                (None, _) => write!(f, "  segment {seg}: no such segment"),
            },
            Event::SwapOut { pfn, slot } => write!(
                f,
                "    reclaim: frame 0x{:x} written to swap slot {slot}",
                pfn.0
            ),
            Event::SwapIn { pid, va, slot } => {
                write!(f, "    [pid {pid}] swap-in of {va} from slot {slot}")
            }
            Event::CacheEvict { file, pgoff } => {
                write!(f, "    page cache drops {file} page {}", pgoff.0)
            }
        }
    }
}

/// An observer that prints each event on its own line to standard output.
#[derive(Debug, Default)]
pub struct PrintObserver;

impl Observer for PrintObserver {
    fn event(&mut self, event: &Event) {
        println!("{event}");
    }
}
