//! Backing stores: where a file's bytes live when they are not in a frame.
//!
//! Owns the [`Store`] trait (read and write at an offset, length, resize, sync) and its
//! implementation for real files ([`std::fs::File`], through `pread`/`pwrite`/`fsync`) and
//! for memory ([`MemStore`]). The page cache reads and writes whole pages through it; the
//! userfaultfd pager (`vmem-uffd`) uses the same trait.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// A byte store addressed by offset.
pub trait Store: Send + Sync {
    /// Reads into `buf` at `offset`; returns the bytes read (short only at end of store).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the store is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Changes the length (new bytes read as zero).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes written data durable.
    fn sync(&self) -> io::Result<()>;
    /// The real file whose bytes this store serves one for one (byte `i` of the store is
    /// byte `i` of the file), if there is one. A pager may then map the file and copy
    /// pages straight out of the kernel's page cache instead of reading them into a
    /// buffer first. Default: `None`.
    fn backing_file(&self) -> Option<&std::fs::File> {
        None
    }
}

/// Reads as much of `buf` as the store has at `offset`, looping over short reads; the
/// rest of `buf` is zeroed. Returns the bytes that came from the store.
pub fn read_full(store: &dyn Store, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match store.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf[done..].fill(0);
    Ok(done)
}

impl Store for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        std::fs::File::set_len(self, len)
    }
    fn sync(&self) -> io::Result<()> {
        self.sync_all()
    }
    fn backing_file(&self) -> Option<&std::fs::File> {
        Some(self)
    }
}

/// A store in memory (for tests and for programs that want a pager over a buffer).
#[derive(Debug, Default)]
pub struct MemStore {
    bytes: Mutex<Vec<u8>>,
}

impl MemStore {
    /// A store holding `bytes`.
    pub fn new(bytes: Vec<u8>) -> MemStore {
        MemStore {
            bytes: Mutex::new(bytes),
        }
    }
    /// A copy of the current contents.
    pub fn contents(&self) -> Vec<u8> {
        self.bytes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Store for MemStore {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(off) = usize::try_from(offset) else {
            return Ok(0);
        };
        if off >= b.len() {
            return Ok(0);
        }
        let n = buf.len().min(b.len() - off);
        buf[..n].copy_from_slice(&b[off..off + n]);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let off =
            usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end = off
            .checked_add(buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        if b.len() < end {
            b.resize(end, 0);
        }
        b[off..end].copy_from_slice(buf);
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.lock().unwrap_or_else(|e| e.into_inner()).len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resize(len, 0);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_store_reads_short_at_end_and_zero_fills() {
        let s = MemStore::new(b"hello".to_vec());
        let mut buf = [0xffu8; 8];
        assert_eq!(read_full(&s, &mut buf, 2).unwrap(), 3);
        assert_eq!(&buf, b"llo\0\0\0\0\0");
        s.write_at(b"!", 6).unwrap();
        assert_eq!(s.contents(), b"hello\0!");
    }
}
