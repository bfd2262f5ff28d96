//! Directed conformance cases: every errno and signal condition the model implements,
//! each run on the real kernel and on the model, compared on everything observable.
//! The expectation is what Linux did, not what anyone thinks it does.

use vmem::consts::*;
use vmem::MachineConfig;
use vmem_conformance::{run_both, Addr, Op, Op::*, Oracle, Scenario, Target};

const P: u64 = 4096;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn files() -> Vec<Vec<u8>> {
    vec![pattern(10_000, 7), pattern(3 * 4096, 11)]
}

fn open(n: u8, flags: i32) -> Op {
    Open {
        target: Target::File(n),
        flags,
    }
}
fn anon(page: u64, pages: u64, prot: i32) -> Op {
    Mmap {
        addr: Addr::Win(page * P),
        len: pages * P,
        prot,
        flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
        fd: 255,
        off: 0,
    }
}
fn fmap(page: u64, pages: u64, prot: i32, flags: i32, fd: u8, off: i64) -> Op {
    Mmap {
        addr: Addr::Win(page * P),
        len: pages * P,
        prot,
        flags: flags | MAP_FIXED,
        fd,
        off,
    }
}
fn load(off: u64, len: u8) -> Op {
    Load { addr: off, len }
}
fn store(off: u64, data: &[u8]) -> Op {
    Store {
        addr: off,
        data: data.to_vec(),
    }
}

fn cases() -> Vec<(&'static str, Vec<Op>)> {
    let rw = PROT_READ | PROT_WRITE;
    vec![
        // ---- mmap argument checks
        (
            "mmap_len_zero_einval",
            vec![
                open(0, O_RDONLY),
                Mmap {
                    addr: Addr::Null,
                    len: 0,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_unaligned_offset_beats_bad_fd",
            vec![Mmap {
                addr: Addr::Null,
                len: P,
                prot: PROT_READ,
                flags: MAP_PRIVATE,
                fd: 9,
                off: 100,
            }],
        ),
        (
            "mmap_bad_fd_ebadf",
            vec![Mmap {
                addr: Addr::Null,
                len: P,
                prot: PROT_READ,
                flags: MAP_PRIVATE,
                fd: 9,
                off: 0,
            }],
        ),
        (
            "mmap_fd_minus_one_ebadf",
            vec![Mmap {
                addr: Addr::Null,
                len: P,
                prot: PROT_READ,
                flags: MAP_SHARED,
                fd: 255,
                off: 0,
            }],
        ),
        (
            "mmap_bad_fd_beats_len_zero",
            vec![Mmap {
                addr: Addr::Null,
                len: 0,
                prot: PROT_READ,
                flags: MAP_PRIVATE,
                fd: 9,
                off: 0,
            }],
        ),
        (
            "mmap_no_type_file_einval",
            vec![
                open(0, O_RDONLY),
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_READ,
                    flags: 0,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_no_type_anon_einval",
            vec![Mmap {
                addr: Addr::Null,
                len: P,
                prot: PROT_READ,
                flags: MAP_ANONYMOUS,
                fd: 255,
                off: 0,
            }],
        ),
        (
            "mmap_fixed_unaligned_einval",
            vec![Mmap {
                addr: Addr::Win(0x123),
                len: P,
                prot: PROT_READ,
                flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                fd: 255,
                off: 0,
            }],
        ),
        (
            "mmap_shared_validate_anon_einval",
            vec![Mmap {
                addr: Addr::Null,
                len: P,
                prot: PROT_READ,
                flags: MAP_SHARED_VALIDATE | MAP_ANONYMOUS,
                fd: 255,
                off: 0,
            }],
        ),
        (
            "mmap_anon_unaligned_offset_einval",
            vec![Mmap {
                addr: Addr::Null,
                len: P,
                prot: PROT_READ,
                flags: MAP_PRIVATE | MAP_ANONYMOUS,
                fd: 255,
                off: 100,
            }],
        ),
        (
            "mmap_anon_ignores_fd_and_offset",
            vec![
                open(0, O_RDONLY),
                Mmap {
                    addr: Addr::Win(0),
                    len: P,
                    prot: rw,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                    fd: 0,
                    off: 4096,
                },
                load(0, 8),
                Maps,
            ],
        ),
        (
            "mmap_huge_len_enomem",
            vec![Mmap {
                addr: Addr::Null,
                len: u64::MAX - 4095,
                prot: PROT_READ,
                flags: MAP_PRIVATE | MAP_ANONYMOUS,
                fd: 255,
                off: 0,
            }],
        ),
        (
            "mmap_negative_offset_eoverflow",
            vec![
                open(0, O_RDONLY),
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE,
                    fd: 0,
                    off: -4096,
                },
            ],
        ),
        (
            "mmap_unknown_prot_bit_accepted",
            vec![anon(0, 1, PROT_READ | 0x100), Maps],
        ),
        (
            "mmap_fixed_noreplace_eexist",
            vec![
                anon(0, 2, PROT_READ),
                Mmap {
                    addr: Addr::Win(P),
                    len: 2 * P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                    fd: 255,
                    off: 0,
                },
                Maps,
            ],
        ),
        (
            "mmap_fixed_noreplace_free_ok",
            vec![
                Mmap {
                    addr: Addr::Win(P),
                    len: 2 * P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                    fd: 255,
                    off: 0,
                },
                Maps,
            ],
        ),
        (
            "mmap_fixed_replaces",
            vec![
                anon(0, 4, rw),
                store(P, b"x"),
                anon(1, 1, PROT_READ),
                load(P, 1),
                Maps,
            ],
        ),
        (
            "mmap_hint_free_is_used",
            vec![Mmap {
                addr: Addr::Win(8 * P),
                len: P,
                prot: PROT_READ,
                flags: MAP_PRIVATE | MAP_ANONYMOUS,
                fd: 255,
                off: 0,
            }],
        ),
        (
            "mmap_hint_unaligned_rounds_down",
            vec![Mmap {
                addr: Addr::Win(8 * P + 0x123),
                len: P,
                prot: PROT_READ,
                flags: MAP_PRIVATE | MAP_ANONYMOUS,
                fd: 255,
                off: 0,
            }],
        ),
        (
            "mmap_hint_taken_goes_elsewhere",
            vec![
                anon(8, 1, PROT_READ),
                Mmap {
                    addr: Addr::Win(8 * P),
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS,
                    fd: 255,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_wronly_fd_eacces",
            vec![
                open(0, O_WRONLY),
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_wronly_fd_shared_eacces",
            vec![
                open(0, O_WRONLY),
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_WRITE,
                    flags: MAP_SHARED,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_rdonly_shared_write_eacces",
            vec![
                open(0, O_RDONLY),
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: rw,
                    flags: MAP_SHARED,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_rdonly_private_write_ok",
            vec![
                open(0, O_RDONLY),
                fmap(0, 1, rw, MAP_PRIVATE, 0, 0),
                store(0, b"zz"),
                load(0, 4),
                Maps,
            ],
        ),
        (
            "mprotect_write_on_rdonly_shared_eacces",
            vec![
                open(0, O_RDONLY),
                fmap(0, 1, PROT_READ, MAP_SHARED, 0, 0),
                Mprotect {
                    addr: 0,
                    len: P,
                    prot: rw,
                },
                Mprotect {
                    addr: 0,
                    len: P,
                    prot: PROT_READ | PROT_EXEC,
                },
                Maps,
            ],
        ),
        (
            "mmap_directory_enodev",
            vec![
                Open {
                    target: Target::Dir,
                    flags: O_RDONLY,
                },
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_fifo_enodev",
            vec![
                Open {
                    target: Target::Fifo,
                    flags: O_RDONLY,
                },
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_SHARED,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_dev_null_enodev",
            vec![
                Open {
                    target: Target::DevNull,
                    flags: O_RDWR,
                },
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_dev_zero_private_is_anonymous",
            vec![
                Open {
                    target: Target::DevZero,
                    flags: O_RDWR,
                },
                fmap(0, 2, rw, MAP_PRIVATE, 0, 0),
                load(0, 4),
                store(P, b"abc"),
                load(P, 4),
                Maps,
            ],
        ),
        (
            "mmap_dev_zero_shared",
            vec![
                Open {
                    target: Target::DevZero,
                    flags: O_RDWR,
                },
                fmap(0, 2, rw, MAP_SHARED, 0, 0),
                store(10, b"abc"),
                load(8, 8),
                Maps,
            ],
        ),
        (
            "mmap_shared_validate_unknown_flag_eopnotsupp",
            vec![
                open(0, O_RDWR),
                Mmap {
                    addr: Addr::Null,
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_SHARED_VALIDATE | 0x80_0000,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_shared_unknown_flag_ignored",
            vec![
                open(0, O_RDWR),
                fmap(0, 1, PROT_READ, MAP_SHARED | 0x80_0000, 0, 0),
                Maps,
            ],
        ),
        (
            "mmap_shared_validate_noreplace_eopnotsupp",
            vec![
                open(0, O_RDWR),
                Mmap {
                    addr: Addr::Win(0),
                    len: P,
                    prot: PROT_READ,
                    flags: MAP_SHARED_VALIDATE | MAP_FIXED_NOREPLACE,
                    fd: 0,
                    off: 0,
                },
            ],
        ),
        (
            "mmap_adjacent_anonymous_merge",
            vec![anon(4, 1, rw), anon(3, 1, rw), anon(5, 1, PROT_READ), Maps],
        ),
        (
            "mmap_populate_private_file",
            vec![
                open(0, O_RDONLY),
                Mmap {
                    addr: Addr::Win(0),
                    len: 3 * P,
                    prot: PROT_READ,
                    flags: MAP_PRIVATE | MAP_FIXED | MAP_POPULATE,
                    fd: 0,
                    off: 0,
                },
                Mincore {
                    addr: 0,
                    len: 3 * P,
                },
                load(9990, 16),
            ],
        ),
        // ---- munmap
        ("munmap_unaligned_einval", vec![Munmap { addr: 1, len: P }]),
        ("munmap_len_zero_einval", vec![Munmap { addr: 0, len: 0 }]),
        (
            "munmap_hole_ok",
            vec![Munmap {
                addr: 0,
                len: 8 * P,
            }],
        ),
        (
            "munmap_middle_splits",
            vec![
                anon(0, 3, rw),
                store(0, b"a"),
                store(2 * P, b"c"),
                Munmap { addr: P, len: P },
                Maps,
                load(0, 1),
                load(P, 1),
                load(2 * P, 1),
            ],
        ),
        (
            "munmap_spans_vmas_and_holes",
            vec![
                anon(0, 2, rw),
                anon(3, 2, PROT_READ),
                anon(6, 2, rw),
                Munmap {
                    addr: P,
                    len: 6 * P,
                },
                Maps,
            ],
        ),
        // ---- mprotect
        (
            "mprotect_unaligned_einval",
            vec![
                anon(0, 1, rw),
                Mprotect {
                    addr: 5,
                    len: P,
                    prot: PROT_READ,
                },
            ],
        ),
        (
            "mprotect_unknown_prot_einval",
            vec![
                anon(0, 1, rw),
                Mprotect {
                    addr: 0,
                    len: P,
                    prot: PROT_READ | 0x100,
                },
            ],
        ),
        (
            "mprotect_growsdown_and_up_einval",
            vec![
                anon(0, 1, rw),
                Mprotect {
                    addr: 0,
                    len: P,
                    prot: PROT_READ | PROT_GROWSDOWN | PROT_GROWSUP,
                },
            ],
        ),
        (
            "mprotect_growsdown_plain_vma_einval",
            vec![
                anon(0, 1, rw),
                Mprotect {
                    addr: 0,
                    len: P,
                    prot: PROT_READ | PROT_GROWSDOWN,
                },
            ],
        ),
        (
            "mprotect_len_zero_ok",
            vec![Mprotect {
                addr: 0,
                len: 0,
                prot: PROT_READ,
            }],
        ),
        (
            "mprotect_unmapped_enomem",
            vec![Mprotect {
                addr: 0,
                len: P,
                prot: PROT_READ,
            }],
        ),
        (
            "mprotect_hole_changes_first_part",
            vec![
                anon(0, 1, rw),
                anon(2, 1, rw),
                Mprotect {
                    addr: 0,
                    len: 3 * P,
                    prot: PROT_READ,
                },
                Maps,
                store(0, b"x"),
                store(2 * P, b"y"),
            ],
        ),
        (
            "mprotect_split_and_merge_back",
            vec![
                anon(0, 3, rw),
                Mprotect {
                    addr: P,
                    len: P,
                    prot: PROT_READ,
                },
                Maps,
                Mprotect {
                    addr: P,
                    len: P,
                    prot: rw,
                },
                Maps,
            ],
        ),
        (
            "mprotect_unaligned_len_rounds_up",
            vec![
                anon(0, 2, rw),
                Mprotect {
                    addr: 0,
                    len: 100,
                    prot: PROT_READ,
                },
                Maps,
            ],
        ),
        // ---- msync
        (
            "msync_sync_and_async_einval",
            vec![
                anon(0, 1, rw),
                Msync {
                    addr: 0,
                    len: P,
                    flags: MS_SYNC | MS_ASYNC,
                },
            ],
        ),
        (
            "msync_unknown_flag_einval",
            vec![
                anon(0, 1, rw),
                Msync {
                    addr: 0,
                    len: P,
                    flags: 0x100,
                },
            ],
        ),
        (
            "msync_unaligned_einval",
            vec![
                anon(0, 1, rw),
                Msync {
                    addr: 3,
                    len: P,
                    flags: MS_SYNC,
                },
            ],
        ),
        (
            "msync_unmapped_enomem",
            vec![Msync {
                addr: 0,
                len: P,
                flags: MS_SYNC,
            }],
        ),
        (
            "msync_hole_enomem",
            vec![
                anon(0, 1, rw),
                anon(2, 1, rw),
                Msync {
                    addr: 0,
                    len: 3 * P,
                    flags: MS_SYNC,
                },
            ],
        ),
        (
            "msync_len_zero_unmapped_ok",
            vec![Msync {
                addr: 0,
                len: 0,
                flags: MS_SYNC,
            }],
        ),
        (
            "msync_flags_zero_ok",
            vec![
                anon(0, 1, rw),
                Msync {
                    addr: 0,
                    len: P,
                    flags: 0,
                },
            ],
        ),
        (
            "msync_invalidate_ok",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_SHARED, 0, 0),
                Msync {
                    addr: 0,
                    len: 3 * P,
                    flags: MS_INVALIDATE,
                },
                Msync {
                    addr: 0,
                    len: 3 * P,
                    flags: MS_SYNC | MS_INVALIDATE,
                },
            ],
        ),
        (
            "msync_locked_invalidate_ebusy",
            vec![
                Mmap {
                    addr: Addr::Win(0),
                    len: P,
                    prot: rw,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_LOCKED,
                    fd: 255,
                    off: 0,
                },
                Msync {
                    addr: 0,
                    len: P,
                    flags: MS_INVALIDATE,
                },
            ],
        ),
        // ---- madvise
        (
            "madvise_unknown_advice_einval",
            vec![
                anon(0, 1, rw),
                Madvise {
                    addr: 0,
                    len: P,
                    advice: 999,
                },
                Madvise {
                    addr: 0,
                    len: 0,
                    advice: 999,
                },
            ],
        ),
        (
            "madvise_unaligned_einval",
            vec![
                anon(0, 1, rw),
                Madvise {
                    addr: 1,
                    len: P,
                    advice: MADV_NORMAL,
                },
            ],
        ),
        (
            "madvise_len_zero_ok",
            vec![Madvise {
                addr: 0,
                len: 0,
                advice: MADV_DONTNEED,
            }],
        ),
        (
            "madvise_unmapped_enomem",
            vec![Madvise {
                addr: 0,
                len: P,
                advice: MADV_NORMAL,
            }],
        ),
        (
            "madvise_hole_enomem_but_applied",
            vec![
                anon(0, 1, rw),
                anon(2, 1, rw),
                store(0, b"a"),
                store(2 * P, b"b"),
                Madvise {
                    addr: 0,
                    len: 3 * P,
                    advice: MADV_DONTNEED,
                },
                load(0, 1),
                load(2 * P, 1),
            ],
        ),
        (
            "madvise_dontneed_private_anon_zero",
            vec![
                anon(0, 2, rw),
                store(5, b"data"),
                Madvise {
                    addr: 0,
                    len: 2 * P,
                    advice: MADV_DONTNEED,
                },
                load(0, 12),
            ],
        ),
        (
            "madvise_dontneed_shared_anon_keeps",
            vec![
                Mmap {
                    addr: Addr::Win(0),
                    len: P,
                    prot: rw,
                    flags: MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
                    fd: 255,
                    off: 0,
                },
                store(5, b"keep"),
                Madvise {
                    addr: 0,
                    len: P,
                    advice: MADV_DONTNEED,
                },
                load(0, 12),
            ],
        ),
        (
            "madvise_dontneed_private_file_rereads",
            vec![
                open(0, O_RDONLY),
                fmap(0, 2, rw, MAP_PRIVATE, 0, 0),
                store(0, b"PRIVATE"),
                load(0, 8),
                Madvise {
                    addr: 0,
                    len: 2 * P,
                    advice: MADV_DONTNEED,
                },
                load(0, 8),
            ],
        ),
        (
            "madvise_locked_dontneed_einval",
            vec![
                Mmap {
                    addr: Addr::Win(0),
                    len: P,
                    prot: rw,
                    flags: MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_LOCKED,
                    fd: 255,
                    off: 0,
                },
                Madvise {
                    addr: 0,
                    len: P,
                    advice: MADV_DONTNEED,
                },
            ],
        ),
        (
            "madvise_hints_accepted",
            vec![
                open(0, O_RDONLY),
                fmap(0, 3, PROT_READ, MAP_PRIVATE, 0, 0),
                Madvise {
                    addr: 0,
                    len: 3 * P,
                    advice: MADV_RANDOM,
                },
                Madvise {
                    addr: 0,
                    len: 3 * P,
                    advice: MADV_SEQUENTIAL,
                },
                Madvise {
                    addr: 0,
                    len: 3 * P,
                    advice: MADV_WILLNEED,
                },
                Madvise {
                    addr: 0,
                    len: 3 * P,
                    advice: MADV_NORMAL,
                },
                Maps,
            ],
        ),
        // ---- mincore
        (
            "mincore_unaligned_einval",
            vec![anon(0, 1, rw), Mincore { addr: 1, len: P }],
        ),
        ("mincore_unmapped_enomem", vec![Mincore { addr: 0, len: P }]),
        ("mincore_len_zero_ok", vec![Mincore { addr: 0, len: 0 }]),
        (
            "mincore_anon_touched_and_not",
            vec![
                anon(0, 3, rw),
                store(0, b"x"),
                load(2 * P, 1),
                Mincore {
                    addr: 0,
                    len: 3 * P,
                },
                Mincore { addr: 0, len: 100 },
            ],
        ),
        (
            "mincore_file_past_eof_zero",
            vec![
                open(0, O_RDONLY),
                fmap(0, 4, PROT_READ, MAP_SHARED, 0, 0),
                load(0, 1),
                Mincore {
                    addr: 3 * P,
                    len: P,
                },
            ],
        ),
        // ---- mremap
        (
            "mremap_unaligned_einval",
            vec![
                anon(0, 1, rw),
                Mremap {
                    addr: 1,
                    old_len: P,
                    new_len: P,
                    flags: 0,
                    new_addr: 0,
                },
            ],
        ),
        (
            "mremap_new_len_zero_einval",
            vec![
                anon(0, 1, rw),
                Mremap {
                    addr: 0,
                    old_len: P,
                    new_len: 0,
                    flags: MREMAP_MAYMOVE,
                    new_addr: 0,
                },
            ],
        ),
        (
            "mremap_unknown_flag_einval",
            vec![
                anon(0, 1, rw),
                Mremap {
                    addr: 0,
                    old_len: P,
                    new_len: P,
                    flags: 8,
                    new_addr: 0,
                },
            ],
        ),
        (
            "mremap_fixed_without_maymove_einval",
            vec![
                anon(0, 1, rw),
                Mremap {
                    addr: 0,
                    old_len: P,
                    new_len: P,
                    flags: MREMAP_FIXED,
                    new_addr: 8 * P,
                },
            ],
        ),
        (
            "mremap_unmapped_efault",
            vec![Mremap {
                addr: 0,
                old_len: P,
                new_len: 2 * P,
                flags: MREMAP_MAYMOVE,
                new_addr: 0,
            }],
        ),
        (
            "mremap_grow_blocked_enomem",
            vec![
                anon(0, 1, rw),
                anon(1, 1, PROT_READ),
                Mremap {
                    addr: 0,
                    old_len: P,
                    new_len: 2 * P,
                    flags: 0,
                    new_addr: 0,
                },
            ],
        ),
        (
            "mremap_old_len_zero_private_einval",
            vec![
                anon(0, 1, rw),
                Mremap {
                    addr: 0,
                    old_len: 0,
                    new_len: P,
                    flags: MREMAP_MAYMOVE,
                    new_addr: 0,
                },
            ],
        ),
        (
            "mremap_fixed_overlap_einval",
            vec![
                anon(0, 2, rw),
                Mremap {
                    addr: 0,
                    old_len: 2 * P,
                    new_len: 2 * P,
                    flags: MREMAP_MAYMOVE | MREMAP_FIXED,
                    new_addr: P,
                },
            ],
        ),
        (
            "mremap_grow_across_vmas_efault",
            vec![
                anon(0, 1, rw),
                anon(1, 1, PROT_READ),
                Mremap {
                    addr: 0,
                    old_len: 2 * P,
                    new_len: 3 * P,
                    flags: MREMAP_MAYMOVE,
                    new_addr: 0,
                },
            ],
        ),
        (
            "mremap_grow_in_place",
            vec![
                anon(0, 1, rw),
                store(0, b"grow"),
                Mremap {
                    addr: 0,
                    old_len: P,
                    new_len: 3 * P,
                    flags: 0,
                    new_addr: 0,
                },
                load(0, 4),
                load(2 * P, 4),
                Maps,
            ],
        ),
        (
            "mremap_fixed_moves_data",
            vec![
                anon(0, 2, rw),
                store(0, b"one"),
                store(P, b"two"),
                Mremap {
                    addr: 0,
                    old_len: 2 * P,
                    new_len: 2 * P,
                    flags: MREMAP_MAYMOVE | MREMAP_FIXED,
                    new_addr: 10 * P,
                },
                load(10 * P, 3),
                load(11 * P, 3),
                load(0, 1),
                Maps,
            ],
        ),
        (
            "mremap_fixed_moves_file_mapping",
            vec![
                open(0, O_RDWR),
                fmap(0, 2, rw, MAP_SHARED, 0, 0),
                store(100, b"moved"),
                Mremap {
                    addr: 0,
                    old_len: 2 * P,
                    new_len: 3 * P,
                    flags: MREMAP_MAYMOVE | MREMAP_FIXED,
                    new_addr: 20 * P,
                },
                load(20 * P + 100, 5),
                Maps,
            ],
        ),
        (
            "mremap_shrink",
            vec![
                anon(0, 3, rw),
                Mremap {
                    addr: 0,
                    old_len: 3 * P,
                    new_len: P,
                    flags: 0,
                    new_addr: 0,
                },
                Maps,
                load(2 * P, 1),
            ],
        ),
        // ---- accesses: signals
        ("load_unmapped_segv_maperr", vec![load(0, 1)]),
        (
            "store_readonly_segv_accerr",
            vec![anon(0, 1, PROT_READ), store(0, b"x")],
        ),
        (
            "load_prot_none_segv_accerr",
            vec![anon(0, 1, PROT_NONE), load(0, 1), store(0, b"x")],
        ),
        (
            "load_exec_only_allowed",
            vec![anon(0, 1, PROT_EXEC), load(0, 4), store(0, b"x")],
        ),
        (
            "load_write_only_allowed",
            vec![
                anon(0, 1, PROT_WRITE),
                load(0, 4),
                store(0, b"x"),
                load(0, 1),
            ],
        ),
        (
            "load_spanning_into_unmapped_page",
            vec![anon(0, 1, rw), load(P - 4, 8)],
        ),
        (
            "file_tail_zero_then_sigbus",
            vec![
                open(0, O_RDONLY),
                fmap(0, 4, PROT_READ, MAP_SHARED, 0, 0),
                load(9999, 1),
                load(10_000, 8),
                load(3 * P - 1, 1),
                load(3 * P, 1),
                load(3 * P + 100, 1),
            ],
        ),
        (
            "private_file_sigbus_past_eof",
            vec![
                open(0, O_RDONLY),
                fmap(0, 4, rw, MAP_PRIVATE, 0, 0),
                store(3 * P, b"x"),
                store(2 * P + 2000, b"tail"),
            ],
        ),
        (
            "truncate_then_sigbus",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_SHARED, 0, 0),
                load(5000, 4),
                Ftruncate { fd: 0, len: 4096 },
                load(4095, 1),
                load(5000, 1),
            ],
        ),
        (
            "truncate_drops_private_copy",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_PRIVATE, 0, 0),
                store(5000, b"cow"),
                Ftruncate { fd: 0, len: 4096 },
                load(5000, 1),
            ],
        ),
        (
            "truncate_grow_reads_zero",
            vec![
                open(0, O_RDWR),
                fmap(0, 4, rw, MAP_SHARED, 0, 0),
                load(9990, 10),
                Ftruncate { fd: 0, len: 14_000 },
                load(9995, 16),
                load(13_000, 4),
            ],
        ),
        // ---- files and mappings together
        (
            "write_visible_through_shared_mapping",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, PROT_READ, MAP_SHARED, 0, 0),
                load(0, 4),
                Pwrite {
                    fd: 0,
                    data: b"WRITTEN".to_vec(),
                    off: 0,
                },
                load(0, 8),
            ],
        ),
        (
            "store_visible_to_read",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_SHARED, 0, 0),
                store(4100, b"STORED"),
                Pread {
                    fd: 0,
                    len: 8,
                    off: 4098,
                },
            ],
        ),
        (
            "private_sees_file_until_copied",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_PRIVATE, 0, 0),
                load(0, 4),
                Pwrite {
                    fd: 0,
                    data: b"NEW1".to_vec(),
                    off: 0,
                },
                load(0, 4),
                store(0, b"mine"),
                Pwrite {
                    fd: 0,
                    data: b"NEW2".to_vec(),
                    off: 0,
                },
                load(0, 4),
                Pread {
                    fd: 0,
                    len: 4,
                    off: 0,
                },
            ],
        ),
        (
            "shared_store_past_eof_not_in_file",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_SHARED, 0, 0),
                store(10_500, b"QQ"),
                Msync {
                    addr: 0,
                    len: 3 * P,
                    flags: MS_SYNC,
                },
                load(10_500, 2),
                Fsync { fd: 0 },
            ],
        ),
        (
            "mapping_outlives_close",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_SHARED, 0, 0),
                Close { fd: 0 },
                store(0, b"after close"),
                Msync {
                    addr: 0,
                    len: 3 * P,
                    flags: MS_SYNC,
                },
                load(0, 11),
            ],
        ),
        (
            "msync_async_ok",
            vec![
                open(1, O_RDWR),
                fmap(0, 3, rw, MAP_SHARED, 0, 0),
                store(P, b"async"),
                Msync {
                    addr: 0,
                    len: 3 * P,
                    flags: MS_ASYNC,
                },
            ],
        ),
        (
            "append_write_extends",
            vec![
                Open {
                    target: Target::File(1),
                    flags: O_RDWR | O_APPEND,
                },
                Write {
                    fd: 0,
                    data: b"appended".to_vec(),
                },
                Lseek {
                    fd: 0,
                    off: 0,
                    whence: SEEK_CUR,
                },
                Lseek {
                    fd: 0,
                    off: 0,
                    whence: SEEK_END,
                },
            ],
        ),
        // ---- fork
        (
            "fork_private_anon_isolated_both_ways",
            vec![
                anon(0, 2, rw),
                store(0, b"before"),
                Fork,
                Switch { proc: 1 },
                load(0, 6),
                store(0, b"child!"),
                Switch { proc: 0 },
                load(0, 6),
                store(2, b"PP"),
                Switch { proc: 1 },
                load(0, 6),
                Maps,
                Exit,
                load(0, 6),
            ],
        ),
        (
            "fork_shared_file_seen_both_ways",
            vec![
                open(0, O_RDWR),
                fmap(0, 3, rw, MAP_SHARED, 0, 0),
                Fork,
                Switch { proc: 1 },
                store(10, b"kid"),
                Switch { proc: 0 },
                load(8, 8),
                store(4100, b"dad"),
                Switch { proc: 1 },
                load(4098, 8),
                Msync {
                    addr: 0,
                    len: 3 * P,
                    flags: MS_SYNC,
                },
                Exit,
            ],
        ),
        (
            "fork_shared_anon_seen_both_ways",
            vec![
                Mmap {
                    addr: Addr::Win(0),
                    len: P,
                    prot: rw,
                    flags: MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED,
                    fd: 255,
                    off: 0,
                },
                Fork,
                Switch { proc: 1 },
                store(0, b"x"),
                Switch { proc: 0 },
                load(0, 1),
            ],
        ),
        (
            "fork_private_file_cow",
            vec![
                open(0, O_RDONLY),
                fmap(0, 2, rw, MAP_PRIVATE, 0, 0),
                store(0, b"P"),
                Fork,
                Switch { proc: 1 },
                store(1, b"C"),
                load(0, 4),
                Switch { proc: 0 },
                load(0, 4),
            ],
        ),
        (
            "fork_dontfork_wipeonfork",
            vec![
                anon(0, 1, rw),
                anon(2, 1, rw),
                store(0, b"a"),
                store(2 * P, b"b"),
                Madvise {
                    addr: 0,
                    len: P,
                    advice: MADV_DONTFORK,
                },
                Madvise {
                    addr: 2 * P,
                    len: P,
                    advice: MADV_WIPEONFORK,
                },
                Fork,
                Switch { proc: 1 },
                load(0, 1),
                load(2 * P, 1),
                Maps,
                Switch { proc: 0 },
                load(2 * P, 1),
            ],
        ),
        (
            "fork_child_inherits_fds",
            vec![
                open(0, O_RDWR),
                Fork,
                Switch { proc: 1 },
                Pwrite {
                    fd: 0,
                    data: b"child wrote".to_vec(),
                    off: 0,
                },
                Exit,
                Pread {
                    fd: 0,
                    len: 11,
                    off: 0,
                },
            ],
        ),
        (
            "fork_child_munmap_leaves_parent",
            vec![
                anon(0, 2, rw),
                store(0, b"keep"),
                Fork,
                Switch { proc: 1 },
                Munmap {
                    addr: 0,
                    len: 2 * P,
                },
                load(0, 1),
                Switch { proc: 0 },
                load(0, 4),
                Maps,
            ],
        ),
        // ---- file syscall errors
        (
            "open_missing_enoent",
            vec![Open {
                target: Target::Missing,
                flags: O_RDONLY,
            }],
        ),
        (
            "open_dir_for_write_eisdir",
            vec![Open {
                target: Target::Dir,
                flags: O_RDWR,
            }],
        ),
        (
            "open_create",
            vec![
                Open {
                    target: Target::Missing,
                    flags: O_RDWR | O_CREAT,
                },
                Write {
                    fd: 0,
                    data: b"new".to_vec(),
                },
                Pread {
                    fd: 0,
                    len: 10,
                    off: 0,
                },
            ],
        ),
        (
            "read_on_wronly_ebadf",
            vec![open(0, O_WRONLY), Read { fd: 0, len: 4 }],
        ),
        (
            "write_on_rdonly_ebadf",
            vec![
                open(0, O_RDONLY),
                Write {
                    fd: 0,
                    data: b"x".to_vec(),
                },
            ],
        ),
        (
            "ftruncate_rdonly_einval",
            vec![open(0, O_RDONLY), Ftruncate { fd: 0, len: 10 }],
        ),
        (
            "ftruncate_negative_einval",
            vec![open(0, O_RDWR), Ftruncate { fd: 0, len: -1 }],
        ),
        (
            "lseek_negative_einval",
            vec![
                open(0, O_RDONLY),
                Lseek {
                    fd: 0,
                    off: -5,
                    whence: SEEK_SET,
                },
            ],
        ),
        (
            "lseek_bad_whence_einval",
            vec![
                open(0, O_RDONLY),
                Lseek {
                    fd: 0,
                    off: 0,
                    whence: 9,
                },
            ],
        ),
        (
            "lseek_fifo_espipe",
            vec![
                Open {
                    target: Target::Fifo,
                    flags: O_RDONLY,
                },
                Lseek {
                    fd: 0,
                    off: 0,
                    whence: SEEK_SET,
                },
            ],
        ),
        (
            "read_directory_eisdir",
            vec![
                Open {
                    target: Target::Dir,
                    flags: O_RDONLY,
                },
                Read { fd: 0, len: 4 },
            ],
        ),
        (
            "close_twice_ebadf",
            vec![open(0, O_RDONLY), Close { fd: 0 }, Close { fd: 0 }],
        ),
        (
            "pread_negative_einval",
            vec![
                open(0, O_RDONLY),
                Pread {
                    fd: 0,
                    len: 4,
                    off: -1,
                },
            ],
        ),
        (
            "read_past_eof_empty",
            vec![
                open(0, O_RDONLY),
                Pread {
                    fd: 0,
                    len: 4,
                    off: 20_000,
                },
            ],
        ),
        (
            "fsync_fifo_einval",
            vec![
                Open {
                    target: Target::Fifo,
                    flags: O_RDONLY,
                },
                Fsync { fd: 0 },
            ],
        ),
    ]
}

fn oracle() -> Oracle {
    Oracle::spawn(env!("CARGO_BIN_EXE_vmem-oracle").as_ref()).expect("start vmem-oracle")
}

#[test]
fn every_directed_case_matches_linux() {
    let mut o = oracle();
    let tmp = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    let all = cases();
    let n = all.len();
    let mut ops = 0;
    for (name, case_ops) in all {
        ops += case_ops.len();
        let sc = Scenario {
            files: files(),
            ops: case_ops,
            direct: false,
        };
        let root = tmp.path().join(name);
        let (_model, real, d) =
            run_both(&mut o, &sc, &root, MachineConfig::default()).expect("run");
        if !d.is_empty() {
            println!("DIVERGES {name}:\n{}", vmem_conformance::render(&sc));
            for x in &d {
                println!("  {x}");
            }
            failed.push(name);
        } else {
            println!("ok {name}: {:?}", real.outcomes.last());
        }
    }
    println!(
        "directed: {n} cases, {ops} operations, {} divergences",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "cases that differ from Linux: {failed:?}"
    );
}
