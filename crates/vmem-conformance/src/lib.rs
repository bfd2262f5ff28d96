//! # vmem-conformance — the model against the real kernel
//!
//! A [`Scenario`] is a list of files and a sequence of [`Op`]s (syscalls, loads, stores,
//! layout snapshots) over a fixed address window. [`run_model`] runs it on vmem's emulated
//! machine; [`Oracle`] runs it on the real Linux kernel, in a child of the single-threaded
//! `vmem-oracle` helper binary, probing each access in a forked grandchild so that a
//! SIGSEGV or SIGBUS is observed without ending the sequence. [`compare`] lists every
//! observable difference: return values and errno, the bytes each load returns, the signal
//! and `si_code` of each faulting access, the layout inside the window as `/proc/self/maps`
//! shows it, and the final contents of every file read back from disk.
//!
//! Addresses in ops are offsets from [`WINDOW_BASE`], an address range that nothing else
//! uses on either side, so that both sides place mappings at the same addresses.

use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use vmem::{Errno, MachineConfig, Signal};

pub mod model;
pub mod real;

/// Where every scenario's addresses live (32 TiB: far from the heap, stack and libraries).
pub const WINDOW_BASE: u64 = 0x2000_0000_0000;
/// Size of the window that must be free on the real side.
pub const WINDOW_LEN: u64 = 1 << 30;

/// Something a scenario opens.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The scenario's file number n (`f0`, `f1`, ...).
    File(u8),
    /// A file that does not exist.
    Missing,
    /// A directory.
    Dir,
    /// A FIFO.
    Fifo,
    /// `/dev/zero`.
    DevZero,
    /// `/dev/null`.
    DevNull,
}

/// An address argument to `mmap`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    /// NULL.
    Null,
    /// `WINDOW_BASE + offset`.
    Win(u64),
    /// An absolute address.
    Abs(u64),
}

/// One step of a scenario. `fd` fields are slots: the n-th successful `Open`; 255 is -1,
/// and a slot never opened is descriptor 999 (EBADF on both sides).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    Open {
        target: Target,
        flags: i32,
    },
    Close {
        fd: u8,
    },
    Read {
        fd: u8,
        len: u32,
    },
    Write {
        fd: u8,
        data: Vec<u8>,
    },
    Pread {
        fd: u8,
        len: u32,
        off: i64,
    },
    Pwrite {
        fd: u8,
        data: Vec<u8>,
        off: i64,
    },
    Lseek {
        fd: u8,
        off: i64,
        whence: i32,
    },
    Ftruncate {
        fd: u8,
        len: i64,
    },
    Fsync {
        fd: u8,
    },
    Mmap {
        addr: Addr,
        len: u64,
        prot: i32,
        flags: i32,
        fd: u8,
        off: i64,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: i32,
    },
    Msync {
        addr: u64,
        len: u64,
        flags: i32,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: i32,
    },
    Mremap {
        addr: u64,
        old_len: u64,
        new_len: u64,
        flags: i32,
        new_addr: u64,
    },
    Mincore {
        addr: u64,
        len: u64,
    },
    Load {
        addr: u64,
        len: u8,
    },
    Store {
        addr: u64,
        data: Vec<u8>,
    },
    /// The layout inside the window.
    Maps,
    /// `fork()` in process 0; the result is the new process's number (1, 2, ...).
    /// Only process 0 forks, and at most [`MAX_CHILDREN`] times.
    Fork,
    /// Later ops run in process `proc` (0 is the first process).
    Switch {
        proc: u8,
    },
    /// The current process (not 0) exits; process 0 becomes current.
    Exit,
}

/// Most children a scenario may fork.
pub const MAX_CHILDREN: usize = 3;

/// The outcome for a process op the harness refuses (the same on both sides).
pub(crate) fn harness_refusal(what: &str) -> Outcome {
    Outcome::Err(format!("harness: {what}"))
}

/// What one op did, as a program observes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A successful call's value (an fd slot for `Open`).
    Val(i64),
    /// A mapping address: the window offset, or `None` when outside the window.
    Mapped(Option<u64>),
    /// A failed call's errno name.
    Err(String),
    /// Bytes returned (read, pread, load, mincore).
    Bytes(Vec<u8>),
    /// A signal raised by an access: name, `si_code` name, window offset of `si_addr`.
    Signal {
        /// "SIGSEGV" or "SIGBUS".
        sig: String,
        /// "SEGV_MAPERR", "SEGV_ACCERR", "BUS_ADRERR", ...
        code: String,
        /// `si_addr - WINDOW_BASE`.
        addr: i64,
    },
    /// The layout inside the window.
    Maps(Vec<MapLine>),
}

/// One `/proc/self/maps` line inside the window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MapLine {
    /// Window offset of the start.
    pub start: u64,
    /// Window offset of the end.
    pub end: u64,
    /// `rw-p` etc.
    pub perms: String,
    /// File offset.
    pub offset: u64,
    /// `f0`, `anon`, `/dev/zero (deleted)`, ...
    pub backing: String,
}

/// A sequence to run on both sides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Scenario {
    /// Initial contents of `f0`, `f1`, ...
    pub files: Vec<Vec<u8>>,
    /// The steps.
    pub ops: Vec<Op>,
    /// Run loads and stores directly instead of probing them in a forked child, so that
    /// fault counters see them (the scenario must not fault with a signal).
    pub direct: bool,
}

/// Everything observed from one run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct Report {
    /// One outcome per op.
    pub outcomes: Vec<Outcome>,
    /// Minor and major page faults counted during each op.
    pub faults: Vec<(u64, u64)>,
    /// Final contents of each file, read back after the process ended.
    pub files: Vec<Vec<u8>>,
    /// Set when the run could not finish (the real child died, say).
    pub error: Option<String>,
}

/// Creates the scenario's files (and the directory, FIFO) in `dir`.
pub fn prepare_dir(sc: &Scenario, dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, f) in sc.files.iter().enumerate() {
        std::fs::write(dir.join(format!("f{i}")), f)?;
    }
    std::fs::create_dir_all(dir.join("subdir"))?;
    let fifo = dir.join("fifo");
    if !fifo.exists() {
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes())
            .map_err(io::Error::other)?;
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The path an `Open` target names inside `dir`.
pub fn target_path(dir: &Path, t: Target) -> PathBuf {
    match t {
        Target::File(n) => dir.join(format!("f{n}")),
        Target::Missing => dir.join("missing"),
        Target::Dir => dir.join("subdir"),
        Target::Fifo => dir.join("fifo"),
        Target::DevZero => PathBuf::from("/dev/zero"),
        Target::DevNull => PathBuf::from("/dev/null"),
    }
}

/// Parses `/proc/pid/maps` text, keeping the lines inside the window; `dir` prefixes are
/// stripped from paths so both sides name files alike.
pub fn parse_maps(text: &str, dir: &Path) -> Vec<MapLine> {
    let dir = dir.display().to_string();
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(range), Some(perms), Some(off)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let _dev = it.next();
        let _ino = it.next();
        let path: Vec<&str> = it.collect();
        let path = path.join(" ");
        let Some((s, e)) = range.split_once('-') else {
            continue;
        };
        let (Ok(s), Ok(e), Ok(off)) = (
            u64::from_str_radix(s, 16),
            u64::from_str_radix(e, 16),
            u64::from_str_radix(off, 16),
        ) else {
            continue;
        };
        if e <= WINDOW_BASE || s >= WINDOW_BASE + WINDOW_LEN {
            continue;
        }
        let backing = if path.is_empty() {
            "anon".to_string()
        } else if let Some(rest) = path.strip_prefix(&dir) {
            rest.trim_start_matches('/').to_string()
        } else {
            path
        };
        out.push(MapLine {
            start: s - WINDOW_BASE,
            end: e - WINDOW_BASE,
            perms: perms.to_string(),
            offset: off,
            backing,
        });
    }
    out
}

/// The errno name for a raw Linux errno.
pub fn errno_name(n: i32) -> String {
    Errno::from_raw(n).map_or_else(|| format!("errno {n}"), |e| e.name().to_string())
}

/// A difference between the model and the kernel.
#[derive(Clone, Debug)]
pub struct Divergence {
    /// Index of the op (or `None` for final file contents).
    pub op: Option<usize>,
    /// What differed.
    pub what: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.op {
            Some(i) => write!(f, "op {i}: {}", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

/// Every observable difference between `model` and `real` runs of `sc`.
pub fn compare(sc: &Scenario, model: &Report, real: &Report) -> Vec<Divergence> {
    let mut d = Vec::new();
    if let Some(e) = &real.error {
        d.push(Divergence {
            op: None,
            what: format!("real side failed: {e}"),
        });
    }
    if let Some(e) = &model.error {
        d.push(Divergence {
            op: None,
            what: format!("model side failed: {e}"),
        });
    }
    for (i, op) in sc.ops.iter().enumerate() {
        let (m, r) = (model.outcomes.get(i), real.outcomes.get(i));
        if m != r {
            d.push(Divergence {
                op: Some(i),
                what: format!("{op:?}\n    model: {m:?}\n    linux: {r:?}"),
            });
        }
    }
    for (i, (m, r)) in model.files.iter().zip(&real.files).enumerate() {
        if m != r {
            let first = m
                .iter()
                .zip(r)
                .position(|(a, b)| a != b)
                .unwrap_or(m.len().min(r.len()));
            d.push(Divergence {
                op: None,
                what: format!(
                    "file f{i}: model {} bytes, linux {} bytes, first difference at {first}",
                    m.len(),
                    r.len()
                ),
            });
        }
    }
    if model.files.len() != real.files.len() {
        d.push(Divergence {
            op: None,
            what: "different number of files".into(),
        });
    }
    d
}

/// Renders a scenario as a readable numbered listing a developer can replay.
pub fn render(sc: &Scenario) -> String {
    let mut s = String::new();
    for (i, f) in sc.files.iter().enumerate() {
        s.push_str(&format!("file f{i}: {} bytes\n", f.len()));
    }
    for (i, op) in sc.ops.iter().enumerate() {
        s.push_str(&format!("{i:3}: {op:?}\n"));
    }
    s
}

/// Runs `sc` on the emulated machine with its files in `dir`.
pub fn run_model(sc: &Scenario, dir: &Path, cfg: MachineConfig) -> Report {
    model::run(sc, dir, cfg)
}

/// The real-kernel side: a running `vmem-oracle` process.
#[derive(Debug)]
pub struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

#[derive(Serialize, Deserialize)]
struct Request {
    scenario: Scenario,
    dir: PathBuf,
}

impl Oracle {
    /// Starts the oracle binary at `exe`.
    pub fn spawn(exe: &Path) -> io::Result<Oracle> {
        let mut child = Command::new(exe)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| io::Error::other("no stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| io::Error::other("no stdout"))?,
        );
        Ok(Oracle {
            child,
            stdin,
            stdout,
        })
    }

    /// Runs `sc` on the real kernel with its files in `dir` (prepared by the caller).
    pub fn run(&mut self, sc: &Scenario, dir: &Path) -> io::Result<Report> {
        let req = Request {
            scenario: sc.clone(),
            dir: dir.to_path_buf(),
        };
        serde_json::to_writer(&mut self.stdin, &req).map_err(io::Error::other)?;
        self.stdin.write_all(b"\n")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(io::Error::other("oracle exited"));
        }
        serde_json::from_str(&line).map_err(io::Error::other)
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one request on the real side (the oracle binary's loop body).
pub fn oracle_serve_line(line: &str) -> String {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            let rep = Report {
                error: Some(format!("bad request: {e}")),
                ..Default::default()
            };
            return serde_json::to_string(&rep).unwrap_or_default();
        }
    };
    let rep = real::run(&req.scenario, &req.dir);
    serde_json::to_string(&rep).unwrap_or_default()
}

/// Runs a scenario on both sides in fresh directories under `root` and compares.
pub fn run_both(
    oracle: &mut Oracle,
    sc: &Scenario,
    root: &Path,
    cfg: MachineConfig,
) -> io::Result<(Report, Report, Vec<Divergence>)> {
    let mdir = root.join("model");
    let rdir = root.join("linux");
    let _ = std::fs::remove_dir_all(&mdir);
    let _ = std::fs::remove_dir_all(&rdir);
    prepare_dir(sc, &mdir)?;
    prepare_dir(sc, &rdir)?;
    let real = oracle.run(sc, &rdir)?;
    let model = run_model(sc, &mdir, cfg);
    let d = compare(sc, &model, &real);
    Ok((model, real, d))
}

/// Shared helpers for turning signals into outcomes.
pub(crate) fn signal_outcome(s: &Signal) -> Outcome {
    let (sig, code) = match s {
        Signal::Segv { .. } => ("SIGSEGV", s.code_name()),
        Signal::Bus { .. } => ("SIGBUS", s.code_name()),
        Signal::OomKill { .. } => ("SIGKILL", "OOM"),
    };
    Outcome::Signal {
        sig: sig.into(),
        code: code.into(),
        addr: s.addr().0 as i64 - WINDOW_BASE as i64,
    }
}

/// Marks a slot closed, so that later uses get EBADF on both sides even if the real
/// process reuses the number for the harness's own pipes.
pub(crate) fn close_slot(fds: &mut [i32], slot: u8) {
    if let Some(f) = fds.get_mut(slot as usize) {
        *f = 999;
    }
}

/// The descriptor number for `slot` given the opened descriptors.
pub(crate) fn slot_fd(fds: &[i32], slot: u8) -> i32 {
    if slot == 255 {
        -1
    } else {
        fds.get(slot as usize).copied().unwrap_or(999)
    }
}

/// The read-ahead window of the block device holding `path`, in pages, as the running
/// kernel uses it for mmap read-around (`/sys/dev/block/MAJ:MIN/queue/read_ahead_kb`).
pub fn host_read_ahead_pages(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let base = PathBuf::from(format!("/sys/dev/block/{maj}:{min}"));
    for q in [
        base.join("queue/read_ahead_kb"),
        base.join("../queue/read_ahead_kb"),
    ] {
        if let Ok(s) = std::fs::read_to_string(&q) {
            if let Ok(kb) = s.trim().parse::<u64>() {
                return Some(kb / 4);
            }
        }
    }
    None
}

/// The machine configuration that mirrors the host's tunables for `dir`'s filesystem.
pub fn host_like_config(dir: &Path) -> MachineConfig {
    let mut cfg = MachineConfig::default();
    if let Some(ra) = host_read_ahead_pages(dir) {
        cfg.read_around_pages = ra;
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/vm/mmap_min_addr") {
        if let Ok(v) = s.trim().parse::<u64>() {
            // The effective floor is the larger of the sysctl and CONFIG_LSM_MMAP_MIN_ADDR
            // (65536 on this kernel), which only shows in behaviour.
            cfg.mmap_min_addr = v.max(65536);
        }
    }
    cfg
}
