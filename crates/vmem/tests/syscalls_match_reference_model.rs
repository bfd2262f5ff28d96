//! Random sequences of `mmap`, `munmap`, `mprotect`, `madvise(MADV_DONTNEED)`, loads and
//! stores, checked after every operation against a plain page-granular reference model.
//!
//! The model is a map from page number to (protection, backing identity, data). After each
//! operation the test compares the return value or errno, and then the whole layout: every
//! mapped page with its protection and backing, derived from `vmas(pid)`. It also checks
//! that no VMA crosses a boundary between incompatible pages and that no two neighbours
//! the kernel's merge rule accepts were left unmerged (the exact boundaries, which depend
//! on anon_vma and VM_ACCOUNT history, are checked against Linux by vmem-conformance).
//!
//! `PROPTEST_CASES` raises the number of cases (256 by default).

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use vmem::consts::*;
use vmem::fs::InodeId;
use vmem::mm::vma::{Backing, Vma};
use vmem::{Errno, Kernel, Pid, SegvCode, Signal, VirtAddr};

const PG: u64 = vmem::PAGE_SIZE;
/// The reserved window MAP_FIXED and hinted mappings go to.
const WIN: u64 = 0x1000_0000;
const WIN_PAGES: u64 = 64;
const MAX_OP_PAGES: u64 = 8;
const RW: i32 = PROT_READ | PROT_WRITE;

/// Protections the test uses. Exec-only is left out: with protection keys Linux makes it
/// unreadable, which this machine does not model.
const PROTS: [i32; 6] = [
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
    RW,
    PROT_READ | PROT_EXEC,
    RW | PROT_EXEC,
];

/// An address the test aims an operation at.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// Page `n` of the window.
    Win(u64),
    /// Page `n` after the start of the `k`-th non-fixed mapping made so far (the window
    /// when there is none).
    Placed(usize, u64),
    /// The `k`-th mapped page (the window when nothing is mapped).
    Mapped(usize),
    /// The `k`-th address stored to so far, exactly (the window when none): loads there
    /// see whether the byte survived what happened since.
    Stored(usize),
}

#[derive(Clone, Debug)]
enum Op {
    MapFixed {
        page: u64,
        pages: u64,
        prot: i32,
        shared: bool,
        noreplace: bool,
    },
    MapHint {
        page: u64,
        pages: u64,
        prot: i32,
        shared: bool,
    },
    MapAny {
        pages: u64,
        prot: i32,
        shared: bool,
    },
    Munmap {
        at: Target,
        pages: u64,
    },
    Mprotect {
        at: Target,
        pages: u64,
        prot: i32,
    },
    DontNeed {
        at: Target,
        pages: u64,
    },
    Store {
        at: Target,
        off: u64,
        val: u8,
    },
    Load {
        at: Target,
        off: u64,
    },
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => (0..WIN_PAGES + MAX_OP_PAGES).prop_map(Target::Win),
        1 => (0..8usize, 0..MAX_OP_PAGES).prop_map(|(k, n)| Target::Placed(k, n)),
        4 => any::<usize>().prop_map(Target::Mapped),
        2 => any::<usize>().prop_map(Target::Stored),
    ]
}

/// An offset in a page: mostly a few fixed ones, so that loads meet earlier stores.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![4 => proptest::sample::select(vec![0, 1, 2048, PG - 1]), 1 => 0..PG]
}

fn prot() -> impl Strategy<Value = i32> {
    proptest::sample::select(PROTS.to_vec())
}

fn op() -> impl Strategy<Value = Op> {
    let pages = 1..=MAX_OP_PAGES;
    prop_oneof![
        4 => (0..WIN_PAGES, pages.clone(), prot(), any::<bool>(), proptest::bool::weighted(0.2)).prop_map(
            |(page, pages, prot, shared, noreplace)| Op::MapFixed { page, pages, prot, shared, noreplace }
        ),
        1 => (0..WIN_PAGES, pages.clone(), prot(), any::<bool>())
            .prop_map(|(page, pages, prot, shared)| Op::MapHint { page, pages, prot, shared }),
        1 => (pages.clone(), prot(), any::<bool>()).prop_map(|(pages, prot, shared)| Op::MapAny { pages, prot, shared }),
        2 => (target(), 0..=MAX_OP_PAGES).prop_map(|(at, pages)| Op::Munmap { at, pages }),
        3 => (target(), 0..=MAX_OP_PAGES, prot()).prop_map(|(at, pages, prot)| Op::Mprotect { at, pages, prot }),
        1 => (target(), 0..=MAX_OP_PAGES).prop_map(|(at, pages)| Op::DontNeed { at, pages }),
        4 => (target(), offset(), 1..=u8::MAX).prop_map(|(at, off, val)| Op::Store { at, off, val }),
        4 => (target(), offset()).prop_map(|(at, off)| Op::Load { at, off }),
    ]
}

/// What a page is backed by, as the kernel must report it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Private anonymous memory.
    Anon,
    /// Page `pgoff` of the shared anonymous object `ino`.
    Shm { ino: InodeId, pgoff: u64 },
}

#[derive(Clone, Debug)]
struct Page {
    prot: i32,
    kind: Kind,
    /// Bytes stored into a private page (absent bytes read 0).
    data: BTreeMap<u64, u8>,
}

#[derive(Default)]
struct Model {
    /// Page number -> page.
    pages: BTreeMap<u64, Page>,
    /// Bytes of shared anonymous objects, by (object, page offset).
    shm: HashMap<(InodeId, u64), BTreeMap<u64, u8>>,
    /// Start addresses of the non-fixed mappings made so far.
    placed: Vec<u64>,
    /// Shared objects created so far (each mmap must create a new one).
    shm_seen: HashSet<InodeId>,
    /// Addresses stored to successfully so far.
    stored: Vec<u64>,
}

impl Model {
    /// The address of byte `off` of target `t` (a stored address is used as it is).
    fn byte_addr(&self, t: Target, off: u64) -> u64 {
        match t {
            Target::Stored(k) if !self.stored.is_empty() => self.stored[k % self.stored.len()],
            _ => self.addr(t) + off,
        }
    }

    /// The page-aligned address target `t` names.
    fn addr(&self, t: Target) -> u64 {
        match t {
            Target::Win(n) => WIN + n * PG,
            Target::Placed(k, n) if !self.placed.is_empty() => {
                self.placed[k % self.placed.len()] + n * PG
            }
            Target::Placed(_, n) => WIN + n * PG,
            Target::Mapped(k) if !self.pages.is_empty() => {
                let n = self.pages.len();
                self.pages.keys().nth(k % n).copied().expect("k % n < n") * PG
            }
            Target::Mapped(k) => WIN + (k as u64 % WIN_PAGES) * PG,
            Target::Stored(k) if !self.stored.is_empty() => {
                self.stored[k % self.stored.len()] / PG * PG
            }
            Target::Stored(k) => WIN + (k as u64 % WIN_PAGES) * PG,
        }
    }

    fn range_free(&self, addr: u64, pages: u64) -> bool {
        let first = addr / PG;
        self.pages.range(first..first + pages).next().is_none()
    }

    fn unmap(&mut self, addr: u64, pages: u64) {
        let first = addr / PG;
        let doomed: Vec<u64> = self
            .pages
            .range(first..first + pages)
            .map(|(&p, _)| p)
            .collect();
        for p in doomed {
            self.pages.remove(&p);
        }
    }

    fn map(&mut self, addr: u64, pages: u64, prot: i32, shm: Option<InodeId>) {
        self.unmap(addr, pages);
        for i in 0..pages {
            let kind = match shm {
                Some(ino) => Kind::Shm { ino, pgoff: i },
                None => Kind::Anon,
            };
            self.pages.insert(
                addr / PG + i,
                Page {
                    prot,
                    kind,
                    data: BTreeMap::new(),
                },
            );
        }
    }

    fn readable(prot: i32) -> bool {
        prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0
    }

    fn load(&self, va: u64) -> Result<u8, Signal> {
        let Some(p) = self.pages.get(&(va / PG)) else {
            return Err(Signal::Segv {
                addr: VirtAddr(va),
                code: SegvCode::MapErr,
            });
        };
        if !Self::readable(p.prot) {
            return Err(Signal::Segv {
                addr: VirtAddr(va),
                code: SegvCode::AccErr,
            });
        }
        let data = match p.kind {
            Kind::Anon => Some(&p.data),
            Kind::Shm { ino, pgoff } => self.shm.get(&(ino, pgoff)),
        };
        Ok(data.and_then(|d| d.get(&(va % PG)).copied()).unwrap_or(0))
    }

    fn store(&mut self, va: u64, val: u8) -> Result<(), Signal> {
        let Some(p) = self.pages.get_mut(&(va / PG)) else {
            return Err(Signal::Segv {
                addr: VirtAddr(va),
                code: SegvCode::MapErr,
            });
        };
        if p.prot & PROT_WRITE == 0 {
            return Err(Signal::Segv {
                addr: VirtAddr(va),
                code: SegvCode::AccErr,
            });
        }
        match p.kind {
            Kind::Anon => {
                p.data.insert(va % PG, val);
            }
            Kind::Shm { ino, pgoff } => {
                self.shm
                    .entry((ino, pgoff))
                    .or_default()
                    .insert(va % PG, val);
            }
        }
        Ok(())
    }

    /// Linux `mprotect`: pages up to the first hole change; a hole (or an unmapped start)
    /// is ENOMEM.
    fn mprotect(&mut self, addr: u64, pages: u64, prot: i32) -> Result<(), Errno> {
        for i in 0..pages {
            match self.pages.get_mut(&(addr / PG + i)) {
                Some(p) => p.prot = prot,
                None => return Err(Errno::ENOMEM),
            }
        }
        Ok(())
    }

    /// `madvise(MADV_DONTNEED)`: private pages read back as zeros, shared ones keep their
    /// data; applied to every mapped page even when there is a hole (then ENOMEM).
    fn dontneed(&mut self, addr: u64, pages: u64) -> Result<(), Errno> {
        let mut r = Ok(());
        for i in 0..pages {
            match self.pages.get_mut(&(addr / PG + i)) {
                Some(p) => p.data.clear(),
                None => r = Err(Errno::ENOMEM),
            }
        }
        r
    }

    /// Whether page `b` continues page `a` in one VMA.
    fn continues(a: &Page, b: &Page) -> bool {
        a.prot == b.prot
            && match (a.kind, b.kind) {
                (Kind::Anon, Kind::Anon) => true,
                (Kind::Shm { ino: i, pgoff: x }, Kind::Shm { ino: j, pgoff: y }) => {
                    i == j && x + 1 == y
                }
                _ => false,
            }
    }

    /// The VMAs the layout must form: maximal runs of pages that continue each other.
    fn expected_vmas(&self) -> Vec<(u64, u64, i32)> {
        let mut out: Vec<(u64, u64, i32)> = Vec::new();
        let mut prev: Option<(u64, &Page)> = None;
        for (&pn, p) in &self.pages {
            match (prev, out.last_mut()) {
                (Some((qn, q)), Some(last)) if qn + 1 == pn && Self::continues(q, p) => {
                    last.1 = (pn + 1) * PG
                }
                _ => out.push((pn * PG, (pn + 1) * PG, p.prot)),
            }
            prev = Some((pn, p));
        }
        out
    }
}

fn kind_of(v: &Vma, page: u64) -> Kind {
    match v.backing {
        Backing::Anon => Kind::Anon,
        Backing::File(ino) => Kind::Shm {
            ino,
            pgoff: v.pgoff.0 + (page - v.start.0 / PG),
        },
    }
}

/// Compares the kernel's layout with the model's.
fn check_layout(
    k: &Kernel,
    pid: Pid,
    m: &Model,
    step: usize,
    op: &Op,
) -> Result<(), TestCaseError> {
    let vmas = k.vmas(pid).expect("live process");
    let mut actual: BTreeMap<u64, (i32, Kind)> = BTreeMap::new();
    for v in &vmas {
        prop_assert!(v.start < v.end, "step {step} {op:?}: empty VMA {v:?}");
        for page in v.start.0 / PG..v.end.0 / PG {
            actual.insert(page, (v.prot, kind_of(v, page)));
        }
    }
    let expected: BTreeMap<u64, (i32, Kind)> = m
        .pages
        .iter()
        .map(|(&pn, p)| (pn, (p.prot, p.kind)))
        .collect();
    if actual != expected {
        let diff: Vec<String> = actual
            .keys()
            .chain(expected.keys())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|pn| actual.get(pn) != expected.get(pn))
            .take(8)
            .map(|pn| {
                format!(
                    "page {:#x}: kernel {:?}, model {:?}",
                    pn * PG,
                    actual.get(pn),
                    expected.get(pn)
                )
            })
            .collect();
        prop_assert!(
            false,
            "step {step} {op:?}: layouts differ:\n{}\n{}",
            diff.join("\n"),
            k.maps(pid).unwrap()
        );
    }
    // Adjacent VMAs that Linux would merge must have been merged. Which neighbours merge
    // depends on state the page-granular model does not track (anon_vma identity,
    // VM_ACCOUNT after mprotect), so the rule is the kernel's own `can_merge_with`; the
    // exact boundaries are checked against the real kernel by the vmem-conformance suite.
    for w in vmas.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        prop_assert!(
            !a.can_merge_with(b),
            "step {step} {op:?}: unmerged neighbours {a:?} and {b:?}"
        );
    }
    // No VMA spans a boundary of the model's runs (the per-page check above covers prot
    // and backing; this covers the run structure).
    let runs = m.expected_vmas();
    for v in &vmas {
        let inside = runs.iter().any(|r| r.0 <= v.start.0 && v.end.0 <= r.1);
        prop_assert!(
            inside,
            "step {step} {op:?}: VMA {v:?} crosses a run boundary\n{}",
            k.maps(pid).unwrap()
        );
    }
    Ok(())
}

fn map_flags(shared: bool) -> i32 {
    MAP_ANONYMOUS | if shared { MAP_SHARED } else { MAP_PRIVATE }
}

/// The object behind a new shared anonymous mapping at `va`: it must be a new one, mapped
/// from its first page.
fn new_shm(
    k: &Kernel,
    pid: Pid,
    m: &mut Model,
    va: u64,
    step: usize,
    op: &Op,
) -> Result<InodeId, TestCaseError> {
    let vmas = k.vmas(pid).expect("live process");
    let v = vmas.iter().find(|v| v.contains(VirtAddr(va)));
    let Some(v) = v else {
        return Err(TestCaseError::fail(format!(
            "step {step} {op:?}: nothing mapped at {va:#x}"
        )));
    };
    let Kind::Shm { ino, pgoff } = kind_of(v, va / PG) else {
        return Err(TestCaseError::fail(format!(
            "step {step} {op:?}: shared mapping is {v:?}"
        )));
    };
    prop_assert_eq!(pgoff, 0, "step {} {:?}: shared object offset", step, op);
    prop_assert!(
        m.shm_seen.insert(ino),
        "step {step} {op:?}: shared object {ino:?} reused"
    );
    Ok(ino)
}

/// A non-fixed mapping: the kernel chooses, the model checks the choice is legal.
#[allow(clippy::too_many_arguments)]
fn map_placed(
    k: &mut Kernel,
    pid: Pid,
    m: &mut Model,
    hint: u64,
    pages: u64,
    prot: i32,
    shared: bool,
    step: usize,
    op: &Op,
) -> Result<(), TestCaseError> {
    let r = k.mmap(
        pid,
        VirtAddr(hint),
        pages * PG,
        prot,
        map_flags(shared),
        -1,
        0,
    );
    let va = match r {
        Ok(va) => va.0,
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "step {step} {op:?}: mmap failed with {e}"
            )))
        }
    };
    if hint != 0 && m.range_free(hint, pages) {
        prop_assert_eq!(va, hint, "step {} {:?}: a free hint must be used", step, op);
    }
    prop_assert!(
        va % PG == 0 && va >= 0x10000 && va + pages * PG <= TASK_SIZE,
        "step {step} {op:?}: address {va:#x}"
    );
    prop_assert!(
        m.range_free(va, pages),
        "step {step} {op:?}: {va:#x} overlaps an existing mapping"
    );
    let shm = if shared {
        Some(new_shm(k, pid, m, va, step, op)?)
    } else {
        None
    };
    m.map(va, pages, prot, shm);
    m.placed.push(va);
    Ok(())
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut k = Kernel::default();
    let pid = k.spawn().expect("spawn");
    let mut m = Model::default();
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::MapFixed {
                page,
                pages,
                prot,
                shared,
                noreplace,
            } => {
                let addr = WIN + page * PG;
                let flags = map_flags(shared)
                    | if noreplace {
                        MAP_FIXED_NOREPLACE
                    } else {
                        MAP_FIXED
                    };
                let r = k.mmap(pid, VirtAddr(addr), pages * PG, prot, flags, -1, 0);
                if noreplace && !m.range_free(addr, pages) {
                    prop_assert_eq!(r, Err(Errno::EEXIST), "step {} {:?}", step, op);
                } else {
                    prop_assert_eq!(r, Ok(VirtAddr(addr)), "step {} {:?}", step, op);
                    let shm = if shared {
                        Some(new_shm(&k, pid, &mut m, addr, step, op)?)
                    } else {
                        None
                    };
                    m.map(addr, pages, prot, shm);
                }
            }
            Op::MapHint {
                page,
                pages,
                prot,
                shared,
            } => {
                map_placed(
                    &mut k,
                    pid,
                    &mut m,
                    WIN + page * PG,
                    pages,
                    prot,
                    shared,
                    step,
                    op,
                )?;
            }
            Op::MapAny {
                pages,
                prot,
                shared,
            } => {
                map_placed(&mut k, pid, &mut m, 0, pages, prot, shared, step, op)?;
            }
            Op::Munmap { at, pages } => {
                let addr = m.addr(at);
                let r = k.munmap(pid, VirtAddr(addr), pages * PG);
                let want = if pages == 0 {
                    Err(Errno::EINVAL)
                } else {
                    Ok(())
                };
                prop_assert_eq!(r, want, "step {} {:?} at {:#x}", step, op, addr);
                m.unmap(addr, pages);
            }
            Op::Mprotect { at, pages, prot } => {
                let addr = m.addr(at);
                let r = k.mprotect(pid, VirtAddr(addr), pages * PG, prot);
                let want = m.mprotect(addr, pages, prot);
                prop_assert_eq!(r, want, "step {} {:?} at {:#x}", step, op, addr);
            }
            Op::DontNeed { at, pages } => {
                let addr = m.addr(at);
                let r = k.madvise(pid, VirtAddr(addr), pages * PG, MADV_DONTNEED);
                let want = m.dontneed(addr, pages);
                prop_assert_eq!(r, want, "step {} {:?} at {:#x}", step, op, addr);
            }
            Op::Store { at, off, val } => {
                let va = m.byte_addr(at, off);
                let r = k.store_u8(pid, VirtAddr(va), val);
                let want = m.store(va, val);
                if want.is_ok() {
                    m.stored.push(va);
                }
                prop_assert_eq!(r, want, "step {} {:?} at {:#x}", step, op, va);
                if r.is_ok() {
                    // A store is seen by the next load (when the page is readable at all).
                    let back = k.load_u8(pid, VirtAddr(va));
                    prop_assert_eq!(
                        back,
                        m.load(va),
                        "step {} {:?}: load after store at {:#x}",
                        step,
                        op,
                        va
                    );
                }
            }
            Op::Load { at, off } => {
                let va = m.byte_addr(at, off);
                let r = k.load_u8(pid, VirtAddr(va));
                prop_assert_eq!(r, m.load(va), "step {} {:?} at {:#x}", step, op, va);
            }
        }
        check_layout(&k, pid, &m, step, op)?;
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn syscalls_match_reference_model(ops in proptest::collection::vec(op(), 1..=40)) {
        run(&ops)?;
    }
}

/// The data rules the property relies on, spelled out once: a stored byte survives
/// mprotect, and is gone after munmap and a new mapping at the same place.
#[test]
fn anonymous_data_survives_mprotect_not_remap() {
    let mut k = Kernel::default();
    let pid = k.spawn().unwrap();
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    let va = k
        .mmap(pid, VirtAddr(WIN), 2 * PG, RW, flags, -1, 0)
        .unwrap();
    k.store_u8(pid, va.add(PG + 9), 0x77).unwrap();
    assert_eq!(k.load_u8(pid, va.add(PG + 9)), Ok(0x77));
    k.mprotect(pid, va, 2 * PG, PROT_NONE).unwrap();
    assert_eq!(
        k.load_u8(pid, va.add(PG + 9)),
        Err(Signal::Segv {
            addr: va.add(PG + 9),
            code: SegvCode::AccErr
        })
    );
    k.mprotect(pid, va.add(PG), PG, PROT_READ).unwrap();
    assert_eq!(k.load_u8(pid, va.add(PG + 9)), Ok(0x77));
    assert_eq!(
        k.store_u8(pid, va.add(PG + 9), 1),
        Err(Signal::Segv {
            addr: va.add(PG + 9),
            code: SegvCode::AccErr
        })
    );
    k.munmap(pid, va, 2 * PG).unwrap();
    assert_eq!(
        k.load_u8(pid, va.add(PG + 9)),
        Err(Signal::Segv {
            addr: va.add(PG + 9),
            code: SegvCode::MapErr
        })
    );
    k.mmap(pid, va, 2 * PG, RW, flags, -1, 0).unwrap();
    assert_eq!(k.load_u8(pid, va.add(PG + 9)), Ok(0));
}
