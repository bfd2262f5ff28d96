//! A mapping stops every thread it started when dropped; signal delivery over a store
//! that is not a file starts none.
//! (One test in this binary, so that no other test's threads are counted.)

mod common;

use common::pattern;
use vmem_uffd::{Delivery, MapOptions, MemStore};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn dropping_a_mapping_stops_its_threads() {
    let before = threads();
    let map = MapOptions::new(MemStore::new(pattern(1 << 20)))
        .delivery(Delivery::Threads)
        .filler_threads(3)
        .map()
        .unwrap();
    assert_eq!(map[12345], pattern(12346)[12345]);
    assert_eq!(threads(), before + 3);
    drop(map);
    assert_eq!(threads(), before, "filler threads left behind");

    let mut map = MapOptions::new(MemStore::new(pattern(1 << 20)))
        .shared()
        .delivery(Delivery::Signal)
        .map()
        .unwrap();
    map[7] = 1;
    assert_eq!(threads(), before, "signal delivery starts no thread");
    drop(map);
    assert_eq!(threads(), before);

    // A file store with read-ahead gets one read-ahead thread, and loses it on drop.
    let file = common::file_with(&pattern(1 << 20));
    let map = MapOptions::new(file.reopen().unwrap()).map().unwrap();
    assert_eq!(
        map.iter().map(|&b| u64::from(b)).sum::<u64>(),
        pattern(1 << 20).iter().map(|&b| u64::from(b)).sum::<u64>()
    );
    assert!(map.stats().readahead_pages > 0);
    assert_eq!(threads(), before + 1, "the read-ahead thread");
    drop(map);
    assert_eq!(threads(), before, "read-ahead thread left behind");
    let map = MapOptions::new(file.reopen().unwrap())
        .read_ahead(0)
        .map()
        .unwrap();
    assert_eq!(map[4097], pattern(1 << 20)[4097]);
    assert_eq!(threads(), before, "no read-ahead: no thread");
}
