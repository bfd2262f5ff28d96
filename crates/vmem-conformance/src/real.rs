//! The real side: a scenario run on the running Linux kernel.
//!
//! [`run`] is called inside the single-threaded `vmem-oracle` process. It drops the
//! scenario's files from the page cache (so that the first touch is a major fault on both
//! sides), forks a child that runs the ops with raw libc calls and streams one JSON line
//! per op back through a pipe, and then reads the files back. Unless the scenario is
//! `direct`, each load or store is first tried in a forked grandchild whose SIGSEGV/SIGBUS
//! handler reports `si_code` and `si_addr`; only an access that succeeded there is repeated
//! (stores) in the child, so a faulting access never ends the sequence.

use crate::model::in_window;
use crate::*;
use std::ffi::CString;
use std::io::Read as _;
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn ret(r: i64) -> Outcome {
    if r < 0 {
        Outcome::Err(errno_name(errno()))
    } else {
        Outcome::Val(r)
    }
}

fn w(off: u64) -> *mut libc::c_void {
    WINDOW_BASE.wrapping_add(off) as *mut libc::c_void
}

/// Drops the clean pages of `path` from the page cache.
fn drop_from_cache(path: &Path) {
    let c = cpath(path);
    // SAFETY: plain syscalls on a descriptor this function owns.
    unsafe {
        let fd = libc::open(c.as_ptr(), libc::O_RDONLY);
        if fd >= 0 {
            libc::fdatasync(fd);
            libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_DONTNEED);
            libc::close(fd);
        }
    }
}

/// Runs `sc` on the real kernel with its files in `dir`.
pub fn run(sc: &Scenario, dir: &Path) -> Report {
    for i in 0..sc.files.len() {
        drop_from_cache(&dir.join(format!("f{i}")));
    }
    let mut pipe = [0i32; 2];
    // SAFETY: `pipe` has room for the two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return Report {
            error: Some(format!("pipe: {}", io::Error::last_os_error())),
            ..Default::default()
        };
    }
    // SAFETY: the oracle is single-threaded, so the child may run ordinary Rust code.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: closing our copy of the read end.
        unsafe { libc::close(pipe[0]) };
        child_main(sc, dir, pipe[1]);
        // SAFETY: leave without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: closing our copy of the write end.
    unsafe { libc::close(pipe[1]) };
    let mut rep = Report::default();
    if pid < 0 {
        rep.error = Some(format!("fork: {}", io::Error::last_os_error()));
        return rep;
    }
    // SAFETY: pipe[0] is an open descriptor that the File now owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(pipe[0]) };
    let mut text = String::new();
    let _ = f.read_to_string(&mut text);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    for line in text.lines() {
        match serde_json::from_str::<(Outcome, (u64, u64))>(line) {
            Ok((o, fl)) => {
                rep.outcomes.push(o);
                rep.faults.push(fl);
            }
            Err(e) => rep.error = Some(format!("bad line from child: {e}: {line}")),
        }
    }
    if libc::WIFSIGNALED(status) {
        rep.error = Some(format!(
            "child killed by signal {} after {} ops",
            libc::WTERMSIG(status),
            rep.outcomes.len()
        ));
    } else if rep.outcomes.len() != sc.ops.len() && rep.error.is_none() {
        rep.error = Some(format!(
            "child reported {} of {} ops",
            rep.outcomes.len(),
            sc.ops.len()
        ));
    }
    for i in 0..sc.files.len() {
        rep.files
            .push(std::fs::read(dir.join(format!("f{i}"))).unwrap_or_default());
    }
    rep
}

fn rusage() -> (u64, u64) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        (ru.ru_minflt as u64, ru.ru_majflt as u64)
    }
}

fn child_main(sc: &Scenario, dir: &Path, out: i32) {
    // SAFETY: `out` is our open write end; the File owns it from here.
    let mut out = unsafe { std::fs::File::from_raw_fd(out) };
    // The window must be free.
    // SAFETY: a PROT_NONE probe mapping with MAP_FIXED_NOREPLACE never replaces anything.
    let probe = unsafe {
        libc::mmap(
            w(0),
            WINDOW_LEN as usize,
            libc::PROT_NONE,
            libc::MAP_PRIVATE
                | libc::MAP_ANONYMOUS
                | libc::MAP_FIXED_NOREPLACE
                | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if probe != w(0) {
        return;
    }
    // SAFETY: unmapping the probe mapping we just made.
    unsafe { libc::munmap(probe, WINDOW_LEN as usize) };
    prefault_stack();
    let mut fds: Vec<i32> = Vec::with_capacity(64);
    warm_up(sc, dir, &mut fds);
    for op in &sc.ops {
        let before = rusage();
        let (o, after) = match op {
            // Direct loads go into a stack buffer so that no heap growth is counted.
            Op::Load { addr, len } if sc.direct => {
                let mut buf = [0u8; 256];
                let p = WINDOW_BASE.wrapping_add(*addr) as *const u8;
                for (i, b) in buf.iter_mut().take(*len as usize).enumerate() {
                    // SAFETY: a direct scenario promises its loads do not fault.
                    *b = unsafe { std::ptr::read_volatile(p.add(i)) };
                }
                let after = rusage();
                (Outcome::Bytes(buf[..*len as usize].to_vec()), after)
            }
            _ => {
                let o = step(sc, dir, &mut fds, op);
                (o, rusage())
            }
        };
        let line = serde_json::to_string(&(o, (after.0 - before.0, after.1 - before.1)))
            .unwrap_or_default();
        if out.write_all(line.as_bytes()).is_err() || out.write_all(b"\n").is_err() {
            return;
        }
    }
}

/// Runs the measured code paths once on a scratch page outside the window, so that the
/// first real op does not also pay for faulting in this binary's text.
fn warm_up(sc: &Scenario, dir: &Path, fds: &mut Vec<i32>) {
    // SAFETY: a fresh private anonymous page, unmapped again below.
    let scratch = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if scratch == libc::MAP_FAILED {
        return;
    }
    let off = (scratch as u64).wrapping_sub(WINDOW_BASE);
    let direct = Scenario {
        direct: true,
        ..Default::default()
    };
    let _ = step(
        &direct,
        dir,
        fds,
        &Op::Store {
            addr: off,
            data: vec![1],
        },
    );
    let _ = rusage();
    let p = scratch as *const u8;
    // SAFETY: the scratch page is mapped and readable.
    std::hint::black_box(unsafe { std::ptr::read_volatile(p) });
    let _ = sc;
    // SAFETY: unmapping the scratch page.
    unsafe { libc::munmap(scratch, 4096) };
}

/// Touches the next 256 KiB of stack so that stack growth during an op (whose position
/// varies with ASLR) never adds a page fault to the op's count.
#[inline(never)]
fn prefault_stack() {
    let mut buf = [0u8; 256 * 1024];
    for i in (0..buf.len()).step_by(4096) {
        // SAFETY: `buf` is a live local array and `i` is in bounds.
        unsafe { std::ptr::write_volatile(buf.as_mut_ptr().add(i), 1) };
    }
    std::hint::black_box(&buf);
}

fn step(sc: &Scenario, dir: &Path, fds: &mut Vec<i32>, op: &Op) -> Outcome {
    // SAFETY: each arm makes one syscall with arguments that are either plain integers
    // or pointers to buffers owned by this frame and large enough for the length passed.
    // Memory inside the window is only touched by `load_direct`/`store_direct`.
    unsafe {
        match op {
            Op::Open { target, flags } => {
                let c = cpath(&target_path(dir, *target));
                let fd = libc::open(
                    c.as_ptr(),
                    *flags | (libc::O_NONBLOCK * ((*target == Target::Fifo) as i32)),
                    0o644,
                );
                if fd < 0 {
                    Outcome::Err(errno_name(errno()))
                } else {
                    fds.push(fd);
                    Outcome::Val(fds.len() as i64 - 1)
                }
            }
            Op::Close { fd } => ret(libc::close(slot_fd(fds, *fd)) as i64),
            Op::Read { fd, len } => {
                let mut buf = vec![0u8; *len as usize];
                let n = libc::read(slot_fd(fds, *fd), buf.as_mut_ptr().cast(), buf.len());
                if n < 0 {
                    Outcome::Err(errno_name(errno()))
                } else {
                    buf.truncate(n as usize);
                    Outcome::Bytes(buf)
                }
            }
            Op::Pread { fd, len, off } => {
                let mut buf = vec![0u8; *len as usize];
                let n = libc::pread(slot_fd(fds, *fd), buf.as_mut_ptr().cast(), buf.len(), *off);
                if n < 0 {
                    Outcome::Err(errno_name(errno()))
                } else {
                    buf.truncate(n as usize);
                    Outcome::Bytes(buf)
                }
            }
            Op::Write { fd, data } => {
                ret(libc::write(slot_fd(fds, *fd), data.as_ptr().cast(), data.len()) as i64)
            }
            Op::Pwrite { fd, data, off } => {
                ret(libc::pwrite(slot_fd(fds, *fd), data.as_ptr().cast(), data.len(), *off) as i64)
            }
            Op::Lseek { fd, off, whence } => ret(libc::lseek(slot_fd(fds, *fd), *off, *whence)),
            Op::Ftruncate { fd, len } => ret(libc::ftruncate(slot_fd(fds, *fd), *len) as i64),
            Op::Fsync { fd } => ret(libc::fsync(slot_fd(fds, *fd)) as i64),
            Op::Mmap {
                addr,
                len,
                prot,
                flags,
                fd,
                off,
            } => {
                let a = match addr {
                    Addr::Null => std::ptr::null_mut(),
                    Addr::Win(o) => w(*o),
                    Addr::Abs(a) => *a as *mut libc::c_void,
                };
                // Raw syscall: glibc's wrapper adds checks of its own.
                let r = libc::syscall(
                    libc::SYS_mmap,
                    a,
                    *len,
                    *prot,
                    *flags,
                    slot_fd(fds, *fd),
                    *off,
                );
                if r < 0 && r > -4096 {
                    Outcome::Err(errno_name(errno()))
                } else {
                    Outcome::Mapped(in_window(r as u64))
                }
            }
            Op::Munmap { addr, len } => ret(libc::syscall(libc::SYS_munmap, w(*addr), *len)),
            Op::Mprotect { addr, len, prot } => {
                ret(libc::syscall(libc::SYS_mprotect, w(*addr), *len, *prot))
            }
            Op::Msync { addr, len, flags } => {
                ret(libc::syscall(libc::SYS_msync, w(*addr), *len, *flags))
            }
            Op::Madvise { addr, len, advice } => {
                ret(libc::syscall(libc::SYS_madvise, w(*addr), *len, *advice))
            }
            Op::Mremap {
                addr,
                old_len,
                new_len,
                flags,
                new_addr,
            } => {
                let r = libc::syscall(
                    libc::SYS_mremap,
                    w(*addr),
                    *old_len,
                    *new_len,
                    *flags,
                    w(*new_addr),
                );
                if r < 0 && r > -4096 {
                    Outcome::Err(errno_name(errno()))
                } else {
                    Outcome::Mapped(in_window(r as u64))
                }
            }
            Op::Mincore { addr, len } => {
                // mincore counts a page only once its read has completed; let read-ahead
                // I/O started by earlier ops finish first.
                std::thread::sleep(std::time::Duration::from_millis(2));
                let pages = (*len).div_ceil(4096) as usize;
                let mut v = vec![0u8; pages.max(1)];
                let r = libc::syscall(libc::SYS_mincore, w(*addr), *len, v.as_mut_ptr());
                if r < 0 {
                    Outcome::Err(errno_name(errno()))
                } else {
                    v.truncate(pages);
                    Outcome::Bytes(v.into_iter().map(|b| b & 1).collect())
                }
            }
            Op::Load { addr, len } => {
                if sc.direct {
                    Outcome::Bytes(load_direct(*addr, *len as usize))
                } else {
                    let o = probe(*addr, *len as usize, None);
                    if matches!(o, Outcome::Bytes(_)) {
                        // Repeat it here so that its side effects (PTEs, the zero page,
                        // page-cache fills) happen in this process as in the model.
                        load_direct(*addr, *len as usize);
                    }
                    o
                }
            }
            Op::Store { addr, data } => {
                if sc.direct {
                    store_direct(*addr, data);
                    Outcome::Val(0)
                } else {
                    let o = probe(*addr, data.len(), Some(data));
                    if o == Outcome::Val(0) {
                        store_direct(*addr, data);
                    }
                    o
                }
            }
            Op::Maps => Outcome::Maps(parse_maps(
                &std::fs::read_to_string("/proc/self/maps").unwrap_or_default(),
                dir,
            )),
        }
    }
}

fn load_direct(addr: u64, len: usize) -> Vec<u8> {
    let p = WINDOW_BASE.wrapping_add(addr) as *const u8;
    // SAFETY: the caller (a direct scenario, or the probing grandchild) accepts that a bad
    // address raises a signal; the pointer is only read, byte by byte, as the model does.
    (0..len)
        .map(|i| unsafe { std::ptr::read_volatile(p.add(i)) })
        .collect()
}

fn store_direct(addr: u64, data: &[u8]) {
    let p = WINDOW_BASE.wrapping_add(addr) as *mut u8;
    for (i, b) in data.iter().enumerate() {
        // SAFETY: as in `load_direct`: a bad address raises a signal, which is the point.
        unsafe { std::ptr::write_volatile(p.add(i), *b) };
    }
}

static PROBE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo; write and _exit are async-signal-safe.
    unsafe {
        let rec: [u64; 3] = [sig as u64, (*info).si_code as u64, (*info).si_addr() as u64];
        libc::write(PROBE_FD.load(Ordering::Relaxed), rec.as_ptr().cast(), 24);
        libc::_exit(0);
    }
}

/// Tries an access in a forked grandchild and reports what happened.
fn probe(addr: u64, len: usize, store: Option<&[u8]>) -> Outcome {
    let mut pipe = [0i32; 2];
    // SAFETY: `pipe` has room for two descriptors.
    if unsafe { libc::pipe(pipe.as_mut_ptr()) } != 0 {
        return Outcome::Err("probe pipe".into());
    }
    // SAFETY: this process is single-threaded.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: in the grandchild: install the handlers, do the access, report, _exit.
        unsafe {
            libc::close(pipe[0]);
            PROBE_FD.store(pipe[1], Ordering::Relaxed);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_fault as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
            let mut msg = 0u64.to_le_bytes().to_vec();
            match store {
                Some(d) => store_direct(addr, d),
                None => msg.extend(load_direct(addr, len)),
            }
            libc::write(pipe[1], msg.as_ptr().cast(), msg.len());
            libc::_exit(0);
        }
    }
    // SAFETY: parent: close the write end, read everything, reap the grandchild.
    unsafe {
        libc::close(pipe[1]);
        let mut f = std::fs::File::from_raw_fd(pipe[0]);
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        if buf.len() < 8 {
            return Outcome::Err(format!("probe died (status {st})"));
        }
        let tag = u64::from_le_bytes(buf[..8].try_into().unwrap_or_default());
        if tag == 0 {
            return match store {
                Some(_) => Outcome::Val(0),
                None => Outcome::Bytes(buf[8..].to_vec()),
            };
        }
        let code = u64::from_le_bytes(buf[8..16].try_into().unwrap_or_default()) as i32;
        let a = u64::from_le_bytes(buf[16..24].try_into().unwrap_or_default());
        let (sig, code) = match (tag as i32, code) {
            (libc::SIGSEGV, 1) => ("SIGSEGV", "SEGV_MAPERR"),
            (libc::SIGSEGV, 2) => ("SIGSEGV", "SEGV_ACCERR"),
            (libc::SIGBUS, 2) => ("SIGBUS", "BUS_ADRERR"),
            (libc::SIGBUS, 3) => ("SIGBUS", "BUS_OBJERR"),
            (libc::SIGSEGV, _) => ("SIGSEGV", "other"),
            (libc::SIGBUS, _) => ("SIGBUS", "other"),
            _ => ("other", "other"),
        };
        Outcome::Signal {
            sig: sig.into(),
            code: code.into(),
            addr: a as i64 - WINDOW_BASE as i64,
        }
    }
}
