//! Helpers shared by the behaviour tests (each test crate uses some of them).
#![allow(dead_code)]

use vmem::fs::Fd;
use vmem::{Access, Kernel, Pid, Signal, TraceAccess};

/// A tiny xorshift generator: the same sequence for the same seed, no RNG crate.
pub struct Rng(pub u64);

impl Rng {
    /// The next value (the seed must not be zero).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value below `n` (not zero).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a run of accesses observed: per access, its value or signal.
pub type Seen = Vec<Result<u64, Signal>>;

/// `t` for `pid`, one `load`/`fetch`/`store` call per access: what `access_batch` must be
/// indistinguishable from (a store writes the value's 8 bytes, then zeros; a load gives
/// its first 8 bytes).
pub fn one_by_one(k: &mut Kernel, pid: Pid, t: &[TraceAccess], values: &[u64]) -> Seen {
    t.iter()
        .zip(values)
        .map(|(a, &v)| {
            let n = usize::from(a.size);
            let mut b = [0u8; 256];
            let first8 = |b: &[u8]| {
                let mut x = [0u8; 8];
                let m = n.min(8);
                x[..m].copy_from_slice(&b[..m]);
                u64::from_le_bytes(x)
            };
            match a.access {
                Access::Read => k.load(pid, a.va, &mut b[..n]).map(|()| first8(&b)),
                Access::Exec => k.fetch(pid, a.va, &mut b[..n]).map(|()| first8(&b)),
                Access::Write => {
                    b[..8].copy_from_slice(&v.to_le_bytes());
                    k.store(pid, a.va, &b[..n]).map(|()| v)
                }
            }
        })
        .collect()
}

/// `t` for `pid` through `access_batch`, going on after each signal with the next access.
pub fn batched(k: &mut Kernel, pid: Pid, t: &[TraceAccess], values: &[u64]) -> Seen {
    let mut vals = values.to_vec();
    let mut seen: Seen = Vec::new();
    let mut i = 0;
    while i < t.len() {
        match k.access_batch(pid, &t[i..], &mut vals[i..]) {
            Ok(()) => {
                seen.extend(vals[i..].iter().map(|&v| Ok(v)));
                i = t.len();
            }
            Err((j, sig)) => {
                seen.extend(vals[i..i + j].iter().map(|&v| Ok(v)));
                seen.push(Err(sig));
                i += j + 1;
            }
        }
    }
    seen
}

/// Everything `pid` reads from `fd` with read() of `chunk` bytes until end of file.
pub fn read_to_end(k: &mut Kernel, pid: Pid, fd: Fd, chunk: usize) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let got = k.read(pid, fd, chunk).unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}
