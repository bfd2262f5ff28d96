//! munmap and mprotect work on page ranges, not on whole mappings: a range inside a VMA
//! splits it, a range across several VMAs and holes handles each piece, and neighbours
//! that become alike again merge back into one VMA, as `/proc/pid/maps` shows.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::consts::*;
use vmem::mm::vma::Vma;
use vmem::{Errno, Kernel, Pid, SegvCode, Signal, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const RW: i32 = PROT_READ | PROT_WRITE;
const BASE: VirtAddr = VirtAddr(0x4000_0000);

/// `(start, end, prot)` of every VMA.
fn layout(k: &Kernel, p: Pid) -> Vec<(u64, u64, i32)> {
    k.vmas(p)
        .unwrap()
        .iter()
        .map(|v| (v.start.0, v.end.0, v.prot))
        .collect()
}

fn at(i: u64) -> u64 {
    BASE.0 + i * PAGE
}

fn anon_fixed(k: &mut Kernel, p: Pid, addr: VirtAddr, len: u64, prot: i32) -> VirtAddr {
    k.mmap(
        p,
        addr,
        len,
        prot,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
        -1,
        0,
    )
    .unwrap()
}

#[test]
fn munmap_of_a_middle_page_splits_the_vma() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon_fixed(&mut k, p, BASE, 3 * PAGE, RW);
    for i in 0..3 {
        k.store_u64(p, va.add(i * PAGE), 100 + i).unwrap();
    }
    assert_eq!(layout(&k, p), vec![(at(0), at(3), RW)]);

    k.munmap(p, va.add(PAGE), PAGE).unwrap();
    assert_eq!(layout(&k, p), vec![(at(0), at(1), RW), (at(2), at(3), RW)]);
    assert_eq!(k.load_u64(p, va).unwrap(), 100);
    assert_eq!(
        k.load_u64(p, va.add(2 * PAGE)).unwrap(),
        102,
        "the data stays with the tail"
    );
    assert_eq!(
        k.load_u64(p, va.add(PAGE)),
        Err(Signal::Segv {
            addr: va.add(PAGE),
            code: SegvCode::MapErr
        })
    );

    // Mapping the hole again with the same kind of memory merges the three back.
    anon_fixed(&mut k, p, va.add(PAGE), PAGE, RW);
    assert_eq!(layout(&k, p), vec![(at(0), at(3), RW)]);
    assert_eq!(
        k.load_u64(p, va.add(PAGE)).unwrap(),
        0,
        "a fresh page, not the old one"
    );
    assert_eq!(k.load_u64(p, va.add(2 * PAGE)).unwrap(), 102);
}

#[test]
fn munmap_across_several_vmas_and_holes_removes_every_piece() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    // [0,2) rw, hole at 2, [3,5) r, [5,7) rw over a file, hole at 7, [8,10) rw.
    anon_fixed(&mut k, p, VirtAddr(at(0)), 2 * PAGE, RW);
    anon_fixed(&mut k, p, VirtAddr(at(3)), 2 * PAGE, PROT_READ);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; 2 * PAGE as usize]).unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    k.mmap(
        p,
        VirtAddr(at(5)),
        2 * PAGE,
        RW,
        MAP_SHARED | MAP_FIXED,
        fd,
        0,
    )
    .unwrap();
    anon_fixed(&mut k, p, VirtAddr(at(8)), 2 * PAGE, RW);
    assert_eq!(k.vmas(p).unwrap().len(), 4);
    for i in [0, 1, 3, 5, 6, 8, 9] {
        k.load_u8(p, VirtAddr(at(i))).unwrap();
    }
    k.store_u8(p, VirtAddr(at(0)), 1).unwrap();
    k.store_u8(p, VirtAddr(at(9)), 9).unwrap();

    // From the middle of the first VMA to the middle of the last.
    k.munmap(p, VirtAddr(at(1)), 8 * PAGE).unwrap();
    assert_eq!(layout(&k, p), vec![(at(0), at(1), RW), (at(9), at(10), RW)]);
    for i in 1..9 {
        assert_eq!(k.frame_of(p, VirtAddr(at(i))), None, "page {i} unmapped");
        assert!(matches!(
            k.load_u8(p, VirtAddr(at(i))),
            Err(Signal::Segv {
                code: SegvCode::MapErr,
                ..
            })
        ));
    }
    assert_eq!(k.load_u8(p, VirtAddr(at(0))).unwrap(), 1);
    assert_eq!(k.load_u8(p, VirtAddr(at(9))).unwrap(), 9);

    // munmap of a range with nothing in it succeeds; bad arguments do not.
    assert_eq!(k.munmap(p, VirtAddr(at(2)), 4 * PAGE), Ok(()));
    assert_eq!(k.munmap(p, VirtAddr(at(2) + 1), PAGE), Err(Errno::EINVAL));
    assert_eq!(k.munmap(p, VirtAddr(at(2)), 0), Err(Errno::EINVAL));
}

#[test]
fn mprotect_of_the_middle_splits_in_three_and_mprotect_back_merges() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon_fixed(&mut k, p, BASE, 3 * PAGE, RW);
    for i in 0..3 {
        k.store_u64(p, va.add(i * PAGE), 10 + i).unwrap();
    }

    k.mprotect(p, va.add(PAGE), PAGE, PROT_READ).unwrap();
    assert_eq!(
        layout(&k, p),
        vec![
            (at(0), at(1), RW),
            (at(1), at(2), PROT_READ),
            (at(2), at(3), RW)
        ]
    );
    assert_eq!(
        k.store_u8(p, va.add(PAGE), 0),
        Err(Signal::Segv {
            addr: va.add(PAGE),
            code: SegvCode::AccErr
        })
    );
    k.store_u8(p, va.add(2 * PAGE + 8), 1).unwrap();
    assert_eq!(k.load_u64(p, va.add(PAGE)).unwrap(), 11);

    k.mprotect(p, va.add(PAGE), PAGE, RW).unwrap();
    assert_eq!(layout(&k, p), vec![(at(0), at(3), RW)]);
    k.store_u64(p, va.add(PAGE), 99).unwrap();
    assert_eq!(k.load_u64(p, va.add(PAGE)).unwrap(), 99);

    // mprotect of the first page only: two VMAs; of a range with a hole: ENOMEM.
    k.mprotect(p, va, PAGE, PROT_NONE).unwrap();
    assert_eq!(
        layout(&k, p),
        vec![(at(0), at(1), PROT_NONE), (at(1), at(3), RW)]
    );
    k.munmap(p, va.add(PAGE), PAGE).unwrap();
    assert_eq!(k.mprotect(p, va, 3 * PAGE, PROT_READ), Err(Errno::ENOMEM));
}

#[test]
fn a_file_mapping_split_keeps_each_piece_at_its_file_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data: Vec<u8> = (0..4 * PAGE).map(|i| (i / PAGE) as u8 + b'A').collect();
    std::fs::write(&path, &data).unwrap();
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    k.munmap(p, va.add(PAGE), PAGE).unwrap();
    let v: Vec<Vma> = k.vmas(p).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].pgoff.0, 0);
    assert_eq!(v[1].start, va.add(2 * PAGE));
    assert_eq!(v[1].pgoff.0, 2);
    assert_eq!(k.load_u8(p, va.add(2 * PAGE)).unwrap(), b'C');
    assert_eq!(k.load_u8(p, va.add(3 * PAGE)).unwrap(), b'D');
    let maps = k.maps(p).unwrap();
    let lines: Vec<&str> = maps.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains(" r--p 00000000 "), "{maps}");
    assert!(lines[1].contains(" r--p 00002000 "), "{maps}");
}

#[test]
fn adjacent_anonymous_mappings_merge_into_one_vma() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    anon_fixed(&mut k, p, BASE, 2 * PAGE, RW);
    anon_fixed(&mut k, p, VirtAddr(at(2)), 2 * PAGE, RW);
    assert_eq!(layout(&k, p), vec![(at(0), at(4), RW)]);
    // A different protection does not merge.
    anon_fixed(&mut k, p, VirtAddr(at(4)), PAGE, PROT_READ);
    assert_eq!(
        layout(&k, p),
        vec![(at(0), at(4), RW), (at(4), at(5), PROT_READ)]
    );

    // Without an address, mmap places new mappings top-down, each just below the last:
    // they merge too.
    let q = k.spawn().unwrap();
    let a = k
        .mmap(q, VirtAddr(0), PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        .unwrap();
    let b = k
        .mmap(
            q,
            VirtAddr(0),
            2 * PAGE,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    assert_eq!(b.add(2 * PAGE), a);
    assert_eq!(layout(&k, q), vec![(b.0, a.0 + PAGE, RW)]);
    // Shared anonymous mappings are separate objects: they never merge.
    let c = k
        .mmap(q, VirtAddr(0), PAGE, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        .unwrap();
    let d = k
        .mmap(q, VirtAddr(0), PAGE, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        .unwrap();
    assert_eq!(d.add(PAGE), c);
    assert_eq!(k.vmas(q).unwrap().len(), 3);
}

#[test]
fn maps_prints_one_line_per_vma_like_proc_pid_maps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mapped file");
    std::fs::write(&path, vec![0u8; 3 * PAGE as usize]).unwrap();
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    anon_fixed(&mut k, p, BASE, 2 * PAGE, RW);
    k.mmap(
        p,
        VirtAddr(at(4)),
        PAGE,
        PROT_READ | PROT_EXEC,
        MAP_PRIVATE | MAP_FIXED,
        fd,
        (2 * PAGE) as i64,
    )
    .unwrap();
    k.mmap(
        p,
        VirtAddr(at(6)),
        2 * PAGE,
        RW,
        MAP_SHARED | MAP_FIXED,
        fd,
        0,
    )
    .unwrap();

    let maps = k.maps(p).unwrap();
    let lines: Vec<&str> = maps.lines().collect();
    assert_eq!(lines.len(), 3, "{maps}");
    // Anonymous memory: no name, inode 0, and (as Linux prints it) a trailing space.
    assert_eq!(lines[0], "40000000-40002000 rw-p 00000000 00:00 0 ");

    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(&path).unwrap();
    let dev = md.dev();
    let (major, minor) = (
        ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff),
        (dev & 0xff) | ((dev >> 12) & !0xff),
    );
    let head = format!(
        "40004000-40005000 r-xp 00002000 {major:02x}:{minor:02x} {} ",
        md.ino()
    );
    // The name starts at column 73, as Linux's seq_pad puts it.
    let want = format!("{head:<72} {}", path.display());
    assert_eq!(lines[1], want);
    assert_eq!(lines[1].find('/'), Some(73));
    assert!(
        lines[2].starts_with("40006000-40008000 rw-s 00000000 "),
        "{maps}"
    );
    assert!(
        lines[2].ends_with(&format!(" {}", path.display())),
        "{maps}"
    );
}
