//! A file store is copied from windows onto the file; the pager does not keep the file
//! mapped. (One test in this binary, so that no other test's mappings are counted.)

mod common;

use common::{file_with, pattern, with_timeout, Rng};
use vmem_uffd::MapOptions;

/// The file-backed memory this process has mapped (`RssFile`), in KiB.
fn rss_file_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssFile:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn the_pager_does_not_keep_the_file_mapped() {
    with_timeout(120, || {
        // A file store is copied from windows onto the file. They map page-cache pages
        // only while copies need them: each round of eviction unmaps them, and so does
        // evict_all, so the process does not keep the file mapped (and its pages pinned
        // against reclaim) however much of it has been read.
        let data = pattern(48 << 20);
        let file = file_with(&data);
        let map = MapOptions::new(file.reopen().unwrap())
            .cache_budget(1 << 20)
            .map()
            .unwrap();
        let before = rss_file_kib();
        let mut sum = 0u64;
        for i in (0..data.len()).step_by(4096) {
            sum += u64::from(map[i]);
        }
        assert_eq!(
            sum,
            data.iter()
                .step_by(4096)
                .map(|&b| u64::from(b))
                .sum::<u64>()
        );
        let after_scan = rss_file_kib().saturating_sub(before);
        assert!(
            after_scan < 8 << 10,
            "a sequential pass over 48 MiB with a 1 MiB budget left {after_scan} KiB of the file mapped"
        );
        let mut rng = Rng(7);
        for _ in 0..5000 {
            let at = rng.below(data.len());
            assert_eq!(map[at], data[at]);
        }
        assert!(map.stats().evictions > 10_000);
        map.evict_all().unwrap();
        let left = rss_file_kib().saturating_sub(before);
        assert!(
            left < 256,
            "{left} KiB of the file still mapped after evict_all"
        );
    });
}
