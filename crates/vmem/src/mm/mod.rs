//! The kernel's memory manager (Linux `mm/`).
//!
//! Owns [`Mm`] (Linux `mm_struct`): the tree of VMAs ordered by address, the root page
//! table, the ASID and the resident-set counters, with the tree operations every syscall
//! shares (find, split at an address, insert, merge). Each address-space syscall lives in
//! its own file, as in Asterinas' `vmar/`: [`mmap`], [`munmap`], [`mprotect`], [`msync`],
//! [`madvise`], [`mremap`], [`mincore`]; page faults are in [`fault`], page-table
//! construction in [`pgtable`]; 2 MiB pages in [`huge_memory`] (transparent) and
//! [`hugetlb`] (MAP_HUGETLB, from a reserved pool).

pub mod fault;
pub mod fork;
pub mod huge_memory;
pub mod hugetlb;
pub mod madvise;
pub mod mincore;
pub mod mmap;
pub mod mprotect;
pub mod mremap;
pub mod msync;
pub mod munmap;
pub mod pgtable;
pub mod segmentation;
pub mod vma;

use crate::addr::{Pfn, VirtAddr};
use crate::hw::tlb::Asid;
use std::collections::BTreeMap;
use vma::Vma;

/// The VMAs of an address space keyed by start address (they never overlap), used as the
/// `BTreeMap` it derefs to, plus a copy of the last VMA a fault found (Linux's
/// per-thread `vmacache`): any mutable use of the tree drops the copy, so it is never
/// stale.
#[derive(Debug, Default)]
pub struct VmaTree {
    map: BTreeMap<u64, Vma>,
    last: std::cell::Cell<Option<Vma>>,
}

impl std::ops::Deref for VmaTree {
    type Target = BTreeMap<u64, Vma>;
    fn deref(&self) -> &BTreeMap<u64, Vma> {
        &self.map
    }
}

impl std::ops::DerefMut for VmaTree {
    fn deref_mut(&mut self) -> &mut BTreeMap<u64, Vma> {
        self.last.set(None);
        &mut self.map
    }
}

/// An address space.
#[derive(Debug)]
pub struct Mm {
    /// VMAs keyed by start address; they never overlap.
    pub vmas: VmaTree,
    /// Frame of the root page table (CR3).
    pub root: Pfn,
    /// TLB tag.
    pub asid: Asid,
    /// Identity used in anonymous frames' owner field.
    pub id: u32,
    /// Resident file-backed pages (page-cache pages mapped here).
    pub rss_file: u64,
    /// Resident anonymous pages (private copies and anonymous memory).
    pub rss_anon: u64,
    /// Page-table frames (the root included).
    pub pt_frames: u64,
    /// Top of the area `mmap` searches downward from.
    pub mmap_base: u64,
    /// Start of the brk heap (set by exec).
    pub start_brk: VirtAddr,
    /// Current end of the brk heap.
    pub brk: VirtAddr,
    /// The huge pages mapped by PMD entries, by first address, each with the page-table
    /// frame kept for splitting it (Linux deposits one with every huge PMD, so that a
    /// split never needs memory).
    pub thp: BTreeMap<u64, Pfn>,
}

impl Mm {
    /// The VMA containing `va`.
    pub fn find_vma(&self, va: VirtAddr) -> Option<&Vma> {
        self.vmas
            .range(..=va.0)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.contains(va))
    }

    /// The VMA containing `va`, as a copy; answered from the copy of the last one found
    /// when `va` lies in it (the fault path: faults come in runs within one VMA).
    #[inline]
    pub fn find_vma_cached(&self, va: VirtAddr) -> Option<Vma> {
        if let Some(v) = self.vmas.last.get() {
            if v.contains(va) {
                return Some(v);
            }
        }
        let v = self.find_vma(va).copied();
        if v.is_some() {
            self.vmas.last.set(v);
        }
        v
    }

    /// The first VMA that ends after `va` (Linux `find_vma`).
    pub fn find_vma_after(&self, va: VirtAddr) -> Option<&Vma> {
        if let Some(v) = self.find_vma(va) {
            return Some(v);
        }
        self.vmas.range(va.0..).next().map(|(_, v)| v)
    }

    /// Whether any VMA intersects `[start, end)`.
    pub fn intersects(&self, start: VirtAddr, end: VirtAddr) -> bool {
        self.find_vma_after(start).is_some_and(|v| v.start < end)
    }

    /// Splits the VMA that strictly contains `at` into two at `at`.
    pub fn split_at(&mut self, at: VirtAddr) {
        let key = match self.vmas.range(..at.0).next_back() {
            Some((&k, v)) if v.start < at && at < v.end => k,
            _ => return,
        };
        let v = self.vmas.get_mut(&key).expect("key just found");
        let tail = v.split_off(at);
        self.vmas.insert(tail.start.0, tail);
    }

    /// Copies of the VMAs that intersect `[start, end)`, in order.
    pub fn vmas_in(&self, start: VirtAddr, end: VirtAddr) -> Vec<Vma> {
        let mut out = Vec::new();
        if let Some(v) = self.find_vma(start) {
            if v.start < start {
                out.push(*v);
            }
        }
        out.extend(self.vmas.range(start.0..end.0).map(|(_, v)| *v));
        out
    }

    /// Inserts a VMA (which must not overlap any) and merges it with its neighbours.
    /// Returns the VMA that now contains `vma.start`.
    pub fn insert(&mut self, vma: Vma) -> Vma {
        debug_assert!(!self.intersects(vma.start, vma.end));
        self.vmas.insert(vma.start.0, vma);
        self.merge_around(vma.start)
    }

    /// Merges the VMA starting at `start` with the previous and next ones where allowed.
    pub fn merge_around(&mut self, start: VirtAddr) -> Vma {
        let mut cur = self.vmas[&start.0];
        if let Some(next) = self.vmas.get(&cur.end.0).copied() {
            if cur.can_merge_with(&next) {
                self.vmas.remove(&next.start.0);
                cur.end = next.end;
                cur.anon_vma = cur.anon_vma.max(next.anon_vma);
                self.vmas.insert(cur.start.0, cur);
            }
        }
        if let Some((_, prev)) = self.vmas.range(..cur.start.0).next_back() {
            let mut prev = *prev;
            if prev.can_merge_with(&cur) {
                self.vmas.remove(&cur.start.0);
                prev.end = cur.end;
                prev.anon_vma = prev.anon_vma.max(cur.anon_vma);
                self.vmas.insert(prev.start.0, prev);
                cur = prev;
            }
        }
        cur
    }

    /// Number of VMAs.
    pub fn map_count(&self) -> usize {
        self.vmas.len()
    }
}
