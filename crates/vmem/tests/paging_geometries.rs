//! Machines with other paging hardware: 32-bit x86 without PAE (two levels of 1024
//! four-byte entries, no NX bit, a 3 GiB user space, devices below 4 GiB) and RISC-V Sv39
//! (three levels of 512 eight-byte entries, 256 GiB of user space). Programs run on them
//! as on the default machine, and the tables in RAM hold the real hardware's entries:
//! each test reads them back out of physical memory and checks their bits against values
//! worked out by hand.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::config::PagingGeometry;
use vmem::consts::*;
use vmem::hw::device::Console;
use vmem::{Errno, Kernel, MachineConfig, PhysAddr, Pid, SegvCode, Signal, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;

fn machine(geometry: PagingGeometry) -> Kernel {
    Kernel::new(MachineConfig {
        geometry,
        ..MachineConfig::default()
    })
}

fn anon(k: &mut Kernel, p: Pid, len: u64, prot: i32) -> VirtAddr {
    k.mmap(
        p,
        VirtAddr(0),
        len,
        prot,
        MAP_PRIVATE | MAP_ANONYMOUS,
        -1,
        0,
    )
    .unwrap()
}

/// The raw bits of the leaf entry for `va`, read out of RAM at the address the walk names
/// (4 bytes on i386, 8 otherwise), cross-checked against the walk's own reading.
fn leaf_bits(k: &Kernel, p: Pid, va: VirtAddr, size: usize) -> u64 {
    let entries = k.table_entries(p, va).unwrap();
    let leaf = entries.last().unwrap();
    assert_eq!(leaf.level, "PTE", "{entries:?}");
    let mut b = [0u8; 8];
    assert!(k.read_phys(leaf.pa, &mut b[..size]));
    let v = u64::from_le_bytes(b);
    assert_eq!(v, leaf.raw.bits);
    v
}

/// The u64 stored in RAM at `pa`.
fn phys_u64(k: &Kernel, pa: u64) -> u64 {
    let mut b = [0u8; 8];
    assert!(k.read_phys(PhysAddr(pa), &mut b));
    u64::from_le_bytes(b)
}

fn segv(code: SegvCode) -> impl Fn(&Signal) -> bool {
    move |s| matches!(s, Signal::Segv { code: c, .. } if *c == code)
}

#[test]
fn i386_tables_hold_four_byte_entries_in_the_x86_layout() {
    let mut k = machine(PagingGeometry::I386);
    assert_eq!(k.task_size(), 0xc000_0000);
    let p = k.spawn().unwrap();
    let va = anon(&mut k, p, 3 * PAGE, PROT_READ | PROT_WRITE);
    assert!(va.0 + 3 * PAGE <= 0xc000_0000, "{va}");
    for i in 0..3 {
        k.store_u64(p, va.add(i * PAGE + 8), 0x1111 * (i + 1))
            .unwrap();
    }

    // Two levels: the page directory entry, then the page table entry.
    let e = k.table_entries(p, va).unwrap();
    assert_eq!(
        e.iter().map(|e| e.level).collect::<Vec<_>>(),
        ["PGD", "PTE"]
    );
    assert_eq!(e[0].index, va.0 >> 22);
    assert_eq!(e[1].index, (va.0 >> 12) & 0x3ff);
    // A PDE: page-table frame | P | RW | US | A (the walker set Accessed).
    let pde = e[0].raw.bits;
    assert_eq!(pde & 0xfff, 0x027, "PDE {pde:#x}");
    // Entries are 4 bytes apart: the PTE is at table + index * 4.
    assert_eq!(e[1].pa.0, (pde & 0xffff_f000) + e[1].index * 4);

    for i in 0..3 {
        let a = va.add(i * PAGE);
        let frame = k.frame_of(p, a).unwrap().0;
        // frame | P | RW | US | A | D: e.g. frame 0x1234 gives 0x01234067.
        assert_eq!(leaf_bits(&k, p, a, 4), (frame << 12) | 0x67);
        assert!(frame < 1 << 20, "a 32-bit machine's frames are below 4 GiB");
    }
    // The neighbouring PTE slots are the next pages', 4 bytes apart.
    let e1 = k.table_entries(p, va.add(PAGE)).unwrap();
    assert_eq!(e1[1].pa.0, e[1].pa.0 + 4);

    // Virtual -> physical, by hand from the raw PTE: (raw & 0xfffff000) | offset; the
    // bytes in RAM there are what the program stored.
    for (off, want) in [(8, 0x1111), (PAGE + 8, 0x2222), (2 * PAGE + 8, 0x3333)] {
        let a = va.add(off);
        let pa = (leaf_bits(&k, p, a, 4) & 0xffff_f000) | (a.0 & 0xfff);
        assert_eq!(phys_u64(&k, pa), want, "at {a}");
    }
    // Faults: past the mapping, above the 3 GiB split, and the kernel's own half.
    for bad in [
        va.add(3 * PAGE),
        VirtAddr(0xc000_0000),
        VirtAddr(0xffff_f000),
    ] {
        let r = k.load_u64(p, bad);
        assert!(
            r.as_ref().is_err_and(segv(SegvCode::MapErr)),
            "{bad}: {r:?}"
        );
    }
    k.check_invariants().unwrap();
    k.exit(p).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn i386_file_mappings_are_read_only_until_copied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let mut data = vec![0u8; 2 * PAGE as usize];
    data[..5].copy_from_slice(b"i386!");
    data[PAGE as usize..PAGE as usize + 4].copy_from_slice(b"page");
    std::fs::write(&path, &data).unwrap();
    let mut k = machine(PagingGeometry::I386);
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let ro = k
        .mmap(p, VirtAddr(0), 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    assert_eq!(k.load_vec(p, ro, 5).unwrap(), b"i386!");
    assert_eq!(k.load_vec(p, ro.add(PAGE), 4).unwrap(), b"page");
    let cache_frame = k.frame_of(p, ro).unwrap().0;
    // The page-cache page, read-only: frame | P | US | A = 0x025.
    assert_eq!(leaf_bits(&k, p, ro, 4), (cache_frame << 12) | 0x25);
    // A write to the read-only page faults.
    let r = k.store_u8(p, ro, b'X');
    assert!(r.as_ref().is_err_and(segv(SegvCode::AccErr)), "{r:?}");

    // A writable private mapping: read maps the cache page read-only, the write copies it.
    let rw = k
        .mmap(
            p,
            VirtAddr(0),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE,
            fd,
            0,
        )
        .unwrap();
    assert_eq!(k.load_u8(p, rw).unwrap(), b'i');
    assert_eq!(leaf_bits(&k, p, rw, 4), (cache_frame << 12) | 0x25);
    k.store_u8(p, rw, b'X').unwrap();
    let copy = k.frame_of(p, rw).unwrap().0;
    assert_ne!(copy, cache_frame);
    assert_eq!(leaf_bits(&k, p, rw, 4), (copy << 12) | 0x67);
    assert_eq!(k.load_vec(p, rw, 5).unwrap(), b"X386!");
    assert_eq!(k.load_vec(p, ro, 5).unwrap(), b"i386!");
    assert_eq!(std::fs::read(&path).unwrap(), data);
    // fork shares the copy read-only: the child's store copies again.
    let child = k.fork(p).unwrap();
    assert_eq!(
        leaf_bits(&k, child, rw, 4) & 0x2,
        0,
        "write-protected for CoW"
    );
    k.store_u8(p, rw.add(1), b'Y').unwrap();
    assert_eq!(k.load_vec(p, rw, 2).unwrap(), b"XY");
    assert_eq!(k.load_vec(child, rw, 2).unwrap(), b"X3");
    k.check_invariants().unwrap();
}

#[test]
fn i386_has_no_nx_so_readable_pages_execute() {
    let mut k = machine(PagingGeometry::I386);
    let p = k.spawn().unwrap();
    let va = anon(&mut k, p, PAGE, PROT_READ | PROT_WRITE);
    k.store_u64(p, va, 0x90c3).unwrap();
    // Linux on non-PAE i386: the CPU cannot forbid a fetch from a readable page, and
    // without NX the fault does not even say it was a fetch.
    let mut b = [0u8; 2];
    k.fetch(p, va, &mut b).unwrap();
    assert_eq!(b, [0xc3, 0x90]);
    // A fetch from a page not touched yet faults in as a read, then executes.
    let fresh = anon(&mut k, p, PAGE, PROT_READ);
    k.fetch(p, fresh, &mut b).unwrap();
    assert_eq!(b, [0, 0]);
    // PROT_NONE still stops everything.
    k.mprotect(p, va, PAGE, PROT_NONE).unwrap();
    let r = k.fetch(p, va, &mut b);
    assert!(r.as_ref().is_err_and(segv(SegvCode::AccErr)), "{r:?}");
    // The entry stays, not present, with _PAGE_PROTNONE (the Global bit 8) set.
    let frame = k.frame_of(p, va).unwrap().0;
    let bits = leaf_bits(&k, p, va, 4);
    assert_eq!(bits & 0x101, 0x100, "{bits:#x}");
    assert_eq!(bits >> 12, frame);
    k.mprotect(p, va, PAGE, PROT_READ).unwrap();
    assert_eq!(k.load_u64(p, va).unwrap(), 0x90c3);

    // The default x86-64 machine refuses the same fetch (NX).
    let mut k64 = Kernel::default();
    let p64 = k64.spawn().unwrap();
    let v64 = anon(&mut k64, p64, PAGE, PROT_READ | PROT_WRITE);
    k64.store_u64(p64, v64, 0x90c3).unwrap();
    let r = k64.fetch(p64, v64, &mut b);
    assert!(r.as_ref().is_err_and(segv(SegvCode::AccErr)), "{r:?}");
}

#[test]
fn i386_mmap_stays_below_the_3g_split() {
    let mut k = machine(PagingGeometry::I386);
    let p = k.spawn().unwrap();
    let fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    let rw = PROT_READ | PROT_WRITE;
    // Linux get_unmapped_area: MAP_FIXED beyond TASK_SIZE - len is ENOMEM.
    assert_eq!(
        k.mmap(p, VirtAddr(0xc000_0000), PAGE, rw, fixed, -1, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        k.mmap(p, VirtAddr(0xbfff_f000), 2 * PAGE, rw, fixed, -1, 0),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        k.mmap(
            p,
            VirtAddr(0),
            0xc000_1000,
            rw,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0
        ),
        Err(Errno::ENOMEM)
    );
    // The last page below the split is the highest usable one.
    let top = k
        .mmap(p, VirtAddr(0xbfff_f000), PAGE, rw, fixed, -1, 0)
        .unwrap();
    assert_eq!(top, VirtAddr(0xbfff_f000));
    k.store_u64(p, top.add(PAGE - 8), 7).unwrap();
    assert_eq!(k.load_u64(p, top.add(PAGE - 8)).unwrap(), 7);
    // The last PGD entry user space can use is 0x2ff (0xC0000000 >> 22 = 0x300).
    assert_eq!(k.table_entries(p, top).unwrap()[0].index, 0x2ff);
    // A hint above the split is only a hint: the mapping goes below.
    let hinted = k
        .mmap(
            p,
            VirtAddr(0xd000_0000),
            PAGE,
            rw,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    assert!(hinted.0 < 0xc000_0000, "{hinted}");
    // Without a hint, mmap works down from 128 MiB below the split (Linux mmap_base).
    let a = anon(&mut k, p, PAGE, rw);
    assert!(a.0 < 0xb800_0000 && a.0 > 0x1000_0000, "{a}");
    // munmap and mprotect above the split are refused as on Linux.
    assert_eq!(k.munmap(p, VirtAddr(0xc000_0000), PAGE), Err(Errno::EINVAL));
}

#[test]
fn i386_devices_sit_below_4_gib_and_answer_through_a_mapping() {
    // RAM cannot reach the device hole below 4 GiB.
    let big = Kernel::try_new(MachineConfig {
        geometry: PagingGeometry::I386,
        ram_bytes: 4 << 30,
        ..MachineConfig::default()
    });
    assert_eq!(
        big.err().map(|e| e.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );

    let mut k = machine(PagingGeometry::I386);
    let (_, base, _) = k.devices().into_iter().find(|d| d.0 == "console").unwrap();
    assert_eq!(base, PhysAddr(0xe000_0000));
    let p = k.spawn().unwrap();
    let fd = k.open(p, "/dev/vmem/console", O_RDWR, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    for b in b"hi from i386" {
        k.store_u8(p, va.add(Console::DATA), *b).unwrap();
    }
    assert_eq!(k.console_output(), b"hi from i386");
    assert_eq!(k.load_u64(p, va.add(Console::COUNT)).unwrap(), 12);
    assert_eq!(k.frame_of(p, va).unwrap().addr(), base);
    // frame 0xe0000 | _PAGE_SPECIAL (AVL bit 9) | D | A | US | RW | P.
    assert_eq!(leaf_bits(&k, p, va, 4), 0xe000_0267);
    // The default machine's devices stay at 1 TiB.
    let k64 = Kernel::default();
    assert_eq!(k64.devices()[0].1, PhysAddr(1 << 40));
}

#[test]
fn i386_swap_entries_hold_the_swap_offset_from_bit_9() {
    let mut k = Kernel::new(MachineConfig {
        geometry: PagingGeometry::I386,
        ram_bytes: 1 << 20,
        swap_bytes: 4 << 20,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    let pages = 512;
    let va = anon(&mut k, p, pages * PAGE, PROT_READ | PROT_WRITE);
    for i in 0..pages {
        k.store_u64(p, va.add(i * PAGE), i * 3 + 1).unwrap();
    }
    let mut swapped = 0;
    for i in 0..pages {
        let a = va.add(i * PAGE);
        let pte = k.pte_of(p, a);
        if pte.is_swap() {
            swapped += 1;
            // Swap type 0 in bits 1..5, offset = slot + 1 from bit 9, P clear.
            assert_eq!(leaf_bits(&k, p, a, 4), (pte.swap_slot() + 1) << 9);
        }
    }
    assert!(swapped > 100, "only {swapped} pages went to swap");
    for i in 0..pages {
        assert_eq!(k.load_u64(p, va.add(i * PAGE)).unwrap(), i * 3 + 1);
    }
    k.check_invariants().unwrap();
}

#[test]
fn sv39_tables_hold_riscv_entries() {
    let mut k = machine(PagingGeometry::SV39);
    assert_eq!(k.task_size(), 1 << 38);
    let p = k.spawn().unwrap();
    let va = anon(&mut k, p, 2 * PAGE, PROT_READ | PROT_WRITE);
    assert!(va.0 + 2 * PAGE <= 1 << 38, "{va}");
    k.store_u64(p, va.add(16), 0x5339).unwrap();

    let e = k.table_entries(p, va).unwrap();
    assert_eq!(
        e.iter().map(|e| e.level).collect::<Vec<_>>(),
        ["PGD", "PMD", "PTE"]
    );
    for (i, level) in e.iter().enumerate() {
        assert_eq!(level.index, (va.0 >> (12 + 9 * (2 - i))) & 0x1ff);
    }
    // Pointers to the next table: V only (R=W=X=0; A, D, U clear as the spec requires),
    // PPN from bit 10; each names the frame the next entry lives in.
    for w in e.windows(2) {
        assert_eq!(w[0].raw.bits & 0x3ff, 0x001, "{:?}", w[0]);
        let next_table = (w[0].raw.bits >> 10) << 12;
        assert_eq!(w[1].pa.0, next_table + w[1].index * 8);
    }
    // The leaf: V R W U A D = 0xd7 (no X: the mapping is not PROT_EXEC).
    let frame = k.frame_of(p, va).unwrap().0;
    let bits = leaf_bits(&k, p, va, 8);
    assert_eq!(bits, (frame << 10) | 0xd7);
    assert_eq!((bits >> 10) & ((1 << 44) - 1), frame, "PPN = bits 53..10");
    let pa = (((bits >> 10) & ((1 << 44) - 1)) << 12) | 16;
    assert_eq!(phys_u64(&k, pa), 0x5339);
    // The page not touched yet has no entry; touching it by reading maps the zero page
    // read-only: V R U A = 0x53.
    assert_eq!(leaf_bits(&k, p, va.add(PAGE), 8), 0);
    assert_eq!(k.load_u64(p, va.add(PAGE)).unwrap(), 0);
    let zero = k.frame_of(p, va.add(PAGE)).unwrap().0;
    assert_eq!(leaf_bits(&k, p, va.add(PAGE), 8), (zero << 10) | 0x53);

    // PROT_EXEC sets X; the default data mapping refuses a fetch.
    let mut b = [0u8; 8];
    let r = k.fetch(p, va, &mut b);
    assert!(r.as_ref().is_err_and(segv(SegvCode::AccErr)), "{r:?}");
    k.mprotect(p, va, PAGE, PROT_READ | PROT_EXEC).unwrap();
    k.fetch(p, va.add(16), &mut b).unwrap();
    assert_eq!(u64::from_le_bytes(b), 0x5339);
    assert_eq!(leaf_bits(&k, p, va, 8) & 0xff, 0xdb, "V R X U A D, no W");
    // A write to the now read-only page faults.
    let r = k.store_u64(p, va, 1);
    assert!(r.as_ref().is_err_and(segv(SegvCode::AccErr)), "{r:?}");
    // PROT_NONE: V clear, _PAGE_PROT_NONE (G) and R set, the PPN kept.
    k.mprotect(p, va, PAGE, PROT_NONE).unwrap();
    let none = leaf_bits(&k, p, va, 8);
    assert_eq!(none & 0x23, 0x22, "{none:#x}");
    assert_eq!(none >> 10, frame);
    let r = k.load_u64(p, va);
    assert!(r.as_ref().is_err_and(segv(SegvCode::AccErr)), "{r:?}");
    k.mprotect(p, va, PAGE, PROT_READ | PROT_WRITE).unwrap();
    assert_eq!(k.load_u64(p, va.add(16)).unwrap(), 0x5339);
    k.check_invariants().unwrap();
}

#[test]
fn sv39_user_space_ends_at_256_gib() {
    let mut k = machine(PagingGeometry::SV39);
    let p = k.spawn().unwrap();
    let fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    let rw = PROT_READ | PROT_WRITE;
    assert_eq!(
        k.mmap(p, VirtAddr(1 << 38), PAGE, rw, fixed, -1, 0),
        Err(Errno::ENOMEM)
    );
    let top = VirtAddr((1 << 38) - PAGE);
    assert_eq!(k.mmap(p, top, PAGE, rw, fixed, -1, 0), Ok(top));
    k.store_u64(p, top, 38).unwrap();
    assert_eq!(k.load_u64(p, top).unwrap(), 38);
    // The last user PGD entry is 255: the upper half of the 512 belongs to the kernel.
    assert_eq!(k.table_entries(p, top).unwrap()[0].index, 255);
    let a = anon(&mut k, p, PAGE, rw);
    assert!(a.0 < (1 << 38) - (128 << 20), "{a}");
}

#[test]
fn sv39_file_mappings_and_msync_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sv39.bin");
    std::fs::write(&path, vec![b'.'; PAGE as usize]).unwrap();
    let mut k = machine(PagingGeometry::SV39);
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDWR, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            PAGE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    assert_eq!(k.load_u8(p, va).unwrap(), b'.');
    let frame = k.frame_of(p, va).unwrap().0;
    // A shared file page read first is mapped clean and read-only: V R U A.
    assert_eq!(leaf_bits(&k, p, va, 8), (frame << 10) | 0x53);
    k.store(p, va, b"riscv").unwrap();
    // The write made it writable and dirty: V R W U A D, the same page-cache frame.
    assert_eq!(leaf_bits(&k, p, va, 8), (frame << 10) | 0xd7);
    k.msync(p, va, PAGE, MS_SYNC).unwrap();
    assert_eq!(&std::fs::read(&path).unwrap()[..6], b"riscv.");
    // Write-back cleaned and write-protected the entry again (W and D clear).
    assert_eq!(leaf_bits(&k, p, va, 8), (frame << 10) | 0x53);
    k.check_invariants().unwrap();
}
