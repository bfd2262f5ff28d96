//! The hardware page-table walker.
//!
//! Owns [`walk`]: starting from the root table's frame (CR3 / satp), read one entry per
//! level out of physical memory, index chosen by the [`PagingGeometry`] and entry size and
//! layout by its [`PteFormat`], until the leaf PTE, a PMD entry that maps a huge page itself
//! (the x86-64 PS bit, an arm64 block), or a not-present entry. On x86 (64- and 32-bit) the walker sets the Accessed bit in every upper-level entry it passes through,
//! as the hardware does; in Sv39 a pointer entry's A bit is reserved and stays clear. It
//! never allocates tables: that is the kernel's job (`mm/pgtable.rs`).
//!
//! The x86-64 walk is inline and reads `u64` entries with no decoding; the walks of the
//! formats that decode their entries are compiled once per format (the format is a
//! constant inside each) and out of line. The default machine's geometry
//! ([`PagingGeometry::X86_64_4LEVEL`]) has its own walk, [`walk_x86_64_4level`]: four
//! unrolled steps with constant shifts, used whenever nobody observes the walk (an
//! observer sees the steps of the general walk, one `WalkStep` event each).

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
    if !events.enabled() && *geom == PagingGeometry::X86_64_4LEVEL {
        return walk_x86_64_4level(phys, root, va);
    }
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

/// The walk of [`PagingGeometry::X86_64_4LEVEL`] with nobody observing: what
/// [`walk_native`] does for that geometry (same result, same Accessed bits set in the
/// upper levels, no events), with the four levels unrolled, constant shifts and masks,
/// and one test per upper level for the common case (present, Accessed already set, and
/// at the PMD no PS bit).
#[inline(always)]
pub fn walk_x86_64_4level(phys: &mut PhysMem, root: Pfn, va: VirtAddr) -> Result<Leaf, u32> {
    walk_x86_64_4level_at(phys, root, va).map_err(|(level, _)| level)
}

/// [`walk_x86_64_4level`], with the physical address of the not-present entry when the
/// walk stops at one (`None` for an address beyond the 48 translated bits).
#[inline(always)]
pub fn walk_x86_64_4level_at(
    phys: &mut PhysMem,
    root: Pfn,
    va: VirtAddr,
) -> Result<Leaf, (u32, Option<PhysAddr>)> {
    const P: u64 = Pte::PRESENT;
    const A: u64 = Pte::ACCESSED;
    /// The slot of `va`'s entry at `level` of the table at physical address `table`.
    #[inline(always)]
    fn slot(table: u64, va: u64, level: u32) -> PhysAddr {
        PhysAddr(table | (((va >> (12 + 9 * level)) & 511) << 3))
    }
    if va.0 >> 48 != 0 {
        return Err((3, None));
    }
    let mut table = root.0 << 12;
    // PGD and PUD: pointers to the next table.
    for level in [3, 2] {
        let pa = slot(table, va.0, level);
        let e = phys.read_u64(pa);
        if e & (P | A) != P | A {
            if e & P == 0 {
                return Err((level, Some(pa)));
            }
            phys.write_u64(pa, e | A);
        }
        table = e & Pte::ADDR_MASK;
    }
    // PMD: a pointer, or a 2 MiB page itself (PS bit).
    let pa = slot(table, va.0, 1);
    let e = phys.read_u64(pa);
    if e & (P | A | Pte::HUGE) != P | A {
        if e & P == 0 {
            return Err((1, Some(pa)));
        }
        if e & Pte::HUGE != 0 {
            return Ok(Leaf {
                pte: Pte(e),
                pte_pa: pa,
                level: 1,
            });
        }
        phys.write_u64(pa, e | A);
    }
    let pa = slot(e & Pte::ADDR_MASK, va.0, 0);
    let e = phys.read_u64(pa);
    if e & P == 0 {
        return Err((0, Some(pa)));
    }
    Ok(Leaf {
        pte: Pte(e),
        pte_pa: pa,
        level: 0,
    })
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

// The x86-64 4-level walk these tests compare exists in the 4 KiB build only.
#[cfg(all(test, not(any(feature = "page-16k", feature = "page-64k"))))]
pub(crate) mod tests {
    use super::*;
    use crate::events::{Events, Recorder};
    use crate::hw::phys::FrameFlags;
    use crate::mm::pgtable::{pmd_slot_alloc, pte_slot_alloc};

    const G: PagingGeometry = PagingGeometry::X86_64_4LEVEL;

    /// Tables with every case a walk meets: 4 KiB leaves with and without their Accessed
    /// bit, not-present leaves, a huge PMD with and without it, upper entries whose
    /// Accessed bit is clear, and addresses with no table at some level.
    pub(crate) fn tables() -> (PhysMem, Pfn, Vec<VirtAddr>) {
        let mut phys = PhysMem::new(8 << 20);
        let root = phys.alloc_zeroed(FrameFlags::PAGE_TABLE).unwrap();
        let mut vas = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..200u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // A few regions, so that tables are shared, and pages next to each other.
            let va = VirtAddr(
                (((x % 5) << 39)
                    | (((x >> 8) % 3) << 30)
                    | (((x >> 16) % 4) << 21)
                    | (((x >> 24) % 8) << 12))
                    + (x >> 40) % 4096,
            );
            let (slot, _) = pte_slot_alloc(&mut phys, &G, root, va).unwrap();
            const P: u64 = Pte::PRESENT;
            const U: u64 = Pte::USER;
            const W: u64 = Pte::WRITABLE;
            let flags = match i % 8 {
                0 => P | U | W,
                1 => P | U | Pte::ACCESSED | Pte::NX,
                2 => 0,
                3 => P | W | Pte::ACCESSED,
                4 => P | U | W | Pte::ACCESSED | Pte::DIRTY,
                5 => P | U | W | Pte::NX,
                6 => P | U | W | Pte::ACCESSED | Pte::NX,
                _ => Pte::PROTNONE,
            };
            let pte = Pte::new(Pfn(100 + i), flags);
            G.write_pte(&mut phys, slot, pte);
            vas.push(va);
            vas.push(VirtAddr(va.0 ^ (1 << 44)));
        }
        for (n, a) in [(0u64, false), (1, true)] {
            let va = VirtAddr((7 << 39) | (n << 30) | (5 << 21));
            let (slot, _) = pmd_slot_alloc(&mut phys, &G, root, va).unwrap();
            let flags = Pte::PRESENT | Pte::USER | Pte::HUGE | if a { Pte::ACCESSED } else { 0 };
            G.write_table(&mut phys, slot, Pte::new(Pfn(0x400 * (n + 1)), flags));
            vas.extend([va, va.add(0x1234), va.add((1 << 21) - 1)]);
        }
        // Upper entries without their Accessed bit (as the kernel makes them).
        vas.extend([VirtAddr(1 << 47), VirtAddr(u64::MAX), VirtAddr(0)]);
        (phys, root, vas)
    }

    #[test]
    fn the_default_geometry_walk_matches_the_general_walk() {
        let (mut general, root, vas) = tables();
        let (mut special, _, _) = tables();
        let mut observed = Events::default();
        observed.set_observer(Some(Box::new(Recorder::default())));
        for va in vas {
            let a = walk_native(&mut general, &G, root, va, &mut observed);
            let b = walk_x86_64_4level(&mut special, root, va);
            let key =
                |r: Result<Leaf, u32>| r.map(|l| (l.pte, l.pte_pa, l.level, l.pfn_of(&G, va)));
            assert_eq!(key(a), key(b), "{va}");
            // The same Accessed bits were set on the way.
            for f in 1..general.total_frames() {
                assert_eq!(
                    general.frame_bytes(Pfn(f)),
                    special.frame_bytes(Pfn(f)),
                    "{va}"
                );
            }
        }
    }
}
