//! Side-by-side timings: this crate's pager (both deliveries) against the kernel's own
//! `mmap` of the same cached file, and against `pread`.
//!
//! ```sh
//! cargo run --release -p vmem-uffd --example bench            # 64 MiB file, a few seconds
//! cargo run --release -p vmem-uffd --example bench -- 256     # file size in MiB
//! ```
//!
//! Every row is the best of a few runs, each on a fresh mapping (cold page tables) over a
//! file already in the page cache. Ratios are "how many times the kernel's time".

use std::hint::black_box;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use vmem_uffd::{Delivery, MapOptions};

const PAGE: usize = 4096;
const RUNS: usize = 3;

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
fn scattered_writes(s: &mut [u8], n: usize, seed: u64) {
    let mut x = seed | 1;
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
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

fn best<T>(mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut out = f();
    for _ in 1..RUNS {
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
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
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

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(64);
    let len = mib << 20;
    let mut tmp = tempfile::tempfile().expect("temp file");
    let chunk: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for _ in 0..mib {
        tmp.write_all(&chunk).unwrap();
    }
    tmp.flush().unwrap();
    let file = tmp;
    // Warm the page cache.
    let mut buf = vec![0u8; 1 << 20];
    for off in (0..len).step_by(buf.len()) {
        file.read_exact_at(&mut buf, off as u64).unwrap();
    }
    let uffd = |d: Delivery, ra: usize| {
        MapOptions::new(file.try_clone().unwrap())
            .delivery(d)
            .read_ahead(ra)
            .map()
            .expect("userfaultfd mapping")
    };
    println!(
        "vmem-uffd bench: {mib} MiB file in the page cache, 4 KiB pages, best of {RUNS}; (Nx) = N times the kernel's time"
    );
    println!(
        "{:<44} {:<28} {:<28} {:<28}",
        "", "kernel mmap", "uffd signal", "uffd threads"
    );

    // 1. Read faults, one touch per 64 KiB. The pager (read-ahead off) takes one 4 KiB
    //    fault per touch; the kernel maps a whole 64 KiB or more per fault (fault-around,
    //    large folios), so it takes fewer: shown per touch.
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

    // 1b. Write faults on a private mapping: one 4 KiB fault per touch on both sides (the
    //     kernel's do_cow_fault allocates and copies a page, as UFFDIO_COPY does).
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

    // 2. Every page touched once, in order, no read-ahead: per-page cost.
    let pages = len / PAGE;
    let (tk, _) = best(|| {
        let m = KernelMap::new(&file, len);
        let t = Instant::now();
        black_box(touch_stride(m.slice(), PAGE));
        (t.elapsed(), ())
    });
    let kp = ns(tk, pages);
    let mut per_page = Vec::new();
    for d in [Delivery::Signal, Delivery::Threads] {
        let (t, _) = best(|| {
            let m = uffd(d, 0);
            let t = Instant::now();
            black_box(touch_stride(&m, PAGE));
            (t.elapsed(), ())
        });
        per_page.push(ns(t, pages));
    }
    row(
        "every 4 KiB page once, read-ahead off",
        &[("", kp), ("", per_page[0]), ("", per_page[1])],
        "ns",
        kp,
    );

    // 3. Sequential scan (sum of u64 words), with the default read-ahead; GB/s shown as
    //    ns per 4 KiB so that lower is better everywhere.
    let (tk, _) = best(|| {
        let m = KernelMap::new(&file, len);
        let t = Instant::now();
        black_box(scan(m.slice()));
        (t.elapsed(), ())
    });
    let mut seq = Vec::new();
    let mut ra_stats = Vec::new();
    for d in [Delivery::Signal, Delivery::Threads] {
        let (t, s) = best(|| {
            let m = uffd(d, vmem_uffd::DEFAULT_READ_AHEAD);
            let t = Instant::now();
            black_box(scan(&m));
            (t.elapsed(), m.stats())
        });
        seq.push(t);
        ra_stats.push(s);
    }
    let (tp, _) = best(|| {
        let mut b = vec![0u8; 128 << 10];
        let t = Instant::now();
        let mut sum = 0u64;
        for off in (0..len).step_by(b.len()) {
            file.read_exact_at(&mut b, off as u64).unwrap();
            sum = sum.wrapping_add(scan(&b));
        }
        black_box(sum);
        (t.elapsed(), ())
    });
    let gbs = |d: Duration| len as f64 / d.as_secs_f64() / 1e9;
    row(
        "sequential scan, ns per 4 KiB page",
        &[
            ("", ns(tk, pages)),
            ("", ns(seq[0], pages)),
            ("", ns(seq[1], pages)),
        ],
        "ns",
        ns(tk, pages),
    );
    println!(
        "{:<44} kernel mmap {:.2} GB/s, uffd signal {:.2} GB/s, uffd threads {:.2} GB/s, pread(128 KiB) {:.2} GB/s ({:.2}x)",
        "  as throughput",
        gbs(tk),
        gbs(seq[0]),
        gbs(seq[1]),
        gbs(tp),
        tp.as_secs_f64() / tk.as_secs_f64()
    );
    println!(
        "{:<44} signal: {} faults, {} pages read ahead; threads: {} faults, {} read ahead",
        "  pager read-ahead",
        ra_stats[0].faults,
        ra_stats[0].readahead_pages,
        ra_stats[1].faults,
        ra_stats[1].readahead_pages
    );

    // 4. Random 8-byte reads on a cold mapping (most are faults), then warm.
    let n = (len / PAGE).min(50_000);
    let (tk, _) = best(|| {
        let m = KernelMap::new(&file, len);
        let t = Instant::now();
        black_box(random_reads(m.slice(), n, 7));
        (t.elapsed(), ())
    });
    let mut cold = Vec::new();
    for d in [Delivery::Signal, Delivery::Threads] {
        let (t, _) = best(|| {
            let m = uffd(d, vmem_uffd::DEFAULT_READ_AHEAD);
            let t = Instant::now();
            black_box(random_reads(&m, n, 7));
            (t.elapsed(), ())
        });
        cold.push(ns(t, n));
    }
    row(
        &format!("random 8-byte reads, cold ({n})"),
        &[("", ns(tk, n)), ("", cold[0]), ("", cold[1])],
        "ns",
        ns(tk, n),
    );
    let (tp, _) = best(|| {
        let t = Instant::now();
        let mut x = 7u64;
        let mut sum = 0u64;
        let mut b = [0u8; 8];
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            file.read_exact_at(&mut b, (x % (len as u64 / 8)) * 8)
                .unwrap();
            sum = sum.wrapping_add(u64::from_ne_bytes(b));
        }
        black_box(sum);
        (t.elapsed(), ())
    });
    println!(
        "{:<44} pread(8 bytes) {:.1} ns per read",
        "  the same reads with pread",
        ns(tp, n)
    );
    let warm_n = 2_000_000;
    let km = KernelMap::new(&file, len);
    black_box(scan(km.slice()));
    let (tk, _) = best(|| {
        let t = Instant::now();
        black_box(random_reads(km.slice(), warm_n, 9));
        (t.elapsed(), ())
    });
    let mut warm = Vec::new();
    for d in [Delivery::Signal, Delivery::Threads] {
        let m = uffd(d, vmem_uffd::DEFAULT_READ_AHEAD);
        m.prefetch(0..len);
        let (t, _) = best(|| {
            let t = Instant::now();
            black_box(random_reads(&m, warm_n, 9));
            (t.elapsed(), ())
        });
        warm.push(ns(t, warm_n));
    }
    row(
        &format!("random 8-byte reads, warm ({warm_n})"),
        &[("", ns(tk, warm_n)), ("", warm[0]), ("", warm[1])],
        "ns",
        ns(tk, warm_n),
    );

    // 5. Fault latency, one fault timed at a time (read-ahead off), as percentiles.
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

    // 6. Random 8-byte writes, then a durable flush: the kernel's msync(MS_SYNC) writes
    //    back whole (possibly large) folios; the pager writes back its 4 KiB pages.
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
        // SAFETY: msync of our own mapping.
        let r = unsafe { libc::msync(km.ptr.cast(), km.len, libc::MS_SYNC) };
        assert_eq!(r, 0, "msync");
        (t.elapsed(), device_bytes_written(&file) - before)
    };
    let uffd_w = {
        let mut m = MapOptions::new(file.try_clone().unwrap())
            .shared()
            .map()
            .expect("userfaultfd mapping");
        m.prefetch(0..len);
        let before = device_bytes_written(&file);
        let t = Instant::now();
        scattered_writes(&mut m, writes, 11);
        m.flush().expect("flush");
        let pager_bytes = m.stats().bytes_written;
        (
            t.elapsed(),
            device_bytes_written(&file) - before,
            pager_bytes,
        )
    };
    println!(
        "{:<44} kernel mmap+msync: {:.1} ms, {:.1} MB to storage; uffd flush: {:.1} ms ({:.2}x), pager wrote {:.1} MB, {:.1} MB to storage",
        format!("{writes} random 8-byte writes + durable flush"),
        kernel_w.0.as_secs_f64() * 1e3,
        kernel_w.1 as f64 / 1e6,
        uffd_w.0.as_secs_f64() * 1e3,
        uffd_w.0.as_secs_f64() / kernel_w.0.as_secs_f64(),
        uffd_w.2 as f64 / 1e6,
        uffd_w.1 as f64 / 1e6
    );
    println!(
        "{:<44} (storage bytes: sectors the block device wrote during the flush, journal included:\n{:<44} msync writes back whole dirtied folios, the pager's pwrites only the blocks they dirtied)",
        "", ""
    );

    let faster = if per_fault[0] <= per_fault[1] {
        "signal"
    } else {
        "threads"
    };
    println!(
        "\nfault delivery: signal {:.0} ns, threads {:.0} ns per 4 KiB read fault ({:.0} / {:.0} ns per write fault) -> {faster} is faster; the default is signal",
        per_fault[0], per_fault[1], wf[0], wf[1]
    );
}
