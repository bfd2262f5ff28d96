//! A mapping stops every thread it started when dropped; signal delivery starts none.
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
}
