//! Memory pressure (Linux `mm/vmscan.c`, `mm/rmap.c`, `mm/swap_state.c`,
//! `mm/page-writeback.c`).
//!
//! Owns what happens when free frames run short: below the low watermark the kernel
//! reclaims until the high one, asking the [`policy::ReplacementPolicy`] for victims (the
//! policy sees Accessed bits harvested through the reverse map). A clean file page is
//! unmapped everywhere and dropped from the page cache; a dirty one is written back first;
//! an anonymous page (or a private copy) is written to the [`swap::SwapArea`], a real file,
//! and every PTE that mapped it becomes a swap entry, which a later fault reads back (a
//! major fault). A page the kernel is using at that moment (more references than mappings)
//! is skipped. When dirty pages pass `dirty_background_ratio` of RAM they are written back.
//! [`Kernel::check_invariants`] verifies the frame accounting after any step.

pub mod policy;
pub mod swap;

use crate::addr::{Pfn, PgOff, PhysAddr, VirtAddr};
use crate::events::Event;
use crate::fs::{FileKind, InodeId};
use crate::hw::phys::FrameFlags;
use crate::hw::pte::Pte;
use crate::kernel::Kernel;
use crate::mm::pgtable;
use crate::mm::vma::vm;
use policy::Frames;
use std::collections::HashMap;

/// One PTE that maps a frame: (process slot, address, entry address, entry).
type Mapping = (usize, VirtAddr, PhysAddr, Pte);

struct KernelFrames<'a> {
    k: &'a mut Kernel,
}

impl Frames for KernelFrames<'_> {
    fn stamp(&self, pfn: Pfn) -> u32 {
        self.k.phys.meta(pfn).stamp
    }
    fn evictable(&self, pfn: Pfn) -> bool {
        self.k.evictable(pfn)
    }
    fn referenced(&mut self, pfn: Pfn) -> bool {
        self.k.folio_referenced(pfn)
    }
    fn last_use(&self, pfn: Pfn) -> u32 {
        self.k.phys.meta(pfn).last_use
    }
    fn evictable_frames(&self) -> Vec<Pfn> {
        (0..self.k.phys.total_frames())
            .map(Pfn)
            .filter(|p| self.k.evictable(*p))
            .collect()
    }
    fn random(&mut self) -> u64 {
        let x = &mut self.k.rng;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }
}

impl Kernel {
    /// Hands a new page-cache or anonymous frame to the replacement policy.
    pub(crate) fn lru_add(&mut self, pfn: Pfn) {
        let stamp = self.phys.meta(pfn).stamp;
        if let Some(p) = self.policy.as_mut() {
            p.added(pfn, stamp);
        }
    }

    /// Whether `pfn` is a page reclaim may take: a page of a regular file's cache, or an
    /// anonymous page when there is swap space.
    pub(crate) fn evictable(&self, pfn: Pfn) -> bool {
        let m = self.phys.meta(pfn);
        if !m.flags.has(FrameFlags::ALLOCATED) || m.refcount == 0 {
            return false;
        }
        if m.flags.has(FrameFlags::PAGE_CACHE) {
            let Some(ino) = self.inodes.get(m.owner as usize) else {
                return false;
            };
            ino.kind == FileKind::Regular && ino.pages.get(&m.index) == Some(&pfn)
        } else if m.flags.has(FrameFlags::ANON) {
            self.swap.as_ref().is_some_and(|s| s.used() < s.slots())
        } else {
            false
        }
    }

    /// Every PTE that maps `pfn` (Linux `rmap_walk`): through the file's mappings for a
    /// page-cache page, through the private areas holding anonymous pages otherwise.
    pub(crate) fn rmap(&mut self, pfn: Pfn) -> Vec<Mapping> {
        let m = *self.phys.meta(pfn);
        let geom = self.cfg.geometry;
        let cache = m.flags.has(FrameFlags::PAGE_CACHE);
        let mut out = Vec::new();
        for (pi, p) in self.procs.iter().enumerate() {
            let Some(p) = p else { continue };
            for v in p.mm.vmas.values() {
                let candidate = if cache {
                    v.inode() == Some(InodeId(m.owner))
                } else {
                    v.flags & vm::SHARED == 0 && v.anon_vma != 0
                };
                if !candidate {
                    continue;
                }
                let Some(va) = v.addr_of(PgOff(m.index)) else {
                    continue;
                };
                let Some(slot) = pgtable::pte_slot(&self.phys, &geom, p.mm.root, va) else {
                    continue;
                };
                let pte = geom.read_pte(&self.phys, slot);
                if pte.has_frame() && pte.pfn() == pfn {
                    out.push((pi, va, slot, pte));
                }
            }
        }
        out
    }

    /// Linux `folio_referenced`: whether any mapping's Accessed bit (or a read()/write()
    /// through the cache) used the page since the last look; clears them.
    pub(crate) fn folio_referenced(&mut self, pfn: Pfn) -> bool {
        let mut used = false;
        let meta = self.phys.meta_mut(pfn);
        if meta.flags.has(FrameFlags::REFERENCED) {
            meta.flags.0 &= !FrameFlags::REFERENCED;
            used = true;
        }
        if meta.flags.has(FrameFlags::THP) && self.huge_pmd_referenced(pfn) {
            used = true;
        }
        for (pi, va, slot, pte) in self.rmap(pfn) {
            if pte.accessed() {
                let geom = self.cfg.geometry;
                geom.write_pte(&mut self.phys, slot, pte.without(Pte::ACCESSED));
                if let Some(p) = &self.procs[pi] {
                    self.tlb.flush_page(p.mm.asid, va.vpn());
                }
                used = true;
            }
        }
        used
    }

    /// Reclaims up to `want` frames. Returns how many were freed.
    pub(crate) fn reclaim(&mut self, want: usize) -> usize {
        if self.in_reclaim || want == 0 {
            return 0;
        }
        self.in_reclaim = true;
        let mut freed = 0;
        for _ in 0..8 {
            if freed >= want {
                break;
            }
            let Some(mut policy) = self.policy.take() else {
                break;
            };
            let victims = policy.choose(want - freed, &mut KernelFrames { k: self });
            self.policy = Some(policy);
            if victims.is_empty() {
                break;
            }
            let mut progress = false;
            for v in victims {
                if self.evict(v) {
                    freed += 1;
                    progress = true;
                } else if self.phys.meta(v).flags.has(FrameFlags::ALLOCATED) {
                    // Busy now: back to the policy's tail.
                    self.lru_add(v);
                }
            }
            if !progress {
                break;
            }
        }
        self.in_reclaim = false;
        freed
    }

    /// Evicts one page (Linux `shrink_folio_list` for one folio). False when it cannot go
    /// now: busy, write-back failed, or no swap slot.
    pub(crate) fn evict(&mut self, pfn: Pfn) -> bool {
        if !self.evictable(pfn) {
            return false;
        }
        // A huge page is unmapped page by page: split its PMD mapping first.
        self.split_huge_page_of(pfn);
        let meta = *self.phys.meta(pfn);
        let maps = self.rmap(pfn);
        let cache = meta.flags.has(FrameFlags::PAGE_CACHE);
        if meta.refcount != maps.len() as u32 + u32::from(cache) {
            return false;
        }
        if cache {
            let id = InodeId(meta.owner);
            if meta.flags.has(FrameFlags::DIRTY)
                && self
                    .writeback_range(id, meta.index, meta.index, false)
                    .is_err()
            {
                return false;
            }
            // The write-back cleaned and write-protected the PTEs; drop them now.
            for (pi, va, slot, _) in self.rmap(pfn) {
                let geom = self.cfg.geometry;
                geom.write_pte(&mut self.phys, slot, Pte::NONE);
                if let Some(p) = self.procs[pi].as_mut() {
                    self.tlb.flush_page(p.mm.asid, va.vpn());
                    p.mm.rss_file -= 1;
                }
                self.put_page(pfn);
            }
            self.inode_mut(id).pages.remove(&meta.index);
            self.shadow.insert((id.0, meta.index));
            if self.events.enabled() {
                let file = self.inode(id).path.clone();
                self.events.emit(|| Event::CacheEvict {
                    file,
                    pgoff: PgOff(meta.index),
                });
            }
            self.put_page(pfn);
            self.kstats.reclaimed_file_pages += 1;
            return true;
        }
        let Some(swap) = self.swap.as_mut() else {
            return false;
        };
        let slot = match swap.swap_out(self.phys.frame_bytes(pfn), maps.len() as u32) {
            Ok(Some(s)) => s,
            _ => return false,
        };
        for (pi, va, slot_pa, _) in maps {
            let geom = self.cfg.geometry;
            geom.write_pte(&mut self.phys, slot_pa, Pte::swap(slot));
            if let Some(p) = self.procs[pi].as_mut() {
                self.tlb.flush_page(p.mm.asid, va.vpn());
                p.mm.rss_anon -= 1;
            }
            self.put_page(pfn);
        }
        self.kstats.swap_outs += 1;
        self.kstats.reclaimed_anon_pages += 1;
        self.kstats.disk_writes += 1;
        self.kstats.disk_write_pages += 1;
        self.kstats.disk_write_bytes += crate::addr::PAGE_SIZE;
        self.events.emit(|| Event::SwapOut { pfn, slot });
        true
    }

    /// Writes dirty pages back while they are more than `dirty_background_ratio` percent
    /// of RAM (Linux `balance_dirty_pages`, without the throttling).
    pub(crate) fn balance_dirty_pages(&mut self) {
        let limit = self.phys.total_frames() * self.cfg.dirty_background_ratio / 100;
        let dirty: u64 = self.inodes.iter().map(|i| i.nr_dirty).sum();
        if dirty <= limit {
            return;
        }
        let mut order: Vec<(u64, usize)> = self
            .inodes
            .iter()
            .enumerate()
            .map(|(i, ino)| (ino.nr_dirty, i))
            .filter(|x| x.0 > 0)
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        let mut dirty = dirty;
        for (n, i) in order {
            if dirty <= limit / 2 {
                break;
            }
            if self
                .writeback_range(InodeId(i as u32), 0, u64::MAX, false)
                .is_ok()
            {
                dirty -= n;
            }
        }
    }

    /// Checks the frame accounting: every frame is free or accounted for, each page's
    /// reference count equals its mappings plus its page-cache membership, swap slot
    /// references equal the swap entries that name them. Returns what is wrong.
    pub fn check_invariants(&mut self) -> Result<(), String> {
        let geom = self.cfg.geometry;
        let mut mapcount: HashMap<u64, u32> = HashMap::new();
        let mut swaprefs: HashMap<u64, u32> = HashMap::new();
        let mut tables = 0u64;
        for pi in 0..self.procs.len() {
            let Some(p) = &self.procs[pi] else { continue };
            let (root, start, end) = (p.mm.root, VirtAddr(0), VirtAddr(1 << geom.va_bits()));
            tables += p.mm.pt_frames;
            pgtable::for_each_pte(
                &mut self.phys,
                &geom,
                root,
                start,
                end,
                &mut |_, _, _, pte| {
                    if pte.is_swap() {
                        *swaprefs.entry(pte.swap_slot()).or_default() += 1;
                    } else if pte.has_frame() && !pte.special() {
                        *mapcount.entry(pte.pfn().0).or_default() += 1;
                    }
                },
            );
        }
        let mut errors = Vec::new();
        let mut allocated = 0u64;
        let mut pt_seen = 0u64;
        for n in 0..self.phys.total_frames() {
            let pfn = Pfn(n);
            let m = *self.phys.meta(pfn);
            if !m.flags.has(FrameFlags::ALLOCATED) {
                if mapcount.contains_key(&n) {
                    errors.push(format!("free frame {n:#x} is mapped"));
                }
                continue;
            }
            allocated += 1;
            let maps = mapcount.get(&n).copied().unwrap_or(0);
            if m.flags.has(FrameFlags::RESERVED)
                || m.flags.has(FrameFlags::ZERO)
                || m.flags.has(FrameFlags::HUGETLB)
            {
                continue;
            }
            if m.flags.has(FrameFlags::PAGE_TABLE) {
                pt_seen += 1;
                continue;
            }
            if m.flags.has(FrameFlags::PAGE_CACHE) {
                let in_cache = self
                    .inodes
                    .get(m.owner as usize)
                    .is_some_and(|i| i.pages.get(&m.index) == Some(&pfn));
                if !in_cache {
                    errors.push(format!(
                        "page-cache frame {n:#x} is not in its file's cache (leaked)"
                    ));
                } else if m.refcount != maps + 1 {
                    errors.push(format!(
                        "page-cache frame {n:#x}: refcount {} != {maps} mappings + 1",
                        m.refcount
                    ));
                }
            } else if m.flags.has(FrameFlags::ANON) {
                if maps == 0 {
                    errors.push(format!("anonymous frame {n:#x} is mapped nowhere (leaked)"));
                } else if m.refcount != maps {
                    errors.push(format!(
                        "anonymous frame {n:#x}: refcount {} != {maps} mappings",
                        m.refcount
                    ));
                }
            } else {
                errors.push(format!("frame {n:#x} allocated with no purpose (leaked)"));
            }
        }
        errors.extend(self.hugetlb_check(&mapcount));
        if allocated + self.phys.free_frames() != self.phys.total_frames() {
            errors.push(format!(
                "{allocated} allocated + {} free != {} frames",
                self.phys.free_frames(),
                self.phys.total_frames()
            ));
        }
        if pt_seen != tables {
            errors.push(format!(
                "{pt_seen} page-table frames allocated, processes account for {tables}"
            ));
        }
        for ino in &self.inodes {
            for (pg, pfn) in &ino.pages {
                let m = self.phys.meta(pfn);
                if !m.flags.has(FrameFlags::PAGE_CACHE) || m.index != pg {
                    errors.push(format!(
                        "{} page {pg} points at frame {:#x} that is not that page",
                        ino.path, pfn.0
                    ));
                }
            }
        }
        if let Some(s) = &self.swap {
            for (&slot, &n) in &swaprefs {
                if s.refs(slot) != n {
                    errors.push(format!(
                        "swap slot {slot}: {} references, {n} entries",
                        s.refs(slot)
                    ));
                }
            }
            let entries: u64 = swaprefs.len() as u64;
            if s.used() != entries {
                errors.push(format!(
                    "{} swap slots in use, {entries} referenced",
                    s.used()
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}
