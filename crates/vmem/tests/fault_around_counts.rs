//! A read fault on a file maps not one page but the cached pages of the aligned 64 KiB
//! (16-page) window around it (Linux `do_fault_around`), and a page-cache miss reads a
//! 128 KiB (32-page) window around the page (read-around), so a sequential scan takes far
//! fewer faults and disk reads than it touches pages. MADV_RANDOM turns read-around off.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

mod common;

use std::path::{Path, PathBuf};
use vmem::consts::*;
use vmem::{Kernel, Pid, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
/// 64 KiB aligned, so that fault-around windows start at page 0 of the mapping.
const BASE: VirtAddr = VirtAddr(0x4000_0000);
const FAULT_AROUND: u64 = 16;

fn make_file(dir: &Path, len: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join("data.bin");
    let data: Vec<u8> = (0..len)
        .map(|i| ((i / PAGE) as u8).wrapping_add((i % 241) as u8))
        .collect();
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

fn map_at_base(k: &mut Kernel, p: Pid, path: &Path, len: u64) -> VirtAddr {
    let fd = k.open(p, path, O_RDONLY, 0).unwrap();
    k.mmap(p, BASE, len, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0)
        .unwrap()
}

/// Reads one byte of every page, in order, and checks it.
fn scan(k: &mut Kernel, p: Pid, va: VirtAddr, data: &[u8]) {
    let pages = (data.len() as u64).div_ceil(PAGE);
    for i in 0..pages {
        let off = i * PAGE + (i % 100);
        let off = off.min(data.len() as u64 - 1);
        assert_eq!(
            k.load_u8(p, va.add(off)).unwrap(),
            data[off as usize],
            "page {i}"
        );
    }
}

#[test]
fn a_sequential_scan_of_a_cached_file_takes_one_minor_fault_per_16_pages() {
    // Another process brings the whole file into the page cache with read(), in one call
    // or in chunks of 1, 3 or 8 pages. Either way read() meets every read-ahead mark its
    // windows left and clears it, so fault-around (which skips marked pages) maps them all.
    let cases = [1u64, 16, 17, 40, 64, 256]
        .into_iter()
        .flat_map(|pages| [None, Some(1), Some(3), Some(8)].map(|chunk| (pages, chunk)));
    for (pages, chunk) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (path, data) = make_file(dir.path(), pages * PAGE);
        let mut k = Kernel::default();
        let loader = k.spawn().unwrap();
        let lfd = k.open(loader, &path, O_RDONLY, 0).unwrap();
        let chunk = chunk.map_or(data.len(), |c| (c * PAGE) as usize);
        assert_eq!(common::read_to_end(&mut k, loader, lfd, chunk), data);
        assert_eq!(k.cached_pages(&path), pages);

        let p = k.spawn().unwrap();
        let va = map_at_base(&mut k, p, &path, pages * PAGE);
        scan(&mut k, p, va, &data);
        let s = k.process_stats(p).unwrap();
        let windows = pages.div_ceil(FAULT_AROUND);
        assert_eq!(
            s.minor_faults, windows,
            "{pages} pages read {chunk} bytes at a time"
        );
        assert_eq!(s.major_faults, 0);
        assert_eq!(s.disk_reads, 0);
        assert_eq!(
            s.fault_around_pages,
            pages - windows,
            "{pages} pages read {chunk} bytes at a time"
        );
    }
}

#[test]
fn fault_around_counts_the_pages_the_file_spans_not_the_mapping() {
    // 40 whole pages and a partial 41st: 41 pages of file, mapped with 8 more past EOF.
    let dir = tempfile::tempdir().unwrap();
    let len = 40 * PAGE + 100;
    let (path, data) = make_file(dir.path(), len);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    k.read(p, fd, len as usize).unwrap();
    let va = map_at_base(&mut k, p, &path, 48 * PAGE);
    let before = k.process_stats(p).unwrap();
    scan(&mut k, p, va, &data);
    let s = k.process_stats(p).unwrap();
    assert_eq!(s.minor_faults - before.minor_faults, 3, "ceil(41 / 16)");
    assert_eq!(s.fault_around_pages, 41 - 3);
    assert_eq!(
        k.frame_of(p, va.add(41 * PAGE)),
        None,
        "nothing mapped past end of file"
    );
}

#[test]
fn fault_around_maps_only_pages_already_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 16 * PAGE);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = map_at_base(&mut k, p, &path, 16 * PAGE);
    // Only the first 8 pages are cached. (MADV_WILLNEED reads exactly the range; a read()
    // would read ahead beyond it.)
    k.madvise(p, va, 8 * PAGE, MADV_WILLNEED).unwrap();
    assert_eq!(k.cached_pages(&path), 8);
    let before = k.process_stats(p).unwrap();
    assert_eq!(
        k.load_u8(p, va.add(3 * PAGE)).unwrap(),
        data[(3 * PAGE) as usize]
    );
    let s = k.process_stats(p).unwrap();
    assert_eq!(s.minor_faults - before.minor_faults, 1);
    assert_eq!(s.fault_around_pages, 7);
    assert_eq!(s.disk_reads, before.disk_reads, "fault-around does no I/O");
    for i in 0..8 {
        assert!(k.frame_of(p, va.add(i * PAGE)).is_some(), "page {i} mapped");
    }
    for i in 8..16 {
        assert_eq!(
            k.frame_of(p, va.add(i * PAGE)),
            None,
            "page {i} not cached, not mapped"
        );
    }
    // The pages mapped around are mapped read-only, like the faulting one.
    assert!(!k.pte_of(p, va).writable());
    assert!(k.pte_of(p, va).present());
}

#[test]
fn a_sequential_scan_of_an_uncached_file_takes_fewer_major_faults_than_pages() {
    let pages = 64u64;
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), pages * PAGE);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = map_at_base(&mut k, p, &path, pages * PAGE);

    // The first fault reads the 32-page window around page 0 in one request.
    assert_eq!(k.load_u8(p, va).unwrap(), data[0]);
    let s = k.stats();
    assert_eq!(
        (s.major_faults, s.disk_reads, s.disk_read_pages),
        (1, 1, 32)
    );
    let resident = k.mincore(p, va, pages * PAGE).unwrap();
    assert_eq!(resident[..32], [1u8; 32]);
    assert_eq!(resident[32..], [0u8; 32]);

    scan(&mut k, p, va, &data);
    let s = k.stats();
    assert!(
        s.major_faults < pages / 8,
        "{} major faults for {pages} pages",
        s.major_faults
    );
    assert!(
        s.disk_reads < pages / 8,
        "{} disk reads for {pages} pages",
        s.disk_reads
    );
    assert_eq!(s.disk_read_pages, pages, "every page read once");
    assert!(s.readahead_pages > 0);
    // Faults at pages 0, 16, 32 and 48 (fault-around maps 16 pages each), plus one at
    // page 24: the read-around window [0, 32) marks page 24 PG_readahead (async_size 8),
    // fault-around leaves marked pages alone, and the fault there reads [32, 64) ahead.
    // Only the first fault waited for the disk.
    assert_eq!(
        (s.faults(), s.major_faults),
        (pages.div_ceil(FAULT_AROUND) + 1, 1),
        "faults (total, major)"
    );
}

#[test]
fn madv_random_turns_read_around_off_so_every_page_is_a_major_fault() {
    let pages = 20u64;
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), pages * PAGE);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = map_at_base(&mut k, p, &path, pages * PAGE);
    k.madvise(p, va, pages * PAGE, MADV_RANDOM).unwrap();

    scan(&mut k, p, va, &data);
    let s = k.stats();
    assert_eq!(s.major_faults, pages);
    assert_eq!(s.minor_faults, 0);
    assert_eq!(s.disk_reads, pages);
    assert_eq!(s.disk_read_pages, pages);
    assert_eq!(s.readahead_pages, 0);
    assert_eq!(
        s.fault_around_pages, 0,
        "nothing else was cached to map around"
    );

    // MADV_NORMAL turns it back on for a fresh mapping of an uncached range.
    k.munmap(p, va, pages * PAGE).unwrap();
    k.drop_caches();
    let va = map_at_base(&mut k, p, &path, pages * PAGE);
    k.madvise(p, va, pages * PAGE, MADV_RANDOM).unwrap();
    k.madvise(p, va, pages * PAGE, MADV_NORMAL).unwrap();
    scan(&mut k, p, va, &data);
    let s2 = k.stats();
    assert_eq!(
        s2.major_faults - s.major_faults,
        1,
        "one read-around covers all 20 pages"
    );
}

#[test]
fn fault_around_maps_the_same_pages_in_every_paging_geometry() {
    use vmem::config::PagingGeometry;
    let pages = 40u64;
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), pages * PAGE);
    for (name, geometry) in PagingGeometry::NAMED {
        if !geometry.fits_this_kernel() {
            continue; // another page size: another build
        }
        let mut k = Kernel::new(vmem::MachineConfig {
            geometry,
            ..vmem::MachineConfig::default()
        });
        let loader = k.spawn().unwrap();
        let lfd = k.open(loader, &path, O_RDONLY, 0).unwrap();
        assert_eq!(k.read(loader, lfd, data.len()).unwrap(), data);
        let p = k.spawn().unwrap();
        let va = map_at_base(&mut k, p, &path, pages * PAGE);
        scan(&mut k, p, va, &data);
        let s = k.process_stats(p).unwrap();
        let windows = pages.div_ceil(FAULT_AROUND);
        assert_eq!(s.minor_faults, windows, "{name}");
        assert_eq!(s.fault_around_pages, pages - windows, "{name}");
        // Every page is mapped read-only to its cache frame, and the frame counts the
        // mapping (page cache + this process).
        for i in 0..pages {
            let pte = k.pte_of(p, va.add(i * PAGE));
            assert!(pte.present() && !pte.writable(), "{name} page {i}: {pte}");
            assert_eq!(k.frame_refcount(pte.pfn()), 2, "{name} page {i}");
        }
    }
}
