//! A mapping may extend past the end of its file. The part of the last page past end of
//! file reads as zeros; a page wholly past end of file has no memory behind it, and an
//! access there is SIGBUS (BUS_ADRERR). Shrinking the file with ftruncate turns mapped
//! pages into such pages, private copies included; growing it gives zero bytes.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

mod common;

use std::path::{Path, PathBuf};
use vmem::consts::*;
use vmem::{BusCode, Kernel, Signal, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const RW: i32 = PROT_READ | PROT_WRITE;

fn make_file(dir: &Path, bytes: &[u8]) -> PathBuf {
    let path = dir.join("data.bin");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn bus(addr: VirtAddr) -> Signal {
    Signal::Bus {
        addr,
        code: BusCode::AdrErr,
    }
}

#[test]
fn a_page_wholly_past_eof_is_sigbus_and_the_tail_of_the_last_page_reads_zero() {
    let dir = tempfile::tempdir().unwrap();
    let orig = vec![0xabu8; 5000];
    let path = make_file(dir.path(), &orig);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let shared = k
        .mmap(p, VirtAddr(0), 3 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    let private = k
        .mmap(p, VirtAddr(0), 3 * PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();

    // The last page: file bytes up to 5000, zeros after.
    assert_eq!(k.load_vec(p, shared.add(4990), 10).unwrap(), vec![0xab; 10]);
    assert_eq!(
        k.load_vec(p, shared.add(5000), (2 * PAGE - 5000) as usize)
            .unwrap(),
        vec![0u8; (2 * PAGE - 5000) as usize]
    );
    assert_eq!(
        k.load_vec(p, private.add(5000), 100).unwrap(),
        vec![0u8; 100]
    );

    // The third page lies wholly past end of file.
    let past = shared.add(2 * PAGE);
    assert_eq!(k.load_u8(p, past), Err(bus(past)));
    assert_eq!(
        k.load_u64(p, past.add(64)),
        Err(bus(past.add(64))),
        "si_addr is the faulting byte"
    );
    assert_eq!(k.store_u8(p, past, 1), Err(bus(past)));
    let ppast = private.add(2 * PAGE + 8);
    assert_eq!(k.load_u8(p, ppast), Err(bus(ppast)));
    assert_eq!(
        k.store_u8(p, ppast, 1),
        Err(bus(ppast)),
        "a private write needs the file page too"
    );
    assert_eq!(k.stats().signals, 5);
    assert_eq!(k.frame_of(p, past), None);

    // A load that runs from the last page into the next one faults at the page boundary.
    assert_eq!(k.load_vec(p, shared.add(2 * PAGE - 4), 8), Err(bus(past)));

    // Nothing changed the file.
    k.shutdown().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), orig);
}

#[test]
fn a_mapping_at_an_offset_past_eof_is_allowed_but_every_access_is_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), b"short");
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            PAGE,
            PROT_READ,
            MAP_SHARED,
            fd,
            (4 * PAGE) as i64,
        )
        .unwrap();
    assert_eq!(k.load_u8(p, va.add(3)), Err(bus(va.add(3))));
}

#[test]
fn after_ftruncate_shrinks_the_file_an_access_past_the_new_end_is_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'z'; 3 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 3 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    // Every page mapped and one dirtied before the truncate.
    assert_eq!(
        k.load_vec(p, va, 3 * PAGE as usize).unwrap(),
        vec![b'z'; 3 * PAGE as usize]
    );
    k.store(p, va.add(2 * PAGE), b"doomed").unwrap();

    k.ftruncate(p, fd, (PAGE + 100) as i64).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), PAGE + 100);
    assert_eq!(
        k.frame_of(p, va.add(2 * PAGE)),
        None,
        "truncate unmapped the page"
    );
    assert_eq!(k.cached_pages(&path), 2);
    let gone = va.add(2 * PAGE + 1);
    assert_eq!(k.load_u8(p, gone), Err(bus(gone)));
    assert_eq!(k.store_u8(p, gone, 0), Err(bus(gone)));
    // The new last page keeps its first 100 bytes; the rest of it now reads zero.
    assert_eq!(k.load_vec(p, va.add(PAGE), 100).unwrap(), vec![b'z'; 100]);
    assert_eq!(
        k.load_vec(p, va.add(PAGE + 100), 16).unwrap(),
        vec![0u8; 16]
    );
    assert_eq!(k.load_u8(p, va).unwrap(), b'z');

    // The dirty data of the dropped page never reaches the file.
    k.shutdown().unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![b'z'; (PAGE + 100) as usize]
    );
}

#[test]
fn truncate_also_drops_private_copies_past_the_new_end() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'f'; 2 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, RW, MAP_PRIVATE, fd, 0)
        .unwrap();
    k.store(p, va.add(10), b"copy zero").unwrap();
    k.store(p, va.add(PAGE + 10), b"copy one").unwrap();
    assert_eq!(k.stats().cow_faults, 2);

    // Another process truncates the file.
    let q = k.spawn().unwrap();
    let qfd = k.open(q, &path, O_RDWR, 0).unwrap();
    k.ftruncate(q, qfd, PAGE as i64).unwrap();

    let a = va.add(PAGE + 10);
    assert_eq!(
        k.load_u8(p, a),
        Err(bus(a)),
        "the private copy went with the file page"
    );
    assert_eq!(k.store_u8(p, a, 0), Err(bus(a)));
    // The private copy of a page that is still inside the file stays.
    assert_eq!(k.load_vec(p, va.add(10), 9).unwrap(), b"copy zero");
}

#[test]
fn after_growing_the_file_the_new_bytes_read_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'g'; 3 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 4 * PAGE, RW, MAP_SHARED, fd, 0)
        .unwrap();
    assert_eq!(k.load_u8(p, va.add(2 * PAGE)).unwrap(), b'g');
    let fourth = va.add(3 * PAGE);
    assert_eq!(k.load_u8(p, fourth), Err(bus(fourth)));

    k.ftruncate(p, fd, 1000).unwrap();
    let second = va.add(PAGE);
    assert_eq!(k.load_u8(p, second), Err(bus(second)));

    k.ftruncate(p, fd, (4 * PAGE) as i64).unwrap();
    assert_eq!(k.load_vec(p, va, 1000).unwrap(), vec![b'g'; 1000]);
    assert_eq!(
        k.load_vec(p, va.add(1000), (4 * PAGE - 1000) as usize)
            .unwrap(),
        vec![0u8; (4 * PAGE - 1000) as usize],
        "the old data does not come back, and the formerly missing page exists"
    );
    assert_eq!(k.pread(p, fd, 8, (2 * PAGE) as i64).unwrap(), vec![0u8; 8]);
    k.store(p, fourth, b"new page").unwrap();
    k.msync(p, va, 4 * PAGE, MS_SYNC).unwrap();
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(disk.len(), (4 * PAGE) as usize);
    assert_eq!(&disk[..1000], &vec![b'g'; 1000][..]);
    assert!(disk[1000..(3 * PAGE) as usize].iter().all(|&b| b == 0));
    assert_eq!(
        &disk[(3 * PAGE) as usize..(3 * PAGE + 8) as usize],
        b"new page"
    );
}

#[test]
fn a_write_that_extends_the_file_makes_the_page_past_eof_accessible() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'1'; PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0)
        .unwrap();
    let second = va.add(PAGE);
    assert_eq!(k.load_u8(p, second), Err(bus(second)));
    k.pwrite(p, fd, b"grown", (PAGE + 10) as i64).unwrap();
    assert_eq!(
        k.load_vec(p, second, 15).unwrap(),
        b"\0\0\0\0\0\0\0\0\0\0grown"
    );
    assert_eq!(k.load_vec(p, second.add(15), 100).unwrap(), vec![0u8; 100]);
}

#[test]
fn opening_with_o_trunc_makes_every_mapped_page_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path(), &vec![b'o'; 2 * PAGE as usize]);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0)
        .unwrap();
    assert_eq!(k.load_u8(p, va.add(PAGE)).unwrap(), b'o');
    k.open(p, &path, O_WRONLY | O_TRUNC, 0).unwrap();
    assert_eq!(k.load_u8(p, va), Err(bus(va)));
    assert_eq!(k.load_u8(p, va.add(PAGE)), Err(bus(va.add(PAGE))));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn read_across_a_file_grown_by_a_write_past_its_partial_last_page_returns_the_file() {
    // Growing a file whose last page is partial leaves that page cached but not up to
    // date (ext4's pagecache_isize_extended); read() in any chunking returns the old
    // bytes, then zeros, then the written ones. (Only the bytes: that such a page ends a
    // batch of cached pages, as in Linux filemap_get_read_batch, shows in the read-ahead
    // counts, which this test does not pin.)
    let dir = tempfile::tempdir().unwrap();
    let old = 10 * PAGE + PAGE / 2;
    let data: Vec<u8> = (0..old).map(|i| (i * 7 + 1) as u8).collect();
    let path = make_file(dir.path(), &data);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    // Write past the old last page, which is not cached: it is left behind as an entry
    // that is not up to date.
    k.pwrite(p, fd, b"end", (20 * PAGE - 3) as i64).unwrap();
    assert_eq!(
        k.cached_pages(&path),
        1,
        "only the written page is up to date"
    );
    let mut want = data.clone();
    want.resize((20 * PAGE - 3) as usize, 0);
    want.extend_from_slice(b"end");
    for chunk in [3 * PAGE as usize, 5000, 20 * PAGE as usize] {
        k.lseek(p, fd, 0, SEEK_SET).unwrap();
        let got = common::read_to_end(&mut k, p, fd, chunk);
        let differs = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            got.len() == want.len() && differs.is_none(),
            "read {chunk} bytes at a time: {} bytes against {}, first difference at {differs:?}",
            got.len(),
            want.len()
        );
    }
}
