//! `Kernel::access_batch` against `load`/`store`/`fetch` one by one, in the cases the
//! mixed-trace test (`access_batch_matches_single_accesses.rs`) does not reach: huge
//! pages (THP always, MAP_HUGETLB), the replacement policies other than exact LRU, a
//! tiny TLB (refills of a block evict the entries of its earlier accesses),
//! copy-on-write frames shared by a forked child, a shared file also read and written
//! with pread/pwrite, a device register that changes when read, a store then a load of
//! the same bytes in one block for every size, and pids that are not alive.
//!
//! Other geometries, exact LRU (which stamps each access) and observed runs never take
//! the block path: there `access_batch` runs each access alone, and those tests check
//! only that it does so with the same effects (the events included when observed).
//!
//! Each scenario runs twice on fresh machines, once through `access_batch` and once one
//! access at a time, and everything a user can see is compared record by record: values
//! and signals, counters after every chunk, page-table entries, frame reference counts,
//! console output, file contents, and finally which pages the TLB still holds (a probe
//! load per page, counted as a hit or a miss).
// Sizes and addresses are written for 4 KiB pages.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use std::path::Path;
use vmem::config::{MachineConfig, PagingGeometry, ThpMode};
use vmem::consts::*;
use vmem::reclaim::policy::PolicyKind;
use vmem::{Access, Kernel, Pid, Signal, TraceAccess, VirtAddr, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE;
const HPAGE: u64 = 2 << 20;

mod common;
use common::{batched, one_by_one, Rng};

/// How the accesses of a scenario run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Batch,
    Single,
}

/// Runs `t` for `pid` and returns, per access, its value or signal.
fn run_accesses(
    k: &mut Kernel,
    mode: Mode,
    pid: Pid,
    t: &[TraceAccess],
    values: &[u64],
) -> Vec<String> {
    let seen = match mode {
        Mode::Single => one_by_one(k, pid, t, values),
        Mode::Batch => batched(k, pid, t, values),
    };
    seen.iter()
        .enumerate()
        .map(|(i, s)| format!("{pid:?} #{i} {:?}: {s:?}", t[i]))
        .collect()
}

/// An area a trace runs in: first byte, pages, and whether it is a device's registers
/// (accesses at the first 24 bytes only, 8-byte aligned).
#[derive(Clone, Copy)]
struct Area {
    base: u64,
    pages: u64,
    device: bool,
}

const fn area(base: u64, pages: u64) -> Area {
    Area {
        base,
        pages,
        device: false,
    }
}

/// A random trace over `areas`: runs within an area, sizes 0..=255 weighted to the
/// common ones and 9..=64, some accesses at the end of a page (crossing it), loads,
/// stores and fetches.
fn trace(rng: &mut Rng, areas: &[Area], n: usize) -> (Vec<TraceAccess>, Vec<u64>) {
    let mut out = Vec::with_capacity(n);
    let mut a = areas[0];
    for _ in 0..n {
        if rng.below(24) == 0 {
            a = areas[rng.below(areas.len() as u64) as usize];
        }
        let size = match rng.below(12) {
            0 => 1,
            1 => 2,
            2 => 4,
            3 => 9 + rng.below(56) as u8,
            4 => 64,
            5 => rng.below(256) as u8,
            6 => 0,
            _ => 8,
        };
        let off = if a.device {
            rng.below(3) * 8
        } else if rng.below(10) == 0 {
            rng.below(a.pages) * PAGE + PAGE - u64::from(size.max(1)) + rng.below(4)
        } else {
            // Mostly in a few pages: loads after stores of the same bytes in one block.
            let page = if rng.below(2) == 0 {
                rng.below(a.pages.min(4))
            } else {
                rng.below(a.pages)
            };
            page * PAGE + (rng.below(PAGE - 64) & !7)
        };
        let access = match rng.below(8) {
            0..=3 => Access::Read,
            4..=6 => Access::Write,
            _ => Access::Exec,
        };
        let size = if a.device { 8 } else { size };
        out.push(TraceAccess {
            va: VirtAddr(a.base + off),
            access,
            size,
        });
    }
    let values = (0..n).map(|_| rng.next()).collect();
    (out, values)
}

/// Everything observable about `pids` and the pages of `areas`.
fn snapshot(k: &mut Kernel, pids: &[Pid], areas: &[Area]) -> Vec<String> {
    let mut out = Vec::new();
    for &p in pids {
        out.push(format!("{p:?} stats {:?}", k.process_stats(p)));
        if !k.is_alive(p) {
            continue;
        }
        for a in areas {
            for pg in 0..a.pages {
                let va = VirtAddr(a.base + pg * PAGE);
                let frame = k.frame_of(p, va);
                out.push(format!(
                    "{p:?} {va} pte {:?} pmd {:?} frame {frame:?} refs {:?}",
                    k.pte_of(p, va),
                    k.pmd_of(p, va),
                    frame.map(|f| k.frame_refcount(f)),
                ));
            }
        }
    }
    out.push(format!("machine {:?}", k.stats()));
    out.push(format!(
        "frames in use {} free {}",
        k.frames_in_use(),
        k.free_frames()
    ));
    out.push(format!("console {:?}", k.console_output()));
    out
}

/// Which pages' translations the TLB holds: one 1-byte load per page, a hit or a miss.
fn tlb_probe(k: &mut Kernel, pids: &[Pid], areas: &[Area]) -> Vec<String> {
    let mut out = Vec::new();
    for &p in pids {
        if !k.is_alive(p) {
            continue;
        }
        for a in areas.iter().filter(|a| !a.device) {
            for pg in 0..a.pages {
                let va = VirtAddr(a.base + pg * PAGE);
                let before = k.process_stats(p).unwrap().tlb_hits;
                let r = k.load(p, va, &mut [0u8; 1]);
                let hit = k.process_stats(p).unwrap().tlb_hits > before;
                out.push(format!("{p:?} {va} probe hit {hit} {r:?}"));
            }
        }
    }
    out
}

/// Runs `scenario` batched and one by one on machines booted from `cfg`, and compares
/// what each saw, line by line.
fn compare(
    name: &str,
    cfg: impl Fn() -> MachineConfig,
    scenario: impl Fn(&mut Kernel, &Path, Mode) -> Vec<String>,
) {
    let go = |mode| {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Kernel::new(cfg());
        scenario(&mut k, dir.path(), mode)
    };
    let one = go(Mode::Single);
    let many = go(Mode::Batch);
    for (i, (a, b)) in one.iter().zip(&many).enumerate() {
        assert_eq!(a, b, "{name}: line {i}");
    }
    assert_eq!(one.len(), many.len(), "{name}");
}

/// A file of `pages` pages of known bytes in `dir`.
fn data_file(dir: &Path, pages: u64) -> std::path::PathBuf {
    let path = dir.join("data.bin");
    let bytes: Vec<u8> = (0..pages * PAGE).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

const RW: i32 = PROT_READ | PROT_WRITE;
const RWX: i32 = PROT_READ | PROT_WRITE | PROT_EXEC;
const ANON: i32 = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

/// The areas of the plain scenario: anonymous RWX, a shared file, a private file.
fn plain_setup(k: &mut Kernel, dir: &Path) -> (Pid, Vec<Area>) {
    let p = k.spawn().unwrap();
    let path = data_file(dir, 24);
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    k.mmap(p, VirtAddr(0x1000_0000), 64 * PAGE, RWX, ANON, -1, 0)
        .unwrap();
    k.mmap(
        p,
        VirtAddr(0x2000_0000),
        24 * PAGE,
        RW,
        MAP_SHARED | MAP_FIXED,
        fd,
        0,
    )
    .unwrap();
    k.mmap(
        p,
        VirtAddr(0x3000_0000),
        24 * PAGE,
        PROT_READ | PROT_EXEC,
        MAP_PRIVATE | MAP_FIXED,
        fd,
        0,
    )
    .unwrap();
    (
        p,
        vec![
            area(0x1000_0000, 66), // two pages of hole after it
            area(0x2000_0000, 24),
            area(0x3000_0000, 24),
        ],
    )
}

/// The plain scenario: random traces in chunks, a snapshot after each.
fn plain(k: &mut Kernel, dir: &Path, mode: Mode, seed: u64) -> Vec<String> {
    let (p, areas) = plain_setup(k, dir);
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for _ in 0..6 {
        let (t, v) = trace(&mut rng, &areas, 1500);
        out.extend(run_accesses(k, mode, p, &t, &v));
        out.extend(snapshot(k, &[p], &areas));
    }
    out.extend(tlb_probe(k, &[p], &areas));
    out
}

#[test]
fn other_geometries_match_one_by_one() {
    for geometry in [
        PagingGeometry::X86_64_5LEVEL,
        PagingGeometry::I386,
        PagingGeometry::SV39,
        PagingGeometry::ARM64_4K,
    ] {
        compare(
            &format!("{geometry:?}"),
            || MachineConfig {
                ram_bytes: 32 << 20,
                geometry,
                ..MachineConfig::default()
            },
            |k, dir, mode| plain(k, dir, mode, 0x1357_9bdf_2468_ace0),
        );
    }
}

#[test]
fn every_replacement_policy_under_pressure_matches_one_by_one() {
    for policy in [
        PolicyKind::Lru,
        PolicyKind::Clock,
        PolicyKind::Fifo,
        PolicyKind::Random,
        PolicyKind::TwoList,
    ] {
        compare(
            &format!("{policy:?}"),
            || MachineConfig {
                ram_bytes: 80 * PAGE,
                swap_bytes: 2 << 20,
                policy,
                ..MachineConfig::default()
            },
            |k, dir, mode| {
                let out = plain(k, dir, mode, 0x0bad_cafe_dead_beef);
                // The pressure reached: pages went to swap and came back.
                assert!(k.stats().swap_ins > 0 && k.stats().major_faults > 0);
                out
            },
        );
    }
}

#[test]
fn tiny_tlbs_match_one_by_one() {
    for (sets, ways) in [(1, 1), (1, 2), (2, 1), (4, 2)] {
        compare(
            &format!("{sets}x{ways}"),
            || MachineConfig {
                ram_bytes: 32 << 20,
                tlb_sets: sets,
                tlb_ways: ways,
                ..MachineConfig::default()
            },
            |k, dir, mode| plain(k, dir, mode, 0x7777_1111_3333_5555),
        );
    }
}

#[test]
fn observed_runs_see_the_same_events() {
    compare(
        "observed",
        || MachineConfig::with_ram(32 << 20),
        |k, dir, mode| {
            let rec = vmem::events::Recorder::default();
            let events = rec.events.clone();
            k.set_observer(Some(Box::new(rec)));
            let mut out = plain(k, dir, mode, 0x4242_4242_1234_5678);
            k.set_observer(None);
            // The temporary directory's name differs between the runs.
            let dir = dir.display().to_string();
            out.extend(
                events
                    .borrow()
                    .iter()
                    .map(|e| format!("{e:?}").replace(&dir, "DIR")),
            );
            out
        },
    );
}

#[test]
fn transparent_huge_pages_always_match_one_by_one() {
    compare(
        "thp always",
        || MachineConfig {
            ram_bytes: 64 << 20,
            thp: ThpMode::Always,
            ..MachineConfig::default()
        },
        |k, _dir, mode| {
            let p = k.spawn().unwrap();
            let base = 0x4000_0000;
            k.mmap(p, VirtAddr(base), 3 * HPAGE, RWX, ANON, -1, 0)
                .unwrap();
            // A huge-page area and its neighbours in one trace: the block runs across
            // 2 MiB entries, their zero page, and their splits below.
            let areas = [
                area(base, 8),
                area(base + HPAGE - 4 * PAGE, 8),
                area(base + HPAGE + 100 * PAGE, 8),
                area(base + 2 * HPAGE + 7 * PAGE, 3),
            ];
            let mut rng = Rng(0x600d_f00d_0000_0001);
            let mut out = Vec::new();
            let mut pids = vec![p];
            for c in 0..8 {
                let (t, v) = trace(&mut rng, &areas, 1500);
                for &q in &pids.clone() {
                    out.extend(run_accesses(k, mode, q, &t, &v));
                }
                out.extend(snapshot(k, &pids, &areas));
                match c {
                    // A huge page shared copy-on-write with a child.
                    1 => pids.push(k.fork(p).unwrap()),
                    // Split by mprotect of part of it, and by munmap.
                    3 => k
                        .mprotect(p, VirtAddr(base + 3 * PAGE), PAGE, PROT_READ)
                        .unwrap(),
                    4 => k.munmap(p, VirtAddr(base + HPAGE), PAGE).unwrap(),
                    5 => k
                        .madvise(p, VirtAddr(base + 2 * HPAGE), HPAGE, MADV_DONTNEED)
                        .unwrap(),
                    _ => {}
                }
            }
            out.extend(tlb_probe(k, &pids, &areas));
            let c = k.stats();
            assert!(c.thp_fault_alloc > 0 && c.thp_split_pmd > 0, "{c:?}");
            out
        },
    );
}

#[test]
fn hugetlb_pages_match_one_by_one() {
    compare(
        "hugetlb",
        || MachineConfig {
            ram_bytes: 64 << 20,
            nr_hugepages: 6,
            ..MachineConfig::default()
        },
        |k, _dir, mode| {
            let p = k.spawn().unwrap();
            let base = 0x8000_0000;
            k.mmap(p, VirtAddr(base), 2 * HPAGE, RWX, ANON | MAP_HUGETLB, -1, 0)
                .unwrap();
            k.mmap(
                p,
                VirtAddr(base + 2 * HPAGE),
                2 * HPAGE,
                RW,
                MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB,
                -1,
                0,
            )
            .unwrap();
            let areas = [
                area(base, 6),
                area(base + HPAGE - 2 * PAGE, 4),
                area(base + 2 * HPAGE, 6),
                area(base + 4 * HPAGE - 3 * PAGE, 4), // one page past the end
            ];
            let mut rng = Rng(0x1111_2222_3333_4444);
            let mut out = Vec::new();
            let mut pids = vec![p];
            for c in 0..6 {
                let (t, v) = trace(&mut rng, &areas, 1500);
                for &q in &pids.clone() {
                    out.extend(run_accesses(k, mode, q, &t, &v));
                }
                out.extend(snapshot(k, &pids, &areas));
                if c == 1 {
                    pids.push(k.fork(p).unwrap());
                }
            }
            out.extend(tlb_probe(k, &pids, &areas));
            assert!(out
                .iter()
                .any(|l| l.contains("pmd") && l.contains("2 MiB page")));
            out
        },
    );
}

#[test]
fn copy_on_write_frames_shared_with_a_child_match_one_by_one() {
    compare(
        "fork",
        || MachineConfig::with_ram(32 << 20),
        |k, dir, mode| {
            let (p, areas) = plain_setup(k, dir);
            let mut rng = Rng(0x9999_8888_7777_6666);
            let mut out = Vec::new();
            let (t, v) = trace(&mut rng, &areas, 3000);
            out.extend(run_accesses(k, mode, p, &t, &v));
            let c = k.fork(p).unwrap();
            let g = k.fork(c).unwrap();
            let mut pids = vec![p, c, g];
            for round in 0..6 {
                // The processes take turns, each a batch (the hot process changes at
                // every call), over the same copy-on-write pages.
                for &q in &pids {
                    let (t, v) = trace(&mut rng, &areas, 700);
                    out.extend(run_accesses(k, mode, q, &t, &v));
                }
                out.extend(snapshot(k, &pids, &areas));
                if round == 3 {
                    k.exit(c).unwrap();
                    pids.retain(|&q| q != c);
                }
            }
            out.extend(tlb_probe(k, &pids, &areas));
            assert!(k.stats().cow_faults > 0);
            out
        },
    );
}

#[test]
fn a_shared_file_also_read_and_written_with_syscalls_matches_one_by_one() {
    compare(
        "pread/pwrite",
        || MachineConfig::with_ram(32 << 20),
        |k, dir, mode| {
            let (p, areas) = plain_setup(k, dir);
            let fd = k.open(p, dir.join("data.bin"), O_RDWR, 0).unwrap();
            let mut rng = Rng(0x5151_5151_a2a2_a2a2);
            let mut out = Vec::new();
            for _ in 0..10 {
                let (t, v) = trace(&mut rng, &areas[1..2], 800);
                out.extend(run_accesses(k, mode, p, &t, &v));
                let off = rng.below(24 * PAGE - 300) as i64;
                out.push(format!("{:?}", k.pread(p, fd, 300, off)));
                let data: Vec<u8> = (0..200).map(|_| rng.next() as u8).collect();
                let off = rng.below(24 * PAGE - 200) as i64;
                out.push(format!("{:?}", k.pwrite(p, fd, &data, off)));
                out.extend(snapshot(k, &[p], &areas));
            }
            k.msync(p, VirtAddr(0x2000_0000), 24 * PAGE, MS_SYNC)
                .unwrap();
            out.push(format!(
                "{:?}",
                std::fs::read(dir.join("data.bin")).unwrap()
            ));
            out.extend(tlb_probe(k, &[p], &areas));
            out
        },
    );
}

#[test]
fn a_timer_read_in_a_batch_counts_as_one_by_one() {
    compare(
        "timer",
        || MachineConfig::with_ram(32 << 20),
        |k, dir, mode| {
            let (p, mut areas) = plain_setup(k, dir);
            let dev = k.open(p, "/dev/vmem/timer", O_RDWR, 0).unwrap();
            k.mmap(
                p,
                VirtAddr(0x7000_0000),
                PAGE,
                RW,
                MAP_SHARED | MAP_FIXED,
                dev,
                0,
            )
            .unwrap();
            areas.push(Area {
                base: 0x7000_0000,
                pages: 1,
                device: true,
            });
            let mut rng = Rng(0x7171_0000_ffff_1234);
            let mut out = Vec::new();
            for _ in 0..5 {
                let (t, v) = trace(&mut rng, &areas, 2000);
                // Small steps, so that the counts stay readable.
                let v: Vec<u64> = v.iter().map(|x| x % 5).collect();
                out.extend(run_accesses(k, mode, p, &t, &v));
                out.extend(snapshot(k, &[p], &areas[..3]));
            }
            // The timer counted in the batches.
            assert!(out
                .iter()
                .any(|l| l.contains("0x70000000, access: Read") && l.ends_with("Ok(3)")));
            out
        },
    );
}

#[test]
fn a_store_then_a_load_of_the_same_bytes_in_one_block_for_every_size() {
    compare(
        "store then load",
        || MachineConfig::with_ram(32 << 20),
        |k, dir, mode| {
            let (p, areas) = plain_setup(k, dir);
            let mut out = Vec::new();
            let mut rng = Rng(0x0123_4567_89ab_cdef);
            for size in 0..=255u8 {
                let mut t = Vec::new();
                // In the anonymous area (RWX), in the shared file; at the start of a page,
                // in its middle, and ending at its last byte.
                for base in [0x1000_0000u64, 0x2000_0000] {
                    let page = base + u64::from(size % 8) * PAGE;
                    for va in [page, page + 1000, page + PAGE - u64::from(size.max(1))] {
                        let va = VirtAddr(va);
                        for access in [
                            Access::Write,
                            Access::Read,
                            Access::Exec,
                            Access::Write,
                            Access::Read,
                        ] {
                            t.push(TraceAccess { va, access, size });
                        }
                    }
                }
                let v: Vec<u64> = t.iter().map(|_| rng.next()).collect();
                out.extend(run_accesses(k, mode, p, &t, &v));
            }
            out.extend(snapshot(k, &[p], &areas));
            out.extend(tlb_probe(k, &[p], &areas));
            out
        },
    );
}

#[test]
fn pids_that_are_not_alive_match_one_by_one() {
    compare(
        "dead pids",
        || MachineConfig::with_ram(32 << 20),
        |k, dir, mode| {
            let (p, areas) = plain_setup(k, dir);
            let q = k.fork(p).unwrap();
            let mut rng = Rng(0xdead_0000_0000_beef);
            let mut out = Vec::new();
            let (t, v) = trace(&mut rng, &areas, 500);
            out.extend(run_accesses(k, mode, q, &t, &v));
            k.exit(q).unwrap();
            for pid in [q, Pid(0), Pid(77), p] {
                let (t, v) = trace(&mut rng, &areas, 300);
                out.extend(run_accesses(k, mode, pid, &t, &v));
            }
            out.extend(snapshot(k, &[p], &areas));
            out.extend(tlb_probe(k, &[p], &areas));
            out
        },
    );
}

#[test]
fn an_address_with_its_top_bits_set_is_sigsegv_not_the_page_below_it() {
    // 0x1000_0000 is mapped, and its translation is in the TLB; the same address with
    // any of bits 60..63 set is not a user address on any geometry.
    for geometry in [PagingGeometry::X86_64_4LEVEL, PagingGeometry::X86_64_5LEVEL] {
        let mut k = Kernel::new(MachineConfig {
            ram_bytes: 16 << 20,
            geometry,
            ..MachineConfig::default()
        });
        let p = k.spawn().unwrap();
        k.mmap(p, VirtAddr(0x1000_0000), PAGE, RW, ANON, -1, 0)
            .unwrap();
        k.store_u64(p, VirtAddr(0x1000_0000), 42).unwrap();
        for top in [1u64 << 60, 0xf << 60] {
            let va = VirtAddr(top | 0x1000_0000);
            let segv = Signal::Segv {
                addr: va,
                code: vmem::SegvCode::MapErr,
            };
            assert_eq!(k.load_u64(p, va), Err(segv), "{va}");
            assert_eq!(k.load(p, va, &mut [0; 8]), Err(segv), "{va}");
            assert_eq!(k.store_u64(p, va, 7), Err(segv), "{va}");
            let t = [TraceAccess {
                va,
                access: Access::Read,
                size: 8,
            }];
            assert_eq!(k.access_batch(p, &t, &mut [0]), Err((0, segv)), "{va}");
        }
        assert_eq!(
            k.load_u64(p, VirtAddr(0x1000_0000)),
            Ok(42),
            "not stored over"
        );
    }
}

#[test]
fn the_process_with_the_last_asid_gets_sigsegv_at_the_last_page_number() {
    // ASIDs are handed out in order: after 65534 processes, the next one has 0xffff.
    let mut k = Kernel::new(MachineConfig::with_ram(16 << 20));
    for _ in 1..0xffff {
        let q = k.spawn().unwrap();
        k.exit(q).unwrap();
    }
    let p = k.spawn().unwrap();
    // The page number of all 48 ones, in an empty TLB.
    let va = VirtAddr(0x0fff_ffff_ffff_f000);
    let segv = Signal::Segv {
        addr: va,
        code: vmem::SegvCode::MapErr,
    };
    assert_eq!(k.load_u64(p, va), Err(segv));
    assert_eq!(k.load(p, va, &mut [0; 8]), Err(segv));
    let t = [TraceAccess {
        va,
        access: Access::Read,
        size: 8,
    }];
    assert_eq!(k.access_batch(p, &t, &mut [0]), Err((0, segv)));
}

#[test]
fn a_zero_byte_access_by_a_pid_that_is_not_alive_touches_nothing() {
    let mut k = Kernel::new(MachineConfig::with_ram(16 << 20));
    let p = k.spawn().unwrap();
    let q = k.spawn().unwrap();
    k.exit(q).unwrap();
    let va = VirtAddr(0x1000_0000);
    for pid in [q, Pid(0), Pid(77)] {
        // As for a live process: no byte, no translation, no signal.
        assert_eq!(k.load(pid, va, &mut []), Ok(()));
        assert_eq!(k.fetch(pid, va, &mut []), Ok(()));
        assert_eq!(k.store(pid, va, &[]), Ok(()));
        let t = [Access::Read, Access::Write, Access::Exec].map(|access| TraceAccess {
            va,
            access,
            size: 0,
        });
        assert_eq!(k.access_batch(pid, &t, &mut [1, 2, 3]), Ok(()));
        // One byte is a SIGSEGV.
        assert!(matches!(
            k.load(pid, va, &mut [0]),
            Err(Signal::Segv { .. })
        ));
    }
    assert_eq!(k.load(p, va, &mut []), Ok(()));
}
