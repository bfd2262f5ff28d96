//! A mapping holds its own reference to the file: closing the descriptor (or even
//! unlinking the file) leaves the mapping working, and msync still writes the file.

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

#[test]
fn after_close_the_mapping_still_reads_writes_and_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let orig: Vec<u8> = (0..3 * PAGE).map(|i| (i % 97) as u8).collect();
    let path = make_file(dir.path(), &orig);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 3 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    k.close(p, fd).unwrap();
    assert_eq!(
        k.pread(p, fd, 1, 0),
        Err(Errno::EBADF),
        "the descriptor is gone"
    );

    // No page was touched before the close: the first touch still reads the file.
    assert_eq!(k.stats().disk_reads, 0);
    assert_eq!(
        k.load_vec(p, va.add(PAGE), 64).unwrap(),
        &orig[PAGE as usize..(PAGE + 64) as usize]
    );
    assert_eq!(k.stats().major_faults, 1);

    k.store(p, va.add(2 * PAGE + 10), b"after close").unwrap();
    assert_eq!(
        k.load_vec(p, va.add(2 * PAGE + 10), 11).unwrap(),
        b"after close"
    );
    k.msync(p, va, 3 * PAGE, MS_SYNC).unwrap();
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(
        &disk[(2 * PAGE + 10) as usize..(2 * PAGE + 21) as usize],
        b"after close"
    );
    assert_eq!(disk.len(), orig.len());

    // A new open of the file sees the store through read().
    let fd2 = k.open(p, &path, O_RDONLY, 0).unwrap();
    assert_eq!(
        k.pread(p, fd2, 11, (2 * PAGE + 10) as i64).unwrap(),
        b"after close"
    );
}

#[test]
fn a_private_mapping_outlives_close_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), b"private data");
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();
    k.close(p, fd).unwrap();
    assert_eq!(k.load_vec(p, va, 12).unwrap(), b"private data");
    k.store(p, va, b"PRIVATE").unwrap();
    assert_eq!(k.load_vec(p, va, 12).unwrap(), b"PRIVATE data");
    k.shutdown().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"private data");
}

#[test]
fn a_dirty_page_left_after_close_and_munmap_reaches_the_file_at_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![0u8; PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k.mmap(p, VirtAddr(0), PAGE, RW, MAP_SHARED, fd, 0).unwrap();
    k.close(p, fd).unwrap();
    k.store(p, va, b"orphan").unwrap();
    k.munmap(p, va, PAGE).unwrap();
    k.sync().unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[..6], b"orphan");
}

#[test]
fn the_mapping_outlives_unlink_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'x'; 2 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    k.close(p, fd).unwrap();
    std::fs::remove_file(&path).unwrap();

    assert_eq!(k.load_vec(p, va.add(PAGE), 4).unwrap(), b"xxxx");
    k.store(p, va, b"still here").unwrap();
    assert_eq!(k.load_vec(p, va, 10).unwrap(), b"still here");
    assert_eq!(k.msync(p, va, 2 * PAGE, MS_SYNC), Ok(()));
}
