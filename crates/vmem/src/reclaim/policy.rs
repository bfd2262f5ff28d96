//! Page replacement policies.
//!
//! Owns the [`ReplacementPolicy`] trait and its implementations: Linux's active/inactive
//! two-list scheme ([`TwoList`], the default), [`Clock`] (second chance), [`Fifo`], exact
//! [`Lru`] (every access stamps the frame) and [`Random`]. A policy only orders frames and
//! picks victims; the kernel (`reclaim/mod.rs`) harvests Accessed bits for it through
//! [`Frames`] and does the eviction.

use crate::addr::Pfn;
use std::collections::VecDeque;

/// What a policy may ask about frames.
pub trait Frames {
    /// The frame's allocation stamp: a queue entry is stale when the stamp has changed
    /// (the frame was freed and reused).
    fn stamp(&self, pfn: Pfn) -> u32;
    /// Whether the frame is a page the kernel could evict now.
    fn evictable(&self, pfn: Pfn) -> bool;
    /// Whether the page was used since the last call (Linux `folio_referenced`): harvests
    /// and clears the Accessed bits of every PTE that maps it.
    fn referenced(&mut self, pfn: Pfn) -> bool;
    /// The access clock value of the page's last use (only kept for [`Lru`]).
    fn last_use(&self, pfn: Pfn) -> u32;
    /// Every frame that [`Frames::evictable`] accepts.
    fn evictable_frames(&self) -> Vec<Pfn>;
    /// A pseudo-random number.
    fn random(&mut self) -> u64;
}

/// A replacement policy.
pub trait ReplacementPolicy {
    /// The policy's name (`"two-list"`, `"clock"`, ...).
    fn name(&self) -> &'static str;
    /// A page became evictable (just allocated for the page cache or anonymous memory).
    fn added(&mut self, pfn: Pfn, stamp: u32);
    /// Up to `want` victims, best first.
    fn choose(&mut self, want: usize, frames: &mut dyn Frames) -> Vec<Pfn>;
    /// Whether the kernel must stamp every access (costs a store on the hot path).
    fn needs_access_clock(&self) -> bool {
        false
    }
}

/// Which policy a machine uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PolicyKind {
    /// Linux's active/inactive lists.
    #[default]
    TwoList,
    /// CLOCK (second chance).
    Clock,
    /// First in, first out.
    Fifo,
    /// Exact least recently used.
    Lru,
    /// Uniformly random.
    Random,
}

impl PolicyKind {
    /// A fresh policy of this kind.
    pub fn build(self) -> Box<dyn ReplacementPolicy> {
        match self {
            PolicyKind::TwoList => Box::<TwoList>::default(),
            PolicyKind::Clock => Box::<Clock>::default(),
            PolicyKind::Fifo => Box::<Fifo>::default(),
            PolicyKind::Lru => Box::new(Lru),
            PolicyKind::Random => Box::new(Random),
        }
    }

    /// Parses `two-list`, `clock`, `fifo`, `lru` or `random`.
    pub fn parse(s: &str) -> Option<PolicyKind> {
        Some(match s {
            "two-list" | "twolist" | "linux" => PolicyKind::TwoList,
            "clock" => PolicyKind::Clock,
            "fifo" => PolicyKind::Fifo,
            "lru" => PolicyKind::Lru,
            "random" => PolicyKind::Random,
            _ => return None,
        })
    }
}

/// First in, first out: the oldest page goes, used or not.
#[derive(Debug, Default)]
pub struct Fifo {
    queue: VecDeque<(Pfn, u32)>,
}

impl ReplacementPolicy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn added(&mut self, pfn: Pfn, stamp: u32) {
        self.queue.push_back((pfn, stamp));
    }
    fn choose(&mut self, want: usize, frames: &mut dyn Frames) -> Vec<Pfn> {
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        while out.len() < want {
            let Some(e) = self.queue.pop_front() else {
                break;
            };
            if frames.stamp(e.0) != e.1 {
                continue;
            }
            if frames.evictable(e.0) {
                out.push(e.0);
            } else {
                skipped.push(e);
            }
        }
        // Pages that could not go now keep their place.
        for e in skipped.into_iter().rev() {
            self.queue.push_front(e);
        }
        out
    }
}

/// CLOCK: the hand skips (and clears) pages used since it last passed.
#[derive(Debug, Default)]
pub struct Clock {
    ring: VecDeque<(Pfn, u32)>,
}

impl ReplacementPolicy for Clock {
    fn name(&self) -> &'static str {
        "clock"
    }
    fn added(&mut self, pfn: Pfn, stamp: u32) {
        self.ring.push_back((pfn, stamp));
    }
    fn choose(&mut self, want: usize, frames: &mut dyn Frames) -> Vec<Pfn> {
        let mut out = Vec::new();
        let mut budget = 2 * self.ring.len() + 1;
        while out.len() < want && budget > 0 {
            budget -= 1;
            let Some(e) = self.ring.pop_front() else {
                break;
            };
            if frames.stamp(e.0) != e.1 {
                continue;
            }
            if !frames.evictable(e.0) || frames.referenced(e.0) {
                self.ring.push_back(e);
            } else {
                out.push(e.0);
            }
        }
        out
    }
}

/// Linux's scheme: new pages start inactive; a page found referenced at the inactive
/// tail is promoted to the active list; the active list is aged into the inactive one
/// (Accessed bits cleared) whenever it is the larger.
#[derive(Debug, Default)]
pub struct TwoList {
    inactive: VecDeque<(Pfn, u32)>,
    active: VecDeque<(Pfn, u32)>,
}

impl ReplacementPolicy for TwoList {
    fn name(&self) -> &'static str {
        "two-list"
    }
    fn added(&mut self, pfn: Pfn, stamp: u32) {
        self.inactive.push_back((pfn, stamp));
    }
    fn choose(&mut self, want: usize, frames: &mut dyn Frames) -> Vec<Pfn> {
        let mut out = Vec::new();
        let mut budget = 3 * (self.inactive.len() + self.active.len()) + 1;
        while out.len() < want && budget > 0 {
            budget -= 1;
            // shrink_active_list: age the active list into the inactive one.
            while self.active.len() > self.inactive.len() {
                let Some(e) = self.active.pop_front() else {
                    break;
                };
                if frames.stamp(e.0) == e.1 {
                    frames.referenced(e.0);
                    self.inactive.push_back(e);
                }
            }
            // shrink_inactive_list.
            let Some(e) = self.inactive.pop_front() else {
                match self.active.pop_front() {
                    Some(e) => {
                        self.inactive.push_back(e);
                        continue;
                    }
                    None => break,
                }
            };
            if frames.stamp(e.0) != e.1 {
                continue;
            }
            if !frames.evictable(e.0) {
                self.inactive.push_back(e);
            } else if frames.referenced(e.0) {
                self.active.push_back(e);
            } else {
                out.push(e.0);
            }
        }
        out
    }
}

/// Exact LRU: the page whose last access is oldest.
#[derive(Debug, Default)]
pub struct Lru;

impl ReplacementPolicy for Lru {
    fn name(&self) -> &'static str {
        "lru"
    }
    fn added(&mut self, _: Pfn, _: u32) {}
    fn choose(&mut self, want: usize, frames: &mut dyn Frames) -> Vec<Pfn> {
        let mut all = frames.evictable_frames();
        all.sort_by_key(|p| frames.last_use(*p));
        all.truncate(want);
        all
    }
    fn needs_access_clock(&self) -> bool {
        true
    }
}

/// Random victims.
#[derive(Debug, Default)]
pub struct Random;

impl ReplacementPolicy for Random {
    fn name(&self) -> &'static str {
        "random"
    }
    fn added(&mut self, _: Pfn, _: u32) {}
    fn choose(&mut self, want: usize, frames: &mut dyn Frames) -> Vec<Pfn> {
        let mut all = frames.evictable_frames();
        let mut out = Vec::new();
        while out.len() < want && !all.is_empty() {
            let i = (frames.random() % all.len() as u64) as usize;
            out.push(all.swap_remove(i));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    struct Fake {
        used: HashSet<u64>,
        pinned: HashSet<u64>,
    }
    impl Frames for Fake {
        fn stamp(&self, _: Pfn) -> u32 {
            0
        }
        fn evictable(&self, p: Pfn) -> bool {
            !self.pinned.contains(&p.0)
        }
        fn referenced(&mut self, p: Pfn) -> bool {
            self.used.remove(&p.0)
        }
        fn last_use(&self, p: Pfn) -> u32 {
            p.0 as u32
        }
        fn evictable_frames(&self) -> Vec<Pfn> {
            (1..=4).map(Pfn).filter(|p| self.evictable(*p)).collect()
        }
        fn random(&mut self) -> u64 {
            3
        }
    }

    fn fake(used: &[u64]) -> Fake {
        Fake {
            used: used.iter().copied().collect(),
            pinned: HashSet::new(),
        }
    }

    #[test]
    fn fifo_ignores_use_and_clock_gives_a_second_chance() {
        let mut f = Fifo::default();
        let mut c = Clock::default();
        for i in 1..=4 {
            f.added(Pfn(i), 0);
            c.added(Pfn(i), 0);
        }
        assert_eq!(f.choose(1, &mut fake(&[1])), vec![Pfn(1)]);
        assert_eq!(c.choose(1, &mut fake(&[1])), vec![Pfn(2)]);
    }

    #[test]
    fn two_list_promotes_referenced_pages() {
        let mut t = TwoList::default();
        for i in 1..=4 {
            t.added(Pfn(i), 0);
        }
        let mut fr = fake(&[1, 2]);
        assert_eq!(t.choose(2, &mut fr), vec![Pfn(3), Pfn(4)]);
    }

    #[test]
    fn lru_picks_the_oldest_use() {
        assert_eq!(Lru.choose(2, &mut fake(&[])), vec![Pfn(1), Pfn(2)]);
    }
}
