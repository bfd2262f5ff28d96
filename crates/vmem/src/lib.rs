//! # vmem — the emulated machine
//!
//! A machine with real RAM (one byte arena), an MMU that walks page tables stored in that
//! RAM (x86-64 by default; 32-bit x86, RISC-V Sv39 and arm64 as machine settings; 16 and
//! 64 KiB pages, on arm64, with the `page-16k` / `page-64k` features), a TLB, and a
//! Linux-like kernel whose memory manager implements `mmap` over real files: demand paging, a shared page cache, copy-on-write, `msync`, `munmap`,
//! `mprotect`, `madvise`, `mremap`, `mincore`, and the errno and signals Linux gives.
//!
//! ```
//! use vmem::{Kernel, MachineConfig, VirtAddr, consts::*};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data.txt");
//! std::fs::write(&path, b"hello, mmap").unwrap();
//!
//! let mut k = Kernel::new(MachineConfig::default());
//! let p = k.spawn().unwrap();
//! let fd = k.open(p, &path, O_RDONLY, 0).unwrap();
//! let va = k.mmap(p, VirtAddr(0), 4096, PROT_READ, MAP_PRIVATE, fd, 0).unwrap();
//! assert_eq!(k.stats().disk_reads, 0); // nothing loaded yet
//! assert_eq!(k.load_vec(p, va, 5).unwrap(), b"hello");
//! assert_eq!(k.stats().major_faults, 1); // the first touch read the page from disk
//! ```
//!
//! ## Map of the modules
//! - [`addr`]: typed addresses and page numbers. [`errno`], [`signal`]: what calls and
//!   accesses return on failure. [`consts`]: the C constants. [`config`]: machine settings.
//! - [`hw`]: the hardware — [`hw::phys`] (frames), [`hw::pte`] (the kernel's entry),
//!   [`hw::pte_format`] (the x86-64, i386, Sv39 and arm64 entries in RAM), [`hw::walk`] (the
//!   walker), [`hw::tlb`], [`hw::mmu`]. It reports faults, never handles them.
//! - [`mm`]: the memory manager — VMAs, one file per syscall, the fault handler, page tables.
//! - [`cache`]: the page cache, read-around, write-back, truncation.
//! - [`fs`]: inodes, open files, file syscalls, the [`fs::store::Store`] trait.
//! - [`kernel`]: [`Kernel`], processes, memory access entry points; [`batch`]: batches of
//!   accesses, as a trace replayer runs them.
//! - [`events`]: the event stream for explain mode; [`stats`]: counters.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod addr;
pub mod batch;
pub mod cache;
pub mod config;
pub mod consts;
pub mod errno;
pub mod events;
pub mod exec;
pub mod fs;
pub mod hw;
pub mod kernel;
pub mod mm;
pub mod process;
pub mod reclaim;
pub mod signal;
pub mod stats;
pub mod trainer;

pub use addr::{Pfn, PgOff, PhysAddr, VirtAddr, Vpn, PAGE_SIZE};
pub use batch::TraceAccess;
pub use config::{MachineConfig, PagingGeometry};
pub use errno::{Errno, SysResult};
pub use events::{Event, FaultKind, Observer};
pub use hw::mmu::Access;
pub use kernel::Kernel;
pub use process::Pid;
pub use signal::{BusCode, SegvCode, Signal};
pub use stats::Counters;
