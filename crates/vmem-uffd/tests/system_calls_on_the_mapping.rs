//! System calls whose buffers are in the mapping: the kernel's own accesses fault too.
//! Thread delivery serves them; signal delivery cannot (the kernel cannot raise a signal
//! for its own access), so they fail with EFAULT until the pages are resident.

mod common;

use std::io::{Read, Write};

use common::{file_with, pattern, with_timeout};
use vmem_uffd::{Delivery, MapOptions};

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn a_mapping_is_send_and_sync() {
    assert_send_sync::<vmem_uffd::Mapping>();
}

#[test]
fn write_and_read_system_calls_with_buffers_in_the_mapping() {
    with_timeout(60, || {
        let data = pattern(256 << 10);
        let src = file_with(&data);

        // Threads: write(2) from absent pages and read(2) into clean (protected) pages work.
        let mut map = MapOptions::new(src.reopen().unwrap())
            .shared()
            .delivery(Delivery::Threads)
            .map()
            .unwrap();
        let mut out = tempfile::tempfile().unwrap();
        out.write_all(&map[..]).unwrap();
        assert!(map.stats().faults >= 1);
        let mut back = Vec::new();
        std::io::Seek::rewind(&mut out).unwrap();
        out.read_to_end(&mut back).unwrap();
        assert!(back == data);
        let mut zeros = std::io::repeat(0).take(8192);
        zeros.read_exact(&mut map[4096..12288]).unwrap(); // read(2)-like copy into the mapping
        let mut dev_zero = std::fs::File::open("/dev/zero").unwrap();
        dev_zero.read_exact(&mut map[20000..30000]).unwrap(); // a real read(2)
        assert!(map[20000..30000].iter().all(|&b| b == 0));
        drop(map);

        // Signal: the kernel's access to an absent page fails with EFAULT...
        let map = MapOptions::new(src.reopen().unwrap())
            .delivery(Delivery::Signal)
            .map()
            .unwrap();
        let mut sink = tempfile::tempfile().unwrap(); // (not /dev/null: it never reads)
        let e = sink.write(&map[8192..16384]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFAULT), "{e}");
        // ...and works once the pages are resident.
        map.prefetch(0..map.len());
        assert_eq!(sink.write(&map[8192..16384]).unwrap(), 8192);
    });
}

/// The program maps something else over a clean page between two dirty ones
/// (`mmap(MAP_FIXED)`): the write protection of a span across it fails (that part of the
/// range is no longer registered), and the flush falls back to a run at a time, so the
/// dirty pages on either side still reach the file.
#[test]
fn a_flush_writes_the_pages_around_a_page_the_program_mapped_over() {
    with_timeout(60, || {
        let page = 4096;
        let src = file_with(&vec![0u8; 8 * page]);
        let mut map = MapOptions::new(src.reopen().unwrap())
            .shared()
            .map()
            .unwrap();
        map.prefetch(0..map.len());
        map[8] = 1;
        map[2 * page + 8] = 3;
        // SAFETY: replaces page 1 of our own mapping, which holds no data of ours, with
        // fresh anonymous memory; nothing else refers to that page.
        let p = unsafe {
            libc::mmap(
                map.as_ptr().add(page).cast(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        map.flush().expect("flush around the foreign page");
        let disk = std::fs::read(src.path()).unwrap();
        assert_eq!((disk[8], disk[2 * page + 8]), (1, 3));
        // The written pages are clean and protected again: writing one dirties it anew.
        map[2 * page + 9] = 4;
        map.flush().unwrap();
        assert_eq!(std::fs::read(src.path()).unwrap()[2 * page + 9], 4);
    });
}
