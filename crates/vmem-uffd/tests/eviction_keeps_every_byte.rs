//! Under a cache budget of a few pages over a store many times larger, pages are evicted
//! (dirty ones written back first) and faulted again, and every byte stays right.

mod common;

use common::{file_with, pattern, with_timeout, Rng, DELIVERIES};
use vmem_uffd::MapOptions;

#[test]
fn a_budget_of_eight_pages_over_a_file_of_two_thousand() {
    with_timeout(120, || {
        for delivery in DELIVERIES {
            for page_size in [4096usize, 16 << 10] {
                let pages = 2048 * 4096 / page_size;
                let data = pattern(pages * page_size - 77);
                let file = file_with(&data);
                let budget = 8;
                let mut map = MapOptions::new(file.reopen().unwrap())
                    .shared()
                    .page_size(page_size)
                    .cache_budget(budget * page_size)
                    .delivery(delivery)
                    .map()
                    .unwrap();
                let what = format!("{delivery:?} page {page_size}");
                let mut model = data.clone();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ page_size as u64);
                for step in 0..20_000 {
                    let at = rng.below(model.len());
                    if rng.below(3) == 0 {
                        let v = rng.next() as u8;
                        map[at] = v;
                        model[at] = v;
                    } else {
                        assert_eq!(map[at], model[at], "{what}: byte {at} at step {step}");
                    }
                    let resident = map.stats().resident_pages;
                    assert!(
                        resident <= budget as u64,
                        "{what}: {resident} pages resident, budget {budget}"
                    );
                }
                // A sequential pass, then the whole mapping compared.
                assert!(
                    map[..] == model[..],
                    "{what}: mapping differs from the model"
                );
                let s = map.stats();
                assert!(s.evictions > 1000 && s.writebacks > 100, "{what}: {s:?}");
                assert!(s.resident_pages <= budget as u64, "{what}: {s:?}");
                map.flush().unwrap();
                assert!(
                    std::fs::read(file.path()).unwrap() == model,
                    "{what}: file differs from the model"
                );
                // Everything evicted: all faulted again, still equal.
                map.evict_all().unwrap();
                assert_eq!(map.stats().resident_pages, 0);
                assert!(map[..] == model[..], "{what}: after evict_all");
            }
        }
    });
}

#[test]
fn prefetch_fills_pages_without_faults() {
    for delivery in DELIVERIES {
        let data = pattern(1 << 20);
        let file = file_with(&data);
        let map = MapOptions::new(file.reopen().unwrap())
            .delivery(delivery)
            .map()
            .unwrap();
        map.prefetch(0..data.len());
        let s = map.stats();
        assert_eq!(
            (s.faults, s.pages_filled, s.readahead_pages),
            (0, 256, 0),
            "{delivery:?}: {s:?}"
        );
        assert!(map[..] == data[..]);
        assert_eq!(
            map.stats().faults,
            0,
            "{delivery:?}: prefetched pages fault"
        );
    }
}
