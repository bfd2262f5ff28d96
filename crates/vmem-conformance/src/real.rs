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
    install_fault_handler();
    prefault_stack();
    let mut fds: Vec<i32> = Vec::with_capacity(64);
    warm_up(dir, &mut fds);
    let mut kids: Vec<Kid> = Vec::new();
    let mut cur = 0usize;
    for op in &sc.ops {
        let (o, faults) = match op {
            Op::Fork => {
                if cur != 0 {
                    (harness_refusal("only process 0 forks"), (0, 0))
                } else if kids.len() >= MAX_CHILDREN {
                    (harness_refusal("too many processes"), (0, 0))
                } else {
                    let before = rusage();
                    let o = match spawn_kid(sc, dir, &fds) {
                        Ok(k) => {
                            kids.push(k);
                            Outcome::Val(kids.len() as i64)
                        }
                        Err(e) => Outcome::Err(errno_name(e.raw_os_error().unwrap_or(0))),
                    };
                    let after = rusage();
                    (o, (after.0 - before.0, after.1 - before.1))
                }
            }
            Op::Switch { proc } => {
                let p = *proc as usize;
                if p == 0 || kids.get(p - 1).is_some_and(|k| k.alive) {
                    cur = p;
                    (Outcome::Val(0), (0, 0))
                } else {
                    (harness_refusal("no such process"), (0, 0))
                }
            }
            Op::Exit => {
                if cur == 0 {
                    (harness_refusal("process 0 does not exit"), (0, 0))
                } else {
                    kids[cur - 1].exit();
                    cur = 0;
                    (Outcome::Val(0), (0, 0))
                }
            }
            _ if cur == 0 => measured_step(sc, dir, &mut fds, op),
            _ => kids[cur - 1].run(op),
        };
        let line = serde_json::to_string(&(o, faults)).unwrap_or_default();
        if out.write_all(line.as_bytes()).is_err() || out.write_all(b"\n").is_err() {
            break;
        }
    }
    for k in &mut kids {
        k.exit();
    }
}

/// Runs one op in this process, counting the page faults it takes.
fn measured_step(sc: &Scenario, dir: &Path, fds: &mut Vec<i32>, op: &Op) -> (Outcome, (u64, u64)) {
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
            let o = step(dir, fds, op);
            (o, rusage())
        }
    };
    (o, (after.0 - before.0, after.1 - before.1))
}

/// A forked process of the scenario, driven through a pair of pipes.
struct Kid {
    pid: i32,
    cmd: std::fs::File,
    res: std::io::BufReader<std::fs::File>,
    alive: bool,
}

impl Kid {
    fn run(&mut self, op: &Op) -> (Outcome, (u64, u64)) {
        let line = serde_json::to_string(op).unwrap_or_default();
        if self
            .cmd
            .write_all(line.as_bytes())
            .and_then(|_| self.cmd.write_all(b"\n"))
            .is_err()
        {
            return (harness_refusal("child gone"), (0, 0));
        }
        let mut reply = String::new();
        use std::io::BufRead as _;
        match self.res.read_line(&mut reply) {
            Ok(n) if n > 0 => {
                serde_json::from_str(&reply).unwrap_or((harness_refusal("bad reply"), (0, 0)))
            }
            _ => (harness_refusal("child died"), (0, 0)),
        }
    }

    fn exit(&mut self) {
        if !self.alive {
            return;
        }
        let _ = self.run(&Op::Exit);
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.pid, &mut st, 0) };
        self.alive = false;
    }
}

/// Forks a process that runs the ops it is sent, with a copy of the descriptor slots.
fn spawn_kid(sc: &Scenario, dir: &Path, fds: &[i32]) -> io::Result<Kid> {
    let mut cmd = [0i32; 2];
    let mut res = [0i32; 2];
    // SAFETY: each array has room for two descriptors.
    if unsafe { libc::pipe(cmd.as_mut_ptr()) } != 0 || unsafe { libc::pipe(res.as_mut_ptr()) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: this process is single-threaded.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: in the child: keep our ends, serve ops, leave without unwinding.
        unsafe {
            libc::close(cmd[1]);
            libc::close(res[0]);
            kid_loop(sc, dir, fds.to_vec(), cmd[0], res[1]);
            libc::_exit(0);
        }
    }
    // SAFETY: in the parent: close the child's ends; the Files own ours.
    unsafe {
        libc::close(cmd[0]);
        libc::close(res[1]);
        Ok(Kid {
            pid,
            cmd: std::fs::File::from_raw_fd(cmd[1]),
            res: std::io::BufReader::new(std::fs::File::from_raw_fd(res[0])),
            alive: true,
        })
    }
}

fn kid_loop(sc: &Scenario, dir: &Path, mut fds: Vec<i32>, cmd: i32, res: i32) {
    use std::io::BufRead as _;
    // SAFETY: the two descriptors are ours; the Files own them from here.
    let (cmd, mut res) = unsafe {
        (
            std::fs::File::from_raw_fd(cmd),
            std::fs::File::from_raw_fd(res),
        )
    };
    for line in std::io::BufReader::new(cmd).lines() {
        let Ok(line) = line else { break };
        let Ok(op) = serde_json::from_str::<Op>(&line) else {
            break;
        };
        let reply = if op == Op::Exit {
            (Outcome::Val(0), (0, 0))
        } else {
            measured_step(sc, dir, &mut fds, &op)
        };
        let text = serde_json::to_string(&reply).unwrap_or_default();
        if res
            .write_all(text.as_bytes())
            .and_then(|_| res.write_all(b"\n"))
            .is_err()
            || op == Op::Exit
        {
            break;
        }
    }
}

/// Runs the measured code paths once on a scratch page outside the window, so that the
/// first real op does not also pay for faulting in this binary's text.
fn warm_up(dir: &Path, fds: &mut Vec<i32>) {
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
    let _ = step(
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

fn step(dir: &Path, fds: &mut Vec<i32>, op: &Op) -> Outcome {
    // SAFETY: each arm makes one syscall with arguments that are either plain integers
    // or pointers to buffers owned by this frame and large enough for the length passed.
    // Memory inside the window is only touched by `access` (the probe routines).
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
            Op::Close { fd } => {
                let r = ret(libc::close(slot_fd(fds, *fd)) as i64);
                if r == Outcome::Val(0) {
                    close_slot(fds, *fd);
                }
                r
            }
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
            Op::Load { addr, len } => access(*addr, *len as usize, None),
            Op::Store { addr, data } => access(*addr, data.len(), Some(data)),
            Op::Fork | Op::Switch { .. } | Op::Exit => harness_refusal("process op in step"),
            Op::Maps => Outcome::Maps(parse_maps(
                &std::fs::read_to_string("/proc/self/maps").unwrap_or_default(),
                dir,
            )),
        }
    }
}

// In-process access probes. Each byte is loaded or stored by one instruction of a tiny
// assembly routine; if it faults, the SIGSEGV/SIGBUS handler records the signal, its
// si_code and si_addr, and resumes after that instruction. So a faulting access is seen
// exactly as a program sees it, in the process itself (no fork: MADV_DONTFORK and
// MADV_WIPEONFORK areas stay observable), and the sequence goes on.
std::arch::global_asm!(
    ".text",
    ".globl vmem_probe_load",
    "vmem_probe_load:",
    "xor eax, eax",
    ".globl vmem_probe_load_insn",
    "vmem_probe_load_insn:",
    "mov al, byte ptr [rdi]",
    ".globl vmem_probe_load_resume",
    "vmem_probe_load_resume:",
    "ret",
    ".globl vmem_probe_store",
    "vmem_probe_store:",
    ".globl vmem_probe_store_insn",
    "vmem_probe_store_insn:",
    "mov byte ptr [rdi], sil",
    ".globl vmem_probe_store_resume",
    "vmem_probe_store_resume:",
    "ret",
);

extern "C" {
    fn vmem_probe_load(p: *const u8) -> u8;
    fn vmem_probe_store(p: *mut u8, v: u8);
    static vmem_probe_load_insn: u8;
    static vmem_probe_load_resume: u8;
    static vmem_probe_store_insn: u8;
    static vmem_probe_store_resume: u8;
}

static FAULT_SIG: AtomicI32 = AtomicI32::new(0);
static FAULT_CODE: AtomicI32 = AtomicI32::new(0);
static FAULT_ADDR: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext; only atomics and the saved
    // RIP are touched, which is async-signal-safe.
    unsafe {
        let uc = ctx as *mut libc::ucontext_t;
        let rip = &mut (*uc).uc_mcontext.gregs[libc::REG_RIP as usize];
        let at = *rip as usize;
        let resume = if at == std::ptr::addr_of!(vmem_probe_load_insn) as usize {
            std::ptr::addr_of!(vmem_probe_load_resume) as usize
        } else if at == std::ptr::addr_of!(vmem_probe_store_insn) as usize {
            std::ptr::addr_of!(vmem_probe_store_resume) as usize
        } else {
            // Not a probe: a real crash. Restore the default action and return, so the
            // instruction faults again and the process dies with the signal.
            libc::signal(sig, libc::SIG_DFL);
            return;
        };
        FAULT_SIG.store(sig, Ordering::SeqCst);
        FAULT_CODE.store((*info).si_code, Ordering::SeqCst);
        FAULT_ADDR.store((*info).si_addr() as u64, Ordering::SeqCst);
        *rip = resume as i64;
    }
}

/// Installs the probe handler for SIGSEGV and SIGBUS (inherited across fork).
pub(crate) fn install_fault_handler() {
    // SAFETY: a plain sigaction with a handler that only touches atomics and the context.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_fault as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER;
        libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

/// Loads (or stores `data`) byte by byte at window offset `addr`, stopping at the first
/// byte that faults, as the model does.
fn access(addr: u64, len: usize, data: Option<&[u8]>) -> Outcome {
    let base = WINDOW_BASE.wrapping_add(addr);
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        FAULT_SIG.store(0, Ordering::SeqCst);
        let p = base.wrapping_add(i as u64) as *mut u8;
        // SAFETY: the probe routines touch one byte; a fault there is caught by
        // `on_fault`, which resumes after the instruction.
        let v = unsafe {
            match data {
                Some(d) => {
                    vmem_probe_store(p, d[i]);
                    0
                }
                None => vmem_probe_load(p),
            }
        };
        let sig = FAULT_SIG.load(Ordering::SeqCst);
        if sig != 0 {
            let code = FAULT_CODE.load(Ordering::SeqCst);
            let a = FAULT_ADDR.load(Ordering::SeqCst);
            let (sig, code) = match (sig, code) {
                (libc::SIGSEGV, 1) => ("SIGSEGV", "SEGV_MAPERR"),
                (libc::SIGSEGV, 2) => ("SIGSEGV", "SEGV_ACCERR"),
                (libc::SIGBUS, 2) => ("SIGBUS", "BUS_ADRERR"),
                (libc::SIGBUS, 3) => ("SIGBUS", "BUS_OBJERR"),
                (libc::SIGSEGV, _) => ("SIGSEGV", "other"),
                (libc::SIGBUS, _) => ("SIGBUS", "other"),
                _ => ("other", "other"),
            };
            return Outcome::Signal {
                sig: sig.into(),
                code: code.into(),
                addr: a as i64 - WINDOW_BASE as i64,
            };
        }
        out.push(v);
    }
    match data {
        Some(_) => Outcome::Val(0),
        None => Outcome::Bytes(out),
    }
}
