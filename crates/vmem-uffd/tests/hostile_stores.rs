//! Stores that are slow, return short reads, get interrupted or fail writes: nothing
//! hangs and no wrong byte is ever shown.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{pattern, with_timeout, Hostile, DELIVERIES};
use vmem_uffd::{MapOptions, MemStore, Store};

#[test]
fn a_slow_store_under_eight_threads() {
    with_timeout(120, || {
        for delivery in DELIVERIES {
            let data = pattern(64 * 4096);
            let mut store = Hostile::new(MemStore::new(data.clone()));
            store.delay = Duration::from_millis(2);
            let store = Arc::new(store);
            let map = MapOptions::from_arc(store.clone())
                .delivery(delivery)
                .filler_threads(3)
                .cache_budget(16 * 4096)
                .map()
                .unwrap();
            let barrier = Barrier::new(8);
            std::thread::scope(|s| {
                for t in 0..8usize {
                    let (map, data, barrier) = (&map, &data, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        for i in 0..64 {
                            let at = ((i * 7 + t * 3) % 64) * 4096 + t;
                            assert_eq!(map[at], data[at], "{delivery:?}");
                        }
                    });
                }
            });
            assert!(store.reads.load(Ordering::Relaxed) >= 64);
        }
    });
}

#[test]
fn short_and_interrupted_reads_are_completed() {
    with_timeout(60, || {
        for delivery in DELIVERIES {
            let data = pattern(300_001);
            let mut store = Hostile::new(MemStore::new(data.clone()));
            store.max_read = 100;
            store.interrupt_every = 7;
            let map = MapOptions::from_arc(Arc::new(store))
                .page_size(16 << 10)
                .delivery(delivery)
                .map()
                .unwrap();
            assert!(map[..] == data[..], "{delivery:?}");
            assert_eq!(map.stats().read_errors, 0);
        }
    });
}

#[test]
fn a_failed_write_back_keeps_the_page_dirty_and_reports_it() {
    with_timeout(60, || {
        for delivery in DELIVERIES {
            let data = pattern(64 << 10);
            let store = Arc::new(Hostile::new(MemStore::new(data.clone())));
            let mut map = MapOptions::from_arc(store.clone())
                .shared()
                .delivery(delivery)
                .map()
                .unwrap();
            map[5000] = !data[5000];
            store.fail_writes.store(true, Ordering::Relaxed);
            assert!(map.flush().is_err(), "{delivery:?}: the error is reported");
            // Still writable (a write after the failed write-back must not hang or be lost).
            map[5001] = !data[5001];
            store.fail_writes.store(false, Ordering::Relaxed);
            map.flush().unwrap();
            let mut b = [0u8; 2];
            vmem_uffd::Store::read_at(&*store, &mut b, 5000).unwrap();
            assert_eq!(b, [!data[5000], !data[5001]], "{delivery:?}");
            // Eviction that cannot write back keeps the page (and its data).
            store.fail_writes.store(true, Ordering::Relaxed);
            map[9000] = 1;
            assert!(map.evict_all().is_err());
            assert_eq!(map[9000], 1);
            store.fail_writes.store(false, Ordering::Relaxed);
            drop(map);
            assert_eq!(
                store.inner.contents()[9000],
                1,
                "{delivery:?}: dropped mapping flushed"
            );
            assert_eq!(store.len().unwrap(), data.len() as u64);
        }
    });
}
