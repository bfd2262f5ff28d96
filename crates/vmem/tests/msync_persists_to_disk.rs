//! Stores through a shared mapping and `write()`s live in the page cache until write-back:
//! `msync(MS_SYNC)`, `fsync`, `sync`, and a clean shutdown put them in the real file.
//! Only bytes inside the file are written: the tail of the last page never is.

use std::path::{Path, PathBuf};
use vmem::consts::*;
use vmem::{Errno, Kernel, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const RW: i32 = PROT_READ | PROT_WRITE;

fn make_file(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("data.bin");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The file as a fresh reader outside the machine sees it.
fn on_disk(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut v = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

#[test]
fn after_msync_ms_sync_the_bytes_are_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let orig = vec![b'-'; 4 * PAGE as usize];
    let path = make_file(dir.path(), &orig);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 4 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();

    k.store(p, va.add(5), b"first").unwrap();
    k.store(p, va.add(3 * PAGE + 1), b"last").unwrap();
    k.msync(p, va, 4 * PAGE, MS_SYNC).unwrap();
    let disk = on_disk(&path);
    assert_eq!(disk.len(), orig.len());
    assert_eq!(&disk[5..10], b"first");
    assert_eq!(
        &disk[(3 * PAGE + 1) as usize..(3 * PAGE + 5) as usize],
        b"last"
    );
    assert!(k.stats().disk_writes >= 1);

    // The page was cleaned: a later store faults again, re-dirties it, and the next msync
    // writes it.
    let wp = k.stats().wp_faults;
    k.store(p, va.add(5), b"again").unwrap();
    assert_eq!(
        k.stats().wp_faults,
        wp + 1,
        "write-back write-protected the page"
    );
    k.msync(p, va, PAGE, MS_SYNC).unwrap();
    assert_eq!(&on_disk(&path)[5..10], b"again");

    // msync of a clean range writes nothing.
    let writes = k.stats().disk_writes;
    k.msync(p, va, 4 * PAGE, MS_SYNC).unwrap();
    assert_eq!(k.stats().disk_writes, writes);
}

#[test]
fn msync_of_a_part_of_a_mapping_at_an_offset_writes_the_right_file_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![0u8; 8 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    // Map file pages 4..8.
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            4 * PAGE,
            RW,
            MAP_SHARED,
            fd,
            (4 * PAGE) as i64,
        )
        .unwrap();
    k.store(p, va.add(PAGE + 2), b"page five").unwrap();
    k.msync(p, va.add(PAGE), PAGE, MS_SYNC).unwrap();
    let disk = on_disk(&path);
    assert_eq!(
        &disk[(5 * PAGE + 2) as usize..(5 * PAGE + 11) as usize],
        b"page five"
    );
    assert_eq!(disk.len(), (8 * PAGE) as usize);
}

#[test]
fn fsync_after_write_puts_the_bytes_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), b"0123456789");
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    k.pwrite(p, fd, b"abc", 2).unwrap();
    assert_eq!(k.lseek(p, fd, 0, SEEK_END).unwrap(), 10);
    k.write(p, fd, b"+tail").unwrap();
    k.fsync(p, fd).unwrap();
    assert_eq!(on_disk(&path), b"01abc56789+tail");
}

#[test]
fn a_clean_shutdown_writes_dirty_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'.'; 2 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    k.store(p, va.add(PAGE), b"mapped store").unwrap();
    k.pwrite(p, fd, b"written", 0).unwrap();
    k.shutdown().unwrap();
    assert!(k.pids().is_empty());
    let disk = on_disk(&path);
    assert_eq!(&disk[..7], b"written");
    assert_eq!(&disk[PAGE as usize..(PAGE + 12) as usize], b"mapped store");
}

#[test]
fn dropping_the_kernel_writes_dirty_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'.'; PAGE as usize]);
    {
        let mut k = Kernel::default();
        let p = k.spawn().unwrap();
        let fd = k.open(p, &path, O_RDWR, 0).unwrap();
        let va = k.mmap(p, VirtAddr(0), PAGE, RW, MAP_SHARED, fd, 0).unwrap();
        k.store(p, va.add(100), b"kept at drop").unwrap();
        // The process exits without msync; the dirty page stays in the page cache.
        k.exit(p).unwrap();
    }
    assert_eq!(&on_disk(&path)[100..112], b"kept at drop");
}

#[test]
fn the_tail_of_the_last_page_past_eof_is_never_written() {
    let dir = tempfile::tempdir().unwrap();
    let orig: Vec<u8> = (0..5000u32).map(|i| (i % 200) as u8).collect();
    let path = make_file(dir.path(), &orig);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();

    // Bytes 5000..8192 belong to the last page but not to the file: reads give zero,
    // stores are allowed but never become file data.
    assert_eq!(k.load_vec(p, va.add(5000), 16).unwrap(), vec![0u8; 16]);
    k.store(p, va.add(4990), b"0123456789ABCDEFGHIJ").unwrap();
    k.store(p, va.add(6000), b"ghost").unwrap();
    assert_eq!(k.load_vec(p, va.add(6000), 5).unwrap(), b"ghost");
    assert_eq!(
        k.pread(p, fd, 100, 6000).unwrap(),
        b"",
        "read() stops at end of file"
    );

    k.msync(p, va, 2 * PAGE, MS_SYNC).unwrap();
    let disk = on_disk(&path);
    assert_eq!(disk.len(), 5000, "the file did not grow");
    assert_eq!(&disk[..4990], &orig[..4990]);
    assert_eq!(&disk[4990..], b"0123456789");
    // As on Linux, write-back zeroes the part of the page past end of file.
    assert_eq!(k.load_vec(p, va.add(5000), 10).unwrap(), vec![0u8; 10]);
    assert_eq!(k.load_vec(p, va.add(6000), 5).unwrap(), vec![0u8; 5]);

    k.store(p, va.add(7000), b"again").unwrap();
    k.shutdown().unwrap();
    assert_eq!(on_disk(&path).len(), 5000);
}

#[test]
fn ms_async_and_ms_invalidate_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![0u8; 2 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    k.store(p, va, b"async").unwrap();

    assert_eq!(k.msync(p, va, 2 * PAGE, MS_ASYNC), Ok(()));
    assert_eq!(k.msync(p, va, 2 * PAGE, MS_INVALIDATE), Ok(()));
    assert_eq!(k.msync(p, va, 2 * PAGE, MS_ASYNC | MS_INVALIDATE), Ok(()));
    assert_eq!(
        k.msync(p, va, 1, 0),
        Ok(()),
        "flags 0 is accepted; the length rounds up"
    );
    // MS_INVALIDATE keeps the data: the page cache is coherent with the mapping.
    assert_eq!(k.load_vec(p, va, 5).unwrap(), b"async");
    assert_eq!(k.pread(p, fd, 5, 0).unwrap(), b"async");

    assert_eq!(k.msync(p, va, PAGE, MS_ASYNC | MS_SYNC), Err(Errno::EINVAL));
    assert_eq!(k.msync(p, va, PAGE, 8), Err(Errno::EINVAL));
    assert_eq!(k.msync(p, va.add(1), PAGE, MS_SYNC), Err(Errno::EINVAL));

    // A hole in the range is ENOMEM, after the mapped part has been synced.
    k.munmap(p, va.add(PAGE), PAGE).unwrap();
    assert_eq!(k.msync(p, va, 2 * PAGE, MS_SYNC), Err(Errno::ENOMEM));
    assert_eq!(&on_disk(&path)[..5], b"async");
}

#[test]
fn ms_sync_stops_at_a_hole_other_flags_go_on() {
    // Linux mm/msync.c: with flags == MS_SYNC a hole returns ENOMEM at once, so the
    // mappings after the hole are not synced; with MS_SYNC|MS_INVALIDATE the loop goes
    // on and syncs them, then reports ENOMEM.
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![0u8; 3 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 3 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    k.munmap(p, va.add(PAGE), PAGE).unwrap();
    k.store(p, va.add(2 * PAGE), b"after the hole").unwrap();

    let writes = k.stats().disk_writes;
    assert_eq!(k.msync(p, va, 3 * PAGE, MS_SYNC), Err(Errno::ENOMEM));
    assert_eq!(
        k.stats().disk_writes,
        writes,
        "nothing after the hole was written"
    );

    assert_eq!(
        k.msync(p, va, 3 * PAGE, MS_SYNC | MS_INVALIDATE),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        &on_disk(&path)[(2 * PAGE) as usize..(2 * PAGE + 14) as usize],
        b"after the hole"
    );
}
