//! Fault delivery by signal: the userfaultfd is opened with `UFFD_FEATURE_SIGBUS`, so a
//! fault in a registered range raises SIGBUS (`BUS_ADRERR`) in the faulting thread, and
//! this module's handler serves it right there ([`Pager::signal_fault`]) and returns, which
//! retries the access. No thread switch, no message queue.
//!
//! Owns the process-wide SIGBUS handler and the registry of mappings it serves (a fixed
//! array of slots, so the handler never allocates or locks to find a mapping). It does not
//! decide how a page is filled (`pager.rs`).
//!
//! A SIGBUS that is not ours — another address, another cause, a page this crate decided
//! is bad (store error, past the end) — goes to the handler that was installed before
//! ours (for a Rust program, std's, which restores the default action and returns, so the
//! access faults again and the process dies of SIGBUS as it would without us).
//!
//! Limitation (the kernel's): a fault taken by the kernel itself on such a range — a
//! `write(2)` whose buffer is a not-yet-resident page of the mapping — cannot raise a
//! signal and fails with `EFAULT`. Use thread delivery (or `prefetch`) for such buffers.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::pager::{Pager, SignalOutcome};

/// How many signal-delivered mappings may exist at once.
pub(crate) const SLOTS: usize = 256;

struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
    pager: AtomicPtr<Pager>,
    active: AtomicUsize,
    claimed: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    pager: AtomicPtr::new(std::ptr::null_mut()),
    active: AtomicUsize::new(0),
    claimed: AtomicUsize::new(0),
};

static REGISTRY: [Slot; SLOTS] = [EMPTY; SLOTS];
/// One past the highest slot ever claimed: the handler scans only this far.
static USED: AtomicUsize = AtomicUsize::new(0);
/// The SIGBUS action that was installed before ours (a leaked `Box<sigaction>`).
static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(std::ptr::null_mut());
static INSTALL: Mutex<()> = Mutex::new(());

/// A mapping's place in the registry; removing it waits until no handler uses the pager.
#[derive(Debug)]
pub(crate) struct Registration {
    slot: usize,
}

/// Installs the handler (once, or again if someone replaced it) and registers `pager`,
/// which must stay alive until the returned registration is dropped.
pub(crate) fn register(pager: &Pager) -> std::io::Result<Registration> {
    install()?;
    let start = pager.base() as usize;
    let end = start + pager.served();
    for (i, s) in REGISTRY.iter().enumerate() {
        if s.claimed
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            s.start.store(start, Ordering::SeqCst);
            s.end.store(end, Ordering::SeqCst);
            s.pager
                .store(pager as *const Pager as *mut Pager, Ordering::SeqCst);
            USED.fetch_max(i + 1, Ordering::SeqCst);
            return Ok(Registration { slot: i });
        }
    }
    Err(std::io::Error::other(format!(
        "more than {SLOTS} mappings with signal delivery at once; use Delivery::Threads"
    )))
}

impl Drop for Registration {
    fn drop(&mut self) {
        let s = &REGISTRY[self.slot];
        s.pager.store(std::ptr::null_mut(), Ordering::SeqCst);
        let mut spins = 0;
        while s.active.load(Ordering::SeqCst) != 0 {
            crate::pager::backoff(&mut spins);
        }
        s.start.store(0, Ordering::SeqCst);
        s.end.store(0, Ordering::SeqCst);
        s.claimed.store(0, Ordering::Release);
    }
}

fn install() -> std::io::Result<()> {
    let _g = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: an all-zero sigaction is a valid "query" buffer.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying the current action writes one sigaction.
    if unsafe { libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut current) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if current.sa_sigaction == on_sigbus as *const () as usize {
        return Ok(());
    }
    // SAFETY: as above.
    let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
    ours.sa_sigaction = on_sigbus as *const () as usize;
    // SA_NODEFER: a store whose read itself faults on another such mapping nests.
    // No SA_ONSTACK: the handler may call the store, which may need more than a small
    // alternate stack; the faulting thread's own stack is in use anyway.
    ours.sa_flags = libc::SA_SIGINFO | libc::SA_NODEFER | libc::SA_RESTART;
    // SAFETY: sa_mask is a valid sigset_t inside `ours`.
    unsafe { libc::sigemptyset(&mut ours.sa_mask) };
    let mut previous = Box::new(current);
    // SAFETY: installs our handler, a valid extern "C" fn with the SA_SIGINFO signature;
    // the old action is written into `previous`.
    if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut *previous) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Leaked on purpose: a handler may be reading the previous one at any time.
    PREVIOUS.store(Box::into_raw(previous), Ordering::SeqCst);
    Ok(())
}

/// Whether the faulting access was a write, from the x86-64 page-fault error code.
fn is_write(ctx: *mut libc::c_void) -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        if ctx.is_null() {
            return None;
        }
        // SAFETY: the kernel passes a ucontext_t as the third argument of an SA_SIGINFO
        // handler; REG_ERR holds the page-fault error code, whose bit 1 is "write".
        let err = unsafe {
            (*(ctx as *const libc::ucontext_t)).uc_mcontext.gregs[libc::REG_ERR as usize]
        };
        Some(err & 2 != 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = ctx;
        None
    }
}

/// Finds the mapping that holds `addr` and serves the fault. `None`: not ours.
fn dispatch(addr: usize, write: Option<bool>) -> Option<SignalOutcome> {
    let used = USED.load(Ordering::SeqCst).min(SLOTS);
    for s in &REGISTRY[..used] {
        if addr < s.start.load(Ordering::SeqCst) || addr >= s.end.load(Ordering::SeqCst) {
            continue;
        }
        s.active.fetch_add(1, Ordering::SeqCst);
        let p = s.pager.load(Ordering::SeqCst);
        let out = if p.is_null() {
            None
        } else {
            // SAFETY: the pager is registered (non-null) and `active` is raised, so
            // `Registration::drop` waits for us before the pager can be freed.
            let pager = unsafe { &*p };
            let base = pager.base() as usize;
            if addr >= base && addr < base + pager.served() {
                Some(pager.signal_fault(addr, write))
            } else {
                None
            }
        };
        s.active.fetch_sub(1, Ordering::SeqCst);
        if out.is_some() {
            return out;
        }
    }
    None
}

extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: errno is thread-local; saved here and restored below so that the
    // interrupted code does not see our system calls' errors.
    let saved_errno = unsafe { *libc::__errno_location() };
    let mut ours = false;
    if !info.is_null() {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        if code == libc::BUS_ADRERR {
            ours = dispatch(addr, is_write(ctx)) == Some(SignalOutcome::Retry);
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
    if !ours {
        // SAFETY: forwarding the signal we received, with the kernel's arguments.
        unsafe { forward(sig, info, ctx) };
    }
}

/// Hands a SIGBUS to the action that was installed before ours.
///
/// # Safety
///
/// Call only from the SIGBUS handler, with the arguments the kernel passed it.
unsafe fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = PREVIOUS.load(Ordering::SeqCst);
    let (handler, flags) = if prev.is_null() {
        (libc::SIG_DFL, 0)
    } else {
        // SAFETY: PREVIOUS points to a leaked, never-freed sigaction.
        let p = unsafe { &*prev };
        (p.sa_sigaction, p.sa_flags)
    };
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        // Restore the default action. A fault re-executes and dies of SIGBUS; a signal
        // sent by someone is raised again (it is not blocked: SA_NODEFER).
        // SAFETY: a zeroed sigaction with SIG_DFL is valid; sigaction and raise are
        // async-signal-safe.
        unsafe {
            let mut dfl: libc::sigaction = std::mem::zeroed();
            dfl.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
            if info.is_null() || (*info).si_code <= 0 {
                libc::raise(sig);
            }
        }
    } else if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: the previous action declared SA_SIGINFO, so its handler has this type.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute(handler) };
        f(sig, info, ctx);
    } else {
        // SAFETY: a plain (non-SA_SIGINFO) handler takes the signal number only.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
        f(sig);
    }
}
