//! Side-by-side timings: this crate's pager against the kernel's own `mmap` of the same
//! file, and against `pread`, in one run.
//!
//! ```sh
//! cargo run --release -p vmem-uffd --example bench            # 256 MiB file, about a minute
//! cargo run --release -p vmem-uffd --example bench -- 64      # file size in MiB
//! ```
//!
//! Part 1, fault delivery: per-fault cost of signal and thread delivery, and latency
//! percentiles, over the file in the page cache, with the floor of signal delivery on this
//! host (a bare handler that only copies the page in: the kernel's share of a fault).
//! Part 2: scattered writes then a durable flush against `msync(MS_SYNC)`, with the bytes
//! the block device wrote.
//! Part 3, the matrix: sequential scans and random 8-byte reads, with the file in the page
//! cache (warm) and after dropping it (`fdatasync` + `posix_fadvise(DONTNEED)`: cold), with
//! the pager's 4 KiB and 64 KiB pages, from 1 and 2 threads. Every cell is the best of a
//! few runs, each on a fresh mapping. The kernel's cold random reads use `MADV_RANDOM`
//! (without it, each fault reads `read_ahead_kb` around the page).

use std::hint::black_box;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use vmem_uffd::{Delivery, MapOptions};

const PAGE: usize = 4096;
const RUNS: usize = 3;
/// Runs per cell of a cold case (each reads the file from storage).
const COLD_RUNS: usize = 3;

/// The kernel's mapping of a file, unmapped on drop.
struct KernelMap {
    ptr: *mut u8,
    len: usize,
}

impl KernelMap {
    fn new(file: &std::fs::File, len: usize) -> KernelMap {
        KernelMap::with_prot(file, len, libc::PROT_READ)
    }
    fn writable(file: &std::fs::File, len: usize) -> KernelMap {
        KernelMap::with_prot(file, len, libc::PROT_READ | libc::PROT_WRITE)
    }
    fn with_prot(file: &std::fs::File, len: usize, prot: libc::c_int) -> KernelMap {
        KernelMap::with_flags(file, len, prot, libc::MAP_PRIVATE)
    }
    fn with_flags(
        file: &std::fs::File,
        len: usize,
        prot: libc::c_int,
        flags: libc::c_int,
    ) -> KernelMap {
        // SAFETY: a fresh mapping of the whole file at an address the kernel chooses.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, file.as_raw_fd(), 0) };
        assert_ne!(p, libc::MAP_FAILED);
        KernelMap { ptr: p.cast(), len }
    }
    fn slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes of a file nobody writes during the benchmark.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl KernelMap {
    /// Adds 1 to one byte every `stride` bytes (copy-on-write faults).
    fn write_stride(&self, stride: usize) {
        let mut i = 0;
        while i < self.len {
            // SAFETY: inside our writable private mapping.
            unsafe {
                std::ptr::write_volatile(
                    self.ptr.add(i),
                    self.ptr.add(i).read_volatile().wrapping_add(1),
                )
            };
            i += stride;
        }
    }
}

/// The floor of signal delivery on this host: a bare userfaultfd SIGBUS handler that does
/// nothing but one `UFFDIO_COPY` of the faulting page from a read-only `MADV_RANDOM` window
/// onto the file (the pager's source for scattered faults), with the pager's modes
/// (missing + write-protect registration, pages installed write-protected). What is left
/// of a fault's cost is the kernel's: the fault, the signal frame, the copy, `rt_sigreturn`.
mod floor {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

    const fn iowr(nr: u64, size: u64) -> u64 {
        (3 << 30) | (size << 16) | (0xAA << 8) | nr
    }
    const UFFDIO_API: u64 = iowr(0x3F, 24);
    const UFFDIO_REGISTER: u64 = iowr(0x00, 32);
    const UFFDIO_COPY: u64 = iowr(0x03, 40);
    const UFFD_API: u64 = 0xAA;
    const FEATURE_WP: u64 = 1 << 0;
    const FEATURE_SIGBUS: u64 = 1 << 7;
    const USER_MODE_ONLY: libc::c_long = 1;

    static UFFD: AtomicI32 = AtomicI32::new(-1);
    static BASE: AtomicUsize = AtomicUsize::new(0);
    static SRC: AtomicUsize = AtomicUsize::new(0);
    static PAGE: AtomicUsize = AtomicUsize::new(4096);

    extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        let page = PAGE.load(Ordering::Relaxed);
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize & !(page - 1);
        let off = addr - BASE.load(Ordering::Relaxed);
        // struct uffdio_copy: dst, src, len, mode, copy.
        let mut c: [u64; 5] = [
            addr as u64,
            (SRC.load(Ordering::Relaxed) + off) as u64,
            page as u64,
            3, // DONTWAKE | WP
            0,
        ];
        // SAFETY: UFFDIO_COPY reads and writes one uffdio_copy; the destination is a missing
        // page of the registered region, the source a page of the file window.
        unsafe {
            libc::ioctl(
                UFFD.load(Ordering::Relaxed),
                UFFDIO_COPY as _,
                c.as_mut_ptr(),
            )
        };
    }

    /// Nanoseconds per page to touch every page of `len` bytes once, in order, each fault
    /// served by the bare handler; `None` if userfaultfd is refused.
    pub fn per_page(file: &std::fs::File, len: usize) -> Option<f64> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let flags = libc::O_CLOEXEC as libc::c_long | libc::O_NONBLOCK as libc::c_long;
        // SAFETY: userfaultfd takes flags and returns a new descriptor or -1.
        let mut fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags | USER_MODE_ONLY) };
        if fd < 0 {
            // SAFETY: as above.
            fd = unsafe { libc::syscall(libc::SYS_userfaultfd, flags) };
        }
        if fd < 0 {
            return None;
        }
        let fd = fd as libc::c_int;
        // struct uffdio_api: api, features, ioctls.
        let mut api: [u64; 3] = [UFFD_API, FEATURE_SIGBUS | FEATURE_WP, 0];
        // SAFETY: UFFDIO_API reads and writes one uffdio_api.
        let ok = unsafe { libc::ioctl(fd, UFFDIO_API as _, api.as_mut_ptr()) } == 0;
        // SAFETY: fresh mappings at addresses the kernel chooses: the region the faults
        // are in, and a read-only window onto the file.
        let (region, window) = unsafe {
            (
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                ),
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    file.as_raw_fd(),
                    0,
                ),
            )
        };
        assert!(region != libc::MAP_FAILED && window != libc::MAP_FAILED);
        // SAFETY: advice on our own fresh mappings; contents unchanged.
        unsafe {
            libc::madvise(region, len, libc::MADV_NOHUGEPAGE);
            libc::madvise(window, len, libc::MADV_RANDOM);
        }
        // struct uffdio_register: start, len, mode, ioctls.
        let mut reg: [u64; 4] = [region as u64, len as u64, 1 | 2, 0];
        // SAFETY: registers our own fresh region; its faults raise SIGBUS, which the
        // handler installed below serves.
        let ok = ok && unsafe { libc::ioctl(fd, UFFDIO_REGISTER as _, reg.as_mut_ptr()) } == 0;
        let mut result = None;
        if ok {
            UFFD.store(fd, Ordering::Relaxed);
            BASE.store(region as usize, Ordering::Relaxed);
            SRC.store(window as usize, Ordering::Relaxed);
            PAGE.store(page, Ordering::Relaxed);
            // SAFETY: an all-zero sigaction is a valid starting point.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESTART;
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: installs a valid SA_SIGINFO handler for the time of the loop (no
            // other thread touches a userfaultfd mapping meanwhile), then puts the previous
            // action (the pager's handler, if one is installed) back.
            unsafe { libc::sigaction(libc::SIGBUS, &sa, &mut old) };
            let t = std::time::Instant::now();
            // SAFETY: `len` bytes of our region; every page faults once and is filled.
            let s = unsafe { std::slice::from_raw_parts(region as *const u8, len) };
            std::hint::black_box(super::touch_stride(s, page));
            result = Some(t.elapsed().as_nanos() as f64 / (len / page) as f64);
            // SAFETY: see above.
            unsafe { libc::sigaction(libc::SIGBUS, &old, std::ptr::null_mut()) };
        }
        // SAFETY: our own mappings and descriptor, no longer used (closing the descriptor
        // after unmapping the region it was registered on).
        unsafe {
            libc::munmap(region, len);
            libc::munmap(window, len);
            libc::close(fd);
        }
        result
    }
}

/// Bytes written to the block device holding `file` so far: sectors written, from
/// /sys/dev/block/MAJ:MIN/stat (the whole disk's, partition or not), times 512. What
/// storage really received, journal included; the machine is otherwise idle while this
/// bench runs.
fn device_bytes_written(file: &std::fs::File) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = file.metadata() else { return 0 };
    let (maj, min) = (libc::major(md.dev()), libc::minor(md.dev()));
    let base = format!("/sys/dev/block/{maj}:{min}");
    for p in [format!("{base}/stat"), format!("{base}/../stat")] {
        if let Ok(s) = std::fs::read_to_string(&p) {
            if let Some(sectors) = s
                .split_whitespace()
                .nth(6)
                .and_then(|v| v.parse::<u64>().ok())
            {
                return sectors * 512;
            }
        }
    }
    0
}

/// 8-byte writes at `n` scattered, 8-aligned offsets of `s`.
/// Scattered writes made durable: the whole time, the writes' share of it, and the bytes
/// the block device wrote.
struct Durable {
    total: Duration,
    writes: Duration,
    device_bytes: u64,
}

/// One step of a xorshift generator: the same offsets on every side of a comparison.
fn xorshift(x: &mut u64) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
}

fn scattered_writes(s: &mut [u8], n: usize, seed: u64) {
    let mut x = seed | 1;
    for i in 0..n {
        xorshift(&mut x);
        let off = (x as usize % (s.len() / 8)) * 8;
        s[off..off + 8].copy_from_slice(&(i as u64).to_le_bytes());
    }
}

impl Drop for KernelMap {
    fn drop(&mut self) {
        // SAFETY: our own mapping, no longer used.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

fn minor_faults() -> i64 {
    // SAFETY: getrusage writes one rusage structure.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut r);
        r.ru_minflt
    }
}

fn best<T>(f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    best_of(RUNS, f)
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut out = f();
    for _ in 1..runs {
        let r = f();
        if r.0 < out.0 {
            out = r;
        }
    }
    out
}

fn touch_stride(s: &[u8], stride: usize) -> u64 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < s.len() {
        sum = sum.wrapping_add(u64::from(s[i]));
        i += stride;
    }
    sum
}

fn scan(s: &[u8]) -> u64 {
    let (_, words, _) = {
        // SAFETY: reinterpreting aligned bytes as u64 words (every bit pattern is valid).
        unsafe { s.align_to::<u64>() }
    };
    words.iter().fold(0u64, |a, w| a.wrapping_add(*w))
}

fn random_reads(s: &[u8], n: usize, seed: u64) -> u64 {
    let mut x = seed;
    let mut sum = 0u64;
    let words = s.len() / 8;
    for _ in 0..n {
        xorshift(&mut x);
        let i = (x % words as u64) as usize * 8;
        sum = sum.wrapping_add(u64::from_ne_bytes(s[i..i + 8].try_into().unwrap()));
    }
    sum
}

fn ns(d: Duration, per: usize) -> f64 {
    d.as_nanos() as f64 / per as f64
}

fn row(name: &str, values: &[(&str, f64)], unit: &str, base: f64) {
    print!("{name:<44}");
    for (label, v) in values {
        print!(" {label} {v:>9.1} {unit} ({:>5.2}x)", v / base);
    }
    println!();
}

/// Drops the file's pages from the page cache (they are clean: written back first).
fn drop_cache(file: &std::fs::File) {
    file.sync_data().expect("fdatasync");
    // SAFETY: posix_fadvise on our own descriptor; DONTNEED only drops clean cached pages.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise");
}

/// Reads the whole file once, so that it is in the page cache.
fn warm_cache(file: &std::fs::File, len: usize) {
    let mut buf = vec![0u8; 1 << 20];
    for off in (0..len).step_by(buf.len()) {
        let n = buf.len().min(len - off);
        file.read_exact_at(&mut buf[..n], off as u64).unwrap();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Work {
    Scan,
    Random,
}

/// Runs `work` over `s` from `threads` threads: a scan splits the bytes into contiguous
/// parts, random reads split the count (each thread reads all over `s`).
fn on_slice(s: &[u8], work: Work, threads: usize, reads: usize) -> u64 {
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                sc.spawn(move || match work {
                    Work::Scan => {
                        let part = s.len() / threads / PAGE * PAGE;
                        let end = if t + 1 == threads {
                            s.len()
                        } else {
                            (t + 1) * part
                        };
                        scan(&s[t * part..end])
                    }
                    Work::Random => random_reads(s, reads / threads, 7 + t as u64),
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// The same work through `pread`: scans in `chunk`-byte reads, random reads of 8 bytes.
fn on_pread(
    file: &std::fs::File,
    len: usize,
    work: Work,
    threads: usize,
    reads: usize,
    chunk: usize,
) -> u64 {
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                sc.spawn(move || match work {
                    Work::Scan => {
                        let part = len / threads / PAGE * PAGE;
                        let end = if t + 1 == threads {
                            len
                        } else {
                            (t + 1) * part
                        };
                        let mut b = vec![0u8; chunk];
                        let mut sum = 0u64;
                        let mut off = t * part;
                        while off < end {
                            let n = chunk.min(end - off);
                            file.read_exact_at(&mut b[..n], off as u64).unwrap();
                            sum = sum.wrapping_add(scan(&b[..n]));
                            off += n;
                        }
                        sum
                    }
                    Work::Random => {
                        let mut x = 7 + t as u64;
                        let mut sum = 0u64;
                        let mut b = [0u8; 8];
                        for _ in 0..reads / threads {
                            xorshift(&mut x);
                            file.read_exact_at(&mut b, (x % (len as u64 / 8)) * 8)
                                .unwrap();
                            sum = sum.wrapping_add(u64::from_ne_bytes(b));
                        }
                        sum
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    })
}

/// One row of the matrix: the three sides run in turn, round after round (so that a
/// drift in the disk's speed hits them alike), the page cache made cold or warm before
/// each run; the best time of each side.
fn row3(
    file: &std::fs::File,
    len: usize,
    cold: bool,
    sides: &mut [&mut dyn FnMut() -> Duration; 3],
) -> [Duration; 3] {
    let runs = if cold { COLD_RUNS } else { RUNS };
    let mut best = [Duration::MAX; 3];
    for _ in 0..runs {
        for (b, f) in best.iter_mut().zip(sides.iter_mut()) {
            if cold {
                drop_cache(file);
            } else {
                warm_cache(file, len);
            }
            *b = (*b).min(f());
        }
    }
    best
}

/// The storage's share of a cold random read: `reads` `pread`s of `block` bytes, each the
/// aligned block around one of the 8-byte reads the matrix makes (the same offsets), from
/// `threads` threads, the page cache dropped first. A pager whose pages are 64 KiB must
/// read 64 KiB per fault where the kernel's `MADV_RANDOM` mapping reads 4 KiB: this is
/// what the storage alone takes for each.
fn block_reads(file: &std::fs::File, len: usize, block: usize, threads: usize, reads: usize) {
    std::thread::scope(|sc| {
        for t in 0..threads {
            sc.spawn(move || {
                let mut x = 7 + t as u64;
                let mut b = vec![0u8; block];
                for _ in 0..reads / threads {
                    xorshift(&mut x);
                    let at = (x % (len as u64 / 8)) * 8 / block as u64 * block as u64;
                    file.read_exact_at(&mut b, at).unwrap();
                }
                black_box(&b);
            });
        }
    });
}

/// Prints, for 1 and 2 threads, the time of a cold random 4 KiB and 64 KiB block read.
fn storage_floor(file: &std::fs::File, len: usize, reads: usize) {
    for threads in [1, 2] {
        let mut best = [Duration::MAX; 2];
        for _ in 0..COLD_RUNS {
            for (b, block) in best.iter_mut().zip([4 << 10, 64 << 10]) {
                drop_cache(file);
                let t = Instant::now();
                block_reads(file, len, block, threads, reads);
                *b = (*b).min(t.elapsed());
            }
        }
        println!(
            "  storage alone, cold, {threads} thr: a 4 KiB read {:.0} ns, a 64 KiB read {:.0} ns ({:.2}x): the floor of the 64 KiB rows' \"vs mmap\"",
            ns(best[0], reads),
            ns(best[1], reads),
            best[1].as_secs_f64() / best[0].as_secs_f64()
        );
    }
}

fn matrix(file: &std::fs::File, len: usize) {
    let warm_reads = 2_000_000;
    let cold_reads = 5_000;
    println!(
        "{:<40} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "case (pager page, threads)", "kernel mmap", "pread", "vmem-uffd", "vs mmap", "vs pread"
    );
    for work in [Work::Scan, Work::Random] {
        for cold in [false, true] {
            let reads = if cold { cold_reads } else { warm_reads };
            for threads in [1, 2] {
                for page in [4 << 10, 64 << 10] {
                    let mut kernel = || {
                        let m = KernelMap::new(file, len);
                        if work == Work::Random && cold {
                            // SAFETY: advice on our own mapping; contents unchanged.
                            unsafe { libc::madvise(m.ptr.cast(), len, libc::MADV_RANDOM) };
                        }
                        if work == Work::Random && !cold {
                            black_box(scan(m.slice())); // map every page: measure the reads
                        }
                        let t = Instant::now();
                        black_box(on_slice(m.slice(), work, threads, reads));
                        t.elapsed()
                    };
                    let mut pread = || {
                        let t = Instant::now();
                        black_box(on_pread(file, len, work, threads, reads, page));
                        t.elapsed()
                    };
                    let mut uffd = || {
                        let m = MapOptions::new(file.try_clone().unwrap())
                            .page_size(page)
                            .map()
                            .expect("userfaultfd mapping");
                        if work == Work::Random && !cold {
                            m.prefetch(0..len);
                        }
                        let t = Instant::now();
                        black_box(on_slice(&m, work, threads, reads));
                        t.elapsed()
                    };
                    let [kernel, pread, uffd] =
                        row3(file, len, cold, &mut [&mut kernel, &mut pread, &mut uffd]);
                    let unit = if work == Work::Scan {
                        "GB/s"
                    } else {
                        "ns/read"
                    };
                    let v = |d: Duration| match work {
                        Work::Scan => len as f64 / d.as_secs_f64() / 1e9,
                        Work::Random => d.as_nanos() as f64 / reads as f64,
                    };
                    let name = format!(
                        "{} {}, {} KiB, {} thr ({unit})",
                        if work == Work::Scan {
                            "scan"
                        } else {
                            "random 8 B"
                        },
                        if cold { "cold" } else { "warm" },
                        page >> 10,
                        threads
                    );
                    // Ratios are of times: above 1, the pager is slower.
                    let rk = uffd.as_secs_f64() / kernel.as_secs_f64();
                    let rp = uffd.as_secs_f64() / pread.as_secs_f64();
                    println!(
                        "{name:<40} {:>12.2} {:>12.2} {:>12.2} {:>8.2}x {:>8.2}x",
                        v(kernel),
                        v(pread),
                        v(uffd),
                        rk,
                        rp
                    );
                }
            }
        }
    }
    println!(
        "  (times are compared: \"vs mmap\" 1.30x = the pager took 1.3 times the kernel's time;\n   pread reads page-sized chunks for scans and 8 bytes for random reads; cold random:\n   {cold_reads} reads, the kernel's mapping with MADV_RANDOM; warm random: {warm_reads} reads over\n   pages already mapped on both sides)"
    );
    storage_floor(file, len, cold_reads);
}

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(256);
    let len = mib << 20;
    let mut tmp =
        tempfile::tempfile_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))
            .or_else(|_| tempfile::tempfile())
            .expect("temp file");
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for _ in 0..mib {
        tmp.write_all(&chunk).unwrap();
    }
    tmp.flush().unwrap();
    let file = tmp;
    println!(
        "vmem-uffd bench: {mib} MiB file, signal delivery, default read-ahead ({} pages)\n",
        vmem_uffd::DEFAULT_READ_AHEAD
    );
    let uffd = |d: Delivery, ra: usize| {
        MapOptions::new(file.try_clone().unwrap())
            .delivery(d)
            .read_ahead(ra)
            .map()
            .expect("userfaultfd mapping")
    };
    println!(
        "\nfault delivery, 4 KiB pages, file in the page cache, read-ahead off; (Nx) = N times the kernel's time"
    );
    println!(
        "{:<44} {:<28} {:<28} {:<28}",
        "", "kernel mmap", "uffd signal", "uffd threads"
    );

    // Read faults, one touch per 64 KiB. The pager (read-ahead off) takes one 4 KiB fault
    // per touch; the kernel maps a whole 64 KiB or more per fault (fault-around, large
    // folios), so it takes fewer: shown per touch.
    let touches = len / (64 << 10);
    let (tk, fk) = best(|| {
        let m = KernelMap::new(&file, len);
        let f0 = minor_faults();
        let t = Instant::now();
        black_box(touch_stride(m.slice(), 64 << 10));
        (t.elapsed(), minor_faults() - f0)
    });
    let mut per_fault = Vec::new();
    for d in [Delivery::Signal, Delivery::Threads] {
        let (t, faults) = best(|| {
            let m = uffd(d, 0);
            let t = Instant::now();
            black_box(touch_stride(&m, 64 << 10));
            (t.elapsed(), m.stats().faults)
        });
        assert_eq!(faults as usize, touches);
        per_fault.push(ns(t, touches));
    }
    let kt = ns(tk, touches);
    row(
        &format!("read touch per 64 KiB (kernel {fk} faults)"),
        &[("", kt), ("", per_fault[0]), ("", per_fault[1])],
        "ns",
        kt,
    );

    // Write faults on a private mapping: one 4 KiB fault per touch on both sides (the
    // kernel's do_cow_fault allocates and copies a page, as UFFDIO_COPY does).
    let (tk, fk) = best(|| {
        let m = KernelMap::writable(&file, len);
        let f0 = minor_faults();
        let t = Instant::now();
        m.write_stride(64 << 10);
        (t.elapsed(), minor_faults() - f0)
    });
    let mut wf = Vec::new();
    for d in [Delivery::Signal, Delivery::Threads] {
        let (t, faults) = best(|| {
            let mut m = uffd(d, 0);
            let t = Instant::now();
            for i in (0..len).step_by(64 << 10) {
                m[i] = m[i].wrapping_add(1);
            }
            (t.elapsed(), m.stats().write_faults)
        });
        assert_eq!(faults as usize, touches);
        wf.push(ns(t, touches));
    }
    let kw = ns(tk, fk.max(1) as usize);
    row(
        &format!("4 KiB write fault, private ({fk} kernel faults)"),
        &[("", kw), ("", wf[0]), ("", wf[1])],
        "ns",
        kw,
    );

    // Every page touched once, in order: per-page cost.
    let pages = len / PAGE;
    let (tk, _) = best(|| {
        let m = KernelMap::new(&file, len);
        let t = Instant::now();
        black_box(touch_stride(m.slice(), PAGE));
        (t.elapsed(), ())
    });
    let kp = ns(tk, pages);
    let mut per_page = Vec::new();
    let mut floor = f64::MAX;
    for d in [Delivery::Signal, Delivery::Threads] {
        let (t, _) = best(|| {
            if d == Delivery::Signal {
                // The floor's runs alternate with the pager's.
                if let Some(f) = floor::per_page(&file, len) {
                    floor = floor.min(f);
                }
            }
            let m = uffd(d, 0);
            let t = Instant::now();
            black_box(touch_stride(&m, PAGE));
            (t.elapsed(), ())
        });
        per_page.push(ns(t, pages));
    }
    row(
        "every 4 KiB page once, in order",
        &[("", kp), ("", per_page[0]), ("", per_page[1])],
        "ns",
        kp,
    );
    if floor < f64::MAX {
        println!(
            "  floor of signal delivery here: {floor:.0} ns per page (a bare SIGBUS handler doing one UFFDIO_COPY\n   from a file window, nothing else, best of {RUNS} runs alternating with the pager's); the pager: {:+.0} ns",
            per_page[0] - floor
        );
    }

    // Fault latency, one fault timed at a time, as percentiles.
    let mut lat = Vec::new();
    for d in [Delivery::Signal, Delivery::Threads] {
        let m = uffd(d, 0);
        let pages = (len / PAGE).min(4096);
        let mut v: Vec<u64> = (0..pages)
            .map(|p| {
                let t = Instant::now();
                black_box(m[p * PAGE]);
                t.elapsed().as_nanos() as u64
            })
            .collect();
        v.sort_unstable();
        let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize];
        lat.push(format!(
            "p50 {} ns, p90 {} ns, p99 {} ns",
            q(0.5),
            q(0.9),
            q(0.99)
        ));
    }
    println!(
        "{:<44} signal: {}; threads: {}",
        "single 4 KiB fault latency", lat[0], lat[1]
    );
    let faster = if per_fault[0] <= per_fault[1] {
        "signal"
    } else {
        "threads"
    };
    println!(
        "fault delivery: signal {:.0} ns, threads {:.0} ns per 4 KiB read fault ({:.0} / {:.0} ns per write fault) -> {faster} is faster; the default is signal",
        per_fault[0], per_fault[1], wf[0], wf[1]
    );

    // Random 8-byte writes, then a durable flush: the kernel's msync(MS_SYNC) writes back
    // whole (possibly large) folios; the pager writes back its 4 KiB pages.
    let writes = 20_000;
    let kernel_w = {
        let km = KernelMap::with_flags(
            &file,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        );
        black_box(scan(km.slice()));
        let before = device_bytes_written(&file);
        let t = Instant::now();
        // SAFETY: our own writable shared mapping of `len` bytes, used by this thread only.
        let sl = unsafe { std::slice::from_raw_parts_mut(km.ptr, km.len) };
        scattered_writes(sl, writes, 11);
        let writing = t.elapsed();
        // SAFETY: msync of our own mapping.
        let r = unsafe { libc::msync(km.ptr.cast(), km.len, libc::MS_SYNC) };
        assert_eq!(r, 0, "msync");
        Durable {
            total: t.elapsed(),
            writes: writing,
            device_bytes: device_bytes_written(&file) - before,
        }
    };
    let (uffd_w, pager_bytes) = {
        let mut m = MapOptions::new(file.try_clone().unwrap())
            .shared()
            .map()
            .expect("userfaultfd mapping");
        m.prefetch(0..len);
        let before = device_bytes_written(&file);
        let t = Instant::now();
        scattered_writes(&mut m, writes, 11);
        let writing = t.elapsed();
        m.flush().expect("flush");
        let done = Durable {
            total: t.elapsed(),
            writes: writing,
            device_bytes: device_bytes_written(&file) - before,
        };
        (done, m.stats().bytes_written)
    };
    println!(
        "\n{writes} random 8-byte writes + durable flush: kernel mmap+msync {:.1} ms, {:.1} MB to storage; vmem-uffd flush {:.1} ms ({:.2}x), pager wrote {:.1} MB, {:.1} MB to storage",
        kernel_w.total.as_secs_f64() * 1e3,
        kernel_w.device_bytes as f64 / 1e6,
        uffd_w.total.as_secs_f64() * 1e3,
        uffd_w.total.as_secs_f64() / kernel_w.total.as_secs_f64(),
        pager_bytes as f64 / 1e6,
        uffd_w.device_bytes as f64 / 1e6
    );
    println!(
        "  of which the writes: kernel {:.1} ms, vmem-uffd {:.1} ms; the flush: kernel {:.1} ms, vmem-uffd {:.1} ms",
        kernel_w.writes.as_secs_f64() * 1e3,
        uffd_w.writes.as_secs_f64() * 1e3,
        (kernel_w.total - kernel_w.writes).as_secs_f64() * 1e3,
        (uffd_w.total - uffd_w.writes).as_secs_f64() * 1e3,
    );
    println!(
        "  (storage bytes: sectors the block device wrote during the flush, journal included:\n   msync writes back whole dirtied folios, the pager's pwrites only the blocks they dirtied;\n   the file was written just before, so its page cache holds the large folios write() made)\n"
    );

    matrix(&file, len);
}
