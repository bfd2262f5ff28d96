//! mremap resizes a mapping in place when it can and moves it (with MREMAP_MAYMOVE) when
//! it cannot. A move carries the page-table entries: the same frames, so the same data,
//! appear at the new address without a copy, for anonymous and file memory alike.

use std::path::{Path, PathBuf};
use vmem::consts::*;
use vmem::{Errno, Kernel, Pid, SegvCode, Signal, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const RW: i32 = PROT_READ | PROT_WRITE;
const BASE: VirtAddr = VirtAddr(0x4000_0000);

fn maperr(addr: VirtAddr) -> Signal {
    Signal::Segv {
        addr,
        code: SegvCode::MapErr,
    }
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

fn make_file(dir: &Path, pages: u64) -> (PathBuf, Vec<u8>) {
    let path = dir.join("data.bin");
    let data: Vec<u8> = (0..pages * PAGE)
        .map(|i| ((i / PAGE) as u8) ^ (i % 199) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

#[test]
fn growing_in_place_keeps_the_address_and_the_data() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon_fixed(&mut k, p, BASE, 2 * PAGE, RW);
    k.store_u64(p, va, 1).unwrap();
    k.store_u64(p, va.add(PAGE), 2).unwrap();
    let frame = k.frame_of(p, va);

    let got = k.mremap(p, va, 2 * PAGE, 4 * PAGE, 0, VirtAddr(0)).unwrap();
    assert_eq!(got, va);
    let v = k.vmas(p).unwrap();
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].start, v[0].end), (va, va.add(4 * PAGE)));
    assert_eq!(k.load_u64(p, va).unwrap(), 1);
    assert_eq!(k.load_u64(p, va.add(PAGE)).unwrap(), 2);
    assert_eq!(k.frame_of(p, va), frame);
    assert_eq!(
        k.load_u64(p, va.add(3 * PAGE)).unwrap(),
        0,
        "the new pages are zero"
    );
    k.store_u64(p, va.add(3 * PAGE), 4).unwrap();
}

#[test]
fn a_blocked_grow_needs_maymove_and_then_moves_the_frames() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon_fixed(&mut k, p, BASE, 2 * PAGE, RW);
    // Something right after it.
    anon_fixed(&mut k, p, va.add(2 * PAGE), PAGE, PROT_READ);
    k.store(p, va.add(100), b"anonymous data").unwrap();
    k.store(p, va.add(PAGE + 5), b"second page").unwrap();
    let frames = [
        k.frame_of(p, va).unwrap(),
        k.frame_of(p, va.add(PAGE)).unwrap(),
    ];
    let data_frames = |k: &Kernel| k.frames_in_use() - k.mm(p).unwrap().pt_frames;
    let used = data_frames(&k);

    assert_eq!(
        k.mremap(p, va, 2 * PAGE, 8 * PAGE, 0, VirtAddr(0)),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        k.load_vec(p, va.add(100), 14).unwrap(),
        b"anonymous data",
        "unchanged"
    );

    let new = k
        .mremap(p, va, 2 * PAGE, 8 * PAGE, MREMAP_MAYMOVE, VirtAddr(0))
        .unwrap();
    assert_ne!(new, va);
    assert_eq!(k.load_vec(p, new.add(100), 14).unwrap(), b"anonymous data");
    assert_eq!(
        k.load_vec(p, new.add(PAGE + 5), 11).unwrap(),
        b"second page"
    );
    assert_eq!(
        k.frame_of(p, new),
        Some(frames[0]),
        "the frame moved, not a copy"
    );
    assert_eq!(k.frame_of(p, new.add(PAGE)), Some(frames[1]));
    assert_eq!(k.load_u64(p, new.add(7 * PAGE)).unwrap(), 0);
    assert_eq!(data_frames(&k), used, "no data was copied");
    assert_eq!(k.load_u8(p, va), Err(maperr(va)), "the old range is gone");
    assert_eq!(k.frame_of(p, va), None);
    // The neighbour is untouched.
    assert_eq!(k.load_u8(p, va.add(2 * PAGE)).unwrap(), 0);
}

#[test]
fn moving_a_shared_file_mapping_keeps_it_on_the_same_file_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 4);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    // File pages 1..3 at BASE, then a blocker.
    let va = k
        .mmap(
            p,
            BASE,
            2 * PAGE,
            RW,
            MAP_SHARED | MAP_FIXED,
            fd,
            PAGE as i64,
        )
        .unwrap();
    anon_fixed(&mut k, p, va.add(2 * PAGE), PAGE, RW);
    assert_eq!(k.load_u8(p, va).unwrap(), data[PAGE as usize]);
    let frame = k.frame_of(p, va);

    let new = k
        .mremap(p, va, 2 * PAGE, 3 * PAGE, MREMAP_MAYMOVE, VirtAddr(0))
        .unwrap();
    assert_ne!(new, va);
    assert_eq!(k.frame_of(p, new), frame);
    assert_eq!(
        k.vmas(p)
            .unwrap()
            .iter()
            .find(|v| v.start == new)
            .unwrap()
            .pgoff
            .0,
        1
    );
    for i in 0..3u64 {
        let off = ((1 + i) * PAGE + 7) as usize;
        assert_eq!(
            k.load_u8(p, new.add(i * PAGE + 7)).unwrap(),
            data[off],
            "file page {}",
            1 + i
        );
    }
    // Stores at the new address land at the right file offset.
    k.store(p, new.add(2 * PAGE), b"moved store").unwrap();
    k.msync(p, new, 3 * PAGE, MS_SYNC).unwrap();
    let disk = std::fs::read(&path).unwrap();
    assert_eq!(
        &disk[(3 * PAGE) as usize..(3 * PAGE + 11) as usize],
        b"moved store"
    );
    assert_eq!(disk.len(), data.len());
}

#[test]
fn moving_a_private_file_mapping_keeps_its_private_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (path, data) = make_file(dir.path(), 2);
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, BASE, 2 * PAGE, RW, MAP_PRIVATE | MAP_FIXED, fd, 0)
        .unwrap();
    anon_fixed(&mut k, p, va.add(2 * PAGE), PAGE, RW);
    k.store(p, va.add(PAGE), b"my copy").unwrap();

    let new = k
        .mremap(p, va, 2 * PAGE, 3 * PAGE, MREMAP_MAYMOVE, VirtAddr(0))
        .unwrap();
    assert_eq!(k.load_vec(p, new.add(PAGE), 7).unwrap(), b"my copy");
    assert_eq!(k.load_vec(p, new, 16).unwrap(), &data[..16]);
    // The third page lies past end of file.
    assert!(matches!(
        k.load_u8(p, new.add(2 * PAGE)),
        Err(Signal::Bus { .. })
    ));
    k.shutdown().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), data);
}

#[test]
fn mremap_fixed_moves_to_the_given_address_replacing_what_was_there() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon_fixed(&mut k, p, BASE, 2 * PAGE, RW);
    k.store(p, va.add(1), b"travelling").unwrap();
    let dst = VirtAddr(BASE.0 + 0x10_0000);
    anon_fixed(&mut k, p, dst, 4 * PAGE, PROT_READ);

    let got = k
        .mremap(
            p,
            va,
            2 * PAGE,
            2 * PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            dst,
        )
        .unwrap();
    assert_eq!(got, dst);
    assert_eq!(k.load_vec(p, dst.add(1), 10).unwrap(), b"travelling");
    k.store_u8(p, dst, 1).unwrap();
    assert_eq!(k.load_u8(p, va), Err(maperr(va)));
    let layout: Vec<(u64, u64, i32)> = k
        .vmas(p)
        .unwrap()
        .iter()
        .map(|v| (v.start.0, v.end.0, v.prot))
        .collect();
    assert_eq!(
        layout,
        vec![
            (dst.0, dst.0 + 2 * PAGE, RW),
            (dst.0 + 2 * PAGE, dst.0 + 4 * PAGE, PROT_READ)
        ],
        "the moved VMA replaced the first two pages of the old one"
    );

    // MREMAP_FIXED needs MREMAP_MAYMOVE, an aligned destination and no overlap.
    assert_eq!(
        k.mremap(p, dst, PAGE, PAGE, MREMAP_FIXED, BASE),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.mremap(
            p,
            dst,
            PAGE,
            PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            VirtAddr(BASE.0 + 1)
        ),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.mremap(
            p,
            dst,
            2 * PAGE,
            2 * PAGE,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            dst.add(PAGE)
        ),
        Err(Errno::EINVAL)
    );
}

#[test]
fn shrinking_unmaps_the_tail_and_keeps_the_rest() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon_fixed(&mut k, p, BASE, 4 * PAGE, RW);
    for i in 0..4 {
        k.store_u64(p, va.add(i * PAGE), 50 + i).unwrap();
    }
    let used = k.frames_in_use();
    let got = k.mremap(p, va, 4 * PAGE, PAGE + 1, 0, VirtAddr(0)).unwrap();
    assert_eq!(got, va);
    assert_eq!(k.frames_in_use(), used - 2, "the tail's frames were freed");
    assert_eq!(k.load_u64(p, va).unwrap(), 50);
    assert_eq!(
        k.load_u64(p, va.add(PAGE)).unwrap(),
        51,
        "new_len rounds up to pages"
    );
    assert_eq!(
        k.load_u64(p, va.add(2 * PAGE)),
        Err(maperr(va.add(2 * PAGE)))
    );
    let v = k.vmas(p).unwrap();
    assert_eq!((v.len(), v[0].end), (1, va.add(2 * PAGE)));

    // Growing back in place brings zero pages, not the old data.
    k.mremap(p, va, 2 * PAGE, 4 * PAGE, 0, VirtAddr(0)).unwrap();
    assert_eq!(k.load_u64(p, va.add(3 * PAGE)).unwrap(), 0);

    // An unmapped old address is EFAULT.
    assert_eq!(
        k.mremap(
            p,
            VirtAddr(0x10_0000),
            PAGE,
            2 * PAGE,
            MREMAP_MAYMOVE,
            VirtAddr(0)
        ),
        Err(Errno::EFAULT)
    );
}
