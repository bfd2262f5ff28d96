//! The hardware page-table walker.
//!
//! Owns [`walk`]: starting from the root table's frame (CR3 / satp), read one entry per
//! level out of physical memory, index chosen by the [`PagingGeometry`] and entry size and
//! layout by its [`PteFormat`], until the leaf PTE, a PMD entry that maps a huge page itself
//! (the x86-64 PS bit, an arm64 block), or a not-present entry. On x86 (64- and 32-bit) the walker sets the Accessed bit in every upper-level entry it passes through,
//! as the hardware does; in Sv39 a pointer entry's A bit is reserved and stays clear. It
//! never allocates tables: that is the kernel's job (`mm/pgtable.rs`).
//!
//! The x86-64 walk (the default machine's) is inline and reads `u64` entries with no
//! decoding; the walks of the formats that decode their entries are compiled once per
//! format (the format is a constant inside each) and out of line.

use crate::addr::{Pfn, PhysAddr, VirtAddr};
use crate::config::PagingGeometry;
use crate::events::{Event, Events};
use crate::hw::phys::PhysMem;
use crate::hw::pte::Pte;
use crate::hw::pte_format::{PteFormat, RawPte};

/// The outcome of a successful walk: the leaf entry and where it lives.
#[derive(Clone, Copy, Debug)]
pub struct Leaf {
    /// The leaf PTE as read (the Accessed bit not yet set by this walk), decoded.
    pub pte: Pte,
    /// The physical address of the leaf entry.
    pub pte_pa: PhysAddr,
    /// The level the leaf was found at: 0 for a 4 KiB page, 1 for a huge page mapped by
    /// its PMD entry (the PS bit).
    pub level: u32,
}

impl Leaf {
    /// The frame holding `va`'s byte: the leaf's frame, plus the page's index inside a
    /// huge page.
    #[inline]
    pub fn pfn_of(&self, geom: &PagingGeometry, va: VirtAddr) -> Pfn {
        if self.level == 0 {
            return self.pte.pfn();
        }
        let pages = geom.span(self.level) >> geom.page_shift;
        Pfn(self.pte.pfn().0 + ((va.0 >> geom.page_shift) & (pages - 1)))
    }
}

/// Walks the tables rooted at `root` for `va`. `Err(level)` names the level whose entry
/// was not present (the leaf level is 0). Emits one `WalkStep` event per level read.
#[inline]
pub fn walk(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
    events: &mut Events,
) -> Result<Leaf, u32> {
    if geom.format != PteFormat::X86_64 {
        return walk_decoded(phys, geom, root, va, events);
    }
    walk_native(phys, geom, root, va, events)
}

/// The x86-64 walk: the entries are [`Pte`] values as they are, and upper-level and leaf
/// entries have one layout. `geom.format` must be [`PteFormat::X86_64`].
#[inline]
pub fn walk_native(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
    events: &mut Events,
) -> Result<Leaf, u32> {
    debug_assert_eq!(geom.format, PteFormat::X86_64);
    if va.0 >> geom.va_bits() != 0 {
        return Err(geom.levels - 1);
    }
    let mut table = root;
    let mut level = geom.levels - 1;
    // The PMD may map a 2 MiB page itself (PS bit); the PTE is always the leaf.
    loop {
        let (entry, entry_pa) = read_native(phys, geom, table, va, level, events);
        if !entry.present() {
            return Err(level);
        }
        if level == 0 || (level == 1 && entry.0 & Pte::HUGE != 0) {
            return Ok(Leaf {
                pte: entry,
                pte_pa: entry_pa,
                level,
            });
        }
        if !entry.accessed() {
            phys.write_u64(entry_pa, entry.with(Pte::ACCESSED).0);
        }
        table = entry.pfn();
        level -= 1;
    }
}

/// Reads the x86-64 entry for `va` at `level` of `table`, emitting the walk step.
#[inline(always)]
fn read_native(
    phys: &PhysMem,
    geom: &PagingGeometry,
    table: Pfn,
    va: VirtAddr,
    level: u32,
    events: &mut Events,
) -> (Pte, PhysAddr) {
    let index = geom.index(va.0, level);
    let entry_pa = table.addr().add(index * 8);
    let entry = Pte(phys.read_u64(entry_pa));
    events.emit(|| Event::WalkStep {
        level: geom.level_name(level),
        index,
        entry_pa,
        entry,
        raw: RawPte {
            format: PteFormat::X86_64,
            bits: entry.0,
            leaf: level == 0,
        },
    });
    (entry, entry_pa)
}

/// The walk of the formats that decode their entries (i386, Sv39, arm64), out of line so that the
/// x86-64 walk inlined into the MMU stays the size it was.
#[inline(never)]
pub fn walk_decoded(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
    events: &mut Events,
) -> Result<Leaf, u32> {
    match geom.format {
        PteFormat::X86_32 => walk_as(PteFormat::X86_32, phys, geom, root, va, events),
        PteFormat::Sv39 => walk_as(PteFormat::Sv39, phys, geom, root, va, events),
        PteFormat::Arm64 => walk_as(PteFormat::Arm64, phys, geom, root, va, events),
        PteFormat::X86_64 => walk_native(phys, geom, root, va, events),
    }
}

/// The walk for one decoding format; `fmt` is a constant after inlining, so every format
/// match inside folds away.
#[inline(always)]
fn walk_as(
    fmt: PteFormat,
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
    events: &mut Events,
) -> Result<Leaf, u32> {
    if va.0 >> geom.va_bits() != 0 {
        return Err(geom.levels - 1);
    }
    let mut table = root;
    let mut level = geom.levels - 1;
    loop {
        let index = geom.index(va.0, level);
        let entry_pa = table.addr().add(index << fmt.entry_shift());
        let entry = if level == 0 {
            fmt.read_pte(phys, entry_pa)
        } else {
            fmt.read_table(phys, entry_pa)
        };
        events.emit(|| Event::WalkStep {
            level: geom.level_name(level),
            index,
            entry_pa,
            entry,
            raw: RawPte {
                format: fmt,
                bits: fmt.read_raw(phys, entry_pa),
                leaf: level == 0,
            },
        });
        if !entry.present() {
            return Err(level);
        }
        // An arm64 block at the PMD level maps a huge page itself.
        if level == 0 || (level == 1 && fmt.has_huge_pmd() && entry.huge()) {
            return Ok(Leaf {
                pte: entry,
                pte_pa: entry_pa,
                level,
            });
        }
        if fmt.sets_table_accessed() && !entry.accessed() {
            fmt.write_table(phys, entry_pa, entry.with(Pte::ACCESSED));
        }
        table = entry.pfn();
        level -= 1;
    }
}
