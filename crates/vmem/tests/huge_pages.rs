//! Transparent huge pages: in an area marked MADV_HUGEPAGE, the first write to an aligned
//! 2 MiB block maps all of it with one PMD entry (PS bit) over 512 contiguous frames, in
//! one fault; a first read maps the shared huge zero page, which a write replaces. Changing
//! part of a huge page (munmap, mprotect, MADV_DONTNEED, fork, reclaim) splits it into
//! 512 PTEs without changing a byte; the frame accounting stays exact throughout.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::config::{MachineConfig, ThpMode};
use vmem::consts::*;
use vmem::{Kernel, Pid, Signal, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const HPAGE: u64 = 2 << 20;
const RW: i32 = PROT_READ | PROT_WRITE;
/// A 2 MiB-aligned address.
const BASE: VirtAddr = VirtAddr(0x4000_0000);

fn machine(thp: ThpMode) -> (Kernel, Pid) {
    let mut k = Kernel::new(MachineConfig {
        ram_bytes: 64 << 20,
        thp,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    (k, p)
}

/// Maps `len` bytes of private anonymous memory at BASE, advised MADV_HUGEPAGE.
fn huge_area(k: &mut Kernel, p: Pid, len: u64) -> VirtAddr {
    let va = k
        .mmap(
            p,
            BASE,
            len,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    k.madvise(p, va, len, MADV_HUGEPAGE).unwrap();
    va
}

fn faults(k: &Kernel, p: Pid) -> u64 {
    k.process_stats(p).unwrap().faults()
}

#[test]
fn one_write_fault_maps_a_whole_2mib_block_with_its_pmd() {
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, 2 * HPAGE);
    let f0 = faults(&k, p);
    k.store_u64(p, va.add(8), 0xfeed).unwrap();
    // Every page of the block is mapped, writable, by that one fault.
    for i in 0..512 {
        k.store_u8(p, va.add(i * PAGE + 100), i as u8).unwrap();
    }
    assert_eq!(faults(&k, p) - f0, 1, "one fault for 512 pages");
    let s = k.process_stats(p).unwrap();
    assert_eq!(s.thp_fault_alloc, 1);
    assert_eq!(k.mm(p).unwrap().rss_anon, 512);

    // The PMD maps the page itself: PS bit, a 2 MiB-aligned frame.
    let pmd = k.pmd_of(p, va);
    assert!(pmd.huge() && pmd.writable() && pmd.dirty(), "{pmd}");
    assert_eq!(
        pmd.pfn().0 % 512,
        0,
        "a huge page starts on a 2 MiB boundary"
    );
    // The walker adds the offset inside the huge page: page i is frame head + i.
    for i in [0u64, 1, 255, 511] {
        assert_eq!(k.frame_of(p, va.add(i * PAGE)).unwrap().0, pmd.pfn().0 + i);
        assert_eq!(k.load_u8(p, va.add(i * PAGE + 100)).unwrap(), i as u8);
    }
    assert_eq!(k.load_u64(p, va.add(8)).unwrap(), 0xfeed);
    // The second block is untouched.
    assert!(!k.pmd_of(p, va.add(HPAGE)).present());
    k.check_invariants().unwrap();
}

#[test]
fn without_the_advice_or_with_thp_off_pages_stay_4kib() {
    for (mode, advise) in [
        (ThpMode::Madvise, false),
        (ThpMode::Never, true),
        (ThpMode::Always, false),
    ] {
        let (mut k, p) = machine(mode);
        let va = k
            .mmap(
                p,
                BASE,
                HPAGE,
                RW,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                -1,
                0,
            )
            .unwrap();
        if advise {
            k.madvise(p, va, HPAGE, MADV_HUGEPAGE).unwrap();
        }
        let f0 = faults(&k, p);
        for i in 0..512 {
            k.store_u8(p, va.add(i * PAGE), 1).unwrap();
        }
        let huge = mode == ThpMode::Always;
        assert_eq!(
            faults(&k, p) - f0,
            if huge { 1 } else { 512 },
            "{mode:?} advised {advise}"
        );
        assert_eq!(k.pmd_of(p, va).huge(), huge, "{mode:?}");
        k.check_invariants().unwrap();
    }
    // MADV_NOHUGEPAGE wins over THP "always"; a block not wholly inside the area too.
    let (mut k, p) = machine(ThpMode::Always);
    let va = k
        .mmap(
            p,
            BASE,
            3 * HPAGE,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    k.madvise(p, va, HPAGE, MADV_NOHUGEPAGE).unwrap();
    k.store_u8(p, va, 1).unwrap();
    assert!(!k.pmd_of(p, va).huge(), "MADV_NOHUGEPAGE");
    k.munmap(p, va.add(2 * HPAGE + PAGE), PAGE).unwrap();
    k.store_u8(p, va.add(2 * HPAGE), 1).unwrap();
    assert!(
        !k.pmd_of(p, va.add(2 * HPAGE)).huge(),
        "block not wholly in one area"
    );
    k.store_u8(p, va.add(HPAGE), 1).unwrap();
    assert!(k.pmd_of(p, va.add(HPAGE)).huge());
}

#[test]
fn a_read_maps_the_huge_zero_page_and_a_write_replaces_it() {
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, 2 * HPAGE);
    assert_eq!(k.load_u64(p, va.add(12345 * 8)).unwrap(), 0);
    let zero = k.pmd_of(p, va);
    assert!(zero.huge() && !zero.writable(), "{zero}");
    let frames = k.frames_in_use();
    // A second area reads the same huge zero page: no new frame.
    assert_eq!(k.load_u8(p, va.add(HPAGE + 7)).unwrap(), 0);
    assert_eq!(k.pmd_of(p, va.add(HPAGE)).pfn(), zero.pfn());
    assert_eq!(k.frames_in_use(), frames + 1, "only the reserve page table");
    assert_eq!(k.mm(p).unwrap().rss_anon, 0);

    k.store_u8(p, va.add(5), 9).unwrap();
    let own = k.pmd_of(p, va);
    assert!(own.huge() && own.writable());
    assert_ne!(own.pfn(), zero.pfn());
    assert_eq!(k.load_u8(p, va.add(5)).unwrap(), 9);
    assert_eq!(k.load_u8(p, va.add(HPAGE - 1)).unwrap(), 0);
    assert_eq!(
        k.pmd_of(p, va.add(HPAGE)).pfn(),
        zero.pfn(),
        "the other block still shares it"
    );
    assert_eq!(k.process_stats(p).unwrap().wp_faults, 1);
    k.check_invariants().unwrap();
}

/// Fills a huge page with a pattern and returns it.
fn filled(k: &mut Kernel, p: Pid, va: VirtAddr) -> Vec<u8> {
    let data: Vec<u8> = (0..HPAGE).map(|i| (i * 7 % 251) as u8).collect();
    k.store(p, va, &data).unwrap();
    assert!(k.pmd_of(p, va).huge());
    data
}

#[test]
fn unmapping_or_protecting_part_of_a_huge_page_splits_it_and_keeps_the_rest() {
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, HPAGE);
    let data = filled(&mut k, p, va);
    let head = k.pmd_of(p, va).pfn();

    k.munmap(p, va.add(10 * PAGE), PAGE).unwrap();
    assert!(!k.pmd_of(p, va).huge(), "split into a page table");
    assert_eq!(k.process_stats(p).unwrap().thp_split_pmd, 1);
    assert_eq!(k.mm(p).unwrap().rss_anon, 511);
    assert!(matches!(
        k.load_u8(p, va.add(10 * PAGE)),
        Err(Signal::Segv { .. })
    ));
    // The other pages keep their bytes and their frames.
    assert_eq!(k.frame_of(p, va.add(11 * PAGE)).unwrap().0, head.0 + 11);
    let mut back = k.load_vec(p, va, (10 * PAGE) as usize).unwrap();
    back.extend(
        k.load_vec(p, va.add(11 * PAGE), (HPAGE - 11 * PAGE) as usize)
            .unwrap(),
    );
    let mut want = data[..(10 * PAGE) as usize].to_vec();
    want.extend(&data[(11 * PAGE) as usize..]);
    assert!(back == want, "bytes changed by the split");
    k.check_invariants().unwrap();

    k.mprotect(p, va, PAGE, PROT_READ).unwrap();
    assert!(matches!(k.store_u8(p, va, 1), Err(Signal::Segv { .. })));
    k.store_u8(p, va.add(PAGE), 1).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn mprotect_and_dontneed_of_a_whole_huge_page() {
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, 2 * HPAGE);
    let data = filled(&mut k, p, va);
    k.mprotect(p, va, 2 * HPAGE, PROT_READ).unwrap();
    assert!(matches!(
        k.store_u8(p, va.add(77), 1),
        Err(Signal::Segv { .. })
    ));
    assert!(k.load_vec(p, va, HPAGE as usize).unwrap() == data);
    k.mprotect(p, va, 2 * HPAGE, RW).unwrap();
    k.store_u8(p, va.add(77), 1).unwrap();

    // MADV_DONTNEED of a whole huge page frees its 512 frames at once (no split).
    let _ = filled(&mut k, p, va.add(HPAGE));
    let before = k.frames_in_use();
    k.madvise(p, va.add(HPAGE), HPAGE, MADV_DONTNEED).unwrap();
    assert_eq!(
        k.frames_in_use(),
        before - 513,
        "512 frames and the reserve table"
    );
    assert_eq!(
        k.process_stats(p).unwrap().thp_split_pmd,
        1,
        "only mprotect split"
    );
    assert_eq!(k.load_u8(p, va.add(HPAGE + 3)).unwrap(), 0);
    k.check_invariants().unwrap();
}

#[test]
fn fork_shares_a_huge_page_copy_on_write() {
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, HPAGE);
    let data = filled(&mut k, p, va);
    let c = k.fork(p).unwrap();
    assert!(k.load_vec(c, va, HPAGE as usize).unwrap() == data);
    k.store_u8(p, va.add(3 * PAGE), 0xaa).unwrap();
    k.store_u8(c, va.add(5 * PAGE), 0xbb).unwrap();
    assert_eq!(
        k.load_u8(c, va.add(3 * PAGE)).unwrap(),
        data[(3 * PAGE) as usize]
    );
    assert_eq!(
        k.load_u8(p, va.add(5 * PAGE)).unwrap(),
        data[(5 * PAGE) as usize]
    );
    assert_eq!(k.load_u8(p, va.add(3 * PAGE)).unwrap(), 0xaa);
    assert_eq!(k.load_u8(c, va.add(5 * PAGE)).unwrap(), 0xbb);
    k.check_invariants().unwrap();
    k.exit(c).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn exit_frees_every_frame_of_huge_and_huge_zero_pages() {
    let (mut k, p0) = machine(ThpMode::Madvise);
    let base = k.frames_in_use();
    let p = k.spawn().unwrap();
    let va = huge_area(&mut k, p, 4 * HPAGE);
    let _ = filled(&mut k, p, va);
    assert_eq!(k.load_u8(p, va.add(HPAGE)).unwrap(), 0);
    k.store_u8(p, va.add(2 * HPAGE), 1).unwrap();
    k.check_invariants().unwrap();
    k.exit(p).unwrap();
    k.check_invariants().unwrap();
    // What is left: the huge zero page, kept for the next reader, as Linux keeps it.
    assert_eq!(k.frames_in_use(), base + 512);
    let _ = p0;
}

#[test]
fn memory_pressure_splits_huge_pages_and_swaps_their_pages() {
    let mut k = Kernel::new(MachineConfig {
        ram_bytes: 16 << 20,
        swap_bytes: 32 << 20,
        thp: ThpMode::Madvise,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    let len = 9 * HPAGE; // 18 MiB, with 16 MiB of RAM
    let va = huge_area(&mut k, p, len);
    for b in 0..3 {
        let data: Vec<u8> = (0..HPAGE).map(|i| (i as u8) ^ (b as u8)).collect();
        k.store(p, va.add(b * HPAGE), &data).unwrap();
    }
    let huge = (0..3)
        .filter(|b| k.pmd_of(p, va.add(b * HPAGE)).huge())
        .count();
    assert!(huge >= 1, "some blocks got huge pages");
    // Fill the rest with 4 KiB pages until reclaim must swap.
    k.madvise(p, va.add(3 * HPAGE), 6 * HPAGE, MADV_NOHUGEPAGE)
        .unwrap();
    for i in 0..(6 * HPAGE / PAGE) {
        k.store_u8(p, va.add(3 * HPAGE + i * PAGE), 0x5c).unwrap();
    }
    let s = k.stats();
    assert!(s.swap_outs > 0, "reclaim swapped: {s}");
    for b in 0..3 {
        let want: Vec<u8> = (0..HPAGE).map(|i| (i as u8) ^ (b as u8)).collect();
        assert!(
            k.load_vec(p, va.add(b * HPAGE), HPAGE as usize).unwrap() == want,
            "block {b}"
        );
    }
    assert!(
        s.thp_split_pmd > 0,
        "a huge page was split to be swapped: {s}"
    );
    for i in 0..(6 * HPAGE / PAGE) {
        assert_eq!(k.load_u8(p, va.add(3 * HPAGE + i * PAGE)).unwrap(), 0x5c);
    }
    k.check_invariants().unwrap();
}

#[test]
fn mremap_moves_a_huge_page_area_with_its_bytes() {
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, HPAGE);
    let data = filled(&mut k, p, va);
    let dst = VirtAddr(0x8000_0000);
    let got = k
        .mremap(p, va, HPAGE, 2 * HPAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst)
        .unwrap();
    assert_eq!(got, dst);
    assert!(k.load_vec(p, dst, HPAGE as usize).unwrap() == data);
    assert!(matches!(k.load_u8(p, va), Err(Signal::Segv { .. })));
    k.check_invariants().unwrap();
}

#[test]
fn huge_pages_where_the_geometry_has_2mib_pmd_pages() {
    use vmem::config::PagingGeometry;
    for (geometry, huge) in [
        (PagingGeometry::X86_64_5LEVEL, true),
        // Sv39 maps them with a megapage (a leaf at the PMD level), arm64 with a block.
        (PagingGeometry::SV39, true),
        (PagingGeometry::ARM64_4K, true),
        // i386 without PAE has 4 MiB directory pages, and Linux no THP there.
        (PagingGeometry::I386, false),
    ] {
        let mut k = Kernel::new(MachineConfig {
            ram_bytes: 32 << 20,
            thp: ThpMode::Always,
            geometry,
            ..MachineConfig::default()
        });
        let p = k.spawn().unwrap();
        let va = k
            .mmap(
                p,
                BASE,
                HPAGE,
                RW,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                -1,
                0,
            )
            .unwrap();
        k.store_u8(p, va.add(3 * PAGE), 5).unwrap();
        assert_eq!(
            k.process_stats(p).unwrap().thp_fault_alloc,
            u64::from(huge),
            "{geometry:?}"
        );
        assert_eq!(k.load_u8(p, va.add(3 * PAGE)).unwrap(), 5);
        // The walk the explain mode shows stops at the huge page's PMD.
        let steps = k.table_entries(p, va.add(3 * PAGE)).unwrap();
        assert_eq!(
            steps.len() as u32,
            geometry.levels - u32::from(huge),
            "{geometry:?}"
        );
        if huge && geometry == PagingGeometry::SV39 {
            // V R W U A D with the PPN of a 2 MiB-aligned run: a megapage.
            let raw = steps.last().unwrap().raw.bits;
            assert_eq!(raw & 0xdf, 0xd7, "{raw:#x}");
            assert_eq!((raw >> 10) % 512, 0, "{raw:#x}");
        }
        k.check_invariants().unwrap();
    }
}

#[test]
fn advice_on_part_of_the_huge_zero_page_then_a_write_in_either_part() {
    // madvise on part of a huge page splits the area: Linux splits a huge PMD that would
    // straddle the two areas (`vma_adjust_trans_huge`), so that a later write to the huge
    // zero page cannot give one area a huge page that covers the other too.
    for (advice, write_in_second) in [
        (MADV_NOHUGEPAGE, true),
        (MADV_DONTDUMP, true),
        (MADV_DONTDUMP, false),
    ] {
        let (mut k, p) = machine(ThpMode::Madvise);
        let va = huge_area(&mut k, p, HPAGE);
        assert_eq!(k.load_u8(p, va.add(3)).unwrap(), 0);
        assert!(k.pmd_of(p, va).huge(), "the huge zero page");
        let half = va.add(HPAGE / 2);
        // Advice that changes nothing splits no area, and no huge page.
        k.madvise(p, half, HPAGE / 2, MADV_HUGEPAGE).unwrap();
        assert!(k.pmd_of(p, va).huge());
        k.madvise(p, half, HPAGE / 2, advice).unwrap();
        assert!(!k.pmd_of(p, va).huge(), "split with the area");
        let (w, other) = if write_in_second {
            (half.add(5 * PAGE), va.add(7 * PAGE))
        } else {
            (va.add(7 * PAGE), half.add(5 * PAGE))
        };
        k.store_u8(p, w, 0xa1).unwrap();
        k.store_u8(p, other, 0xb2).unwrap();
        assert_eq!(k.load_u8(p, w).unwrap(), 0xa1);
        assert_eq!(k.load_u8(p, other).unwrap(), 0xb2);
        k.check_invariants().unwrap();
        // A child has every byte the parent wrote, in both areas.
        let c = k.fork(p).unwrap();
        assert_eq!(k.load_u8(c, w).unwrap(), 0xa1, "advice {advice}");
        assert_eq!(k.load_u8(c, other).unwrap(), 0xb2, "advice {advice}");
        k.check_invariants().unwrap();
        k.exit(c).unwrap();
        k.exit(p).unwrap();
        k.check_invariants().unwrap();
    }
}

#[test]
fn no_stale_tlb_entry_survives_a_split_or_a_zap() {
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, 2 * HPAGE);
    let data = filled(&mut k, p, va);
    let x = va.add(40 * PAGE);

    // Each step first loads or stores the page, so that the TLB holds its translation.
    // mprotect of one page splits the huge page: the old writable entry must go.
    k.store_u8(p, x, 1).unwrap();
    k.mprotect(p, x, PAGE, PROT_READ).unwrap();
    assert!(matches!(k.store_u8(p, x, 2), Err(Signal::Segv { .. })));
    assert_eq!(k.load_u8(p, x).unwrap(), 1);

    // munmap of one page of the (now split) block.
    let y = va.add(41 * PAGE);
    assert_eq!(k.load_u8(p, y).unwrap(), data[(41 * PAGE) as usize]);
    k.munmap(p, y, PAGE).unwrap();
    assert!(matches!(k.load_u8(p, y), Err(Signal::Segv { .. })));

    // A whole huge page zapped by munmap, with translations of several of its pages cached.
    let b = va.add(HPAGE);
    let _ = filled(&mut k, p, b);
    for i in [0, 1, 100, 511] {
        k.store_u8(p, b.add(i * PAGE), 7).unwrap();
    }
    k.munmap(p, b, HPAGE).unwrap();
    for i in [0, 1, 100, 511] {
        assert!(
            matches!(k.load_u8(p, b.add(i * PAGE)), Err(Signal::Segv { .. })),
            "page {i} of a zapped huge page"
        );
    }

    // MADV_DONTNEED of part of a huge page: the cached pages read zero afterwards, the
    // rest keep their bytes.
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, HPAGE);
    let data = filled(&mut k, p, va);
    for i in 0..8 {
        assert_eq!(
            k.load_u8(p, va.add(i * PAGE + 1)).unwrap(),
            data[(i * PAGE + 1) as usize]
        );
    }
    k.madvise(p, va.add(2 * PAGE), 4 * PAGE, MADV_DONTNEED)
        .unwrap();
    for i in 0..8 {
        let want = if (2..6).contains(&i) {
            0
        } else {
            data[(i * PAGE + 1) as usize]
        };
        assert_eq!(
            k.load_u8(p, va.add(i * PAGE + 1)).unwrap(),
            want,
            "page {i}"
        );
    }
    assert_eq!(k.mm(p).unwrap().rss_anon, 508);
    k.check_invariants().unwrap();

    // fork right after a store: the parent's cached writable entry must not let its next
    // store reach the frame the child now shares.
    let (mut k, p) = machine(ThpMode::Madvise);
    let va = huge_area(&mut k, p, HPAGE);
    let data = filled(&mut k, p, va);
    let z = va.add(9 * PAGE + 3);
    k.store_u8(p, z, 0x11).unwrap();
    let c = k.fork(p).unwrap();
    k.store_u8(p, z, 0x22).unwrap();
    assert_eq!(k.load_u8(c, z).unwrap(), 0x11);
    assert_eq!(k.load_u8(p, z).unwrap(), 0x22);
    let _ = data;
    k.check_invariants().unwrap();
}

#[test]
fn reclaim_sees_a_used_huge_page_as_referenced_and_takes_cold_pages_first() {
    use vmem::reclaim::policy::PolicyKind;
    // Linux's folio_referenced reads a PMD-mapped huge page's Accessed bit in its PMD: a
    // huge page in use is kept (activated) while cold pages go, not split and swapped.
    for policy in [PolicyKind::TwoList, PolicyKind::Clock] {
        let mut k = Kernel::new(MachineConfig {
            ram_bytes: 16 << 20,
            swap_bytes: 32 << 20,
            thp: ThpMode::Madvise,
            policy,
            ..MachineConfig::default()
        });
        let p = k.spawn().unwrap();
        let h = huge_area(&mut k, p, HPAGE);
        let data = filled(&mut k, p, h);
        // Cold 4 KiB pages, written once, then marked cold (Accessed bits cleared).
        let cold = VirtAddr(0x8000_0000);
        let cold_len = 8 << 20;
        k.mmap(
            p,
            cold,
            cold_len,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
        k.madvise(p, cold, cold_len, MADV_NOHUGEPAGE).unwrap();
        for i in 0..cold_len / PAGE {
            k.store_u8(p, cold.add(i * PAGE), 0x3c).unwrap();
        }
        k.madvise(p, cold, cold_len, MADV_COLD).unwrap();
        assert_eq!(k.stats().swap_outs, 0, "{policy:?}: no pressure yet");
        // The huge page is in use; then more memory is wanted than is free.
        assert_eq!(
            k.load_u8(p, h.add(5 * PAGE)).unwrap(),
            data[(5 * PAGE) as usize]
        );
        let more = VirtAddr(0xc000_0000);
        let more_len = 6 << 20;
        k.mmap(
            p,
            more,
            more_len,
            RW,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
        k.madvise(p, more, more_len, MADV_NOHUGEPAGE).unwrap();
        for i in 0..more_len / PAGE {
            k.store_u8(p, more.add(i * PAGE), 0x5a).unwrap();
        }
        let s = k.stats();
        assert!(s.swap_outs > 0, "{policy:?}: reclaim swapped: {s}");
        assert!(
            k.pmd_of(p, h).huge(),
            "{policy:?}: the huge page in use was split for reclaim: {s}"
        );
        assert_eq!(s.thp_split_pmd, 0, "{policy:?}");
        assert!(k.load_vec(p, h, HPAGE as usize).unwrap() == data);
        k.check_invariants().unwrap();
    }
}
