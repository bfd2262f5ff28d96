//! `mmap` loads nothing: a file page is read from disk at the first touch, and only then.
//! A page that is already in the page cache costs a minor fault, not a disk read.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use std::path::{Path, PathBuf};
use vmem::consts::*;
use vmem::{Kernel, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;

/// A file of `pages` pages whose every byte says which page and offset it is.
fn make_file(dir: &Path, pages: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join("data.bin");
    let data: Vec<u8> = (0..pages * PAGE)
        .map(|i| ((i / PAGE) as u8).wrapping_mul(31) ^ (i % 251) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn mmap_reads_nothing_before_the_first_touch() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = make_file(dir.path(), 64);
    let len = 64 * PAGE;
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), len, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();

    let s = k.stats();
    assert_eq!(s.disk_reads, 0, "mmap itself reads nothing");
    assert_eq!(s.disk_read_pages, 0);
    assert_eq!(s.faults(), 0);
    assert_eq!(k.cached_pages(&path), 0);
    assert_eq!(
        k.frame_of(p, va),
        None,
        "no page table entry before the first touch"
    );
    assert_eq!(
        k.mincore(p, va, len).unwrap(),
        vec![0u8; 64],
        "nothing resident"
    );
}

#[test]
fn the_first_touch_is_one_disk_read_and_one_major_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 64);
    let len = 64 * PAGE;
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), len, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();

    assert_eq!(k.load_vec(p, va.add(100), 16).unwrap(), &data[100..116]);
    let s = k.stats();
    assert_eq!(
        s.disk_reads, 1,
        "exactly one read request for the first touch"
    );
    assert_eq!(s.major_faults, 1);
    assert_eq!(s.minor_faults, 0);
    assert!(k.frame_of(p, va).is_some());

    // Read-around brought in a window around the page (32 pages from page 0), not the
    // whole file.
    let resident = k.mincore(p, va, len).unwrap();
    assert_eq!(resident[..32], [1u8; 32]);
    assert_eq!(resident[32..], [0u8; 32]);
    assert_eq!(k.cached_pages(&path), 32);

    // Touching the same page again, or a page of the window, reads nothing more.
    assert_eq!(k.load_u8(p, va.add(4000)).unwrap(), data[4000]);
    assert_eq!(
        k.load_u8(p, va.add(20 * PAGE + 5)).unwrap(),
        data[(20 * PAGE + 5) as usize]
    );
    let s = k.stats();
    assert_eq!(s.disk_reads, 1);
    assert_eq!(s.major_faults, 1);

    // A page outside the window is a second disk read.
    let off = 50 * PAGE + 9;
    assert_eq!(k.load_u8(p, va.add(off)).unwrap(), data[off as usize]);
    let s = k.stats();
    assert_eq!(s.disk_reads, 2);
    assert_eq!(s.major_faults, 2);
    assert_eq!(k.mincore(p, va.add(50 * PAGE), PAGE).unwrap(), vec![1]);
}

#[test]
fn a_second_process_mapping_the_same_file_gets_a_minor_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 8);
    let len = 8 * PAGE;
    let mut k = Kernel::default();

    let p1 = k.spawn().unwrap();
    let fd1 = k.open(p1, &path, O_RDONLY, 0).unwrap();
    let va1 = k
        .mmap(p1, VirtAddr(0), len, PROT_READ, MAP_PRIVATE, fd1, 0)
        .unwrap();
    assert_eq!(k.load_vec(p1, va1, 64).unwrap(), &data[..64]);
    assert_eq!(k.process_stats(p1).unwrap().major_faults, 1);
    assert_eq!(k.stats().disk_reads, 1);

    let p2 = k.spawn().unwrap();
    let fd2 = k.open(p2, &path, O_RDONLY, 0).unwrap();
    let va2 = k
        .mmap(p2, VirtAddr(0), len, PROT_READ, MAP_SHARED, fd2, 0)
        .unwrap();
    // mincore reports page-cache residency: resident before p2 ever touched it.
    assert_eq!(k.mincore(p2, va2, len).unwrap(), vec![1u8; 8]);
    assert_eq!(k.frame_of(p2, va2), None);

    assert_eq!(k.load_vec(p2, va2, 64).unwrap(), &data[..64]);
    let s2 = k.process_stats(p2).unwrap();
    assert_eq!(s2.major_faults, 0, "the page came from the page cache");
    assert_eq!(s2.minor_faults, 1);
    assert_eq!(s2.disk_reads, 0);
    assert_eq!(k.stats().disk_reads, 1, "no new disk read on the machine");
    assert_eq!(
        k.frame_of(p1, va1),
        k.frame_of(p2, va2),
        "one copy of the page in RAM"
    );
}

#[test]
fn read_syscall_fills_the_cache_so_the_mapping_fault_is_minor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 4);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    assert_eq!(k.read(p, fd, (4 * PAGE) as usize).unwrap(), data);
    let reads = k.stats().disk_reads;
    assert!(reads >= 1);
    let va = k
        .mmap(p, VirtAddr(0), 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    assert_eq!(
        k.load_u8(p, va.add(3 * PAGE + 1)).unwrap(),
        data[(3 * PAGE + 1) as usize]
    );
    let s = k.stats();
    assert_eq!(s.disk_reads, reads);
    assert_eq!(s.major_faults, 0);
    assert_eq!(s.minor_faults, 1);
}

#[test]
fn dropped_caches_make_the_next_touch_major_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 4);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    assert_eq!(k.load_u8(p, va).unwrap(), data[0]);
    k.munmap(p, va, 4 * PAGE).unwrap();
    assert_eq!(k.drop_caches(), 4, "clean, unmapped pages are dropped");
    assert_eq!(k.cached_pages(&path), 0);

    let va = k
        .mmap(p, VirtAddr(0), 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    assert_eq!(k.mincore(p, va, 4 * PAGE).unwrap(), vec![0u8; 4]);
    assert_eq!(
        k.load_u8(p, va.add(2 * PAGE)).unwrap(),
        data[(2 * PAGE) as usize]
    );
    let s = k.stats();
    assert_eq!(s.major_faults, 2);
    assert_eq!(s.disk_reads, 2);
}

#[test]
fn map_populate_reads_at_mmap_time_instead() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 8);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            8 * PAGE,
            PROT_READ,
            MAP_SHARED | MAP_POPULATE,
            fd,
            0,
        )
        .unwrap();
    let s = k.stats();
    assert_eq!(
        s.disk_reads, 1,
        "the whole file in one request, before any touch"
    );
    assert_eq!(s.major_faults, 1);
    for i in 0..8 {
        assert!(
            k.frame_of(p, va.add(i * PAGE)).is_some(),
            "page {i} is mapped"
        );
    }
    assert_eq!(k.load_vec(p, va, (8 * PAGE) as usize).unwrap(), data);
    assert_eq!(k.stats().faults(), s.faults(), "no fault on the touches");
}

#[test]
fn madv_willneed_reads_ahead_so_the_first_touch_is_minor() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 8);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 8 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    k.madvise(p, va.add(2 * PAGE), 4 * PAGE, MADV_WILLNEED)
        .unwrap();
    assert_eq!(k.stats().faults(), 0);
    assert_eq!(
        k.mincore(p, va, 8 * PAGE).unwrap(),
        vec![0, 0, 1, 1, 1, 1, 0, 0]
    );
    let reads = k.stats().disk_reads;
    assert!(reads >= 1);
    assert_eq!(
        k.load_u8(p, va.add(3 * PAGE)).unwrap(),
        data[(3 * PAGE) as usize]
    );
    let s = k.stats();
    assert_eq!(
        (s.major_faults, s.minor_faults, s.disk_reads),
        (0, 1, reads)
    );
}
