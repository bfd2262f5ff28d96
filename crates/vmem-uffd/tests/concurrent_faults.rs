//! Many threads fault the same and different pages at once, reading and writing, while
//! pages are written back and evicted underneath them: no write is lost, nothing hangs.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

use common::{file_with, pattern, with_timeout, Rng, DELIVERIES};
use vmem_uffd::{MapOptions, Mapping};

/// The mapping's `index`-th u64 as an atomic.
fn counter(map: &Mapping, index: usize) -> &AtomicU64 {
    assert!((index + 1) * 8 <= map.len());
    // SAFETY: the mapping is page-aligned, so every 8-byte slot is aligned; it lives as
    // long as `map`; all concurrent accesses in these tests go through atomics.
    unsafe { AtomicU64::from_ptr(map.as_ptr().cast::<u64>().add(index)) }
}

/// The `index`-th u64 of the file's bytes `disk` (a counter as it reached the file).
fn on_disk(disk: &[u8], index: usize) -> u64 {
    u64::from_ne_bytes(disk[index * 8..index * 8 + 8].try_into().unwrap())
}

fn hammer(map: &Mapping, threads: usize, rounds: usize, counters: &[usize], flush_while: bool) {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for r in 0..rounds {
                    // Every thread walks the same counters, from a different start.
                    for k in 0..counters.len() {
                        let c = counters[(k + t * 7 + r) % counters.len()];
                        counter(map, c).fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        barrier.wait();
        if flush_while {
            for _ in 0..50 {
                map.flush().unwrap();
                std::thread::yield_now();
            }
        }
    });
}

#[test]
fn eight_threads_increment_shared_counters_without_losing_one() {
    with_timeout(180, || {
        for delivery in DELIVERIES {
            for budget in [None, Some(6 * 4096)] {
                let pages = 64;
                let file = file_with(&vec![0u8; pages * 4096]);
                let mut opts = MapOptions::new(file.reopen().unwrap())
                    .shared()
                    .delivery(delivery)
                    .filler_threads(2);
                if let Some(b) = budget {
                    opts = opts.cache_budget(b);
                }
                let map = opts.map().unwrap();
                // Several counters per page, on every page: overlapping and distinct pages.
                let counters: Vec<usize> = (0..pages)
                    .flat_map(|p| [p * 512, p * 512 + 1, p * 512 + 300])
                    .collect();
                let (threads, rounds) = (8, 40);
                hammer(&map, threads, rounds, &counters, true);
                let what = format!("{delivery:?} budget {budget:?}");
                for &c in &counters {
                    assert_eq!(
                        counter(&map, c).load(Ordering::Relaxed),
                        (threads * rounds) as u64,
                        "{what}: counter {c}"
                    );
                }
                map.flush().unwrap();
                let disk = std::fs::read(file.path()).unwrap();
                for &c in &counters {
                    let v = on_disk(&disk, c);
                    assert_eq!(v, (threads * rounds) as u64, "{what}: counter {c} on disk");
                }
                let s = map.stats();
                if budget.is_some() {
                    assert!(s.evictions > 0, "{what}: {s:?}");
                }
            }
        }
    });
}

#[test]
fn eight_threads_read_the_same_absent_pages_at_once() {
    with_timeout(120, || {
        for delivery in DELIVERIES {
            let data = pattern(256 * 4096);
            let file = file_with(&data);
            for round in 0..5 {
                let map = MapOptions::new(file.reopen().unwrap())
                    .read_ahead(if round % 2 == 0 { 0 } else { 16 })
                    .delivery(delivery)
                    .filler_threads(3)
                    .map()
                    .unwrap();
                let barrier = Barrier::new(8);
                std::thread::scope(|s| {
                    for t in 0..8 {
                        let (map, data, barrier) = (&map, &data, &barrier);
                        s.spawn(move || {
                            barrier.wait();
                            for p in 0..256 {
                                // Half the threads walk up, half down: same pages, same time.
                                let p = if t % 2 == 0 { p } else { 255 - p };
                                let at = p * 4096 + t * 13;
                                assert_eq!(map[at], data[at], "{delivery:?} page {p}");
                            }
                        });
                    }
                });
                let s = map.stats();
                assert_eq!(
                    s.pages_filled, 256,
                    "{delivery:?}: each page filled once: {s:?}"
                );
            }
        }
    });
}

#[test]
fn writers_race_with_flush_eviction_and_evict_all() {
    with_timeout(240, || {
        for delivery in DELIVERIES {
            for shared in [true, false] {
                let pages = 128;
                let file = file_with(&vec![0u8; pages * 4096]);
                let mut opts = MapOptions::new(file.reopen().unwrap())
                    .cache_budget(8 * 4096)
                    .read_ahead(4)
                    .delivery(delivery)
                    .filler_threads(2);
                if shared {
                    opts = opts.shared();
                }
                let map = opts.map().unwrap();
                let (threads, rounds) = (6usize, 3000usize);
                let stop = std::sync::atomic::AtomicBool::new(false);
                std::thread::scope(|s| {
                    let (map, stop) = (&map, &stop);
                    let housekeeper = s.spawn(move || {
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            if n % 3 == 0 {
                                map.evict_all().unwrap();
                            } else {
                                map.flush().unwrap();
                            }
                            n += 1;
                        }
                        n
                    });
                    let workers: Vec<_> = (0..threads)
                        .map(|t| {
                            s.spawn(move || {
                                let mut rng = Rng(0x1234_5678 + t as u64);
                                for _ in 0..rounds {
                                    // Counter k lives at word 8*k of page k % pages... spread.
                                    let k = rng.below(pages * 4);
                                    counter(map, (k % pages) * 512 + k / pages)
                                        .fetch_add(1, Ordering::Relaxed);
                                }
                            })
                        })
                        .collect();
                    for w in workers {
                        w.join().unwrap();
                    }
                    stop.store(true, Ordering::Relaxed);
                    assert!(housekeeper.join().unwrap() > 0);
                });
                let total: u64 = (0..pages * 4)
                    .map(|k| counter(&map, (k % pages) * 512 + k / pages).load(Ordering::Relaxed))
                    .sum();
                let what = format!("{delivery:?} shared {shared}");
                assert_eq!(
                    total,
                    (threads * rounds) as u64,
                    "{what}: increments lost: {:?}",
                    map.stats()
                );
                map.flush().unwrap();
                let disk = std::fs::read(file.path()).unwrap();
                let disk_total: u64 = (0..pages * 4)
                    .map(|k| on_disk(&disk, (k % pages) * 512 + k / pages))
                    .sum();
                if shared {
                    assert_eq!(disk_total, total, "{what}: on disk");
                } else {
                    assert_eq!(disk_total, 0, "{what}: private reached the file");
                }
            }
        }
    });
}

/// Flushes protect many pages at once (a span of dirty pages and the clean ones between
/// them): writers dirtying scattered pages of a large, fully resident mapping while
/// flushes run back to back must lose no write and leave every increment on disk after
/// the last flush. A page protected while dirty (protected although a writer had just
/// made it writable) would make its next writer fault forever once no flush comes to
/// clean it: the flushes stop halfway through the writes, and after the last one every
/// counter is written once more.
#[test]
fn scattered_writers_race_with_flushes_that_protect_many_pages_at_once() {
    with_timeout(240, || {
        for delivery in DELIVERIES {
            let pages = 2048;
            let file = file_with(&vec![0u8; pages * 4096]);
            let map = MapOptions::new(file.reopen().unwrap())
                .shared()
                .delivery(delivery)
                .filler_threads(2)
                .map()
                .unwrap();
            map.prefetch(0..map.len());
            let (threads, rounds) = (4usize, 20_000usize);
            let half = threads * rounds / 2;
            let written = std::sync::atomic::AtomicUsize::new(0);
            let flushes = AtomicU64::new(0);
            std::thread::scope(|s| {
                let (map, written, flushes) = (&map, &written, &flushes);
                // At least two flushes while the writers run; none after halfway.
                s.spawn(move || {
                    while flushes.load(Ordering::Relaxed) < 2
                        || written.load(Ordering::Relaxed) < half
                    {
                        map.flush().unwrap();
                        flushes.fetch_add(1, Ordering::Relaxed);
                    }
                });
                for t in 0..threads {
                    s.spawn(move || {
                        let mut rng = Rng(0x9E37_79B9 + t as u64);
                        for r in 0..rounds {
                            if r == rounds / 2 {
                                while flushes.load(Ordering::Relaxed) < 2 {
                                    std::thread::yield_now();
                                }
                            }
                            let page = rng.below(pages);
                            counter(map, page * 512 + t).fetch_add(1, Ordering::Relaxed);
                            written.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            });
            let counters: Vec<usize> = (0..pages)
                .flat_map(|p| (0..threads).map(move |t| p * 512 + t))
                .collect();
            for &c in &counters {
                counter(&map, c).fetch_add(1, Ordering::Relaxed);
            }
            let total: u64 = counters
                .iter()
                .map(|&c| counter(&map, c).load(Ordering::Relaxed))
                .sum();
            assert_eq!(
                total,
                (threads * (rounds + pages)) as u64,
                "{delivery:?}: increments lost"
            );
            map.flush().unwrap();
            let disk = std::fs::read(file.path()).unwrap();
            let disk_total: u64 = counters.iter().map(|&c| on_disk(&disk, c)).sum();
            assert_eq!(
                disk_total, total,
                "{delivery:?}: on disk after the last flush"
            );
        }
    });
}
