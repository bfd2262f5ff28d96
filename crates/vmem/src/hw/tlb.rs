//! The translation lookaside buffer.
//!
//! Owns [`Tlb`]: a set-associative cache of translations tagged with an address-space id
//! (ASID), so a context switch needs no flush. The set is chosen by the low bits of the
//! virtual page number; replacement within a set is round-robin. Lookups allocate, hash and
//! lock nothing: one array index and a short scan of `ways` entries.
//!
//! The kernel must invalidate entries whenever it changes a PTE that may be cached
//! (unmap, protect, copy-on-write): [`Tlb::flush_page`], [`Tlb::flush_asid`], [`Tlb::flush_all`].

use crate::addr::{Pfn, Vpn};

/// An address-space identifier (Linux: the mm's ASID/PCID).
pub type Asid = u16;

const INVALID: u64 = u64::MAX;

/// One cached translation.
#[derive(Clone, Copy, Debug)]
pub struct TlbEntry {
    key: u64,
    /// The frame.
    pub pfn: Pfn,
    /// [`TlbEntry::WRITABLE`] etc.
    pub flags: u8,
}

impl TlbEntry {
    /// Writes allowed.
    pub const WRITABLE: u8 = 1;
    /// The PTE's Dirty bit is already set (a write needs no walk).
    pub const DIRTY: u8 = 2;
    /// Instruction fetch forbidden.
    pub const NX: u8 = 4;

    #[inline]
    fn key(asid: Asid, vpn: Vpn) -> u64 {
        (vpn.0 << 16) | asid as u64
    }
}

/// A set-associative, ASID-tagged TLB.
#[derive(Debug)]
pub struct Tlb {
    entries: Box<[TlbEntry]>,
    ways: usize,
    set_mask: u64,
    victim: Box<[u8]>,
}

impl Tlb {
    /// A TLB of `sets` sets (rounded up to a power of two) of `ways` entries.
    pub fn new(sets: usize, ways: usize) -> Tlb {
        let sets = sets.max(1).next_power_of_two();
        let ways = ways.clamp(1, 255);
        Tlb {
            entries: vec![
                TlbEntry {
                    key: INVALID,
                    pfn: Pfn(0),
                    flags: 0
                };
                sets * ways
            ]
            .into_boxed_slice(),
            ways,
            set_mask: sets as u64 - 1,
            victim: vec![0; sets].into_boxed_slice(),
        }
    }

    /// Total entries.
    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    fn set_base(&self, vpn: Vpn) -> usize {
        (vpn.0 & self.set_mask) as usize * self.ways
    }

    /// The cached translation of `vpn` in `asid`, if any.
    #[inline]
    pub fn lookup(&self, asid: Asid, vpn: Vpn) -> Option<TlbEntry> {
        let key = TlbEntry::key(asid, vpn);
        let base = self.set_base(vpn);
        self.entries[base..base + self.ways]
            .iter()
            .find(|e| e.key == key)
            .copied()
    }

    /// Caches a translation, replacing any entry for the same page or else the set's victim.
    pub fn insert(&mut self, asid: Asid, vpn: Vpn, pfn: Pfn, flags: u8) {
        let key = TlbEntry::key(asid, vpn);
        let base = self.set_base(vpn);
        let set = &mut self.entries[base..base + self.ways];
        let slot = match set.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => match set.iter().position(|e| e.key == INVALID) {
                Some(i) => i,
                None => {
                    let v = &mut self.victim[base / self.ways];
                    let i = *v as usize % self.ways;
                    *v = ((i + 1) % self.ways) as u8;
                    i
                }
            },
        };
        set[slot] = TlbEntry { key, pfn, flags };
    }

    /// Invalidates the translation of one page (x86 `invlpg`).
    pub fn flush_page(&mut self, asid: Asid, vpn: Vpn) {
        let key = TlbEntry::key(asid, vpn);
        let base = self.set_base(vpn);
        for e in &mut self.entries[base..base + self.ways] {
            if e.key == key {
                e.key = INVALID;
            }
        }
    }

    /// Invalidates every translation of one address space.
    pub fn flush_asid(&mut self, asid: Asid) {
        for e in self.entries.iter_mut() {
            if e.key != INVALID && (e.key & 0xffff) as Asid == asid {
                e.key = INVALID;
            }
        }
    }

    /// Invalidates everything.
    pub fn flush_all(&mut self) {
        for e in self.entries.iter_mut() {
            e.key = INVALID;
        }
    }

    /// Number of valid entries (for tests and explain output).
    pub fn valid_entries(&self) -> usize {
        self.entries.iter().filter(|e| e.key != INVALID).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_tagged_by_asid() {
        let mut t = Tlb::new(4, 2);
        t.insert(1, Vpn(8), Pfn(3), TlbEntry::WRITABLE);
        assert_eq!(t.lookup(1, Vpn(8)).unwrap().pfn, Pfn(3));
        assert!(t.lookup(2, Vpn(8)).is_none());
        t.flush_asid(1);
        assert!(t.lookup(1, Vpn(8)).is_none());
    }

    #[test]
    fn a_full_set_evicts_round_robin() {
        let mut t = Tlb::new(1, 2);
        t.insert(1, Vpn(1), Pfn(1), 0);
        t.insert(1, Vpn(2), Pfn(2), 0);
        t.insert(1, Vpn(3), Pfn(3), 0);
        assert!(t.lookup(1, Vpn(1)).is_none());
        assert!(t.lookup(1, Vpn(2)).is_some());
        assert!(t.lookup(1, Vpn(3)).is_some());
        t.flush_page(1, Vpn(3));
        assert!(t.lookup(1, Vpn(3)).is_none());
    }
}
