//! Address-translation exercises, in the spirit of OSTEP's homework simulators.
//!
//! Owns [`generate`]: from a seed, a small machine state (a page table in RAM, a segment
//! table, or both) and a list of addresses to translate. The answers are not computed by
//! a second implementation: each one is the emulated machine's own MMU walking the tables
//! (`hw::walk`) or its segmentation unit (`hw::segment`), and the steps shown are the
//! walker's events. The same seed always gives the same problem.

use crate::addr::{Pfn, VirtAddr, PAGE_SHIFT};
use crate::config::PagingGeometry;
use crate::consts::*;
use crate::events::{Event, Events, Recorder};
use crate::hw::mmu::Access;
use crate::hw::phys::{FrameFlags, PhysMem};
use crate::hw::pte::Pte;
use crate::hw::segment::{self, Segment, SEG_SHIFT};
use crate::hw::walk::walk;
use crate::mm::pgtable;
use std::fmt::Write as _;

/// Which kind of translation the exercise is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One linear page table (16 pages of 4 KiB: a 64 KiB address space).
    Linear,
    /// Two levels of 16 entries (256 pages: a 1 MiB address space).
    MultiLevel,
    /// A segment table: physical = base + offset.
    Segmentation,
    /// Segments give linear addresses that a two-level page table translates.
    SegmentPaging,
}

impl Mode {
    /// Parses `linear`, `multi`, `seg` or `segpage`.
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "linear" | "paging" => Mode::Linear,
            "multi" | "multilevel" | "multi-level" => Mode::MultiLevel,
            "seg" | "segmentation" => Mode::Segmentation,
            "segpage" | "segment-paging" | "seg+paging" => Mode::SegmentPaging,
            _ => return None,
        })
    }
}

/// One address to translate and its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Question {
    /// The address a program used (virtual, or logical `segment << 32 | offset`).
    pub addr: u64,
    /// The physical address, or why the access faults.
    pub answer: Result<u64, String>,
    /// How the hardware got there, one line per step.
    pub steps: Vec<String>,
}

/// A generated exercise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The mode.
    pub mode: Mode,
    /// The seed it came from.
    pub seed: u64,
    /// The machine state to work from (tables), as text.
    pub setup: String,
    /// The addresses to translate.
    pub questions: Vec<Question>,
}

struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d | 1);
        for _ in 0..16 {
            r.next();
        }
        r
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A small paged machine: RAM, one page table tree and its geometry.
struct Paged {
    phys: PhysMem,
    geom: PagingGeometry,
    root: Pfn,
}

impl Paged {
    fn new(geom: PagingGeometry, rng: &mut Rng, density: u64) -> Paged {
        let mut phys = PhysMem::new(512 << PAGE_SHIFT);
        // Skip a random number of frames so that frame numbers differ between seeds.
        for _ in 0..rng.below(24) {
            phys.alloc(FrameFlags::ANON);
        }
        let root = phys
            .alloc_zeroed(FrameFlags::PAGE_TABLE)
            .expect("small RAM has room");
        let pages = 1u64 << (geom.levels * geom.bits_per_level);
        let mut p = Paged { phys, geom, root };
        for vpn in 0..pages {
            if rng.below(100) < density {
                let frame = p.phys.alloc(FrameFlags::ANON).expect("room");
                let mut flags = Pte::PRESENT | Pte::USER;
                if rng.below(3) > 0 {
                    flags |= Pte::WRITABLE;
                }
                let (slot, _) =
                    pgtable::pte_slot_alloc(&mut p.phys, &geom, root, VirtAddr(vpn << PAGE_SHIFT))
                        .expect("room");
                p.phys.write_u64(slot, Pte::new(frame, flags).0);
            }
        }
        p
    }

    /// The virtual page numbers that map a frame.
    fn mapped_vpns(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        let end = VirtAddr(1 << self.geom.va_bits());
        pgtable::for_each_pte(
            &mut self.phys,
            &self.geom,
            self.root,
            VirtAddr(0),
            end,
            &mut |_, va, _, pte| {
                if pte.present() {
                    out.push(va.0 >> PAGE_SHIFT);
                }
            },
        );
        out
    }

    /// The MMU's walk of `va`: the physical address or the fault, and the steps.
    fn translate(&mut self, va: u64, access: Access) -> (Result<u64, String>, Vec<String>) {
        let rec = Recorder::default();
        let log = rec.events.clone();
        let mut events = Events::default();
        events.set_observer(Some(Box::new(rec)));
        let vpn = va >> PAGE_SHIFT;
        let mut steps = vec![format!(
            "VA 0x{va:x}: VPN 0x{vpn:x}, offset 0x{:x}",
            va & ((1 << PAGE_SHIFT) - 1)
        )];
        let r = walk(
            &mut self.phys,
            &self.geom,
            self.root,
            VirtAddr(va),
            &mut events,
        );
        for e in log.borrow().iter() {
            if let Event::WalkStep {
                level,
                index,
                entry_pa,
                entry,
            } = e
            {
                steps.push(format!(
                    "{level} index {index:#x} (entry at {entry_pa}) = {entry}"
                ));
            }
        }
        let answer = match r {
            Err(_) if va >> self.geom.va_bits() != 0 => {
                Err("outside the address space: fault".to_string())
            }
            Err(level) => Err(format!(
                "{} entry not present: page fault",
                self.geom.level_name(level)
            )),
            Ok(leaf) if access == Access::Write && !leaf.pte.writable() => {
                Err("page is read-only: protection fault".to_string())
            }
            Ok(leaf) => {
                let pa = (leaf.pte.pfn().0 << PAGE_SHIFT) | (va & ((1 << PAGE_SHIFT) - 1));
                steps.push(format!(
                    "PFN 0x{:x} + offset -> PA 0x{pa:x}",
                    leaf.pte.pfn().0
                ));
                Ok(pa)
            }
        };
        (answer, steps)
    }

    /// The tables, one non-empty entry per line.
    fn dump(&self) -> String {
        let mut s = String::new();
        fn rec(p: &Paged, table: Pfn, level: u32, base: u64, out: &mut String) {
            let _ = writeln!(
                out,
                "{} table at frame 0x{:x}:",
                p.geom.level_name(level),
                table.0
            );
            let mut children = Vec::new();
            for i in 0..p.geom.entries() {
                let e = Pte(p.phys.read_u64(table.addr().add(i * 8)));
                if e.present() {
                    let span = p.geom.span(level) >> PAGE_SHIFT;
                    let _ = writeln!(
                        out,
                        "  [{i:2}] 0x{:016x}  -> frame 0x{:x}{}{}",
                        e.0,
                        e.pfn().0,
                        if level == 0 {
                            format!("  (VPN 0x{:x})", base + i)
                        } else {
                            String::new()
                        },
                        if level == 0 && !e.writable() {
                            "  read-only"
                        } else {
                            ""
                        }
                    );
                    if level > 0 {
                        children.push((e.pfn(), base + i * span));
                    }
                }
            }
            for (t, b) in children {
                rec(p, t, level - 1, b, out);
            }
        }
        rec(self, self.root, self.geom.levels - 1, 0, &mut s);
        s
    }
}

fn segment_table(rng: &mut Rng, space: u64) -> Vec<Option<Segment>> {
    let mut t = vec![None];
    let n = 2 + rng.below(2);
    for i in 0..n {
        let limit = (1 + rng.below(8)) * 0x400;
        let base = rng.below(space / 0x400 - 16) * 0x400;
        let prot = if rng.below(3) == 0 {
            PROT_READ
        } else {
            PROT_READ | PROT_WRITE
        };
        t.push(Some(Segment {
            base,
            limit,
            prot,
            grows_down: i == n - 1 && rng.below(2) == 0,
        }));
    }
    t
}

fn dump_segments(t: &[Option<Segment>]) -> String {
    let mut s = String::from("segment table:\n");
    for (i, seg) in t.iter().enumerate().skip(1) {
        if let Some(g) = seg {
            let _ = writeln!(
                s,
                "  segment {i}: base 0x{:x} limit 0x{:x} {}{}",
                g.base,
                g.limit,
                if g.prot & PROT_WRITE != 0 { "rw" } else { "r-" },
                if g.grows_down { " grows down" } else { "" }
            );
        }
    }
    s
}

fn seg_question(t: &[Option<Segment>], rng: &mut Rng) -> u64 {
    // Mostly real segments; now and then the null segment or one past the table.
    let seg = if rng.below(5) == 0 {
        rng.below(t.len() as u64 + 1)
    } else {
        1 + rng.below(t.len() as u64 - 1)
    };
    let lim = t
        .get(seg as usize)
        .copied()
        .flatten()
        .map_or(0x1000, |s| s.limit);
    let off = match t.get(seg as usize).copied().flatten() {
        Some(s) if s.grows_down => segment::SEG_SPAN - 1 - rng.below(lim + 0x400),
        _ => rng.below(lim + 0x400),
    };
    segment::logical(seg, off)
}

fn seg_translate(t: &[Option<Segment>], la: u64, steps: &mut Vec<String>) -> Result<u64, String> {
    let (seg, off) = segment::split(la);
    steps.push(format!("logical 0x{la:x}: segment {seg}, offset 0x{off:x}"));
    match segment::translate(t, la, Access::Read) {
        Ok(a) => {
            let s = t[seg as usize].expect("translated");
            steps.push(format!(
                "offset within limit 0x{:x}: base 0x{:x} + offset -> 0x{a:x}",
                s.limit, s.base
            ));
            Ok(a)
        }
        Err(segment::SegFault::NoSegment) => Err(format!("no segment {seg}: segmentation fault")),
        Err(segment::SegFault::Limit) => {
            Err("offset beyond the limit: segmentation violation".into())
        }
        Err(segment::SegFault::Protection) => Err("protection: segmentation violation".into()),
    }
}

/// Generates an exercise of `count` addresses from `seed`.
pub fn generate(mode: Mode, seed: u64, count: usize) -> Problem {
    let mut rng = Rng::new(seed);
    let mut questions = Vec::new();
    let setup;
    match mode {
        Mode::Linear | Mode::MultiLevel => {
            let geom = if mode == Mode::Linear {
                PagingGeometry {
                    levels: 1,
                    bits_per_level: 4,
                    page_shift: PAGE_SHIFT,
                }
            } else {
                PagingGeometry {
                    levels: 2,
                    bits_per_level: 4,
                    page_shift: PAGE_SHIFT,
                }
            };
            let mut m = Paged::new(geom, &mut rng, if mode == Mode::Linear { 50 } else { 20 });
            setup = format!(
                "{} page size 4 KiB, {}-bit virtual addresses; page table entries are x86-64 PTEs\n{}",
                if mode == Mode::Linear { "linear page table," } else { "two-level page table," },
                geom.va_bits(),
                m.dump()
            );
            for i in 0..count {
                // Half the questions hit mapped pages, as OSTEP's do.
                let mapped = m.mapped_vpns();
                let va = if i % 2 == 0 && !mapped.is_empty() {
                    (mapped[rng.below(mapped.len() as u64) as usize] << PAGE_SHIFT)
                        | rng.below(1 << PAGE_SHIFT)
                } else {
                    rng.below(1 << geom.va_bits())
                };
                let (answer, steps) = m.translate(va, Access::Read);
                questions.push(Question {
                    addr: va,
                    answer,
                    steps,
                });
            }
        }
        Mode::Segmentation => {
            let t = segment_table(&mut rng, 1 << 20);
            setup = format!(
                "pure segmentation, logical address = segment << {SEG_SHIFT} | offset\n{}",
                dump_segments(&t)
            );
            for _ in 0..count {
                let la = seg_question(&t, &mut rng);
                let mut steps = Vec::new();
                let answer = seg_translate(&t, la, &mut steps);
                questions.push(Question {
                    addr: la,
                    answer,
                    steps,
                });
            }
        }
        Mode::SegmentPaging => {
            let geom = PagingGeometry {
                levels: 2,
                bits_per_level: 4,
                page_shift: PAGE_SHIFT,
            };
            let mut m = Paged::new(geom, &mut rng, 30);
            let t = segment_table(&mut rng, 1 << geom.va_bits());
            setup = format!(
                "segments give linear addresses, a two-level page table translates them\n{}{}",
                dump_segments(&t),
                m.dump()
            );
            for _ in 0..count {
                let la = seg_question(&t, &mut rng);
                let mut steps = Vec::new();
                let answer = match seg_translate(&t, la, &mut steps) {
                    Ok(linear) => {
                        let (a, s) = m.translate(linear, Access::Read);
                        steps.extend(s);
                        a
                    }
                    Err(e) => Err(e),
                };
                questions.push(Question {
                    addr: la,
                    answer,
                    steps,
                });
            }
        }
    }
    Problem {
        mode,
        seed,
        setup,
        questions,
    }
}

impl Problem {
    /// The exercise as text; with `answers`, each address's result and the steps.
    pub fn render(&self, answers: bool) -> String {
        let mut s = format!(
            "ARG seed {}\nARG mode {:?}\n\n{}\n",
            self.seed, self.mode, self.setup
        );
        for (i, q) in self.questions.iter().enumerate() {
            let _ = write!(s, "Q{i}: translate 0x{:x}", q.addr);
            if answers {
                match &q.answer {
                    Ok(pa) => {
                        let _ = writeln!(s, " -> physical 0x{pa:x}");
                    }
                    Err(e) => {
                        let _ = writeln!(s, " -> {e}");
                    }
                }
                for step in &q.steps {
                    let _ = writeln!(s, "      {step}");
                }
            } else {
                s.push_str(" -> ?\n");
            }
        }
        if !answers {
            s.push_str("\nRun with -c to see the answers.\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_problem() {
        for mode in [
            Mode::Linear,
            Mode::MultiLevel,
            Mode::Segmentation,
            Mode::SegmentPaging,
        ] {
            assert_eq!(generate(mode, 7, 5), generate(mode, 7, 5));
            assert_ne!(
                generate(mode, 7, 5).render(true),
                generate(mode, 8, 5).render(true)
            );
        }
    }
}
