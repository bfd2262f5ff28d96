//! The kernel's side of the page tables: creating, finding, scanning and freeing them.
//!
//! Owns the functions that build and tear down the tree that `hw/walk.rs` reads: find the
//! leaf entry slot of an address (allocating intermediate tables on demand, Linux's
//! `__pte_alloc` and friends) or its PMD slot (where a huge page is mapped), visit every
//! used leaf entry in a range (skipping empty subtrees, so `munmap` of a terabyte costs
//! what is mapped, not what is spanned), and free a whole tree at exit. Intermediate
//! entries are Present|Writable|User: the leaf decides.
//! Entries are read and written through the geometry (`read_table`/`write_table` for the
//! upper levels, `read_pte`/`write_pte` for leaves), so the tables in RAM have the
//! machine's own entry format (x86-64, i386 or Sv39) while this code works on [`Pte`].

use crate::addr::{Pfn, PhysAddr, VirtAddr};
use crate::config::PagingGeometry;
use crate::hw::phys::{FrameFlags, PhysMem};
use crate::hw::pte::Pte;

pub(crate) const TABLE_FLAGS: u64 = Pte::PRESENT | Pte::WRITABLE | Pte::USER;

/// The physical address of the leaf entry for `va`, if every upper table exists. `None`
/// too when a huge page maps `va` (its entry is the PMD: see [`pmd_slot`]); code that
/// changes single pages of a huge page splits it first (`Kernel::split_huge_pmd`).
pub fn pte_slot(
    phys: &PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
) -> Option<PhysAddr> {
    entry_slot(phys, geom, root, va, 0)
}

/// The physical address of the PMD entry (level 1) for `va`, if the tables above it
/// exist.
pub fn pmd_slot(
    phys: &PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
) -> Option<PhysAddr> {
    entry_slot(phys, geom, root, va, 1)
}

fn entry_slot(
    phys: &PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
    stop: u32,
) -> Option<PhysAddr> {
    if *geom == PagingGeometry::X86_64_4LEVEL {
        return entry_slot_x86_64_4level(phys, root, va, stop);
    }
    entry_slot_general(phys, geom, root, va, stop)
}

fn entry_slot_general(
    phys: &PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
    stop: u32,
) -> Option<PhysAddr> {
    if va.0 >> geom.va_bits() != 0 || stop >= geom.levels {
        return None;
    }
    let mut table = root;
    let mut level = geom.levels - 1;
    loop {
        let entry_pa = geom.entry_addr(table, geom.index(va.0, level));
        if level == stop {
            return Some(entry_pa);
        }
        let e = geom.read_table(phys, entry_pa);
        // Not present, or a huge page's own entry: no table below.
        if e.0 & (Pte::PRESENT | Pte::HUGE) != Pte::PRESENT {
            return None;
        }
        table = e.pfn();
        level -= 1;
    }
}

/// [`entry_slot`] for [`PagingGeometry::X86_64_4LEVEL`]: constant shifts, `u64` entries.
#[inline]
fn entry_slot_x86_64_4level(
    phys: &PhysMem,
    root: Pfn,
    va: VirtAddr,
    stop: u32,
) -> Option<PhysAddr> {
    if va.0 >> 48 != 0 || stop >= 4 {
        return None;
    }
    let mut table = root.0 << 12;
    let mut level = 3;
    loop {
        let entry_pa = PhysAddr(table | (((va.0 >> (12 + 9 * level)) & 511) << 3));
        if level == stop {
            return Some(entry_pa);
        }
        let e = phys.read_u64(entry_pa);
        // Not present, or a huge page's own entry: no table below.
        if e & (Pte::PRESENT | Pte::HUGE) != Pte::PRESENT {
            return None;
        }
        table = e & Pte::ADDR_MASK;
        level -= 1;
    }
}

/// The leaf entry for `va` (or [`Pte::NONE`] when no table covers it). Inside a huge page,
/// the entry a 4 KiB page of it would have: the PMD's flags, the page's own frame.
pub fn read_pte(phys: &PhysMem, geom: &PagingGeometry, root: Pfn, va: VirtAddr) -> Pte {
    if let Some(pa) = pte_slot(phys, geom, root, va) {
        return geom.read_pte(phys, pa);
    }
    match pmd_slot(phys, geom, root, va).map(|pa| geom.read_table(phys, pa)) {
        Some(pmd) if pmd.huge() => huge_subpage(geom, pmd, va),
        _ => Pte::NONE,
    }
}

/// The 4 KiB entry for `va` inside the huge page `pmd` maps.
pub fn huge_subpage(geom: &PagingGeometry, pmd: Pte, va: VirtAddr) -> Pte {
    let pages = geom.span(1) >> geom.page_shift;
    let pfn = Pfn(pmd.pfn().0 + ((va.0 >> geom.page_shift) & (pages - 1)));
    Pte::new(pfn, pmd.0 & !Pte::ADDR_MASK & !Pte::HUGE)
}

/// No frame was free for a page table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct OutOfFrames;

/// The leaf entry slot for `va`, allocating missing tables. `Err(OutOfFrames)` when RAM has no
/// frame for a table; `Ok((slot, tables_allocated))` otherwise. A huge page must not map
/// `va` (split it first).
pub fn pte_slot_alloc(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
) -> Result<(PhysAddr, u64), OutOfFrames> {
    entry_slot_alloc(phys, geom, root, va, 0)
}

/// The PMD entry slot for `va` (level 1), allocating missing tables above it.
pub fn pmd_slot_alloc(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
) -> Result<(PhysAddr, u64), OutOfFrames> {
    entry_slot_alloc(phys, geom, root, va, 1)
}

fn entry_slot_alloc(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    va: VirtAddr,
    stop: u32,
) -> Result<(PhysAddr, u64), OutOfFrames> {
    let mut table = root;
    let mut level = geom.levels - 1;
    let mut allocated = 0;
    loop {
        let entry_pa = geom.entry_addr(table, geom.index(va.0, level));
        if level == stop {
            return Ok((entry_pa, allocated));
        }
        let e = geom.read_table(phys, entry_pa);
        debug_assert!(
            !e.huge(),
            "a table walk into a huge page at {va}: split it first"
        );
        table = if e.present() {
            e.pfn()
        } else {
            let t = phys
                .alloc_zeroed(FrameFlags::PAGE_TABLE)
                .ok_or(OutOfFrames)?;
            phys.meta_mut(t).refcount = 1;
            geom.write_table(phys, entry_pa, Pte::new(t, TABLE_FLAGS));
            allocated += 1;
            t
        };
        level -= 1;
    }
}

/// Calls `f(va, slot, pte)` for every leaf entry in `[start, end)` that is not zero,
/// in address order. `f` may rewrite the entry at `slot` (with `PagingGeometry::write_pte`).
/// A huge page is visited as its 4 KiB pages (each `pte` as [`huge_subpage`] gives it,
/// `slot` the PMD's): callers that rewrite entries split huge pages in the range first
/// (`Kernel::split_huge_pmds`).
pub fn for_each_pte(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    root: Pfn,
    start: VirtAddr,
    end: VirtAddr,
    f: &mut dyn FnMut(&mut PhysMem, VirtAddr, PhysAddr, Pte),
) {
    if start >= end {
        return;
    }
    visit(phys, geom, root, geom.levels - 1, 0, start.0, end.0, f);
}

#[allow(clippy::too_many_arguments)]
fn visit(
    phys: &mut PhysMem,
    geom: &PagingGeometry,
    table: Pfn,
    level: u32,
    base: u64,
    start: u64,
    end: u64,
    f: &mut dyn FnMut(&mut PhysMem, VirtAddr, PhysAddr, Pte),
) {
    let span = geom.span(level);
    let first = if start > base {
        (start - base) / span
    } else {
        0
    };
    for i in first..geom.entries() {
        let lo = base + i * span;
        if lo >= end {
            break;
        }
        let slot = geom.entry_addr(table, i);
        if level == 0 {
            let e = geom.read_pte(phys, slot);
            if e.0 != 0 {
                f(phys, VirtAddr(lo), slot, e);
            }
        } else {
            let e = geom.read_table(phys, slot);
            if e.huge() {
                let (from, to) = (lo.max(start), (lo + span).min(end));
                let mut va = from;
                while va < to {
                    f(
                        phys,
                        VirtAddr(va),
                        slot,
                        huge_subpage(geom, e, VirtAddr(va)),
                    );
                    va += 1 << geom.page_shift;
                }
            } else if e.present() {
                visit(phys, geom, e.pfn(), level - 1, lo, start, end, f);
            }
        }
    }
}

/// Frees every table frame of the tree rooted at `root`, the root included. Leaf entries
/// must already have been zapped (their frames released). Returns the frames freed.
pub fn free_tables(phys: &mut PhysMem, geom: &PagingGeometry, root: Pfn) -> u64 {
    fn rec(phys: &mut PhysMem, geom: &PagingGeometry, t: Pfn, level: u32) -> u64 {
        let mut n = 0;
        if level > 0 {
            for i in 0..geom.entries() {
                let e = geom.read_table(phys, geom.entry_addr(t, i));
                if e.present() && !e.huge() {
                    n += rec(phys, geom, e.pfn(), level - 1);
                }
            }
        }
        phys.free(t);
        n + 1
    }
    rec(phys, geom, root, geom.levels - 1)
}

/// One table entry on the way to an address, as the hardware stores it in RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    /// The table's level name (PGD, PUD, PMD, PTE).
    pub level: &'static str,
    /// The index of the entry in its table.
    pub index: u64,
    /// The physical address of the entry.
    pub pa: PhysAddr,
    /// The entry's bits, in the machine's format.
    pub raw: crate::hw::pte_format::RawPte,
}

impl crate::kernel::Kernel {
    /// The table entries a walk of `va` in `pid` reads, root first, as stored in RAM (a
    /// look at the tables, like reading `/proc/pid/pagemap`: no access, no Accessed bit
    /// set). It stops at the first entry that is not present.
    pub fn table_entries(
        &self,
        pid: crate::process::Pid,
        va: VirtAddr,
    ) -> crate::errno::SysResult<Vec<TableEntry>> {
        let geom = self.cfg.geometry;
        let mut table = self.proc_ref(pid)?.mm.root;
        let mut out = Vec::new();
        if va.0 >> geom.va_bits() != 0 {
            return Ok(out);
        }
        for level in (0..geom.levels).rev() {
            let index = geom.index(va.0, level);
            let pa = geom.entry_addr(table, index);
            let raw = crate::hw::pte_format::RawPte {
                format: geom.format,
                bits: geom.format.read_raw(&self.phys, pa),
                leaf: level == 0,
            };
            out.push(TableEntry {
                level: geom.level_name(level),
                index,
                pa,
                raw,
            });
            let e = raw.decode();
            if level == 0 || !e.present() || e.huge() {
                break;
            }
            table = e.pfn();
        }
        Ok(out)
    }

    /// The leaf entry for `va` in `pid` as the hardware stores it (not present if none):
    /// [`crate::kernel::Kernel::pte_of`] in the machine's own format, for display.
    pub fn raw_pte_of(
        &self,
        pid: crate::process::Pid,
        va: VirtAddr,
    ) -> crate::hw::pte_format::RawPte {
        self.cfg.geometry.raw_pte(self.pte_of(pid, va))
    }

    /// Copies `buf.len()` bytes of RAM at `pa` into `buf` (a debugger's view of physical
    /// memory: no device access). False, and nothing copied, if the range is not all RAM.
    pub fn read_phys(&self, pa: PhysAddr, buf: &mut [u8]) -> bool {
        let end = pa.0.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.phys.ram_bytes()) {
            return false;
        }
        self.phys.read(pa, buf);
        true
    }
}

// The x86-64 4-level walk these tests compare exists in the 4 KiB build only.
#[cfg(all(test, not(any(feature = "page-16k", feature = "page-64k"))))]
mod tests {
    use super::*;
    use crate::hw::walk::tests::tables;

    #[test]
    fn the_default_geometry_slot_lookup_matches_the_general_one() {
        let geom = PagingGeometry::X86_64_4LEVEL;
        let (phys, root, vas) = tables();
        let mut found = 0;
        for va in vas {
            for stop in 0..5 {
                let a = entry_slot_general(&phys, &geom, root, va, stop);
                assert_eq!(
                    a,
                    entry_slot_x86_64_4level(&phys, root, va, stop),
                    "{va} {stop}"
                );
                found += usize::from(a.is_some());
            }
        }
        assert!(found > 100);
    }
}
