//! SIGSEGV comes in two kinds: SEGV_MAPERR when no mapping covers the address, and
//! SEGV_ACCERR when a mapping exists but its protection forbids the access. On x86-64,
//! write and exec permission imply read: PROT_WRITE-only and PROT_EXEC-only pages read.

use vmem::consts::*;
use vmem::{Kernel, SegvCode, Signal, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;

fn maperr(addr: VirtAddr) -> Signal {
    Signal::Segv {
        addr,
        code: SegvCode::MapErr,
    }
}

fn accerr(addr: VirtAddr) -> Signal {
    Signal::Segv {
        addr,
        code: SegvCode::AccErr,
    }
}

fn anon(k: &mut Kernel, p: vmem::Pid, len: u64, prot: i32) -> VirtAddr {
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

#[test]
fn an_unmapped_address_is_segv_maperr() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    assert_eq!(k.load_u8(p, VirtAddr(0)), Err(maperr(VirtAddr(0))), "NULL");
    assert_eq!(
        k.load_u64(p, VirtAddr(0x1234_5678)),
        Err(maperr(VirtAddr(0x1234_5678)))
    );
    assert_eq!(
        k.store_u8(p, VirtAddr(0x10_0000), 1),
        Err(maperr(VirtAddr(0x10_0000)))
    );
    let mut buf = [0u8; 4];
    assert_eq!(
        k.fetch(p, VirtAddr(0x40_0000), &mut buf),
        Err(maperr(VirtAddr(0x40_0000)))
    );

    // A hole left by munmap.
    let va = anon(&mut k, p, 3 * PAGE, PROT_READ | PROT_WRITE);
    k.store_u8(p, va.add(PAGE), 7).unwrap();
    k.munmap(p, va.add(PAGE), PAGE).unwrap();
    let hole = va.add(PAGE + 12);
    assert_eq!(k.load_u8(p, hole), Err(maperr(hole)));
    assert_eq!(k.store_u8(p, hole, 1), Err(maperr(hole)));
    assert_eq!(k.load_u8(p, va).unwrap(), 0);
    assert_eq!(k.load_u8(p, va.add(2 * PAGE)).unwrap(), 0);

    // An access that runs off the end of a mapping faults at the first unmapped byte,
    // after the bytes before it were stored.
    assert_eq!(
        k.store(p, va.add(PAGE - 2), b"abcd"),
        Err(maperr(va.add(PAGE)))
    );
    assert_eq!(k.load_vec(p, va.add(PAGE - 2), 2).unwrap(), b"ab");
    assert_eq!(k.stats().signals, 7);
}

#[test]
fn a_write_to_a_read_only_mapping_is_segv_accerr() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon(&mut k, p, 2 * PAGE, PROT_READ);
    // Not yet mapped: the fault handler refuses the write.
    assert_eq!(k.store_u8(p, va.add(5), 1), Err(accerr(va.add(5))));
    // Mapped for reading: the hardware refuses the write, the kernel confirms.
    assert_eq!(k.load_u8(p, va.add(PAGE)).unwrap(), 0);
    assert_eq!(
        k.store_u64(p, va.add(PAGE + 8), 1),
        Err(accerr(va.add(PAGE + 8)))
    );
    assert_eq!(k.load_u64(p, va.add(PAGE + 8)).unwrap(), 0);
    assert_eq!(k.process_stats(p).unwrap().signals, 2);

    // After mprotect adds PROT_WRITE, the same store works.
    k.mprotect(p, va, 2 * PAGE, PROT_READ | PROT_WRITE).unwrap();
    k.store_u64(p, va.add(PAGE + 8), 42).unwrap();
    assert_eq!(k.load_u64(p, va.add(PAGE + 8)).unwrap(), 42);
    // ... and after taking it away again the store is refused once more.
    k.mprotect(p, va, 2 * PAGE, PROT_READ).unwrap();
    assert_eq!(k.store_u8(p, va.add(PAGE), 1), Err(accerr(va.add(PAGE))));
    assert_eq!(k.load_u64(p, va.add(PAGE + 8)).unwrap(), 42);
}

#[test]
fn a_write_to_a_read_only_file_mapping_is_segv_accerr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro");
    std::fs::write(&path, b"read only").unwrap();
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), PAGE, PROT_READ, MAP_SHARED, fd, 0)
        .unwrap();
    assert_eq!(k.load_vec(p, va, 9).unwrap(), b"read only");
    assert_eq!(k.store_u8(p, va, b'R'), Err(accerr(va)));
    assert_eq!(std::fs::read(&path).unwrap(), b"read only");
}

#[test]
fn any_access_to_prot_none_is_segv_accerr() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon(&mut k, p, 2 * PAGE, PROT_NONE);
    let mut buf = [0u8; 1];
    assert_eq!(k.load_u8(p, va), Err(accerr(va)));
    assert_eq!(k.store_u8(p, va, 1), Err(accerr(va)));
    assert_eq!(k.fetch(p, va, &mut buf), Err(accerr(va)));

    // A page that had data and was then made PROT_NONE keeps it behind the protection.
    let b = anon(&mut k, p, PAGE, PROT_READ | PROT_WRITE);
    k.store_u32(p, b, 0xfeed).unwrap();
    k.mprotect(p, b, PAGE, PROT_NONE).unwrap();
    assert_eq!(k.load_u32(p, b), Err(accerr(b)));
    assert_eq!(k.store_u32(p, b, 0), Err(accerr(b)));
    k.mprotect(p, b, PAGE, PROT_READ).unwrap();
    assert_eq!(k.load_u32(p, b).unwrap(), 0xfeed);
    assert_eq!(k.stats().signals, 5);
}

#[test]
fn exec_only_and_write_only_mappings_are_readable_on_x86() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("code");
    std::fs::write(&path, b"\x55\x48\x89\xe5\xc3").unwrap();
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();

    let x = k
        .mmap(p, VirtAddr(0), PAGE, PROT_EXEC, MAP_PRIVATE, fd, 0)
        .unwrap();
    assert_eq!(k.load_vec(p, x, 5).unwrap(), b"\x55\x48\x89\xe5\xc3");
    let mut insn = [0u8; 5];
    k.fetch(p, x, &mut insn).unwrap();
    assert_eq!(&insn, b"\x55\x48\x89\xe5\xc3");
    assert_eq!(k.store_u8(p, x, 0x90), Err(accerr(x)));

    let w = anon(&mut k, p, PAGE, PROT_WRITE);
    assert_eq!(k.load_u64(p, w).unwrap(), 0, "a write-only page reads");
    k.store_u64(p, w, 99).unwrap();
    assert_eq!(k.load_u64(p, w).unwrap(), 99);
    assert_eq!(
        k.fetch(p, w, &mut insn),
        Err(accerr(w)),
        "but does not execute"
    );

    let xa = anon(&mut k, p, PAGE, PROT_EXEC);
    assert_eq!(k.load_u8(p, xa).unwrap(), 0);
    assert_eq!(k.stats().signals, 2);
}

#[test]
fn an_instruction_fetch_from_a_non_exec_mapping_is_segv_accerr() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon(&mut k, p, 2 * PAGE, PROT_READ | PROT_WRITE);
    let mut buf = [0u8; 2];
    // Before and after the page is present (the NX bit is what refuses the second one).
    assert_eq!(k.fetch(p, va, &mut buf), Err(accerr(va)));
    k.store(p, va.add(PAGE), b"\xeb\xfe").unwrap();
    assert_eq!(
        k.fetch(p, va.add(PAGE), &mut buf),
        Err(accerr(va.add(PAGE)))
    );
    assert!(k.pte_of(p, va.add(PAGE)).nx());

    k.mprotect(p, va.add(PAGE), PAGE, PROT_READ | PROT_EXEC)
        .unwrap();
    k.fetch(p, va.add(PAGE), &mut buf).unwrap();
    assert_eq!(&buf, b"\xeb\xfe");
    assert_eq!(k.process_stats(p).unwrap().signals, 2);
}

#[test]
fn an_exited_process_has_no_mappings_left() {
    let mut k = vmem::Kernel::default();
    let p = k.spawn().unwrap();
    let va = k
        .mmap(
            p,
            vmem::VirtAddr(0),
            4096,
            vmem::consts::PROT_READ | vmem::consts::PROT_WRITE,
            vmem::consts::MAP_PRIVATE | vmem::consts::MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    k.store_u64(p, va, 1).unwrap();
    k.exit(p).unwrap();
    // No panic: the access finds no mapping, and the syscalls say there is no such process.
    assert!(matches!(
        k.load_u64(p, va),
        Err(vmem::Signal::Segv {
            code: vmem::SegvCode::MapErr,
            ..
        })
    ));
    assert!(k.store(p, va, b"x").is_err());
    assert_eq!(k.munmap(p, va, 4096), Err(vmem::Errno::ESRCH));
}

#[test]
fn a_pid_that_is_no_process_reaches_no_memory() {
    // Whatever number a caller passes, a pid that names no process has no mappings:
    // SIGSEGV (MAPERR), never another process's pages, alive or gone. u32::MAX included.
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let va = anon(&mut k, p, PAGE, PROT_READ | PROT_WRITE);
    k.store_u64(p, va, 0x1234_5678).unwrap();
    for nobody in [vmem::Pid(u32::MAX), vmem::Pid(999)] {
        // Right after `p` used the short path, then again after `nobody` just did.
        assert_eq!(k.load_u64(p, va), Ok(0x1234_5678));
        for _ in 0..2 {
            assert_eq!(k.load_u64(nobody, va), Err(maperr(va)), "{nobody:?}");
            assert_eq!(k.load_u8(nobody, va), Err(maperr(va)), "{nobody:?}");
            assert_eq!(k.store_u64(nobody, va, 1), Err(maperr(va)), "{nobody:?}");
            let mut values = [0u64];
            let r = k.access_batch(nobody, &[vmem::TraceAccess::read(va, 8)], &mut values);
            assert_eq!(r, Err((0, maperr(va))), "{nobody:?}");
            assert_eq!(values, [0]);
        }
        assert_eq!(
            k.load_u64(p, va),
            Ok(0x1234_5678),
            "{nobody:?} wrote nothing"
        );
    }
    k.exit(p).unwrap();
    for nobody in [p, vmem::Pid(u32::MAX)] {
        assert_eq!(k.load_u64(nobody, va), Err(maperr(va)), "{nobody:?}");
    }
}
