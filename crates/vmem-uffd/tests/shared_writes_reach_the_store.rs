//! MAP_SHARED: writes reach the store on flush, on eviction and on drop — never before a
//! page is dirty, never past the store's end; MAP_PRIVATE: never.

mod common;

use common::{file_with, pattern, with_timeout, DELIVERIES};
use vmem_uffd::MapOptions;

#[test]
fn shared_writes_reach_the_file_on_flush_and_not_before() {
    with_timeout(60, || {
        for delivery in DELIVERIES {
            for page_size in [4096, 64 << 10] {
                let data = pattern(1_000_003);
                let file = file_with(&data);
                let mut map = MapOptions::new(file.reopen().unwrap())
                    .shared()
                    .page_size(page_size)
                    .delivery(delivery)
                    .map()
                    .unwrap();
                let what = format!("{delivery:?} page {page_size}");
                map[10..15].copy_from_slice(b"hello");
                map[500_000] = !data[500_000];
                let last = data.len() - 1;
                map[last] = !data[last];
                assert_eq!(
                    std::fs::read(file.path()).unwrap(),
                    data,
                    "{what}: written before flush"
                );
                assert_eq!(map.stats().writebacks, 0);
                map.flush().unwrap();
                let mut expect = data.clone();
                expect[10..15].copy_from_slice(b"hello");
                expect[500_000] = !data[500_000];
                expect[last] = !data[last];
                let on_disk = std::fs::read(file.path()).unwrap();
                assert_eq!(
                    on_disk.len(),
                    data.len(),
                    "{what}: the file's length changed"
                );
                assert!(on_disk == expect, "{what}: flushed bytes differ");
                let s = map.stats();
                assert_eq!(s.writebacks, 3, "{what}: only the three dirty pages: {s:?}");
                // Flushing again writes nothing: the pages are clean.
                map.flush().unwrap();
                assert_eq!(map.stats().writebacks, 3);
                // A page written after a flush is dirty again.
                map[11] = b'E';
                map.flush().unwrap();
                expect[11] = b'E';
                assert!(std::fs::read(file.path()).unwrap() == expect, "{what}");
                assert_eq!(map.stats().writebacks, 4);
            }
        }
    });
}

#[test]
fn flush_range_writes_only_that_range() {
    for delivery in DELIVERIES {
        let data = pattern(256 << 10);
        let file = file_with(&data);
        let mut map = MapOptions::new(file.reopen().unwrap())
            .shared()
            .delivery(delivery)
            .map()
            .unwrap();
        map[100] = !data[100];
        map[200_000] = !data[200_000];
        map.flush_range(0..4096).unwrap();
        let disk = std::fs::read(file.path()).unwrap();
        assert_eq!(disk[100], !data[100]);
        assert_eq!(
            disk[200_000], data[200_000],
            "{delivery:?}: outside the range"
        );
        map.flush_range(199_999..200_001).unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap()[200_000], !data[200_000]);
    }
}

#[test]
fn dropping_a_shared_mapping_flushes_it() {
    for delivery in DELIVERIES {
        let data = pattern(100_000);
        let file = file_with(&data);
        let mut map = MapOptions::new(file.reopen().unwrap())
            .shared()
            .delivery(delivery)
            .map()
            .unwrap();
        map[99_999] = 42;
        map[0] = 43;
        drop(map);
        let disk = std::fs::read(file.path()).unwrap();
        assert_eq!(
            (disk[0], disk[99_999], disk.len()),
            (43, 42, data.len()),
            "{delivery:?}"
        );
        // `unmap` reports the flush's outcome.
        let mut map = MapOptions::new(file.reopen().unwrap())
            .shared()
            .delivery(delivery)
            .map()
            .unwrap();
        map[1] = 44;
        map.unmap().unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap()[1], 44);
    }
}

#[test]
fn private_writes_never_reach_the_file() {
    with_timeout(60, || {
        for delivery in DELIVERIES {
            let data = pattern(512 << 10);
            let file = file_with(&data);
            let mut map = MapOptions::new(file.reopen().unwrap())
                .private()
                .cache_budget(8 * 4096)
                .delivery(delivery)
                .map()
                .unwrap();
            let mut expect = data.clone();
            for i in (0..data.len()).step_by(1000) {
                map[i] = !data[i];
                expect[i] = !data[i];
            }
            map.flush().unwrap();
            map.evict_all().unwrap();
            // The writes are still there (kept aside in memory), the file never saw them.
            assert!(map[..] == expect[..], "{delivery:?}: private writes lost");
            let s = map.stats();
            assert!(s.evictions > 0, "{s:?}");
            assert_eq!(
                (s.writebacks, s.bytes_written),
                (0, 0),
                "{delivery:?}: {s:?}"
            );
            drop(map);
            assert!(
                std::fs::read(file.path()).unwrap() == data,
                "{delivery:?}: private write reached the file"
            );
        }
    });
}
