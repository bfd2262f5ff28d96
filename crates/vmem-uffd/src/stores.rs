//! Example stores the kernel cannot map itself.
//!
//! The kernel's `mmap` maps files (and devices, shared memory); it cannot map bytes that
//! must be transformed on their way in and out. A pager in user space can: the mapping
//! shows the plain bytes, the store holds something else.

use std::io;

use vmem::fs::store::Store;

/// A store that keeps its bytes XOR-ed with a repeating key ("encrypted" — a toy cipher,
/// for showing the mechanism, not for secrecy). The mapping shows plain text; the inner
/// store (for example a file) holds cipher text. Byte `i` of the store is
/// `plain[i] ^ key[i % key.len()]`, so any offset can be read or written on its own.
///
/// ```
/// use vmem::fs::store::{MemStore, Store};
/// use vmem_uffd::XorStore;
///
/// let s = XorStore::new(MemStore::new(vec![0; 4]), b"k3y".to_vec());
/// s.write_at(b"abcd", 0)?;
/// assert_ne!(s.inner().contents(), b"abcd"); // cipher text inside
/// let mut back = [0u8; 4];
/// s.read_at(&mut back, 0)?;
/// assert_eq!(&back, b"abcd");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct XorStore<S> {
    inner: S,
    key: Vec<u8>,
}

impl<S: Store> XorStore<S> {
    /// Wraps `inner`; `key` must not be empty (an empty key is replaced by one zero byte,
    /// which leaves the bytes unchanged).
    pub fn new(inner: S, key: Vec<u8>) -> XorStore<S> {
        let key = if key.is_empty() { vec![0] } else { key };
        XorStore { inner, key }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn apply(&self, buf: &mut [u8], offset: u64) {
        let k = self.key.len();
        let mut j = (offset % k as u64) as usize;
        for b in buf {
            *b ^= self.key[j];
            j += 1;
            if j == k {
                j = 0;
            }
        }
    }
}

impl<S: Store> Store for XorStore<S> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let n = self.inner.read_at(buf, offset)?;
        self.apply(&mut buf[..n], offset);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        // In chunks on the stack: no allocation (this may run in a fault handler).
        let mut chunk = [0u8; 4096];
        let mut done = 0;
        while done < buf.len() {
            let n = (buf.len() - done).min(chunk.len());
            chunk[..n].copy_from_slice(&buf[done..done + n]);
            let off = offset + done as u64;
            self.apply(&mut chunk[..n], off);
            self.inner.write_at(&chunk[..n], off)?;
            done += n;
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
}
