//! The hardware page-table walker.
//!
//! Owns [`walk`]: starting from the root table's frame (CR3), read one 8-byte entry per
//! level out of physical memory, index chosen by the [`PagingGeometry`], until the leaf
//! PTE, a PMD entry that maps a 2 MiB page itself (PS bit), or a not-present entry. The walker sets the Accessed bit in every entry it passes
//! through, as x86 hardware does. It never allocates tables: that is the kernel's job
//! (`mm/pgtable.rs`).

use crate::addr::{Pfn, PhysAddr, VirtAddr};
use crate::config::PagingGeometry;
use crate::events::{Event, Events};
use crate::hw::phys::PhysMem;
use crate::hw::pte::Pte;

/// The outcome of a successful walk: the leaf entry and where it lives.
#[derive(Clone, Copy, Debug)]
pub struct Leaf {
    /// The leaf PTE as read (the Accessed bit not yet set by this walk).
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
    if va.0 >> geom.va_bits() != 0 {
        return Err(geom.levels - 1);
    }
    let mut table = root;
    let mut level = geom.levels - 1;
    loop {
        let index = geom.index(va.0, level);
        let entry_pa = table.addr().add(index * 8);
        let entry = Pte(phys.read_u64(entry_pa));
        events.emit(|| Event::WalkStep {
            level: geom.level_name(level),
            index,
            entry_pa,
            entry,
        });
        if !entry.present() {
            return Err(level);
        }
        if level == 0 || (level == 1 && entry.huge()) {
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
