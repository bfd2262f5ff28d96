//! The MMU: virtual to physical translation for one access.
//!
//! Owns [`translate`]: TLB lookup, and on a miss a page walk; the permission check of the
//! leaf entry against the access; the Accessed/Dirty bit updates a real MMU makes; the TLB
//! fill. It reports [`HwFault`] and never handles it: the kernel does (`mm/fault.rs`) and
//! the access is retried.
//!
//! The TLB-hit path is a few compares and an add: no allocation, hashing, locking or
//! dynamic dispatch (the event check is one predictable branch; the entry-format check of
//! a non-x86-64 machine is another).

use crate::addr::{PhysAddr, VirtAddr};
use crate::config::PagingGeometry;
use crate::events::{Event, Events};
use crate::hw::phys::PhysMem;
use crate::hw::pte::Pte;
use crate::hw::pte_format::PteFormat;
use crate::hw::tlb::{Asid, Tlb, TlbEntry};
use crate::hw::walk::{walk_decoded, walk_native, walk_x86_64_4level_at};
use crate::stats::Counters;

/// The kind of memory access.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// A data load.
    Read,
    /// A data store.
    Write,
    /// An instruction fetch.
    Exec,
}

impl Access {
    /// "read", "write" or "exec".
    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Exec => "exec",
        }
    }
}

/// A translation fault, as the hardware reports it (x86 #PF error code, in short).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HwFault {
    /// No present entry at some level (`level` 0 is the leaf table).
    NotPresent {
        /// The level whose entry was not present.
        level: u32,
    },
    /// The leaf is present but forbids this access.
    Protection,
}

/// The translation context of the running process: its ASID and root table (CR3).
#[derive(Clone, Copy, Debug)]
pub struct Context {
    /// Address-space id used to tag TLB entries.
    pub asid: Asid,
    /// Frame of the root page table.
    pub root: crate::addr::Pfn,
}

/// Whether a cached translation allows `access` without any further work (for a store,
/// one whose Dirty bit is already set).
#[inline(always)]
pub fn tlb_allows(e: &TlbEntry, access: Access) -> bool {
    match access {
        Access::Read => true,
        Access::Write => {
            e.flags() & (TlbEntry::WRITABLE | TlbEntry::DIRTY)
                == (TlbEntry::WRITABLE | TlbEntry::DIRTY)
        }
        Access::Exec => e.flags() & TlbEntry::NX == 0,
    }
}

/// The TLB-hit case alone: the physical address if the TLB holds a translation that
/// allows `access` without any further work (for a store, one whose Dirty bit is already
/// set). `None` means "take the full path" ([`translate`]). Counts nothing.
#[inline(always)]
pub fn tlb_hit(tlb: &Tlb, asid: Asid, va: VirtAddr, access: Access) -> Option<PhysAddr> {
    let e = tlb.lookup(asid, va.vpn())?;
    tlb_allows(&e, access).then(|| e.pa(va.page_offset()))
}

/// Translates `va` for `access` in `ctx`. Counts TLB hits/misses and walks in `counters`.
#[inline]
#[allow(clippy::too_many_arguments)] // the kernel lends its fields separately (split borrows)
pub fn translate(
    phys: &mut PhysMem,
    tlb: &mut Tlb,
    geom: &PagingGeometry,
    ctx: Context,
    va: VirtAddr,
    access: Access,
    events: &mut Events,
    counters: &mut Counters,
) -> Result<PhysAddr, HwFault> {
    if geom.format == PteFormat::X86_64 {
        translate_as::<true>(phys, tlb, geom, ctx, va, access, events, counters)
    } else {
        translate_as::<false>(phys, tlb, geom, ctx, va, access, events, counters)
    }
}

/// [`translate`] for a geometry known to use x86-64 entries (`NATIVE`: the walk is inline,
/// with no decoding) or any geometry (`!NATIVE`: the walk is a call that dispatches on the
/// format). A caller that translates in a retry loop (the kernel) picks `NATIVE` once,
/// outside the loop, so that the x86-64 loop keeps the shape (and the instruction count)
/// it had before there were other formats: a format test and an out-of-line call inside
/// the loop cost it registers on every walk.
#[inline]
#[allow(clippy::too_many_arguments)] // the kernel lends its fields separately (split borrows)
pub fn translate_as<const NATIVE: bool>(
    phys: &mut PhysMem,
    tlb: &mut Tlb,
    geom: &PagingGeometry,
    ctx: Context,
    va: VirtAddr,
    access: Access,
    events: &mut Events,
    counters: &mut Counters,
) -> Result<PhysAddr, HwFault> {
    if let Some(e) = tlb.lookup(ctx.asid, va.vpn()) {
        counters.tlb_hits += 1;
        if tlb_allows(&e, access) {
            events.emit(|| Event::TlbHit { va, pfn: e.pfn() });
            return Ok(e.pa(va.page_offset()));
        }
        if access == Access::Exec || e.flags() & TlbEntry::WRITABLE == 0 {
            return Err(HwFault::Protection);
        }
        // A write through a clean entry: the MMU re-walks to set the Dirty bit.
        return walk_and_fill::<NATIVE>(phys, tlb, geom, ctx, va, access, events, counters, false);
    }
    translate_missed::<NATIVE>(phys, tlb, geom, ctx, va, access, events, counters)
}

/// The rest of [`translate_as`] after a TLB lookup that found no entry for `va`: counts
/// the miss, walks, fills the TLB.
#[inline]
#[allow(clippy::too_many_arguments)] // the kernel lends its fields separately (split borrows)
pub fn translate_missed<const NATIVE: bool>(
    phys: &mut PhysMem,
    tlb: &mut Tlb,
    geom: &PagingGeometry,
    ctx: Context,
    va: VirtAddr,
    access: Access,
    events: &mut Events,
    counters: &mut Counters,
) -> Result<PhysAddr, HwFault> {
    counters.tlb_misses += 1;
    events.emit(|| Event::TlbMiss { va });
    walk_and_fill::<NATIVE>(phys, tlb, geom, ctx, va, access, events, counters, true)
}

/// The TLB refill of the default machine ([`PagingGeometry::X86_64_4LEVEL`]) after a
/// lookup of `va` in `asid` found no entry, with nobody observing: the walk
/// ([`walk_x86_64_4level`]), the permission check, the Accessed/Dirty update and the TLB
/// fill, as [`translate_missed`] does them for that geometry. Counts nothing: the caller
/// counts the TLB miss and the walk (whatever the outcome, as `translate_missed` does).
/// A fault comes with the physical address of the leaf entry when the walk reached the
/// leaf table (for the fault handler, which would otherwise walk again to find it).
///
/// A miss in a 2 MiB region whose leaf table a walk found (the TLB's paging-structure
/// cache, same ASID, not flushed since) reads the leaf entry alone: the
/// upper entries it skips were present with their Accessed bit set, and the kernel only
/// changes a PMD that points to a table at exit (flush of the ASID) or after a flush.
#[inline(always)]
pub fn refill_x86_64_4level(
    phys: &mut PhysMem,
    tlb: &mut Tlb,
    ctx: Context,
    va: VirtAddr,
    access: Access,
) -> Result<PhysAddr, (HwFault, Option<PhysAddr>)> {
    if va.0 >> 48 != 0 {
        // Beyond the 48 translated bits (and beyond what a cache key can tell apart).
        return Err((HwFault::NotPresent { level: 3 }, None));
    }
    let key = Tlb::pde_key(ctx.asid, va.0);
    let Some(table) = tlb.psc_lookup(key) else {
        return refill_by_walk(phys, tlb, ctx, va, access, key);
    };
    let pa = PhysAddr(table | (((va.0 >> 12) & 511) << 3));
    let e = phys.read_u64(pa);
    if e & Pte::PRESENT == 0 {
        return Err((HwFault::NotPresent { level: 0 }, Some(pa)));
    }
    fill_x86_64(phys, tlb, ctx, va, access, Pte(e), pa, false)
}

/// [`refill_x86_64_4level`] when the paging-structure cache does not hold the leaf table
/// of `va`'s region (`key`): the four-level walk, which caches the table it reaches, and
/// the fill. Out of line, so that the cached case saves only the registers it uses.
#[inline(never)]
fn refill_by_walk(
    phys: &mut PhysMem,
    tlb: &mut Tlb,
    ctx: Context,
    va: VirtAddr,
    access: Access,
    key: u64,
) -> Result<PhysAddr, (HwFault, Option<PhysAddr>)> {
    let leaf = walk_x86_64_4level_at(phys, ctx.root, va)
        .map_err(|(level, slot)| (HwFault::NotPresent { level }, slot.filter(|_| level == 0)))?;
    if leaf.level == 0 {
        tlb.psc_fill(key, leaf.pte_pa.0 & !0xfff);
    }
    fill_x86_64(
        phys,
        tlb,
        ctx,
        va,
        access,
        leaf.pte,
        leaf.pte_pa,
        leaf.level != 0,
    )
}

/// The end of [`refill_x86_64_4level`] once the leaf entry `pte` (at `pte_pa`) is found:
/// the permission check, the Accessed/Dirty update and the TLB fill. `huge`: a 2 MiB
/// page's PMD entry.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the refill's operands, passed on in registers
fn fill_x86_64(
    phys: &mut PhysMem,
    tlb: &mut Tlb,
    ctx: Context,
    va: VirtAddr,
    access: Access,
    pte: Pte,
    pte_pa: PhysAddr,
    huge: bool,
) -> Result<PhysAddr, (HwFault, Option<PhysAddr>)> {
    let raw = pte.0;
    let need = Pte::PRESENT
        | Pte::USER
        | if access == Access::Write {
            Pte::WRITABLE
        } else {
            0
        };
    if raw & need != need || (access == Access::Exec && raw & Pte::NX != 0) {
        let slot = (!huge).then_some(pte_pa);
        return Err((HwFault::Protection, slot));
    }
    let updated = raw
        | Pte::ACCESSED
        | if access == Access::Write {
            Pte::DIRTY
        } else {
            0
        };
    if updated != raw {
        phys.write_u64(pte_pa, updated);
    }
    // Writable and Dirty stay where the PTE has them (bits 1 and 6); NX (bit 63) -> bit 2.
    const _: () =
        assert!(TlbEntry::WRITABLE as u64 == Pte::WRITABLE && TlbEntry::DIRTY as u64 == Pte::DIRTY);
    let flags = (updated & (Pte::WRITABLE | Pte::DIRTY)) as u8 | ((updated >> 61) & 4) as u8;
    let mut pfn = pte.pfn();
    if huge {
        // A huge page: the 4 KiB page of it that `va` is in.
        pfn = crate::addr::Pfn(pfn.0 + (va.vpn().0 & 511));
    }
    tlb.insert_missing(ctx.asid, va.vpn(), pfn, flags);
    Ok(pfn.addr().add(va.page_offset()))
}

/// The page walk for `va`, the permission check of the leaf, the Accessed/Dirty update
/// and the TLB fill; `missed`: the TLB holds no entry for `va`.
#[inline]
#[allow(clippy::too_many_arguments)] // the kernel lends its fields separately (split borrows)
fn walk_and_fill<const NATIVE: bool>(
    phys: &mut PhysMem,
    tlb: &mut Tlb,
    geom: &PagingGeometry,
    ctx: Context,
    va: VirtAddr,
    access: Access,
    events: &mut Events,
    counters: &mut Counters,
    missed: bool,
) -> Result<PhysAddr, HwFault> {
    counters.page_walks += 1;
    if NATIVE && missed && !events.enabled() && *geom == PagingGeometry::X86_64_4LEVEL {
        return refill_x86_64_4level(phys, tlb, ctx, va, access).map_err(|(hw, _)| hw);
    }
    let leaf = if NATIVE {
        walk_native(phys, geom, ctx.root, va, events)
    } else {
        walk_decoded(phys, geom, ctx.root, va, events)
    }
    .map_err(|level| HwFault::NotPresent { level })?;
    let pte = leaf.pte;
    let allowed = pte.user()
        && match access {
            Access::Read => true,
            Access::Write => pte.writable(),
            Access::Exec => !pte.nx(),
        };
    if !allowed {
        return Err(HwFault::Protection);
    }
    let mut updated = pte.with(Pte::ACCESSED);
    if access == Access::Write {
        updated = updated.with(Pte::DIRTY);
    }
    if updated != pte {
        if NATIVE {
            phys.write_u64(leaf.pte_pa, updated.0);
        } else if leaf.level == 0 {
            geom.write_pte(phys, leaf.pte_pa, updated);
        } else {
            // An arm64 block: an upper-level entry's encoding.
            geom.write_table(phys, leaf.pte_pa, updated);
        }
    }
    let flags = (u8::from(updated.writable()) * TlbEntry::WRITABLE)
        | (u8::from(updated.dirty()) * TlbEntry::DIRTY)
        | (u8::from(updated.nx()) * TlbEntry::NX);
    // A huge page's translation is cached for the one 4 KiB page used (x86 may splinter
    // large pages in its TLB), so the TLB keeps a single entry format.
    let pfn = leaf.pfn_of(geom, va);
    if missed {
        tlb.insert_missing(ctx.asid, va.vpn(), pfn, flags);
    } else {
        tlb.insert(ctx.asid, va.vpn(), pfn, flags);
    }
    Ok(pfn.addr().add(va.page_offset()))
}

// The x86-64 4-level walk these tests compare exists in the 4 KiB build only.
#[cfg(all(test, not(any(feature = "page-16k", feature = "page-64k"))))]
mod tests {
    use super::*;
    use crate::addr::Pfn;
    use crate::events::Recorder;
    use crate::hw::walk::tests::tables;

    #[test]
    fn the_default_geometry_refill_matches_the_general_translation() {
        let geom = PagingGeometry::X86_64_4LEVEL;
        let (mut general, root, vas) = tables();
        let (mut special, _, _) = tables();
        let (mut tlb_g, mut tlb_s) = (Tlb::new(64, 4), Tlb::new(64, 4));
        let mut observed = Events::default();
        observed.set_observer(Some(Box::new(Recorder::default())));
        let mut counters = Counters::default();
        let ctx = Context { asid: 3, root };
        for (i, va) in vas.into_iter().enumerate() {
            for access in [Access::Exec, Access::Read, Access::Write] {
                // A page is looked up (and missed) before each refill.
                let g = (tlb_g.lookup(3, va.vpn()).is_none()).then(|| {
                    translate_missed::<true>(
                        &mut general,
                        &mut tlb_g,
                        &geom,
                        ctx,
                        va,
                        access,
                        &mut observed,
                        &mut counters,
                    )
                });
                let s = (tlb_s.lookup(3, va.vpn()).is_none()).then(|| {
                    refill_x86_64_4level(&mut special, &mut tlb_s, ctx, va, access)
                        .map_err(|(hw, _)| hw)
                });
                assert_eq!(g, s, "{va} {access:?}");
                let entry = |t: &Tlb| t.lookup(3, va.vpn()).map(|e| (e.pfn(), e.flags()));
                assert_eq!(entry(&tlb_g), entry(&tlb_s), "{va} {access:?}");
                for f in 1..general.total_frames() {
                    assert_eq!(general.frame_bytes(Pfn(f)), special.frame_bytes(Pfn(f)));
                }
                if i % 3 == 0 {
                    tlb_g.flush_page(3, va.vpn());
                    tlb_s.flush_page(3, va.vpn());
                }
            }
        }
        assert!(counters.page_walks > 100, "{counters:?}");
    }
}
