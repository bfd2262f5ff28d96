//! The kernel interface: userfaultfd's ABI (`include/uapi/linux/userfaultfd.h`), the
//! ioctls on a userfaultfd, and anonymous memory regions.
//!
//! Owns the `#[repr(C)]` copies of the kernel's structures (the `libc` crate does not
//! carry them), the ioctl request numbers, [`Uffd`] (an open userfaultfd and its ioctls)
//! and [`Region`] (an `mmap`ed range unmapped on drop). It does not know about pages,
//! stores or caches: that is `pager.rs`.
//!
//! Every structure below has the layout of the kernel header of Linux 6.x on 64-bit
//! targets; the sizes are checked at compile time against the sizes encoded in the ioctl
//! numbers (`_IOWR(0xAA, nr, struct ...)`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `UFFD_API`: the API version passed to `UFFDIO_API`.
pub const UFFD_API: u64 = 0xAA;
/// `UFFD_USER_MODE_ONLY`: handle only faults taken in user mode. Allowed to unprivileged
/// users even when `vm.unprivileged_userfaultfd` is 0.
pub const UFFD_USER_MODE_ONLY: libc::c_int = 1;

/// `UFFD_EVENT_PAGEFAULT`.
pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
/// `UFFD_PAGEFAULT_FLAG_WRITE`: the fault was a write.
pub const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
/// `UFFD_PAGEFAULT_FLAG_WP`: the fault was a write to a write-protected page.
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// `UFFD_FEATURE_PAGEFAULT_FLAG_WP`: write-protect tracking of anonymous memory (5.7+).
pub const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
/// `UFFD_FEATURE_SIGBUS`: raise SIGBUS in the faulting thread instead of queueing (4.14+).
pub const UFFD_FEATURE_SIGBUS: u64 = 1 << 7;
/// `UFFD_FEATURE_POISON`: the `UFFDIO_POISON` ioctl (6.6+).
pub const UFFD_FEATURE_POISON: u64 = 1 << 14;

/// `UFFDIO_REGISTER_MODE_MISSING`.
pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
/// `UFFDIO_REGISTER_MODE_WP`.
pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_COPY_MODE_DONTWAKE`.
pub const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1 << 0;
/// `UFFDIO_COPY_MODE_WP`: install the page write-protected.
pub const UFFDIO_COPY_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_WRITEPROTECT_MODE_WP`.
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
/// `UFFDIO_WRITEPROTECT_MODE_DONTWAKE`.
pub const UFFDIO_WRITEPROTECT_MODE_DONTWAKE: u64 = 1 << 1;
/// `UFFDIO_POISON_MODE_DONTWAKE`.
pub const UFFDIO_POISON_MODE_DONTWAKE: u64 = 1 << 0;

/// `struct uffdio_api`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioApi {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRange {
    pub start: u64,
    pub len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioRegister {
    pub range: UffdioRange,
    pub mode: u64,
    pub ioctls: u64,
}

/// `struct uffdio_copy`: `copy` is written back with the bytes copied or `-errno`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioCopy {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    pub copy: i64,
}

/// `struct uffdio_writeprotect`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioWriteprotect {
    pub range: UffdioRange,
    pub mode: u64,
}

/// `struct uffdio_poison`: `updated` is written back with the bytes poisoned or `-errno`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdioPoison {
    pub range: UffdioRange,
    pub mode: u64,
    pub updated: i64,
}

/// `struct uffd_msg`, 32 bytes: an event byte, padding, and a 24-byte union of which this
/// crate reads only the page-fault arm (`flags`, `address`, `ptid`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct UffdMsg {
    pub event: u8,
    pub reserved1: u8,
    pub reserved2: u16,
    pub reserved3: u32,
    /// `arg.pagefault.flags`.
    pub pf_flags: u64,
    /// `arg.pagefault.address`.
    pub pf_address: u64,
    /// `arg.pagefault.feat.ptid` (and padding).
    pub pf_feat: u64,
}

const fn iowr(nr: u64, size: usize) -> u64 {
    // _IOC(_IOC_READ | _IOC_WRITE, 0xAA, nr, size)
    (3 << 30) | ((size as u64) << 16) | (0xAA << 8) | nr
}
const fn ior(nr: u64, size: usize) -> u64 {
    // _IOC(_IOC_READ, 0xAA, nr, size)
    (2 << 30) | ((size as u64) << 16) | (0xAA << 8) | nr
}

/// `UFFDIO_API`.
pub const UFFDIO_API: u64 = iowr(0x3F, std::mem::size_of::<UffdioApi>());
/// `UFFDIO_REGISTER`.
pub const UFFDIO_REGISTER: u64 = iowr(0x00, std::mem::size_of::<UffdioRegister>());
/// `UFFDIO_WAKE`.
pub const UFFDIO_WAKE: u64 = ior(0x02, std::mem::size_of::<UffdioRange>());
/// `UFFDIO_COPY`.
pub const UFFDIO_COPY: u64 = iowr(0x03, std::mem::size_of::<UffdioCopy>());
/// `UFFDIO_WRITEPROTECT`.
pub const UFFDIO_WRITEPROTECT: u64 = iowr(0x06, std::mem::size_of::<UffdioWriteprotect>());
/// `UFFDIO_POISON`.
pub const UFFDIO_POISON: u64 = iowr(0x08, std::mem::size_of::<UffdioPoison>());
/// `USERFAULTFD_IOC_NEW` on `/dev/userfaultfd` (6.1+): `_IO(0xAA, 0x00)`.
pub const USERFAULTFD_IOC_NEW: u64 = 0xAA00;

// The kernel's values, as the uapi header spells them.
const _: () = assert!(UFFDIO_API == 0xC018_AA3F);
const _: () = assert!(UFFDIO_REGISTER == 0xC020_AA00);
const _: () = assert!(UFFDIO_WAKE == 0x8010_AA02);
const _: () = assert!(UFFDIO_COPY == 0xC028_AA03);
const _: () = assert!(UFFDIO_WRITEPROTECT == 0xC018_AA06);
const _: () = assert!(UFFDIO_POISON == 0xC020_AA08);
const _: () = assert!(std::mem::size_of::<UffdMsg>() == 32);

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Sleeps while `word` holds `expected` (`FUTEX_WAIT_PRIVATE`); returns on a wake-up, a
/// signal, or at once if the value differs.
pub fn futex_wait(word: &std::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: the futex word is a live, aligned u32 of this process; no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// Wakes up to `count` threads sleeping on `word` (`FUTEX_WAKE_PRIVATE`).
/// Async-signal-safe: one system call.
pub fn futex_wake(word: &std::sync::atomic::AtomicU32, count: i32) {
    // SAFETY: the futex word is a live, aligned u32 of this process.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            count,
        )
    };
}

/// The system page size (`sysconf(_SC_PAGESIZE)`).
pub fn system_page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writing the file's dirty pages in
/// `[offset, offset + len)` to storage and returns without waiting (it may wait for a
/// full device queue). Durability still needs `fsync`; this only lets the device start
/// before it. Errors are ignored: the `fsync` that follows reports them.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: usize) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range reads no memory; it acts on our own descriptor.
    let _ = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// How a userfaultfd was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// `userfaultfd(2)` failed with this errno, and `/dev/userfaultfd` with the second
    /// (`None`: not tried).
    Refused(i32, Option<i32>),
}

/// An open userfaultfd.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Uffd {
    /// Opens a userfaultfd with `flags` (`O_CLOEXEC`, `O_NONBLOCK`, `UFFD_USER_MODE_ONLY`):
    /// first the system call, then, if that is refused, `/dev/userfaultfd`.
    pub fn open(flags: libc::c_int) -> Result<Uffd, OpenError> {
        // SAFETY: userfaultfd takes one integer argument and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
            return Ok(Uffd { fd });
        }
        let sys_err = errno();
        match Self::open_dev(flags) {
            Ok(u) => Ok(u),
            Err(dev_err) => Err(OpenError::Refused(sys_err, Some(dev_err))),
        }
    }

    fn open_dev(flags: libc::c_int) -> Result<Uffd, i32> {
        let dev = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/userfaultfd")
            .map_err(|e| e.raw_os_error().unwrap_or(libc::ENOENT))?;
        // SAFETY: USERFAULTFD_IOC_NEW takes the flags as its integer argument and returns a
        // new descriptor or -1; `dev` is an open descriptor.
        let fd = unsafe { libc::ioctl(dev.as_raw_fd(), USERFAULTFD_IOC_NEW as _, flags) };
        if fd < 0 {
            return Err(errno());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Uffd { fd })
    }

    /// The descriptor.
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `UFFDIO_API`: enables `features`; returns the features the kernel supports.
    pub fn api(&self, features: u64) -> io::Result<u64> {
        let mut a = UffdioApi {
            api: UFFD_API,
            features,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes one `struct uffdio_api`, which `a` is.
        cvt(unsafe { libc::ioctl(self.raw(), UFFDIO_API as _, &mut a) })?;
        Ok(a.features)
    }

    /// `UFFDIO_REGISTER` of `[start, start + len)` with `mode`.
    ///
    /// # Safety
    ///
    /// The range must be an anonymous mapping owned by the caller: from now on its faults
    /// are delivered to this userfaultfd, and a thread touching it waits for (or gets SIGBUS
    /// from) whoever serves this descriptor.
    pub unsafe fn register(&self, start: usize, len: usize, mode: u64) -> io::Result<()> {
        let mut r = UffdioRegister {
            range: UffdioRange {
                start: start as u64,
                len: len as u64,
            },
            mode,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes one `struct uffdio_register`; the caller
        // guarantees the range is theirs.
        cvt(unsafe { libc::ioctl(self.raw(), UFFDIO_REGISTER as _, &mut r) })?;
        Ok(())
    }

    /// `UFFDIO_COPY` of `len` bytes from `src` to the missing pages at `dst`. Returns the
    /// bytes copied (which may be fewer than `len` when a later page failed), or the errno
    /// when the first page failed (`EEXIST`: already present; `EAGAIN`: retry).
    ///
    /// # Safety
    ///
    /// `src..src + len` must be readable memory; `dst..dst + len` must lie in a range
    /// registered on this descriptor whose missing pages the caller is entitled to fill.
    pub unsafe fn copy(
        &self,
        dst: usize,
        src: *const u8,
        len: usize,
        mode: u64,
    ) -> Result<usize, i32> {
        let mut c = UffdioCopy {
            dst: dst as u64,
            src: src as u64,
            len: len as u64,
            mode,
            copy: 0,
        };
        // SAFETY: UFFDIO_COPY reads and writes one `struct uffdio_copy`; the caller
        // guarantees both ranges.
        let r = unsafe { libc::ioctl(self.raw(), UFFDIO_COPY as _, &mut c) };
        if r == 0 {
            return Ok(c.copy.max(0) as usize);
        }
        let e = errno();
        if c.copy > 0 {
            Ok(c.copy as usize)
        } else {
            Err(e)
        }
    }

    /// `UFFDIO_WRITEPROTECT`: protects (`protect`) or unprotects the range; `wake` wakes
    /// threads waiting on it. Only changes protection of pages in ranges registered on this
    /// descriptor with `UFFDIO_REGISTER_MODE_WP`, so it cannot change any memory's contents.
    pub fn writeprotect(
        &self,
        start: usize,
        len: usize,
        protect: bool,
        wake: bool,
    ) -> Result<(), i32> {
        // Protecting never wakes, and the kernel refuses WP together with DONTWAKE.
        let mode = if protect {
            UFFDIO_WRITEPROTECT_MODE_WP
        } else if wake {
            0
        } else {
            UFFDIO_WRITEPROTECT_MODE_DONTWAKE
        };
        let mut w = UffdioWriteprotect {
            range: UffdioRange {
                start: start as u64,
                len: len as u64,
            },
            mode,
        };
        loop {
            // SAFETY: UFFDIO_WRITEPROTECT reads one `struct uffdio_writeprotect`.
            let r = unsafe { libc::ioctl(self.raw(), UFFDIO_WRITEPROTECT as _, &mut w) };
            if r == 0 {
                return Ok(());
            }
            let e = errno();
            if e != libc::EAGAIN && e != libc::EINTR {
                return Err(e);
            }
        }
    }

    /// `UFFDIO_WAKE`: wakes threads waiting for a fault in the range to be served.
    pub fn wake(&self, start: usize, len: usize) {
        let mut r = UffdioRange {
            start: start as u64,
            len: len as u64,
        };
        // SAFETY: UFFDIO_WAKE reads one `struct uffdio_range` and only wakes waiters.
        unsafe { libc::ioctl(self.raw(), UFFDIO_WAKE as _, &mut r) };
    }

    /// `UFFDIO_POISON`: the missing pages of the range raise SIGBUS when touched.
    ///
    /// # Safety
    ///
    /// The range must lie in a range registered on this descriptor that the caller owns.
    pub unsafe fn poison(&self, start: usize, len: usize, wake: bool) -> Result<(), i32> {
        let mut p = UffdioPoison {
            range: UffdioRange {
                start: start as u64,
                len: len as u64,
            },
            mode: if wake { 0 } else { UFFDIO_POISON_MODE_DONTWAKE },
            updated: 0,
        };
        loop {
            // SAFETY: UFFDIO_POISON reads and writes one `struct uffdio_poison`; the caller
            // guarantees the range.
            let r = unsafe { libc::ioctl(self.raw(), UFFDIO_POISON as _, &mut p) };
            if r == 0 {
                return Ok(());
            }
            let e = errno();
            if e != libc::EAGAIN && e != libc::EINTR {
                return Err(e);
            }
        }
    }

    /// Reads pending messages into `buf` (non-blocking descriptors return `EAGAIN`).
    pub fn read_msgs(&self, buf: &mut [UffdMsg]) -> io::Result<usize> {
        let bytes = std::mem::size_of_val(buf);
        // SAFETY: `buf` is writable for `bytes` bytes, and every bit pattern is a valid
        // `UffdMsg` (plain integers).
        let n = unsafe { libc::read(self.raw(), buf.as_mut_ptr().cast(), bytes) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize / std::mem::size_of::<UffdMsg>())
    }
}

/// An anonymous private mapping, unmapped on drop.
#[derive(Debug)]
pub struct Region {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: a Region is an address range; it is only accessed through raw pointers whose
// users synchronize among themselves (the pager's page states).
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` hands out only the address.
unsafe impl Sync for Region {}

impl Region {
    /// Maps `len` bytes of fresh anonymous memory (zero-filled on touch, not reserved).
    pub fn anonymous(len: usize) -> io::Result<Region> {
        // SAFETY: a new anonymous mapping at an address the kernel chooses; no existing
        // memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr: p.cast(), len })
    }

    /// Maps `len` bytes of `file` from `offset` (a multiple of the system page) read-only
    /// and shared: a window onto the kernel's page cache of the file (pages wholly past
    /// its end raise SIGBUS on touch).
    pub fn file_window(file: &std::fs::File, offset: u64, len: usize) -> io::Result<Region> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // SAFETY: a new read-only mapping at an address the kernel chooses; no existing
        // memory is affected, and nobody can write through it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region { ptr: p.cast(), len })
    }

    /// The first byte.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `madvise(advice)` over `[off, off + len)` of the region.
    ///
    /// # Safety
    ///
    /// For advice that discards contents (`MADV_DONTNEED`), no reference to the bytes of
    /// the range may be relied on to keep its value: the caller must own those pages' state.
    pub unsafe fn madvise(&self, off: usize, len: usize, advice: libc::c_int) -> io::Result<()> {
        debug_assert!(off + len <= self.len);
        // SAFETY: the range lies inside this mapping (checked by the caller and asserted
        // above); the caller vouches for the advice's effect on contents.
        cvt(unsafe { libc::madvise(self.ptr.add(off).cast(), len, advice) })?;
        Ok(())
    }

    /// Replaces `[off, off + len)` of the region with a shared mapping of an empty memfd:
    /// every access there raises SIGBUS (`BUS_ADRERR`), as the kernel does past the end of
    /// a mapped file. The range stops being served by any userfaultfd.
    ///
    /// # Safety
    ///
    /// The caller must own the range: its previous contents disappear.
    pub unsafe fn fence_sigbus(&self, off: usize, len: usize) -> io::Result<()> {
        debug_assert!(off + len <= self.len);
        // SAFETY: memfd_create takes a NUL-terminated name and flags.
        let fd =
            cvt(unsafe { libc::memfd_create(c"vmem-uffd-sigbus".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: MAP_FIXED over a range inside this region, which the caller owns; the
        // memfd is empty, so the new pages are never readable and hold no data.
        let p = unsafe {
            libc::mmap(
                self.ptr.add(off).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Whether the system page at `off` is present in the page tables (`mincore`).
    pub fn is_present(&self, off: usize) -> bool {
        let mut v = 0u8;
        let page = system_page_size();
        let off = off / page * page;
        // SAFETY: mincore reads the page-table state of one page inside this mapping and
        // writes one byte to `v`.
        let r = unsafe { libc::mincore(self.ptr.add(off).cast(), page, &mut v) };
        r == 0 && v & 1 != 0
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the region owns this mapping; nothing refers to it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
