//! The pager: page states, filling a page from the store, read-ahead, dirty tracking by
//! write-protection, write-back, and eviction between watermarks.
//!
//! Owns everything a fault needs once its address is known, whichever way the fault was
//! delivered (`signal.rs` calls [`Pager::signal_fault`] in the faulting thread,
//! `threads.rs` calls [`Pager::thread_fault`] in a filler thread). It mirrors, in user
//! space, what Linux does in `mm/filemap.c` (`filemap_fault`, read-ahead in
//! `mm/readahead.c`), `mm/page-writeback.c` (`clear_page_dirty_for_io`: write-protect,
//! then write) and `mm/vmscan.c` (reclaim from a high to a low watermark, second chance).
//!
//! # Page states
//!
//! Every pager page has a state byte, changed only by compare-and-swap:
//!
//! ```text
//!   ABSENT --claim--> FILLING --copy--> CLEAN (installed write-protected)
//!                             \-------> DIRTY (installed writable: a write fault)
//!                             \-------> BAD   (read error / past end: SIGBUS)
//!   CLEAN --write fault--> UNPROTECTING --unprotect--> DIRTY
//!   DIRTY --write-back--> WRITEBACK (protected, copied) --> CLEAN (then written)
//!   CLEAN --write-back around it--> PROTECTING (inside the protected span) --> CLEAN
//!   CLEAN --evict--> EVICTING (MADV_DONTNEED) --> ABSENT
//! ```
//!
//! The transient states (FILLING, UNPROTECTING, WRITEBACK, PROTECTING, EVICTING) are held
//! by exactly one thread, which never writes the mapping while it holds them; whoever
//! meets a transient state waits for it to settle (or, for FILLING in a filler thread,
//! relies on the filler's wake-up). Write-back and eviction are serialized by `wb_lock`,
//! so two write-backs of one page can never reach the store out of order.
//!
//! # What runs in a signal handler
//!
//! With signal delivery, [`Pager::signal_fault`] runs inside the SIGBUS handler of the
//! faulting thread. The fault is synchronous: the interrupted code is the instruction
//! that touched the mapping, so the handler can only re-enter code that accesses the
//! mapping. The fill path uses atomics, a preallocated buffer, `Store::read_at` (for a
//! file: `pread`) and ioctls; it never allocates. Reclaim (direct reclaim, as Linux does
//! it in the allocating task) additionally takes `wb_lock` with `try_lock` and the
//! eviction queue's lock, which no thread ever holds while touching the mapping, and calls
//! `Store::write_at`.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use vmem::fs::store::{read_full, Store};

use crate::sys::{self, Region, Uffd};
use crate::{Delivery, Stats};

pub(crate) const ABSENT: u8 = 0;
pub(crate) const FILLING: u8 = 1;
pub(crate) const CLEAN: u8 = 2;
pub(crate) const DIRTY: u8 = 3;
pub(crate) const UNPROTECTING: u8 = 4;
pub(crate) const WRITEBACK: u8 = 5;
pub(crate) const EVICTING: u8 = 6;
pub(crate) const BAD: u8 = 7;
pub(crate) const PROTECTING: u8 = 8;

/// The most bytes one write protection of a write-back covers ([`Pager::hold_span`]).
const WB_SPAN_BYTES: usize = 2 << 20;
/// The most pages in a span (pages are at least 4 KiB).
const WB_SPAN_MAX_PAGES: usize = WB_SPAN_BYTES / 4096;
/// The most bytes of clean pages in a row a write-back span holds between dirty ones.
const WB_SPAN_GAP_BYTES: usize = 512 << 10;

/// How a write-back span failed.
#[derive(Debug)]
enum SpanError {
    /// The write protection (nothing was written; the pages are dirty again).
    Protect(io::Error),
    /// A store write (those pages are dirty again).
    Store(io::Error),
}

/// How far ahead of a sequential stream's faults the read-ahead thread reads the store's
/// file, at least: the reads are in flight while the program consumes the pages before
/// them, as with the kernel's asynchronous read-ahead. Measured with `examples/bench.rs`
/// on a virtio disk with `read_ahead_kb` 8192: 8 MiB left the disk idle between
/// windows (0.85x the kernel's cold scan), 32 MiB made the requests compete (0.8x),
/// 16 MiB kept pace (0.95-1.05x).
const ASYNC_READ_AHEAD_BYTES: usize = 16 << 20;

/// Set when the page was filled or written since the eviction hand last passed it.
const F_REF: u8 = 1;
/// Set while the page's index is in the eviction queue.
const F_QUEUED: u8 = 2;
/// Private mappings: the page's current contents are in the shadow region.
const F_SHADOW: u8 = 4;
/// The page was fenced with an empty memfd (no `UFFDIO_POISON`): it stays BAD.
const F_FENCED: u8 = 8;

/// Everything [`Pager::new`] needs.
pub(crate) struct Config {
    pub store: Arc<dyn Store>,
    /// The store byte the mapping starts at.
    pub store_offset: u64,
    pub region: Region,
    pub len: usize,
    pub served: usize,
    pub data_end: u64,
    pub page_size: usize,
    pub shared: bool,
    pub budget_pages: Option<usize>,
    pub read_ahead: usize,
    pub run_pages: usize,
    pub buffers: usize,
    pub uffd: Uffd,
    pub poison: bool,
    pub delivery: Delivery,
    /// A read-only window onto the store's file ([`Store::backing_file`]), served pages
    /// are copied from (`None`: read through the store into a buffer).
    pub source: Option<Region>,
    /// A second window onto the same file, with the kernel's default advice (read-around),
    /// that sequential fills copy from and the read-ahead thread populates ahead of
    /// them: the kernel's own mmap read-ahead (large folios, `read_ahead_kb` windows,
    /// asynchronous past its marks) reads the file.
    pub source_seq: Option<Region>,
}

/// Counters, all relaxed.
#[derive(Debug, Default)]
struct Counters {
    faults: AtomicU64,
    write_faults: AtomicU64,
    wp_faults: AtomicU64,
    pages_filled: AtomicU64,
    readahead_pages: AtomicU64,
    evictions: AtomicU64,
    writebacks: AtomicU64,
    bytes_written: AtomicU64,
    read_errors: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Sequential-pattern detection: a few streams, each the page expected next and its window,
/// and how far ahead of it the store's file has been asked to read already.
#[derive(Debug)]
struct ReadAhead {
    streams: [AtomicU64; 4],
    /// Per stream: the page up to which `MADV_WILLNEED` has been issued (file stores).
    frontier: [AtomicUsize; 4],
    victim: AtomicUsize,
}

impl ReadAhead {
    fn new() -> ReadAhead {
        ReadAhead {
            streams: Default::default(),
            frontier: Default::default(),
            victim: AtomicUsize::new(0),
        }
    }

    /// The window (pages after `page`) to read for a fault on `page`, the stream to record
    /// the outcome in, and whether the stream is confirmed: its previous fault already
    /// followed on from the one before (two in a row), not a scattered fault that happened
    /// to land on the page after another.
    fn window(&self, page: usize, max: usize) -> (usize, usize, bool) {
        if max == 0 {
            return (0, 0, false);
        }
        for (i, s) in self.streams.iter().enumerate() {
            let v = s.load(Ordering::Relaxed);
            if v != 0 && (v >> 16) as usize == page + 1 {
                let w = (v & 0xffff) as usize;
                if w == 0 {
                    return (i, 4.min(max), false);
                }
                return (i, (w * 2).min(max), true);
            }
        }
        let i = self.victim.fetch_add(1, Ordering::Relaxed) % self.streams.len();
        (i, 0, false)
    }

    /// Records that `stream` filled pages up to (not including) `next` with window `w`.
    fn record(&self, stream: usize, next: usize, w: usize) {
        if w == 0 {
            // A new stream in this slot: nothing has been read ahead for it.
            self.frontier[stream].store(0, Ordering::Relaxed);
        }
        // Stored as next + 1 so that 0 means "empty".
        self.streams[stream].store(
            ((next as u64 + 1) << 16) | w.min(0xffff) as u64,
            Ordering::Relaxed,
        );
    }
}

/// Read-ahead requests from the fault path to the read-ahead thread: one slot per stream
/// (pages `from << 32 | to`, 0 when empty), and a futex word the thread sleeps on.
/// Posting is two atomics and a `futex` wake, so a signal handler can post.
#[derive(Debug, Default)]
pub(crate) struct AsyncReadAhead {
    slots: [AtomicU64; 4],
    seq: AtomicU32,
    stop: AtomicBool,
}

/// Page-sized scratch buffers, preallocated so that a fault never allocates.
#[derive(Debug)]
struct Buffers {
    region: Region,
    size: usize,
    busy: Box<[AtomicBool]>,
}

struct BufGuard<'a> {
    pool: &'a Buffers,
    index: usize,
}

impl Buffers {
    fn new(count: usize, size: usize) -> io::Result<Buffers> {
        Ok(Buffers {
            region: Region::anonymous(count * size)?,
            size,
            busy: (0..count).map(|_| AtomicBool::new(false)).collect(),
        })
    }

    fn get(&self) -> BufGuard<'_> {
        let mut spins = 0u32;
        loop {
            for (i, b) in self.busy.iter().enumerate() {
                if !b.load(Ordering::Relaxed)
                    && b.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return BufGuard {
                        pool: self,
                        index: i,
                    };
                }
            }
            backoff(&mut spins);
        }
    }
}

impl BufGuard<'_> {
    fn ptr(&self) -> *mut u8 {
        // SAFETY: index < count, so the offset stays inside the buffers' region.
        unsafe { self.pool.region.ptr().add(self.index * self.pool.size) }
    }

    /// The first `len` bytes of the buffer.
    fn slice(&mut self, len: usize) -> &mut [u8] {
        assert!(len <= self.pool.size);
        // SAFETY: this guard holds the buffer exclusively (its busy flag), the bytes lie
        // inside the buffers' region, which lives as long as the pool.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), len) }
    }
}

impl Drop for BufGuard<'_> {
    fn drop(&mut self) {
        self.pool.busy[self.index].store(false, Ordering::Release);
    }
}

/// Waits a little: spin, then yield, then sleep. Usable in a signal handler (only
/// `sched_yield` and `nanosleep`).
pub(crate) fn backoff(spins: &mut u32) {
    *spins = spins.saturating_add(1);
    if *spins < 64 {
        std::hint::spin_loop();
    } else if *spins < 256 {
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    } else {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 50_000,
        };
        // SAFETY: nanosleep reads `ts`; the remaining time is not wanted.
        unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
    }
}

/// What the signal handler should do after [`Pager::signal_fault`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SignalOutcome {
    /// Return from the handler: the access is retried and now succeeds (or faults again).
    Retry,
    /// Not ours to serve (outside the served range, or a bad page): forward the signal.
    Forward,
}

/// The pager of one mapping.
pub(crate) struct Pager {
    // Field order is drop order: the region (and its registration) goes before the uffd.
    region: Region,
    uffd: Uffd,
    source: Option<Region>,
    source_seq: Option<Region>,
    store: Arc<dyn Store>,
    store_offset: u64,
    len: usize,
    served: usize,
    data_end: u64,
    page_size: usize,
    n_pages: usize,
    shared: bool,
    poison: bool,
    delivery: Delivery,
    state: Box<[AtomicU8]>,
    flags: Box<[AtomicU8]>,
    resident: AtomicUsize,
    high: usize,
    low: usize,
    queue: Option<Mutex<VecDeque<u32>>>,
    wb_lock: Mutex<()>,
    buffers: Buffers,
    shadow: Option<Region>,
    ra: ReadAhead,
    ra_async: AsyncReadAhead,
    max_ra: usize,
    /// Pages a sequential stream keeps in flight ahead of its faults (file stores).
    ra_depth: usize,
    run_pages: usize,
    stats: Counters,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager")
            .field("base", &self.region.ptr())
            .field("len", &self.len)
            .field("page_size", &self.page_size)
            .field("n_pages", &self.n_pages)
            .field("shared", &self.shared)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pager {
    pub(crate) fn new(c: Config) -> io::Result<Pager> {
        let n_pages = c.served.div_ceil(c.page_size);
        let (high, low, queue) = match c.budget_pages {
            Some(b) if b < n_pages => {
                let low = b - (b / 8).max(1);
                let mut q = VecDeque::new();
                q.reserve_exact(n_pages);
                (b, low, Some(Mutex::new(q)))
            }
            _ => (usize::MAX, usize::MAX, None),
        };
        let shadow = if c.shared {
            None
        } else {
            Some(Region::anonymous(c.region.len().max(1))?)
        };
        let max_ra = c.read_ahead.min(c.run_pages - 1);
        Ok(Pager {
            buffers: Buffers::new(c.buffers, c.run_pages * c.page_size)?,
            state: (0..n_pages).map(|_| AtomicU8::new(ABSENT)).collect(),
            flags: (0..n_pages).map(|_| AtomicU8::new(0)).collect(),
            region: c.region,
            uffd: c.uffd,
            source: c.source,
            source_seq: c.source_seq,
            store: c.store,
            store_offset: c.store_offset,
            len: c.len,
            served: c.served,
            data_end: c.data_end,
            page_size: c.page_size,
            n_pages,
            shared: c.shared,
            poison: c.poison,
            delivery: c.delivery,
            resident: AtomicUsize::new(0),
            high,
            low,
            queue,
            wb_lock: Mutex::new(()),
            shadow,
            ra: ReadAhead::new(),
            ra_async: AsyncReadAhead::default(),
            max_ra,
            ra_depth: if max_ra == 0 {
                0
            } else {
                (4 * (max_ra + 1)).max(ASYNC_READ_AHEAD_BYTES / c.page_size)
            },
            run_pages: c.run_pages,
            stats: Counters::default(),
        })
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.region.ptr()
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    pub(crate) fn served(&self) -> usize {
        self.served
    }
    pub(crate) fn data_end(&self) -> u64 {
        self.data_end
    }
    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    pub(crate) fn uffd(&self) -> &Uffd {
        &self.uffd
    }
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    pub(crate) fn stats(&self) -> Stats {
        let s = &self.stats;
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            faults: r(&s.faults),
            write_faults: r(&s.write_faults),
            wp_faults: r(&s.wp_faults),
            pages_filled: r(&s.pages_filled),
            readahead_pages: r(&s.readahead_pages),
            evictions: r(&s.evictions),
            writebacks: r(&s.writebacks),
            bytes_written: r(&s.bytes_written),
            read_errors: r(&s.read_errors),
            resident_pages: self.resident.load(Ordering::Relaxed) as u64,
        }
    }

    fn addr(&self, page: usize) -> usize {
        self.region.ptr() as usize + page * self.page_size
    }

    /// Bytes of `count` pages from `first`, the last clipped at the served end.
    fn run_bytes(&self, first: usize, count: usize) -> usize {
        let start = first * self.page_size;
        ((first + count) * self.page_size).min(self.served) - start
    }

    fn wakes(&self) -> bool {
        self.delivery == Delivery::Threads
    }

    fn page_of(&self, addr: usize) -> Option<usize> {
        let off = addr.checked_sub(self.region.ptr() as usize)?;
        (off < self.served).then_some(off / self.page_size)
    }

    // ---------------------------------------------------------------- filling

    /// Claims up to `max` absent pages from `first` (the first must be claimable): they
    /// become FILLING and count as resident. Returns how many.
    fn claim(&self, first: usize, max: usize) -> usize {
        let mut n = 0;
        while n < max && first + n < self.n_pages {
            if self.state[first + n]
                .compare_exchange(ABSENT, FILLING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                break;
            }
            n += 1;
            // A page whose contents live in the shadow is filled alone (from the shadow).
            if !self.shared && self.flags[first + n - 1].load(Ordering::Relaxed) & F_SHADOW != 0 {
                if n > 1 {
                    self.state[first + n - 1].store(ABSENT, Ordering::Release);
                    n -= 1;
                }
                break;
            }
        }
        self.resident.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// Returns FILLING pages to ABSENT (not filled after all) and wakes their waiters.
    fn release(&self, first: usize, count: usize) {
        if count == 0 {
            return;
        }
        for p in first..first + count {
            self.state[p].store(ABSENT, Ordering::Release);
        }
        self.resident.fetch_sub(count, Ordering::Relaxed);
        if self.wakes() {
            self.uffd
                .wake(self.addr(first), self.run_bytes(first, count));
        }
    }

    /// Serves a missing-page fault on `page` (already claimed with `count` pages of
    /// read-ahead run), reading the store and installing the pages. `write`: the fault was
    /// a write, so the first page is installed writable and dirty.
    /// Returns how many pages from `first` it settled (installed or marked bad); the
    /// others of the run went back to ABSENT.
    fn fill(
        &self,
        first: usize,
        count: usize,
        write: bool,
        fault: bool,
        sequential: bool,
    ) -> usize {
        debug_assert!(count >= 1);
        if !self.shared && self.flags[first].load(Ordering::Relaxed) & F_SHADOW != 0 {
            // Private page evicted while dirty: its contents are in the shadow.
            let shadow = self
                .shadow
                .as_ref()
                .expect("private mappings have a shadow");
            let off = first * self.page_size;
            // SAFETY: the shadow region has the mapping's size, so `off` is inside it.
            let src = unsafe { shadow.ptr().add(off) };
            if self.install(first, 1, src, write, 0).is_err() {
                self.release(first, 1);
            }
            return 1;
        }
        let off = first * self.page_size;
        let bytes = self.run_bytes(first, count);
        let ahead = if fault { count - 1 } else { 0 };
        let window = match (&self.source_seq, sequential) {
            (Some(seq), true) => Some(seq),
            _ => self.source.as_ref(),
        };
        if let Some(source) = window {
            if !sequential && bytes > sys::system_page_size() {
                // One read for the whole run rather than a page at a time as the copy
                // touches them (the window is MADV_RANDOM); returns once it is submitted.
                // SAFETY: WILLNEED only starts reads into the page cache.
                let _ = unsafe { source.madvise(off, bytes, libc::MADV_WILLNEED) };
            }
            // SAFETY: the window maps the store's file over the whole served range, so
            // `off + bytes` lies inside it; the copy reads it in the kernel, where a page
            // the file no longer has is an EFAULT, not a signal.
            let src = unsafe { source.ptr().add(off) };
            match self.install(first, count, src, write, ahead) {
                Ok(()) => return count,
                Err(0) => {} // not even the first page: read it through the store below
                Err(done) => {
                    self.release(first + done, count - done);
                    return done;
                }
            }
        }
        let mut buf = self.buffers.get();
        let at = self.store_offset + off as u64;
        let good = match read_full(&*self.store, buf.slice(bytes), at) {
            Err(_) => 0,
            Ok(got) if got >= bytes || off as u64 + got as u64 >= self.data_end => count,
            Ok(got) => {
                // Short: the store is shorter than it was at map time, or misbehaving.
                let full = got / self.page_size;
                let truly_ends = matches!(self.store.len(), Ok(l) if l <= at + got as u64);
                full + usize::from(got % self.page_size != 0 && truly_ends)
            }
        };
        if good == 0 && count > 1 {
            // The read-ahead may be what failed: try the faulting page alone.
            drop(buf);
            self.release(first + 1, count - 1);
            return self.fill(first, 1, write, fault, sequential);
        }
        if good == 0 {
            bump(&self.stats.read_errors, 1);
            drop(buf);
            self.release(first + 1, count - 1);
            self.mark_bad(first);
            return 1;
        }
        self.release(first + good, count - good);
        match self.install(first, good, buf.ptr(), write, ahead.min(good - 1)) {
            Ok(()) => good,
            Err(done) => {
                // The range is gone or the process is exiting: give the rest up.
                self.release(first + done, good - done);
                done
            }
        }
    }

    /// Copies `count` pages from `src` into the missing pages at `first` (FILLING), then
    /// publishes their states (DIRTY for the first if `write`, CLEAN otherwise) and wakes.
    /// If a copy fails (the source could not be read: `EFAULT`; the range is gone), the
    /// pages before it are published and `Err` says how many; the rest stay FILLING, for
    /// the caller to release or fill another way.
    fn install(
        &self,
        first: usize,
        count: usize,
        src: *const u8,
        write: bool,
        ahead: usize,
    ) -> Result<(), usize> {
        let total = self.run_bytes(first, count);
        // Writable up to `split` (the written page of a write fault), protected after.
        let split = if write { self.run_bytes(first, 1) } else { 0 };
        let mut done = 0;
        while done < total {
            let (end, wp) = if done < split {
                (split, false)
            } else {
                (total, true)
            };
            let mode =
                sys::UFFDIO_COPY_MODE_DONTWAKE | if wp { sys::UFFDIO_COPY_MODE_WP } else { 0 };
            // SAFETY: `src` holds `total` bytes (a buffer of run_pages pages or the shadow);
            // the destination pages are in this pager's registered range and FILLING, held
            // by this thread, so nobody else installs them.
            let r = unsafe {
                self.uffd
                    .copy(self.addr(first) + done, src.add(done), end - done, mode)
            };
            match r {
                Ok(n) => done += n,
                Err(libc::EAGAIN) | Err(libc::EINTR) => {}
                Err(libc::EEXIST) => {
                    // Present although we held it absent (an earlier, partial copy of
                    // this page): adopt that system page, protected unless it belongs to
                    // the page being written, and go on with the next.
                    let page = first + done / self.page_size;
                    let sys_page = sys::system_page_size().min(total - done);
                    let protect = !(write && page == first);
                    let at = self.addr(first) + done;
                    let _ = self.uffd.writeprotect(at, sys_page, protect, false);
                    done += sys_page;
                }
                Err(_) => {
                    let done = done / self.page_size;
                    self.publish(first, done, write, ahead.min(done));
                    return Err(done);
                }
            }
        }
        self.publish(first, count, write, ahead);
        Ok(())
    }

    /// Makes installed pages visible: counts them, sets their states, wakes their waiters
    /// and queues them for eviction.
    fn publish(&self, first: usize, count: usize, write: bool, ahead: usize) {
        bump(&self.stats.pages_filled, count as u64);
        bump(
            &self.stats.readahead_pages,
            ahead.min(count.saturating_sub(1)) as u64,
        );
        for p in first..first + count {
            let st = if write && p == first { DIRTY } else { CLEAN };
            self.flags[p].fetch_or(F_REF, Ordering::Relaxed);
            self.state[p].store(st, Ordering::Release);
        }
        if write && count > 0 {
            bump(&self.stats.write_faults, 1);
        }
        if count > 0 && self.wakes() {
            self.uffd
                .wake(self.addr(first), self.run_bytes(first, count));
        }
        if let Some(q) = &self.queue {
            let mut q = lock(q);
            for p in first..first + count {
                if self.flags[p].fetch_or(F_QUEUED, Ordering::Relaxed) & F_QUEUED == 0 {
                    q.push_back(p as u32);
                }
            }
        }
    }

    /// Makes `page` (FILLING) raise SIGBUS when touched.
    fn mark_bad(&self, page: usize) {
        let (addr, bytes) = (self.addr(page), self.run_bytes(page, 1));
        let mut fenced = false;
        if self.delivery == Delivery::Threads {
            // The faulting thread waits in the kernel: it must be woken into a SIGBUS.
            // SAFETY: the page is in our registered range and FILLING, held by this thread.
            let poisoned = self.poison && unsafe { self.uffd.poison(addr, bytes, false) }.is_ok();
            if !poisoned {
                // SAFETY: as above; the page holds no data yet.
                fenced = unsafe { self.region.fence_sigbus(page * self.page_size, bytes) }.is_ok();
            }
        }
        if fenced {
            self.flags[page].fetch_or(F_FENCED, Ordering::Relaxed);
        }
        self.state[page].store(BAD, Ordering::Release);
        self.resident.fetch_sub(1, Ordering::Relaxed);
        if self.wakes() {
            self.uffd.wake(addr, bytes);
        }
    }

    /// Claims and fills the fault's page with a read-ahead window chosen from the pattern.
    /// Returns false if the page was not absent any more.
    ///
    /// A stream's first run (a fault on the page after another's) is read on its own, with
    /// `MADV_WILLNEED` over the run through the `MADV_RANDOM` window; only a confirmed
    /// stream (the next run, and every one after) copies from the read-around window and
    /// asks the read-ahead thread to read ahead of it. Otherwise scattered faults that land
    /// next to each other by chance (a few in every thousand over a large file) would each
    /// make the kernel read `read_ahead_kb` around them and the read-ahead thread read
    /// 16 MiB more: measured with 5000 random 8-byte reads over a cold 64 MiB file, twice
    /// the bytes the kernel's own `MADV_RANDOM` mapping reads.
    fn fault_fill(&self, page: usize, write: bool) -> bool {
        let (stream, w, confirmed) = self.ra.window(page, self.max_ra);
        self.make_room(1 + w, false);
        let n = self.claim(page, 1 + w);
        if n == 0 {
            return false;
        }
        bump(&self.stats.faults, 1);
        self.ra.record(stream, page + n, if n > 1 { w } else { 0 });
        let sequential = n > 1 && confirmed;
        if sequential {
            self.read_ahead_async(stream, page + n);
        }
        self.fill(page, n, write, true, sequential);
        true
    }

    /// A sequential stream is about to fill up to `next`: keeps the store's file reading
    /// `ra_depth` pages beyond it, topping up once half of that has been consumed. The
    /// read-ahead thread does the reading (through the sequential window, so that the
    /// kernel's read-around and asynchronous read-ahead run there, not in the faulting
    /// thread, which only copies).
    fn read_ahead_async(&self, stream: usize, next: usize) {
        if self.source_seq.is_none() || self.ra_depth == 0 {
            return;
        }
        let frontier = &self.ra.frontier[stream];
        let from = frontier.load(Ordering::Relaxed).max(next);
        let to = (next + self.ra_depth).min(self.n_pages);
        if from >= next + self.ra_depth / 2 || to <= from {
            return;
        }
        frontier.store(to, Ordering::Relaxed);
        let slot = &self.ra_async.slots[stream];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            // Extend a request not yet taken that ends where this one starts.
            let start = if cur != 0 && (cur & 0xffff_ffff) as usize == from {
                (cur >> 32) as usize
            } else {
                from
            };
            let req = (start as u64) << 32 | to as u64;
            match slot.compare_exchange_weak(cur, req, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        self.ra_async.seq.fetch_add(1, Ordering::Release);
        sys::futex_wake(&self.ra_async.seq, 1);
    }

    /// The read-ahead thread's loop: takes posted requests and starts their reads
    /// (`MADV_WILLNEED` on the store's file), sleeps when there are none, returns when
    /// [`Pager::stop_read_ahead`] is called.
    pub(crate) fn read_ahead_thread(&self) {
        let Some(source) = &self.source else {
            return;
        };
        let mut populate = true;
        let q = &self.ra_async;
        loop {
            let seen = q.seq.load(Ordering::Acquire);
            if q.stop.load(Ordering::Acquire) {
                return;
            }
            let mut any = false;
            for slot in &q.slots {
                let req = slot.swap(0, Ordering::AcqRel);
                if req == 0 {
                    continue;
                }
                any = true;
                let (from, to) = ((req >> 32) as usize, (req & 0xffff_ffff) as usize);
                let (off, bytes) = (from * self.page_size, self.run_bytes(from, to - from));
                if let (Some(seq), true) = (&self.source_seq, populate) {
                    // Fault the range in through the read-around window: the kernel reads
                    // it as it reads for its own mappings (large folios, `read_ahead_kb`
                    // windows, asynchronous past its marks), and this thread, not the
                    // program's, waits. Then unmap it again: the pages stay in the page
                    // cache, not pinned by this window.
                    // SAFETY: both advices act on our own read-only window of the file:
                    // POPULATE_READ reads, DONTNEED unmaps; neither changes the file.
                    match unsafe { seq.madvise(off, bytes, libc::MADV_POPULATE_READ) } {
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => populate = false,
                        _ => {}
                    }
                    // SAFETY: as above.
                    let _ = unsafe { seq.madvise(off, bytes, libc::MADV_DONTNEED) };
                    if populate {
                        continue;
                    }
                }
                // Before Linux 5.14 (no MADV_POPULATE_READ): start the reads, small folios.
                // SAFETY: WILLNEED only starts reads into the page cache; the pages lie
                // inside the window (served pages).
                let _ = unsafe { source.madvise(off, bytes, libc::MADV_WILLNEED) };
            }
            if !any {
                sys::futex_wait(&q.seq, seen);
            }
        }
    }

    /// Whether this pager wants a read-ahead thread.
    pub(crate) fn wants_read_ahead_thread(&self) -> bool {
        self.source_seq.is_some() && self.ra_depth > 0
    }

    /// Makes [`Pager::read_ahead_thread`] return.
    pub(crate) fn stop_read_ahead(&self) {
        self.ra_async.stop.store(true, Ordering::Release);
        self.ra_async.seq.fetch_add(1, Ordering::Release);
        sys::futex_wake(&self.ra_async.seq, i32::MAX);
    }

    /// A CLEAN page faulted as missing: if the page tables do not have it (someone else
    /// discarded it), forget it so that it is filled again. (Were it only swapped out, the
    /// copy finds it present and adopts it, clean as it was.) DIRTY pages are never
    /// discarded without a write-back, so they are not checked.
    fn repair_if_gone(&self, page: usize) {
        if self.region.is_present(page * self.page_size) {
            return;
        }
        if self.state[page]
            .compare_exchange(CLEAN, ABSENT, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.resident.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Serves a fault in the faulting thread's SIGBUS handler. `write`: whether the access
    /// was a write (`None`: unknown on this architecture).
    pub(crate) fn signal_fault(&self, addr: usize, write: Option<bool>) -> SignalOutcome {
        let Some(page) = self.page_of(addr) else {
            return SignalOutcome::Forward;
        };
        let mut spins = 0;
        loop {
            match self.state[page].load(Ordering::Acquire) {
                ABSENT => {
                    if self.fault_fill(page, write.unwrap_or(false)) {
                        if self.state[page].load(Ordering::Acquire) == BAD {
                            return SignalOutcome::Forward;
                        }
                        break;
                    }
                }
                CLEAN if write != Some(false) => {
                    if self.unprotect(page, true) {
                        break;
                    }
                }
                // A read of a clean page faulted: it was just installed (retry), or it is
                // gone from the page tables.
                CLEAN => {
                    self.repair_if_gone(page);
                    if self.state[page].load(Ordering::Acquire) != ABSENT {
                        break;
                    }
                }
                // Made dirty (so writable) by another thread since the fault: retry.
                DIRTY => break,
                BAD => return SignalOutcome::Forward,
                _ => backoff(&mut spins),
            }
        }
        self.reclaim(false);
        SignalOutcome::Retry
    }

    /// CLEAN -> DIRTY: lifts the write protection (the first write since the page was
    /// installed or written back). Returns false if the page was not CLEAN any more.
    fn unprotect(&self, page: usize, fault: bool) -> bool {
        if self.state[page]
            .compare_exchange(CLEAN, UNPROTECTING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let (addr, bytes) = (self.addr(page), self.run_bytes(page, 1));
        let _ = self.uffd.writeprotect(addr, bytes, false, false);
        self.flags[page].fetch_or(F_REF, Ordering::Relaxed);
        self.state[page].store(DIRTY, Ordering::Release);
        if fault {
            bump(&self.stats.wp_faults, 1);
        }
        if self.wakes() {
            self.uffd.wake(addr, bytes);
        }
        true
    }

    /// Serves one fault message in a filler thread.
    pub(crate) fn thread_fault(&self, addr: usize, flags: u64) {
        let Some(page) = self.page_of(addr) else {
            // Not ours (cannot happen: only our range is registered); let it retry.
            self.uffd.wake(
                addr & !(sys::system_page_size() - 1),
                sys::system_page_size(),
            );
            return;
        };
        let (addr, bytes) = (self.addr(page), self.run_bytes(page, 1));
        let mut spins = 0;
        if flags & sys::UFFD_PAGEFAULT_FLAG_WP != 0 {
            loop {
                match self.state[page].load(Ordering::Acquire) {
                    CLEAN => {
                        if self.unprotect(page, true) {
                            return;
                        }
                    }
                    DIRTY | BAD => return self.uffd.wake(addr, bytes),
                    // A protected system page of a page that is not resident: a fill that
                    // stopped partway (the file shrank under its window) left it. Only
                    // filling the page lifts that protection (the copy adopts it, as the
                    // signal path does); waking alone would fault again, forever.
                    ABSENT => break,
                    _ => backoff(&mut spins),
                }
            }
        }
        let write = flags & sys::UFFD_PAGEFAULT_FLAG_WRITE != 0;
        loop {
            match self.state[page].load(Ordering::Acquire) {
                ABSENT => {
                    if self.fault_fill(page, write) {
                        return;
                    }
                }
                // The filler wakes every waiter when it publishes the page.
                FILLING => return,
                CLEAN => {
                    self.repair_if_gone(page);
                    if self.state[page].load(Ordering::Acquire) != ABSENT {
                        return self.uffd.wake(addr, bytes);
                    }
                }
                DIRTY | UNPROTECTING | WRITEBACK | BAD => return self.uffd.wake(addr, bytes),
                _ => backoff(&mut spins),
            }
        }
    }

    /// Fills every absent page of `range` (bytes), in runs.
    pub(crate) fn prefetch(&self, range: Range<usize>) {
        let Some(pages) = self.pages_of(range) else {
            return;
        };
        let mut p = pages.start;
        while p < pages.end {
            self.make_room(self.run_pages.min(pages.end - p), true);
            let n = self.claim(p, self.run_pages.min(pages.end - p));
            if n == 0 {
                p += 1;
                continue;
            }
            p += self.fill(p, n, false, false, true);
        }
    }

    fn pages_of(&self, range: Range<usize>) -> Option<Range<usize>> {
        let end = range.end.min(self.served);
        if range.start >= end {
            return None;
        }
        Some(range.start / self.page_size..end.div_ceil(self.page_size))
    }

    // ---------------------------------------------------------------- write-back

    /// Writes back the DIRTY pages of `pages` (caller holds `wb_lock`). For a private
    /// mapping, "writing back" copies into the shadow; the store is never written.
    ///
    /// The pages are write-protected a span at a time ([`Pager::hold_span`]), one
    /// `UFFDIO_WRITEPROTECT` for up to a buffer's worth of dirty pages: each call flushes
    /// the TLB, and one call per run of dirty pages was a third of a scattered flush's own
    /// time. `start_io` (a flush, which syncs next): after each span, the store's file
    /// starts writing it, so that the device works while later spans are copied
    /// ([`sys::start_writeback`]), as Linux's background write-back would. Measured over
    /// 20,000 scattered 8-byte writes to a 1 GiB file (19,300 dirty pages): the flush
    /// phase of `examples/bench.rs 1024` took 306-314 ms with a protection per run and
    /// 187-248 ms with spans; six flushes each way, alternating in one harness, took
    /// 488-632 ms and 354-427 ms.
    fn writeback(&self, pages: Range<usize>, start_io: bool) -> io::Result<()> {
        let mut p = pages.start;
        let mut result = Ok(());
        // After a span's protection failed, one run at a time (a span may cross a
        // boundary the program made in the mapping, which kernels before 6.5 refuse).
        let mut bridge = true;
        while p < pages.end {
            if self.state[p].load(Ordering::Acquire) != DIRTY {
                p += 1;
                continue;
            }
            let end = self.hold_span(p, pages.end, bridge);
            if end == p {
                p += 1;
                continue;
            }
            match self.writeback_span(p, end, start_io) {
                Err(SpanError::Protect(_)) if bridge && end - p > 1 => {
                    bridge = false;
                    continue; // the same pages again, a run at a time
                }
                Err(SpanError::Protect(e)) | Err(SpanError::Store(e)) => result = Err(e),
                Ok(()) => {}
            }
            p = end;
        }
        result
    }

    /// Holds the pages from `first` (below `limit`) that one write protection will cover:
    /// DIRTY pages become WRITEBACK and, if `bridge`, the CLEAN pages between them
    /// PROTECTING. The span stops at a page in any other state (absent, being filled or
    /// being unprotected by another thread, bad), at a buffer's worth of dirty pages, after
    /// [`WB_SPAN_GAP_BYTES`] of clean pages in a row, or at [`WB_SPAN_BYTES`]. Returns its
    /// end, just after its last WRITEBACK page (`first` if there was none); the clean pages
    /// held past it are released.
    ///
    /// Only held pages are in the span, so the protection never lands on a page another
    /// thread has just made writable: that page would stay DIRTY and protected, and its
    /// writer would fault forever.
    fn hold_span(&self, first: usize, limit: usize, bridge: bool) -> usize {
        let limit = limit.min(first + (WB_SPAN_BYTES / self.page_size).max(1));
        debug_assert!(limit - first <= WB_SPAN_MAX_PAGES);
        let gap = if bridge {
            WB_SPAN_GAP_BYTES / self.page_size
        } else {
            0
        };
        let (mut end, mut q, mut dirty) = (first, first, 0);
        while q < limit && dirty < self.run_pages {
            if self.state[q]
                .compare_exchange(DIRTY, WRITEBACK, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                q += 1;
                end = q;
                dirty += 1;
            } else if q - end < gap
                && self.state[q]
                    .compare_exchange(CLEAN, PROTECTING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                q += 1;
            } else {
                break;
            }
        }
        for p in end..q {
            self.state[p].store(CLEAN, Ordering::Release);
        }
        end
    }

    /// Writes back the held span `[first, end)` ([`Pager::hold_span`]): protects it,
    /// releases its clean pages, copies its WRITEBACK pages into a buffer (or the shadow)
    /// and releases them as CLEAN, then writes the copies to the store, a run at a time;
    /// `start_io`: then starts the store's file writing them. Writers wait for a page only
    /// while the span is protected and copied, not while the store is written.
    fn writeback_span(&self, first: usize, end: usize, start_io: bool) -> Result<(), SpanError> {
        let (addr, bytes) = (self.addr(first), self.run_bytes(first, end - first));
        // Protect first: from here on a write faults and waits for CLEAN, so the copies
        // below hold every write made before them, and every later write dirties again.
        // A clean page was protected already (or is not mapped), so nothing changes for it.
        let protected = self.uffd.writeprotect(addr, bytes, true, false);
        for p in first..end {
            if self.state[p].load(Ordering::Relaxed) == PROTECTING {
                self.state[p].store(CLEAN, Ordering::Release);
            }
        }
        if let Err(e) = protected {
            // Part of the span may be protected (Linux protects area by area and stops at
            // the first error): lift it from the dirty pages, which are dirty again.
            for p in first..end {
                if self.state[p].load(Ordering::Relaxed) == WRITEBACK {
                    self.state[p].store(CLEAN, Ordering::Release);
                    self.unprotect(p, false);
                }
            }
            return Err(SpanError::Protect(io::Error::from_raw_os_error(e)));
        }
        // The WRITEBACK pages are this thread's (only write-back sets that state, under
        // `wb_lock`), resident and protected: copying them neither faults nor races. Each
        // is copied (into the shadow, or packed into a buffer: at most a buffer's worth,
        // `hold_span`) and released; `copied` remembers which, for the store writes after.
        let buf = self.shadow.is_none().then(|| self.buffers.get());
        let mut copied = [0u64; WB_SPAN_MAX_PAGES / 64];
        let mut at = 0;
        for p in first..end {
            if self.state[p].load(Ordering::Relaxed) != WRITEBACK {
                continue;
            }
            let len = self.run_bytes(p, 1);
            let dst = match (&self.shadow, &buf) {
                // SAFETY: the shadow has the mapping's size, so page `p` lies inside it.
                (Some(shadow), _) => unsafe { shadow.ptr().add(p * self.page_size) },
                // SAFETY: the span's dirty pages fit the buffer (`hold_span`).
                (None, Some(b)) => unsafe { b.ptr().add(at) },
                (None, None) => unreachable!("a buffer is taken without a shadow"),
            };
            // SAFETY: `len` bytes from a page held (WRITEBACK), resident and protected, to
            // a destination only this thread writes (the shadow page of a held page, or
            // this thread's buffer).
            unsafe { std::ptr::copy_nonoverlapping(self.addr(p) as *const u8, dst, len) };
            at += len;
            if self.shadow.is_some() {
                self.flags[p].fetch_or(F_SHADOW, Ordering::Relaxed);
            }
            copied[(p - first) / 64] |= 1 << ((p - first) % 64);
            self.state[p].store(CLEAN, Ordering::Release);
        }
        let Some(mut buf) = buf else {
            return Ok(()); // private: the shadow is the only copy to make
        };
        let is_copied = |p: usize| copied[(p - first) / 64] & (1 << ((p - first) % 64)) != 0;
        let mut result = Ok(());
        let (mut p, mut at) = (first, 0);
        while p < end {
            let n = (p..end).take_while(|&q| is_copied(q)).count();
            if n == 0 {
                p += 1;
                continue;
            }
            let len = self.run_bytes(p, n);
            if let Err(e) = self.write_copy(p, n, &buf.slice(at + len)[at..]) {
                result = Err(SpanError::Store(e));
            }
            at += len;
            p += n;
        }
        drop(buf);
        if start_io {
            if let Some(file) = self.store.backing_file() {
                // Under `wb_lock`, so this may hold up reclaim while the device's queue is
                // full; the writes it starts are the ones a flush waits for next anyway.
                let at = self.store_offset + (first * self.page_size) as u64;
                sys::start_writeback(file, at, bytes);
            }
        }
        result
    }

    /// Writes the copy `data` of the run `[first, first + count)` (released, CLEAN unless
    /// written since) to the store. On failure the run's pages that are still CLEAN are
    /// made DIRTY again, so that a later write-back retries them.
    fn write_copy(&self, first: usize, count: usize, data: &[u8]) -> io::Result<()> {
        let off = first * self.page_size;
        // Never write past the store's end (the last page may be partly past it).
        let len = (self.data_end.saturating_sub(off as u64) as usize).min(data.len());
        match self
            .store
            .write_at(&data[..len], self.store_offset + off as u64)
        {
            Ok(()) => {
                bump(&self.stats.writebacks, count as u64);
                bump(&self.stats.bytes_written, len as u64);
                Ok(())
            }
            Err(e) => {
                // A page a writer dirtied in the meantime is DIRTY already.
                for p in first..first + count {
                    self.unprotect(p, false);
                }
                Err(e)
            }
        }
    }

    /// Writes every dirty page in `range` (bytes) to the store, then syncs the store.
    pub(crate) fn flush(&self, range: Range<usize>) -> io::Result<()> {
        if !self.shared {
            return Ok(());
        }
        if let Some(pages) = self.pages_of(range) {
            let _g = lock(&self.wb_lock);
            self.writeback(pages, true)?;
        }
        self.store.sync()
    }

    // ---------------------------------------------------------------- eviction

    /// Evicts one page (caller holds `wb_lock`): writes it back if dirty, then discards it.
    fn evict(&self, page: usize) -> bool {
        if self.state[page].load(Ordering::Acquire) == DIRTY
            && self.writeback(page..page + 1, false).is_err()
        {
            return false;
        }
        if self.state[page]
            .compare_exchange(CLEAN, EVICTING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        self.discard(page, 1);
        true
    }

    /// MADV_DONTNEED over EVICTING pages, which become ABSENT.
    fn discard(&self, first: usize, count: usize) {
        let (off, bytes) = (first * self.page_size, self.run_bytes(first, count));
        // SAFETY: the pages are EVICTING, held by this thread; their contents are on the
        // store (or in the shadow) and come back by the next fault.
        let _ = unsafe { self.region.madvise(off, bytes, libc::MADV_DONTNEED) };
        for p in first..first + count {
            self.flags[p].fetch_and(!F_REF, Ordering::Relaxed);
            self.state[p].store(ABSENT, Ordering::Release);
        }
        self.resident.fetch_sub(count, Ordering::Relaxed);
        bump(&self.stats.evictions, count as u64);
    }

    /// If more pages than the high watermark are resident, evicts (oldest filled first,
    /// with a second chance for pages referenced since) down to the low watermark.
    /// `block`: wait for a concurrent flush or reclaim instead of leaving it the work.
    pub(crate) fn reclaim(&self, block: bool) {
        self.make_room(0, block);
    }

    /// Before installing `incoming` pages: if they would take the resident pages past the
    /// high watermark, evicts until they fit under the low one (Linux's direct reclaim).
    fn make_room(&self, incoming: usize, block: bool) {
        let Some(queue) = &self.queue else {
            return;
        };
        if self.resident.load(Ordering::Relaxed) + incoming <= self.high {
            return;
        }
        let target = self.low.saturating_sub(incoming);
        let _g = match self.wb_lock.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) if block => lock(&self.wb_lock),
            Err(TryLockError::WouldBlock) => return,
        };
        let mut budget = 4 * queue.lock().map(|q| q.len()).unwrap_or(0) + 8;
        while self.resident.load(Ordering::Relaxed) > target && budget > 0 {
            budget -= 1;
            let Some(page) = lock(queue).pop_front() else {
                break;
            };
            let page = page as usize;
            self.flags[page].fetch_and(!F_QUEUED, Ordering::Relaxed);
            let st = self.state[page].load(Ordering::Acquire);
            if !matches!(st, CLEAN | DIRTY | UNPROTECTING) {
                // Absent, bad, or being filled again (the fill queues it anew).
                continue;
            }
            let second_chance = self.flags[page].fetch_and(!F_REF, Ordering::Relaxed) & F_REF != 0;
            if (second_chance || !self.evict(page))
                && self.flags[page].fetch_or(F_QUEUED, Ordering::Relaxed) & F_QUEUED == 0
            {
                lock(queue).push_back(page as u32);
            }
        }
        self.unmap_windows();
    }

    /// Unmaps everything the file windows have mapped (the page-cache pages fills copied
    /// from, and their fault-around neighbours): done after each round of eviction, so
    /// that the file memory this process maps stays near its budget. The pages stay in
    /// the page cache; the next copy maps what it needs again.
    fn unmap_windows(&self) {
        for w in [&self.source, &self.source_seq].into_iter().flatten() {
            // SAFETY: a read-only window of the store's file; unmapping changes no contents
            // (a copy reading it meanwhile faults the page in again).
            let _ = unsafe { w.madvise(0, w.len(), libc::MADV_DONTNEED) };
        }
    }

    /// Writes back every dirty page and discards every resident page; bad pages are
    /// forgotten so that the next touch tries the store again.
    pub(crate) fn evict_all(&self) -> io::Result<()> {
        let _g = lock(&self.wb_lock);
        let result = self.writeback(0..self.n_pages, false);
        self.unmap_windows();
        let mut p = 0;
        while p < self.n_pages {
            let mut n = 0;
            while p + n < self.n_pages
                && self.state[p + n]
                    .compare_exchange(CLEAN, EVICTING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                n += 1;
            }
            if n > 0 {
                self.discard(p, n);
                p += n;
                continue;
            }
            if self.state[p].load(Ordering::Acquire) == BAD
                && self.flags[p].load(Ordering::Relaxed) & F_FENCED == 0
                && self.state[p]
                    .compare_exchange(BAD, EVICTING, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                // SAFETY: the page is held (EVICTING); it has no contents (poisoned or never
                // installed); MADV_DONTNEED removes a poison marker.
                let _ = unsafe {
                    self.region.madvise(
                        p * self.page_size,
                        self.run_bytes(p, 1),
                        libc::MADV_DONTNEED,
                    )
                };
                self.state[p].store(ABSENT, Ordering::Release);
            }
            p += 1;
        }
        if let Some(q) = &self.queue {
            let mut q = lock(q);
            for page in q.drain(..) {
                self.flags[page as usize].fetch_and(!F_QUEUED, Ordering::Relaxed);
            }
            // Pages still resident (busy above) stay evictable.
            for page in 0..self.n_pages {
                if matches!(
                    self.state[page].load(Ordering::Acquire),
                    CLEAN | DIRTY | UNPROTECTING | WRITEBACK
                ) && self.flags[page].fetch_or(F_QUEUED, Ordering::Relaxed) & F_QUEUED == 0
                {
                    q.push_back(page as u32);
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MapOptions, MemStore};

    fn page() -> usize {
        sys::system_page_size()
    }

    /// A shared mapping of `pages` zero pages over a memory store, every page resident,
    /// with a write to each page of `dirty` (so those are DIRTY, the others CLEAN).
    fn mapping_with_dirty(pages: usize, dirty: &[usize]) -> (crate::Mapping, Arc<MemStore>) {
        let store = Arc::new(MemStore::new(vec![0u8; pages * page()]));
        let mut map = MapOptions::from_arc(Arc::clone(&store) as Arc<dyn Store>)
            .shared()
            .map()
            .expect("userfaultfd mapping");
        map.prefetch(0..map.len());
        for &p in dirty {
            map[p * page() + 8] = p as u8 + 1;
        }
        for p in 0..pages {
            let want = if dirty.contains(&p) { DIRTY } else { CLEAN };
            assert_eq!(map.pager.state[p].load(Ordering::Relaxed), want, "page {p}");
        }
        (map, store)
    }

    /// Writes to `page` of `map` and says whether that was a write-protect fault (the
    /// page was protected).
    fn write_faults(map: &mut crate::Mapping, page_index: usize) -> bool {
        let before = map.stats().wp_faults;
        map[page_index * page() + 16] ^= 1;
        map.stats().wp_faults > before
    }

    #[test]
    fn a_span_holds_the_clean_pages_between_dirty_ones_and_stops_at_a_busy_page() {
        let (mut map, store) = mapping_with_dirty(8, &[0, 2, 5]);
        let pager = Arc::clone(&map.pager);
        // A writer between its compare-and-swap and its unprotect: not ours to protect.
        pager.state[3].store(UNPROTECTING, Ordering::Relaxed);
        let g = lock(&pager.wb_lock);
        let end = pager.hold_span(0, 8, true);
        assert_eq!(
            end, 3,
            "the span ends after the last dirty page before the busy one"
        );
        let states: Vec<u8> = (0..5)
            .map(|p| pager.state[p].load(Ordering::Relaxed))
            .collect();
        assert_eq!(
            states,
            [WRITEBACK, PROTECTING, WRITEBACK, UNPROTECTING, CLEAN]
        );
        pager.writeback_span(0, end, false).unwrap();
        drop(g);
        let states: Vec<u8> = (0..6)
            .map(|p| pager.state[p].load(Ordering::Relaxed))
            .collect();
        assert_eq!(states, [CLEAN, CLEAN, CLEAN, UNPROTECTING, CLEAN, DIRTY]);
        let bytes = store.contents();
        let at = |p: usize| bytes[p * page() + 8];
        assert_eq!((at(0), at(2), at(5)), (1, 3, 0));
        pager.state[3].store(CLEAN, Ordering::Relaxed);
        // The written pages are protected again: the next write to one faults.
        assert!(write_faults(&mut map, 0), "page 0 protected by the span");
        assert!(write_faults(&mut map, 2), "page 2 protected by the span");
        assert!(
            !write_faults(&mut map, 5),
            "page 5 was not in the span: still writable"
        );
        assert_eq!(pager.state[0].load(Ordering::Relaxed), DIRTY);
    }

    #[test]
    fn a_span_bridges_up_to_its_gap_of_clean_pages_and_releases_those_after_its_end() {
        let gap = WB_SPAN_GAP_BYTES / page();
        // Dirty pages 0 and `far`: `far - 1` clean pages between them.
        for (far, bridged) in [(gap + 1, true), (gap + 2, false)] {
            let (map, store) = mapping_with_dirty(far + 4, &[0, far]);
            let pager = &map.pager;
            let _g = lock(&pager.wb_lock);
            let end = pager.hold_span(0, far + 4, true);
            assert_eq!(end, if bridged { far + 1 } else { 1 }, "far {far}");
            let held = |p: usize| pager.state[p].load(Ordering::Relaxed);
            if bridged {
                assert!((1..far).all(|p| held(p) == PROTECTING), "far {far}");
                assert_eq!(held(far), WRITEBACK);
            } else {
                // The clean pages it held looking for another dirty one are released.
                assert!((1..far).all(|p| held(p) == CLEAN), "far {far}");
                assert_eq!(held(far), DIRTY);
            }
            assert!((far + 1..far + 4).all(|p| held(p) == CLEAN), "far {far}");
            pager.writeback_span(0, end, false).unwrap();
            assert!((0..end).all(|p| held(p) == CLEAN), "far {far}");
            let on_store = store.contents()[far * page() + 8];
            assert_eq!(
                on_store,
                if bridged { far as u8 + 1 } else { 0 },
                "far {far}"
            );
        }
    }

    #[test]
    fn without_bridging_or_past_a_buffer_of_dirty_pages_a_span_ends() {
        let (map, _store) = mapping_with_dirty(8, &[0, 1, 3]);
        let pager = &map.pager;
        let _g = lock(&pager.wb_lock);
        // A run at a time (after a failed protection): only the consecutive dirty pages.
        assert_eq!(pager.hold_span(0, 8, false), 2);
        assert_eq!(pager.state[2].load(Ordering::Relaxed), CLEAN);
        pager.writeback_span(0, 2, false).unwrap();
        drop(_g);
        // Every dirty page of a span must fit one buffer.
        let pages = pager.run_pages + 2;
        let all: Vec<usize> = (0..pages).collect();
        let (map, _store) = mapping_with_dirty(pages, &all);
        let pager = &map.pager;
        let _g = lock(&pager.wb_lock);
        assert_eq!(pager.hold_span(0, pages, true), pager.run_pages);
        assert_eq!(pager.state[pager.run_pages].load(Ordering::Relaxed), DIRTY);
        pager.writeback_span(0, pager.run_pages, false).unwrap();
    }
}
