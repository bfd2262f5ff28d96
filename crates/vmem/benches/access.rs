//! Micro-benchmarks of the emulated machine's hot paths: a TLB-hit load, a load that
//! needs a page walk, an anonymous first-touch fault, and a file read fault served from
//! the page cache. Run with `cargo bench -p vmem`. The side-by-side comparison with the
//! real hardware and kernel is `vmem bench` (issue #8); these track regressions.

use divan::Bencher;
use vmem::consts::*;
use vmem::{Kernel, MachineConfig, Pid, VirtAddr};

fn main() {
    divan::main();
}

/// A tiny xorshift so the benchmark needs no RNG crate.
fn addrs(base: VirtAddr, bytes: u64, n: usize) -> Vec<VirtAddr> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            base.add((x % (bytes / 8)) * 8)
        })
        .collect()
}

fn resident_anon(ram: u64, bytes: u64) -> (Kernel, Pid, VirtAddr) {
    let mut k = Kernel::new(MachineConfig::with_ram(ram));
    let p = k.spawn().unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            bytes,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
            -1,
            0,
        )
        .unwrap();
    (k, p, va)
}

/// Random u64 loads in a resident 64 KiB region: every translation hits the TLB.
#[divan::bench]
fn load_u64_tlb_hit(b: Bencher) {
    let (mut k, p, va) = resident_anon(64 << 20, 64 << 10);
    let a = addrs(va, 64 << 10, 4096);
    b.counter(divan::counter::ItemsCount::new(a.len()))
        .bench_local(|| {
            let mut s = 0u64;
            for &x in &a {
                s = s.wrapping_add(k.load_u64(p, x).unwrap());
            }
            s
        });
}

/// Random u64 loads over a resident 64 MiB region: nearly every load misses the TLB and
/// walks four levels of tables.
#[divan::bench]
fn load_u64_page_walk(b: Bencher) {
    let (mut k, p, va) = resident_anon(128 << 20, 64 << 20);
    let a = addrs(va, 64 << 20, 4096);
    b.counter(divan::counter::ItemsCount::new(a.len()))
        .bench_local(|| {
            let mut s = 0u64;
            for &x in &a {
                s = s.wrapping_add(k.load_u64(p, x).unwrap());
            }
            s
        });
}

const FAULT_PAGES: u64 = 1024;

/// First write to each page of fresh anonymous memory: one zero-fill fault per page.
#[divan::bench]
fn anon_write_fault(b: Bencher) {
    b.counter(divan::counter::ItemsCount::new(FAULT_PAGES as usize))
        .with_inputs(|| {
            let mut k = Kernel::new(MachineConfig {
                prefault_ram: true,
                ..MachineConfig::with_ram(16 << 20)
            });
            let p = k.spawn().unwrap();
            let va = k
                .mmap(
                    p,
                    VirtAddr(0),
                    FAULT_PAGES * 4096,
                    PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS,
                    -1,
                    0,
                )
                .unwrap();
            (k, p, va)
        })
        .bench_local_values(|(mut k, p, va)| {
            for i in 0..FAULT_PAGES {
                k.store_u64(p, va.add(i * 4096), i).unwrap();
            }
            k
        });
}

/// Read faults over a file that is already in the page cache (fault-around maps 16 pages
/// per fault).
#[divan::bench]
fn file_read_fault_cached(b: Bencher) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; (FAULT_PAGES * 4096) as usize]).unwrap();
    let mut k = Kernel::new(MachineConfig::with_ram(64 << 20));
    let warm = k.spawn().unwrap();
    let fd = k.open(warm, &path, O_RDONLY, 0).unwrap();
    k.read(warm, fd, (FAULT_PAGES * 4096) as usize).unwrap();
    b.counter(divan::counter::ItemsCount::new(FAULT_PAGES as usize))
        .bench_local(|| {
            let p = k.spawn().unwrap();
            let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
            let va = k
                .mmap(
                    p,
                    VirtAddr(0),
                    FAULT_PAGES * 4096,
                    PROT_READ,
                    MAP_SHARED,
                    fd,
                    0,
                )
                .unwrap();
            let mut s = 0u64;
            for i in 0..FAULT_PAGES {
                s += k.load_u8(p, va.add(i * 4096)).unwrap() as u64;
            }
            k.exit(p).unwrap();
            s
        });
}
