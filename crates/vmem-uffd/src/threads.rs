//! Fault delivery by filler threads: the faulting thread sleeps in the kernel while a
//! message describing the fault is queued on the userfaultfd; filler threads wait on the
//! descriptor (and on a stop eventfd), read the messages, serve them
//! ([`Pager::thread_fault`]) and wake the faulting thread.
//!
//! Owns the filler threads and their stop signal. Every filler reads the descriptor itself
//! (no poller handing faults to workers: one thread switch fewer). Each fault still costs
//! two wake-ups (faulting thread -> filler -> faulting thread); measured on a 2-vCPU VM
//! (`examples/bench.rs`), about 8 µs when both threads share a CPU, up to 100 µs when the
//! wake-ups cross to an idle vCPU — which is why signal delivery is the default. Unlike signal delivery
//! this also serves faults the kernel takes on the program's behalf (`read(2)` into the
//! mapping), unless only user-mode faults could be enabled (`UFFD_USER_MODE_ONLY`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::pager::Pager;
use crate::sys::{UffdMsg, UFFD_EVENT_PAGEFAULT};

/// The running filler threads; dropping stops and joins them.
#[derive(Debug)]
pub(crate) struct Fillers {
    stop: OwnedFd,
    threads: Vec<JoinHandle<()>>,
}

impl Fillers {
    pub(crate) fn start(pager: &Arc<Pager>, count: usize) -> io::Result<Fillers> {
        // SAFETY: eventfd takes an initial value and flags and returns a new descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this descriptor; nothing else owns it.
        let stop = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut f = Fillers {
            stop,
            threads: Vec::new(),
        };
        for i in 0..count.max(1) {
            let pager = Arc::clone(pager);
            let stop = f.stop.as_raw_fd();
            let t = std::thread::Builder::new()
                .name(format!("vmem-uffd-filler-{i}"))
                .spawn(move || run(&pager, stop))?;
            f.threads.push(t);
        }
        Ok(f)
    }
}

impl Drop for Fillers {
    fn drop(&mut self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one` to our eventfd; every filler polls it.
        unsafe { libc::write(self.stop.as_raw_fd(), (&one as *const u64).cast(), 8) };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The read-ahead thread of a mapping over a file store: it starts the reads that
/// sequential faults ask for ahead of themselves ([`Pager::read_ahead_thread`]), so that
/// the faulting thread only copies. Dropping stops and joins it.
#[derive(Debug)]
pub(crate) struct ReadAheadThread {
    pager: Arc<Pager>,
    thread: Option<JoinHandle<()>>,
}

impl ReadAheadThread {
    pub(crate) fn start(pager: &Arc<Pager>) -> io::Result<ReadAheadThread> {
        let p = Arc::clone(pager);
        let thread = std::thread::Builder::new()
            .name("vmem-uffd-readahead".into())
            .spawn(move || p.read_ahead_thread())?;
        Ok(ReadAheadThread {
            pager: Arc::clone(pager),
            thread: Some(thread),
        })
    }
}

impl Drop for ReadAheadThread {
    fn drop(&mut self) {
        self.pager.stop_read_ahead();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(pager: &Pager, stop: libc::c_int) {
    let uffd = pager.uffd().raw();
    let mut msgs = [UffdMsg::default(); 16];
    // (Tried: spinning on the descriptor for 50 µs after each fault instead of sleeping in
    // poll. On two CPUs it made faults 2-5 times slower: the spinner competes with the
    // faulting thread.)
    loop {
        let mut fds = [
            libc::pollfd {
                fd: uffd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is an array of two valid pollfd structures.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return;
        }
        let n = match pager.uffd().read_msgs(&mut msgs) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        for m in &msgs[..n] {
            if m.event == UFFD_EVENT_PAGEFAULT {
                pager.thread_fault(m.pf_address as usize, m.pf_flags);
            }
        }
        pager.reclaim(false);
    }
}
