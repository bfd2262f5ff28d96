//! Real memory mappings over pluggable stores, with page faults served in user space
//! through Linux userfaultfd.
//!
//! A program maps a [`Store`] (a file, a buffer, an encrypted or remote store…) and gets a
//! real pointer: loads and stores run at hardware speed through the kernel's page tables
//! and TLB. When a page is not there, the fault comes to this crate's pager, which reads
//! the page from the store, installs it with `UFFDIO_COPY` and lets the access retry —
//! with the cache budget, page size, read-ahead and write-back policy the program chose.
//!
//! ```
//! use std::io::Write;
//! use vmem_uffd::MapOptions;
//!
//! let mut file = tempfile::tempfile()?;
//! file.write_all(&vec![7u8; 1 << 20])?;                  // 1 MiB file
//! let mut map = MapOptions::new(file.try_clone()?)
//!     .shared()                                          // writes go back to the file
//!     .cache_budget(256 << 10)                           // at most 64 pages resident
//!     .map()?;
//! assert_eq!(map[12345], 7);                             // a fault, served by the pager
//! map[0..5].copy_from_slice(b"hello");                   // dirty one page
//! map.flush()?;                                          // pwrite + fsync
//! let s = map.stats();
//! assert!(s.faults >= 1 && s.writebacks >= 1);
//! drop(map);
//! let mut head = [0u8; 5];
//! std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0)?;
//! assert_eq!(&head, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How a fault is served
//!
//! The mapping is anonymous private memory registered with userfaultfd in
//! missing-page and write-protect modes. Two deliveries ([`Delivery`]):
//!
//! - [`Delivery::Signal`] (the default, the faster: one kernel round trip, measured by
//!   `examples/bench.rs`): the userfaultfd has `UFFD_FEATURE_SIGBUS`, so the faulting
//!   thread gets SIGBUS and this crate's handler serves the fault in that thread, then
//!   returns. SIGBUS that is not ours is forwarded to the previous handler.
//! - [`Delivery::Threads`]: the faulting thread sleeps in the kernel; filler threads read
//!   the fault from the userfaultfd, serve it and wake it. Also serves faults the kernel
//!   takes on the program's behalf (a `read(2)` into the mapping), which signal delivery
//!   cannot (they fail with `EFAULT` there).
//!
//! # Stores that are files
//!
//! When the store is a real file ([`Store::backing_file`]), the pager maps the file twice,
//! read-only, and fills pages with one `UFFDIO_COPY` straight out of the kernel's page
//! cache (no `pread` into a buffer first: one copy per page, not two). Scattered faults
//! copy from a `MADV_RANDOM` window, so a cold page costs one read of that page, as with
//! the kernel's own `MADV_RANDOM` mapping. Sequential streams (from their second run of
//! read-ahead on: two scattered faults that happen to be neighbours are not a stream) copy
//! from a window with the kernel's default read-around, and a read-ahead thread faults that
//! window in 16 MiB ahead of them (then unmaps it again): the kernel reads the file for us
//! exactly as it does for its own mappings — large folios, `read_ahead_kb` requests,
//! asynchronous — while the program's threads only copy. Measured by `examples/bench.rs`:
//! a cold sequential scan runs at the disk's speed like the kernel's mapping (0.86-1.27x
//! its time); cached data costs 3.2-6.5 µs per 4 KiB fault on three 2-vCPU VMs (Linux
//! 6.x), where a bare handler doing nothing but the `UFFDIO_COPY` costs nearly as much
//! (the bench prints that floor; the pager is 0.15-0.7 µs above it within a run): about
//! 2.2 µs from the fault to the handler (exception, `handle_userfault`, the signal
//! frame), 1.8 µs in the copy, 0.7 µs in `rt_sigreturn` and the retried access.
//!
//! Clean pages are installed write-protected; the first write to one lifts the protection
//! and marks it dirty. Write-back (flush, eviction, drop) protects the page again *before*
//! copying it, so a concurrent write either lands before the copy or faults and waits. It
//! protects a span of dirty pages (and the clean ones between them) with one ioctl, and a
//! flush has the file start writing each span before the next is copied.
//! Past the high watermark (the cache budget) the oldest-filled pages, with a second
//! chance for pages touched since, are evicted down to a low watermark: dirty ones written
//! back, then `MADV_DONTNEED`, so that the next touch faults again. Faults that follow each
//! other in address order grow a read-ahead window (4, 8, … up to the configured pages);
//! scattered faults read one page.
//!
//! # Past the end, and errors
//!
//! As with the kernel's `mmap` of a file: the mapping may be longer than the store; bytes
//! from the end of the store to the end of its last system page read as zero, and pages
//! wholly past it raise SIGBUS. This crate does that with a real SIGBUS: the tail past the
//! store is not registered with userfaultfd but mapped to an empty memfd. A store read
//! that fails (or returns less than the store's length promises) makes the faulting thread
//! get SIGBUS too: the page is poisoned (`UFFDIO_POISON`, Linux 6.6+; older kernels: the
//! page is fenced with an empty memfd) for thread delivery, or the signal is forwarded for
//! signal delivery. [`Mapping::evict_all`] forgets bad pages, so the next touch retries.
//!
//! # Limits
//!
//! - The mapping's length is fixed at [`MapOptions::map`]: a store that grows later is not
//!   seen past the old end; one that shrinks gives SIGBUS for pager pages wholly past the
//!   new end.
//! - A store must not read or write the mapping it backs (the fault would wait on itself).
//! - Do not `munmap`, `mremap` or `madvise` the mapping's memory yourself; after `fork`
//!   the child does not have the mapping (`MADV_DONTFORK`).
//! - With signal delivery, a later `sigaction(SIGBUS)` that does not chain to the previous
//!   handler disconnects the mapping (the next map re-installs the handler).
//! - Page states cost two bytes per page, plus four per page when a budget is set.
//!
//! # Safety
//!
//! This crate is where the workspace's `unsafe` code lives: system calls, the signal
//! handler, and raw access to mapped memory. Each `unsafe` block says why it is sound.
//! The slice accessors are safe because the pager changes a page's bytes only while the
//! page is absent (installing it) — the bytes a program sees change only through its own
//! writes, or if someone else changes the store while a page is evicted (the next fault
//! reads the new contents, as with a kernel mapping of a file someone else writes).

#![warn(missing_docs)]

mod pager;
mod signal;
mod stores;
mod sys;
mod threads;

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut, Range};
use std::sync::{Arc, OnceLock};

pub use stores::XorStore;
pub use vmem::fs::store::{MemStore, Store};

use pager::Pager;
use sys::{Region, Uffd};

/// How page faults reach the pager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// SIGBUS in the faulting thread (`UFFD_FEATURE_SIGBUS`), served by this crate's
    /// handler in that thread. No threads are started. The default.
    Signal,
    /// Messages on the userfaultfd, served by filler threads while the faulting thread
    /// sleeps in the kernel.
    Threads,
}

/// Counters of one mapping ([`Mapping::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Missing-page faults served by reading the store (duplicates not counted).
    pub faults: u64,
    /// Of those, faults by a write (the page was installed writable and dirty).
    pub write_faults: u64,
    /// Write-protect faults: the first write to a clean page.
    pub wp_faults: u64,
    /// Pages installed (faulted, read ahead and prefetched).
    pub pages_filled: u64,
    /// Pages installed by read-ahead beyond the faulting page.
    pub readahead_pages: u64,
    /// Pages evicted (discarded, to be faulted again).
    pub evictions: u64,
    /// Pages written back to the store.
    pub writebacks: u64,
    /// Bytes written to the store.
    pub bytes_written: u64,
    /// Store reads that failed (the faulting thread got SIGBUS).
    pub read_errors: u64,
    /// Pages resident now (installed or being installed).
    pub resident_pages: u64,
}

/// Why a mapping could not be made.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The kernel refused userfaultfd; `message` says why and which setting allows it.
    Unavailable {
        /// errno of `userfaultfd(2)`.
        errno: i32,
        /// errno of opening `/dev/userfaultfd` (`None`: not tried).
        dev_errno: Option<i32>,
        /// The explanation, with the settings that would allow it.
        message: String,
    },
    /// This kernel lacks a userfaultfd feature the mapping needs.
    Unsupported {
        /// The feature, as the kernel header names it.
        feature: &'static str,
        /// The first Linux version that has it.
        since: &'static str,
    },
    /// A bad option (page size, length…).
    InvalidArgument(String),
    /// A system call or a store operation failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable { message, .. } => f.write_str(message),
            Error::Unsupported { feature, since } => {
                write!(
                    f,
                    "this kernel's userfaultfd lacks {feature} (Linux {since}+)"
                )
            }
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::Io { op, source } => write!(f, "{op}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Unavailable { .. } => io::ErrorKind::PermissionDenied,
            Error::Unsupported { .. } => io::ErrorKind::Unsupported,
            Error::InvalidArgument(_) => io::ErrorKind::InvalidInput,
            Error::Io { source, .. } => source.kind(),
        };
        io::Error::new(kind, e)
    }
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ENOSYS => "ENOSYS",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::ENOMEM => "ENOMEM",
        _ => "error",
    }
}

impl Error {
    /// The error [`MapOptions::map`] returns when `userfaultfd(2)` fails with `errno` and
    /// opening `/dev/userfaultfd` with `dev_errno`: it says why and what would allow it.
    ///
    /// ```
    /// let e = vmem_uffd::Error::unavailable(libc::EPERM, Some(libc::EACCES));
    /// assert!(e.to_string().contains("vm.unprivileged_userfaultfd"));
    /// ```
    pub fn unavailable(errno: i32, dev_errno: Option<i32>) -> Error {
        let sys = io::Error::from_raw_os_error(errno);
        let dev = match dev_errno {
            None => String::new(),
            Some(d) => format!(
                "; /dev/userfaultfd: {} ({})",
                io::Error::from_raw_os_error(d),
                errno_name(d)
            ),
        };
        let sysctl = std::fs::read_to_string("/proc/sys/vm/unprivileged_userfaultfd")
            .map(|s| format!(" (now {})", s.trim()))
            .unwrap_or_default();
        let why = match errno {
            libc::ENOSYS => {
                "The kernel has no userfaultfd (built without CONFIG_USERFAULTFD), or a seccomp \
                 filter answers ENOSYS for it (containers, sandboxes): allow the userfaultfd \
                 system call in the seccomp profile."
                    .to_string()
            }
            libc::EMFILE | libc::ENFILE | libc::ENOMEM => {
                "The process or system is out of file descriptors or memory.".to_string()
            }
            _ => format!(
                "It is allowed: for any process when the sysctl vm.unprivileged_userfaultfd = 1{sysctl} \
                 (`sysctl -w vm.unprivileged_userfaultfd=1`); for a process with CAP_SYS_PTRACE; \
                 through /dev/userfaultfd (Linux 6.1+) for users who may read and write that \
                 device (its permissions, e.g. a udev rule or `setfacl -m u:USER:rw /dev/userfaultfd`). \
                 A seccomp filter can still refuse it (Docker's and Podman's default profiles do: \
                 run with a profile that allows the userfaultfd system call)."
            ),
        };
        Error::Unavailable {
            errno,
            dev_errno,
            message: format!(
                "userfaultfd is not available: userfaultfd(2) failed: {sys} ({}){dev}. {why}",
                errno_name(errno)
            ),
        }
    }
}

/// Options for a mapping, then [`MapOptions::map`] — like [`std::fs::OpenOptions`].
///
/// ```
/// use vmem_uffd::{Delivery, MapOptions, MemStore};
///
/// let map = MapOptions::new(MemStore::new(b"hello, pager".to_vec()))
///     .private()                // the default: writes stay in memory
///     .page_size(16 << 10)      // 16 KiB pages (a multiple of the system page)
///     .read_ahead(8)            // up to 8 pages ahead on sequential faults
///     .delivery(Delivery::Threads)
///     .filler_threads(2)
///     .map()?;
/// assert_eq!(&map[..5], b"hello");
/// # Ok::<(), vmem_uffd::Error>(())
/// ```
#[derive(Clone)]
pub struct MapOptions {
    store: Arc<dyn Store>,
    offset: u64,
    length: Option<u64>,
    page_size: Option<usize>,
    shared: bool,
    budget: Option<usize>,
    read_ahead: usize,
    fillers: usize,
    delivery: Option<Delivery>,
    no_poison: bool,
}

impl fmt::Debug for MapOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapOptions")
            .field("offset", &self.offset)
            .field("length", &self.length)
            .field("page_size", &self.page_size)
            .field("shared", &self.shared)
            .field("budget", &self.budget)
            .field("read_ahead", &self.read_ahead)
            .field("fillers", &self.fillers)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// The default read-ahead, in pages (the kernel's default window is 128 KiB).
pub const DEFAULT_READ_AHEAD: usize = 32;
/// The largest page size.
pub const MAX_PAGE_SIZE: usize = 2 << 20;
/// The most bytes one fill reads (a page and its read-ahead).
const MAX_RUN_BYTES: usize = 4 << 20;

impl MapOptions {
    /// Options to map `store`, private, with the system page size, no cache budget,
    /// [`DEFAULT_READ_AHEAD`] pages of read-ahead and signal delivery.
    pub fn new<S: Store + 'static>(store: S) -> MapOptions {
        MapOptions::from_arc(Arc::new(store))
    }

    /// Like [`MapOptions::new`], for a store the program keeps a handle to.
    pub fn from_arc(store: Arc<dyn Store>) -> MapOptions {
        MapOptions {
            store,
            offset: 0,
            length: None,
            page_size: None,
            shared: false,
            budget: None,
            read_ahead: DEFAULT_READ_AHEAD,
            fillers: 1,
            delivery: None,
            no_poison: false,
        }
    }

    /// The byte of the store the mapping starts at, as `mmap`'s offset (default 0): a
    /// multiple of the page size. Byte `i` of the mapping is byte `offset + i` of the store.
    pub fn offset(mut self, bytes: u64) -> Self {
        self.offset = bytes;
        self
    }

    /// The mapping's length in bytes (default: the store's length when mapped, less the
    /// offset). Longer than the store: the pages past its end raise SIGBUS.
    pub fn length(mut self, bytes: u64) -> Self {
        self.length = Some(bytes);
        self
    }

    /// The pager's page size: the unit of faults, eviction and write-back. A multiple of
    /// the system page from 4 KiB to 2 MiB (default: the system page).
    pub fn page_size(mut self, bytes: usize) -> Self {
        self.page_size = Some(bytes);
        self
    }

    /// `MAP_SHARED`: writes reach the store on flush, on eviction and on drop.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// `MAP_PRIVATE` (the default): writes stay in this process and never reach the store.
    /// Dirty private pages that are evicted are kept aside in memory (like swap).
    pub fn private(mut self) -> Self {
        self.shared = false;
        self
    }

    /// At most this many bytes resident (rounded down to pages, at least 4 pages): past
    /// it, pages are evicted down to 7/8 of it. Default: no limit.
    pub fn cache_budget(mut self, bytes: usize) -> Self {
        self.budget = Some(bytes);
        self
    }

    /// The largest read-ahead window, in pages (0: none). Capped at a quarter of the
    /// budget and at 4 MiB per fill.
    pub fn read_ahead(mut self, pages: usize) -> Self {
        self.read_ahead = pages;
        self
    }

    /// Filler threads for [`Delivery::Threads`] (default 1; at least 1).
    pub fn filler_threads(mut self, count: usize) -> Self {
        self.fillers = count.max(1);
        self
    }

    /// How faults are delivered. Default: [`Delivery::Signal`] when the kernel supports
    /// it, else [`Delivery::Threads`]. Asking for signal delivery explicitly on a kernel
    /// without it is an error.
    pub fn delivery(mut self, d: Delivery) -> Self {
        self.delivery = Some(d);
        self
    }

    /// Testing aid: behave as on a kernel without `UFFDIO_POISON` (bad pages are fenced
    /// with an empty memfd instead).
    #[doc(hidden)]
    pub fn without_poison(mut self) -> Self {
        self.no_poison = true;
        self
    }

    /// Maps the store.
    ///
    /// Errors: [`Error::Unavailable`] when userfaultfd is refused (the message names the
    /// setting that would allow it), [`Error::Unsupported`] on kernels before 5.7 (no
    /// write-protection of anonymous memory), [`Error::InvalidArgument`] for a bad page
    /// size or an empty mapping, [`Error::Io`] when the store's length cannot be read or a
    /// system call fails.
    pub fn map(&self) -> Result<Mapping, Error> {
        let sys_page = sys::system_page_size();
        let page_size = self.page_size.unwrap_or(sys_page);
        if !(4096..=MAX_PAGE_SIZE).contains(&page_size) || page_size % sys_page != 0 {
            return Err(Error::InvalidArgument(format!(
                "page size {page_size}: must be a multiple of the system page ({sys_page}) from 4 KiB to 2 MiB"
            )));
        }
        let store_len = self.store.len().map_err(|source| Error::Io {
            op: "reading the store's length",
            source,
        })?;
        if self.offset % page_size as u64 != 0 {
            return Err(Error::InvalidArgument(format!(
                "offset {}: must be a multiple of the page size ({page_size})",
                self.offset
            )));
        }
        // The store as this mapping sees it: from the offset on.
        let store_len = store_len.saturating_sub(self.offset);
        let len = self.length.unwrap_or(store_len);
        if len == 0 {
            return Err(Error::InvalidArgument(
                "length 0 (an empty store, or an offset at or past its end, needs an explicit length)"
                    .into(),
            ));
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= isize::MAX as usize - MAX_PAGE_SIZE)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("length {len} does not fit the address space"))
            })?;
        let map_len = len.div_ceil(sys_page) * sys_page;
        let data_end = (len as u64).min(store_len);
        let served = (data_end as usize).div_ceil(sys_page) * sys_page;
        let n_pages = served.div_ceil(page_size);
        if n_pages > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "{n_pages} pages: at most 2^32 - 1 (use a larger page size)"
            )));
        }

        let supported = probe_features()?;
        if supported & sys::UFFD_FEATURE_PAGEFAULT_FLAG_WP == 0 {
            return Err(Error::Unsupported {
                feature: "UFFD_FEATURE_PAGEFAULT_FLAG_WP",
                since: "5.7",
            });
        }
        let has_sigbus = supported & sys::UFFD_FEATURE_SIGBUS != 0;
        let delivery = match self.delivery {
            Some(Delivery::Signal) if !has_sigbus => {
                return Err(Error::Unsupported {
                    feature: "UFFD_FEATURE_SIGBUS",
                    since: "4.14",
                })
            }
            Some(d) => d,
            None if has_sigbus => Delivery::Signal,
            None => Delivery::Threads,
        };
        let poison = !self.no_poison && supported & sys::UFFD_FEATURE_POISON != 0;
        let mut features = sys::UFFD_FEATURE_PAGEFAULT_FLAG_WP;
        if delivery == Delivery::Signal {
            features |= sys::UFFD_FEATURE_SIGBUS;
        }
        if poison {
            features |= sys::UFFD_FEATURE_POISON;
        }
        let uffd = open_uffd(delivery)?;
        uffd.api(features).map_err(|source| Error::Io {
            op: "UFFDIO_API",
            source,
        })?;

        let io = |op: &'static str| move |source: io::Error| Error::Io { op, source };
        let region = Region::anonymous(map_len).map_err(io("mmap"))?;
        // SAFETY: the region is fresh and ours; these advices do not change its contents.
        unsafe {
            let _ = region.madvise(0, map_len, libc::MADV_NOHUGEPAGE);
            region
                .madvise(0, map_len, libc::MADV_DONTFORK)
                .map_err(io("madvise"))?;
        }
        if served < map_len {
            // SAFETY: the tail of our fresh region, holding nothing yet.
            unsafe { region.fence_sigbus(served, map_len - served) }
                .map_err(io("mapping the tail past the store"))?;
        }
        if served > 0 {
            // SAFETY: the served part of our fresh region; from now on its faults go to this
            // uffd, which the pager below serves.
            unsafe {
                uffd.register(
                    region.ptr() as usize,
                    served,
                    sys::UFFDIO_REGISTER_MODE_MISSING | sys::UFFDIO_REGISTER_MODE_WP,
                )
            }
            .map_err(io("UFFDIO_REGISTER"))?;
        }

        let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get());
        let budget_pages = self.budget.map(|b| (b / page_size).max(4));
        let mut read_ahead = self.read_ahead.min(MAX_RUN_BYTES / page_size - 1);
        if let Some(b) = budget_pages {
            read_ahead = read_ahead.min(b / 4);
        }
        let run_pages = (read_ahead + 1).clamp(1, (MAX_RUN_BYTES / page_size).max(1));
        let buffers = match delivery {
            Delivery::Signal => (2 * ncpu).max(4),
            Delivery::Threads => self.fillers + 2,
        };
        // A store that is a real file is read through windows onto the file: each fill is
        // one UFFDIO_COPY straight from the page cache (no pread into a buffer first).
        // Scattered faults copy from a MADV_RANDOM window (the kernel reads just the
        // page); sequential streams copy from a window with the kernel's read-around,
        // which the read-ahead thread populates ahead of them.
        // A file that cannot be mapped (opened write-only, a file system without mmap) is
        // read through the store instead, as any other store is.
        let window = |advice| -> Option<Region> {
            let file = self.store.backing_file().filter(|_| served > 0)?;
            let w = Region::file_window(file, self.offset, served).ok()?;
            // SAFETY: the window is ours and read-only; advice changes no contents.
            unsafe { w.madvise(0, served, advice) }.ok()?;
            // SAFETY: as above.
            unsafe { w.madvise(0, served, libc::MADV_DONTFORK) }.ok()?;
            Some(w)
        };
        let source = window(libc::MADV_RANDOM);
        let source_seq = source
            .as_ref()
            .filter(|_| read_ahead > 0)
            .and_then(|_| window(libc::MADV_NORMAL));
        let pager = Pager::new(pager::Config {
            store: Arc::clone(&self.store),
            store_offset: self.offset,
            region,
            len,
            served,
            data_end,
            page_size,
            shared: self.shared,
            budget_pages,
            read_ahead,
            run_pages,
            buffers,
            uffd,
            poison,
            delivery,
            source,
            source_seq,
        })
        .map_err(io("allocating the pager"))?;
        let pager = Arc::new(pager);
        let mut mapping = Mapping {
            pager,
            registration: None,
            fillers: None,
            readahead: None,
            delivery,
            closed: false,
        };
        if mapping.pager.wants_read_ahead_thread() {
            mapping.readahead = Some(
                threads::ReadAheadThread::start(&mapping.pager)
                    .map_err(io("starting the read-ahead thread"))?,
            );
        }
        match delivery {
            Delivery::Signal => {
                mapping.registration = Some(
                    signal::register(&mapping.pager)
                        .map_err(io("installing the SIGBUS handler"))?,
                )
            }
            Delivery::Threads => {
                mapping.fillers = Some(
                    threads::Fillers::start(&mapping.pager, self.fillers)
                        .map_err(io("starting filler threads"))?,
                )
            }
        }
        Ok(mapping)
    }
}

/// The features this kernel's userfaultfd supports (asked once per process).
fn probe_features() -> Result<u64, Error> {
    static FEATURES: OnceLock<u64> = OnceLock::new();
    if let Some(f) = FEATURES.get() {
        return Ok(*f);
    }
    let u = open_uffd(Delivery::Signal)?;
    let f = u.api(0).map_err(|source| Error::Io {
        op: "UFFDIO_API",
        source,
    })?;
    Ok(*FEATURES.get_or_init(|| f))
}

/// Opens a userfaultfd: user-mode-only first for signal delivery (kernel-mode faults fail
/// with EFAULT there anyway, and it is allowed to unprivileged users), full first for
/// thread delivery.
fn open_uffd(delivery: Delivery) -> Result<Uffd, Error> {
    let base = libc::O_CLOEXEC | libc::O_NONBLOCK;
    let umo = base | sys::UFFD_USER_MODE_ONLY;
    let attempts = match delivery {
        Delivery::Signal => [umo, base],
        Delivery::Threads => [base, umo],
    };
    let mut first: Option<(i32, Option<i32>)> = None;
    for flags in attempts {
        match Uffd::open(flags) {
            Ok(u) => return Ok(u),
            Err(sys::OpenError::Refused(e, d)) => {
                // EINVAL: this kernel predates UFFD_USER_MODE_ONLY; not the interesting error.
                if first.is_none() || first.is_some_and(|(f, _)| f == libc::EINVAL) {
                    first = Some((e, d));
                }
            }
        }
    }
    let (e, d) = first.unwrap_or((libc::EPERM, None));
    Err(Error::unavailable(e, d))
}

/// A store mapped into memory; faults are served by this crate's pager.
///
/// Dereferences to `[u8]` (the whole mapping). Dropping a shared mapping flushes it
/// (errors are lost: call [`Mapping::unmap`] to see them) and stops every thread it
/// started.
pub struct Mapping {
    pager: Arc<Pager>,
    registration: Option<signal::Registration>,
    fillers: Option<threads::Fillers>,
    readahead: Option<threads::ReadAheadThread>,
    delivery: Delivery,
    closed: bool,
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("ptr", &self.as_ptr())
            .field("len", &self.len())
            .field("page_size", &self.page_size())
            .field("shared", &self.pager.shared())
            .field("delivery", &self.delivery)
            .finish()
    }
}

impl Mapping {
    /// The first byte. Valid for [`Mapping::len`] bytes while the mapping lives; use it for
    /// concurrent access from several threads (with atomics) or to hand to C.
    pub fn as_ptr(&self) -> *mut u8 {
        self.pager.base()
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.pager.len()
    }

    /// Always false (a mapping has at least one byte).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes of the mapping that hold the store's data (the store's length at map time less
    /// the offset, at most [`Mapping::len`]). The rest of that last system page reads as zero; touching
    /// past it raises SIGBUS.
    pub fn valid_len(&self) -> usize {
        self.pager.data_end() as usize
    }

    /// The pager's page size.
    pub fn page_size(&self) -> usize {
        self.pager.page_size()
    }

    /// How this mapping's faults are delivered.
    pub fn delivery(&self) -> Delivery {
        self.delivery
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.pager.store()
    }

    /// The mapping as bytes (touching them faults pages in).
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes of our own mapped memory, alive as long as
        // `self`; its bytes change only through `&mut self` or the raw pointer (see the
        // crate's Safety section).
        unsafe { std::slice::from_raw_parts(self.pager.base(), self.len()) }
    }

    /// The mapping as mutable bytes.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.pager.base(), self.len()) }
    }

    /// Writes every dirty page to the store, then `Store::sync`. Private mappings: nothing.
    pub fn flush(&self) -> io::Result<()> {
        self.pager.flush(0..self.len())
    }

    /// Like [`Mapping::flush`], for the pages that hold bytes of `range`.
    pub fn flush_range(&self, range: Range<usize>) -> io::Result<()> {
        self.pager.flush(range)
    }

    /// Reads the absent pages holding bytes of `range` now (`MADV_WILLNEED`).
    pub fn prefetch(&self, range: Range<usize>) {
        self.pager.prefetch(range)
    }

    /// Writes back every dirty page and discards every page, so that each is faulted
    /// again from the store (private mappings keep their writes aside). Pages that gave
    /// SIGBUS are forgotten, so the next touch retries the store.
    pub fn evict_all(&self) -> io::Result<()> {
        self.pager.evict_all()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.pager.stats()
    }

    /// Flushes (shared), unmaps, and reports the flush's error.
    pub fn unmap(mut self) -> io::Result<()> {
        let r = if self.pager.shared() {
            self.flush()
        } else {
            Ok(())
        };
        self.closed = true;
        r
    }
}

impl Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for Mapping {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if !self.closed && self.pager.shared() {
            // Errors cannot be returned from drop; `unmap` reports them.
            let _ = self.flush();
        }
        // Stop serving (wait out handlers, join fillers) before the memory goes.
        drop(self.registration.take());
        drop(self.fillers.take());
        drop(self.readahead.take());
    }
}
