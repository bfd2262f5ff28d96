//! The page-cache index of one file (Linux `address_space.i_pages`, an xarray).
//!
//! Owns [`PageIndex`]: page offset -> frame, ordered by offset. Offsets are grouped in
//! chunks of 64 consecutive pages, each an array, and the chunks sit in an ordered map:
//! a lookup is one search among chunks (64 times fewer keys than pages) and an array
//! index, and a range of neighbouring pages (fault-around, read-ahead, write-back) is
//! one search and then consecutive slots. A chunk is dropped when its last page goes.
//! It knows nothing of frames beyond their numbers.

use crate::addr::Pfn;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

const SHIFT: u32 = 6;
const SLOTS: usize = 1 << SHIFT;
const MASK: u64 = SLOTS as u64 - 1;

/// 64 consecutive page offsets.
#[derive(Clone, Debug)]
struct Chunk {
    slots: [Option<Pfn>; SLOTS],
    used: u32,
}

/// Page offset -> frame, in offset order.
#[derive(Clone, Debug, Default)]
pub struct PageIndex {
    chunks: BTreeMap<u64, Box<Chunk>>,
    len: usize,
}

impl PageIndex {
    /// An empty index.
    pub fn new() -> PageIndex {
        PageIndex::default()
    }

    /// Pages in the index.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame of page `pg`.
    #[inline]
    pub fn get(&self, pg: &u64) -> Option<&Pfn> {
        self.chunks.get(&(pg >> SHIFT))?.slots[(pg & MASK) as usize].as_ref()
    }

    /// Whether page `pg` is in the index.
    #[inline]
    pub fn contains_key(&self, pg: &u64) -> bool {
        self.get(pg).is_some()
    }

    /// Sets the frame of page `pg`; returns the frame it replaces.
    pub fn insert(&mut self, pg: u64, pfn: Pfn) -> Option<Pfn> {
        let c = self.chunks.entry(pg >> SHIFT).or_insert_with(|| {
            Box::new(Chunk {
                slots: [None; SLOTS],
                used: 0,
            })
        });
        let old = c.slots[(pg & MASK) as usize].replace(pfn);
        if old.is_none() {
            c.used += 1;
            self.len += 1;
        }
        old
    }

    /// Removes page `pg`; returns its frame.
    pub fn remove(&mut self, pg: &u64) -> Option<Pfn> {
        let key = pg >> SHIFT;
        let c = self.chunks.get_mut(&key)?;
        let old = c.slots[(pg & MASK) as usize].take()?;
        c.used -= 1;
        self.len -= 1;
        if c.used == 0 {
            self.chunks.remove(&key);
        }
        Some(old)
    }

    /// The pages in `range`, in offset order.
    pub fn range(&self, range: impl RangeBounds<u64>) -> Iter<'_> {
        let lo = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Iter::empty(),
            },
            Bound::Unbounded => 0,
        };
        let hi = match range.end_bound() {
            Bound::Included(&e) => e,
            Bound::Excluded(&e) => match e.checked_sub(1) {
                Some(e) => e,
                None => return Iter::empty(),
            },
            Bound::Unbounded => u64::MAX,
        };
        if lo > hi {
            return Iter::empty();
        }
        let (first, last) = (lo >> SHIFT, hi >> SHIFT);
        if first == last {
            // One chunk (fault-around, most read-ahead): one search, no range walk.
            let mut it = Iter::empty();
            if let Some(c) = self.chunks.get(&first) {
                it.enter(first, c, lo, hi);
            }
            return it;
        }
        Iter {
            chunks: Some(self.chunks.range(first..=last)),
            slots: &[],
            pg: 0,
            lo,
            hi,
        }
    }

    /// Calls `f(page, frame)` for the pages in `[lo, hi]` in offset order, until it
    /// returns false (the loop form of [`PageIndex::range`], for hot paths).
    #[inline]
    pub fn for_each_in(&self, lo: u64, hi: u64, mut f: impl FnMut(u64, Pfn) -> bool) {
        if lo > hi {
            return;
        }
        let (first, last) = (lo >> SHIFT, hi >> SHIFT);
        // One chunk (fault-around, most read-ahead): one search, no range walk.
        let (one, many) = if first == last {
            (self.chunks.get_key_value(&first), None)
        } else {
            (None, Some(self.chunks.range(first..=last)))
        };
        for (&key, c) in one.into_iter().chain(many.into_iter().flatten()) {
            let base = key << SHIFT;
            let from = lo.saturating_sub(base).min(SLOTS as u64) as usize;
            let to = (hi.saturating_sub(base).min(MASK) + 1) as usize;
            let slots = c.slots.get(from..to).unwrap_or(&[]);
            for (i, slot) in slots.iter().enumerate() {
                if let Some(pfn) = *slot {
                    if !f(base + (from + i) as u64, pfn) {
                        return;
                    }
                }
            }
        }
    }

    /// Every page, in offset order.
    pub fn iter(&self) -> Iter<'_> {
        self.range(..)
    }
}

impl std::ops::Index<&u64> for PageIndex {
    type Output = Pfn;
    /// The frame of page `pg`; panics if the page is not in the index.
    fn index(&self, pg: &u64) -> &Pfn {
        self.get(pg).expect("page not in the page cache")
    }
}

impl<'a> IntoIterator for &'a PageIndex {
    type Item = (u64, Pfn);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Pages of a [`PageIndex`] in offset order: `(page offset, frame)`.
#[derive(Debug)]
pub struct Iter<'a> {
    /// The chunks still to read (`None`: none after the current one).
    chunks: Option<std::collections::btree_map::Range<'a, u64, Box<Chunk>>>,
    /// The current chunk's slots still to read, already clipped to the range.
    slots: &'a [Option<Pfn>],
    /// The page offset of `slots[0]`.
    pg: u64,
    lo: u64,
    hi: u64,
}

impl<'a> Iter<'a> {
    fn empty() -> Iter<'a> {
        Iter {
            chunks: None,
            slots: &[],
            pg: 0,
            lo: 1,
            hi: 0,
        }
    }

    /// Reads chunk `key` next: its slots within `[lo, hi]`.
    fn enter(&mut self, key: u64, c: &'a Chunk, lo: u64, hi: u64) {
        let base = key << SHIFT;
        let from = lo.saturating_sub(base).min(SLOTS as u64) as usize;
        let to = (hi.saturating_sub(base).min(MASK) + 1) as usize;
        self.slots = c.slots.get(from..to).unwrap_or(&[]);
        self.pg = base + from as u64;
    }
}

impl Iterator for Iter<'_> {
    type Item = (u64, Pfn);

    #[inline]
    fn next(&mut self) -> Option<(u64, Pfn)> {
        loop {
            while let Some((slot, rest)) = self.slots.split_first() {
                let pg = self.pg;
                self.slots = rest;
                self.pg = self.pg.wrapping_add(1);
                if let Some(pfn) = *slot {
                    return Some((pg, pfn));
                }
            }
            let (&key, c) = self.chunks.as_mut()?.next()?;
            let (lo, hi) = (self.lo, self.hi);
            self.enter(key, c, lo, hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Compares every operation with a `BTreeMap` on a pseudo-random sequence.
    #[test]
    fn behaves_as_an_ordered_map() {
        let mut idx = PageIndex::new();
        let mut model: BTreeMap<u64, Pfn> = BTreeMap::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Dense near 0, a few far away (sparse files), and the very top.
            let pg = match (x >> 50) % 8 {
                0 => x % 100_000_000_000,
                1 => u64::MAX - (x % 200),
                _ => x % 700,
            };
            match (x >> 40) % 4 {
                0 | 1 => assert_eq!(idx.insert(pg, Pfn(i)), model.insert(pg, Pfn(i))),
                2 => assert_eq!(idx.remove(&pg), model.remove(&pg)),
                _ => assert_eq!(idx.get(&pg), model.get(&pg)),
            }
            assert_eq!(idx.len(), model.len());
            if i % 500 == 0 {
                let a = (x >> 8) % 800;
                let b = a + (x >> 20) % 300;
                let want: Vec<(u64, Pfn)> = model.range(a..=b).map(|(k, v)| (*k, *v)).collect();
                assert_eq!(idx.range(a..=b).collect::<Vec<_>>(), want);
                let want: Vec<(u64, Pfn)> = model.range(a..b).map(|(k, v)| (*k, *v)).collect();
                assert_eq!(idx.range(a..b).collect::<Vec<_>>(), want);
                let want: Vec<(u64, Pfn)> = model.range(a..).map(|(k, v)| (*k, *v)).collect();
                assert_eq!(idx.range(a..).collect::<Vec<_>>(), want);
                let want: Vec<(u64, Pfn)> = model.range(a..=b).map(|(k, v)| (*k, *v)).collect();
                let mut got = Vec::new();
                idx.for_each_in(a, b, |pg, pfn| {
                    got.push((pg, pfn));
                    true
                });
                assert_eq!(got, want);
                let mut got = Vec::new();
                idx.for_each_in(a, b, |pg, pfn| {
                    got.push((pg, pfn));
                    got.len() < 3
                });
                assert_eq!(got, want[..want.len().min(3)]);
                let all: Vec<(u64, Pfn)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(idx.iter().collect::<Vec<_>>(), all);
            }
        }
        assert_eq!(idx.range(5..5).count(), 0);
        assert_eq!(idx.range(..0).count(), 0);
        for pg in model.keys().copied().collect::<Vec<_>>() {
            assert_eq!(idx.remove(&pg), model.remove(&pg));
        }
        assert!(idx.is_empty() && idx.chunks.is_empty());
    }
}
