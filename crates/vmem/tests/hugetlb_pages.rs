//! MAP_HUGETLB: 2 MiB pages from a pool set aside in advance (`vm.nr_hugepages`). A
//! mapping reserves its pages at mmap time (ENOMEM when the pool cannot promise them,
//! unless MAP_NORESERVE, where a fault with no page left is SIGBUS); the first touch maps a
//! whole zeroed 2 MiB page with one PMD entry; unmapping gives it back to the pool. The
//! pool counters and the errno values are those Linux 6.18 gave for the same calls
//! (measured with `echo 4 > /proc/sys/vm/nr_hugepages`).
// Written with the default build's 4 KiB pages and 2 MiB huge pages in its numbers: it
// runs in that build; tests/page_sizes.rs covers the 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::config::{MachineConfig, PagingGeometry};
use vmem::consts::*;
use vmem::mm::hugetlb::HugePagesInfo;
use vmem::{BusCode, Errno, Kernel, Pid, SegvCode, Signal, VirtAddr};

const PAGE: u64 = 4096;
const H: u64 = 2 << 20;
const RW: i32 = PROT_READ | PROT_WRITE;
const ANON_HUGE: i32 = MAP_ANONYMOUS | MAP_HUGETLB;

fn machine(nr_hugepages: u64) -> (Kernel, Pid) {
    let mut k = Kernel::new(MachineConfig {
        ram_bytes: 64 << 20,
        nr_hugepages,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    (k, p)
}

/// (Total, Free, Rsvd, Surp) as /proc/meminfo shows them.
fn pool(k: &Kernel) -> (u64, u64, u64, u64) {
    let HugePagesInfo {
        total,
        free,
        rsvd,
        surp,
        ..
    } = k.huge_pages_info();
    (total, free, rsvd, surp)
}

fn map(k: &mut Kernel, p: Pid, len: u64, flags: i32) -> Result<VirtAddr, Errno> {
    k.mmap(p, VirtAddr(0), len, RW, ANON_HUGE | flags, -1, 0)
}

fn sigbus_at(va: VirtAddr) -> Signal {
    Signal::Bus {
        addr: va,
        code: BusCode::AdrErr,
    }
}

#[test]
fn without_a_pool_map_hugetlb_is_enomem_and_noreserve_faults_sigbus() {
    let (mut k, p) = machine(0);
    assert_eq!(pool(&k), (0, 0, 0, 0));
    assert_eq!(map(&mut k, p, H, MAP_PRIVATE), Err(Errno::ENOMEM));
    assert_eq!(map(&mut k, p, H, MAP_SHARED), Err(Errno::ENOMEM));
    let a = map(&mut k, p, H, MAP_PRIVATE | MAP_NORESERVE).unwrap();
    assert_eq!(k.store_u8(p, a.add(5), 1), Err(sigbus_at(a.add(5))));
    k.check_invariants().unwrap();
}

#[test]
fn the_pool_is_set_aside_at_boot_and_grows_and_shrinks_at_run_time() {
    let (mut k, _p) = machine(4);
    let free0 = k.free_frames();
    assert_eq!(pool(&k), (4, 4, 0, 0));
    assert_eq!(k.huge_pages_info().page_size, H);
    assert_eq!(k.nr_hugepages(), 4);
    assert_eq!(k.set_nr_hugepages(6), 6);
    assert_eq!(
        k.free_frames(),
        free0 - 2 * 512,
        "two more 2 MiB runs taken"
    );
    assert_eq!(k.set_nr_hugepages(1), 1);
    assert_eq!(pool(&k), (1, 1, 0, 0));
    assert_eq!(k.free_frames(), free0 + 3 * 512);
    // A pool larger than RAM gets what RAM has, softly.
    let got = k.set_nr_hugepages(1000);
    assert!(
        got > 1 && got < 32,
        "64 MiB of RAM holds fewer than 32 huge pages: {got}"
    );
    assert_eq!(pool(&k), (got, got, 0, 0));
    k.check_invariants().unwrap();
    println!("{}", k.huge_pages_info());
}

#[test]
fn length_is_rounded_up_address_aligned_and_pages_reserved_at_mmap() {
    let (mut k, p) = machine(4);
    let a = map(&mut k, p, 1, MAP_PRIVATE).unwrap();
    assert_eq!(a.0 % H, 0, "{a}");
    let v = k.vmas(p).unwrap();
    assert_eq!(v[0].len(), H);
    assert!(k.maps(p).unwrap().contains("/anon_hugepage (deleted)"));
    assert_eq!(pool(&k), (4, 4, 1, 0), "reserved, nothing used yet");
    // A read fault takes a page from the pool too (there is no huge zero page).
    assert_eq!(k.load_u8(p, a.add(100)).unwrap(), 0);
    assert_eq!(pool(&k), (4, 3, 0, 0));
    // A hint is rounded up to a huge-page boundary; MAP_FIXED off one is EINVAL.
    let hint = VirtAddr(0x7e00_0000_1000);
    let b = k
        .mmap(p, hint, H, RW, ANON_HUGE | MAP_PRIVATE, -1, 0)
        .unwrap();
    assert_eq!(b, VirtAddr(0x7e00_0020_0000));
    assert_eq!(
        k.mmap(p, hint, H, RW, ANON_HUGE | MAP_PRIVATE | MAP_FIXED, -1, 0),
        Err(Errno::EINVAL)
    );
    k.check_invariants().unwrap();
}

#[test]
fn bad_sizes_flags_and_offsets_get_linux_errnos() {
    let (mut k, p) = machine(4);
    assert_eq!(map(&mut k, p, 0, MAP_PRIVATE), Err(Errno::EINVAL));
    assert_eq!(map(&mut k, p, u64::MAX, MAP_PRIVATE), Err(Errno::EINVAL));
    assert_eq!(
        map(&mut k, p, H, MAP_PRIVATE | MAP_HUGE_1GB),
        Err(Errno::EINVAL),
        "only the 2 MiB pool exists"
    );
    assert_eq!(
        map(&mut k, p, H, MAP_PRIVATE | (20 << MAP_HUGE_SHIFT)),
        Err(Errno::EINVAL)
    );
    assert!(map(&mut k, p, H, MAP_PRIVATE | MAP_HUGE_2MB).is_ok());
    assert_eq!(map(&mut k, p, H, 0x08), Err(Errno::EINVAL), "MAP_DROPPABLE");
    assert_eq!(
        map(&mut k, p, H, MAP_PRIVATE | MAP_GROWSDOWN),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        map(&mut k, p, H, MAP_SHARED_VALIDATE | MAP_SYNC),
        Err(Errno::EOPNOTSUPP)
    );
    assert!(map(&mut k, p, H, MAP_SHARED_VALIDATE).is_ok());
    // The offset of the hugetlbfs file is in whole huge pages.
    assert_eq!(
        k.mmap(p, VirtAddr(0), H, RW, ANON_HUGE | MAP_PRIVATE, -1, 4096),
        Err(Errno::EINVAL)
    );
    let a = k
        .mmap(p, VirtAddr(0), H, RW, ANON_HUGE | MAP_PRIVATE, -1, H as i64)
        .unwrap();
    assert!(k.maps(p).unwrap().contains(&format!("{:08x}-", a.0)));
    assert!(k.maps(p).unwrap().contains(" 00200000 "));
    // A file that is not on hugetlbfs.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    assert_eq!(
        k.mmap(p, VirtAddr(0), H, RW, MAP_PRIVATE | MAP_HUGETLB, fd, 0),
        Err(Errno::EINVAL)
    );
    k.check_invariants().unwrap();
}

#[test]
fn one_fault_maps_a_zeroed_2mib_page_with_its_pmd() {
    let (mut k, p) = machine(2);
    // Dirty both pool pages through one mapping, then give them back.
    let a = map(&mut k, p, 2 * H, MAP_PRIVATE).unwrap();
    for i in 0..2 * H / PAGE {
        k.store_u8(p, a.add(i * PAGE + 7), 0xab).unwrap();
    }
    k.munmap(p, a, 2 * H).unwrap();
    assert_eq!(pool(&k), (2, 2, 0, 0));

    let b = map(&mut k, p, H, MAP_PRIVATE).unwrap();
    let f0 = k.process_stats(p).unwrap().faults();
    k.store_u64(p, b.add(8), 0xfeed).unwrap();
    for i in 0..512 {
        assert_eq!(k.load_u8(p, b.add(i * PAGE + 7)).unwrap(), 0, "zeroed page");
    }
    assert_eq!(
        k.process_stats(p).unwrap().faults() - f0,
        1,
        "one fault for 2 MiB"
    );
    let pmd = k.pmd_of(p, b);
    assert!(pmd.huge() && pmd.writable(), "{pmd}");
    assert_eq!(pmd.pfn().0 % 512, 0);
    assert_eq!(
        k.frame_of(p, b.add(300 * PAGE)).unwrap().0,
        pmd.pfn().0 + 300
    );
    assert_eq!(k.load_u64(p, b.add(8)).unwrap(), 0xfeed);
    assert_eq!(k.mincore(p, b, H).unwrap(), vec![1u8; 512]);
    // Hugetlb pages are not part of the RSS (Linux shows them as HugetlbPages).
    assert_eq!(k.mm(p).unwrap().rss_anon, 0);
    k.check_invariants().unwrap();
}

#[test]
fn reservations_are_enomem_at_mmap_and_noreserve_is_sigbus_at_fault() {
    let (mut k, p) = machine(4);
    let r = map(&mut k, p, 3 * H, MAP_PRIVATE).unwrap();
    assert_eq!(pool(&k), (4, 4, 3, 0));
    assert_eq!(map(&mut k, p, 2 * H, MAP_PRIVATE), Err(Errno::ENOMEM));
    assert_eq!(map(&mut k, p, 2 * H, MAP_SHARED), Err(Errno::ENOMEM));
    assert_eq!(pool(&k), (4, 4, 3, 0), "a refused mmap reserves nothing");
    // MAP_NORESERVE maps anyway; its faults take only pages nobody was promised.
    let n = map(&mut k, p, 5 * H, MAP_PRIVATE | MAP_NORESERVE).unwrap();
    assert_eq!(pool(&k), (4, 4, 3, 0));
    k.store_u8(p, n, 1).unwrap();
    assert_eq!(pool(&k), (4, 3, 3, 0));
    let second = n.add(H + 3);
    assert_eq!(k.store_u8(p, second, 1), Err(sigbus_at(second)));
    // The reserved mapping still gets all three of its pages.
    for i in 0..3 {
        k.store_u8(p, r.add(i * H), 1).unwrap();
    }
    assert_eq!(pool(&k), (4, 0, 0, 0));
    k.munmap(p, n, 5 * H).unwrap();
    k.munmap(p, r, 3 * H).unwrap();
    assert_eq!(pool(&k), (4, 4, 0, 0), "munmap returns every page");
    k.check_invariants().unwrap();
}

#[test]
fn munmap_mprotect_and_madvise_work_in_whole_huge_pages() {
    let (mut k, p) = machine(4);
    let a = map(&mut k, p, 2 * H, MAP_PRIVATE).unwrap();
    // Linux does not round a hugetlb munmap: a cut inside a huge page is EINVAL.
    for (addr, len) in [
        (a.add(PAGE), PAGE),
        (a, PAGE),
        (a, H + PAGE),
        (a.add(H), PAGE),
    ] {
        assert_eq!(k.munmap(p, addr, len), Err(Errno::EINVAL), "{addr} {len}");
    }
    assert_eq!(k.mprotect(p, a, PAGE, PROT_READ), Err(Errno::EINVAL));
    assert_eq!(k.mprotect(p, a.add(PAGE), H, PROT_READ), Err(Errno::EINVAL));
    // The same protection splits nothing: no error.
    assert_eq!(k.mprotect(p, a, PAGE, RW), Ok(()));
    assert_eq!(
        k.madvise(p, a.add(PAGE), PAGE, MADV_DONTFORK),
        Err(Errno::EINVAL)
    );
    for adv in [MADV_FREE, MADV_COLD, MADV_PAGEOUT, MADV_WIPEONFORK] {
        assert_eq!(k.madvise(p, a, H, adv), Err(Errno::EINVAL), "{adv}");
    }
    assert_eq!(k.madvise(p, a, H, MADV_REMOVE), Err(Errno::EACCES));
    assert_eq!(
        k.madvise(p, a.add(PAGE), PAGE, MADV_DONTNEED),
        Err(Errno::EINVAL)
    );

    k.store_u8(p, a, 1).unwrap();
    k.store_u8(p, a.add(H), 2).unwrap();
    assert_eq!(pool(&k), (4, 2, 0, 0));
    // DONTNEED's end is rounded down: less than a huge page drops nothing.
    k.madvise(p, a, PAGE, MADV_DONTNEED).unwrap();
    assert_eq!(k.load_u8(p, a).unwrap(), 1);
    // The owner of a private mapping gets the freed page's reservation back.
    k.madvise(p, a, H + PAGE, MADV_DONTNEED).unwrap();
    assert_eq!(pool(&k), (4, 3, 1, 0));
    assert_eq!(k.load_u8(p, a).unwrap(), 0, "a fresh zeroed page");
    assert_eq!(k.load_u8(p, a.add(H)).unwrap(), 2, "the second page kept");
    assert_eq!(pool(&k), (4, 2, 0, 0));

    // Whole huge pages split fine.
    k.mprotect(p, a, H, PROT_READ).unwrap();
    assert_eq!(k.vmas(p).unwrap().len(), 2);
    let va = a.add(10);
    assert_eq!(
        k.store_u8(p, va, 9),
        Err(Signal::Segv {
            addr: va,
            code: SegvCode::AccErr
        })
    );
    k.mprotect(p, a, H, PROT_NONE).unwrap();
    assert!(k.load_u8(p, a).is_err());
    k.mprotect(p, a, 2 * H, RW).unwrap();
    // Linux does not merge hugetlb areas back (two lines in /proc/pid/maps).
    let v = k.vmas(p).unwrap();
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|v| v.prot == RW));
    k.store_u8(p, a, 5).unwrap();
    assert_eq!(k.load_u8(p, a).unwrap(), 5);
    k.munmap(p, a.add(H), H).unwrap();
    assert_eq!(pool(&k), (4, 3, 0, 0));
    // A length past the area's end needs no split.
    k.munmap(p, a, 3 * H).unwrap();
    assert_eq!(pool(&k), (4, 4, 0, 0));
    k.check_invariants().unwrap();
}

#[test]
fn mremap_moves_and_shrinks_in_huge_pages_and_never_grows() {
    let (mut k, p) = machine(4);
    let a = map(&mut k, p, 2 * H, MAP_PRIVATE).unwrap();
    k.store_u64(p, a.add(H + 8), 77).unwrap();
    assert_eq!(
        k.mremap(p, a, H, 2 * H, MREMAP_MAYMOVE, VirtAddr(0)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.mremap(
            p,
            a,
            2 * H,
            2 * H,
            MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
            VirtAddr(0)
        ),
        Err(Errno::EINVAL)
    );
    // Shrink: the tail page goes back to the pool.
    k.store_u8(p, a, 1).unwrap();
    assert_eq!(k.mremap(p, a, 2 * H, PAGE, 0, VirtAddr(0)), Ok(a));
    assert_eq!(pool(&k), (4, 3, 0, 0));
    k.store_u64(p, a.add(8), 66).unwrap();
    // Move: to an unaligned address EINVAL; to an aligned one the page goes along.
    assert_eq!(
        k.mremap(
            p,
            a,
            H,
            H,
            MREMAP_MAYMOVE | MREMAP_FIXED,
            VirtAddr(0x7f00_0000_1000)
        ),
        Err(Errno::EINVAL)
    );
    let to = VirtAddr(0x7f00_0000_0000);
    let frame = k.frame_of(p, a).unwrap();
    assert_eq!(
        k.mremap(p, a, H, H, MREMAP_MAYMOVE | MREMAP_FIXED, to),
        Ok(to)
    );
    assert_eq!(k.frame_of(p, to), Some(frame), "moved, not copied");
    assert!(k.pmd_of(p, to).huge());
    assert_eq!(k.load_u64(p, to.add(8)).unwrap(), 66);
    assert!(k.load_u8(p, a).is_err());
    k.munmap(p, to, H).unwrap();
    assert_eq!(pool(&k), (4, 4, 0, 0));
    k.check_invariants().unwrap();
}

#[test]
fn fork_shares_private_pages_copy_on_write_in_2mib() {
    let (mut k, p) = machine(4);
    let a = map(&mut k, p, H, MAP_PRIVATE).unwrap();
    k.store_u64(p, a, 1).unwrap();
    assert_eq!(pool(&k), (4, 3, 0, 0));
    let c = k.fork(p).unwrap();
    assert_eq!(k.frame_of(c, a), k.frame_of(p, a), "shared after fork");
    assert!(!k.pmd_of(p, a).writable() && !k.pmd_of(c, a).writable());
    // The child's write copies the 2 MiB into a page from the pool.
    k.store_u64(c, a.add(8), 2).unwrap();
    assert_eq!(pool(&k), (4, 2, 0, 0));
    assert_ne!(k.frame_of(c, a), k.frame_of(p, a));
    assert_eq!(k.load_u64(c, a).unwrap(), 1, "copied data");
    assert_eq!(
        k.load_u64(p, a.add(8)).unwrap(),
        0,
        "the parent does not see it"
    );
    assert_eq!(k.process_stats(c).unwrap().cow_faults, 1);
    k.exit(c).unwrap();
    assert_eq!(pool(&k), (4, 3, 0, 0));
    // The parent's page has no other user now: reused, not copied.
    k.store_u64(p, a.add(16), 3).unwrap();
    assert_eq!(pool(&k), (4, 3, 0, 0));
    k.check_invariants().unwrap();
}

#[test]
fn without_a_free_page_the_childs_copy_is_sigbus_and_the_owner_keeps_its_page() {
    let (mut k, p) = machine(2);
    let a = map(&mut k, p, 2 * H, MAP_PRIVATE).unwrap();
    k.store_u8(p, a, 5).unwrap();
    assert_eq!(pool(&k), (2, 1, 1, 0));
    let c = k.fork(p).unwrap();
    assert_eq!(k.load_u8(c, a).unwrap(), 5);
    // The only free page is the parent's reservation: the child cannot have it.
    assert_eq!(k.store_u8(c, a, 6), Err(sigbus_at(a)));
    let b = a.add(H);
    assert_eq!(
        k.load_u8(c, b),
        Err(sigbus_at(b)),
        "the child owns no reservation"
    );
    // The owner's own copy-on-write finds no page either: it takes the page back from
    // the child, whose next touch of the mapping is SIGBUS.
    k.store_u8(p, a, 7).unwrap();
    assert_eq!(k.load_u8(p, a).unwrap(), 7);
    assert_eq!(k.load_u8(c, a), Err(sigbus_at(a)));
    assert_eq!(pool(&k), (2, 1, 1, 0));
    k.store_u8(p, b, 1).unwrap();
    assert_eq!(pool(&k), (2, 0, 0, 0), "the reservation held");
    k.check_invariants().unwrap();
}

#[test]
fn shared_mappings_share_pages_across_fork_and_keep_them_after_dontneed() {
    let (mut k, p) = machine(4);
    let s = map(&mut k, p, H, MAP_SHARED).unwrap();
    assert_eq!(pool(&k), (4, 4, 1, 0));
    k.store_u8(p, s, 9).unwrap();
    assert_eq!(pool(&k), (4, 3, 0, 0));
    let c = k.fork(p).unwrap();
    k.store_u8(c, s.add(1), 10).unwrap();
    assert_eq!(
        k.load_u8(p, s.add(1)).unwrap(),
        10,
        "one page, both processes"
    );
    assert_eq!(pool(&k), (4, 3, 0, 0));
    k.exit(c).unwrap();
    // DONTNEED unmaps; the page stays in the file and comes back with its data.
    k.madvise(p, s, H, MADV_DONTNEED).unwrap();
    assert!(!k.pmd_of(p, s).present());
    assert_eq!(k.load_u8(p, s).unwrap(), 9);
    // MADV_REMOVE punches it out of the file: back to the pool, zeros next time.
    k.madvise(p, s, H, MADV_REMOVE).unwrap();
    assert_eq!(pool(&k), (4, 4, 0, 0));
    assert_eq!(k.load_u8(p, s).unwrap(), 0);
    k.munmap(p, s, H).unwrap();
    assert_eq!(pool(&k), (4, 4, 0, 0));
    k.check_invariants().unwrap();
}

#[test]
fn shrinking_below_the_pages_in_use_leaves_surplus_pages_freed_on_release() {
    // Linux: 3 reserved, 2 touched, then nr_hugepages=1: Total=3 Free=1 Rsvd=1 Surp=2.
    let (mut k, p) = machine(4);
    let a = map(&mut k, p, 3 * H, MAP_PRIVATE).unwrap();
    k.store_u8(p, a, 1).unwrap();
    k.store_u8(p, a.add(H), 1).unwrap();
    assert_eq!(pool(&k), (4, 2, 1, 0));
    assert_eq!(k.set_nr_hugepages(1), 1);
    assert_eq!(pool(&k), (3, 1, 1, 2));
    assert_eq!(k.set_nr_hugepages(0), 0);
    assert_eq!(pool(&k), (3, 1, 1, 3));
    assert_eq!(map(&mut k, p, H, MAP_PRIVATE), Err(Errno::ENOMEM));
    assert_eq!(k.set_nr_hugepages(3), 3, "surplus pages count again");
    assert_eq!(pool(&k), (3, 1, 1, 0));
    k.set_nr_hugepages(0);
    let free = k.free_frames();
    k.munmap(p, a, 3 * H).unwrap();
    assert_eq!(pool(&k), (0, 0, 0, 0));
    assert_eq!(
        k.free_frames(),
        free + 3 * 512,
        "surplus pages went back to RAM"
    );
    k.check_invariants().unwrap();
}

#[test]
fn exit_returns_pages_and_reservations() {
    let (mut k, p) = machine(4);
    let a = map(&mut k, p, 3 * H, MAP_PRIVATE).unwrap();
    let s = map(&mut k, p, H, MAP_SHARED).unwrap();
    k.store_u8(p, a, 1).unwrap();
    k.store_u8(p, s, 1).unwrap();
    assert_eq!(pool(&k), (4, 2, 2, 0));
    k.exit(p).unwrap();
    assert_eq!(pool(&k), (4, 4, 0, 0));
    k.check_invariants().unwrap();
}

#[test]
fn populate_and_a_page_table_left_behind_are_handled() {
    let (mut k, p) = machine(2);
    // 4 KiB pages first: their page table stays after munmap.
    let at = VirtAddr(0x4000_0000);
    k.mmap(p, at, H, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        .unwrap();
    k.store_u8(p, at, 1).unwrap();
    k.munmap(p, at, H).unwrap();
    let a = k
        .mmap(
            p,
            at,
            H,
            RW,
            ANON_HUGE | MAP_PRIVATE | MAP_FIXED | MAP_POPULATE,
            -1,
            0,
        )
        .unwrap();
    assert!(k.pmd_of(p, a).huge(), "MAP_POPULATE faulted it in");
    assert_eq!(pool(&k), (2, 1, 0, 0));
    assert_eq!(k.load_u8(p, a).unwrap(), 0);
    k.munmap(p, a, H).unwrap();
    // And 4 KiB pages where the huge page was.
    k.mmap(p, at, H, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        .unwrap();
    k.store_u8(p, at.add(PAGE), 3).unwrap();
    assert!(!k.pmd_of(p, at).huge());
    k.check_invariants().unwrap();
}

#[test]
fn sv39_has_a_pool_of_megapages_and_i386_none() {
    // Sv39 has one (megapages): the pool fills and a page maps.
    let mut k = Kernel::new(MachineConfig {
        ram_bytes: 64 << 20,
        geometry: PagingGeometry::SV39,
        nr_hugepages: 2,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    assert_eq!(k.nr_hugepages(), 2);
    let a = map(&mut k, p, H, MAP_PRIVATE).unwrap();
    k.store_u8(p, a.add(H - 1), 9).unwrap();
    assert!(k.pmd_of(p, a).huge());
    assert_eq!(k.huge_pages_info().free, 1);
    k.check_invariants().unwrap();
    let mut k = Kernel::new(MachineConfig {
        ram_bytes: 64 << 20,
        geometry: PagingGeometry::I386,
        nr_hugepages: 4,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    assert_eq!(k.nr_hugepages(), 0);
    assert_eq!(k.set_nr_hugepages(4), 0);
    assert_eq!(map(&mut k, p, H, MAP_PRIVATE), Err(Errno::ENOMEM));
    k.check_invariants().unwrap();
    // i386's Linux huge page is 4 MiB: there is no 2 MiB size to ask for.
    let mut k = Kernel::new(MachineConfig {
        geometry: PagingGeometry::I386,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    assert_eq!(
        map(&mut k, p, H, MAP_PRIVATE | MAP_HUGE_2MB),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        map(&mut k, p, H, MAP_PRIVATE | (22 << MAP_HUGE_SHIFT)),
        Err(Errno::ENOMEM)
    );
}

#[test]
fn explain_mode_sees_the_pmd_install() {
    let (mut k, p) = machine(1);
    let rec = vmem::events::Recorder::default();
    k.set_observer(Some(Box::new(rec.clone())));
    let a = map(&mut k, p, H, MAP_PRIVATE).unwrap();
    k.store_u8(p, a, 1).unwrap();
    let ev = rec.events.borrow();
    assert!(ev.iter().any(|e| matches!(e,
        vmem::Event::PmdInstall { va, pmd, .. } if *va == a && pmd.huge())));
    assert!(ev.iter().any(|e| matches!(
        e,
        vmem::Event::Fault {
            kind: vmem::FaultKind::HugetlbNoPage,
            ..
        }
    )));
    assert!(ev.iter().any(|e| e.to_string().contains("MAP_HUGETLB")));
}

#[test]
fn a_huge_page_where_small_pages_were_walked_translates_to_the_huge_page() {
    let (mut k, p) = machine(2);
    // 4 KiB pages touched at a huge-page boundary: the leaf table exists, and a fault
    // there walks (and the walker may remember) that table.
    let at = VirtAddr(0x4000_0000);
    k.mmap(p, at, H, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        .unwrap();
    for i in 0..8 {
        k.store_u8(p, at.add(i * PAGE), 0x11).unwrap();
    }
    k.munmap(p, at, H).unwrap();
    // A fault in the empty table, then the huge page takes the table's place.
    assert!(k.load_u8(p, at.add(9 * PAGE)).is_err());
    k.mmap(p, at, H, RW, ANON_HUGE | MAP_PRIVATE | MAP_FIXED, -1, 0)
        .unwrap();
    k.store_u8(p, at.add(3 * PAGE + 5), 7).unwrap();
    assert!(k.pmd_of(p, at).huge());
    // The freed table's frame is reused and filled with other data.
    let other = k
        .mmap(
            p,
            VirtAddr(0),
            4 << 20,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    for i in 0..(4 << 20) / PAGE {
        k.store_u64(p, other.add(i * PAGE), u64::MAX).unwrap();
    }
    // Every page of the huge page reads the huge page.
    for i in 0..H / PAGE {
        let want = if i == 3 { 7 } else { 0 };
        assert_eq!(
            k.load_u8(p, at.add(i * PAGE + 5)).unwrap(),
            want,
            "page {i}"
        );
    }
    k.check_invariants().unwrap();
}
