//! The model's side of each `vmem bench` row as a fixed workload for instruction counting
//! (`valgrind --tool=callgrind --toggle-collect='*measured*'`): only the function
//! `measured` is counted, so the total divided by N is instructions per operation.
//!
//! `cargo run --release -p vmem --example bench_paths -- MODE [N] [REPS]`
//!
//! - `hit`:  N random u64 loads in a resident 1 MiB region (TLB hits), REPS times.
//! - `walk`: N random u64 loads in a resident 256 MiB region (TLB misses, page walks),
//!   REPS times (with TIME set, later reps show the warm figure `vmem bench` reports);
//!   WALK_MIB sets another region size (4 MiB: the walks' data stays in the host's caches);
//!   with BATCH set, the loads run as one `Kernel::access_batch` (as `vmem replay` runs them).
//! - `anon`: first store to each of N pages of a fresh anonymous mapping (zero-fill
//!   faults), REPS times (mapped and unmapped around each rep, not counted).
//! - `file`: one byte loaded per page of N pages of a MAP_SHARED mapping of a file that is
//!   in the page cache (read faults with fault-around), REPS times.
//! - `scan`: `Kernel::load` in 1 MiB chunks over the same mapping of N pages, REPS times.

use std::hint::black_box;
use vmem::consts::*;
use vmem::{Kernel, MachineConfig, Pid, TraceAccess, VirtAddr, PAGE_SIZE};

const MIB: u64 = 1 << 20;

fn boot(ram: u64) -> Kernel {
    Kernel::new(MachineConfig {
        prefault_ram: true,
        ..MachineConfig::with_ram(ram)
    })
}

fn indices(words: u64, n: u64) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % words
        })
        .collect()
}

/// Runs `f`; with TIME set, prints the time it took (seconds) to stderr.
#[inline(never)]
fn measured(f: &mut dyn FnMut()) {
    let t = std::time::Instant::now();
    f();
    if std::env::var_os("TIME").is_some() {
        eprintln!("time {:.9}", t.elapsed().as_secs_f64());
    }
}

fn loads(bytes: u64, n: u64, reps: u64) {
    let mut k = boot(bytes + bytes / 8 + 8 * MIB);
    let p = k.spawn().expect("spawn");
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
        .expect("mmap");
    let idx = indices(bytes / 8, n);
    let mut sum = 0u64;
    if std::env::var_os("BATCH").is_some() {
        let batch: Vec<TraceAccess> = idx
            .iter()
            .map(|&i| TraceAccess::read(va.add(i * 8), 8))
            .collect();
        let mut out = vec![0u64; batch.len()];
        for _ in 0..reps {
            measured(&mut || {
                k.access_batch(p, &batch, &mut out).expect("load");
                sum = out.iter().fold(sum, |s, &v| s.wrapping_add(v));
            });
        }
        black_box(sum);
        return;
    }
    for _ in 0..reps {
        measured(&mut || {
            for &i in &idx {
                sum = sum.wrapping_add(k.load_u64(p, va.add(i * 8)).expect("load"));
            }
        });
    }
    black_box(sum);
}

fn anon(pages: u64, reps: u64) {
    let bytes = pages * PAGE_SIZE;
    let mut k = boot(bytes + bytes / 8 + 8 * MIB);
    let p = k.spawn().expect("spawn");
    for _ in 0..reps {
        let va = k
            .mmap(
                p,
                VirtAddr(0),
                bytes,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
            .expect("mmap");
        measured(&mut || {
            for i in 0..pages {
                k.store_u8(p, va.add(i * PAGE_SIZE), 1).expect("store");
            }
        });
        if std::env::var_os("STATS").is_some() {
            let st = k.process_stats(p).expect("stats");
            eprintln!(
                "{:?}",
                st.fields()
                    .into_iter()
                    .filter(|f| f.1 != 0)
                    .collect::<Vec<_>>()
            );
        }
        k.munmap(p, va, bytes).expect("munmap");
    }
}

fn file(pages: u64, reps: u64) {
    file_with(pages, reps, false)
}

fn file_with(pages: u64, reps: u64, scan: bool) {
    let bytes = pages * PAGE_SIZE;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cached");
    std::fs::write(
        &path,
        (0..bytes).map(|i| (i * 7 + 1) as u8).collect::<Vec<u8>>(),
    )
    .expect("write");
    let mut k = boot(bytes + 16 * MIB);
    let warm: Pid = k.spawn().expect("spawn");
    let fd = k.open(warm, &path, O_RDONLY, 0).expect("open");
    while !k.read(warm, fd, MIB as usize).expect("read").is_empty() {}
    k.exit(warm).expect("exit");
    for _ in 0..reps {
        let p = k.spawn().expect("spawn");
        let fd = k.open(p, &path, O_RDONLY, 0).expect("open");
        let va = k
            .mmap(p, VirtAddr(0), bytes, PROT_READ, MAP_SHARED, fd, 0)
            .expect("mmap");
        let mut sum = 0u64;
        let mut buf = vec![0u8; MIB as usize];
        measured(&mut || {
            if scan {
                let mut off = 0;
                while off < bytes {
                    let n = MIB.min(bytes - off) as usize;
                    k.load(p, va.add(off), &mut buf[..n]).expect("load");
                    sum += u64::from(buf[n - 1]);
                    off += MIB;
                }
                return;
            }
            for i in 0..pages {
                sum += k.load_u8(p, va.add(i * PAGE_SIZE)).expect("load") as u64;
            }
        });
        black_box(sum);
        if std::env::var_os("STATS").is_some() {
            let st = k.process_stats(p).expect("stats");
            eprintln!(
                "{:?}",
                st.fields()
                    .into_iter()
                    .filter(|f| f.1 != 0)
                    .collect::<Vec<_>>()
            );
        }
        k.exit(p).expect("exit");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "hit".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let reps: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    match mode.as_str() {
        "hit" => loads(MIB, n, reps),
        "walk" => loads(
            std::env::var("WALK_MIB").map_or(256, |m| m.parse().expect("WALK_MIB")) * MIB,
            n,
            reps,
        ),
        "anon" => anon(n, reps),
        "file" => file(n, reps),
        "scan" => file_with(n, reps, true),
        m => {
            eprintln!("unknown mode {m}: hit, walk, anon, file or scan");
            std::process::exit(2);
        }
    }
}
