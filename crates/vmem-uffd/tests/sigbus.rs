//! SIGBUS, as the kernel gives it: past the end of the store, and when the store cannot
//! produce a page. Probed in child processes (the probe dies); never a hang.

mod common;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::{child_scenario, file_with, no_core_dumps, pattern, run_child, Hostile};
use vmem_uffd::{Delivery, MapOptions, MemStore};

fn delivery_named(name: &str) -> Delivery {
    if name.ends_with("threads") {
        Delivery::Threads
    } else {
        Delivery::Signal
    }
}

fn say(what: &str) {
    println!("{what}");
    std::io::stdout().flush().unwrap();
}

/// Reads one byte through the raw pointer (the probe: may raise SIGBUS).
fn touch(map: &vmem_uffd::Mapping, at: usize) -> u8 {
    assert!(at < map.len());
    // SAFETY: inside the mapping; a SIGBUS there is what is being tested.
    unsafe { std::ptr::read_volatile(map.as_ptr().add(at)) }
}

fn child(scenario: &str) {
    no_core_dumps();
    let delivery = delivery_named(scenario);
    if scenario.starts_with("past-end") {
        let data = pattern(10_000);
        let file = file_with(&data);
        let map = MapOptions::new(file.reopen().unwrap())
            .length(64 << 10)
            .delivery(delivery)
            .map()
            .unwrap();
        assert_eq!(map.valid_len(), 10_000);
        assert_eq!(&map[..10_000], &data[..]);
        assert_eq!(
            touch(&map, 12_000),
            0,
            "the rest of the last page reads as zero"
        );
        say("before");
        touch(&map, 12_288); // the first page wholly past the end
        say("after");
    } else if scenario.starts_with("read-error") {
        let mut store = Hostile::new(MemStore::new(pattern(64 << 10)));
        store.bad_pages = vec![3];
        let no_poison = scenario.contains("fence");
        let mut opts = MapOptions::from_arc(Arc::new(store)).delivery(delivery);
        if no_poison {
            opts = opts.without_poison();
        }
        let map = opts.map().unwrap();
        // The good pages around the bad one read fine (read-ahead included).
        assert_eq!(touch(&map, 0), pattern(1)[0]);
        assert_eq!(
            touch(&map, 2 * 4096 + 1),
            pattern(2 * 4096 + 2)[2 * 4096 + 1]
        );
        assert_eq!(touch(&map, 4 * 4096), pattern(4 * 4096 + 1)[4 * 4096]);
        say("before");
        touch(&map, 3 * 4096 + 5);
        say("after");
    } else if scenario.starts_with("truncated") {
        // A file store is read through a window onto the file; truncated after mapping,
        // a page wholly past the new end raises SIGBUS (as the kernel's own mapping would)
        // and the pages before it still read right, whatever the page size.
        let page = if scenario.contains("64k") {
            64 << 10
        } else {
            4096
        };
        let data = pattern(1 << 20);
        let file = file_with(&data);
        let map = MapOptions::new(file.reopen().unwrap())
            .page_size(page)
            .read_ahead(0)
            .delivery(delivery)
            .map()
            .unwrap();
        file.as_file().set_len(3 * page as u64 + 100).unwrap();
        assert_eq!(touch(&map, 5), data[5]);
        assert_eq!(touch(&map, 2 * page + 7), data[2 * page + 7]);
        assert_eq!(touch(&map, 3 * page + 99), data[3 * page + 99]);
        say("before");
        touch(&map, 5 * page + 1);
        say("after");
    } else if scenario.starts_with("shrunk-run") {
        // Truncated in the middle of a read-ahead run: the copy from the file window
        // stops inside a pager page, after some of its system pages. That page is still
        // read and written as any other (a write to one of its copied system pages
        // included), and the pages wholly past the new end raise SIGBUS.
        let page = 64 << 10;
        let data = pattern(1 << 20);
        let file = file_with(&data);
        let map = MapOptions::new(file.reopen().unwrap())
            .page_size(page)
            .read_ahead(4)
            .delivery(delivery)
            .map()
            .unwrap();
        file.as_file().set_len(2 * page as u64 + 8192).unwrap();
        assert_eq!(touch(&map, 1), data[1]);
        // Sequential: pages 1.. in one run, which stops 8 KiB into page 2.
        assert_eq!(touch(&map, page + 1), data[page + 1]);
        // SAFETY: inside the mapping, in a page that holds file data.
        unsafe { std::ptr::write_volatile(map.as_ptr().add(2 * page + 3), 0x5a) };
        assert_eq!(touch(&map, 2 * page + 3), 0x5a);
        assert_eq!(touch(&map, 2 * page + 4100), data[2 * page + 4100]);
        assert_eq!(
            touch(&map, 2 * page + 8192 + 5),
            0,
            "past the end, same page"
        );
        say("before");
        touch(&map, 3 * page + 1);
        say("after");
    } else if scenario.starts_with("lying-store") {
        // The store claims 64 KiB but says "end of data" at 20000: not zeros, SIGBUS.
        let mut store = Hostile::new(MemStore::new(pattern(64 << 10)));
        store.lie_eof_at = Some(20_000);
        let map = MapOptions::from_arc(Arc::new(store))
            .read_ahead(0)
            .delivery(delivery)
            .map()
            .unwrap();
        assert_eq!(touch(&map, 10), pattern(11)[10]);
        say("before");
        touch(&map, 40_000);
        say("after");
    } else if scenario.starts_with("not-ours") {
        // Our handler is installed (a signal-delivery mapping exists); a SIGBUS from a
        // kernel mapping past the end of its file still kills, as without us.
        let _ours = MapOptions::new(MemStore::new(vec![1; 4096]))
            .delivery(Delivery::Signal)
            .map()
            .unwrap();
        let file = file_with(&[7u8; 100]);
        let f = file.reopen().unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only shared mapping of the file, two pages long.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the first page holds the file's bytes.
        assert_eq!(unsafe { std::ptr::read_volatile(p.cast::<u8>()) }, 7);
        say("before");
        // SAFETY: the second page is past the end of the file: SIGBUS is the point.
        unsafe { std::ptr::read_volatile(p.cast::<u8>().add(4096)) };
        say("after");
    } else if scenario.starts_with("chained") {
        // A handler installed before ours gets the SIGBUS we do not own.
        extern "C" fn mine(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
            // SAFETY: the kernel passes a valid siginfo; _exit is async-signal-safe.
            unsafe {
                let code = if (*info).si_code == libc::BUS_ADRERR {
                    42
                } else {
                    43
                };
                libc::_exit(code);
            }
        }
        // SAFETY: installs a valid SA_SIGINFO handler.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = mine as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
        }
        let data = pattern(5000);
        let map = MapOptions::new(MemStore::new(data))
            .length(16384)
            .delivery(delivery)
            .map()
            .unwrap();
        say("before");
        touch(&map, 8192);
        say("after");
    }
}

fn expect_sigbus(test: &str, scenario: &str) {
    let r = run_child(test, scenario, 60);
    r.assert_killed_by(libc::SIGBUS, scenario);
    assert!(
        r.stdout.contains("before"),
        "{scenario}: died too early:\n{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(!r.stdout.contains("after"), "{scenario}");
}

#[test]
fn touching_past_the_end_of_the_store_raises_sigbus() {
    if let Some(s) = child_scenario() {
        return child(&s);
    }
    for d in ["signal", "threads"] {
        expect_sigbus(
            "touching_past_the_end_of_the_store_raises_sigbus",
            &format!("past-end-{d}"),
        );
    }
}

#[test]
fn a_file_truncated_under_the_mapping_raises_sigbus_past_its_new_end() {
    if let Some(s) = child_scenario() {
        return child(&s);
    }
    for s in [
        "truncated-signal",
        "truncated-threads",
        "truncated-64k-signal",
        "truncated-64k-threads",
    ] {
        expect_sigbus(
            "a_file_truncated_under_the_mapping_raises_sigbus_past_its_new_end",
            s,
        );
    }
}

#[test]
fn a_file_truncated_inside_a_read_ahead_run_stays_usable_before_its_new_end() {
    if let Some(s) = child_scenario() {
        return child(&s);
    }
    for d in ["signal", "threads"] {
        expect_sigbus(
            "a_file_truncated_inside_a_read_ahead_run_stays_usable_before_its_new_end",
            &format!("shrunk-run-{d}"),
        );
    }
}

#[test]
fn a_store_read_error_raises_sigbus_in_the_faulting_thread() {
    if let Some(s) = child_scenario() {
        return child(&s);
    }
    for s in [
        "read-error-signal",
        "read-error-threads",
        "read-error-fence-threads",
    ] {
        expect_sigbus("a_store_read_error_raises_sigbus_in_the_faulting_thread", s);
    }
}

#[test]
fn a_store_that_ends_early_raises_sigbus_rather_than_returning_zeros() {
    if let Some(s) = child_scenario() {
        return child(&s);
    }
    for d in ["signal", "threads"] {
        expect_sigbus(
            "a_store_that_ends_early_raises_sigbus_rather_than_returning_zeros",
            &format!("lying-store-{d}"),
        );
    }
}

#[test]
fn a_sigbus_that_is_not_ours_is_forwarded() {
    if let Some(s) = child_scenario() {
        return child(&s);
    }
    expect_sigbus("a_sigbus_that_is_not_ours_is_forwarded", "not-ours-signal");
    for d in ["signal", "threads"] {
        let r = run_child(
            "a_sigbus_that_is_not_ours_is_forwarded",
            &format!("chained-{d}"),
            60,
        );
        assert_eq!(r.status.code(), Some(42), "chained-{d}: {r:?}");
    }
}

#[test]
fn a_failed_page_is_read_again_after_evict_all() {
    for delivery in [Delivery::Signal, Delivery::Threads] {
        let data = pattern(32 << 10);
        let store = Arc::new(Hostile::new(MemStore::new(data.clone())));
        store.fail_reads.store(true, Ordering::Relaxed);
        let map = MapOptions::from_arc(store.clone())
            .delivery(delivery)
            .map()
            .unwrap();
        map.prefetch(0..8192);
        assert_eq!(map.stats().read_errors, 2, "{delivery:?}");
        store.fail_reads.store(false, Ordering::Relaxed);
        map.evict_all().unwrap();
        assert_eq!(&map[..], &data[..], "{delivery:?}");
    }
}
