//! A MAP_PRIVATE file mapping shares the page-cache page until the first store to it;
//! the store copies the page into a frame of the process's own, and from then on the
//! process and the file go separate ways. Private stores never reach the file.

use std::path::{Path, PathBuf};
use vmem::consts::*;
use vmem::{Kernel, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const RW: i32 = PROT_READ | PROT_WRITE;

fn make_file(dir: &Path, pages: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join("data.bin");
    let data: Vec<u8> = (0..pages * PAGE).map(|i| (i % 253) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn private_stores_never_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 2);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();

    k.store(p, va.add(10), b"private").unwrap();
    k.store(p, va.add(PAGE - 2), b"span").unwrap();
    assert_eq!(k.load_vec(p, va.add(10), 7).unwrap(), b"private");
    assert_eq!(
        k.pread(p, fd, 7, 10).unwrap(),
        &data[10..17],
        "read() sees the file"
    );

    k.msync(p, va, 2 * PAGE, MS_SYNC).unwrap();
    k.fsync(p, fd).unwrap();
    k.sync().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(
        k.stats().disk_writes,
        0,
        "nothing was dirty in the page cache"
    );

    k.shutdown().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
    drop(k);
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn a_private_page_follows_the_file_until_its_copy_and_not_after() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 2);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let private = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();
    let shared = k
        .mmap(p, VirtAddr(0), 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0)
        .unwrap();
    // Another writer of the file, through its own descriptor.
    let other = k.open(p, &path, O_RDWR, 0).unwrap();

    // Before the copy: the private page is the page-cache page.
    assert_eq!(k.load_vec(p, private, 4).unwrap(), &data[..4]);
    assert_eq!(k.load_vec(p, shared, 4).unwrap(), &data[..4]);
    let cache_frame = k.frame_of(p, shared).unwrap();
    assert_eq!(k.frame_of(p, private), Some(cache_frame));
    assert!(
        !k.pte_of(p, private).writable(),
        "mapped read-only until written"
    );
    k.pwrite(p, other, b"one", 0).unwrap();
    assert_eq!(
        k.load_vec(p, private, 3).unwrap(),
        b"one",
        "the file change shows"
    );

    // The store copies the page.
    assert_eq!(k.stats().cow_faults, 0);
    k.store(p, private.add(100), b"mine").unwrap();
    assert_eq!(k.stats().cow_faults, 1);
    let copy = k.frame_of(p, private).unwrap();
    assert_ne!(copy, cache_frame, "the private page moved to its own frame");
    assert_eq!(k.frame_of(p, shared), Some(cache_frame));
    assert_eq!(
        k.load_vec(p, private, 3).unwrap(),
        b"one",
        "the copy took the page as it was"
    );
    assert_eq!(k.load_vec(p, private.add(100), 4).unwrap(), b"mine");
    assert_eq!(k.load_vec(p, private.add(104), 8).unwrap(), &data[104..112]);

    // After the copy: later file changes no longer show in the private page.
    k.pwrite(p, other, b"two", 0).unwrap();
    assert_eq!(k.load_vec(p, shared, 3).unwrap(), b"two");
    assert_eq!(k.load_vec(p, private, 3).unwrap(), b"one");
    assert_eq!(
        k.pread(p, other, 4, 100).unwrap(),
        &data[100..104],
        "the store is not in the file"
    );
    assert_eq!(k.load_vec(p, shared.add(100), 4).unwrap(), &data[100..104]);

    // The other page of the private mapping was never written: it still follows the file.
    k.pwrite(p, other, b"three", PAGE as i64).unwrap();
    assert_eq!(k.load_vec(p, private.add(PAGE), 5).unwrap(), b"three");
    assert_eq!(k.stats().cow_faults, 1);
}

#[test]
fn a_first_store_to_an_untouched_private_page_copies_it_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 1);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();

    k.store_u8(p, va.add(7), 0xff).unwrap();
    let s = k.stats();
    assert_eq!(s.cow_faults, 1);
    assert_eq!(
        s.major_faults, 1,
        "the file page had to be read to be copied"
    );
    assert_eq!(s.disk_reads, 1);
    let mut want = data.clone();
    want[7] = 0xff;
    assert_eq!(k.load_vec(p, va, PAGE as usize).unwrap(), want);

    // The page cache holds the file's page, in another frame than the private copy.
    assert_eq!(k.cached_pages(&path), 1);
    let q = k.spawn().unwrap();
    let qfd = k.open(q, &path, O_RDONLY, 0).unwrap();
    let qva = k
        .mmap(q, VirtAddr(0), PAGE, PROT_READ, MAP_SHARED, qfd, 0)
        .unwrap();
    assert_eq!(k.load_u8(q, qva.add(7)).unwrap(), data[7]);
    assert_ne!(k.frame_of(q, qva), k.frame_of(p, va));
}

#[test]
fn a_page_is_copied_once_and_each_process_gets_its_own_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 2);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let q = k.spawn().unwrap();
    let pfd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let qfd = k.open(q, &path, O_RDONLY, 0).unwrap();
    // A private writable mapping of a read-only descriptor is allowed.
    let a = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_PRIVATE, pfd, 0)
        .unwrap();
    let b = k
        .mmap(q, VirtAddr(0), 2 * PAGE, RW, MAP_PRIVATE, qfd, 0)
        .unwrap();

    assert_eq!(k.load_u8(p, a).unwrap(), data[0]);
    assert_eq!(k.load_u8(q, b).unwrap(), data[0]);
    assert_eq!(k.frame_of(p, a), k.frame_of(q, b), "shared while only read");

    k.store(p, a, b"P").unwrap();
    k.store(p, a.add(1), b"P").unwrap();
    assert_eq!(
        k.process_stats(p).unwrap().cow_faults,
        1,
        "the second store reuses the copy"
    );
    assert_eq!(k.process_stats(p).unwrap().wp_faults, 1);
    k.store(q, b, b"Q").unwrap();
    assert_eq!(k.process_stats(q).unwrap().cow_faults, 1);
    assert_eq!(k.load_vec(p, a, 2).unwrap(), b"PP");
    assert_eq!(k.load_vec(q, b, 2).unwrap(), [b'Q', data[1]]);
    assert_ne!(k.frame_of(p, a), k.frame_of(q, b));

    k.store(p, a.add(PAGE), b"P").unwrap();
    assert_eq!(k.process_stats(p).unwrap().cow_faults, 2);
    assert_eq!(k.stats().cow_faults, 3);

    k.shutdown().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn madvise_dontneed_on_a_private_file_page_reads_the_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 1);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();
    k.store(p, va, b"scratch").unwrap();
    k.madvise(p, va, PAGE, MADV_DONTNEED).unwrap();
    assert_eq!(
        k.load_vec(p, va, 7).unwrap(),
        &data[..7],
        "the private copy is gone"
    );
}
