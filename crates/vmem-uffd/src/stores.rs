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

/// A real file written with `O_DIRECT`: each page the pager writes back goes to storage as
/// that page alone, bypassing the page cache (whose large folios would otherwise be written
/// back whole: see the `bench` example). Reads stay buffered (through a second, ordinary
/// descriptor), so read-ahead and the page cache still serve faults. A write whose offset,
/// length or end is not 4 KiB-aligned (the file's last partial page) falls back to the
/// buffered descriptor.
#[derive(Debug)]
pub struct DirectFileStore {
    direct: std::fs::File,
    buffered: std::fs::File,
}

const DIRECT_ALIGN: usize = 4096;

impl DirectFileStore {
    /// Opens `path` read-write twice: once with `O_DIRECT` for write-back, once buffered.
    pub fn open(path: &std::path::Path) -> io::Result<DirectFileStore> {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        let buffered = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(DirectFileStore { direct, buffered })
    }
}

/// A heap buffer aligned for `O_DIRECT`.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> io::Result<AlignedBuf> {
        let layout = std::alloc::Layout::from_size_align(len.max(DIRECT_ALIGN), DIRECT_ALIGN)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(AlignedBuf { ptr, layout })
    }

    fn as_mut_slice(&mut self, len: usize) -> &mut [u8] {
        // SAFETY: `ptr` owns `layout.size() >= len` bytes, and `&mut self` makes this the
        // only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout and not freed elsewhere.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

impl Store for DirectFileStore {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.buffered, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let aligned =
            offset % DIRECT_ALIGN as u64 == 0 && buf.len() % DIRECT_ALIGN == 0 && !buf.is_empty();
        if !aligned {
            return self.buffered.write_all_at(buf, offset);
        }
        let mut b = AlignedBuf::new(buf.len())?;
        b.as_mut_slice(buf.len()).copy_from_slice(buf);
        self.direct.write_all_at(b.as_mut_slice(buf.len()), offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.buffered.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.buffered.set_len(len)
    }

    fn sync(&self) -> io::Result<()> {
        self.buffered.sync_all()
    }
}
