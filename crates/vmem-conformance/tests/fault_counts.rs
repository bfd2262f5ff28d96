//! Fault counts: the model's minor and major faults against getrusage on the real side,
//! for scenarios the model is meant to mirror exactly (fault-around, read-around,
//! copy-on-write, anonymous first touch). Loads and stores run directly in the real child
//! so that its counters see them. The model is configured from the host's tunables
//! (`host_like_config`: the device's read-ahead window).

use vmem::consts::*;
use vmem_conformance::{host_like_config, run_both, Addr, Op, Op::*, Oracle, Scenario, Target};

const P: u64 = 4096;

fn map(pages: u64, prot: i32, flags: i32, fd: u8) -> Op {
    Mmap {
        addr: Addr::Win(0),
        len: pages * P,
        prot,
        flags: flags | MAP_FIXED,
        fd,
        off: 0,
    }
}

/// `n` reads of `chunk` bytes each from fd 0, in order.
fn reads(chunk: u64, n: u64) -> Vec<Op> {
    (0..n)
        .map(|_| Read {
            fd: 0,
            len: chunk as u32,
        })
        .collect()
}

fn touch_loads(pages: u64) -> Vec<Op> {
    (0..pages)
        .map(|i| Load {
            addr: i * P,
            len: 1,
        })
        .collect()
}

fn touch_stores(pages: u64) -> Vec<Op> {
    (0..pages)
        .map(|i| Store {
            addr: i * P + 8,
            data: vec![0xab],
        })
        .collect()
}

fn open0(flags: i32) -> Op {
    Open {
        target: Target::File(0),
        flags,
    }
}

/// A named scenario: initial file contents and ops.
type Case = (&'static str, Vec<Vec<u8>>, Vec<Op>);

#[allow(clippy::vec_init_then_push)]
fn scenarios() -> Vec<Case> {
    let file = |pages: u64| vec![vec![0x5au8; (pages * P) as usize]];
    let rw = PROT_READ | PROT_WRITE;
    #[allow(clippy::vec_init_then_push)]
    let mut v: Vec<Case> = Vec::new();
    v.push((
        "anon_first_touch_write_64",
        vec![],
        [
            vec![map(64, rw, MAP_PRIVATE | MAP_ANONYMOUS, 255)],
            touch_stores(64),
        ]
        .concat(),
    ));
    v.push((
        "anon_read_then_write_32",
        vec![],
        [
            vec![map(32, rw, MAP_PRIVATE | MAP_ANONYMOUS, 255)],
            touch_loads(32),
            touch_stores(32),
        ]
        .concat(),
    ));
    v.push((
        "file_sequential_read_uncached_64",
        file(64),
        [
            vec![open0(O_RDONLY), map(64, PROT_READ, MAP_SHARED, 0)],
            touch_loads(64),
        ]
        .concat(),
    ));
    // read() meets every read-ahead mark on its way and clears it (Linux
    // `filemap_get_read_batch` ends a batch at a marked page), so the mapping's
    // fault-around, which skips marked pages, then maps every page read: 16 per fault.
    // (name, file pages, bytes per read, reads)
    for (name, pages, chunk, n) in [
        ("file_sequential_read_cached_64", 64u64, 64 * P, 1),
        ("file_read_whole_then_mapped_256", 256, 256 * P, 1),
        ("file_read_in_32k_chunks_then_mapped_256", 256, 8 * P, 32),
        ("file_read_in_12k_chunks_then_mapped_256", 256, 3 * P, 86),
        ("file_first_99_of_256_in_12k_chunks", 256, 3 * P, 33),
        ("file_read_1m_of_40_then_mapped", 40, 256 * P, 1),
    ] {
        v.push((
            name,
            file(pages),
            [
                vec![open0(O_RDONLY)],
                reads(chunk, n),
                vec![map(pages, PROT_READ, MAP_SHARED, 0)],
                touch_loads(pages),
            ]
            .concat(),
        ));
    }
    // Growing a file whose last page is partial leaves that page cached but not up to
    // date; a read() batch ends there too.
    for (name, chunk) in [
        ("file_grown_then_read_in_12k_chunks_64", 3 * P),
        ("file_grown_then_read_whole_64", 64 * P),
    ] {
        v.push((
            name,
            vec![vec![0x5au8; (10 * P + P / 2) as usize]],
            [
                vec![
                    open0(O_RDWR),
                    Ftruncate {
                        fd: 0,
                        len: (64 * P) as i64,
                    },
                ],
                reads(chunk, 64 * P / chunk),
                vec![map(64, PROT_READ, MAP_SHARED, 0)],
                touch_loads(64),
            ]
            .concat(),
        ));
    }
    v.push((
        "file_random_advice_uncached_16",
        file(16),
        [
            vec![
                open0(O_RDONLY),
                map(16, PROT_READ, MAP_SHARED, 0),
                Madvise {
                    addr: 0,
                    len: 16 * P,
                    advice: MADV_RANDOM,
                },
            ],
            touch_loads(16),
        ]
        .concat(),
    ));
    v.push((
        "file_private_writes_uncached_16",
        file(16),
        [
            vec![open0(O_RDONLY), map(16, rw, MAP_PRIVATE, 0)],
            touch_stores(16),
        ]
        .concat(),
    ));
    v.push((
        "file_private_read_then_write_16",
        file(16),
        [
            vec![open0(O_RDONLY), map(16, rw, MAP_PRIVATE, 0)],
            touch_loads(16),
            touch_stores(16),
        ]
        .concat(),
    ));
    v.push((
        "file_shared_writes_uncached_16",
        file(16),
        [
            vec![open0(O_RDWR), map(16, rw, MAP_SHARED, 0)],
            touch_stores(16),
        ]
        .concat(),
    ));
    v.push((
        "file_shared_read_then_write_16",
        file(16),
        [
            vec![open0(O_RDWR), map(16, rw, MAP_SHARED, 0)],
            touch_loads(16),
            touch_stores(16),
        ]
        .concat(),
    ));
    v
}

#[test]
fn fault_counts_match_getrusage() {
    let mut o =
        Oracle::spawn(env!("CARGO_BIN_EXE_vmem-oracle").as_ref()).expect("start vmem-oracle");
    let tmp = tempfile::tempdir().unwrap();
    let cfg = host_like_config(tmp.path());
    println!(
        "model read-around window: {} pages (from the host device)",
        cfg.read_around_pages
    );
    println!(
        "{:<40} {:>14} {:>14}  verdict",
        "scenario", "model min/maj", "linux min/maj"
    );
    let mut differ = Vec::new();
    for (name, files, ops) in scenarios() {
        let sc = Scenario {
            files,
            ops,
            direct: true,
        };
        let (model, real, d) =
            run_both(&mut o, &sc, &tmp.path().join(name), cfg.clone()).expect("run");
        assert!(
            d.is_empty(),
            "{name}: observable divergence: {:?}",
            d.iter().map(|x| x.to_string()).collect::<Vec<_>>()
        );
        // Count only the faults of the accesses, not of the syscalls' own setup.
        let sum = |r: &vmem_conformance::Report| {
            r.faults
                .iter()
                .zip(&sc.ops)
                .filter(|(_, op)| matches!(op, Load { .. } | Store { .. }))
                .fold((0, 0), |a, (f, _)| (a.0 + f.0, a.1 + f.1))
        };
        let (m, r) = (sum(&model), sum(&real));
        let verdict = if m == r { "equal" } else { "DIFFER" };
        println!(
            "{name:<40} {:>14} {:>14}  {verdict}",
            format!("{}/{}", m.0, m.1),
            format!("{}/{}", r.0, r.1)
        );
        if m != r {
            differ.push(name);
        }
    }
    assert!(
        differ.is_empty(),
        "fault counts differ from Linux in: {differ:?}"
    );
}
