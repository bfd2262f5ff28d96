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
use crate::hw::walk::{walk_decoded, walk_native};
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

/// The TLB-hit case alone: the physical address if the TLB holds a translation that
/// allows `access` without any further work (for a store, one whose Dirty bit is already
/// set). `None` means "take the full path" ([`translate`]). Counts nothing.
#[inline(always)]
pub fn tlb_hit(tlb: &Tlb, asid: Asid, va: VirtAddr, access: Access) -> Option<PhysAddr> {
    let e = tlb.lookup(asid, va.vpn())?;
    let ok = match access {
        Access::Read => true,
        Access::Write => {
            e.flags & (TlbEntry::WRITABLE | TlbEntry::DIRTY)
                == (TlbEntry::WRITABLE | TlbEntry::DIRTY)
        }
        Access::Exec => e.flags & TlbEntry::NX == 0,
    };
    ok.then(|| e.pfn.addr().add(va.page_offset()))
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
#[allow(clippy::too_many_arguments)]
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
    let vpn = va.vpn();
    if let Some(e) = tlb.lookup(ctx.asid, vpn) {
        let ok = match access {
            Access::Read => true,
            Access::Write => {
                e.flags & (TlbEntry::WRITABLE | TlbEntry::DIRTY)
                    == (TlbEntry::WRITABLE | TlbEntry::DIRTY)
            }
            Access::Exec => e.flags & TlbEntry::NX == 0,
        };
        if ok {
            counters.tlb_hits += 1;
            events.emit(|| Event::TlbHit { va, pfn: e.pfn });
            return Ok(e.pfn.addr().add(va.page_offset()));
        }
        if access == Access::Exec || e.flags & TlbEntry::WRITABLE == 0 {
            counters.tlb_hits += 1;
            return Err(HwFault::Protection);
        }
        // A write through a clean entry: the MMU re-walks to set the Dirty bit.
        counters.tlb_hits += 1;
    } else {
        counters.tlb_misses += 1;
        events.emit(|| Event::TlbMiss { va });
    }
    counters.page_walks += 1;
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
        geom.write_pte(phys, leaf.pte_pa, updated);
    }
    let mut flags = 0;
    if updated.writable() {
        flags |= TlbEntry::WRITABLE;
    }
    if updated.dirty() {
        flags |= TlbEntry::DIRTY;
    }
    if updated.nx() {
        flags |= TlbEntry::NX;
    }
    tlb.insert(ctx.asid, vpn, pte.pfn(), flags);
    Ok(pte.pfn().addr().add(va.page_offset()))
}
