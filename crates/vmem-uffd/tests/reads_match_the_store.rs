//! Bytes read through a mapping are the store's bytes, whatever the page size and
//! delivery; sequential faults read ahead, scattered ones do not.

mod common;

use common::{file_with, pattern, with_timeout, Rng, DELIVERIES};
use vmem_uffd::{Delivery, MapOptions, MemStore};

#[test]
fn reads_equal_the_file_for_every_page_size_and_delivery() {
    with_timeout(120, || {
        let sys = 4096;
        let data = pattern(3 * (1 << 20) + 1234);
        let file = file_with(&data);
        for delivery in DELIVERIES {
            for page_size in [4096, 16 << 10, 64 << 10, 2 << 20] {
                for shared in [false, true] {
                    let opts = MapOptions::new(file.reopen().unwrap())
                        .page_size(page_size)
                        .delivery(delivery);
                    let opts = if shared { opts.shared() } else { opts };
                    let map = opts.map().unwrap();
                    let what = format!("{delivery:?} page {page_size} shared {shared}");
                    assert_eq!(map.len(), data.len(), "{what}");
                    assert_eq!(map.delivery(), delivery);
                    assert!(
                        map.as_slice() == &data[..],
                        "{what}: mapping differs from file"
                    );
                    // The rest of the last system page reads as zero, as the kernel's does.
                    assert_eq!(map.valid_len(), data.len(), "{what}");
                    for off in data.len()..data.len().div_ceil(sys) * sys {
                        // SAFETY: inside the mapping's last (served) system page.
                        assert_eq!(unsafe { *map.as_ptr().add(off) }, 0, "{what} at {off}");
                    }
                    let s = map.stats();
                    assert!(s.faults >= 1, "{what}: {s:?}");
                    assert!(
                        s.pages_filled >= data.len().div_ceil(page_size) as u64,
                        "{what}: {s:?}"
                    );
                    assert_eq!(s.read_errors, 0);
                }
            }
        }
    });
}

#[test]
fn a_memory_store_maps_like_a_file() {
    for delivery in DELIVERIES {
        let data = pattern(100_000);
        let map = MapOptions::new(MemStore::new(data.clone()))
            .delivery(delivery)
            .map()
            .unwrap();
        assert_eq!(&map[..], &data[..]);
    }
}

/// Pages of `file` in the page cache (`mincore` over a fresh mapping of it).
fn cached_pages(file: &std::fs::File, len: usize) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh read-only shared mapping of the file, only queried, then unmapped.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    let mut v = vec![0u8; len.div_ceil(4096)];
    // SAFETY: `v` has one byte per page of the mapping, as mincore writes.
    let r = unsafe { libc::mincore(p, len, v.as_mut_ptr()) };
    // SAFETY: our mapping, no longer used.
    unsafe { libc::munmap(p, len) };
    assert_eq!(r, 0, "mincore");
    v.iter().filter(|b| *b & 1 != 0).count()
}

#[test]
fn a_scattered_fault_next_to_another_does_not_read_the_file_around_it() {
    with_timeout(60, || {
        use std::os::fd::AsRawFd;
        let len = 16 << 20;
        let file = file_with(&pattern(len));
        for delivery in DELIVERIES {
            let f = file.as_file();
            f.sync_all().unwrap();
            // SAFETY: fadvise on our own descriptor; the pages are clean (synced).
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if cached_pages(f, len) > 16 {
                eprintln!("skipped: the file system keeps the file cached (tmpfs?)");
                return;
            }
            let map = MapOptions::new(file.reopen().unwrap())
                .read_ahead(32)
                .delivery(delivery)
                .map()
                .unwrap();
            // Two faults that happen to be neighbours: the second reads its page and a
            // small run after it, not read_ahead_kb around it or megabytes ahead.
            let page = 2000;
            assert_eq!(map[page * 4096], pattern(len)[page * 4096]);
            assert_eq!(map[(page + 1) * 4096], pattern(len)[(page + 1) * 4096]);
            let s = map.stats();
            assert_eq!(s.faults, 2, "{delivery:?}: {s:?}");
            drop(map); // joins the read-ahead thread: nothing it was asked for is pending
            let cached = cached_pages(f, len);
            assert!(
                cached <= 16,
                "{delivery:?}: two neighbouring faults left {cached} pages of the file cached"
            );
        }
    });
}

#[test]
fn sequential_faults_read_ahead_and_scattered_faults_do_not() {
    with_timeout(60, || {
        let pages = 1024;
        let data = pattern(pages * 4096);
        let file = file_with(&data);
        for delivery in DELIVERIES {
            let map = MapOptions::new(file.reopen().unwrap())
                .read_ahead(32)
                .delivery(delivery)
                .map()
                .unwrap();
            let mut sum = 0u64;
            for p in 0..pages {
                sum += u64::from(map[p * 4096 + 5]);
            }
            let s = map.stats();
            assert!(sum > 0);
            assert_eq!(s.pages_filled, pages as u64, "{delivery:?}: {s:?}");
            assert!(
                s.readahead_pages > pages as u64 * 3 / 4,
                "{delivery:?} sequential: {s:?}"
            );
            assert!(
                s.faults < pages as u64 / 8,
                "{delivery:?} sequential: {s:?}"
            );

            // Scattered: a stride of 37 pages never touches the page after a recent fault.
            let map = MapOptions::new(file.reopen().unwrap())
                .read_ahead(32)
                .delivery(delivery)
                .map()
                .unwrap();
            for i in 0..pages {
                let p = i * 37 % pages;
                assert_eq!(map[p * 4096 + 9], data[p * 4096 + 9]);
            }
            let s = map.stats();
            assert_eq!(s.readahead_pages, 0, "{delivery:?} scattered: {s:?}");
            assert_eq!(s.faults, pages as u64, "{delivery:?} scattered: {s:?}");
        }
    });
}

#[test]
fn a_write_to_an_absent_page_installs_it_dirty_in_one_fault() {
    for delivery in DELIVERIES {
        let file = file_with(&pattern(64 << 10));
        let mut map = MapOptions::new(file.reopen().unwrap())
            .read_ahead(0)
            .delivery(delivery)
            .map()
            .unwrap();
        map[4096 + 1] = 0xAB;
        let s = map.stats();
        assert_eq!(
            (s.faults, s.write_faults, s.wp_faults),
            (1, 1, 0),
            "{delivery:?}: {s:?}"
        );
        // A read first, then a write: a missing fault, then a write-protect fault.
        let x = std::hint::black_box(map[8192]); // a real read first
        map[8192] = x.wrapping_add(1);
        let s = map.stats();
        assert_eq!(
            (s.faults, s.write_faults, s.wp_faults),
            (2, 1, 1),
            "{delivery:?}: {s:?}"
        );
        // Writing again costs nothing.
        map[8193] = 1;
        assert_eq!(map.stats().wp_faults, 1);
    }
}

#[test]
fn options_are_checked() {
    let e = MapOptions::new(MemStore::new(vec![1; 10]))
        .page_size(6000)
        .map()
        .unwrap_err();
    assert!(e.to_string().contains("page size"), "{e}");
    let e = MapOptions::new(MemStore::new(vec![1; 10]))
        .page_size(4 << 20)
        .map()
        .unwrap_err();
    assert!(e.to_string().contains("page size"), "{e}");
    let e = MapOptions::new(MemStore::new(Vec::new()))
        .map()
        .unwrap_err();
    assert!(e.to_string().contains("length 0"), "{e}");
    // An empty store with a length: every page raises SIGBUS, but mapping works.
    let m = MapOptions::new(MemStore::new(Vec::new()))
        .length(8192)
        .delivery(Delivery::Threads)
        .map()
        .unwrap();
    assert_eq!((m.len(), m.valid_len()), (8192, 0));
}

#[test]
fn an_offset_maps_the_store_from_that_byte_as_mmap_does() {
    use std::os::unix::fs::FileExt;
    with_timeout(60, || {
        let data = pattern(1 << 20);
        let file = file_with(&data);
        for page in [4096, 64 << 10] {
            let off = 3 * page;
            let stores: [(&str, std::sync::Arc<dyn vmem_uffd::Store>); 2] = [
                ("file", std::sync::Arc::new(file.reopen().unwrap())),
                ("memory", std::sync::Arc::new(MemStore::new(data.clone()))),
            ];
            for (kind, store) in stores {
                let what = format!("{kind} store, page {page}");
                let mut map = MapOptions::from_arc(store.clone())
                    .page_size(page)
                    .offset(off as u64)
                    .shared()
                    .map()
                    .unwrap();
                assert_eq!(
                    map.len(),
                    data.len() - off,
                    "{what}: runs to the store's end"
                );
                assert!(
                    map[..] == data[off..],
                    "{what}: byte i is store byte offset + i"
                );
                map[0] = !data[off];
                map.flush().unwrap();
                if kind == "file" {
                    let mut b = [0u8; 2];
                    file.as_file()
                        .read_exact_at(&mut b, off as u64 - 1)
                        .unwrap();
                    assert_eq!(
                        b,
                        [data[off - 1], !data[off]],
                        "{what}: the write landed at the offset"
                    );
                }
            }
            let e = MapOptions::new(file.reopen().unwrap())
                .page_size(page)
                .offset(page as u64 / 2)
                .map()
                .unwrap_err();
            assert!(matches!(e, vmem_uffd::Error::InvalidArgument(_)), "{e}");
            assert!(e.to_string().contains("multiple of the page size"), "{e}");
            // Past the store's end: an explicit length maps pages that raise SIGBUS;
            // without one there is nothing to map.
            assert!(MapOptions::new(file.reopen().unwrap())
                .offset(2 << 20)
                .map()
                .is_err());
        }
    });
}

#[test]
fn an_offset_with_2mib_pages_maps_a_file_from_that_byte() {
    use std::os::unix::fs::FileExt;
    with_timeout(120, || {
        let page = 2 << 20;
        let data = pattern(9 * page + 12345);
        let file = file_with(&data);
        for delivery in DELIVERIES {
            let off = 2 * page;
            let mut map = MapOptions::new(file.reopen().unwrap())
                .page_size(page)
                .offset(off as u64)
                .read_ahead(1)
                .cache_budget(4 * page)
                .delivery(delivery)
                .shared()
                .map()
                .unwrap();
            assert_eq!(map.len(), data.len() - off);
            // Scattered, then sequential (read-ahead windows), across evictions.
            let mut rng = Rng(11);
            for _ in 0..200 {
                let at = rng.below(map.len());
                assert_eq!(map[at], data[off + at], "{delivery:?} at {at}");
            }
            assert!(map[..] == data[off..], "{delivery:?}");
            let last = map.len() - 1;
            map[last] = !data[off + last];
            map[page + 1] = !data[off + page + 1];
            map.flush().unwrap();
            let mut b = [0u8; 1];
            file.as_file()
                .read_exact_at(&mut b, (off + last) as u64)
                .unwrap();
            assert_eq!(b[0], !data[off + last], "{delivery:?}");
            file.as_file()
                .read_exact_at(&mut b, (off + page + 1) as u64)
                .unwrap();
            assert_eq!(b[0], !data[off + page + 1], "{delivery:?}");
            drop(map);
            file.as_file().write_all_at(&data, 0).unwrap();
        }
    });
}
