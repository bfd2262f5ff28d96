//! Physical memory holds RAM and device registers: a process maps a device file
//! (`/dev/vmem/console`, `/dev/vmem/timer`) MAP_SHARED and its loads and stores go to the
//! device, not to RAM; each access can be seen as its bus transaction.
// Written with the default build's 4 KiB pages in its numbers (x86 and RISC-V geometries,
// file sizes, counts of 4 KiB pages): it runs in that build; tests/page_sizes.rs covers the
// 16 and 64 KiB builds.
#![cfg(not(any(feature = "page-16k", feature = "page-64k")))]

use vmem::consts::*;
use vmem::events::{Event, Recorder};
use vmem::hw::device::{Console, Timer};
use vmem::{Errno, Kernel, VirtAddr};

#[test]
fn stores_to_the_console_data_register_print() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, "/dev/vmem/console", O_RDWR, 0).unwrap();
    let before = k.frames_in_use();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            vmem::PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    for b in b"hello, bus" {
        k.store_u8(p, va.add(Console::DATA), *b).unwrap();
    }
    assert_eq!(k.console_output(), b"hello, bus");
    assert_eq!(k.load_u64(p, va.add(Console::STATUS)).unwrap(), 1);
    assert_eq!(k.load_u64(p, va.add(Console::COUNT)).unwrap(), 10);
    // The mapping is the device's register page: no RAM frame was used.
    assert_eq!(
        k.frames_in_use(),
        before + 3,
        "only page tables (PUD, PMD, PTE) were allocated"
    );
    let (_, base, _) = k.devices().into_iter().find(|d| d.0 == "console").unwrap();
    assert_eq!(k.frame_of(p, va).unwrap().addr(), base);
    // write() on the device file prints too.
    k.write(p, fd, b"!").unwrap();
    assert_eq!(k.console_output(), b"!");
    k.check_invariants().unwrap();
    k.exit(p).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn the_timer_counts_and_resets_through_its_registers() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, "/dev/vmem/timer", O_RDWR, 0).unwrap();
    let va = k
        .mmap(
            p,
            VirtAddr(0),
            vmem::PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    let c = va.add(Timer::COUNT);
    assert_eq!(k.load_u64(p, c).unwrap(), 0);
    assert_eq!(k.load_u64(p, c).unwrap(), 1);
    k.store_u64(p, va.add(Timer::STEP), 100).unwrap();
    k.store_u64(p, va.add(Timer::RESET), 0).unwrap();
    assert_eq!(k.load_u64(p, c).unwrap(), 0);
    assert_eq!(k.load_u64(p, c).unwrap(), 100);
    // A forked child shares the device mapping.
    let child = k.fork(p).unwrap();
    assert_eq!(k.load_u64(child, c).unwrap(), 200);
}

#[test]
fn devices_refuse_private_mappings_and_ranges_past_their_registers() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, "/dev/vmem/console", O_RDWR, 0).unwrap();
    assert_eq!(
        k.mmap(
            p,
            VirtAddr(0),
            vmem::PAGE_SIZE,
            PROT_READ,
            MAP_PRIVATE,
            fd,
            0
        ),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.mmap(p, VirtAddr(0), 8192, PROT_READ, MAP_SHARED, fd, 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.mmap(
            p,
            VirtAddr(0),
            vmem::PAGE_SIZE,
            PROT_READ,
            MAP_SHARED,
            fd,
            vmem::PAGE_SIZE as i64
        ),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.open(p, "/dev/vmem/nonesuch", O_RDWR, 0),
        Err(Errno::ENOENT)
    );
}

#[test]
fn each_access_shows_as_a_bus_transaction() {
    let mut k = Kernel::default();
    let p = k.spawn().unwrap();
    let fd = k.open(p, "/dev/vmem/console", O_RDWR, 0).unwrap();
    let dev = k
        .mmap(
            p,
            VirtAddr(0),
            vmem::PAGE_SIZE,
            PROT_WRITE,
            MAP_SHARED,
            fd,
            0,
        )
        .unwrap();
    let ram = k
        .mmap(
            p,
            VirtAddr(0),
            vmem::PAGE_SIZE,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    let rec = Recorder::default();
    let events = rec.events.clone();
    k.set_observer(Some(Box::new(rec)));
    k.store_u8(p, dev, b'x').unwrap();
    k.store_u64(p, ram, 0x1122).unwrap();
    k.set_observer(None);
    let bus: Vec<(bool, &str, u64)> = events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            Event::Bus {
                write,
                target,
                data,
                ..
            } => Some((*write, *target, *data)),
            _ => None,
        })
        .collect();
    assert_eq!(
        bus,
        vec![(true, "console", u64::from(b'x')), (true, "RAM", 0x1122)]
    );
    let text = events
        .borrow()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("bus: WRITE") && text.contains("-> console"),
        "{text}"
    );
}

#[test]
fn a_register_load_after_its_tlb_entry_was_evicted_reads_the_device() {
    // With a one-entry TLB, every access to another page evicts the register page's
    // entry: the next load misses, refills from the page table and finds a device, not
    // RAM (the short path's refill hands it to the device read).
    let mut k = Kernel::new(vmem::MachineConfig {
        tlb_sets: 1,
        tlb_ways: 1,
        ..vmem::MachineConfig::default()
    });
    let p = k.spawn().unwrap();
    let fd = k.open(p, "/dev/vmem/console", O_RDWR, 0).unwrap();
    let rw = PROT_READ | PROT_WRITE;
    let dev = k
        .mmap(p, VirtAddr(0), vmem::PAGE_SIZE, rw, MAP_SHARED, fd, 0)
        .unwrap();
    let ram = k
        .mmap(
            p,
            VirtAddr(0),
            vmem::PAGE_SIZE,
            rw,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
        .unwrap();
    for (i, b) in b"abc".iter().enumerate() {
        k.store_u8(p, dev.add(Console::DATA), *b).unwrap();
        k.store_u64(p, ram, i as u64).unwrap();
        let misses = k.process_stats(p).unwrap().tlb_misses;
        assert_eq!(
            k.load_u64(p, dev.add(Console::COUNT)).unwrap(),
            i as u64 + 1
        );
        // One miss for the evicted register page: the refill, not a second lookup.
        let s = k.process_stats(p).unwrap();
        assert_eq!(s.tlb_misses, misses + 1, "{s:?}");
        k.store_u64(p, ram, 7).unwrap();
        assert_eq!(k.load_u8(p, dev.add(Console::COUNT)).unwrap(), i as u8 + 1);
        assert_eq!(k.load_u64(p, ram).unwrap(), 7);
    }
    assert_eq!(k.console_output(), b"abc");
}
