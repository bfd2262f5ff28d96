//! A store the kernel cannot map: the file holds XOR-"encrypted" bytes, the mapping shows
//! plain ones, and writes through the mapping are encrypted on their way back.

mod common;

use common::{file_with, pattern, DELIVERIES};
use vmem_uffd::{MapOptions, Store, XorStore};

#[test]
fn the_mapping_shows_plain_bytes_and_the_file_holds_cipher_bytes() {
    for delivery in DELIVERIES {
        let key = b"not a real cipher".to_vec();
        let plain = pattern(200_000);
        let cipher: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % key.len()])
            .collect();
        let file = file_with(&cipher);
        let store = XorStore::new(file.reopen().unwrap(), key.clone());
        let mut map = MapOptions::new(store)
            .shared()
            .cache_budget(8 * 4096)
            .delivery(delivery)
            .map()
            .unwrap();
        assert!(map[..] == plain[..], "{delivery:?}: decrypted view");
        map[..11].copy_from_slice(b"hello world");
        map.flush().unwrap();
        drop(map);
        let disk = std::fs::read(file.path()).unwrap();
        assert_ne!(&disk[..11], b"hello world", "the file holds cipher text");
        let back = XorStore::new(file.reopen().unwrap(), key);
        let mut head = [0u8; 11];
        back.read_at(&mut head, 0).unwrap();
        assert_eq!(&head, b"hello world");
        assert_eq!(disk[11..], cipher[11..]);
    }
}
