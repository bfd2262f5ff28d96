//! The two segmented translation modes: pure segmentation (physical = base + offset after
//! the limit check; mmap allocates a contiguous segment) and segment-plus-paging (the
//! segment gives a linear address that the page tables translate, with demand paging).
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::config::TranslationMode;
use vmem::consts::*;
use vmem::events::{Event, Recorder};
use vmem::hw::segment::logical;
use vmem::{Errno, Kernel, MachineConfig, SegvCode, Signal, VirtAddr};

fn machine(mode: TranslationMode) -> Kernel {
    Kernel::new(MachineConfig {
        translation: mode,
        ..MachineConfig::default()
    })
}

#[test]
fn pure_segmentation_is_base_plus_offset_within_the_limit() {
    let mut k = machine(TranslationMode::Segmentation);
    let p = k.spawn().unwrap();
    let before = k.frames_in_use();
    let a = k
        .mmap(
            p,
            VirtAddr(0),
            3 * 4096,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    let b = k
        .mmap(
            p,
            VirtAddr(0),
            4096,
            PROT_READ,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    assert_eq!(a, VirtAddr(logical(1, 0)));
    assert_eq!(b, VirtAddr(logical(2, 0)));
    // The whole segment is allocated at once, physically contiguous.
    assert_eq!(k.frames_in_use(), before + 4);
    let segs = k.segments(p).unwrap();
    let base = segs[1].as_ref().unwrap().desc.base;
    // A table of logical addresses and where they must land.
    let table: [(u64, Result<u64, SegvCode>); 6] = [
        (logical(1, 0), Ok(base)),
        (logical(1, 0x1234), Ok(base + 0x1234)),
        (logical(1, 3 * 4096 - 1), Ok(base + 3 * 4096 - 1)),
        (logical(1, 3 * 4096), Err(SegvCode::AccErr)),
        (logical(7, 0), Err(SegvCode::MapErr)),
        (logical(0, 0), Err(SegvCode::MapErr)),
    ];
    for (la, want) in table {
        // Watch the segmentation unit: the address it produced is what is checked.
        let rec = Recorder::default();
        let events = rec.events.clone();
        k.set_observer(Some(Box::new(rec)));
        let got = k.store_u8(p, VirtAddr(la), 0x5a).map_err(|s| match s {
            Signal::Segv { code, .. } => code,
            other => panic!("{other:?}"),
        });
        k.set_observer(None);
        let produced = events.borrow().iter().find_map(|e| match e {
            Event::SegmentTranslate { result, .. } => Some(*result),
            _ => None,
        });
        match want {
            Ok(pa) => {
                assert!(got.is_ok(), "{la:#x}");
                assert_eq!(produced, Some(Ok(pa)), "{la:#x} must land at base + offset");
                assert_eq!(k.load_u8(p, VirtAddr(la)).unwrap(), 0x5a);
            }
            Err(code) => {
                assert_eq!(got, Err(code), "{la:#x}");
                assert!(matches!(produced, None | Some(Err(_))), "{la:#x}");
            }
        }
    }
    // Protection is the segment's.
    assert!(matches!(
        k.store_u8(p, b, 1),
        Err(Signal::Segv {
            code: SegvCode::AccErr,
            ..
        })
    ));
    k.mprotect(p, b, 4096, PROT_READ | PROT_WRITE).unwrap();
    k.store_u8(p, b, 1).unwrap();
    // munmap frees the whole segment.
    k.munmap(p, a, 3 * 4096).unwrap();
    assert_eq!(k.frames_in_use(), before + 1);
    assert!(k.load_u8(p, a).is_err());
    // Calls that need pages are not there.
    assert_eq!(
        k.mremap(p, b, 4096, 8192, MREMAP_MAYMOVE, VirtAddr(0)),
        Err(Errno::ENOSYS)
    );
    assert_eq!(k.fork(p), Err(Errno::ENOSYS));
}

#[test]
fn a_file_segment_is_loaded_whole_and_written_back_at_msync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seg.bin");
    std::fs::write(&path, b"segment data on disk").unwrap();
    let mut k = machine(TranslationMode::Segmentation);
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let s = k
        .mmap(
            p,
            VirtAddr(0),
            4096,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    let priv_ = k
        .mmap(
            p,
            VirtAddr(0),
            4096,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE,
            fd,
            0,
        )
        .unwrap();
    assert_eq!(k.load_vec(p, s, 7).unwrap(), b"segment");
    assert_eq!(
        k.process_stats(p).unwrap().faults(),
        0,
        "no page faults: the segment was loaded whole"
    );
    k.store(p, s, b"SEGMENT").unwrap();
    k.store(p, priv_.add(8), b"PRIVATE").unwrap();
    k.msync(p, s, 4096, MS_SYNC).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"SEGMENT data on disk");
    k.munmap(p, priv_, 4096).unwrap();
    k.shutdown().unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"SEGMENT data on disk",
        "private writes never reach the file"
    );
}

#[test]
fn segment_plus_paging_translates_twice_and_pages_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.bin");
    let data: Vec<u8> = (0..4 * 4096).map(|i| (i / 4096) as u8 + b'a').collect();
    std::fs::write(&path, &data).unwrap();
    let mut k = machine(TranslationMode::SegmentPaging);
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let la = k
        .mmap(p, VirtAddr(0), 4 * 4096, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    assert_eq!(la, VirtAddr(logical(1, 0)));
    let linear = k.segments(p).unwrap()[1].as_ref().unwrap().desc.base;
    // The linear range is an ordinary VMA; nothing is loaded until touched.
    assert!(k.vmas(p).unwrap().iter().any(|v| v.start.0 == linear));
    assert_eq!(k.stats().disk_reads, 0);
    assert_eq!(k.load_u8(p, la.add(2 * 4096)).unwrap(), b'c');
    assert_eq!(
        k.stats().major_faults,
        1,
        "the page table missed and the page was read"
    );
    // The physical frame is the one the page tables give for the linear address.
    assert!(k.frame_of(p, VirtAddr(linear + 2 * 4096)).is_some());
    assert!(matches!(
        k.load_u8(p, la.add(4 * 4096)),
        Err(Signal::Segv {
            code: SegvCode::AccErr,
            ..
        })
    ));
    assert_eq!(k.mincore(p, la, 4 * 4096).unwrap().len(), 4);
    k.munmap(p, la, 4 * 4096).unwrap();
    assert!(k.vmas(p).unwrap().is_empty());
}
