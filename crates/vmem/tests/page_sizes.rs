//! The page size is the kernel's, fixed when it is built (4 KiB by default, 16 or 64 KiB
//! with the `page-16k` / `page-64k` features, as Linux's `CONFIG_ARM64_*K_PAGES`), and
//! everything a program sees follows it: mmap rounds lengths to it and refuses offsets
//! that are not multiples of it, a fault loads one whole page, the last page of a file
//! reads zeros past the end and the next is SIGBUS, shared writes reach the file at
//! msync, the tables in RAM are the geometry's (arm64 descriptors with 16 and 64 KiB
//! granules), huge pages are one PMD entry's span, and anonymous pages swap out and back.
//! The same tests run in every build; in the default build they also run on the arm64
//! machine with the 4 KiB granule.

use vmem::config::PagingGeometry;
use vmem::consts::*;
use vmem::hw::pte_format::PteFormat;
use vmem::mm::huge_memory::HPAGE_SIZE;
use vmem::{Errno, Kernel, MachineConfig, Signal, VirtAddr, PAGE_SIZE};

const PAGE: u64 = PAGE_SIZE;

/// The machines of this build: its default geometry, and arm64 with this page size.
fn geometries() -> Vec<PagingGeometry> {
    let mut g = vec![PagingGeometry::DEFAULT];
    if PagingGeometry::ARM64_4K.fits_this_kernel() {
        g.push(PagingGeometry::ARM64_4K);
    }
    g
}

fn machine(geometry: PagingGeometry, ram_bytes: u64) -> Kernel {
    Kernel::new(MachineConfig {
        geometry,
        ram_bytes,
        ..MachineConfig::default()
    })
}

/// A file of `len` bytes where byte `i` is `(i / 1000) as u8 ^ (i as u8)`.
fn pattern(len: u64) -> Vec<u8> {
    (0..len).map(|i| ((i / 1000) as u8) ^ (i as u8)).collect()
}

#[test]
fn the_geometry_follows_the_page_size_and_others_are_refused() {
    let k = Kernel::default();
    let g = k.config().geometry;
    assert_eq!(1u64 << g.page_shift, PAGE);
    match PAGE {
        4096 => assert_eq!((g.levels, g.va_bits()), (4, 48)),
        16384 => {
            assert_eq!((g.levels, g.va_bits(), g.format), (3, 47, PteFormat::Arm64));
            assert_eq!(k.task_size(), 1 << 47);
        }
        65536 => {
            assert_eq!((g.levels, g.va_bits(), g.format), (2, 42, PteFormat::Arm64));
            assert_eq!(k.task_size(), 1 << 42);
        }
        other => panic!("unexpected page size {other}"),
    }
    // A table is one page of 8-byte entries.
    assert_eq!(g.entries() * 8, PAGE);
    // The geometries of the other page sizes need another build.
    for other in [
        PagingGeometry::X86_64_4LEVEL,
        PagingGeometry::ARM64_16K,
        PagingGeometry::ARM64_64K,
    ] {
        if other.fits_this_kernel() {
            continue;
        }
        let err = Kernel::try_new(MachineConfig {
            geometry: other,
            ..MachineConfig::default()
        })
        .expect_err("a geometry of another page size is refused");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            err.to_string()
                .contains("the page size is chosen when the kernel is built"),
            "{err}"
        );
    }
}

#[test]
fn mmap_works_in_whole_pages_and_wants_page_aligned_offsets() {
    for geom in geometries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, pattern(3 * PAGE)).unwrap();
        let mut k = machine(geom, 64 << 20);
        let p = k.spawn().unwrap();
        let fd = k.open(p, &path, O_RDWR, 0).unwrap();
        // One byte maps a whole page: the next mapping starts a page away or more.
        let a = k
            .mmap(p, VirtAddr(0), 1, PROT_READ, MAP_SHARED, fd, 0)
            .unwrap();
        assert_eq!(a.0 % PAGE, 0, "{a}");
        assert_eq!(
            k.load_u8(p, a.add(PAGE - 1)).unwrap(),
            pattern(PAGE)[PAGE as usize - 1]
        );
        let b = k
            .mmap(p, VirtAddr(0), 1, PROT_READ, MAP_SHARED, fd, 0)
            .unwrap();
        assert!(b.0 + PAGE <= a.0 || a.0 + PAGE <= b.0, "{a} {b}");
        // File offsets are whole pages of this kernel: 4096 is not one with larger pages.
        let off4k = k.mmap(p, VirtAddr(0), PAGE, PROT_READ, MAP_SHARED, fd, 4096);
        if PAGE == 4096 {
            assert!(off4k.is_ok());
        } else {
            assert_eq!(off4k, Err(Errno::EINVAL));
            // munmap and mprotect want page-aligned addresses too.
            assert_eq!(k.munmap(p, a.add(4096), 4096), Err(Errno::EINVAL));
            assert_eq!(
                k.mprotect(p, a.add(4096), 4096, PROT_NONE),
                Err(Errno::EINVAL)
            );
        }
        let second = k
            .mmap(p, VirtAddr(0), PAGE, PROT_READ, MAP_SHARED, fd, PAGE as i64)
            .unwrap();
        assert_eq!(
            k.load_vec(p, second, 16).unwrap(),
            pattern(2 * PAGE)[PAGE as usize..PAGE as usize + 16]
        );
        // mprotect of one byte covers its whole page, and only it.
        let two = k
            .mmap(
                p,
                VirtAddr(0),
                2 * PAGE,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE,
                fd,
                0,
            )
            .unwrap();
        k.mprotect(p, two, 1, PROT_READ).unwrap();
        assert!(matches!(
            k.store_u8(p, two.add(PAGE - 1), 1),
            Err(Signal::Segv { .. })
        ));
        k.store_u8(p, two.add(PAGE), 1).unwrap();
    }
}

#[test]
fn a_fault_loads_one_whole_page_and_the_end_of_file_is_page_granular() {
    for geom in geometries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // Two pages and a half.
        let len = 2 * PAGE + PAGE / 2;
        let data = pattern(len);
        std::fs::write(&path, &data).unwrap();
        let mut k = machine(geom, 64 << 20);
        let p = k.spawn().unwrap();
        let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
        let va = k
            .mmap(p, VirtAddr(0), 4 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
            .unwrap();
        k.madvise(p, va, 4 * PAGE, MADV_RANDOM).unwrap();
        assert_eq!(k.stats().major_faults, 0, "nothing is read at mmap");
        // The first byte of the second page: one major fault, one page read.
        assert_eq!(k.load_u8(p, va.add(PAGE)).unwrap(), data[PAGE as usize]);
        assert_eq!(k.stats().major_faults, 1);
        // Every other byte of that page is there without another fault.
        assert_eq!(
            k.load_vec(p, va.add(PAGE), PAGE as usize).unwrap(),
            data[PAGE as usize..2 * PAGE as usize]
        );
        assert_eq!(k.stats().major_faults, 1);
        assert_eq!(k.stats().faults(), 1);
        // The last page: the file's bytes, then zeros to the end of the page.
        let tail = k.load_vec(p, va.add(2 * PAGE), PAGE as usize).unwrap();
        assert_eq!(tail[..(PAGE / 2) as usize], data[2 * PAGE as usize..]);
        assert!(tail[(PAGE / 2) as usize..].iter().all(|&b| b == 0));
        assert_eq!(k.stats().major_faults, 2);
        // The page wholly past the end is SIGBUS.
        assert!(matches!(
            k.load_u8(p, va.add(3 * PAGE)),
            Err(Signal::Bus { .. })
        ));
    }
}

#[test]
fn shared_writes_reach_the_file_at_msync_and_private_ones_never() {
    for geom in geometries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(2 * PAGE);
        std::fs::write(&path, &data).unwrap();
        let mut k = machine(geom, 64 << 20);
        let p = k.spawn().unwrap();
        let fd = k.open(p, &path, O_RDWR, 0).unwrap();
        let rw = PROT_READ | PROT_WRITE;
        let shared = k
            .mmap(p, VirtAddr(0), 2 * PAGE, rw, MAP_SHARED, fd, 0)
            .unwrap();
        let private = k
            .mmap(p, VirtAddr(0), 2 * PAGE, rw, MAP_PRIVATE, fd, 0)
            .unwrap();
        // Across the page boundary.
        k.store(p, shared.add(PAGE - 3), b"shared!").unwrap();
        k.store(p, private.add(7), b"private").unwrap();
        k.msync(p, shared, 2 * PAGE, MS_SYNC).unwrap();
        let disk = std::fs::read(&path).unwrap();
        assert_eq!(&disk[PAGE as usize - 3..PAGE as usize + 4], b"shared!");
        assert_eq!(
            disk[7..14],
            data[7..14],
            "a private write never reaches the file"
        );
        assert_eq!(disk.len() as u64, 2 * PAGE);
        // The private copy is one page; the other page still reads the cache.
        assert_eq!(k.load_vec(p, private.add(7), 7).unwrap(), b"private");
        assert_eq!(k.load_vec(p, private.add(PAGE - 3), 7).unwrap(), b"shared!");
    }
}

#[test]
fn the_tables_in_ram_are_the_geometrys_and_the_hardware_marks_them() {
    for geom in geometries() {
        let mut k = machine(geom, 64 << 20);
        let p = k.spawn().unwrap();
        let va = k
            .mmap(
                p,
                VirtAddr(0),
                2 * PAGE,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
            .unwrap();
        k.store_u64(p, va.add(PAGE + 8), 0x1234_5678).unwrap();
        let e = k.table_entries(p, va.add(PAGE)).unwrap();
        assert_eq!(e.len() as u32, geom.levels, "{e:?}");
        let leaf = e.last().unwrap();
        assert_eq!(leaf.level, "PTE");
        let frame = k.frame_of(p, va.add(PAGE)).unwrap();
        if geom.format == PteFormat::Arm64 {
            let bits = leaf.raw.bits;
            // A page descriptor at the frame's address: valid, page type, user, accessed,
            // writable (DBM) and dirty (AP[2] clear after the write).
            assert_eq!(bits & 3, 3, "{:?}", leaf.raw);
            assert_eq!(bits & ((1 << 48) - 1) & !(PAGE - 1), frame.0 * PAGE);
            assert_ne!(bits & (1 << 6), 0, "AP[1]: user");
            assert_ne!(bits & (1 << 10), 0, "AF");
            assert_ne!(bits & (1 << 51), 0, "DBM: writable");
            assert_eq!(bits & (1 << 7), 0, "AP[2] cleared by the write: dirty");
            // An upper level: a table descriptor pointing at the next table's page.
            for t in &e[..e.len() - 1] {
                assert_eq!(t.raw.bits & 3, 3, "{t:?}");
                assert_eq!(t.raw.bits & !(((1 << 48) - 1) & !(PAGE - 1)), 3, "{t:?}");
            }
            // Read-only after mprotect: AP[2] set, and a write is SIGSEGV.
            k.mprotect(p, va, 2 * PAGE, PROT_READ).unwrap();
            let bits = k
                .table_entries(p, va.add(PAGE))
                .unwrap()
                .last()
                .unwrap()
                .raw
                .bits;
            assert_ne!(bits & (1 << 7), 0, "AP[2]: read-only");
            assert_eq!(bits & (1 << 51), 0, "DBM clear: not writable");
            assert!(matches!(
                k.store_u8(p, va.add(PAGE), 1),
                Err(Signal::Segv { .. })
            ));
        }
        assert_eq!(k.load_u64(p, va.add(PAGE + 8)).unwrap(), 0x1234_5678);
    }
}

#[test]
fn huge_pages_are_one_pmd_entrys_span() {
    for geom in geometries() {
        // Room for one huge page (2, 32 or 512 MiB) and the rest.
        let mut k = machine(geom, 2 * HPAGE_SIZE + (64 << 20));
        assert_eq!(HPAGE_SIZE, geom.span(1));
        let p = k.spawn().unwrap();
        let len = 2 * HPAGE_SIZE;
        let va = k
            .mmap(
                p,
                VirtAddr(0),
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
            .unwrap();
        k.madvise(p, va, len, MADV_HUGEPAGE).unwrap();
        let block = VirtAddr((va.0 + HPAGE_SIZE - 1) & !(HPAGE_SIZE - 1));
        k.store_u64(p, block.add(8), 0xfeed).unwrap();
        assert_eq!(k.stats().thp_fault_alloc, 1);
        assert_eq!(k.stats().faults(), 1);
        // Every page of the block is mapped, by the PMD entry.
        let e = k.table_entries(p, block.add(HPAGE_SIZE - PAGE)).unwrap();
        let pmd = e.last().unwrap();
        assert_eq!(pmd.level, if geom.levels == 2 { "PGD" } else { "PMD" });
        if geom.format == PteFormat::Arm64 {
            assert_eq!(pmd.raw.bits & 3, 1, "a block descriptor: {:?}", pmd.raw);
        }
        k.store_u8(p, block.add(HPAGE_SIZE - 1), 7).unwrap();
        assert_eq!(k.stats().faults(), 1, "no fault anywhere in the block");
        // Unmapping one page splits it; the rest keeps its bytes.
        k.munmap(p, block.add(PAGE), PAGE).unwrap();
        assert_eq!(k.stats().thp_split_pmd, 1);
        assert_eq!(k.load_u64(p, block.add(8)).unwrap(), 0xfeed);
        assert_eq!(k.load_u8(p, block.add(HPAGE_SIZE - 1)).unwrap(), 7);
        assert!(matches!(
            k.load_u8(p, block.add(PAGE)),
            Err(Signal::Segv { .. })
        ));
        k.exit(p).unwrap();
        k.check_invariants().unwrap();
    }
}

#[test]
fn anonymous_pages_swap_out_and_back_under_pressure() {
    for geom in geometries() {
        let ram = 64 * PAGE;
        let mut k = Kernel::new(MachineConfig {
            geometry: geom,
            ram_bytes: ram,
            swap_bytes: 8 * ram,
            ..MachineConfig::default()
        });
        let p = k.spawn().unwrap();
        let pages = 96;
        let va = k
            .mmap(
                p,
                VirtAddr(0),
                pages * PAGE,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                -1,
                0,
            )
            .unwrap();
        for i in 0..pages {
            k.store_u64(p, va.add(i * PAGE + PAGE - 8), i * 31 + 1)
                .unwrap();
        }
        assert!(
            k.stats().swap_outs > 0,
            "more pages than RAM: some were swapped"
        );
        for i in 0..pages {
            assert_eq!(
                k.load_u64(p, va.add(i * PAGE + PAGE - 8)).unwrap(),
                i * 31 + 1
            );
        }
        assert!(k.stats().swap_ins > 0);
        k.check_invariants().unwrap();
    }
}

#[test]
fn map_hugetlb_pages_are_one_pmd_entrys_span_from_the_pool() {
    for geom in geometries() {
        let mut k = Kernel::new(MachineConfig {
            geometry: geom,
            ram_bytes: 2 * HPAGE_SIZE + (64 << 20),
            nr_hugepages: 1,
            ..MachineConfig::default()
        });
        let info = k.huge_pages_info();
        assert_eq!((info.total, info.free, info.page_size), (1, 1, HPAGE_SIZE));
        let p = k.spawn().unwrap();
        let rw = PROT_READ | PROT_WRITE;
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
        // One byte reserves a whole huge page, on a huge-page boundary.
        let va = k.mmap(p, VirtAddr(0), 1, rw, flags, -1, 0).unwrap();
        assert_eq!(va.0 % HPAGE_SIZE, 0, "{va}");
        assert_eq!(k.huge_pages_info().rsvd, 1);
        // The pool has no second page.
        assert_eq!(
            k.mmap(p, VirtAddr(0), 1, rw, flags, -1, 0),
            Err(Errno::ENOMEM)
        );
        k.store_u64(p, va.add(HPAGE_SIZE - 8), 0xabcd).unwrap();
        assert_eq!(k.load_u64(p, va.add(8)).unwrap(), 0, "zeroed");
        assert_eq!(k.stats().faults(), 1, "one fault for the whole huge page");
        let e = k.table_entries(p, va).unwrap();
        if geom.format == PteFormat::Arm64 {
            assert_eq!(e.last().unwrap().raw.bits & 3, 1, "a block descriptor");
        }
        // A cut inside the huge page is EINVAL; munmap of all of it returns it.
        assert_eq!(k.munmap(p, va.add(PAGE), PAGE), Err(Errno::EINVAL));
        k.munmap(p, va, HPAGE_SIZE).unwrap();
        let info = k.huge_pages_info();
        assert_eq!((info.free, info.rsvd), (1, 0));
    }
}

#[test]
fn exec_runs_binaries_of_the_machines_own_architecture_only() {
    // The system's binaries are x86-64 ones: an arm64 machine (every 16 and 64 KiB build,
    // and the arm64 geometry of the default one) refuses them as Linux's elf_check_arch
    // does, with ENOEXEC.
    let Some(bin) = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return;
    };
    for geom in geometries() {
        let mut k = machine(geom, 64 << 20);
        let p = k.spawn().unwrap();
        let r = k.exec(p, bin);
        if geom.format == PteFormat::X86_64 {
            assert!(r.is_ok(), "{:?}", r.err());
        } else {
            assert_eq!(r.err(), Some(Errno::ENOEXEC), "{geom:?}");
        }
    }
}
