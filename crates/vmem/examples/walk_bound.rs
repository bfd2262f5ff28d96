//! How fast can *any* software page walk go on this host? The bound behind `vmem bench`'s
//! "u64 loads, 256 MiB resident (TLB misses)" row.
//!
//! A walked load is two dependent host memory reads: the leaf entry, then the data it
//! points to. Over 256 MiB both miss the host's caches (and, in a virtual machine, its
//! TLB too), so the rate depends on how many such pairs the host CPU keeps in flight at
//! once, and that depends on how many instructions sit between one pair and the next: an
//! out-of-order core only looks a few hundred instructions ahead.
//!
//! This program lays out 256 MiB of "frames" and one 8-byte "leaf entry" per frame, 512
//! entries per table frame, the tables spread among the data as the model's are. Then it
//! does random u64 loads, each one reading the entry and then the data, with `FILLER`
//! rounds of independent arithmetic (12.5 instructions each) between loads, and prints
//! loads per second for each filler. With callgrind, a load costs 33 instructions with
//! filler 0, 68 with 2, 93 with 4, 143 with 8 and 243 with 16; the model's walked load is
//! about 210 (`bench_paths walk`).
//!
//! `cargo run --release -p vmem --example walk_bound -- [MIB] [FILLER ...]`
//!
//! Instructions per load for a filler (3 x 4,000,000 loads are counted):
//! `valgrind --tool=callgrind --toggle-collect='*walked_loads*' target/release/examples/walk_bound 16 FILLER`

use std::hint::black_box;
use std::time::Instant;

const LOADS: usize = 4_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(256, |s| s.parse().expect("MIB"));
    let fillers: Vec<u64> = {
        let f: Vec<u64> = args.map(|s| s.parse().expect("FILLER")).collect();
        if f.is_empty() {
            vec![0, 2, 4, 8, 16, 32, 48]
        } else {
            f
        }
    };
    let pages = mib << 8; // 4 KiB frames
    let words = pages * 512;
    // One table frame before every 512 data frames, as a populating fault lays them out.
    let tables = pages.div_ceil(512);
    let arena_words = (pages + tables) * 512;
    let mut arena = memmap2::MmapMut::map_anon(arena_words * 8).expect("map the arena");
    // Huge pages where the host allows them, as the model's RAM arena asks.
    let _ = arena.advise(memmap2::Advice::HugePage);
    let a: &mut [u8] = &mut arena;
    for page in 0..pages {
        let frame = (page / 512) * 513 + 1 + page % 512;
        put(a, entry_at(page), ((frame as u64) << 12) | 0x67);
        put(a, frame * 512 + 7, page as u64);
    }
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let idx: Vec<usize> = (0..LOADS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % words as u64) as usize
        })
        .collect();
    println!("{mib} MiB, {LOADS} random loads, each an entry read and then a data read:");
    for &filler in &fillers {
        let mut best = f64::MAX;
        let mut sum = 0u64;
        for _ in 0..3 {
            let t = Instant::now();
            sum ^= walked_loads(a, &idx, filler);
            best = best.min(t.elapsed().as_secs_f64());
        }
        black_box(sum);
        let ns = best * 1e9 / LOADS as f64;
        println!(
            "  filler {filler:>3}: {ns:6.1} ns/load  {:6.1} M loads/s",
            1e3 / ns
        );
    }
}

/// One entry read and one data read per index, `filler` rounds of arithmetic between.
#[inline(never)]
fn walked_loads(a: &[u8], idx: &[usize], filler: u64) -> u64 {
    let mut sum = 0u64;
    for &i in idx {
        let entry = get(a, entry_at(i / 512));
        let frame = (entry >> 12) as usize;
        let (mut y0, mut y1, mut y2, mut y3) = (i as u64, i as u64 + 1, i as u64 + 2, i as u64 + 3);
        for k in 0..filler {
            y0 = y0.rotate_left(7) ^ k;
            y1 = y1.rotate_left(5) ^ k;
            y2 = y2.rotate_left(3) ^ k;
            y3 = y3.rotate_left(9) ^ k;
        }
        sum = sum.wrapping_add(get(a, frame * 512 + i % 512)) ^ (y0 ^ y1 ^ y2 ^ y3);
    }
    sum
}

/// The word of the leaf entry of data frame `page`: table frame `page / 512` sits before
/// its 512 data frames.
#[inline(always)]
fn entry_at(page: usize) -> usize {
    (page / 512) * 513 * 512 + page % 512
}

/// The u64 word `w` of the arena.
#[inline(always)]
fn get(a: &[u8], w: usize) -> u64 {
    u64::from_le_bytes(a[w * 8..w * 8 + 8].try_into().expect("8 bytes"))
}

/// Stores the u64 word `w` of the arena.
fn put(a: &mut [u8], w: usize, v: u64) {
    a[w * 8..w * 8 + 8].copy_from_slice(&v.to_le_bytes());
}
