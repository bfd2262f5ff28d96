//! Address-translation exercises, in the spirit of OSTEP's homework simulators.
//!
//! Owns [`generate`]: from a seed, a small machine state (a page table in RAM, a segment
//! table, or both) and a list of addresses to translate. The answers are not computed by
//! a second implementation: each one is the emulated machine's own MMU walking the tables
//! (`hw::walk`) or its segmentation unit (`hw::segment`), and the steps shown are the
//! walker's events. The same seed always gives the same problem.
//!
//! Multi-level exercises come in two sizes: the default two levels of 16 entries (a 1 MiB
//! address space that fits on a page), or the page tables of a real machine geometry
//! ([`generate_with`]: i386, Sv39, arm64, x86-64 4- or 5-level), sparsely filled, whose
//! entries are shown exactly as that hardware stores them (4-byte i386 PTEs, Sv39 PTEs,
//! arm64 descriptors).

use crate::addr::{Pfn, VirtAddr, PAGE_SHIFT};
use crate::config::PagingGeometry;
use crate::consts::*;
use crate::events::{Event, Events, Recorder};
use crate::hw::mmu::Access;
use crate::hw::phys::{FrameFlags, PhysMem};
use crate::hw::pte::Pte;
use crate::hw::pte_format::PteFormat;
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
    /// The machine geometry of a multi-level exercise on real tables (`i386`, `sv39`,
    /// `arm64`, `x86-64`, `la57`), or `None` for the small teaching tables.
    pub geometry: Option<&'static str>,
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
                geom.write_pte(&mut p.phys, slot, Pte::new(frame, flags));
            }
        }
        p
    }

    /// The tables of a real machine geometry: a few clusters of mapped pages scattered
    /// over user space (filling 2^27 or more pages at a density would not fit in RAM),
    /// with the A, D and NX bits a running Linux would leave in them.
    fn sparse(geom: PagingGeometry, rng: &mut Rng) -> (Paged, Vec<u64>) {
        let mut phys = PhysMem::new(512 << PAGE_SHIFT);
        for _ in 0..rng.below(24) {
            phys.alloc(FrameFlags::ANON);
        }
        let root = phys
            .alloc_zeroed(FrameFlags::PAGE_TABLE)
            .expect("small RAM has room");
        let mut p = Paged { phys, geom, root };
        let user_pages = geom.task_size() >> PAGE_SHIFT;
        let mut windows = Vec::new();
        for c in 0..3 {
            // The first two clusters share a top-level entry half the time, so that a
            // walk can reach a leaf table and find its entry empty.
            let base = if c == 1 && rng.below(2) == 0 {
                windows[0] + 16 * (1 + rng.below(4))
            } else {
                rng.below(user_pages / CLUSTER) * CLUSTER
            };
            windows.push(base);
            let first = rng.below(CLUSTER);
            for i in 0..CLUSTER {
                if i != first && rng.below(100) >= 40 {
                    continue;
                }
                let frame = p.phys.alloc(FrameFlags::ANON).expect("room");
                let mut flags = Pte::PRESENT | Pte::USER | Pte::ACCESSED;
                if rng.below(3) > 0 {
                    flags |= Pte::WRITABLE;
                    if rng.below(2) == 0 {
                        flags |= Pte::DIRTY;
                    }
                }
                if rng.below(4) > 0 {
                    flags |= Pte::NX;
                }
                let va = VirtAddr((base + i) << PAGE_SHIFT);
                let (slot, _) =
                    pgtable::pte_slot_alloc(&mut p.phys, &geom, root, va).expect("room");
                geom.write_pte(&mut p.phys, slot, Pte::new(frame, flags));
            }
        }
        (p, windows)
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
                raw,
                ..
            } = e
            {
                steps.push(format!(
                    "{level} index {index:#x} (entry at {entry_pa}) = {raw}"
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
                let pa = p.geom.entry_addr(table, i);
                let e = if level == 0 {
                    p.geom.read_pte(&p.phys, pa)
                } else {
                    p.geom.read_table(&p.phys, pa)
                };
                if e.present() {
                    let span = p.geom.span(level) >> PAGE_SHIFT;
                    let bits = p.geom.format.read_raw(&p.phys, pa);
                    let raw = match p.geom.format {
                        PteFormat::X86_32 => format!("0x{bits:08x}"),
                        _ => format!("0x{bits:016x}"),
                    };
                    let _ = writeln!(
                        out,
                        "  [{i:2}] {raw}  -> frame 0x{:x}{}{}",
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
    generate_with(mode, None, seed, count)
}

/// Pages in one cluster of mapped pages of a real-geometry exercise.
const CLUSTER: u64 = 16;

/// Generates an exercise of `count` addresses from `seed`; with `geometry`, a multi-level
/// exercise walks the tables of that machine geometry (e.g. [`PagingGeometry::I386`] or
/// [`PagingGeometry::SV39`]) and shows its real entry values. Only [`Mode::MultiLevel`]
/// uses `geometry`; the other modes have their own fixed tables.
pub fn generate_with(
    mode: Mode,
    geometry: Option<PagingGeometry>,
    seed: u64,
    count: usize,
) -> Problem {
    let mut rng = Rng::new(seed);
    let mut questions = Vec::new();
    let setup;
    let geometry = geometry.filter(|_| mode == Mode::MultiLevel);
    match (mode, geometry) {
        (Mode::MultiLevel, Some(geom)) => {
            let (mut m, windows) = Paged::sparse(geom, &mut rng);
            let f = geom.format;
            setup = format!(
                "{} paging: {} levels of {} {}-byte entries, page size 4 KiB, {}-bit virtual \
                 addresses, user space below 0x{:x}\nentries are {} PTEs: {}\n{}",
                geom.name().unwrap_or(f.name()),
                geom.levels,
                geom.entries(),
                f.entry_size(),
                geom.va_bits(),
                geom.task_size(),
                f.name(),
                f.legend(),
                m.dump()
            );
            for i in 0..count {
                let mapped = m.mapped_vpns();
                let va = match i % 3 {
                    // A mapped page.
                    0 if !mapped.is_empty() => {
                        (mapped[rng.below(mapped.len() as u64) as usize] << PAGE_SHIFT)
                            | rng.below(1 << PAGE_SHIFT)
                    }
                    // Near the mapped pages: the leaf table exists, the entry may not.
                    1 => {
                        let w = windows[rng.below(windows.len() as u64) as usize];
                        ((w + rng.below(CLUSTER)) << PAGE_SHIFT) | rng.below(1 << PAGE_SHIFT)
                    }
                    // Anywhere in user space.
                    _ => rng.below(geom.task_size()),
                };
                let (answer, steps) = m.translate(va, Access::Read);
                questions.push(Question {
                    addr: va,
                    answer,
                    steps,
                });
            }
        }
        (Mode::Linear | Mode::MultiLevel, _) => {
            let geom = PagingGeometry {
                levels: if mode == Mode::Linear { 1 } else { 2 },
                bits_per_level: 4,
                page_shift: PAGE_SHIFT,
                format: PteFormat::X86_64,
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
        (Mode::Segmentation, _) => {
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
        (Mode::SegmentPaging, _) => {
            let geom = PagingGeometry {
                levels: 2,
                bits_per_level: 4,
                page_shift: PAGE_SHIFT,
                format: PteFormat::X86_64,
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
        geometry: geometry.map(|g| g.name().unwrap_or(g.format.name())),
        setup,
        questions,
    }
}

impl Problem {
    /// The exercise as text; with `answers`, each address's result and the steps.
    pub fn render(&self, answers: bool) -> String {
        let mut s = format!("ARG seed {}\nARG mode {:?}\n", self.seed, self.mode);
        if let Some(g) = self.geometry {
            let _ = writeln!(s, "ARG geometry {g}");
        }
        let _ = write!(s, "\n{}\n", self.setup);
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
