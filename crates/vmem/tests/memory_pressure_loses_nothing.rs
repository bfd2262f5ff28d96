//! Memory pressure: a workload that touches four times the machine's RAM (random writes
//! to a shared file mapping and to anonymous memory, in several processes, one of them a
//! fork) runs with a small RAM and a swap file, under every replacement policy, with the
//! frame-accounting invariants checked after every step. The file read back with std::fs
//! and every anonymous byte read back through the machine must equal the same workload
//! run with plenty of RAM: reclaim, write-back and swap lose nothing.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::consts::*;
use vmem::reclaim::policy::PolicyKind;
use vmem::{Kernel, MachineConfig, Pid, Signal, VirtAddr};

const PAGE: u64 = vmem::PAGE_SIZE;
const FILE_PAGES: u64 = 192;
const ANON_PAGES: u64 = 96;
const FILE_VA: u64 = 0x1000_0000;
const ANON_VA: u64 = 0x2000_0000;

mod common;
use common::Rng;

/// Runs the workload; returns (file bytes on disk, anonymous bytes of each process).
fn workload(cfg: MachineConfig, check: bool) -> (Vec<u8>, Vec<Vec<u8>>, vmem::Counters) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.bin");
    std::fs::write(&path, vec![0u8; (FILE_PAGES * PAGE) as usize]).unwrap();
    let mut k = Kernel::new(cfg);
    let rw = PROT_READ | PROT_WRITE;
    let mut procs: Vec<Pid> = Vec::new();
    for _ in 0..2 {
        let p = k.spawn().unwrap();
        let fd = k.open(p, &path, O_RDWR, 0).unwrap();
        k.mmap(
            p,
            VirtAddr(FILE_VA),
            FILE_PAGES * PAGE,
            rw,
            MAP_SHARED | MAP_FIXED,
            fd,
            0,
        )
        .unwrap();
        k.mmap(
            p,
            VirtAddr(ANON_VA),
            ANON_PAGES * PAGE,
            rw,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
        procs.push(p);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut step = |k: &mut Kernel, procs: &mut Vec<Pid>, i: u64| {
        let p = procs[(rng.next() % procs.len() as u64) as usize];
        let r = rng.next();
        if r % 3 == 0 {
            let off = (rng.next() % (FILE_PAGES * PAGE / 8)) * 8;
            k.store_u64(p, VirtAddr(FILE_VA + off), i ^ r).unwrap();
        } else if r % 3 == 1 {
            let off = (rng.next() % (ANON_PAGES * PAGE / 8)) * 8;
            k.store_u64(p, VirtAddr(ANON_VA + off), i.wrapping_mul(r))
                .unwrap();
        } else {
            let off = (rng.next() % (ANON_PAGES * PAGE / 8)) * 8;
            k.load_u64(p, VirtAddr(ANON_VA + off)).unwrap();
        }
        if check {
            if let Err(e) = k.check_invariants() {
                panic!("invariants broken after step {i}:\n{e}");
            }
        }
    };
    for i in 0..1500 {
        step(&mut k, &mut procs, i);
    }
    // A fork halfway: the child shares every anonymous page copy-on-write.
    let child = k.fork(procs[0]).unwrap();
    procs.push(child);
    for i in 1500..3000 {
        step(&mut k, &mut procs, i);
    }
    let anon: Vec<Vec<u8>> = procs
        .iter()
        .map(|&p| {
            k.load_vec(p, VirtAddr(ANON_VA), (ANON_PAGES * PAGE) as usize)
                .unwrap()
        })
        .collect();
    if check {
        k.check_invariants().unwrap();
    }
    let stats = k.stats();
    k.shutdown().unwrap();
    if check {
        k.check_invariants().unwrap();
        // With every process gone and the caches dropped, only frame 0 and the zero page
        // remain: nothing leaked.
        k.drop_caches();
        assert_eq!(k.frames_in_use(), 2, "frames leaked");
    }
    drop(k);
    (std::fs::read(&path).unwrap(), anon, stats)
}

fn small(policy: PolicyKind) -> MachineConfig {
    MachineConfig {
        ram_bytes: 96 * PAGE, // the workload touches 4x this
        swap_bytes: 1 << 20,
        policy,
        ..MachineConfig::default()
    }
}

#[test]
fn every_policy_keeps_every_byte_under_pressure() {
    let (file_ref, anon_ref, s) = workload(MachineConfig::default(), false);
    assert_eq!(s.swap_outs, 0, "the reference run has room for everything");
    for policy in [
        PolicyKind::TwoList,
        PolicyKind::Clock,
        PolicyKind::Fifo,
        PolicyKind::Lru,
        PolicyKind::Random,
    ] {
        let (file, anon, s) = workload(small(policy), true);
        eprintln!(
            "{policy:?}: reclaimed {} file + {} anon pages, {} swap-ins, {} refaults, {} pages written",
            s.reclaimed_file_pages, s.reclaimed_anon_pages, s.swap_ins, s.refaults, s.disk_write_pages
        );
        assert!(
            s.swap_outs > 0 && s.swap_ins > 0,
            "{policy:?}: anonymous pages went to swap and back: {s:?}"
        );
        assert!(
            s.reclaimed_file_pages > 0,
            "{policy:?}: file pages were reclaimed"
        );
        assert!(
            s.disk_write_pages > 0,
            "{policy:?}: dirty file pages were written back"
        );
        assert!(
            file == file_ref,
            "{policy:?}: the file differs from the unpressured run"
        );
        assert!(
            anon == anon_ref,
            "{policy:?}: anonymous memory differs from the unpressured run"
        );
    }
}

#[test]
fn without_swap_anonymous_memory_runs_out_with_an_oom_signal() {
    let mut k = Kernel::new(MachineConfig {
        ram_bytes: 32 * PAGE,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            64 * PAGE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    let mut got = None;
    for i in 0..64 {
        if let Err(s) = k.store_u64(p, va.add(i * PAGE), i) {
            got = Some(s);
            break;
        }
    }
    match got {
        Some(Signal::OomKill { .. }) => {}
        other => panic!("expected the OOM killer's signal, got {other:?}"),
    }
    assert_eq!(k.process_stats(p).unwrap().oom_kills, 1);
    k.check_invariants().unwrap();
}

#[test]
fn clean_file_pages_are_dropped_and_refault_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let data: Vec<u8> = (0..(256 * PAGE) as usize)
        .map(|i| (i / PAGE as usize) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    let mut k = Kernel::new(MachineConfig {
        ram_bytes: 64 * PAGE,
        ..MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
    let va = k
        .mmap(p, VirtAddr(0), 256 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0)
        .unwrap();
    for round in 0..2 {
        for i in 0..256 {
            assert_eq!(
                k.load_u8(p, va.add(i * PAGE)).unwrap(),
                i as u8,
                "round {round} page {i}"
            );
        }
        k.check_invariants().unwrap();
    }
    let s = k.stats();
    assert!(s.reclaimed_file_pages >= 256, "{s:?}");
    assert!(
        s.refaults > 0,
        "pages read again after eviction count as refaults"
    );
    assert_eq!(s.swap_outs, 0, "clean file pages never go to swap");
}
