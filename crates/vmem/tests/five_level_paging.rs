//! A machine with 5-level paging (57-bit virtual addresses): the walker reads five tables,
//! and addresses above 128 TiB are usable when asked for, as with Linux's LA57.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::config::PagingGeometry;
use vmem::consts::*;
use vmem::events::{Event, Recorder};
use vmem::{Errno, Kernel, MachineConfig, VirtAddr};

#[test]
fn five_levels_are_walked_and_high_addresses_map() {
    let mut k = Kernel::new(MachineConfig {
        geometry: PagingGeometry::X86_64_5LEVEL,
        ..MachineConfig::default()
    });
    assert_eq!(k.task_size(), (1 << 56) - 4096);
    let p = k.spawn().unwrap();
    // Without a hint, mappings stay below 128 TiB, as on Linux.
    let low = k
        .mmap(
            p,
            VirtAddr(0),
            4096,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    assert!(low.0 < 1 << 47);
    let high = VirtAddr(1 << 52);
    let va = k
        .mmap(
            p,
            high,
            4096,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0,
        )
        .unwrap();
    assert_eq!(va, high);
    let rec = Recorder::default();
    let events = rec.events.clone();
    k.set_observer(Some(Box::new(rec)));
    k.store_u64(p, va, 57).unwrap();
    k.set_observer(None);
    assert_eq!(k.load_u64(p, va).unwrap(), 57);
    let levels: Vec<&str> = events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            Event::WalkStep { level, .. } => Some(*level),
            _ => None,
        })
        .collect();
    // The first walk stops at the empty PGD entry (a fault); the retry reads all five.
    assert_eq!(levels, ["PGD", "PGD", "P4D", "PUD", "PMD", "PTE"]);

    // The same address is out of range with 4 levels.
    let mut k4 = Kernel::default();
    let p4 = k4.spawn().unwrap();
    assert_eq!(
        k4.mmap(
            p4,
            high,
            4096,
            PROT_READ,
            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
            -1,
            0
        ),
        Err(Errno::ENOMEM)
    );
}
