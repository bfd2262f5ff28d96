//! The model side: a scenario run on vmem's emulated machine.

use crate::*;
use vmem::{Kernel, Pid, VirtAddr};

fn w(off: u64) -> VirtAddr {
    VirtAddr(WINDOW_BASE.wrapping_add(off))
}

fn res<T>(r: Result<T, Errno>, f: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => f(v),
        Err(e) => Outcome::Err(e.name().to_string()),
    }
}

/// Runs `sc` with its files in `dir` (already prepared).
pub fn run(sc: &Scenario, dir: &Path, cfg: MachineConfig) -> Report {
    let mut k = Kernel::new(cfg);
    let p = match k.spawn() {
        Ok(p) => p,
        Err(e) => {
            return Report {
                error: Some(format!("spawn: {e}")),
                ..Default::default()
            }
        }
    };
    // Processes by number: (pid, descriptor slots, alive).
    let mut procs: Vec<(Pid, Vec<i32>, bool)> = vec![(p, Vec::new(), true)];
    let mut cur = 0usize;
    let mut rep = Report::default();
    for op in &sc.ops {
        let pid = procs[cur].0;
        let before = k.process_stats(pid).unwrap_or_default();
        let out = match op {
            Op::Fork => {
                if cur != 0 {
                    harness_refusal("only process 0 forks")
                } else if procs.len() > MAX_CHILDREN {
                    harness_refusal("too many processes")
                } else {
                    match k.fork(pid) {
                        Ok(c) => {
                            let fds = procs[0].1.clone();
                            procs.push((c, fds, true));
                            Outcome::Val(procs.len() as i64 - 1)
                        }
                        Err(e) => Outcome::Err(e.name().into()),
                    }
                }
            }
            Op::Switch { proc } => match procs.get(*proc as usize) {
                Some((_, _, true)) => {
                    cur = *proc as usize;
                    Outcome::Val(0)
                }
                _ => harness_refusal("no such process"),
            },
            Op::Exit => {
                if cur == 0 {
                    harness_refusal("process 0 does not exit")
                } else {
                    let _ = k.exit(pid);
                    procs[cur].2 = false;
                    cur = 0;
                    Outcome::Val(0)
                }
            }
            _ => step(&mut k, pid, dir, &mut procs[cur].1, op),
        };
        let after = if k.is_alive(pid) {
            k.process_stats(pid).unwrap_or_default()
        } else {
            before
        };
        rep.faults.push((
            after.minor_faults - before.minor_faults,
            after.major_faults - before.major_faults,
        ));
        rep.outcomes.push(out);
    }
    if let Err(e) = k.shutdown() {
        rep.error = Some(format!("shutdown: {e}"));
    }
    drop(k);
    for i in 0..sc.files.len() {
        rep.files
            .push(std::fs::read(dir.join(format!("f{i}"))).unwrap_or_default());
    }
    rep
}

fn step(k: &mut Kernel, p: Pid, dir: &Path, fds: &mut Vec<i32>, op: &Op) -> Outcome {
    match op {
        Op::Open { target, flags } => match k.open(p, target_path(dir, *target), *flags, 0o644) {
            Ok(fd) => {
                fds.push(fd);
                Outcome::Val(fds.len() as i64 - 1)
            }
            Err(e) => Outcome::Err(e.name().into()),
        },
        Op::Close { fd } => res(k.close(p, slot_fd(fds, *fd)), |_| {
            close_slot(fds, *fd);
            Outcome::Val(0)
        }),
        Op::Read { fd, len } => res(k.read(p, slot_fd(fds, *fd), *len as usize), Outcome::Bytes),
        Op::Write { fd, data } => res(k.write(p, slot_fd(fds, *fd), data), |n| {
            Outcome::Val(n as i64)
        }),
        Op::Pread { fd, len, off } => res(
            k.pread(p, slot_fd(fds, *fd), *len as usize, *off),
            Outcome::Bytes,
        ),
        Op::Pwrite { fd, data, off } => res(k.pwrite(p, slot_fd(fds, *fd), data, *off), |n| {
            Outcome::Val(n as i64)
        }),
        Op::Lseek { fd, off, whence } => res(k.lseek(p, slot_fd(fds, *fd), *off, *whence), |n| {
            Outcome::Val(n as i64)
        }),
        Op::Ftruncate { fd, len } => {
            res(k.ftruncate(p, slot_fd(fds, *fd), *len), |_| Outcome::Val(0))
        }
        Op::Fsync { fd } => res(k.fsync(p, slot_fd(fds, *fd)), |_| Outcome::Val(0)),
        Op::Mmap {
            addr,
            len,
            prot,
            flags,
            fd,
            off,
        } => {
            let a = match addr {
                Addr::Null => VirtAddr(0),
                Addr::Win(o) => w(*o),
                Addr::Abs(a) => VirtAddr(*a),
            };
            res(
                k.mmap(p, a, *len, *prot, *flags, slot_fd(fds, *fd), *off),
                |va| Outcome::Mapped(in_window(va.0)),
            )
        }
        Op::Munmap { addr, len } => res(k.munmap(p, w(*addr), *len), |_| Outcome::Val(0)),
        Op::Mprotect { addr, len, prot } => {
            res(k.mprotect(p, w(*addr), *len, *prot), |_| Outcome::Val(0))
        }
        Op::Msync { addr, len, flags } => {
            res(k.msync(p, w(*addr), *len, *flags), |_| Outcome::Val(0))
        }
        Op::Madvise { addr, len, advice } => {
            res(k.madvise(p, w(*addr), *len, *advice), |_| Outcome::Val(0))
        }
        Op::Mremap {
            addr,
            old_len,
            new_len,
            flags,
            new_addr,
        } => res(
            k.mremap(p, w(*addr), *old_len, *new_len, *flags, w(*new_addr)),
            |va| Outcome::Mapped(in_window(va.0)),
        ),
        Op::Mincore { addr, len } => res(k.mincore(p, w(*addr), *len), Outcome::Bytes),
        Op::Load { addr, len } => match k.load_vec(p, w(*addr), *len as usize) {
            Ok(b) => Outcome::Bytes(b),
            Err(s) => signal_outcome(&s),
        },
        Op::Store { addr, data } => match k.store(p, w(*addr), data) {
            Ok(()) => Outcome::Val(0),
            Err(s) => signal_outcome(&s),
        },
        Op::Maps => Outcome::Maps(parse_maps(&k.maps(p).unwrap_or_default(), dir)),
        Op::Fork | Op::Switch { .. } | Op::Exit => harness_refusal("process op in step"),
    }
}

/// The window offset of an address, or `None` outside the window.
pub(crate) fn in_window(a: u64) -> Option<u64> {
    (WINDOW_BASE..WINDOW_BASE + WINDOW_LEN)
        .contains(&a)
        .then(|| a - WINDOW_BASE)
}
