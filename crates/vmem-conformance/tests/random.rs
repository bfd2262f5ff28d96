//! Random conformance: property-based sequences of syscalls, loads and stores, across
//! fork into up to three children, over a few small files and several mappings in a
//! 16-page window, run on the real kernel and on the
//! model and compared on everything observable. A failing sequence is shrunk (proptest,
//! then op-by-op removal) and printed as a numbered scenario to replay.
//!
//! Documented exception: MADV_WILLNEED is left out of the random mix. On Linux it starts
//! an asynchronous read, and `mincore` reports a page only once its read has completed
//! (`folio_test_uptodate`), so what a later `mincore` shows depends on disk timing. Its
//! return values are covered by the directed cases.
//!
//! `VMEM_CONFORMANCE_CASES` sets the number of sequences (default 64, for CI).

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use std::cell::RefCell;
use vmem::consts::*;
use vmem_conformance::{host_like_config, render, run_both, Addr, Op, Oracle, Scenario, Target};

const P: u64 = 4096;
const WINDOW_PAGES: u64 = 16;

fn len_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (1u64..6).prop_map(|n| n * P),
        1 => 1u64..(3 * P),
    ]
}

fn page() -> impl Strategy<Value = u64> {
    (0..WINDOW_PAGES).prop_map(|p| p * P)
}

fn prot() -> impl Strategy<Value = i32> {
    prop_oneof![
        1 => Just(PROT_NONE),
        1 => Just(PROT_READ),
        3 => Just(PROT_READ | PROT_WRITE),
        1 => Just(PROT_WRITE),
        1 => Just(PROT_READ | PROT_EXEC),
    ]
}

fn fd() -> impl Strategy<Value = u8> {
    prop_oneof![8 => 0u8..3, 1 => Just(7u8)]
}

fn op() -> impl Strategy<Value = Op> {
    let mmap = (page(), len_strategy(), prot(), 0usize..5, fd(), 0u64..4).prop_map(
        |(a, len, prot, kind, fd, off)| {
            let (flags, fd) = match kind {
                0 => (MAP_PRIVATE | MAP_ANONYMOUS, 255),
                1 => (MAP_SHARED | MAP_ANONYMOUS, 255),
                2 => (MAP_PRIVATE, fd),
                _ => (MAP_SHARED, fd),
            };
            Op::Mmap {
                addr: Addr::Win(a),
                len,
                prot,
                flags: flags | MAP_FIXED,
                fd,
                off: (off * P) as i64,
            }
        },
    );
    let access_addr = (0..WINDOW_PAGES * P).prop_map(|a| a);
    prop_oneof![
        2 => (0u8..2, prop_oneof![Just(O_RDONLY), Just(O_RDWR), Just(O_WRONLY)])
            .prop_map(|(f, flags)| Op::Open { target: Target::File(f), flags }),
        6 => mmap,
        3 => (page(), len_strategy()).prop_map(|(addr, len)| Op::Munmap { addr, len }),
        3 => (page(), len_strategy(), prot()).prop_map(|(addr, len, prot)| Op::Mprotect { addr, len, prot }),
        2 => (page(), len_strategy(), prop_oneof![Just(MS_SYNC), Just(MS_ASYNC), Just(MS_INVALIDATE), Just(0)])
            .prop_map(|(addr, len, flags)| Op::Msync { addr, len, flags }),
        2 => (page(), len_strategy(), prop_oneof![Just(MADV_DONTNEED), Just(MADV_NORMAL), Just(MADV_RANDOM), Just(MADV_SEQUENTIAL)])
            .prop_map(|(addr, len, advice)| Op::Madvise { addr, len, advice }),
        2 => (page(), 1u64..4, 1u64..5, page(), 0usize..3).prop_map(|(addr, o, n, new_addr, k)| {
            let flags = [0, MREMAP_MAYMOVE, MREMAP_MAYMOVE | MREMAP_FIXED][k];
            Op::Mremap { addr, old_len: o * P, new_len: n * P, flags, new_addr }
        }),
        2 => (page(), len_strategy()).prop_map(|(addr, len)| Op::Mincore { addr, len }),
        10 => (access_addr.clone(), 1u8..9).prop_map(|(addr, len)| Op::Load { addr, len }),
        10 => (access_addr, proptest::collection::vec(any::<u8>(), 1..9)).prop_map(|(addr, mut data)| {
            // Stores stay within one page (see real.rs: a store is repeated after its probe).
            let room = (P - addr % P) as usize;
            data.truncate(room.max(1));
            Op::Store { addr, data }
        }),
        2 => (fd(), 0i64..(5 * P as i64)).prop_map(|(fd, len)| Op::Ftruncate { fd, len }),
        2 => (fd(), proptest::collection::vec(any::<u8>(), 1..64), 0i64..(5 * P as i64))
            .prop_map(|(fd, data, off)| Op::Pwrite { fd, data, off }),
        1 => (fd(), 1u32..64, 0i64..(5 * P as i64)).prop_map(|(fd, len, off)| Op::Pread { fd, len, off }),
        1 => fd().prop_map(|fd| Op::Fsync { fd }),
        1 => fd().prop_map(|fd| Op::Close { fd }),
        2 => Just(Op::Maps),
        1 => Just(Op::Fork),
        3 => (0u8..4).prop_map(|proc| Op::Switch { proc }),
        1 => Just(Op::Exit),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let file = (0u64..5 * P).prop_map(|n| (0..n).map(|i| (i % 251) as u8 | 1).collect::<Vec<u8>>());
    (
        proptest::collection::vec(file, 2),
        proptest::collection::vec(op(), 30..45),
    )
        .prop_map(|(files, mut ops)| {
            // Every sequence starts with the files open, then a layout snapshot at the end.
            ops.insert(
                0,
                Op::Open {
                    target: Target::File(1),
                    flags: O_RDWR,
                },
            );
            ops.insert(
                0,
                Op::Open {
                    target: Target::File(0),
                    flags: O_RDWR,
                },
            );
            ops.push(Op::Maps);
            Scenario {
                files,
                ops,
                direct: false,
            }
        })
}

/// Removes ops one at a time while the scenario still diverges.
fn minimise(sc: &Scenario, diverges: &dyn Fn(&Scenario) -> bool) -> Scenario {
    let mut best = sc.clone();
    let mut i = 0;
    while i < best.ops.len() {
        let mut t = best.clone();
        t.ops.remove(i);
        if diverges(&t) {
            best = t;
        } else {
            i += 1;
        }
    }
    best
}

#[test]
fn random_sequences_match_linux() {
    let cases: u32 = std::env::var("VMEM_CONFORMANCE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let oracle = RefCell::new(
        Oracle::spawn(env!("CARGO_BIN_EXE_vmem-oracle").as_ref()).expect("start vmem-oracle"),
    );
    let tmp = tempfile::tempdir().unwrap();
    let cfg = host_like_config(tmp.path());
    let ops_run = RefCell::new(0usize);
    let seqs = RefCell::new(0usize);
    let check = |sc: &Scenario| -> Vec<String> {
        let (_, _, d) = run_both(
            &mut oracle.borrow_mut(),
            sc,
            &tmp.path().join("case"),
            cfg.clone(),
        )
        .expect("run");
        d.iter().map(|x| x.to_string()).collect()
    };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&scenario(), |sc| {
        *seqs.borrow_mut() += 1;
        *ops_run.borrow_mut() += sc.ops.len();
        let d = check(&sc);
        if d.is_empty() {
            Ok(())
        } else {
            Err(TestCaseError::fail(d.join("\n")))
        }
    });
    match result {
        Ok(()) => {
            println!(
                "random: {} sequences, {} operations, 0 divergences",
                seqs.borrow(),
                ops_run.borrow()
            );
        }
        Err(TestError::Fail(_, sc)) => {
            let min = minimise(&sc, &|t| !check(t).is_empty());
            let d = check(&min);
            panic!(
                "random: {} sequences, {} operations, 1 divergence; minimal scenario:\n{}\n{}",
                seqs.borrow(),
                ops_run.borrow(),
                render(&min),
                d.join("\n")
            );
        }
        Err(e) => panic!("{e}"),
    }
}
