//! A fixed workload for instruction-count profiling of the hot paths (used with
//! `valgrind --tool=callgrind`): TLB-hit loads and stores in a resident 64 KiB region.
//! `cargo run --release -p vmem --example hot_loads -- [N] [REGION_KIB]`

use vmem::consts::*;
use vmem::{Kernel, MachineConfig, VirtAddr};

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // Region size in KiB: 64 (TLB hits) by default; e.g. 65536 for page walks.
    let kib: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let len = kib << 10;
    let mut k = Kernel::new(MachineConfig::with_ram(len + len / 8 + (16 << 20)));
    let p = k.spawn().expect("spawn");
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
            -1,
            0,
        )
        .expect("mmap");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut sum = 0u64;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = va.add((x % (len / 8)) * 8);
        if i % 4 == 0 {
            k.store_u64(p, a, i).expect("store");
        } else {
            sum = sum.wrapping_add(k.load_u64(p, a).expect("load"));
        }
    }
    println!("{sum}");
}
