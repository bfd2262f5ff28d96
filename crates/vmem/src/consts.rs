//! The C API's constants, with Linux x86-64 values.
//!
//! Owns the flag and mode numbers a C programmer passes to `open`, `mmap`, `mprotect`,
//! `msync`, `madvise`, `mremap` and `lseek`, so that code and scripts read like C.

#![allow(missing_docs)]

pub const PROT_NONE: i32 = 0x0;
pub const PROT_READ: i32 = 0x1;
pub const PROT_WRITE: i32 = 0x2;
pub const PROT_EXEC: i32 = 0x4;
pub const PROT_SEM: i32 = 0x8;
pub const PROT_GROWSDOWN: i32 = 0x0100_0000;
pub const PROT_GROWSUP: i32 = 0x0200_0000;

pub const MAP_SHARED: i32 = 0x01;
pub const MAP_PRIVATE: i32 = 0x02;
pub const MAP_SHARED_VALIDATE: i32 = 0x03;
pub const MAP_DROPPABLE: i32 = 0x08;
pub const MAP_TYPE: i32 = 0x0f;
pub const MAP_FIXED: i32 = 0x10;
pub const MAP_ANONYMOUS: i32 = 0x20;
pub const MAP_32BIT: i32 = 0x40;
pub const MAP_GROWSDOWN: i32 = 0x100;
pub const MAP_DENYWRITE: i32 = 0x800;
pub const MAP_EXECUTABLE: i32 = 0x1000;
pub const MAP_LOCKED: i32 = 0x2000;
pub const MAP_NORESERVE: i32 = 0x4000;
pub const MAP_POPULATE: i32 = 0x8000;
pub const MAP_NONBLOCK: i32 = 0x10000;
pub const MAP_STACK: i32 = 0x20000;
pub const MAP_HUGETLB: i32 = 0x40000;
pub const MAP_SYNC: i32 = 0x80000;
pub const MAP_FIXED_NOREPLACE: i32 = 0x10_0000;
pub const MAP_UNINITIALIZED: i32 = 0x400_0000;
pub const MAP_HUGE_SHIFT: i32 = 26;
pub const MAP_HUGE_MASK: i32 = 0x3f;
/// MAP_HUGETLB with 2 MiB pages (log2 of the size in the MAP_HUGE_SHIFT bits).
pub const MAP_HUGE_2MB: i32 = 21 << MAP_HUGE_SHIFT;
/// MAP_HUGETLB with 1 GiB pages (no such pool on this machine: EINVAL).
pub const MAP_HUGE_1GB: i32 = 30 << MAP_HUGE_SHIFT;
/// The flags `MAP_SHARED` has always accepted (Linux `LEGACY_MAP_MASK`); with
/// `MAP_SHARED_VALIDATE` any other bit is `EOPNOTSUPP`.
pub const LEGACY_MAP_MASK: i32 = MAP_SHARED
    | MAP_PRIVATE
    | MAP_FIXED
    | MAP_ANONYMOUS
    | MAP_DENYWRITE
    | MAP_EXECUTABLE
    | MAP_UNINITIALIZED
    | MAP_GROWSDOWN
    | MAP_LOCKED
    | MAP_NORESERVE
    | MAP_POPULATE
    | MAP_NONBLOCK
    | MAP_STACK
    | MAP_HUGETLB
    | MAP_32BIT
    | (MAP_HUGE_MASK << MAP_HUGE_SHIFT);

pub const MS_ASYNC: i32 = 1;
pub const MS_INVALIDATE: i32 = 2;
pub const MS_SYNC: i32 = 4;

pub const MADV_NORMAL: i32 = 0;
pub const MADV_RANDOM: i32 = 1;
pub const MADV_SEQUENTIAL: i32 = 2;
pub const MADV_WILLNEED: i32 = 3;
pub const MADV_DONTNEED: i32 = 4;
pub const MADV_FREE: i32 = 8;
pub const MADV_REMOVE: i32 = 9;
pub const MADV_DONTFORK: i32 = 10;
pub const MADV_DOFORK: i32 = 11;
pub const MADV_MERGEABLE: i32 = 12;
pub const MADV_UNMERGEABLE: i32 = 13;
pub const MADV_HUGEPAGE: i32 = 14;
pub const MADV_NOHUGEPAGE: i32 = 15;
pub const MADV_DONTDUMP: i32 = 16;
pub const MADV_DODUMP: i32 = 17;
pub const MADV_WIPEONFORK: i32 = 18;
pub const MADV_KEEPONFORK: i32 = 19;
pub const MADV_COLD: i32 = 20;
pub const MADV_PAGEOUT: i32 = 21;
pub const MADV_POPULATE_READ: i32 = 22;
pub const MADV_POPULATE_WRITE: i32 = 23;

pub const MREMAP_MAYMOVE: i32 = 1;
pub const MREMAP_FIXED: i32 = 2;
pub const MREMAP_DONTUNMAP: i32 = 4;

pub const O_RDONLY: i32 = 0;
pub const O_WRONLY: i32 = 1;
pub const O_RDWR: i32 = 2;
pub const O_ACCMODE: i32 = 3;
pub const O_CREAT: i32 = 0o100;
pub const O_EXCL: i32 = 0o200;
pub const O_NOCTTY: i32 = 0o400;
pub const O_TRUNC: i32 = 0o1000;
pub const O_APPEND: i32 = 0o2000;
pub const O_NONBLOCK: i32 = 0o4000;
pub const O_DIRECTORY: i32 = 0o200000;
pub const O_CLOEXEC: i32 = 0o2000000;

pub const SEEK_SET: i32 = 0;
pub const SEEK_CUR: i32 = 1;
pub const SEEK_END: i32 = 2;

/// Highest user address + 1 on x86-64 with 4-level paging (Linux `TASK_SIZE_MAX`).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
