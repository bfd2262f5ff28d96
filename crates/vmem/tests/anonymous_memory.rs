//! Anonymous memory is zero-filled on demand: a read maps the one shared zero page and
//! allocates nothing; the first write allocates a zeroed frame. MADV_DONTNEED gives
//! private anonymous memory back (it reads zero again); shared anonymous memory and
//! `/dev/zero` mappings behave like Linux's shmem.

use vmem::consts::*;
use vmem::{Kernel, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const RW: i32 = PROT_READ | PROT_WRITE;
/// A 2 MiB-aligned address: the pages below share one leaf page table.
const BASE: VirtAddr = VirtAddr(0x4000_0000);

#[test]
fn anonymous_memory_reads_zero_and_reads_allocate_no_frame() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = k
        .mmap(
            p,
            BASE,
            8 * PAGE,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    assert_eq!(va, BASE);
    // The first touch builds the page tables; count frames from there on.
    assert_eq!(k.load_u64(p, va).unwrap(), 0);
    let frames = k.frames_in_use();

    assert_eq!(
        k.load_vec(p, va.add(PAGE), 3 * PAGE as usize).unwrap(),
        vec![0u8; 3 * PAGE as usize]
    );
    assert_eq!(
        k.frames_in_use(),
        frames,
        "reads map the zero page: no frame allocated"
    );
    let zero = k.frame_of(p, va).unwrap();
    for i in 1..4 {
        assert_eq!(
            k.frame_of(p, va.add(i * PAGE)),
            Some(zero),
            "one zero page for all"
        );
    }
    assert!(!k.pte_of(p, va).writable());
    assert_eq!(k.mm(p).unwrap().rss_anon, 0);
    assert_eq!(k.stats().disk_reads, 0);

    // The first write allocates one zeroed frame for that page only.
    k.store_u8(p, va.add(PAGE + 1), 0x5a).unwrap();
    assert_eq!(k.frames_in_use(), frames + 1);
    let own = k.frame_of(p, va.add(PAGE)).unwrap();
    assert_ne!(own, zero);
    assert_eq!(k.frame_of(p, va.add(2 * PAGE)), Some(zero));
    assert_eq!(k.load_vec(p, va.add(PAGE), 3).unwrap(), [0, 0x5a, 0]);
    assert_eq!(
        k.load_u8(p, va.add(2 * PAGE + 1)).unwrap(),
        0,
        "the zero page stays zero"
    );
    assert_eq!(k.mm(p).unwrap().rss_anon, 1);

    // A write to a never-touched page allocates without going through the zero page.
    k.store_u8(p, va.add(7 * PAGE), 1).unwrap();
    assert_eq!(k.frames_in_use(), frames + 2);
    let s = k.stats();
    assert_eq!(s.major_faults, 0, "anonymous faults never read a disk");
    assert_eq!(s.cow_faults, 1, "only the write over the zero page copied");
}

#[test]
fn madv_dontneed_makes_private_anonymous_memory_read_zero() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = k
        .mmap(
            p,
            BASE,
            4 * PAGE,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    for i in 0..4 {
        k.store_u64(p, va.add(i * PAGE), 0x1000 + i).unwrap();
    }
    let frames = k.frames_in_use();
    k.madvise(p, va.add(PAGE), 2 * PAGE, MADV_DONTNEED).unwrap();
    assert_eq!(k.frames_in_use(), frames - 2, "the frames were freed");
    assert_eq!(k.frame_of(p, va.add(PAGE)), None);
    assert_eq!(k.mincore(p, va, 4 * PAGE).unwrap(), vec![1, 0, 0, 1]);
    assert_eq!(k.load_u64(p, va).unwrap(), 0x1000);
    assert_eq!(k.load_u64(p, va.add(PAGE)).unwrap(), 0);
    assert_eq!(k.load_u64(p, va.add(2 * PAGE)).unwrap(), 0);
    assert_eq!(k.load_u64(p, va.add(3 * PAGE)).unwrap(), 0x1003);
    // The range is still mapped and writable.
    k.store_u64(p, va.add(PAGE), 5).unwrap();
    assert_eq!(k.load_u64(p, va.add(PAGE)).unwrap(), 5);
}

#[test]
fn shared_anonymous_memory_keeps_its_data_across_madv_dontneed() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            2 * PAGE,
            RW,
            MAP_SHARED | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    assert_eq!(k.load_u64(p, va.add(PAGE)).unwrap(), 0);
    k.store(p, va.add(10), b"shared anon").unwrap();
    assert_eq!(k.load_vec(p, va.add(10), 11).unwrap(), b"shared anon");
    k.madvise(p, va, 2 * PAGE, MADV_DONTNEED).unwrap();
    assert_eq!(k.frame_of(p, va), None);
    assert_eq!(
        k.load_vec(p, va.add(10), 11).unwrap(),
        b"shared anon",
        "shmem keeps the data"
    );
    assert_eq!(k.stats().disk_reads, 0);
    assert!(
        k.maps(p).unwrap().contains("rw-s"),
        "{}",
        k.maps(p).unwrap()
    );

    // A second view of the same object (mremap with old_len 0) shares the frames.
    let view = k
        .mremap(p, va, 0, 2 * PAGE, MREMAP_MAYMOVE, VirtAddr(0))
        .unwrap();
    assert_ne!(view, va);
    k.store(p, view.add(PAGE), b"via view").unwrap();
    assert_eq!(k.load_vec(p, va.add(PAGE), 8).unwrap(), b"via view");
    assert_eq!(k.frame_of(p, view.add(PAGE)), k.frame_of(p, va.add(PAGE)));
}

#[test]
fn dev_zero_mappings_are_anonymous_memory() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, "/dev/zero", O_RDWR, 0).unwrap();

    let private = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();
    assert_eq!(k.load_vec(p, private, 16).unwrap(), vec![0u8; 16]);
    k.store(p, private.add(PAGE), b"private zero").unwrap();
    assert_eq!(
        k.load_vec(p, private.add(PAGE), 12).unwrap(),
        b"private zero"
    );
    k.madvise(p, private, 2 * PAGE, MADV_DONTNEED).unwrap();
    assert_eq!(k.load_vec(p, private.add(PAGE), 12).unwrap(), vec![0u8; 12]);

    let shared = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    assert_eq!(k.load_u64(p, shared).unwrap(), 0);
    k.store(p, shared.add(3), b"shared zero").unwrap();
    assert_eq!(k.load_vec(p, shared.add(3), 11).unwrap(), b"shared zero");
    k.madvise(p, shared, 2 * PAGE, MADV_DONTNEED).unwrap();
    assert_eq!(k.load_vec(p, shared.add(3), 11).unwrap(), b"shared zero");
    assert!(
        k.maps(p).unwrap().contains("/dev/zero (deleted)"),
        "{}",
        k.maps(p).unwrap()
    );

    // Each MAP_SHARED mapping of /dev/zero is a new object.
    let other = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    assert_eq!(k.load_vec(p, other.add(3), 11).unwrap(), vec![0u8; 11]);

    // read() of /dev/zero gives zeros, writes vanish, and nothing reaches a disk.
    k.write(p, fd, b"discarded").unwrap();
    assert_eq!(k.read(p, fd, 8).unwrap(), vec![0u8; 8]);
    let s = k.stats();
    assert_eq!(s.disk_reads, 0);
    assert_eq!(s.disk_writes, 0);
}

#[test]
fn anonymous_memory_is_private_to_each_process() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let q = k.spawn().unwrap();
    let a = k
        .mmap(
            p,
            BASE,
            PAGE,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    let b = k
        .mmap(
            q,
            BASE,
            PAGE,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    assert_eq!(a, b);
    k.store_u64(p, a, 111).unwrap();
    k.store_u64(q, b, 222).unwrap();
    assert_eq!(k.load_u64(p, a).unwrap(), 111);
    assert_eq!(k.load_u64(q, b).unwrap(), 222);
    assert_ne!(k.frame_of(p, a), k.frame_of(q, b));

    // Exit gives the frames back.
    let before = k.frames_in_use();
    k.exit(q).unwrap();
    assert!(k.frames_in_use() < before);
    assert_eq!(k.load_u64(p, a).unwrap(), 111);
}

#[test]
fn shared_anonymous_memory_is_freed_with_its_last_mapping() {
    let mut k = Kernel::default();
    let base = k.frames_in_use();
    let p = k.spawn().unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            4 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    for i in 0..4 {
        k.store_u8(p, va.add(i * PAGE), 1).unwrap();
    }
    let c = k.fork(p).unwrap();
    k.munmap(p, va, 4 * PAGE).unwrap();
    assert_eq!(k.load_u8(c, va).unwrap(), 1, "the child still maps it");
    k.exit(c).unwrap();
    k.exit(p).unwrap();
    assert_eq!(
        k.frames_in_use(),
        base,
        "the object went with its last mapping"
    );
}
