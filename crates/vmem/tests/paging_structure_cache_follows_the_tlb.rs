//! The MMU of the default machine keeps the leaf tables its walks found, by 2 MiB region (a
//! paging-structure cache, like Intel's PDE cache), and skips the upper levels for a later
//! page of one of those regions. Every TLB flush empties it, so no change the kernel makes to the tables
//! (munmap, mprotect, mremap, fork, huge pages made, split and zapped) can leave a stale
//! path behind: accesses give the same values, signals, counters and page-table bits as on
//! a machine whose walks are watched (an observer takes the full walk, without the cache).
// The cache belongs to the default x86-64 machine of the 4 KiB build.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::consts::*;
use vmem::events::Recorder;
use vmem::{Kernel, MachineConfig, Pid, VirtAddr, PAGE_SIZE};

const MIB2: u64 = 2 << 20;
/// 2 MiB aligned, so that regions line up with PMD entries.
const BASE: VirtAddr = VirtAddr(0x4000_0000);

fn anon_at(k: &mut Kernel, p: Pid, at: VirtAddr, len: u64) -> Result<VirtAddr, vmem::Errno> {
    k.mmap(
        p,
        at,
        len,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
        -1,
        0,
    )
}

/// One page of each 2 MiB region touched in order, then a spot check: loads and stores
/// whose results (values or signals) are recorded.
fn sweep(k: &mut Kernel, p: Pid, seen: &mut Vec<String>, tag: u64) {
    for region in 0..4u64 {
        for pg in [0u64, 1, 2, 255, 256, 511] {
            let at = BASE.add(region * MIB2 + pg * PAGE_SIZE + 8 * (tag % 7));
            seen.push(format!("{:?}", k.load_u64(p, at)));
            if (pg + tag) % 3 == 0 {
                seen.push(format!("{:?}", k.store_u64(p, at, tag * 1000 + pg)));
            }
        }
        seen.push(format!("{:?}", k.pmd_of(p, BASE.add(region * MIB2))));
    }
}

fn workload(k: &mut Kernel) -> Vec<String> {
    let mut seen = Vec::new();
    let p = k.spawn().unwrap();
    // Four 2 MiB regions: two in 4 KiB pages, two that may get huge pages.
    anon_at(k, p, BASE, 4 * MIB2).unwrap();
    k.madvise(p, BASE.add(2 * MIB2), 2 * MIB2, MADV_HUGEPAGE)
        .unwrap();
    sweep(k, p, &mut seen, 1);
    // munmap: a page, then a whole region; then the hole is mapped again.
    k.munmap(p, BASE.add(PAGE_SIZE), PAGE_SIZE).unwrap();
    sweep(k, p, &mut seen, 2);
    k.munmap(p, BASE.add(MIB2), MIB2).unwrap();
    sweep(k, p, &mut seen, 3);
    anon_at(k, p, BASE.add(MIB2), MIB2).unwrap();
    sweep(k, p, &mut seen, 4);
    // mprotect: read-only, then PROT_NONE, across a 4 KiB region and a huge page (split).
    k.mprotect(p, BASE.add(MIB2 / 2), MIB2, PROT_READ).unwrap();
    sweep(k, p, &mut seen, 5);
    k.mprotect(
        p,
        BASE.add(2 * MIB2 + 100 * PAGE_SIZE),
        PAGE_SIZE * 3,
        PROT_NONE,
    )
    .unwrap();
    sweep(k, p, &mut seen, 6);
    // (Page 1 is still a hole.)
    k.mprotect(
        p,
        BASE.add(2 * PAGE_SIZE),
        4 * MIB2 - 2 * PAGE_SIZE,
        PROT_READ | PROT_WRITE,
    )
    .unwrap();
    sweep(k, p, &mut seen, 7);
    // munmap of a whole huge page (zapped without a split), and a new one in its place.
    k.munmap(p, BASE.add(3 * MIB2), MIB2).unwrap();
    sweep(k, p, &mut seen, 8);
    anon_at(k, p, BASE.add(3 * MIB2), MIB2).unwrap();
    k.madvise(p, BASE.add(3 * MIB2), MIB2, MADV_HUGEPAGE)
        .unwrap();
    sweep(k, p, &mut seen, 9);
    // mremap: move region 0 over region 1, then grow it back where it was.
    let moved = k
        .mremap(
            p,
            BASE,
            MIB2,
            MIB2,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            BASE.add(MIB2),
        )
        .unwrap();
    seen.push(format!("{moved:?}"));
    sweep(k, p, &mut seen, 10);
    anon_at(k, p, BASE, MIB2).unwrap();
    sweep(k, p, &mut seen, 11);
    // fork: the child writes (copy-on-write, huge pages split in the parent), both read.
    let c = k.fork(p).unwrap();
    sweep(k, c, &mut seen, 12);
    sweep(k, p, &mut seen, 13);
    k.exit(c).unwrap();
    sweep(k, p, &mut seen, 14);
    // Region 1 (4 KiB pages) is unmapped, its table left behind empty, and a hugetlb
    // page takes its place: the PMD goes from that table to none to a huge page, while
    // the cache may still hold the other regions' tables.
    k.munmap(p, BASE.add(MIB2), MIB2).unwrap();
    sweep(k, p, &mut seen, 15);
    let huge = k.mmap(
        p,
        BASE.add(MIB2),
        MIB2,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_HUGETLB,
        -1,
        0,
    );
    seen.push(format!("{huge:?}"));
    sweep(k, p, &mut seen, 16);
    seen.push(format!("{:?}", k.process_stats(p)));
    for pg in 0..4 * MIB2 / PAGE_SIZE {
        let at = BASE.add(pg * PAGE_SIZE);
        seen.push(format!("{pg} {:?} {:?}", k.pte_of(p, at), k.pmd_of(p, at)));
    }
    seen
}

#[test]
fn translations_after_munmap_mprotect_mremap_and_fork_match_a_watched_machine() {
    let cfg = || MachineConfig {
        nr_hugepages: 2,
        ..MachineConfig::with_ram(64 << 20)
    };
    let mut unwatched = Kernel::new(cfg());
    let mut watched = Kernel::new(cfg());
    watched.set_observer(Some(Box::new(Recorder::default())));
    let u = workload(&mut unwatched);
    let w = workload(&mut watched);
    assert_eq!(u.len(), w.len());
    for (i, (u, w)) in u.iter().zip(&w).enumerate() {
        assert_eq!(u, w, "record {i}");
    }
    // The workload saw values, both kinds of signal, and huge pages.
    assert!(u.iter().any(|l| l.contains("MapErr")), "no SIGSEGV MAPERR");
    assert!(u.iter().any(|l| l.contains("AccErr")), "no SIGSEGV ACCERR");
    assert!(u.iter().any(|l| l.contains("2 MiB page")), "no huge page");
    assert!(u.iter().any(|l| l == "Ok(0x40200000)"), "no hugetlb page");
    assert!(u
        .iter()
        .any(|l| l.starts_with("Ok(") && l != "Ok(0)" && l != "Ok(())"));
}

#[test]
fn a_region_mapped_again_reads_its_new_contents() {
    let mut k = Kernel::new(MachineConfig::with_ram(32 << 20));
    let p = k.spawn().unwrap();
    anon_at(&mut k, p, BASE, MIB2).unwrap();
    for pg in 0..4 {
        k.store_u64(p, BASE.add(pg * PAGE_SIZE), pg + 1).unwrap();
    }
    // The next page of the same region walks from the cached leaf table.
    assert_eq!(k.load_u64(p, BASE.add(4 * PAGE_SIZE)).unwrap(), 0);
    k.munmap(p, BASE, MIB2).unwrap();
    assert!(k.load_u64(p, BASE.add(PAGE_SIZE)).is_err());
    anon_at(&mut k, p, BASE, MIB2).unwrap();
    for pg in 0..6 {
        assert_eq!(
            k.load_u64(p, BASE.add(pg * PAGE_SIZE)).unwrap(),
            0,
            "page {pg}"
        );
    }

    // A huge page replaced by 4 KiB pages: its PMD goes from the huge page to none to a
    // new table.
    let huge = BASE.add(MIB2);
    anon_at(&mut k, p, huge, MIB2).unwrap();
    k.madvise(p, huge, MIB2, MADV_HUGEPAGE).unwrap();
    k.store_u64(p, huge.add(5 * PAGE_SIZE), 77).unwrap();
    assert!(k.pmd_of(p, huge).huge(), "{}", k.pmd_of(p, huge));
    assert_eq!(k.load_u64(p, huge.add(5 * PAGE_SIZE)).unwrap(), 77);
    k.munmap(p, huge, MIB2).unwrap();
    anon_at(&mut k, p, huge, MIB2).unwrap();
    k.store_u64(p, huge.add(6 * PAGE_SIZE), 88).unwrap();
    assert!(!k.pmd_of(p, huge).huge());
    assert_eq!(k.load_u64(p, huge.add(5 * PAGE_SIZE)).unwrap(), 0);
    assert_eq!(k.load_u64(p, huge.add(6 * PAGE_SIZE)).unwrap(), 88);
    // And back to the first region, whose table the cache no longer holds.
    assert_eq!(k.load_u64(p, BASE.add(3 * PAGE_SIZE)).unwrap(), 0);
}

#[test]
fn a_reused_address_space_id_does_not_walk_through_the_old_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ones");
    std::fs::write(&path, vec![0x11u8; 64 * PAGE_SIZE as usize]).unwrap();
    let mut k = Kernel::new(MachineConfig::with_ram(16 << 20));
    // The file's pages are in the page cache before anything else is freed.
    let loader = k.spawn().unwrap();
    let fd = k.open(loader, &path, O_RDONLY, 0).unwrap();
    assert_eq!(
        k.read(loader, fd, 64 * PAGE_SIZE as usize).unwrap().len(),
        64 * 4096
    );

    let a = k.spawn().unwrap();
    anon_at(&mut k, a, BASE, MIB2).unwrap();
    k.store_u64(a, BASE, 1).unwrap();
    // The last walk went through A's leaf table for BASE's region; A exits, its tables
    // are freed, and the ASIDs wrap around until a process gets A's again.
    let asid = k.mm(a).unwrap().asid;
    k.exit(a).unwrap();
    let mut b = k.spawn().unwrap();
    for _ in 0..u16::MAX as usize + 1 {
        if k.mm(b).unwrap().asid == asid {
            break;
        }
        k.exit(b).unwrap();
        b = k.spawn().unwrap();
    }
    assert_eq!(k.mm(b).unwrap().asid, asid, "ASIDs did not wrap");
    // A's freed frames become another process's tables, full of present entries (made
    // without a single access: MAP_POPULATE).
    let other = k.spawn().unwrap();
    let fd = k.open(other, &path, O_RDONLY, 0).unwrap();
    for i in 0..4 {
        k.mmap(
            other,
            VirtAddr(0x8000_0000 + i * MIB2),
            64 * PAGE_SIZE,
            PROT_READ,
            MAP_SHARED | MAP_POPULATE | MAP_FIXED,
            fd,
            0,
        )
        .unwrap();
    }
    // B's first access walks B's own (empty) tables: a fault, then zeros.
    anon_at(&mut k, b, BASE, MIB2).unwrap();
    assert_eq!(k.load_u64(b, BASE.add(8)).unwrap(), 0);
    assert_eq!(k.load_u64(b, BASE.add(PAGE_SIZE)).unwrap(), 0);
    k.store_u64(b, BASE.add(2 * PAGE_SIZE), 5).unwrap();
    assert_eq!(k.load_u64(b, BASE.add(2 * PAGE_SIZE)).unwrap(), 5);
    assert_eq!(
        k.load_u64(other, VirtAddr(0x8000_0000)).unwrap(),
        0x1111_1111_1111_1111
    );
}
