//! One named case per errno condition of the syscall surface.
//!
//! Every expectation here was measured on a real Linux 6.18 x86-64 kernel (the machine
//! `vmem` runs on), so they are the reference: a failing case is a bug in `vmem`, not in
//! the table. Each case runs on a fresh machine and process; the runner executes all of
//! them and reports every failing case by name.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use vmem::consts::*;
use vmem::fs::Fd;
use vmem::{Errno, Kernel, Pid, SegvCode, Signal, SysResult, VirtAddr};

const PG: u64 = vmem::PAGE_SIZE;
/// A window of address space no test mapping lands in unless asked to.
const WIN: u64 = 0x1000_0000;
const ANON: i32 = MAP_PRIVATE | MAP_ANONYMOUS;
const RW: i32 = PROT_READ | PROT_WRITE;

type Check = Result<(), String>;

struct Env {
    k: Kernel,
    p: Pid,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let mut k = Kernel::default();
        let p = k.spawn().expect("spawn");
        Env {
            k,
            p,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A real file of `len` bytes (a byte pattern) in the test's directory.
    fn file(&self, name: &str, len: usize) -> PathBuf {
        let path = self.dir.path().join(name);
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        std::fs::write(&path, data).expect("write test file");
        path
    }

    /// Opens a fresh 3-page file with `flags`.
    fn open_file(&mut self, flags: i32) -> Result<Fd, String> {
        let path = self.file("data", 3 * PG as usize);
        ok(self.k.open(self.p, &path, flags, 0))
    }

    fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: i32,
        flags: i32,
        fd: Fd,
        off: i64,
    ) -> SysResult<VirtAddr> {
        self.k
            .mmap(self.p, VirtAddr(addr), len, prot, flags, fd, off)
    }

    /// A private anonymous mapping of `pages` pages.
    fn anon(&mut self, pages: u64, prot: i32) -> Result<VirtAddr, String> {
        ok(self.mmap(0, pages * PG, prot, ANON, -1, 0))
    }

    /// A private anonymous mapping at exactly `addr`.
    fn anon_at(&mut self, addr: u64, pages: u64, prot: i32) -> Result<VirtAddr, String> {
        let va = ok(self.mmap(addr, pages * PG, prot, ANON | MAP_FIXED, -1, 0))?;
        eq(va.0, addr, "MAP_FIXED address")?;
        Ok(va)
    }

    /// `pages` pages at `addr` with the middle one unmapped (a hole).
    fn with_hole(&mut self, addr: u64) -> Result<VirtAddr, String> {
        let va = self.anon_at(addr, 3, RW)?;
        ok(self.k.munmap(self.p, va.add(PG), PG))?;
        Ok(va)
    }

    fn prot_at(&self, va: VirtAddr) -> Option<i32> {
        self.k
            .vmas(self.p)
            .unwrap()
            .iter()
            .find(|v| v.contains(va))
            .map(|v| v.prot)
    }
}

fn ok<T: Debug>(r: SysResult<T>) -> Result<T, String> {
    r.map_err(|e| format!("expected success, got {e}"))
}

fn want<T: Debug>(r: SysResult<T>, e: Errno) -> Check {
    match r {
        Err(got) if got == e => Ok(()),
        other => Err(format!("expected {e}, got {other:?}")),
    }
}

fn eq<T: PartialEq + Debug>(got: T, expected: T, what: &str) -> Check {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{what}: expected {expected:?}, got {got:?}"))
    }
}

fn mkfifo(path: &std::path::Path) -> Check {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .map_err(|e| format!("running mkfifo: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("mkfifo failed: {st}"))
    }
}

type Case = (&'static str, fn(&mut Env) -> Check);

fn cases() -> Vec<Case> {
    vec![
        // ----- mmap: EINVAL ---------------------------------------------------------------
        ("mmap_einval_unaligned_offset", |e| {
            let fd = e.open_file(O_RDWR)?;
            want(
                e.mmap(0, PG, PROT_READ, MAP_PRIVATE, fd, 100),
                Errno::EINVAL,
            )?;
            want(
                e.mmap(0, PG, PROT_READ, MAP_SHARED, fd, 4095),
                Errno::EINVAL,
            )
        }),
        ("mmap_einval_len_zero_anonymous", |e| {
            want(e.mmap(0, 0, RW, ANON, -1, 0), Errno::EINVAL)
        }),
        ("mmap_einval_len_zero_file", |e| {
            let fd = e.open_file(O_RDWR)?;
            want(e.mmap(0, 0, PROT_READ, MAP_SHARED, fd, 0), Errno::EINVAL)
        }),
        ("mmap_einval_neither_shared_nor_private_file", |e| {
            let fd = e.open_file(O_RDWR)?;
            want(e.mmap(0, PG, PROT_READ, 0, fd, 0), Errno::EINVAL)
        }),
        ("mmap_einval_neither_shared_nor_private_anonymous", |e| {
            want(
                e.mmap(0, PG, PROT_READ, MAP_ANONYMOUS, -1, 0),
                Errno::EINVAL,
            )
        }),
        ("mmap_einval_fixed_unaligned_addr", |e| {
            want(
                e.mmap(WIN + 0x100, PG, RW, ANON | MAP_FIXED, -1, 0),
                Errno::EINVAL,
            )
        }),
        ("mmap_einval_shared_validate_anonymous", |e| {
            want(
                e.mmap(0, PG, RW, MAP_SHARED_VALIDATE | MAP_ANONYMOUS, -1, 0),
                Errno::EINVAL,
            )
        }),
        ("mmap_einval_unaligned_offset_beats_bad_fd", |e| {
            want(e.mmap(0, PG, PROT_READ, MAP_PRIVATE, 99, 1), Errno::EINVAL)
        }),
        // ----- mmap: EBADF ----------------------------------------------------------------
        ("mmap_ebadf_bad_fd", |e| {
            want(e.mmap(0, PG, PROT_READ, MAP_PRIVATE, 99, 0), Errno::EBADF)?;
            want(e.mmap(0, PG, PROT_READ, MAP_SHARED, -1, 0), Errno::EBADF)
        }),
        ("mmap_ebadf_closed_fd", |e| {
            let fd = e.open_file(O_RDWR)?;
            ok(e.k.close(e.p, fd))?;
            want(e.mmap(0, PG, PROT_READ, MAP_PRIVATE, fd, 0), Errno::EBADF)
        }),
        ("mmap_ebadf_beats_len_zero", |e| {
            want(e.mmap(0, 0, PROT_READ, MAP_PRIVATE, 99, 0), Errno::EBADF)
        }),
        ("mmap_anonymous_ignores_fd", |e| {
            ok(e.mmap(0, PG, RW, ANON, 99, 0)).map(|_| ())
        }),
        // ----- mmap / mprotect: EACCES ----------------------------------------------------
        ("mmap_eacces_wronly_private", |e| {
            let fd = e.open_file(O_WRONLY)?;
            want(e.mmap(0, PG, PROT_READ, MAP_PRIVATE, fd, 0), Errno::EACCES)?;
            want(e.mmap(0, PG, RW, MAP_PRIVATE, fd, 0), Errno::EACCES)?;
            want(e.mmap(0, PG, PROT_NONE, MAP_PRIVATE, fd, 0), Errno::EACCES)
        }),
        ("mmap_eacces_wronly_shared", |e| {
            let fd = e.open_file(O_WRONLY)?;
            want(e.mmap(0, PG, PROT_READ, MAP_SHARED, fd, 0), Errno::EACCES)?;
            want(e.mmap(0, PG, RW, MAP_SHARED, fd, 0), Errno::EACCES)?;
            want(e.mmap(0, PG, PROT_WRITE, MAP_SHARED, fd, 0), Errno::EACCES)?;
            want(e.mmap(0, PG, PROT_NONE, MAP_SHARED, fd, 0), Errno::EACCES)
        }),
        ("mmap_eacces_shared_write_on_rdonly", |e| {
            let fd = e.open_file(O_RDONLY)?;
            want(e.mmap(0, PG, RW, MAP_SHARED, fd, 0), Errno::EACCES)?;
            want(
                e.mmap(0, PG, PROT_WRITE, MAP_SHARED_VALIDATE, fd, 0),
                Errno::EACCES,
            )
        }),
        ("mmap_shared_read_on_rdonly_ok", |e| {
            let fd = e.open_file(O_RDONLY)?;
            let va = ok(e.mmap(0, PG, PROT_READ, MAP_SHARED, fd, 0))?;
            eq(e.k.load_u8(e.p, va), Ok(1), "first byte")
        }),
        ("mprotect_eacces_write_on_shared_rdonly", |e| {
            let fd = e.open_file(O_RDONLY)?;
            let va = ok(e.mmap(0, 2 * PG, PROT_READ, MAP_SHARED, fd, 0))?;
            want(e.k.mprotect(e.p, va, 2 * PG, RW), Errno::EACCES)?;
            want(e.k.mprotect(e.p, va, PG, PROT_WRITE), Errno::EACCES)?;
            eq(
                e.prot_at(va),
                Some(PROT_READ),
                "prot after refused mprotect",
            )?;
            // Adding PROT_EXEC is allowed.
            ok(e.k.mprotect(e.p, va, 2 * PG, PROT_READ | PROT_EXEC))
        }),
        ("mmap_private_write_on_rdonly_ok", |e| {
            let fd = e.open_file(O_RDONLY)?;
            let va = ok(e.mmap(0, PG, RW, MAP_PRIVATE, fd, 0))?;
            e.k.store_u8(e.p, va, 0xaa)
                .map_err(|s| format!("store: {s}"))?;
            eq(e.k.load_u8(e.p, va), Ok(0xaa), "private copy")?;
            eq(ok(e.k.pread(e.p, fd, 1, 0))?, vec![1], "file untouched")?;
            // mprotect to and from PROT_WRITE stays allowed on a private mapping.
            ok(e.k.mprotect(e.p, va, PG, PROT_READ))?;
            ok(e.k.mprotect(e.p, va, PG, RW))
        }),
        // ----- mmap: ENODEV ---------------------------------------------------------------
        ("mmap_enodev_directory", |e| {
            let fd = ok(e.k.open(e.p, e.dir.path(), O_RDONLY, 0))?;
            want(e.mmap(0, PG, PROT_READ, MAP_PRIVATE, fd, 0), Errno::ENODEV)?;
            want(e.mmap(0, PG, PROT_READ, MAP_SHARED, fd, 0), Errno::ENODEV)
        }),
        ("mmap_enodev_fifo", |e| {
            let path = e.dir.path().join("fifo");
            mkfifo(&path)?;
            let fd = ok(e.k.open(e.p, &path, O_RDONLY, 0))?;
            want(e.mmap(0, PG, PROT_READ, MAP_PRIVATE, fd, 0), Errno::ENODEV)?;
            want(e.mmap(0, PG, PROT_READ, MAP_SHARED, fd, 0), Errno::ENODEV)
        }),
        ("mmap_enodev_dev_null", |e| {
            let fd = ok(e.k.open(e.p, "/dev/null", O_RDWR, 0))?;
            want(e.mmap(0, PG, PROT_READ, MAP_PRIVATE, fd, 0), Errno::ENODEV)?;
            want(e.mmap(0, PG, RW, MAP_SHARED, fd, 0), Errno::ENODEV)
        }),
        // ----- mmap: EEXIST, EOPNOTSUPP, ENOMEM ---------------------------------------------
        ("mmap_eexist_fixed_noreplace_overlap", |e| {
            e.anon_at(WIN + PG, 2, RW)?;
            let nr = ANON | MAP_FIXED_NOREPLACE;
            want(e.mmap(WIN + PG, PG, RW, nr, -1, 0), Errno::EEXIST)?;
            want(e.mmap(WIN, 2 * PG, RW, nr, -1, 0), Errno::EEXIST)?;
            want(e.mmap(WIN + 2 * PG, 4 * PG, RW, nr, -1, 0), Errno::EEXIST)?;
            // Right next to it is free.
            eq(
                ok(e.mmap(WIN + 3 * PG, PG, RW, nr, -1, 0))?,
                VirtAddr(WIN + 3 * PG),
                "noreplace address",
            )
        }),
        ("mmap_eopnotsupp_shared_validate_unknown_bit", |e| {
            let fd = e.open_file(O_RDWR)?;
            want(
                e.mmap(0, PG, PROT_READ, MAP_SHARED_VALIDATE | 0x80_0000, fd, 0),
                Errno::EOPNOTSUPP,
            )
        }),
        ("mmap_shared_unknown_bit_ignored", |e| {
            let fd = e.open_file(O_RDWR)?;
            let va = ok(e.mmap(0, PG, RW, MAP_SHARED | 0x80_0000, fd, 0))?;
            e.k.store_u8(e.p, va, 7)
                .map_err(|s| format!("store: {s}"))?;
            eq(
                ok(e.k.pread(e.p, fd, 1, 0))?,
                vec![7],
                "shared store visible to read",
            )
        }),
        ("mmap_enomem_huge_len", |e| {
            want(e.mmap(0, u64::MAX - 4095, RW, ANON, -1, 0), Errno::ENOMEM)
        }),
        ("mmap_accepts_unknown_prot_bit", |e| {
            let va = ok(e.mmap(0, PG, RW | 0x100, ANON, -1, 0))?;
            eq(e.prot_at(va), Some(RW), "prot of the new mapping")?;
            e.k.store_u8(e.p, va, 3).map_err(|s| format!("store: {s}"))
        }),
        // ----- ENOMEM over unmapped memory --------------------------------------------------
        ("msync_enomem_unmapped", |e| {
            want(e.k.msync(e.p, VirtAddr(WIN), PG, MS_SYNC), Errno::ENOMEM)?;
            // Also when mappings exist above the range.
            e.anon_at(WIN + 8 * PG, 1, RW)?;
            want(
                e.k.msync(e.p, VirtAddr(WIN), 2 * PG, MS_ASYNC),
                Errno::ENOMEM,
            )
        }),
        ("mprotect_enomem_unmapped", |e| {
            want(
                e.k.mprotect(e.p, VirtAddr(WIN), PG, PROT_READ),
                Errno::ENOMEM,
            )?;
            e.anon_at(WIN + 8 * PG, 1, RW)?;
            want(
                e.k.mprotect(e.p, VirtAddr(WIN), 9 * PG, PROT_READ),
                Errno::ENOMEM,
            )?;
            eq(
                e.prot_at(VirtAddr(WIN + 8 * PG)),
                Some(RW),
                "mapping above unchanged",
            )
        }),
        ("madvise_enomem_unmapped", |e| {
            want(
                e.k.madvise(e.p, VirtAddr(WIN), PG, MADV_DONTNEED),
                Errno::ENOMEM,
            )?;
            want(
                e.k.madvise(e.p, VirtAddr(WIN), PG, MADV_NORMAL),
                Errno::ENOMEM,
            )
        }),
        ("mincore_enomem_unmapped", |e| {
            want(e.k.mincore(e.p, VirtAddr(WIN), PG), Errno::ENOMEM)
        }),
        ("msync_enomem_hole", |e| {
            let va = e.with_hole(WIN)?;
            want(e.k.msync(e.p, va, 3 * PG, MS_SYNC), Errno::ENOMEM)?;
            // Past the last mapping is a hole as well.
            want(
                e.k.msync(e.p, va.add(2 * PG), 2 * PG, MS_ASYNC),
                Errno::ENOMEM,
            )?;
            ok(e.k.msync(e.p, va, PG, MS_SYNC))
        }),
        ("mremap_enomem_grow_in_place_blocked", |e| {
            let va = e.anon_at(WIN, 1, RW)?;
            e.anon_at(WIN + PG, 1, PROT_READ)?;
            want(
                e.k.mremap(e.p, va, PG, 2 * PG, 0, VirtAddr(0)),
                Errno::ENOMEM,
            )?;
            // With room after it, growing in place works.
            let vb = e.anon_at(WIN + 16 * PG, 1, RW)?;
            eq(
                ok(e.k.mremap(e.p, vb, PG, 2 * PG, 0, VirtAddr(0)))?,
                vb,
                "grown in place",
            )
        }),
        // ----- mprotect ---------------------------------------------------------------------
        ("mprotect_einval_unaligned_addr", |e| {
            let va = e.anon(1, RW)?;
            want(e.k.mprotect(e.p, va.add(1), PG, PROT_READ), Errno::EINVAL)
        }),
        ("mprotect_einval_unknown_prot_bit", |e| {
            let va = e.anon(1, RW)?;
            want(e.k.mprotect(e.p, va, PG, PROT_READ | 0x100), Errno::EINVAL)?;
            eq(e.prot_at(va), Some(RW), "prot unchanged")
        }),
        ("mprotect_einval_growsdown_and_growsup", |e| {
            let va = e.anon(1, RW)?;
            want(
                e.k.mprotect(e.p, va, PG, PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP),
                Errno::EINVAL,
            )
        }),
        ("mprotect_len_zero_ok", |e| {
            ok(e.k.mprotect(e.p, VirtAddr(WIN), 0, PROT_READ))?;
            let va = e.anon(1, RW)?;
            ok(e.k.mprotect(e.p, va, 0, PROT_NONE))?;
            eq(e.prot_at(va), Some(RW), "prot unchanged")
        }),
        ("mprotect_hole_enomem_first_part_changed", |e| {
            let va = e.with_hole(WIN)?;
            want(e.k.mprotect(e.p, va, 3 * PG, PROT_READ), Errno::ENOMEM)?;
            eq(e.prot_at(va), Some(PROT_READ), "before the hole")?;
            eq(e.prot_at(va.add(2 * PG)), Some(RW), "after the hole")?;
            eq(
                e.k.store_u8(e.p, va, 1),
                Err(Signal::Segv {
                    addr: va,
                    code: SegvCode::AccErr,
                }),
                "store before the hole",
            )?;
            e.k.store_u8(e.p, va.add(2 * PG), 1)
                .map_err(|s| format!("store after the hole: {s}"))
        }),
        // ----- msync ------------------------------------------------------------------------
        ("msync_einval_sync_and_async", |e| {
            let va = e.anon(1, RW)?;
            want(e.k.msync(e.p, va, PG, MS_SYNC | MS_ASYNC), Errno::EINVAL)
        }),
        ("msync_einval_unknown_flag", |e| {
            let va = e.anon(1, RW)?;
            want(e.k.msync(e.p, va, PG, 0x100), Errno::EINVAL)?;
            want(e.k.msync(e.p, va, PG, MS_SYNC | 0x100), Errno::EINVAL)
        }),
        ("msync_einval_unaligned_addr", |e| {
            let va = e.anon(1, RW)?;
            want(e.k.msync(e.p, va.add(8), PG, MS_SYNC), Errno::EINVAL)
        }),
        ("msync_len_zero_unmapped_ok", |e| {
            ok(e.k.msync(e.p, VirtAddr(WIN), 0, MS_SYNC))
        }),
        // ----- madvise ----------------------------------------------------------------------
        ("madvise_einval_bad_advice", |e| {
            let va = e.anon(1, RW)?;
            want(e.k.madvise(e.p, va, PG, 999), Errno::EINVAL)
        }),
        ("madvise_einval_bad_advice_len_zero", |e| {
            want(e.k.madvise(e.p, VirtAddr(WIN), 0, 999), Errno::EINVAL)
        }),
        ("madvise_einval_unaligned_addr", |e| {
            let va = e.anon(1, RW)?;
            want(
                e.k.madvise(e.p, va.add(1), PG, MADV_DONTNEED),
                Errno::EINVAL,
            )
        }),
        ("madvise_len_zero_ok", |e| {
            ok(e.k.madvise(e.p, VirtAddr(WIN), 0, MADV_DONTNEED))
        }),
        ("madvise_hole_enomem_dontneed_applied_both_sides", |e| {
            let va = e.with_hole(WIN)?;
            e.k.store_u8(e.p, va, 0x11)
                .map_err(|s| format!("store: {s}"))?;
            e.k.store_u8(e.p, va.add(2 * PG), 0x22)
                .map_err(|s| format!("store: {s}"))?;
            want(e.k.madvise(e.p, va, 3 * PG, MADV_DONTNEED), Errno::ENOMEM)?;
            eq(e.k.load_u8(e.p, va), Ok(0), "before the hole")?;
            eq(e.k.load_u8(e.p, va.add(2 * PG)), Ok(0), "after the hole")
        }),
        // ----- mincore ----------------------------------------------------------------------
        ("mincore_einval_unaligned", |e| {
            let va = e.anon(1, RW)?;
            want(e.k.mincore(e.p, va.add(1), PG), Errno::EINVAL)
        }),
        ("mincore_enomem_hole", |e| {
            let va = e.with_hole(WIN)?;
            want(e.k.mincore(e.p, va, 3 * PG), Errno::ENOMEM)?;
            eq(ok(e.k.mincore(e.p, va, PG))?, vec![0], "untouched page")
        }),
        // ----- mremap -----------------------------------------------------------------------
        ("mremap_einval_unaligned_old", |e| {
            let va = e.anon(1, RW)?;
            want(
                e.k.mremap(e.p, va.add(1), PG, 2 * PG, MREMAP_MAYMOVE, VirtAddr(0)),
                Errno::EINVAL,
            )
        }),
        ("mremap_einval_new_len_zero", |e| {
            let va = e.anon(1, RW)?;
            want(
                e.k.mremap(e.p, va, PG, 0, MREMAP_MAYMOVE, VirtAddr(0)),
                Errno::EINVAL,
            )
        }),
        ("mremap_einval_unknown_flag", |e| {
            let va = e.anon(1, RW)?;
            want(
                e.k.mremap(e.p, va, PG, 2 * PG, MREMAP_MAYMOVE | 8, VirtAddr(0)),
                Errno::EINVAL,
            )
        }),
        ("mremap_einval_fixed_without_maymove", |e| {
            let va = e.anon(1, RW)?;
            want(
                e.k.mremap(e.p, va, PG, PG, MREMAP_FIXED, VirtAddr(WIN)),
                Errno::EINVAL,
            )
        }),
        ("mremap_einval_old_len_zero_private", |e| {
            let va = e.anon(1, RW)?;
            want(
                e.k.mremap(e.p, va, 0, PG, MREMAP_MAYMOVE, VirtAddr(0)),
                Errno::EINVAL,
            )
        }),
        ("mremap_einval_fixed_overlap", |e| {
            let va = e.anon_at(WIN, 2, RW)?;
            let f = MREMAP_MAYMOVE | MREMAP_FIXED;
            want(
                e.k.mremap(e.p, va, 2 * PG, 2 * PG, f, va.add(PG)),
                Errno::EINVAL,
            )?;
            want(
                e.k.mremap(e.p, va.add(PG), PG, 2 * PG, f, va),
                Errno::EINVAL,
            )
        }),
        ("mremap_efault_old_not_mapped", |e| {
            want(
                e.k.mremap(e.p, VirtAddr(WIN), PG, 2 * PG, MREMAP_MAYMOVE, VirtAddr(0)),
                Errno::EFAULT,
            )
        }),
        ("mremap_efault_grow_across_two_vmas", |e| {
            let va = e.anon_at(WIN, 2, RW)?;
            ok(e.k.mprotect(e.p, va.add(PG), PG, PROT_READ))?;
            want(
                e.k.mremap(e.p, va, 2 * PG, 4 * PG, MREMAP_MAYMOVE, VirtAddr(0)),
                Errno::EFAULT,
            )
        }),
        // ----- file syscalls ----------------------------------------------------------------
        ("open_enoent", |e| {
            let path = e.dir.path().join("missing");
            want(e.k.open(e.p, &path, O_RDONLY, 0), Errno::ENOENT)?;
            want(e.k.open(e.p, &path, O_RDWR, 0), Errno::ENOENT)
        }),
        ("open_eisdir_write_directory", |e| {
            let dir = e.dir.path().to_path_buf();
            want(e.k.open(e.p, &dir, O_WRONLY, 0), Errno::EISDIR)?;
            want(e.k.open(e.p, &dir, O_RDWR, 0), Errno::EISDIR)
        }),
        ("read_ebadf_wronly", |e| {
            let fd = e.open_file(O_WRONLY)?;
            want(e.k.read(e.p, fd, 10), Errno::EBADF)?;
            want(e.k.pread(e.p, fd, 10, 0), Errno::EBADF)
        }),
        ("write_ebadf_rdonly", |e| {
            let fd = e.open_file(O_RDONLY)?;
            want(e.k.write(e.p, fd, b"x"), Errno::EBADF)?;
            want(e.k.pwrite(e.p, fd, b"x", 0), Errno::EBADF)
        }),
        ("ftruncate_einval_rdonly", |e| {
            let fd = e.open_file(O_RDONLY)?;
            want(e.k.ftruncate(e.p, fd, 0), Errno::EINVAL)
        }),
        ("lseek_einval_negative", |e| {
            let fd = e.open_file(O_RDONLY)?;
            want(e.k.lseek(e.p, fd, -1, SEEK_SET), Errno::EINVAL)?;
            want(
                e.k.lseek(e.p, fd, -(3 * PG as i64) - 1, SEEK_END),
                Errno::EINVAL,
            )?;
            eq(
                ok(e.k.lseek(e.p, fd, -1, SEEK_END))?,
                3 * PG - 1,
                "SEEK_END - 1",
            )
        }),
        // ----- placement --------------------------------------------------------------------
        ("hint_free_is_used_exactly", |e| {
            eq(
                ok(e.mmap(WIN, PG, RW, ANON, -1, 0))?,
                VirtAddr(WIN),
                "hinted address",
            )
        }),
        ("hint_below_mmap_min_addr_is_raised", |e| {
            eq(
                ok(e.mmap(0x1000, PG, RW, ANON, -1, 0))?,
                VirtAddr(0x10000),
                "hinted address",
            )
        }),
        ("hint_rounding_to_zero_is_no_hint", |e| {
            let va = ok(e.mmap(0x500, PG, RW, ANON, -1, 0))?;
            if va.0 < 0x7000_0000_0000 {
                return Err(format!("expected a top-down address, got {va}"));
            }
            // Same place a fresh process gets for a NULL hint.
            let q = ok(e.k.spawn())?;
            let vq = ok(e.k.mmap(q, VirtAddr(0), PG, RW, ANON, -1, 0))?;
            eq(va, vq, "hint 0x500 vs NULL")
        }),
        ("consecutive_anonymous_maps_adjacent_and_merged", |e| {
            let a = e.anon(1, RW)?;
            let b = e.anon(1, RW)?;
            eq(b.0, a.0 - PG, "second mapping")?;
            let vmas = ok(e.k.vmas(e.p))?;
            eq(vmas.len(), 1, "VMA count")?;
            eq((vmas[0].start, vmas[0].end), (b, a.add(PG)), "merged VMA")
        }),
        // ----- anonymous data -----------------------------------------------------------------
        ("anonymous_data_survives_mprotect_lost_after_remap", |e| {
            let va = e.anon_at(WIN, 1, RW)?;
            e.k.store_u8(e.p, va.add(5), 0x5a)
                .map_err(|s| format!("store: {s}"))?;
            ok(e.k.mprotect(e.p, va, PG, PROT_NONE))?;
            ok(e.k.mprotect(e.p, va, PG, PROT_READ))?;
            eq(e.k.load_u8(e.p, va.add(5)), Ok(0x5a), "after mprotect")?;
            ok(e.k.munmap(e.p, va, PG))?;
            eq(
                e.k.load_u8(e.p, va.add(5)),
                Err(Signal::Segv {
                    addr: va.add(5),
                    code: SegvCode::MapErr,
                }),
                "after munmap",
            )?;
            e.anon_at(WIN, 1, RW)?;
            eq(e.k.load_u8(e.p, va.add(5)), Ok(0), "after remap")
        }),
    ]
}

#[test]
fn errno_cases() {
    let cases = cases();
    let mut names = std::collections::HashSet::new();
    for (name, _) in &cases {
        assert!(names.insert(*name), "duplicate case name {name}");
    }
    let mut failures = Vec::new();
    for (name, run) in &cases {
        let mut env = Env::new();
        let r = catch_unwind(AssertUnwindSafe(|| run(&mut env)));
        let msg = match r {
            Ok(Ok(())) => continue,
            Ok(Err(m)) => m,
            Err(p) => format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        eprintln!("FAILED case {name}: {msg}");
        failures.push(format!("{name}: {msg}"));
    }
    println!("{} cases, {} failed", cases.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} errno cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
