//! The page-cache index of one file (Linux `address_space.i_pages`, an xarray).
//!
//! Owns [`PageIndex`]: page offset -> frame, ordered by offset. Offsets are grouped in
//! chunks of 64 consecutive pages, each an array. The chunks of the file's dense low part
//! (every chunk number below a bound that grows with the number of chunks) sit in a
//! vector indexed by chunk number, like the xarray's radix levels: a lookup there is an
//! array index and a slot read, no search. Chunks above that bound (far offsets of a
//! sparse file) sit in an ordered map. A range of neighbouring pages (fault-around,
//! read-ahead, write-back) is one lookup and then consecutive slots. A chunk is dropped
//! when its last page goes. It knows nothing of frames beyond their numbers.

use crate::addr::Pfn;
use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

const SHIFT: u32 = 6;
const SLOTS: usize = 1 << SHIFT;
const MASK: u64 = SLOTS as u64 - 1;

/// Chunk numbers below this always fit in the directly indexed part (a file of up to
/// 16 MiB with 4 KiB pages).
const DENSE_MIN: u64 = 64;
/// The directly indexed part may grow to this many slots per chunk held (so its slots,
/// 8 bytes each, stay a small fraction of the chunks' own size).
const DENSE_PER_CHUNK: u64 = 8;

/// 64 consecutive page offsets.
#[derive(Clone, Debug)]
struct Chunk {
    slots: [Option<Pfn>; SLOTS],
    used: u32,
}

/// Page offset -> frame, in offset order.
#[derive(Clone, Debug, Default)]
pub struct PageIndex {
    /// Chunks `0..dense.len()`, indexed by chunk number.
    dense: Vec<Option<Box<Chunk>>>,
    /// Chunks numbered `dense.len()` and above.
    sparse: BTreeMap<u64, Box<Chunk>>,
    /// Chunks held (in either part).
    chunks: u64,
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

    /// Chunk `key`, if held.
    #[inline(always)]
    fn chunk(&self, key: u64) -> Option<&Chunk> {
        if key < self.dense.len() as u64 {
            self.dense[key as usize].as_deref()
        } else if self.sparse.is_empty() {
            None
        } else {
            self.sparse.get(&key).map(|c| &**c)
        }
    }

    /// The frame of page `pg`.
    #[inline]
    pub fn get(&self, pg: &u64) -> Option<&Pfn> {
        self.chunk(pg >> SHIFT)?.slots[(pg & MASK) as usize].as_ref()
    }

    /// Whether page `pg` is in the index.
    #[inline]
    pub fn contains_key(&self, pg: &u64) -> bool {
        self.get(pg).is_some()
    }

    /// Chunk `key`, created empty if not held.
    fn chunk_mut_or_insert(&mut self, key: u64) -> &mut Chunk {
        let dense = self.dense.len() as u64;
        if key >= dense
            && key < DENSE_MIN.max(DENSE_PER_CHUNK.saturating_mul(self.chunks + 1))
            && !self.sparse.contains_key(&key)
        {
            // A new chunk within reach of the dense part: extend it to cover the chunk,
            // taking over the sparse chunks below the new bound.
            let bound = key + 1;
            let rest = self.sparse.split_off(&bound);
            let moved = std::mem::replace(&mut self.sparse, rest);
            self.dense.resize_with(bound as usize, || None);
            for (k, c) in moved {
                self.dense[k as usize] = Some(c);
            }
        }
        let new = || {
            Box::new(Chunk {
                slots: [None; SLOTS],
                used: 0,
            })
        };
        let fresh;
        let c = if key < self.dense.len() as u64 {
            let slot = &mut self.dense[key as usize];
            fresh = slot.is_none();
            slot.get_or_insert_with(new)
        } else {
            let e = self.sparse.entry(key);
            fresh = matches!(e, std::collections::btree_map::Entry::Vacant(_));
            e.or_insert_with(new)
        };
        if fresh {
            self.chunks += 1;
        }
        c
    }

    /// Sets the frame of page `pg`; returns the frame it replaces.
    pub fn insert(&mut self, pg: u64, pfn: Pfn) -> Option<Pfn> {
        let c = self.chunk_mut_or_insert(pg >> SHIFT);
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
        let dense = key < self.dense.len() as u64;
        let c = if dense {
            self.dense[key as usize].as_deref_mut()?
        } else {
            self.sparse.get_mut(&key)?
        };
        let old = c.slots[(pg & MASK) as usize].take()?;
        c.used -= 1;
        self.len -= 1;
        if c.used == 0 {
            if dense {
                self.dense[key as usize] = None;
            } else {
                self.sparse.remove(&key);
            }
            self.chunks -= 1;
            if self.chunks == 0 {
                self.dense = Vec::new();
            }
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
            // One chunk (most read-ahead): one lookup, no range walk.
            let mut it = Iter::empty();
            if let Some(c) = self.chunk(first) {
                it.enter(first, c, lo, hi);
            }
            return it;
        }
        let (dense, sparse) = self.split(first, last);
        Iter {
            dense: dense.iter(),
            dense_key: first,
            sparse,
            slots: &[],
            pg: 0,
            lo,
            hi,
        }
    }

    /// The chunks numbered `[first, last]`: those of the dense part (a slice starting at
    /// chunk `first`) and a range of the sparse part (`None` if it has none there).
    #[allow(clippy::type_complexity)]
    fn split(
        &self,
        first: u64,
        last: u64,
    ) -> (
        &[Option<Box<Chunk>>],
        Option<std::collections::btree_map::Range<'_, u64, Box<Chunk>>>,
    ) {
        let dense_len = self.dense.len() as u64;
        let dense = if first < dense_len {
            &self.dense[first as usize..=(last.min(dense_len - 1) as usize)]
        } else {
            &[]
        };
        let from = first.max(dense_len);
        let sparse =
            (from <= last && !self.sparse.is_empty()).then(|| self.sparse.range(from..=last));
        (dense, sparse)
    }

    /// Calls `f(page, frame)` for the pages in `[lo, hi]` in offset order, until it
    /// returns false (the loop form of [`PageIndex::range`], for hot paths).
    #[inline]
    pub fn for_each_in(&self, lo: u64, hi: u64, mut f: impl FnMut(u64, Pfn) -> bool) {
        if lo > hi {
            return;
        }
        let (first, last) = (lo >> SHIFT, hi >> SHIFT);
        if first == last {
            // One chunk (a fault-around window, usually): one lookup, no range walk.
            if let Some(c) = self.chunk(first) {
                visit(first, c, lo, hi, &mut f);
            }
            return;
        }
        let (dense, sparse) = self.split(first, last);
        let chunks = dense
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((first + i as u64, c.as_deref()?)))
            .chain(sparse.into_iter().flatten().map(|(&k, c)| (k, &**c)));
        for (key, c) in chunks {
            if !visit(key, c, lo, hi, &mut f) {
                return;
            }
        }
    }

    /// The first page in `[from, end)` that is not in the index, or `end` if there is
    /// none. A full chunk is stepped over whole.
    pub fn next_miss(&self, from: u64, end: u64) -> u64 {
        let mut pg = from;
        while pg < end {
            let Some(c) = self.chunk(pg >> SHIFT) else {
                return pg;
            };
            let next_chunk = (pg | MASK).saturating_add(1);
            if c.used as usize != SLOTS {
                let stop = next_chunk.min(end);
                while pg < stop {
                    if c.slots[(pg & MASK) as usize].is_none() {
                        return pg;
                    }
                    pg += 1;
                }
            }
            pg = next_chunk;
        }
        end
    }

    /// Every page, in offset order.
    pub fn iter(&self) -> Iter<'_> {
        self.range(..)
    }
}

/// Calls `f(page, frame)` for the pages of chunk `key` in `[lo, hi]`; false when `f` did.
#[inline(always)]
fn visit(key: u64, c: &Chunk, lo: u64, hi: u64, f: &mut impl FnMut(u64, Pfn) -> bool) -> bool {
    let base = key << SHIFT;
    let from = lo.saturating_sub(base).min(SLOTS as u64) as usize;
    let to = (hi.saturating_sub(base).min(MASK) + 1) as usize;
    let slots = c.slots.get(from..to).unwrap_or(&[]);
    for (i, slot) in slots.iter().enumerate() {
        if let Some(pfn) = *slot {
            if !f(base + (from + i) as u64, pfn) {
                return false;
            }
        }
    }
    true
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
    /// The dense part's chunks still to read, the first numbered `dense_key`.
    dense: std::slice::Iter<'a, Option<Box<Chunk>>>,
    dense_key: u64,
    /// The sparse part's chunks still to read after those (`None`: none).
    sparse: Option<std::collections::btree_map::Range<'a, u64, Box<Chunk>>>,
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
            dense: [].iter(),
            dense_key: 0,
            sparse: None,
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
            let (lo, hi) = (self.lo, self.hi);
            if let Some(c) = self.dense.next() {
                let key = self.dense_key;
                self.dense_key += 1;
                if let Some(c) = c {
                    self.enter(key, c, lo, hi);
                }
                continue;
            }
            let (&key, c) = self.sparse.as_mut()?.next()?;
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
            // Also mid-range chunks, which the directly indexed part takes over as it grows.
            let pg = match (x >> 50) % 8 {
                0 => x % 100_000_000_000,
                1 => u64::MAX - (x % 200),
                2 => x % 100_000,
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
                // A 16-page window as fault-around takes it (mostly inside one chunk),
                // at either end of the numbers.
                for lo in [a, a / 16 * 16, u64::MAX - (x >> 30) % 150] {
                    let hi = lo.saturating_add(15);
                    let want: Vec<(u64, Pfn)> =
                        model.range(lo..=hi).map(|(k, v)| (*k, *v)).collect();
                    let mut got = Vec::new();
                    idx.for_each_in(lo, hi, |pg, pfn| {
                        got.push((pg, pfn));
                        true
                    });
                    assert_eq!(got, want, "{lo}..={hi}");
                }
                for (from, end) in [
                    (a, b),
                    (a, a + 200),
                    (b, b + 64),
                    (u64::MAX - 150, u64::MAX),
                ] {
                    let want = (from..end).find(|p| !model.contains_key(p)).unwrap_or(end);
                    assert_eq!(idx.next_miss(from, end), want, "{from}..{end}");
                }
                let all: Vec<(u64, Pfn)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                assert_eq!(idx.iter().collect::<Vec<_>>(), all);
            }
        }
        assert_eq!(idx.range(5..5).count(), 0);
        assert_eq!(idx.range(..0).count(), 0);
        for pg in model.keys().copied().collect::<Vec<_>>() {
            assert_eq!(idx.remove(&pg), model.remove(&pg));
        }
        assert!(idx.is_empty() && idx.chunks == 0 && idx.sparse.is_empty());
        assert!(idx.dense.iter().all(Option::is_none));
    }

    #[test]
    fn next_miss_finds_the_first_hole_across_full_chunks() {
        let mut idx = PageIndex::new();
        for pg in (0..300).chain(u64::MAX - 70..=u64::MAX) {
            idx.insert(pg, Pfn(pg));
        }
        assert_eq!(idx.next_miss(0, 1000), 300);
        assert_eq!(idx.next_miss(5, 250), 250);
        assert_eq!(idx.next_miss(300, 310), 300);
        assert_eq!(idx.next_miss(u64::MAX - 70, u64::MAX), u64::MAX);
        assert_eq!(idx.next_miss(u64::MAX - 80, u64::MAX), u64::MAX - 80);
        idx.remove(&130);
        assert_eq!(idx.next_miss(0, 1000), 130);
        assert_eq!(idx.next_miss(131, 1000), 300);
        idx.remove(&(u64::MAX - 3));
        assert_eq!(idx.next_miss(u64::MAX - 70, u64::MAX), u64::MAX - 3);
        assert_eq!(idx.next_miss(7, 7), 7);
    }
}
