//! `Kernel::access_batch` runs a trace's accesses in blocks (translations first, then the
//! data), and must be indistinguishable from `load`/`store`/`fetch` called one by one:
//! the same values, the same signals at the same accesses, the same counters, page-table
//! bits, file contents on disk and device output. Mixed loads, stores and fetches of
//! every size, in anonymous, shared-file, private-file, read-only, PROT_NONE and
//! executable areas, holes, past end of file, a device's registers, across page
//! boundaries, under memory pressure with swap, and with a second process in between.
// Sizes and addresses are written for 4 KiB pages.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::consts::*;
use vmem::{Access, Kernel, MachineConfig, Pid, Signal, TraceAccess, VirtAddr, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE;
const ANON: u64 = 0x1000_0000;
const SHARED: u64 = 0x2000_0000;
const PRIVATE: u64 = 0x3000_0000;
const RDONLY: u64 = 0x4000_0000;
const NONE: u64 = 0x5000_0000;
const TEXT: u64 = 0x6000_0000;
const DEVICE: u64 = 0x7000_0000;
const FILE_PAGES: u64 = 40;

mod common;
use common::{batched, one_by_one as single, Rng};

/// The areas: (base, pages mapped, pages tried: more than mapped reaches a hole or EOF).
const AREAS: [(u64, u64, u64); 7] = [
    (ANON, 300, 310),
    (SHARED, 48, 48), // 40 pages of file: the last 8 are past EOF
    (PRIVATE, 40, 40),
    (RDONLY, 16, 16),
    (NONE, 4, 4),
    (TEXT, 8, 8),
    (DEVICE, 1, 1),
];

fn setup(k: &mut Kernel, dir: &std::path::Path) -> (Pid, Pid) {
    let path = dir.join("data.bin");
    let bytes: Vec<u8> = (0..FILE_PAGES * PAGE)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&path, bytes).unwrap();
    let p = k.spawn().unwrap();
    let q = k.spawn().unwrap();
    let rw = PROT_READ | PROT_WRITE;
    let fixed = MAP_FIXED;
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let anon = MAP_PRIVATE | MAP_ANONYMOUS | fixed;
    k.mmap(p, VirtAddr(ANON), 300 * PAGE, rw, anon, -1, 0)
        .unwrap();
    k.mmap(
        p,
        VirtAddr(SHARED),
        48 * PAGE,
        rw,
        MAP_SHARED | fixed,
        fd,
        0,
    )
    .unwrap();
    k.mmap(
        p,
        VirtAddr(PRIVATE),
        40 * PAGE,
        rw,
        MAP_PRIVATE | fixed,
        fd,
        0,
    )
    .unwrap();
    k.mmap(
        p,
        VirtAddr(RDONLY),
        16 * PAGE,
        PROT_READ,
        MAP_PRIVATE | fixed,
        fd,
        0,
    )
    .unwrap();
    k.mmap(p, VirtAddr(NONE), 4 * PAGE, PROT_NONE, anon, -1, 0)
        .unwrap();
    k.mmap(
        p,
        VirtAddr(TEXT),
        8 * PAGE,
        PROT_READ | PROT_EXEC,
        MAP_PRIVATE | fixed,
        fd,
        0,
    )
    .unwrap();
    let dev = k.open(p, "/dev/vmem/console", O_RDWR, 0).unwrap();
    k.mmap(p, VirtAddr(DEVICE), PAGE, rw, MAP_SHARED | fixed, dev, 0)
        .unwrap();
    k.mmap(q, VirtAddr(ANON), 64 * PAGE, rw, anon, -1, 0)
        .unwrap();
    (p, q)
}

/// A random trace: mostly runs within an area, some anywhere, every size.
fn trace(seed: u64, n: usize) -> Vec<TraceAccess> {
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(n);
    let mut area = AREAS[0];
    for _ in 0..n {
        if rng.next() % 16 == 0 {
            area = AREAS[(rng.next() % AREAS.len() as u64) as usize];
        }
        let (base, _, tried) = area;
        let size = match rng.next() % 10 {
            0 => 1,
            1 => 2,
            2 => 4,
            3 => 16,
            4 => 32,
            5 => 64,
            6 => (rng.next() % 100) as u8, // 0 and sizes over the block path's 64 too
            _ => 8,
        };
        let off = if rng.next() % 8 == 0 {
            // Near the end of a page: some accesses cross it.
            (rng.next() % tried) * PAGE + PAGE - u64::from(size.max(1)) + rng.next() % 4
        } else {
            (rng.next() % (tried * PAGE - 64)) & !7
        };
        let access = match rng.next() % 8 {
            0..=3 => Access::Read,
            4..=6 => Access::Write,
            _ => Access::Exec,
        };
        let off = if base == DEVICE { (off % 24) & !7 } else { off };
        out.push(TraceAccess {
            va: VirtAddr(base + off),
            access,
            size,
        });
    }
    out
}

/// Runs the trace in chunks (with the other process touching memory between chunks)
/// and returns everything observable afterwards.
fn run(cfg: MachineConfig, seed: u64, batch: bool) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut k = Kernel::new(cfg);
    let (p, q) = setup(&mut k, dir.path());
    let t = trace(seed, 30_000);
    let mut rng = Rng(seed ^ 0xabcdef);
    let values: Vec<u64> = (0..t.len()).map(|_| rng.next()).collect();
    let mut out = Vec::new();
    for (c, (chunk, vals)) in t.chunks(3000).zip(values.chunks(3000)).enumerate() {
        let seen = if batch {
            batched(&mut k, p, chunk, vals)
        } else {
            single(&mut k, p, chunk, vals)
        };
        out.extend(seen.iter().map(|s| format!("{s:?}")));
        k.store_u64(q, VirtAddr(ANON + c as u64 * PAGE), c as u64)
            .unwrap();
        if c == 5 {
            k.mprotect(p, VirtAddr(ANON), 8 * PAGE, PROT_READ).unwrap();
        }
        if c == 7 {
            k.munmap(p, VirtAddr(PRIVATE + 4 * PAGE), 2 * PAGE).unwrap();
        }
    }
    out.push(format!("{:?}", k.process_stats(p)));
    out.push(format!("{:?}", k.process_stats(q)));
    for &(base, _, tried) in &AREAS {
        for pg in 0..tried {
            let va = VirtAddr(base + pg * PAGE);
            out.push(format!("{va} {:?} {:?}", k.pte_of(p, va), k.pmd_of(p, va)));
        }
    }
    out.push(format!("{:?}", k.console_output()));
    k.msync(p, VirtAddr(SHARED), FILE_PAGES * PAGE, MS_SYNC)
        .unwrap();
    let disk = std::fs::read(dir.path().join("data.bin")).unwrap();
    out.push(format!("{:?}", disk));
    out
}

fn compare(cfg: impl Fn() -> MachineConfig, seed: u64) {
    let one = run(cfg(), seed, false);
    let many = run(cfg(), seed, true);
    assert_eq!(one.len(), many.len());
    for (i, (a, b)) in one.iter().zip(&many).enumerate() {
        assert_eq!(a, b, "record {i}, seed {seed:#x}");
    }
    // The trace saw values, both signals, and device output.
    let has = |s: &str| one.iter().any(|l| l.contains(s));
    assert!(has("MapErr") && has("AccErr") && has("Bus {"), "signals");
    assert!(
        one.iter()
            .filter(|l| l.starts_with("Ok(") && *l != "Ok(0)")
            .count()
            > 1000
    );
    assert!(
        one.iter().any(|l| l.starts_with('[') && l.len() > 10),
        "console output"
    );
}

#[test]
fn batches_match_single_accesses_with_plenty_of_ram() {
    for seed in [0x9e37_79b9_7f4a_7c15, 0x1234_5678_9abc_def1] {
        compare(|| MachineConfig::with_ram(64 << 20), seed);
    }
}

#[test]
fn batches_match_single_accesses_under_memory_pressure_with_swap() {
    compare(
        || MachineConfig {
            ram_bytes: 160 * PAGE,
            swap_bytes: 4 << 20,
            ..MachineConfig::default()
        },
        0x5555_aaaa_0f0f_f0f0,
    );
}

#[test]
fn a_batch_stops_at_the_signal_and_leaves_the_rest_undone() {
    let dir = tempfile::tempdir().unwrap();
    let mut k = Kernel::new(MachineConfig::with_ram(16 << 20));
    let (p, _) = setup(&mut k, dir.path());
    let st = |va: u64| TraceAccess {
        va: VirtAddr(va),
        access: Access::Write,
        size: 8,
    };
    let t = [st(ANON), st(ANON + 8), st(RDONLY), st(ANON + 16)];
    let mut vals = [1, 2, 3, 4];
    let err = k.access_batch(p, &t, &mut vals).unwrap_err();
    assert_eq!(err.0, 2);
    assert!(matches!(err.1, Signal::Segv { .. }), "{err:?}");
    assert_eq!(k.load_u64(p, VirtAddr(ANON)).unwrap(), 1);
    assert_eq!(k.load_u64(p, VirtAddr(ANON + 8)).unwrap(), 2);
    assert_eq!(k.load_u64(p, VirtAddr(ANON + 16)).unwrap(), 0, "not run");
    // A batch of loads gives the values stored.
    let ld = |va: u64| TraceAccess {
        va: VirtAddr(va),
        access: Access::Read,
        size: 8,
    };
    let mut out = [0; 2];
    k.access_batch(p, &[ld(ANON + 8), ld(ANON)], &mut out)
        .unwrap();
    assert_eq!(out, [2, 1]);
}
