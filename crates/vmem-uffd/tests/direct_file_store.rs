//! A file store that writes back with O_DIRECT: the bytes reach the file exactly (read
//! back through a fresh std::fs::File), including the unaligned last page, which falls
//! back to a buffered write.

mod common;

use common::{file_with, pattern, DELIVERIES};
use vmem_uffd::{DirectFileStore, MapOptions};

#[test]
fn direct_write_back_reaches_the_file_exactly() {
    for delivery in DELIVERIES {
        let data = pattern(10 * 4096 + 1234);
        let file = file_with(&data);
        let store = DirectFileStore::open(file.path()).unwrap();
        let mut map = MapOptions::new(store)
            .shared()
            .delivery(delivery)
            .map()
            .unwrap();
        assert!(
            map[..] == data[..],
            "{delivery:?}: reads are the file's bytes"
        );
        let mut expect = data.clone();
        for (off, bytes) in [
            (5usize, &b"first page"[..]),
            (3 * 4096 + 7, b"fourth"),
            (10 * 4096 + 1000, b"tail"),
        ] {
            map[off..off + bytes.len()].copy_from_slice(bytes);
            expect[off..off + bytes.len()].copy_from_slice(bytes);
        }
        map.flush().unwrap();
        let s = map.stats();
        assert_eq!(
            s.writebacks, 3,
            "{delivery:?}: only the three written pages go back"
        );
        drop(map);
        let disk = std::fs::read(file.path()).unwrap();
        assert_eq!(
            disk.len(),
            data.len(),
            "{delivery:?}: the length is unchanged"
        );
        assert!(
            disk == expect,
            "{delivery:?}: the file holds exactly the written bytes"
        );
    }
}
