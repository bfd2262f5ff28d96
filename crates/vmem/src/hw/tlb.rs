//! The translation lookaside buffer.
//!
//! Owns [`Tlb`]: a set-associative cache of translations tagged with an address-space id
//! (ASID), so a context switch needs no flush. The set is chosen by the low bits of the
//! virtual page number; replacement within a set is round-robin. Lookups allocate, hash and
//! lock nothing: one compare in a direct-mapped lookaside copy of recent entries, else one
//! array index and a compare of every way of the set (no branch on which way hits).
//!
//! Next to it sits a paging-structure cache (Intel's PDE cache): the leaf tables the
//! default machine's walks found, by 2 MiB region and ASID, so that a later miss in one of
//! those regions reads one entry instead of four. Any flush empties it, as x86 `invlpg`
//! empties every paging-structure cache.
//!
//! The kernel must invalidate entries whenever it changes a PTE that may be cached
//! (unmap, protect, copy-on-write): [`Tlb::flush_page`], [`Tlb::flush_asid`], [`Tlb::flush_all`].

use crate::addr::{Pfn, PhysAddr, Vpn, PAGE_SHIFT};

/// An address-space identifier (Linux: the mm's ASID/PCID).
pub type Asid = u16;

const INVALID: u64 = u64::MAX;

/// One cached translation: the tag and, in one word, the frame's physical base address
/// with the flag bits in its (otherwise zero) low bits. 16 bytes, so a 4-way set is one
/// 64-byte cache line.
#[derive(Clone, Copy, Debug)]
pub struct TlbEntry {
    key: u64,
    val: u64,
}

impl TlbEntry {
    /// Writes allowed (the bit of an x86-64 PTE's R/W, so that a refill copies it).
    pub const WRITABLE: u8 = 0x02;
    /// The PTE's Dirty bit is already set (a write needs no walk); the PTE's own bit too.
    pub const DIRTY: u8 = 0x40;
    /// Instruction fetch forbidden.
    pub const NX: u8 = 0x04;
    /// Every flag.
    pub const FLAGS: u8 = Self::WRITABLE | Self::DIRTY | Self::NX;
    /// Set in every valid entry's value word, so a valid entry's value is never zero.
    const VALID: u64 = 8;
    const FLAG_MASK: u64 = (1 << PAGE_SHIFT) - 1;

    #[inline(always)]
    fn key(asid: Asid, vpn: Vpn) -> u64 {
        (vpn.0 << 16) | asid as u64
    }

    /// The frame.
    #[inline(always)]
    pub fn pfn(&self) -> Pfn {
        Pfn(self.val >> PAGE_SHIFT)
    }

    /// [`TlbEntry::WRITABLE`] etc.
    #[inline(always)]
    pub fn flags(&self) -> u8 {
        (self.val & u64::from(Self::FLAGS)) as u8
    }

    /// The physical address of byte `offset` of the page.
    #[inline(always)]
    pub fn pa(&self, offset: u64) -> PhysAddr {
        PhysAddr((self.val & !Self::FLAG_MASK) | offset)
    }
}

/// Bits of the longest page number any geometry translates (5-level paging: 57-bit
/// addresses, 4 KiB pages). Keys hold the page number in bits 16..61.
const MAX_VPN_BITS: u32 = 45;

impl Tlb {
    /// One past the highest address any geometry translates (57 bits: 5-level paging).
    pub const TRANSLATABLE_VA: u64 = 1 << (MAX_VPN_BITS + 12);
}

/// Slots of the lookaside copy (a power of two).
const L0_SLOTS: usize = 512;

/// A set-associative, ASID-tagged TLB.
///
/// In front of the sets sits a direct-mapped lookaside copy of some of their entries,
/// indexed by the low bits of the page number: a hit there is one compare. It is a
/// subset of the sets at all times (an entry enters it when inserted in a set and leaves
/// it when it leaves its set), so it changes no outcome: which translations are cached,
/// hits, misses and replacement are those of the set-associative TLB alone.
#[derive(Debug)]
pub struct Tlb {
    l0: Box<[TlbEntry; L0_SLOTS]>,
    /// The sets when they have 4 ways (the default and the common case): one 64-byte
    /// array per set, found with one bounds check. Empty otherwise.
    quads: Box<[[TlbEntry; 4]]>,
    /// The sets of any other associativity, `ways` entries each. Empty for 4 ways.
    entries: Box<[TlbEntry]>,
    ways: usize,
    set_mask: u64,
    /// Paging-structure cache (Intel's PDE cache), direct-mapped by 2 MiB region: each
    /// slot holds a key (`pde_key` with the flush generation in its top bits) and the
    /// physical address of that region's leaf table. Any flush empties it (x86 `invlpg`
    /// drops every paging-structure cache entry too), by starting a new generation.
    psc: [(u64, u64); PSC_SLOTS],
    /// The entry of the cache used last (key without the generation, table), checked
    /// first: runs of misses in one region, as faults in address order make, find it with
    /// one compare.
    psc_last: (u64, u64),
    /// The current generation, already shifted to bit [`PSC_GEN_SHIFT`].
    psc_gen: u64,
    /// Next way to evict in each set (always `< ways`); for 4-way sets, in bits 0..2, with
    /// the mask of the set's valid ways in bits 4..8 (so that a refill finds a free way
    /// without comparing every way's tag, and a full set with one compare).
    victim: Box<[u8]>,
}

/// Slots of the paging-structure cache (a power of two): one per 2 MiB region, direct
/// mapped, so 1 GiB of address space is covered when the regions are contiguous. Real
/// PDE caches hold 32 (Intel) to 64 (AMD) entries; this one is larger because it is the
/// emulator's own shortcut as much as a model: it changes no outcome (no fault, no
/// Accessed bit, no count differs with or without it), only how many entries a refill
/// reads, and observed runs walk every level anyway.
pub(crate) const PSC_SLOTS: usize = 512;

/// The paging-structure cache's key holds the ASID in bits 0..16 and the region number
/// (`va >> 21`, 27 bits for 48-bit addresses) above it; the flush generation sits above
/// both.
const PSC_GEN_SHIFT: u32 = 43;

/// Bits of a 4-way set's `victim` byte: the mask of valid ways. (Bits 2 and 3 stay
/// clear.)
const VALID_SHIFT: u32 = 4;

/// A 4-way set's `victim` byte with every way valid is at least this.
const FULL: u8 = 0xf << VALID_SHIFT;

const EMPTY: TlbEntry = TlbEntry {
    key: INVALID,
    val: 0,
};

impl Tlb {
    /// A TLB of `sets` sets (rounded up to a power of two) of `ways` entries.
    pub fn new(sets: usize, ways: usize) -> Tlb {
        let sets = sets.max(1).next_power_of_two();
        let ways = ways.clamp(1, 255);
        let (quads, entries) = if ways == 4 {
            (vec![[EMPTY; 4]; sets], Vec::new())
        } else {
            (Vec::new(), vec![EMPTY; sets * ways])
        };
        Tlb {
            l0: Box::new([EMPTY; L0_SLOTS]),
            quads: quads.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
            ways,
            set_mask: sets as u64 - 1,
            psc: [(INVALID, 0); PSC_SLOTS],
            psc_gen: 0,
            psc_last: (INVALID, 0),
            victim: vec![0; sets].into_boxed_slice(),
        }
    }

    /// Total entries.
    pub fn capacity(&self) -> usize {
        self.victim.len() * self.ways
    }

    /// The lookaside slot of a key (the low bits of its page number).
    #[inline(always)]
    fn l0_slot(key: u64) -> usize {
        (key >> 16) as usize & (L0_SLOTS - 1)
    }

    /// Drops `key` from the lookaside copy (it is leaving its set). Without a branch:
    /// whether the slot still holds `key` is as good as random after random refills.
    /// Only the key changes: no lookup matches `INVALID`, so the value is never read.
    #[inline(always)]
    fn l0_forget(&mut self, key: u64) {
        let e = &mut self.l0[Self::l0_slot(key)];
        e.key = if e.key == key { INVALID } else { e.key };
    }

    /// The cached translation of `vpn` in `asid`, if any.
    ///
    /// The lookaside copy first; then the set. For 4-way sets, every way is compared and
    /// the hit way taken from the bit mask of matches, without a branch that depends on
    /// which way holds it: random addresses cause no branch mispredictions.
    #[inline(always)]
    pub fn lookup(&self, asid: Asid, vpn: Vpn) -> Option<TlbEntry> {
        if vpn.0 >> MAX_VPN_BITS != 0 {
            // No geometry translates it, and its key would lose its top bits in the shift
            // and find the entry of the page below it (an address with bits 60..63 set),
            // or with ASID 0xffff match an empty way's INVALID key.
            return None;
        }
        self.lookup_translatable(asid, vpn)
    }

    /// [`Tlb::lookup`] for a page number the caller has already checked is below
    /// [`Tlb::TRANSLATABLE_VA`] (as an address; the short paths fold that test into their
    /// page-offset test).
    #[inline(always)]
    pub fn lookup_translatable(&self, asid: Asid, vpn: Vpn) -> Option<TlbEntry> {
        debug_assert!(vpn.0 >> MAX_VPN_BITS == 0, "{vpn:?} is not translatable");
        let key = TlbEntry::key(asid, vpn);
        let e = self.l0[Self::l0_slot(key)];
        if e.key == key {
            return Some(e);
        }
        let set = (vpn.0 & self.set_mask) as usize;
        if let Some(s) = self.quads.get(set) {
            let m = u32::from(s[0].key == key)
                | u32::from(s[1].key == key) << 1
                | u32::from(s[2].key == key) << 2
                | u32::from(s[3].key == key) << 3;
            if m == 0 {
                return None;
            }
            return Some(s[(m.trailing_zeros() & 3) as usize]);
        }
        self.lookup_slow(key, set)
    }

    #[inline(never)]
    fn lookup_slow(&self, key: u64, set: usize) -> Option<TlbEntry> {
        let base = set * self.ways;
        self.entries[base..base + self.ways]
            .iter()
            .find(|e| e.key == key)
            .copied()
    }

    /// Caches a translation, replacing any entry for the same page or else the first
    /// free way or else the set's round-robin victim.
    #[inline]
    pub fn insert(&mut self, asid: Asid, vpn: Vpn, pfn: Pfn, flags: u8) {
        self.insert_as(asid, vpn, pfn, flags, false);
    }

    /// [`Tlb::insert`] for a page the TLB holds no entry for (just looked up and missed):
    /// the search for an entry of the same page is skipped.
    #[inline]
    pub fn insert_missing(&mut self, asid: Asid, vpn: Vpn, pfn: Pfn, flags: u8) {
        debug_assert!(self.lookup(asid, vpn).is_none());
        self.insert_as(asid, vpn, pfn, flags, true);
    }

    #[inline(always)]
    fn insert_as(&mut self, asid: Asid, vpn: Vpn, pfn: Pfn, flags: u8, missing: bool) {
        debug_assert!(vpn.0 >> MAX_VPN_BITS == 0, "no walk translates {vpn:?}");
        let key = TlbEntry::key(asid, vpn);
        let e = TlbEntry {
            key,
            val: (pfn.0 << PAGE_SHIFT) | u64::from(flags & TlbEntry::FLAGS) | TlbEntry::VALID,
        };
        let set = (vpn.0 & self.set_mask) as usize;
        if let Some(s) = self.quads.get_mut(set) {
            let same = if missing {
                0
            } else {
                u32::from(s[0].key == key)
                    | u32::from(s[1].key == key) << 1
                    | u32::from(s[2].key == key) << 2
                    | u32::from(s[3].key == key) << 3
            };
            let v = &mut self.victim[set];
            let way = if same != 0 {
                same.trailing_zeros()
            } else if *v >= FULL {
                // Every way valid: the round-robin victim, and the next one (the carry
                // out of bits 0..2 lands in bit 2, which the mask clears).
                let i = u32::from(*v & 3);
                *v = v.wrapping_add(1) & (FULL | 3);
                i
            } else {
                let free = (!u32::from(*v) >> VALID_SHIFT) & 0xf;
                let w = free.trailing_zeros();
                *v |= 1 << (VALID_SHIFT + w);
                w
            };
            let old = std::mem::replace(&mut s[(way & 3) as usize], e);
            self.l0_forget(old.key);
        } else {
            self.insert_slow(set, e);
        }
        self.l0[Self::l0_slot(key)] = e;
    }

    #[inline(never)]
    fn insert_slow(&mut self, set: usize, e: TlbEntry) {
        let ways = self.ways;
        let base = set * ways;
        let entries = &mut self.entries[base..base + ways];
        let slot = match entries.iter().position(|x| x.key == e.key) {
            Some(i) => i,
            None => match entries.iter().position(|x| x.key == INVALID) {
                Some(i) => i,
                None => {
                    let v = &mut self.victim[set];
                    let i = *v as usize;
                    *v = if i + 1 >= ways { 0 } else { i as u8 + 1 };
                    i
                }
            },
        };
        let old = std::mem::replace(&mut entries[slot], e);
        self.l0_forget(old.key);
    }

    /// Invalidates the translation of one page (x86 `invlpg`).
    pub fn flush_page(&mut self, asid: Asid, vpn: Vpn) {
        let key = TlbEntry::key(asid, vpn);
        let set = (vpn.0 & self.set_mask) as usize;
        if let Some(q) = self.quads.get_mut(set) {
            let mut gone = 0u8;
            for (way, e) in q.iter_mut().enumerate() {
                if e.key == key {
                    *e = EMPTY;
                    gone |= 1 << way;
                }
            }
            self.victim[set] &= !(gone << VALID_SHIFT);
        } else {
            let base = set * self.ways;
            for e in &mut self.entries[base..base + self.ways] {
                if e.key == key {
                    *e = EMPTY;
                }
            }
        }
        self.l0_forget(key);
        self.psc_flush();
    }

    /// The paging-structure cache's key for the 2 MiB region of `va` in `asid`.
    #[inline(always)]
    pub(crate) fn pde_key(asid: Asid, va: u64) -> u64 {
        ((va >> 21) << 16) | asid as u64
    }

    /// The physical address of the leaf table the paging-structure cache holds for the
    /// region of `key` (`pde_key`), if it holds one.
    #[inline(always)]
    pub(crate) fn psc_lookup(&mut self, key: u64) -> Option<u64> {
        if self.psc_last.0 == key {
            return Some(self.psc_last.1);
        }
        let (k, table) = self.psc[(key >> 16) as usize & (PSC_SLOTS - 1)];
        if k != key | self.psc_gen {
            return None;
        }
        self.psc_last = (key, table);
        Some(table)
    }

    /// Caches `table` (a leaf table's physical address) for the region of `key`.
    #[inline(always)]
    pub(crate) fn psc_fill(&mut self, key: u64, table: u64) {
        self.psc[(key >> 16) as usize & (PSC_SLOTS - 1)] = (key | self.psc_gen, table);
        self.psc_last = (key, table);
    }

    /// Empties the paging-structure cache: a new generation, so that no slot's key matches
    /// (when the generations wrap, every slot is cleared).
    fn psc_flush(&mut self) {
        self.psc_last.0 = INVALID;
        self.psc_gen = self.psc_gen.wrapping_add(1 << PSC_GEN_SHIFT);
        if self.psc_gen == 0 {
            self.psc.fill((INVALID, 0));
        }
    }

    /// Recomputes the valid-way masks of 4-way sets after entries were invalidated.
    fn recount_valid(&mut self) {
        self.psc_flush();
        for (q, v) in self.quads.iter().zip(self.victim.iter_mut()) {
            let mask = q
                .iter()
                .enumerate()
                .fold(0u8, |m, (w, e)| m | (u8::from(e.key != INVALID) << w));
            *v = (*v & 3) | (mask << VALID_SHIFT);
        }
    }

    /// Every entry, set by set, and the lookaside copy.
    fn all_mut(&mut self) -> impl Iterator<Item = &mut TlbEntry> {
        self.quads
            .iter_mut()
            .flatten()
            .chain(self.entries.iter_mut())
            .chain(self.l0.iter_mut())
    }

    /// Invalidates every translation of one address space.
    pub fn flush_asid(&mut self, asid: Asid) {
        for e in self.all_mut() {
            if e.key != INVALID && (e.key & 0xffff) as Asid == asid {
                *e = EMPTY;
            }
        }
        self.recount_valid();
    }

    /// Invalidates everything.
    pub fn flush_all(&mut self) {
        for e in self.all_mut() {
            *e = EMPTY;
        }
        self.recount_valid();
    }

    /// Number of valid entries (for tests and explain output).
    pub fn valid_entries(&self) -> usize {
        self.quads
            .iter()
            .flatten()
            .chain(self.entries.iter())
            .filter(|e| e.key != INVALID)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_tagged_by_asid() {
        let mut t = Tlb::new(4, 2);
        t.insert(1, Vpn(8), Pfn(3), TlbEntry::WRITABLE);
        assert_eq!(t.lookup(1, Vpn(8)).unwrap().pfn(), Pfn(3));
        assert_eq!(t.lookup(1, Vpn(8)).unwrap().flags(), TlbEntry::WRITABLE);
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

    #[test]
    fn four_way_sets_hit_in_every_way_and_evict_round_robin() {
        let mut t = Tlb::new(2, 4);
        assert_eq!(t.capacity(), 8);
        // Even pages share set 0.
        for i in 0..4 {
            t.insert(1, Vpn(2 * i), Pfn(10 + i), 0);
        }
        for i in 0..4 {
            assert_eq!(t.lookup(1, Vpn(2 * i)).unwrap().pfn(), Pfn(10 + i));
        }
        assert_eq!(t.valid_entries(), 4);
        t.insert(1, Vpn(8), Pfn(20), TlbEntry::NX);
        assert!(t.lookup(1, Vpn(0)).is_none());
        assert_eq!(t.lookup(1, Vpn(8)).unwrap().flags(), TlbEntry::NX);
        t.insert(1, Vpn(10), Pfn(21), 0);
        assert!(t.lookup(1, Vpn(2)).is_none());
        // A freed way is taken before the next victim.
        t.flush_page(1, Vpn(6));
        t.insert(1, Vpn(12), Pfn(22), 0);
        assert!(t.lookup(1, Vpn(4)).is_some());
        assert_eq!(t.lookup(1, Vpn(12)).unwrap().pfn(), Pfn(22));
        // Re-inserting a page replaces its entry.
        t.insert(1, Vpn(12), Pfn(23), TlbEntry::WRITABLE);
        assert_eq!(t.lookup(1, Vpn(12)).unwrap().pfn(), Pfn(23));
        assert_eq!(t.valid_entries(), 4);
        t.flush_all();
        assert_eq!(t.valid_entries(), 0);
    }

    #[test]
    fn a_translation_to_frame_zero_without_flags_is_still_a_hit() {
        for ways in [3, 4] {
            let mut t = Tlb::new(1, ways);
            t.insert(7, Vpn(5), Pfn(0), 0);
            let e = t.lookup(7, Vpn(5)).unwrap();
            assert_eq!((e.pfn(), e.flags()), (Pfn(0), 0));
            assert_eq!(e.pa(0x123).0, 0x123);
        }
    }

    /// The sets alone, without the lookaside copy.
    fn lookup_in_sets(t: &Tlb, asid: Asid, vpn: Vpn) -> Option<(Pfn, u8)> {
        let key = TlbEntry::key(asid, vpn);
        let set = (vpn.0 & t.set_mask) as usize;
        let ways: Vec<TlbEntry> = match t.quads.get(set) {
            Some(q) => q.to_vec(),
            None => t.entries[set * t.ways..(set + 1) * t.ways].to_vec(),
        };
        ways.iter()
            .find(|e| e.key == key)
            .map(|e| (e.pfn(), e.flags()))
    }

    #[test]
    fn the_lookaside_copy_never_answers_differently_from_the_sets() {
        for (sets, ways) in [(4, 4), (2, 3), (64, 4)] {
            let mut t = Tlb::new(sets, ways);
            let mut x = 0x2545_f491_4f6c_dd1du64;
            for i in 0..20_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Pages that collide in the lookaside copy (multiples of its size apart)
                // and in the sets, in two address spaces.
                let vpn = Vpn((x % 8) + (x >> 8) % 4 * L0_SLOTS as u64 + (x >> 16) % 3);
                let asid = 1 + ((x >> 24) % 2) as Asid;
                match (x >> 32) % 8 {
                    0..=3 => t.insert(asid, vpn, Pfn(i), ((x >> 40) % 8) as u8),
                    4 => t.flush_page(asid, vpn),
                    5 if i % 64 == 0 => t.flush_asid(asid),
                    6 if i % 512 == 0 => t.flush_all(),
                    _ => {}
                }
                for v in 0..16 {
                    for a in 1..=2 {
                        let vpn = Vpn(v % 8 + v / 8 * L0_SLOTS as u64);
                        let got = t.lookup(a, vpn).map(|e| (e.pfn(), e.flags()));
                        assert_eq!(got, lookup_in_sets(&t, a, vpn), "step {i}");
                    }
                }
            }
        }
    }

    /// A plain model of the TLB's contract: per set, a page's own entry is replaced, else
    /// the first free way is taken, else the set's round-robin victim.
    type Way = Option<(Asid, Vpn, Pfn, u8)>;

    struct Model {
        sets: Vec<Vec<Way>>,
        victim: Vec<usize>,
    }

    impl Model {
        fn insert(&mut self, asid: Asid, vpn: Vpn, pfn: Pfn, flags: u8) {
            let n = self.sets.len() as u64;
            let si = (vpn.0 % n) as usize;
            let set = &mut self.sets[si];
            let ways = set.len();
            let same = set
                .iter()
                .position(|e| matches!(e, Some((a, v, _, _)) if *a == asid && *v == vpn));
            let way = same
                .or_else(|| set.iter().position(Option::is_none))
                .unwrap_or_else(|| {
                    let w = self.victim[si];
                    self.victim[si] = (w + 1) % ways;
                    w
                });
            set[way] = Some((asid, vpn, pfn, flags & TlbEntry::FLAGS));
        }
        fn lookup(&self, asid: Asid, vpn: Vpn) -> Option<(Pfn, u8)> {
            let set = &self.sets[(vpn.0 % self.sets.len() as u64) as usize];
            set.iter()
                .flatten()
                .find(|e| e.0 == asid && e.1 == vpn)
                .map(|e| (e.2, e.3))
        }
        fn flush(&mut self, f: impl Fn(Asid, Vpn) -> bool) {
            for e in self.sets.iter_mut().flatten() {
                if e.is_some_and(|(a, v, _, _)| f(a, v)) {
                    *e = None;
                }
            }
        }
    }

    #[test]
    fn replacement_follows_the_plain_model_through_flushes() {
        for (sets, ways) in [(4, 4), (2, 3), (8, 4), (1, 1)] {
            let mut t = Tlb::new(sets, ways);
            let mut m = Model {
                sets: vec![vec![None; ways]; sets],
                victim: vec![0; sets],
            };
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for i in 0..30_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let vpn = Vpn(x % 40);
                let asid = 1 + ((x >> 24) % 2) as Asid;
                match (x >> 32) % 16 {
                    0..=5 if t.lookup(asid, vpn).is_none() => {
                        t.insert_missing(asid, vpn, Pfn(i), (x >> 40) as u8);
                        m.insert(asid, vpn, Pfn(i), (x >> 40) as u8);
                    }
                    6..=9 => {
                        t.insert(asid, vpn, Pfn(i), (x >> 40) as u8);
                        m.insert(asid, vpn, Pfn(i), (x >> 40) as u8);
                    }
                    10..=12 => {
                        t.flush_page(asid, vpn);
                        m.flush(|a, v| a == asid && v == vpn);
                    }
                    13 if i % 32 == 0 => {
                        t.flush_asid(asid);
                        m.flush(|a, _| a == asid);
                    }
                    14 if i % 256 == 0 => {
                        t.flush_all();
                        m.flush(|_, _| true);
                    }
                    _ => {}
                }
                for v in 0..40 {
                    for a in 1..=2 {
                        let got = t.lookup(a, Vpn(v)).map(|e| (e.pfn(), e.flags()));
                        assert_eq!(got, m.lookup(a, Vpn(v)), "{sets}x{ways} step {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_flush_empties_the_paging_structure_cache() {
        for (sets, ways) in [(64, 4), (2, 3)] {
            let mut t = Tlb::new(sets, ways);
            let key = Tlb::pde_key(7, 0x4020_1000);
            let other = Tlb::pde_key(7, 0x4060_1000);
            let fill = |t: &mut Tlb| {
                t.psc_fill(key, 0x5000);
                t.psc_fill(other, 0x6000);
                assert_eq!(t.psc_lookup(key), Some(0x5000));
                assert_eq!(t.psc_lookup(other), Some(0x6000));
            };
            fill(&mut t);
            // Another page, even of another address space, still drops every entry.
            t.flush_page(9, Vpn(0x1234));
            assert_eq!((t.psc_lookup(key), t.psc_lookup(other)), (None, None));
            fill(&mut t);
            t.flush_asid(9);
            assert_eq!((t.psc_lookup(key), t.psc_lookup(other)), (None, None));
            fill(&mut t);
            t.flush_all();
            assert_eq!((t.psc_lookup(key), t.psc_lookup(other)), (None, None));
            // A region PSC_SLOTS regions away shares the slot and replaces the entry.
            fill(&mut t);
            let alias = Tlb::pde_key(7, 0x4020_1000 + (PSC_SLOTS as u64) * (2 << 20));
            assert_eq!(t.psc_lookup(alias), None);
            t.psc_fill(alias, 0x7000);
            assert_eq!(
                (t.psc_lookup(key), t.psc_lookup(alias)),
                (None, Some(0x7000))
            );
            // When the generations wrap, no entry of an old generation comes back.
            t.psc_gen = 0u64.wrapping_sub(1 << PSC_GEN_SHIFT);
            fill(&mut t);
            t.flush_page(9, Vpn(0x1234));
            assert_eq!(t.psc_gen, 0);
            assert_eq!((t.psc_lookup(key), t.psc_lookup(other)), (None, None));
            // Regions and address spaces have distinct keys.
            assert_ne!(Tlb::pde_key(7, 0x4020_1000), Tlb::pde_key(8, 0x4020_1000));
            assert_ne!(Tlb::pde_key(7, 0x4020_1000), Tlb::pde_key(7, 0x4040_1000));
            assert_eq!(Tlb::pde_key(7, 0x4020_1000), Tlb::pde_key(7, 0x403f_f000));
        }
    }
}
