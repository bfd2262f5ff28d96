//! fork duplicates the address space: private and anonymous pages become copy-on-write in
//! both processes, shared mappings stay shared, descriptors are inherited.

use vmem::consts::*;
use vmem::{Kernel, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;

#[test]
fn anonymous_memory_is_isolated_in_both_directions() {
    let mut k = Kernel::default();
    let parent = k.spawn().unwrap();
    let va = k
        .mmap(
            parent,
            VirtAddr(0),
            2 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    k.store(parent, va, b"before fork").unwrap();
    let frame = k.frame_of(parent, va).unwrap();
    let child = k.fork(parent).unwrap();
    // One frame, mapped read-only in both, two references.
    assert_eq!(k.frame_of(child, va), Some(frame));
    assert_eq!(k.frame_refcount(frame), 2);
    assert!(!k.pte_of(parent, va).writable());
    assert!(!k.pte_of(child, va).writable());
    assert_eq!(k.load_vec(child, va, 11).unwrap(), b"before fork");

    // The child writes: it gets a copy; the parent keeps the original.
    k.store(child, va, b"child").unwrap();
    assert_ne!(k.frame_of(child, va), Some(frame));
    assert_eq!(k.process_stats(child).unwrap().cow_faults, 1);
    assert_eq!(k.load_vec(parent, va, 11).unwrap(), b"before fork");
    // The parent, now the only user of the original, reuses it without a copy.
    k.store(parent, va, b"parent").unwrap();
    assert_eq!(k.frame_of(parent, va), Some(frame));
    assert_eq!(k.process_stats(parent).unwrap().cow_faults, 0);
    assert_eq!(k.load_vec(child, va, 11).unwrap(), b"childe fork");
    assert_eq!(k.load_vec(parent, va, 11).unwrap(), b"parent fork");
}

#[test]
fn shared_mappings_stay_shared_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.bin");
    std::fs::write(&path, vec![b'.'; 2 * PAGE as usize]).unwrap();
    let mut k = Kernel::default();
    let parent = k.spawn().unwrap();
    let fd = k.open(parent, &path, O_RDWR, 0).unwrap();
    let file = k
        .mmap(
            parent,
            VirtAddr(0),
            2 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    let shm = k
        .mmap(
            parent,
            VirtAddr(0),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    let child = k.fork(parent).unwrap();
    k.store(child, file, b"from child").unwrap();
    assert_eq!(k.load_vec(parent, file, 10).unwrap(), b"from child");
    k.store(parent, file.add(PAGE), b"from parent").unwrap();
    assert_eq!(
        k.load_vec(child, file.add(PAGE), 11).unwrap(),
        b"from parent"
    );
    k.store(child, shm, b"shm").unwrap();
    assert_eq!(k.load_vec(parent, shm, 3).unwrap(), b"shm");
    // The descriptor was inherited and the data reaches the file.
    k.fsync(child, fd).unwrap();
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(&disk[..10], b"from child");
    assert_eq!(&disk[PAGE as usize..PAGE as usize + 11], b"from parent");
    k.exit(child).unwrap();
    assert_eq!(k.load_vec(parent, shm, 3).unwrap(), b"shm");
}

#[test]
fn private_file_pages_copy_on_write_after_fork() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("private.bin");
    std::fs::write(&path, vec![b'f'; PAGE as usize]).unwrap();
    let mut k = Kernel::default();
    let parent = k.spawn().unwrap();
    let fd = k.open(parent, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(
            parent,
            VirtAddr(0),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE,
            fd,
            0,
        )
        .unwrap();
    k.store(parent, va, b"P").unwrap();
    let child = k.fork(parent).unwrap();
    k.store(child, va.add(1), b"C").unwrap();
    assert_eq!(k.load_vec(parent, va, 2).unwrap(), b"Pf");
    assert_eq!(k.load_vec(child, va, 2).unwrap(), b"PC");
    k.shutdown().unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![b'f'; PAGE as usize],
        "private writes never reach the file"
    );
}

#[test]
fn dontfork_and_wipeonfork() {
    let mut k = Kernel::default();
    let parent = k.spawn().unwrap();
    let rw = PROT_READ | PROT_WRITE;
    let a = k
        .mmap(
            parent,
            VirtAddr(0x1000_0000),
            PAGE,
            rw,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    let b = k
        .mmap(
            parent,
            VirtAddr(0x2000_0000),
            PAGE,
            rw,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    k.store(parent, a, b"a").unwrap();
    k.store(parent, b, b"b").unwrap();
    k.madvise(parent, a, PAGE, MADV_DONTFORK).unwrap();
    k.madvise(parent, b, PAGE, MADV_WIPEONFORK).unwrap();
    let child = k.fork(parent).unwrap();
    assert!(
        k.load_u8(child, a).is_err(),
        "MADV_DONTFORK: not mapped in the child"
    );
    assert_eq!(
        k.load_u8(child, b).unwrap(),
        0,
        "MADV_WIPEONFORK: zero in the child"
    );
    assert_eq!(k.load_u8(parent, b).unwrap(), b'b');
}

#[test]
fn exit_releases_every_frame() {
    let mut k = Kernel::default();
    let base = k.frames_in_use();
    let parent = k.spawn().unwrap();
    let va = k
        .mmap(
            parent,
            VirtAddr(0),
            16 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    for i in 0..16 {
        k.store_u64(parent, va.add(i * PAGE), i).unwrap();
    }
    let child = k.fork(parent).unwrap();
    for i in 0..8 {
        k.store_u64(child, va.add(i * PAGE), 100 + i).unwrap();
    }
    k.exit(child).unwrap();
    k.exit(parent).unwrap();
    assert_eq!(k.frames_in_use(), base, "no frame leaked");
}
