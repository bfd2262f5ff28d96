//! An access counts the same whether anyone watches or not: with no observer, loads and
//! stores take a short path (TLB hit: one compare, counts kept aside per process; TLB
//! miss: straight to the walk), which must leave every counter, every value read and
//! every signal exactly as the full path does when an observer is set.

mod common;

use common::Rng;
use vmem::consts::*;
use vmem::events::Recorder;
use vmem::{Kernel, MachineConfig, Pid, Signal, VirtAddr, PAGE_SIZE};

/// Runs one fixed workload on `k`; returns everything it observed.
fn workload(k: &mut Kernel) -> Vec<String> {
    let mut seen = Vec::new();
    let a = k.spawn().unwrap();
    let b = k.spawn().unwrap();
    let map = |k: &mut Kernel, p: Pid, prot: i32| {
        k.mmap(
            p,
            VirtAddr(0),
            64 * PAGE_SIZE,
            prot,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap()
    };
    let va = map(k, a, PROT_READ | PROT_WRITE);
    let vb = map(k, b, PROT_READ | PROT_WRITE);
    let ro = map(k, b, PROT_READ);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..3000u64 {
        let x = rng.next();
        let (p, base) = if (x >> 20) % 3 == 0 { (b, vb) } else { (a, va) };
        // Any alignment, so some accesses cross a page boundary.
        let at = base.add(x % (64 * PAGE_SIZE - 8));
        let r = match (x >> 8) % 8 {
            0 => k.store_u64(p, at, i).map(|_| 0),
            1 => k.store_u8(p, at, i as u8).map(|_| 0),
            2 => k.store_u32(p, at, i as u32).map(|_| 0),
            3 => k.load_u16(p, at).map(u64::from),
            4 => k.load_u32(p, at).map(u64::from),
            5 => k.load_u8(p, at).map(u64::from),
            // A store to a read-only mapping: SIGSEGV (ACCERR), after a read fault.
            6 if i % 50 == 0 => k.store_u64(b, ro.add(x % PAGE_SIZE), 1).map(|_| 0),
            _ => k.load_u64(p, at),
        };
        seen.push(format!("{r:?}"));
        if i % 500 == 0 {
            seen.push(format!("{:?}", k.process_stats(a)));
            seen.push(format!("{:?}", k.process_stats(b)));
            seen.push(format!("{:?}", k.stats()));
        }
        if i == 2000 {
            k.exit(a).unwrap();
            seen.push(format!("{:?}", k.stats()));
            // A process that is gone has no mappings at all.
            let gone = k.load_u64(a, va);
            assert!(matches!(gone, Err(Signal::Segv { .. })), "{gone:?}");
            seen.push(format!("{gone:?}"));
        }
    }
    seen.push(format!("{:?}", k.process_stats(b)));
    k.exit(b).unwrap();
    seen.push(format!("{:?}", k.stats()));
    seen
}

/// The unwatched and watched runs' records are the same: the first differing record is
/// named (before the lengths are compared, so a missing record shows where it went).
fn assert_same<T: PartialEq + std::fmt::Debug>(u: &[T], w: &[T], what: &str) {
    for (i, (u, w)) in u.iter().zip(w).enumerate() {
        assert_eq!(u, w, "{what} record {i}");
    }
    assert_eq!(u.len(), w.len(), "{what}: records");
}

#[test]
fn counters_values_and_signals_match_with_and_without_an_observer() {
    let cfg = || MachineConfig::with_ram(8 << 20);
    let mut unwatched = Kernel::new(cfg());
    let mut watched = Kernel::new(cfg());
    watched.set_observer(Some(Box::new(Recorder::default())));
    let u = workload(&mut unwatched);
    let w = workload(&mut watched);
    assert_same(&u, &w, "");
    // The workload did take both paths and faulted.
    let s = unwatched.stats();
    assert!(
        s.tlb_hits > 1000 && s.tlb_misses > 100 && s.minor_faults > 64,
        "{s:?}"
    );
    assert!(s.signals > 0, "{s:?}");
}

/// Random loads and stores over huge and small pages of two processes; returns the
/// values, counters, and every page-table entry's bits (Accessed and Dirty included).
/// (With 4 KiB pages and 2 MiB huge PMDs: the x86-64 machine of the default build.)
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
fn table_bits_workload(k: &mut Kernel) -> Vec<String> {
    let mut seen = Vec::new();
    let a = k.spawn().unwrap();
    let len = 8 << 20;
    let va = k
        .mmap(
            a,
            VirtAddr(0),
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    // Half of it in huge pages (those 2 MiB-aligned), the rest in 4 KiB pages.
    k.madvise(a, va, len / 2, MADV_HUGEPAGE).unwrap();
    let b = k.fork(a).unwrap();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for i in 0..20_000u64 {
        let x = rng.next();
        let p = if (x >> 50) % 4 == 0 { b } else { a };
        let at = va.add((x % (len / 8)) * 8);
        let r = if (x >> 40) % 3 == 0 {
            k.store_u64(p, at, i).map(|_| 0)
        } else {
            k.load_u64(p, at)
        };
        seen.push(format!("{r:?}"));
    }
    for p in [a, b] {
        seen.push(format!("{:?}", k.process_stats(p)));
        for pg in 0..len / PAGE_SIZE {
            let at = va.add(pg * PAGE_SIZE);
            seen.push(format!("{:?} {:?}", k.pte_of(p, at), k.pmd_of(p, at)));
        }
    }
    seen
}

#[test]
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
fn page_table_bits_match_with_and_without_an_observer() {
    let cfg = || MachineConfig::with_ram(64 << 20);
    let mut unwatched = Kernel::new(cfg());
    let mut watched = Kernel::new(cfg());
    watched.set_observer(Some(Box::new(Recorder::default())));
    let u = table_bits_workload(&mut unwatched);
    let w = table_bits_workload(&mut watched);
    assert_same(&u, &w, "");
    let s = unwatched.stats();
    assert!(s.tlb_misses > 1000 && s.cow_faults > 0, "{s:?}");
    // Some of the area is mapped by huge PMDs.
    let huge = u.iter().filter(|l| l.contains("2 MiB page")).count();
    assert!(huge > 0, "no huge PMD in the tables");
}

/// Loads, stores and `pread`s by a process and its child over file mappings of every
/// kind: shared and private, executable, MADV_RANDOM and MADV_SEQUENTIAL, longer than the
/// file, of a file partly read with read() (so that some pages carry read-ahead marks)
/// and of one grown past a partial last page (so that page is cached but not up to
/// date), then shrunk mid-run; plus shared anonymous memory and a MADV_DONTNEED.
/// Returns the values, the signals, the counters, the resident pages, every page's entry,
/// the frames in use and the cached pages.
fn file_workload(k: &mut Kernel, dir: &std::path::Path, seed: u64) -> Vec<String> {
    const PAGES: u64 = 80;
    let mut seen = Vec::new();
    let make = |name: &str, len: u64| {
        let path = dir.join(name);
        let data: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
        std::fs::write(&path, data).unwrap();
        path
    };
    let paths = [
        make("read.bin", PAGES * PAGE_SIZE - 100),
        make("grown.bin", PAGES / 2 * PAGE_SIZE + 300),
    ];
    let a = k.spawn().unwrap();
    let fd = k.open(a, &paths[0], O_RDWR, 0).unwrap();
    // Part of the first file through read(), 3 pages at a time: windows and marks.
    for _ in 0..9 {
        k.read(a, fd, 3 * PAGE_SIZE as usize).unwrap();
    }
    let grown = k.open(a, &paths[1], O_RDWR, 0).unwrap();
    k.ftruncate(a, grown, (PAGES * PAGE_SIZE) as i64).unwrap();
    let len = PAGES * PAGE_SIZE;
    let rw = PROT_READ | PROT_WRITE;
    let anon_shared = MAP_SHARED | MAP_ANONYMOUS;
    let maps = [
        k.mmap(a, VirtAddr(0), len, rw, MAP_SHARED, fd, 0).unwrap(),
        k.mmap(
            a,
            VirtAddr(0),
            len,
            PROT_READ | PROT_EXEC,
            MAP_PRIVATE,
            fd,
            0,
        )
        .unwrap(),
        k.mmap(a, VirtAddr(0), len, rw, MAP_PRIVATE, grown, 0)
            .unwrap(),
        k.mmap(a, VirtAddr(0), len, PROT_READ, MAP_SHARED, grown, 0)
            .unwrap(),
        k.mmap(
            a,
            VirtAddr(0),
            len + 4 * PAGE_SIZE,
            PROT_READ,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap(),
        k.mmap(a, VirtAddr(0), len, rw, anon_shared, -1, 0).unwrap(),
    ];
    k.madvise(a, maps[1], len, MADV_RANDOM).unwrap();
    k.madvise(a, maps[3], len, MADV_SEQUENTIAL).unwrap();
    let b = k.fork(a).unwrap();
    let mut rng = Rng(seed);
    for i in 0..6000u64 {
        let x = rng.next();
        let which = (x >> 60) as usize % maps.len();
        let p = if (x >> 40) % 3 == 0 { b } else { a };
        let span = if which == 4 { PAGES + 4 } else { PAGES };
        // Mostly in address order (runs of faults, fault-around, read-ahead marks), some
        // anywhere.
        let pg = if x % 4 == 0 {
            (x >> 8) % span
        } else {
            (i / 8) % span
        };
        let at = maps[which].add(pg * PAGE_SIZE + (x >> 20) % (PAGE_SIZE - 8));
        let r = match (x >> 12) % 5 {
            0 => format!("{:?}", k.store_u64(p, at, i)),
            1 => format!("{:?}", k.load_u8(p, at)),
            2 if i % 7 == 0 => {
                let off = ((x >> 3) % len) as i64;
                format!("{:?}", k.pread(p, fd, 5 * PAGE_SIZE as usize, off))
            }
            _ => format!("{:?}", k.load_u64(p, at)),
        };
        seen.push(format!("{i} {r}"));
        if i == 2500 {
            // Shrink the grown file mid-page: its pages past the end raise SIGBUS.
            k.ftruncate(a, grown, (PAGES / 3 * PAGE_SIZE + 77) as i64)
                .unwrap();
        }
        if i == 4000 {
            k.madvise(a, maps[0], len, MADV_DONTNEED).unwrap();
        }
        if i % 250 == 0 {
            for q in [a, b] {
                seen.push(format!("{:?}", k.process_stats(q)));
                let mm = k.mm(q).unwrap();
                seen.push(format!("rss file {} anon {}", mm.rss_file, mm.rss_anon));
            }
        }
    }
    for q in [a, b] {
        for m in maps {
            for pg in 0..PAGES + 4 {
                seen.push(format!("{:?}", k.pte_of(q, m.add(pg * PAGE_SIZE))));
            }
        }
    }
    seen.push(format!("frames in use {}", k.frames_in_use()));
    k.exit(b).unwrap();
    k.exit(a).unwrap();
    seen.push(format!("{:?}", k.stats()));
    seen.push(format!("frames in use {}", k.frames_in_use()));
    for p in &paths {
        seen.push(format!("{} cached pages", k.cached_pages(p)));
    }
    seen
}

/// The machines the file workload runs on: in the 4 KiB build every paging geometry,
/// tight RAM with swap, THP always and a 2-page fault-around window; in the 16 and
/// 64 KiB builds, their own default machine.
fn file_machines() -> Vec<MachineConfig> {
    let base = MachineConfig::with_ram((80 * PAGE_SIZE * 8).max(8 << 20));
    #[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
    {
        use vmem::config::ThpMode;
        use vmem::PagingGeometry;
        let mut v: Vec<MachineConfig> = [
            PagingGeometry::X86_64_4LEVEL,
            PagingGeometry::X86_64_5LEVEL,
            PagingGeometry::I386,
            PagingGeometry::SV39,
            PagingGeometry::ARM64_4K,
        ]
        .into_iter()
        .map(|geometry| MachineConfig {
            geometry,
            ..base.clone()
        })
        .collect();
        v.push(MachineConfig {
            swap_bytes: 4 << 20,
            ..MachineConfig::with_ram(2 << 20)
        });
        v.push(MachineConfig {
            thp: ThpMode::Always,
            ..MachineConfig::with_ram(16 << 20)
        });
        v.push(MachineConfig {
            fault_around_pages: 2,
            read_around_pages: 4,
            ..base
        });
        v
    }
    #[cfg(any(feature = "page-16k", feature = "page-64k"))]
    vec![base]
}

#[test]
fn file_mappings_count_the_same_with_and_without_an_observer() {
    let mut first = None;
    for (m, cfg) in file_machines().into_iter().enumerate() {
        for seed in [0x9e37_79b9_7f4a_7c15u64, 0x2545_f491_4f6c_dd1d, 12345] {
            let (du, dw) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let mut unwatched = Kernel::new(cfg.clone());
            let mut watched = Kernel::new(cfg.clone());
            watched.set_observer(Some(Box::new(Recorder::default())));
            let u = file_workload(&mut unwatched, du.path(), seed);
            let w = file_workload(&mut watched, dw.path(), seed);
            let what = format!("machine {m} ({:?}) seed {seed:#x}", cfg.geometry);
            assert_same(&u, &w, &what);
            first.get_or_insert(unwatched.stats());
        }
    }
    // On the first machine and seed the workload reached what it is for: faults on cached
    // pages (mapped around them where the window has more than one page), read-ahead,
    // major faults, copy-on-write, and signals (past the end of the file).
    let s = first.unwrap();
    let around_ok = PAGE_SIZE >= 64 << 10 || s.fault_around_pages > 100;
    assert!(
        around_ok
            && s.minor_faults > 10
            && s.major_faults > 0
            && s.cache_hits > 10
            && s.readahead_pages > 0
            && s.cow_faults > 0
            && s.signals > 0,
        "{s:?}"
    );
}
