//! Helpers shared by the behaviour tests: patterned files, timeouts, child processes.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vmem_uffd::{Delivery, Store};

/// Both deliveries, the default first.
pub const DELIVERIES: [Delivery; 2] = [Delivery::Signal, Delivery::Threads];

/// Deterministic bytes that differ from page to page and within a page.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8 ^ (i >> 12) as u8)
        .collect()
}

/// A temporary file holding `bytes`.
pub fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(bytes).expect("write temp file");
    f.flush().unwrap();
    f
}

/// A small deterministic generator (xorshift).
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs `f` in a thread; panics if it does not finish within `secs` (a hang is a failure,
/// not a stuck test run).
pub fn with_timeout<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => t.join().expect("test thread panicked"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("timed out after {secs} s (hang)"),
    }
}

const CHILD_ENV: &str = "VMEM_UFFD_TEST_CHILD";

/// In a child started by [`run_child`], the scenario it was asked to run.
pub fn child_scenario() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

/// Called first thing in a child that expects to die: no core dump.
pub fn no_core_dumps() {
    let lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads one rlimit structure.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lim) };
}

/// What a child process did.
#[derive(Debug)]
pub struct ChildResult {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ChildResult {
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
    pub fn assert_killed_by(&self, sig: i32, what: &str) {
        assert_eq!(
            self.signal(),
            Some(sig),
            "{what}: expected death by signal {sig}, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
    pub fn assert_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: child failed: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs this test binary again, running only `test` with `scenario` in the environment,
/// and waits at most `secs` seconds (then kills it and panics).
pub fn run_child(test: &str, scenario: &str, secs: u64) -> ChildResult {
    let mut child = spawn_child(test, scenario);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stdout = String::new();
            let mut stderr = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .ok();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .ok();
            return ChildResult {
                status,
                stdout,
                stderr,
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child {test}/{scenario} timed out after {secs} s (hang)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts this test binary running only `test` with `scenario` (stdout and stderr piped).
pub fn spawn_child(test: &str, scenario: &str) -> std::process::Child {
    spawn_child_env(test, scenario, &[])
}

/// Like [`spawn_child`], with more environment variables.
pub fn spawn_child_env(test: &str, scenario: &str, env: &[(&str, &str)]) -> std::process::Child {
    Command::new(std::env::current_exe().expect("current exe"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// A store wrapper whose behaviour the tests choose.
pub struct Hostile<S> {
    pub inner: S,
    /// Sleep this long in every read.
    pub delay: Duration,
    /// Return at most this many bytes per read (0: no limit).
    pub max_read: usize,
    /// Fail reads touching these page indices (of `page` bytes).
    pub bad_pages: Vec<u64>,
    pub page: u64,
    /// Return `Interrupted` every n-th read (0: never).
    pub interrupt_every: u64,
    /// Claim end of data (Ok(0)) at this offset while `len` says more.
    pub lie_eof_at: Option<u64>,
    /// Fail every read.
    pub fail_reads: std::sync::atomic::AtomicBool,
    /// Fail writes.
    pub fail_writes: std::sync::atomic::AtomicBool,
    pub reads: std::sync::atomic::AtomicU64,
}

impl<S: Store> Hostile<S> {
    pub fn new(inner: S) -> Self {
        Hostile {
            inner,
            delay: Duration::ZERO,
            max_read: 0,
            bad_pages: Vec::new(),
            page: 4096,
            interrupt_every: 0,
            lie_eof_at: None,
            fail_reads: std::sync::atomic::AtomicBool::new(false),
            fail_writes: std::sync::atomic::AtomicBool::new(false),
            reads: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl<S: Store> Store for Hostile<S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::sync::atomic::Ordering;
        let n = self.reads.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.interrupt_every != 0 && n % self.interrupt_every == 0 {
            return Err(io::ErrorKind::Interrupted.into());
        }
        if self.fail_reads.load(Ordering::Relaxed) {
            return Err(io::Error::other("injected read error"));
        }
        let first = offset / self.page;
        let last = (offset + buf.len().max(1) as u64 - 1) / self.page;
        if self.bad_pages.iter().any(|p| (first..=last).contains(p)) {
            return Err(io::Error::other("injected read error"));
        }
        let mut len = buf.len();
        if self.max_read != 0 {
            len = len.min(self.max_read);
        }
        if let Some(eof) = self.lie_eof_at {
            if offset >= eof {
                return Ok(0);
            }
            len = len.min((eof - offset) as usize);
        }
        self.inner.read_at(&mut buf[..len], offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.fail_writes.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::other("injected write error"));
        }
        self.inner.write_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}
