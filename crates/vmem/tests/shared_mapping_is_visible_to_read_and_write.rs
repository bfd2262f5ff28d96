//! A MAP_SHARED mapping *is* the page cache: `write()` shows through it at once, a store
//! through it shows to `read()`, and every process that maps the file maps the same frame.

use std::path::{Path, PathBuf};
use vmem::consts::*;
use vmem::{Kernel, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;

fn make_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn write_is_visible_through_a_shared_mapping_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "f", &vec![b'a'; 2 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            2 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    assert_eq!(k.load_vec(p, va, 4).unwrap(), b"aaaa");

    // A page already mapped.
    assert_eq!(k.pwrite(p, fd, b"hello", 10).unwrap(), 5);
    assert_eq!(k.load_vec(p, va.add(10), 5).unwrap(), b"hello");
    assert_eq!(k.write(p, fd, b"XY").unwrap(), 2);
    assert_eq!(k.load_vec(p, va, 4).unwrap(), b"XYaa");

    // A page not yet touched through the mapping.
    k.pwrite(p, fd, b"page one", (PAGE + 7) as i64).unwrap();
    assert_eq!(k.load_vec(p, va.add(PAGE + 7), 8).unwrap(), b"page one");

    // A write through another descriptor of another process, too.
    let q = k.spawn().unwrap();
    let qfd = k.open(q, &path, O_WRONLY, 0).unwrap();
    k.pwrite(q, qfd, b"from q", 200).unwrap();
    assert_eq!(k.load_vec(p, va.add(200), 6).unwrap(), b"from q");
}

#[test]
fn a_store_through_a_shared_mapping_is_visible_to_read_and_pread() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "f", &vec![b'.'; 3 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            3 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();

    k.store(p, va.add(100), b"mapped").unwrap();
    assert_eq!(k.pread(p, fd, 6, 100).unwrap(), b"mapped");
    assert_eq!(k.lseek(p, fd, 100, SEEK_SET).unwrap(), 100);
    assert_eq!(k.read(p, fd, 6).unwrap(), b"mapped");

    // A store straddling a page boundary.
    k.store(p, va.add(2 * PAGE - 3), b"across").unwrap();
    assert_eq!(k.pread(p, fd, 6, (2 * PAGE - 3) as i64).unwrap(), b"across");

    // Another open of the file (another open file description) sees the same bytes.
    let fd2 = k.open(p, &path, O_RDONLY, 0).unwrap();
    assert_eq!(k.pread(p, fd2, 6, 100).unwrap(), b"mapped");
    k.store_u32(p, va.add(PAGE), 0xdead_beef).unwrap();
    assert_eq!(
        k.pread(p, fd2, 4, PAGE as i64).unwrap(),
        0xdead_beef_u32.to_le_bytes()
    );

    // msync puts the stores in the real file.
    k.msync(p, va, 3 * PAGE, MS_SYNC).unwrap();
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(&disk[100..106], b"mapped");
    assert_eq!(
        &disk[(2 * PAGE - 3) as usize..(2 * PAGE + 3) as usize],
        b"across"
    );
}

#[test]
fn two_processes_mapping_shared_see_each_others_stores_in_one_frame() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "f", &vec![0u8; 2 * PAGE as usize]);
    let mut k = Kernel::default();
    let p1 = k.spawn().unwrap();
    let p2 = k.spawn().unwrap();
    let fd1 = k.open(p1, &path, O_RDWR, 0).unwrap();
    let fd2 = k.open(p2, &path, O_RDWR, 0).unwrap();
    let rw = PROT_READ | PROT_WRITE;
    let a1 = k
        .mmap(p1, VirtAddr(0), 2 * PAGE, rw, MAP_SHARED, fd1, 0)
        .unwrap();
    let a2 = k
        .mmap(p2, VirtAddr(0), 2 * PAGE, rw, MAP_SHARED, fd2, 0)
        .unwrap();

    k.store_u64(p1, a1.add(8), 0x1111).unwrap();
    assert_eq!(k.load_u64(p2, a2.add(8)).unwrap(), 0x1111);
    k.store_u64(p2, a2.add(16), 0x2222).unwrap();
    assert_eq!(k.load_u64(p1, a1.add(16)).unwrap(), 0x2222);
    k.store(p2, a2.add(32), b"overwrite").unwrap();
    assert_eq!(k.load_vec(p1, a1.add(32), 9).unwrap(), b"overwrite");

    let f1 = k.frame_of(p1, a1).expect("mapped in p1");
    let f2 = k.frame_of(p2, a2).expect("mapped in p2");
    assert_eq!(f1, f2, "both processes map the one page-cache frame");
    assert_eq!(k.frame_refcount(f1), 3, "the page cache and two mappings");
    assert_eq!(k.cached_pages(&path), 2);

    // A mapping at another file offset maps the same frame for the same file page.
    let b2 = k
        .mmap(p2, VirtAddr(0), PAGE, rw, MAP_SHARED, fd2, PAGE as i64)
        .unwrap();
    k.store(p1, a1.add(PAGE + 1), b"second page").unwrap();
    assert_eq!(k.load_vec(p2, b2.add(1), 11).unwrap(), b"second page");
    assert_eq!(k.frame_of(p1, a1.add(PAGE)), k.frame_of(p2, b2));

    // The stores reach the file once one of them syncs.
    k.msync(p2, a2, 2 * PAGE, MS_SYNC).unwrap();
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(&disk[8..16], &0x1111u64.to_le_bytes());
    assert_eq!(&disk[32..41], b"overwrite");
    assert_eq!(&disk[16..24], &0x2222u64.to_le_bytes());
    assert_eq!(
        &disk[(PAGE + 1) as usize..(PAGE + 12) as usize],
        b"second page"
    );
}

#[test]
fn a_read_only_shared_mapping_follows_the_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "f", b"0123456789");
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let ro = k.open(p, &path, O_RDONLY, 0).unwrap();
    let rw = k.open(p, &path, O_RDWR, 0).unwrap();
    let a = k
        .mmap(p, VirtAddr(0), PAGE, PROT_READ, MAP_SHARED, ro, 0)
        .unwrap();
    let b = k
        .mmap(
            p,
            VirtAddr(0),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            rw,
            0,
        )
        .unwrap();
    assert_eq!(k.load_vec(p, a, 10).unwrap(), b"0123456789");
    k.store(p, b.add(3), b"abc").unwrap();
    assert_eq!(k.load_vec(p, a, 10).unwrap(), b"012abc6789");
    assert_eq!(k.frame_of(p, a), k.frame_of(p, b));
}

#[test]
fn mprotect_can_make_a_shared_mapping_writable_only_if_the_file_is_open_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), "f", &vec![b'-'; PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let ro = k.open(p, &path, O_RDONLY, 0).unwrap();
    let rw = k.open(p, &path, O_RDWR, 0).unwrap();
    let a = k
        .mmap(p, VirtAddr(0), PAGE, PROT_READ, MAP_SHARED, ro, 0)
        .unwrap();
    assert_eq!(
        k.mprotect(p, a, PAGE, PROT_READ | PROT_WRITE),
        Err(vmem::Errno::EACCES)
    );
    assert_eq!(
        k.mmap(
            p,
            VirtAddr(0),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            ro,
            0
        ),
        Err(vmem::Errno::EACCES)
    );

    let b = k
        .mmap(p, VirtAddr(0), PAGE, PROT_READ, MAP_SHARED, rw, 0)
        .unwrap();
    assert_eq!(k.load_u8(p, b).unwrap(), b'-');
    k.mprotect(p, b, PAGE, PROT_READ | PROT_WRITE).unwrap();
    k.store(p, b, b"now writable").unwrap();
    assert_eq!(k.load_vec(p, a, 12).unwrap(), b"now writable");
    k.msync(p, b, PAGE, MS_SYNC).unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[..12], b"now writable");
}
