//! `vmem bench` (issue #8): the emulated machine side by side with the real hardware and
//! kernel, in one process. Each row runs the model and the real side a few times,
//! interleaved, and keeps the best (minimum) time of each.

#![allow(unsafe_code)]

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};
use vmem::consts::*;
use vmem::{Kernel, MachineConfig, Pid, TraceAccess, VirtAddr, PAGE_SIZE};

const MIB: u64 = 1 << 20;

/// One line of the table.
#[derive(Debug)]
struct Row {
    id: &'static str,
    measure: String,
    /// Unit of `model` and `real`.
    unit: &'static str,
    model: f64,
    real: Option<f64>,
    /// The target, as printed.
    target: String,
    /// `None`: reported, no target.
    met: Option<bool>,
    /// Extra figures for the JSON line.
    extra: Vec<(&'static str, f64)>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.real.filter(|r| *r > 0.0).map(|r| self.model / r)
    }
}

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    reps: usize,
    loads: usize,
    walk_bytes: u64,
    fault_pages: u64,
    file_pages: u64,
    scan_bytes: u64,
    fork_bytes: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                reps: 3,
                loads: 200_000,
                walk_bytes: 32 * MIB,
                fault_pages: 2048,
                file_pages: 2048,
                scan_bytes: 32 * MIB,
                fork_bytes: 16 * MIB,
            }
        } else {
            Sizes {
                reps: 5,
                loads: 2_000_000,
                walk_bytes: 256 * MIB,
                fault_pages: 16384,
                file_pages: 16384,
                scan_bytes: 256 * MIB,
                fork_bytes: 64 * MIB,
            }
        }
    }
}

/// Runs the benchmark and prints the table (or JSON lines). Returns the exit status.
pub fn run(quick: bool, json: bool) -> i32 {
    let s = Sizes::new(quick);
    let dir = match tempfile::Builder::new().prefix("vmem-bench-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("vmem: cannot create a temporary directory: {e}");
            return crate::report::EXIT_USAGE;
        }
    };
    if !json {
        println!(
            "vmem bench{}: each side runs {} times, interleaved; the best (min) is shown",
            if quick { " --quick" } else { "" },
            s.reps
        );
        println!();
        println!(
            "{:<46} {:>12} {:>12} {:>8}   {:<14} met",
            "measure", "model", "real", "ratio", "target"
        );
    }
    let rows: Vec<Box<dyn Fn() -> std::io::Result<Vec<Row>>>> = vec![
        Box::new(move || Ok(vec![tlb_hit(&s)])),
        Box::new(move || Ok(page_walk(&s))),
        Box::new(move || Ok(vec![anon_fault(&s)])),
        Box::new({
            let d = dir.path().to_path_buf();
            move || file_fault(&s, &d).map(|r| vec![r])
        }),
        Box::new({
            let d = dir.path().to_path_buf();
            move || scan(&s, &d)
        }),
        Box::new(move || fork_cow(&s).map(|r| vec![r])),
        Box::new(|| Ok(overhead())),
    ];
    for f in rows {
        match f() {
            Ok(rs) => {
                for r in rs {
                    print_row(&r, json, &s, quick);
                }
            }
            Err(e) => {
                eprintln!("vmem: bench: {e}");
                return crate::report::EXIT_USAGE;
            }
        }
    }
    if !json {
        footnote(&s);
    }
    crate::report::EXIT_OK
}

fn fmt_val(v: f64, unit: &str) -> String {
    let num = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    let u = match unit {
        "ns/load" | "ns/page" => "ns",
        "M loads/s" => "M/s",
        u => u,
    };
    format!("{num} {u}")
}

fn print_row(r: &Row, json: bool, s: &Sizes, quick: bool) {
    if json {
        let mut o = serde_json::json!({
            "id": r.id,
            "measure": r.measure,
            "unit": r.unit,
            "model": r.model,
            "real": r.real,
            "ratio": r.ratio(),
            "target": r.target,
            "met": r.met,
            "reps": s.reps,
            "quick": quick,
        });
        for (k, v) in &r.extra {
            o[*k] = serde_json::json!(v);
        }
        println!("{o}");
    } else {
        let real = r.real.map_or("-".into(), |v| fmt_val(v, r.unit));
        let ratio = r.ratio().map_or("-".into(), |x| format!("{x:.2}x"));
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        println!(
            "{:<46} {:>12} {:>12} {:>8}   {:<14} {met}",
            r.measure,
            fmt_val(r.model, r.unit),
            real,
            ratio,
            r.target
        );
    }
}

fn footnote(s: &Sizes) {
    println!();
    println!("ratio = model / real, in the row's unit (ns: times slower; MB/s: fraction of the");
    println!("kernel's throughput). Row by row:");
    println!(
        "- loads: {} u64 loads at the same xorshift-random addresses: indexing a Vec<u64> of",
        s.loads
    );
    println!("  the same size (real); the model one Kernel::load_u64 call per load (TLB hits; the");
    println!(
        "  large region's second line) and as a trace replayer runs them, Kernel::access_batch"
    );
    println!("  (the large region's first line): a block's translations first, then its data");
    println!("  reads, with the same effects. 1 MiB = 256 pages = the model's 64x4 TLB, so every");
    println!("  translation hits; the large region misses and walks (the paging-structure cache");
    println!("  holds the leaf tables).");
    println!("- first touch: one store per page of a fresh MAP_ANONYMOUS mapping. The model's");
    println!("  machine is booted with prefault_ram = true, so its RAM arena is already backed by");
    println!("  host memory and the host page faults it would otherwise take inside each emulated");
    println!("  fault are not counted. Real: memmap2::MmapMut::map_anon, one byte per page.");
    println!("  Frames never used since boot are known to be zero and are not cleared again, so");
    println!("  the model's best run is its first; later runs reuse the frames the previous run");
    println!("  unmapped and clear each one (their best is in --json: model_recycled_...).");
    println!(
        "- read faults: one byte per page of a MAP_SHARED file mapping whose pages are already"
    );
    println!("  in the page cache (the model's: read() through the model first; the host's: just");
    println!("  written); both map 16 pages around each fault (fault_around_bytes = 64 KiB).");
    println!("- scan: Kernel::load in 1 MiB chunks over a mapping of a cached file, vs. memcpy");
    println!("  from a kernel mmap of the same file, vs. read() into a 1 MiB buffer.");
    println!("- fork: time from before fork() to after the child's exit (model: Kernel::exit;");
    println!("  real: libc::fork, the child writes one byte per page then _exit(0), waitpid).");
    println!("- overhead: size_of::<FrameMeta>() against Linux's 64-byte struct page; per VMA:");
    println!("  size_of::<Vma>() + the BTreeMap's u64 key (node headers not counted).");
}

// ---- helpers ----------------------------------------------------------------------------

/// A tiny xorshift: the same index sequence for both sides, no RNG crate.
fn indices(words: u64, n: usize) -> Vec<u64> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % words
        })
        .collect()
}

/// The best time of each side over `reps` interleaved runs.
fn best<const N: usize>(reps: usize, mut sides: [&mut dyn FnMut() -> Duration; N]) -> [f64; N] {
    let mut best = [f64::INFINITY; N];
    for _ in 0..reps.max(1) {
        for (i, f) in sides.iter_mut().enumerate() {
            best[i] = best[i].min(f().as_secs_f64());
        }
    }
    best
}

fn boot(ram_bytes: u64) -> Kernel {
    Kernel::new(MachineConfig {
        prefault_ram: true,
        ..MachineConfig::with_ram(ram_bytes)
    })
}

fn anon(k: &mut Kernel, p: Pid, bytes: u64, extra: i32) -> VirtAddr {
    k.mmap(
        p,
        VirtAddr(0),
        bytes,
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | extra,
        -1,
        0,
    )
    .expect("anonymous mmap on the model")
}

/// Bytes of host memory available (MemAvailable), or `u64::MAX` if unknown.
fn host_available() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb * 1024)
}

fn write_file(path: &Path, bytes: u64) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = File::create(path)?;
    let chunk: Vec<u8> = (0..MIB).map(|i| (i * 7 + 1) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(MIB);
        f.write_all(&chunk[..n as usize])?;
        left -= n;
    }
    f.flush()
}

/// Reads the whole file through the model once, so that its pages are in the model's
/// page cache.
fn warm_model_cache(k: &mut Kernel, path: &Path) {
    let p = k.spawn().expect("spawn");
    let fd = k.open(p, path, O_RDONLY, 0).expect("open on the model");
    while !k
        .read(p, fd, MIB as usize)
        .expect("read on the model")
        .is_empty()
    {}
    k.exit(p).expect("exit");
}

// ---- rows -------------------------------------------------------------------------------

/// Random u64 loads over a resident region of `bytes`, in ns per load: the model one
/// `Kernel::load_u64` call at a time, the model in trace batches (`Kernel::access_batch`),
/// and native loads.
fn loads(s: &Sizes, bytes: u64) -> (f64, f64, f64) {
    let mut k = boot(bytes + bytes / 8 + 8 * MIB);
    let p = k.spawn().expect("spawn");
    let va = anon(&mut k, p, bytes, MAP_POPULATE);
    let idx = indices(bytes / 8, s.loads);
    let native: Vec<u64> = (0..bytes / 8).collect();
    let batch: Vec<TraceAccess> = idx
        .iter()
        .map(|&i| TraceAccess::read(va.add(i * 8), 8))
        .collect();
    let mut values = vec![0u64; batch.len()];
    let k = std::cell::RefCell::new(k);
    let mut single = || {
        let mut k = k.borrow_mut();
        let t = Instant::now();
        let mut sum = 0u64;
        for &i in &idx {
            sum = sum.wrapping_add(k.load_u64(p, va.add(i * 8)).expect("load"));
        }
        black_box(sum);
        t.elapsed()
    };
    let mut batched = || {
        let mut k = k.borrow_mut();
        let t = Instant::now();
        k.access_batch(p, &batch, &mut values).expect("load");
        black_box(&values);
        t.elapsed()
    };
    let mut real = || {
        let t = Instant::now();
        let v = black_box(&native);
        let mut sum = 0u64;
        for &i in &idx {
            sum = sum.wrapping_add(v[i as usize]);
        }
        black_box(sum);
        t.elapsed()
    };
    let [m, mb, r] = best(s.reps, [&mut single, &mut batched, &mut real]);
    let n = s.loads as f64;
    (m * 1e9 / n, mb * 1e9 / n, r * 1e9 / n)
}

fn tlb_hit(s: &Sizes) -> Row {
    let (m, mb, r) = loads(s, MIB);
    Row {
        id: "load_tlb_hit",
        measure: "u64 loads, 1 MiB resident (TLB hits)".into(),
        unit: "ns/load",
        model: m,
        real: Some(r),
        target: "<= 4x".into(),
        met: Some(m <= 4.0 * r),
        extra: vec![("model_batch_ns_per_load", mb)],
    }
}

fn page_walk(s: &Sizes) -> Vec<Row> {
    let (m, mb, r) = loads(s, s.walk_bytes);
    let rate = |ns: f64| 1e3 / ns;
    let mib = s.walk_bytes / MIB;
    vec![
        Row {
            id: "load_page_walk",
            measure: format!("u64 loads, {mib} MiB resident (TLB misses)"),
            unit: "M loads/s",
            model: rate(mb),
            real: Some(rate(r)),
            target: ">= 20 M/s".into(),
            met: Some(rate(mb) >= 20.0),
            extra: vec![("model_ns_per_load", mb), ("real_ns_per_load", r)],
        },
        Row {
            id: "load_page_walk_single",
            measure: "  same, one load_u64 call per load".into(),
            unit: "M loads/s",
            model: rate(m),
            real: Some(rate(r)),
            target: "(report)".into(),
            met: None,
            extra: vec![("model_ns_per_load", m)],
        },
    ]
}

fn anon_fault(s: &Sizes) -> Row {
    let pages = s.fault_pages;
    let bytes = pages * PAGE_SIZE;
    let mut k = boot(bytes + bytes / 8 + 8 * MIB);
    let p = k.spawn().expect("spawn");
    // The first run gets frames never used since boot, which are known to be zero; later
    // runs get the frames the previous run unmapped, which are cleared at allocation.
    let mut runs = Vec::new();
    let mut model = || {
        let va = anon(&mut k, p, bytes, 0);
        let t = Instant::now();
        for i in 0..pages {
            k.store_u8(p, va.add(i * PAGE_SIZE), 1).expect("store");
        }
        let d = t.elapsed();
        k.munmap(p, va, bytes).expect("munmap");
        runs.push(d.as_secs_f64());
        d
    };
    let mut real = || {
        let mut m = memmap2::MmapMut::map_anon(bytes as usize).expect("anonymous mmap");
        let t = Instant::now();
        for i in 0..pages as usize {
            m[i * PAGE_SIZE as usize] = 1;
        }
        black_box(&mut m);
        let d = t.elapsed();
        drop(m);
        d
    };
    let [m, r] = best(s.reps, [&mut model, &mut real]);
    let (m, r) = (m * 1e9 / pages as f64, r * 1e9 / pages as f64);
    let recycled = runs.iter().skip(1).fold(f64::INFINITY, |a, &b| a.min(b)) * 1e9 / pages as f64;
    Row {
        id: "anon_first_touch",
        measure: format!("first touch, anonymous ({pages} pages)"),
        unit: "ns/page",
        model: m,
        real: Some(r),
        target: "<= 0.25x".into(),
        met: Some(m <= 0.25 * r),
        extra: vec![("model_recycled_frames_ns_per_page", recycled)],
    }
}

fn file_fault(s: &Sizes, dir: &Path) -> std::io::Result<Row> {
    let pages = s.file_pages;
    let bytes = pages * PAGE_SIZE;
    let path = dir.join("cached");
    write_file(&path, bytes)?;
    black_box(std::fs::read(&path)?.len());
    let mut k = boot(bytes + 16 * MIB);
    warm_model_cache(&mut k, &path);
    let file = File::open(&path)?;
    let mut model = || {
        let p = k.spawn().expect("spawn");
        let fd = k.open(p, &path, O_RDONLY, 0).expect("open");
        let va = k
            .mmap(p, VirtAddr(0), bytes, PROT_READ, MAP_SHARED, fd, 0)
            .expect("mmap");
        let t = Instant::now();
        let mut sum = 0u64;
        for i in 0..pages {
            sum += k.load_u8(p, va.add(i * PAGE_SIZE)).expect("load") as u64;
        }
        black_box(sum);
        let d = t.elapsed();
        k.exit(p).expect("exit");
        d
    };
    let mut real = || {
        // SAFETY: the file is a private temporary that nothing truncates or writes while
        // it is mapped.
        let m = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
        let t = Instant::now();
        let mut sum = 0u64;
        for i in 0..pages as usize {
            sum += black_box(&m[..])[i * PAGE_SIZE as usize] as u64;
        }
        black_box(sum);
        let d = t.elapsed();
        drop(m);
        d
    };
    let [m, r] = best(s.reps, [&mut model, &mut real]);
    let (m, r) = (m * 1e9 / pages as f64, r * 1e9 / pages as f64);
    Ok(Row {
        id: "file_read_fault",
        measure: format!("read faults, cached file ({pages} pages)"),
        unit: "ns/page",
        model: m,
        real: Some(r),
        target: "<= 1x".into(),
        met: Some(m <= r),
        extra: vec![],
    })
}

fn scan(s: &Sizes, dir: &Path) -> std::io::Result<Vec<Row>> {
    // The model's RAM holds the whole file in its page cache; stay within what the host
    // has (half of MemAvailable, the file written by the host takes its page cache too).
    let slack = 32 * MIB;
    let cap = (host_available() / 2).max(64 * MIB);
    let bytes = s.scan_bytes.min(cap.saturating_sub(slack)) / MIB * MIB;
    let path = dir.join("scan");
    write_file(&path, bytes)?;
    black_box(std::fs::read(&path)?.len());
    let mut k = boot(bytes + slack);
    warm_model_cache(&mut k, &path);
    let file = File::open(&path)?;
    let mut buf = vec![0u8; MIB as usize];
    let buf = std::cell::RefCell::new(&mut buf);
    let mut model = || {
        let p = k.spawn().expect("spawn");
        let fd = k.open(p, &path, O_RDONLY, 0).expect("open");
        let va = k
            .mmap(p, VirtAddr(0), bytes, PROT_READ, MAP_SHARED, fd, 0)
            .expect("mmap");
        let mut b = buf.borrow_mut();
        let t = Instant::now();
        let mut off = 0;
        while off < bytes {
            k.load(p, va.add(off), &mut b[..]).expect("load");
            black_box(&mut b[..]);
            off += MIB;
        }
        let d = t.elapsed();
        k.exit(p).expect("exit");
        d
    };
    let mut mapped = || {
        // SAFETY: the file is a private temporary that nothing truncates or writes while
        // it is mapped.
        let m = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
        let mut b = buf.borrow_mut();
        let t = Instant::now();
        for c in m.chunks(MIB as usize) {
            b[..c.len()].copy_from_slice(c);
            black_box(&mut b[..]);
        }
        let d = t.elapsed();
        drop(m);
        d
    };
    let mut read = || {
        let mut f = File::open(&path).expect("open");
        let mut b = buf.borrow_mut();
        let t = Instant::now();
        while f.read(&mut b[..]).expect("read") > 0 {
            black_box(&mut b[..]);
        }
        t.elapsed()
    };
    let [m, r, rd] = best(s.reps, [&mut model, &mut mapped, &mut read]);
    let mbs = |secs: f64| bytes as f64 / secs / 1e6;
    let (m, r, rd) = (mbs(m), mbs(r), mbs(rd));
    let mib = bytes / MIB;
    Ok(vec![
        Row {
            id: "scan_mmap",
            measure: format!("sequential scan, {mib} MiB file (mmap)"),
            unit: "MB/s",
            model: m,
            real: Some(r),
            target: ">= 0.4x".into(),
            met: Some(m >= 0.4 * r),
            extra: vec![("read_mb_s", rd)],
        },
        Row {
            id: "scan_read",
            measure: format!("  same, real side read() ({mib} MiB)"),
            unit: "MB/s",
            model: m,
            real: Some(rd),
            target: "(report)".into(),
            met: None,
            extra: vec![],
        },
    ])
}

fn fork_cow(s: &Sizes) -> std::io::Result<Row> {
    let bytes = s.fork_bytes;
    let pages = bytes / PAGE_SIZE;
    let mut k = boot(2 * bytes + bytes / 4 + 16 * MIB);
    let mut model = || {
        let p = k.spawn().expect("spawn");
        let va = anon(&mut k, p, bytes, 0);
        for i in 0..pages {
            k.store_u8(p, va.add(i * PAGE_SIZE), 1).expect("store");
        }
        let t = Instant::now();
        let c = k.fork(p).expect("fork");
        for i in 0..pages {
            k.store_u8(c, va.add(i * PAGE_SIZE), 2).expect("store");
        }
        k.exit(c).expect("exit");
        let d = t.elapsed();
        k.exit(p).expect("exit");
        d
    };
    let mut real = || {
        let mut m = memmap2::MmapMut::map_anon(bytes as usize).expect("anonymous mmap");
        for i in 0..pages as usize {
            m[i * PAGE_SIZE as usize] = 1;
        }
        let base = m.as_mut_ptr();
        let t = Instant::now();
        // SAFETY: `vmem bench` runs on the main thread and starts no other; the child only
        // writes to memory it inherited and calls _exit, both async-signal-safe.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            for i in 0..pages as usize {
                // SAFETY: `base` points to a live mapping of `bytes` bytes, inherited
                // copy-on-write; `i * PAGE_SIZE < bytes`.
                unsafe { std::ptr::write_volatile(base.add(i * PAGE_SIZE as usize), 2) };
            }
            // SAFETY: _exit ends the child without running the parent's destructors or
            // atexit handlers.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid place for its exit status.
        let w = unsafe { libc::waitpid(pid, &mut status, 0) };
        let d = t.elapsed();
        assert_eq!(w, pid, "waitpid: {}", std::io::Error::last_os_error());
        black_box(&mut m);
        drop(m);
        d
    };
    let [m, r] = best(s.reps, [&mut model, &mut real]);
    let (m, r) = (m * 1e3, r * 1e3);
    Ok(Row {
        id: "fork_cow",
        measure: format!("fork, {} MiB touched, then 1 write/page", bytes / MIB),
        unit: "ms",
        model: m,
        real: Some(r),
        target: "<= 1x".into(),
        met: Some(m <= r),
        extra: vec![],
    })
}

fn overhead() -> Vec<Row> {
    let frame = std::mem::size_of::<vmem::hw::phys::FrameMeta>() as f64;
    let vma = (std::mem::size_of::<vmem::mm::vma::Vma>() + std::mem::size_of::<u64>()) as f64;
    vec![
        Row {
            id: "frame_meta_bytes",
            measure: "metadata per 4 KiB frame (real: struct page)".into(),
            unit: "B",
            model: frame,
            real: Some(64.0),
            target: "<= 41 B (1%)".into(),
            met: Some(frame <= 0.01 * PAGE_SIZE as f64),
            extra: vec![],
        },
        Row {
            id: "vma_bytes",
            measure: "bytes per VMA (Vma + BTreeMap key)".into(),
            unit: "B",
            model: vma,
            real: None,
            target: "<= 256 B".into(),
            met: Some(vma <= 256.0),
            extra: vec![],
        },
    ]
}
