//! Files: inodes, open file descriptions and descriptor tables.
//!
//! Owns [`Inode`] (one per real file, keyed by the host's `(dev, ino)`, holding the file's
//! size as the kernel sees it and its page-cache index), [`OpenFile`] (Linux's `struct
//! file`: access mode, flags, position) and the [`store`] trait for the bytes behind them.
//! The syscalls over them (`open`, `read`, `write`, `ftruncate`, ...) are in
//! [`syscalls`]. Shared anonymous memory is an inode with no store (Linux's shmem).

pub mod store;
pub mod syscalls;

use store::Store;

/// Index of an inode in the kernel's inode table.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct InodeId(pub u32);

/// Index of an open file description.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FileId(pub u32);

/// A file descriptor number.
pub type Fd = i32;

/// What kind of file an inode is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileKind {
    /// A regular file on disk.
    Regular,
    /// A directory.
    Directory,
    /// `/dev/zero`: maps as anonymous memory.
    DevZero,
    /// Another character device (`/dev/null`, a terminal): no mmap.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// Shared anonymous memory (no file behind it).
    Shmem,
    /// A memory-mapped device, `/dev/vmem/<name>` (index on the bus).
    Device(u16),
}

impl FileKind {
    /// Whether `mmap` works on it (Linux: the file has an `->mmap` operation).
    pub fn mappable(self) -> bool {
        matches!(
            self,
            FileKind::Regular | FileKind::DevZero | FileKind::Shmem | FileKind::Device(_)
        )
    }
}

/// A file as the kernel knows it.
pub struct Inode {
    /// The path it was first opened by (for messages and `/proc/pid/maps`).
    pub path: String,
    /// Kind.
    pub kind: FileKind,
    /// Host device and inode numbers.
    pub dev_ino: (u64, u64),
    /// The real file; `None` for shmem.
    pub store: Option<Box<dyn Store>>,
    /// Whether `store` was opened for writing (write-back needs it).
    pub store_writable: bool,
    /// The file size as the kernel sees it (Linux `i_size`).
    pub size: u64,
    /// The page cache: page offset -> frame (Linux `address_space.i_pages`).
    pub pages: crate::cache::index::PageIndex,
    /// Pages in `pages` that are dirty.
    pub nr_dirty: u64,
    /// Pages present in the cache but not up to date (no data read yet): ext4 leaves one
    /// behind at a truncate that ends mid-page. Read-ahead skips them as present;
    /// `mincore` reports them as not resident; the first use reads them.
    pub stale: std::collections::BTreeSet<u64>,
}

impl Inode {
    /// Whether the page cache has an entry at `pg`, up to date or not.
    pub fn has_entry(&self, pg: u64) -> bool {
        self.pages.contains_key(&pg) || self.stale.contains(&pg)
    }

    /// The first page in `[from, from + max)` with no entry (up to date or not), or
    /// `from + max` when every one has one. With no stale entries, one scan of the index.
    pub fn next_miss(&self, from: u64, max: u64) -> u64 {
        let end = from + max;
        let mut next = from;
        if !self.stale.is_empty() {
            while next < end && self.has_entry(next) {
                next += 1;
            }
            return next;
        }
        self.pages.next_miss(from, end)
    }
}

impl std::fmt::Debug for Inode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inode")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("size", &self.size)
            .field("cached_pages", &self.pages.len())
            .field("nr_dirty", &self.nr_dirty)
            .finish()
    }
}

/// An open file description (Linux `struct file`): shared by dup'd and inherited fds.
#[derive(Debug, Clone)]
pub struct OpenFile {
    /// The inode.
    pub inode: InodeId,
    /// The `open` flags (access mode in the low two bits).
    pub flags: i32,
    /// The file position.
    pub pos: u64,
    /// Descriptors referring to it.
    pub refs: u32,
    /// A number no other open file description ever gets: VMAs mapped through it remember
    /// it (Linux `vm_file`), and only VMAs of the same open file merge.
    pub serial: u64,
}

impl OpenFile {
    /// Open for reading.
    pub fn readable(&self) -> bool {
        matches!(
            self.flags & 3,
            crate::consts::O_RDONLY | crate::consts::O_RDWR
        )
    }
    /// Open for writing.
    pub fn writable(&self) -> bool {
        matches!(
            self.flags & 3,
            crate::consts::O_WRONLY | crate::consts::O_RDWR
        )
    }
}
