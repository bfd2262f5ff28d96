//! File syscalls: `open`, `close`, `read`, `write`, `pread`, `pwrite`, `lseek`,
//! `ftruncate`, `fsync`.
//!
//! Owns the file half of the syscall surface. Regular files go through the page cache
//! (`cache/`), so a `write()` is seen at once through a shared mapping and a store through
//! a shared mapping is seen by `read()`; each `read()`/`write()` copies between the cache
//! and the caller's buffer, and the counters record those copies. Errors follow Linux:
//! `EBADF` for a bad or wrong-mode descriptor, `EISDIR`, `EINVAL` for `ftruncate` on a
//! descriptor not open for writing, `ESPIPE` for seeking a FIFO.

use crate::addr::{PgOff, PAGE_SHIFT, PAGE_SIZE};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::fs::store::Store;
use crate::fs::{Fd, FileId, FileKind, Inode, InodeId, OpenFile};
use crate::hw::phys::FrameFlags;
use crate::kernel::Kernel;
use crate::process::Pid;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

fn kind_of(md: &std::fs::Metadata) -> FileKind {
    let ft = md.file_type();
    if ft.is_file() {
        FileKind::Regular
    } else if ft.is_dir() {
        FileKind::Directory
    } else if ft.is_char_device() {
        // /dev/zero is character device 1:5.
        if md.rdev() == ((1 << 8) | 5) {
            FileKind::DevZero
        } else {
            FileKind::CharDevice
        }
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else {
        FileKind::Socket
    }
}

fn host_open(path: &Path, read: bool, write: bool, extra: i32) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .read(read)
        .write(write)
        .custom_flags(extra)
        .open(path)
}

impl Kernel {
    pub(crate) fn fd_file(&self, pid: Pid, fd: Fd) -> SysResult<FileId> {
        let p = self.proc_ref(pid)?;
        usize::try_from(fd)
            .ok()
            .and_then(|i| p.fds.get(i).copied().flatten())
            .ok_or(Errno::EBADF)
    }

    pub(crate) fn file(&self, id: FileId) -> &OpenFile {
        self.files[id.0 as usize].as_ref().expect("live open file")
    }

    fn file_mut(&mut self, id: FileId) -> &mut OpenFile {
        self.files[id.0 as usize].as_mut().expect("live open file")
    }

    /// The open file description behind `fd`.
    pub fn open_file(&self, pid: Pid, fd: Fd) -> SysResult<&OpenFile> {
        Ok(self.file(self.fd_file(pid, fd)?))
    }

    /// The inode behind `fd`.
    pub fn fd_inode(&self, pid: Pid, fd: Fd) -> SysResult<&Inode> {
        Ok(self.inode(self.open_file(pid, fd)?.inode))
    }

    /// Creates a shared-memory inode of `size` bytes (MAP_SHARED anonymous memory).
    pub(crate) fn new_shmem_inode(&mut self, size: u64) -> InodeId {
        let id = InodeId(self.inodes.len() as u32);
        self.inodes.push(Inode {
            path: format!("shmem#{}", id.0),
            kind: FileKind::Shmem,
            dev_ino: (0, id.0 as u64),
            store: None,
            store_writable: false,
            size,
            pages: crate::cache::index::PageIndex::new(),
            nr_dirty: 0,
            stale: Default::default(),
        });
        id
    }

    /// `open(path, flags, mode)`: opens (or creates) a real file; returns the lowest free
    /// descriptor.
    pub fn open(
        &mut self,
        pid: Pid,
        path: impl AsRef<Path>,
        flags: i32,
        mode: u32,
    ) -> SysResult<Fd> {
        let path = path.as_ref();
        let r = self.do_open(pid, path, flags, mode);
        self.trace_syscall(
            pid,
            || format!("open(\"{}\", {})", path.display(), open_flags_str(flags)),
            &r,
        );
        r
    }

    fn do_open(&mut self, pid: Pid, path: &Path, flags: i32, mode: u32) -> SysResult<Fd> {
        self.proc_ref(pid)?;
        let acc = flags & O_ACCMODE;
        if acc == 3 {
            return Err(Errno::EINVAL);
        }
        let (read, write) = (acc != O_WRONLY, acc != O_RDONLY);
        if let Some(name) = path.to_str().and_then(|p| p.strip_prefix("/dev/vmem/")) {
            return self.open_device(pid, name, flags);
        }
        if flags & O_CREAT != 0 {
            let mut o = OpenOptions::new();
            o.write(true).mode(mode);
            if flags & O_EXCL != 0 {
                o.create_new(true);
            } else {
                o.create(true);
            }
            o.open(path).map_err(|e| Errno::from_io(&e))?;
        }
        // Non-blocking so that opening a FIFO never hangs the machine.
        let extra = O_NONBLOCK | (flags & O_DIRECTORY);
        let host = host_open(path, read, write, extra).map_err(|e| Errno::from_io(&e))?;
        let md = host.metadata().map_err(|e| Errno::from_io(&e))?;
        let kind = kind_of(&md);
        let key = (md.dev(), md.ino());
        let id = match self.inode_index.get(&key) {
            Some(&id) => {
                let ino = self.inode_mut(id);
                if write && !ino.store_writable && kind == FileKind::Regular {
                    // Keep a writable handle for write-back; reads work through it too
                    // unless the file was opened write-only.
                    if read {
                        ino.store = Some(Box::new(host));
                        ino.store_writable = true;
                    } else if let Ok(rw) = host_open(path, true, true, extra) {
                        ino.store = Some(Box::new(rw));
                        ino.store_writable = true;
                    }
                }
                id
            }
            None => {
                let (store, writable): (Box<dyn Store>, bool) = if read || kind != FileKind::Regular
                {
                    (Box::new(host), write)
                } else {
                    // Write-only: the cache still needs to read partial pages.
                    match host_open(path, true, true, extra) {
                        Ok(rw) => (Box::new(rw), true),
                        Err(_) => (Box::new(host), true),
                    }
                };
                let id = InodeId(self.inodes.len() as u32);
                self.inodes.push(Inode {
                    path: path.display().to_string(),
                    kind,
                    dev_ino: key,
                    store: Some(store),
                    store_writable: writable,
                    size: md.len(),
                    pages: crate::cache::index::PageIndex::new(),
                    nr_dirty: 0,
                    stale: Default::default(),
                });
                self.inode_index.insert(key, id);
                id
            }
        };
        if flags & O_TRUNC != 0 && write && kind == FileKind::Regular {
            self.do_truncate(id, 0)?;
        }
        self.install_fd(pid, id, flags & !(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY))
    }

    /// Opens `/dev/vmem/<name>`: a device on the machine's bus, not a host file.
    fn open_device(&mut self, pid: Pid, name: &str, flags: i32) -> SysResult<Fd> {
        let devs = self.phys.devices();
        let (idx, (_, _, size)) = devs
            .iter()
            .enumerate()
            .find(|(_, d)| d.0 == name)
            .ok_or(Errno::ENOENT)?;
        let key = (u64::MAX, idx as u64);
        let id = match self.inode_index.get(&key) {
            Some(&id) => id,
            None => {
                let id = InodeId(self.inodes.len() as u32);
                self.inodes.push(Inode {
                    path: format!("/dev/vmem/{name}"),
                    kind: FileKind::Device(idx as u16),
                    dev_ino: key,
                    store: None,
                    store_writable: false,
                    size: *size,
                    pages: crate::cache::index::PageIndex::new(),
                    nr_dirty: 0,
                    stale: Default::default(),
                });
                self.inode_index.insert(key, id);
                id
            }
        };
        self.install_fd(pid, id, flags & !(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY))
    }

    /// A new open file description for `id` in the lowest free descriptor of `pid`.
    fn install_fd(&mut self, pid: Pid, id: InodeId, flags: i32) -> SysResult<Fd> {
        let of = OpenFile {
            inode: id,
            flags,
            pos: 0,
            refs: 1,
            serial: self.next_file_serial(),
        };
        let fid = match self.files.iter().position(|f| f.is_none()) {
            Some(i) => {
                self.files[i] = Some(of);
                FileId(i as u32)
            }
            None => {
                self.files.push(Some(of));
                FileId(self.files.len() as u32 - 1)
            }
        };
        let p = self.proc_mut(pid)?;
        let fd = p.lowest_free_fd();
        if fd == p.fds.len() {
            p.fds.push(Some(fid));
        } else {
            p.fds[fd] = Some(fid);
        }
        Ok(fd as Fd)
    }

    /// `close(fd)`. Mappings made through the descriptor stay valid.
    pub fn close(&mut self, pid: Pid, fd: Fd) -> SysResult<()> {
        let r = self.close_quiet(pid, fd);
        self.trace_syscall(pid, || format!("close({fd})"), &r.map(|_| 0));
        r
    }

    pub(crate) fn close_quiet(&mut self, pid: Pid, fd: Fd) -> SysResult<()> {
        let fid = self.fd_file(pid, fd)?;
        self.proc_mut(pid)?.fds[fd as usize] = None;
        let f = self.file_mut(fid);
        f.refs -= 1;
        if f.refs == 0 {
            self.files[fid.0 as usize] = None;
        }
        Ok(())
    }

    /// `read(fd, count)`: reads from the file position; returns the bytes (fewer at end
    /// of file). The bytes are copied out of the page cache.
    pub fn read(&mut self, pid: Pid, fd: Fd, count: usize) -> SysResult<Vec<u8>> {
        let r = self.do_read(pid, fd, count, None);
        self.trace_syscall(
            pid,
            || format!("read({fd}, buf, {count})"),
            &r.as_ref().map(|v| v.len()).map_err(|e| *e),
        );
        r
    }

    /// `pread(fd, count, offset)`: reads at `offset` without moving the file position.
    pub fn pread(&mut self, pid: Pid, fd: Fd, count: usize, offset: i64) -> SysResult<Vec<u8>> {
        let r = if offset < 0 {
            Err(Errno::EINVAL)
        } else {
            self.do_read(pid, fd, count, Some(offset as u64))
        };
        self.trace_syscall(
            pid,
            || format!("pread({fd}, buf, {count}, {offset})"),
            &r.as_ref().map(|v| v.len()).map_err(|e| *e),
        );
        r
    }

    fn do_read(&mut self, pid: Pid, fd: Fd, count: usize, at: Option<u64>) -> SysResult<Vec<u8>> {
        // Linux MAX_RW_COUNT: one read moves at most INT_MAX rounded down to a page.
        let count = count.min(0x7fff_f000);
        let fid = self.fd_file(pid, fd)?;
        let f = self.file(fid).clone();
        if !f.readable() {
            return Err(Errno::EBADF);
        }
        let id = f.inode;
        let kind = self.inode(id).kind;
        let out = match kind {
            FileKind::Directory => return Err(Errno::EISDIR),
            FileKind::DevZero => vec![0; count],
            FileKind::Device(_) => Vec::new(),
            FileKind::Regular => {
                let pos = at.unwrap_or(f.pos);
                let out = self.filemap_read(pid, id, f.serial, pos, count)?;
                if !out.is_empty() {
                    let mut ra = self.ra_state(f.serial);
                    ra.prev_pos = (pos + out.len() as u64) as i64;
                    self.set_ra_state(f.serial, ra);
                }
                out
            }
            _ => {
                let mut buf = vec![0u8; count];
                let ino = self.inode(id);
                let n = match &ino.store {
                    Some(s) => s.read_at(&mut buf, 0).map_err(|e| Errno::from_io(&e))?,
                    None => 0,
                };
                buf.truncate(n);
                buf
            }
        };
        if at.is_none() {
            self.file_mut(fid).pos += out.len() as u64;
        }
        self.proc_mut(pid)?.stats.copied_to_user += out.len() as u64;
        Ok(out)
    }

    /// Linux `filemap_read`: copies `count` bytes at `pos` out of the page cache, reading
    /// missing pages with read-ahead (`filemap_get_pages`: a synchronous window when the
    /// next page is missing, the asynchronous one when a batch of cached pages ends at the
    /// read-ahead mark).
    pub(crate) fn filemap_read(
        &mut self,
        pid: Pid,
        id: InodeId,
        serial: u64,
        pos: u64,
        count: usize,
    ) -> SysResult<Vec<u8>> {
        let size = self.inode(id).size;
        let n = (size.saturating_sub(pos)).min(count as u64) as usize;
        let mut out = vec![0u8; n];
        let io = |e: crate::cache::PageError| match e {
            crate::cache::PageError::NoMemory => Errno::ENOMEM,
            _ => Errno::EIO,
        };
        let end = pos + n as u64;
        // The request as the caller made it, not clipped to the file (Linux last_index).
        let last_index = (pos + count as u64).div_ceil(PAGE_SIZE);
        let mut cur = pos;
        let mut ra_pages = 0;
        while cur < end {
            let index = cur >> PAGE_SHIFT;
            // Linux `filemap_get_read_batch`: the cached pages from `index` on, up to and
            // including the first that carries the read-ahead mark, so that a read meets
            // every mark on its way (and starts the next window there), not only one that
            // happens to end the run of cached pages.
            let batch_len = |k: &Kernel| {
                let ino = k.inode(id);
                let mut n = 0;
                for i in index..last_index {
                    let marked = match ino.pages.get(&i) {
                        Some(&pfn) => k.phys.meta(pfn).flags.has(FrameFlags::READAHEAD),
                        // Not up to date: it ends the batch too.
                        None if ino.stale.contains(&i) => true,
                        None => break,
                    };
                    n += 1;
                    if marked {
                        break;
                    }
                }
                n
            };
            let mut batch = batch_len(self);
            let hit = batch > 0;
            if !hit {
                self.find_get_page(Some(pid), id, PgOff(index));
                ra_pages += self
                    .page_cache_sync_ra(Some(pid), id, serial, index, last_index - index)
                    .map_err(io)?;
                batch = batch_len(self);
                if batch == 0 {
                    self.read_page_now(Some(pid), id, index).map_err(io)?;
                    ra_pages += 1;
                    batch = 1;
                }
            } else {
                self.find_get_page(Some(pid), id, PgOff(index));
            }
            let last = index + batch - 1;
            if self.page_readahead(id, last) {
                ra_pages += self
                    .page_cache_async_ra(Some(pid), id, serial, last, last_index - last)
                    .unwrap_or(0);
            }
            for pg in index..=last {
                let page_start = pg << PAGE_SHIFT;
                if page_start >= end {
                    break;
                }
                let pfn = self.read_page_now(Some(pid), id, pg).map_err(io)?;
                self.phys.meta_mut(pfn).flags.0 |= FrameFlags::REFERENCED;
                let from = cur.max(page_start);
                let to = end.min(page_start + PAGE_SIZE);
                let src = &self.phys.frame_bytes(pfn)
                    [(from - page_start) as usize..(to - page_start) as usize];
                out[(from - pos) as usize..(to - pos) as usize].copy_from_slice(src);
                cur = to;
            }
        }
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.readahead_pages += ra_pages;
        }
        Ok(out)
    }

    /// `write(fd, data)`: writes at the file position (at the end with O_APPEND) into the
    /// page cache; the pages reach the disk at write-back (fsync, msync, sync, exit).
    pub fn write(&mut self, pid: Pid, fd: Fd, data: &[u8]) -> SysResult<usize> {
        let r = self.do_write(pid, fd, data, None);
        self.trace_syscall(
            pid,
            || format!("write({fd}, {:?}, {})", preview(data), data.len()),
            &r,
        );
        r
    }

    /// `pwrite(fd, data, offset)`: writes at `offset` without moving the file position.
    pub fn pwrite(&mut self, pid: Pid, fd: Fd, data: &[u8], offset: i64) -> SysResult<usize> {
        let r = if offset < 0 {
            Err(Errno::EINVAL)
        } else {
            self.do_write(pid, fd, data, Some(offset as u64))
        };
        self.trace_syscall(
            pid,
            || {
                format!(
                    "pwrite({fd}, {:?}, {}, {offset})",
                    preview(data),
                    data.len()
                )
            },
            &r,
        );
        r
    }

    fn do_write(&mut self, pid: Pid, fd: Fd, data: &[u8], at: Option<u64>) -> SysResult<usize> {
        let fid = self.fd_file(pid, fd)?;
        let f = self.file(fid).clone();
        if !f.writable() {
            return Err(Errno::EBADF);
        }
        let id = f.inode;
        match self.inode(id).kind {
            FileKind::Regular => {}
            FileKind::Directory => return Err(Errno::EISDIR),
            FileKind::DevZero => return Ok(data.len()),
            FileKind::Device(i) => {
                let base = self.phys.device_base(i);
                for b in data {
                    self.phys.cpu_write(base, &[*b]);
                }
                return Ok(data.len());
            }
            _ => {
                let ino = self.inode(id);
                if let Some(s) = &ino.store {
                    s.write_at(data, 0).map_err(|e| Errno::from_io(&e))?;
                }
                return Ok(data.len());
            }
        }
        let pos = match at {
            Some(o) => o,
            None if f.flags & O_APPEND != 0 => self.inode(id).size,
            None => f.pos,
        };
        if data.is_empty() {
            return Ok(0);
        }
        let end = pos.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        let old_size = self.inode(id).size;
        if end > old_size {
            self.zero_tail_for_growth(id, old_size);
            // A write that starts past the page holding the old end of file leaves that
            // page zeroed past the old end: dirtied if cached, else an entry that is not
            // up to date (ext4's pagecache_isize_extended, as measured on this machine).
            let eof_page = old_size >> PAGE_SHIFT;
            if old_size % PAGE_SIZE != 0 && pos >> PAGE_SHIFT > eof_page {
                match self.inode(id).pages.get(&eof_page).copied() {
                    Some(pfn) => self.set_page_dirty(pfn),
                    None => {
                        self.inode_mut(id).stale.insert(eof_page);
                    }
                }
            }
        }
        let first = pos >> PAGE_SHIFT;
        let last = (end - 1) >> PAGE_SHIFT;
        for pg in first..=last {
            let page_start = pg << PAGE_SHIFT;
            let from = pos.max(page_start);
            let to = end.min(page_start + PAGE_SIZE);
            let pfn = match self.find_get_page(Some(pid), id, PgOff(pg)) {
                Some(p) => p,
                None => {
                    let whole = from == page_start && to == page_start + PAGE_SIZE;
                    if !whole && page_start < old_size {
                        // Partial page of existing data: read it first.
                        self.read_page_now(Some(pid), id, pg)
                            .map_err(|_| Errno::EIO)?;
                    } else {
                        self.inode_mut(id).stale.remove(&pg);
                        let pfn = self
                            .alloc_frame(crate::hw::phys::FrameFlags::PAGE_CACHE)
                            .ok_or(Errno::ENOMEM)?;
                        self.phys.frame_bytes_mut(pfn).fill(0);
                        self.add_to_page_cache(id, pg, pfn);
                    }
                    self.inode(id).pages[&pg]
                }
            };
            let dst = &mut self.phys.frame_bytes_mut(pfn)
                [(from - page_start) as usize..(to - page_start) as usize];
            dst.copy_from_slice(&data[(from - pos) as usize..(to - pos) as usize]);
            self.set_page_dirty(pfn);
            self.phys.meta_mut(pfn).flags.0 |= FrameFlags::REFERENCED;
        }
        if end > old_size {
            self.inode_mut(id).size = end;
        }
        if at.is_none() {
            self.file_mut(fid).pos = end;
        }
        self.proc_mut(pid)?.stats.copied_from_user += data.len() as u64;
        self.balance_dirty_pages();
        Ok(data.len())
    }

    /// Before `i_size` grows past `old_size`, zero the cached bytes of the old last page
    /// beyond it (stores through a mapping past end of file never become file data).
    fn zero_tail_for_growth(&mut self, id: InodeId, old_size: u64) {
        if old_size % PAGE_SIZE == 0 {
            return;
        }
        if let Some(&pfn) = self.inode(id).pages.get(&(old_size >> PAGE_SHIFT)) {
            let keep = (old_size % PAGE_SIZE) as usize;
            self.phys.frame_bytes_mut(pfn)[keep..].fill(0);
        }
    }

    /// `lseek(fd, offset, whence)`.
    pub fn lseek(&mut self, pid: Pid, fd: Fd, offset: i64, whence: i32) -> SysResult<u64> {
        let r = (|| {
            let fid = self.fd_file(pid, fd)?;
            let f = self.file(fid);
            let ino = self.inode(f.inode);
            if matches!(ino.kind, FileKind::Fifo | FileKind::Socket) {
                return Err(Errno::ESPIPE);
            }
            let base = match whence {
                SEEK_SET => 0,
                SEEK_CUR => f.pos as i64,
                SEEK_END => ino.size as i64,
                _ => return Err(Errno::EINVAL),
            };
            let new = base.checked_add(offset).ok_or(Errno::EOVERFLOW)?;
            if new < 0 {
                return Err(Errno::EINVAL);
            }
            self.file_mut(fid).pos = new as u64;
            Ok(new as u64)
        })();
        self.trace_syscall(pid, || format!("lseek({fd}, {offset}, {whence})"), &r);
        r
    }

    /// `ftruncate(fd, length)`: shrinking unmaps and drops the pages past the new end
    /// (later accesses there get SIGBUS); growing adds zero bytes.
    pub fn ftruncate(&mut self, pid: Pid, fd: Fd, length: i64) -> SysResult<()> {
        let r = (|| {
            let fid = self.fd_file(pid, fd)?;
            if length < 0 {
                return Err(Errno::EINVAL);
            }
            let f = self.file(fid);
            if !f.writable() || self.inode(f.inode).kind != FileKind::Regular {
                return Err(Errno::EINVAL);
            }
            let id = f.inode;
            self.do_truncate(id, length as u64)
        })();
        self.trace_syscall(pid, || format!("ftruncate({fd}, {length})"), &r.map(|_| 0));
        r
    }

    /// Sets the size of a regular file (Linux `truncate_setsize` + `truncate_pagecache`).
    pub(crate) fn do_truncate(&mut self, id: InodeId, new: u64) -> SysResult<()> {
        let old = self.inode(id).size;
        if let Some(s) = &self.inode(id).store {
            s.set_len(new).map_err(|e| Errno::from_io(&e))?;
        }
        if new > old {
            self.zero_tail_for_growth(id, old);
        }
        self.inode_mut(id).size = new;
        if new < old {
            let first_gone = new.div_ceil(PAGE_SIZE);
            self.unmap_mapping_range(id, first_gone);
            self.truncate_inode_pages(id, first_gone);
            if new % PAGE_SIZE != 0 {
                if let Some(&pfn) = self.inode(id).pages.get(&(new >> PAGE_SHIFT)) {
                    let keep = (new % PAGE_SIZE) as usize;
                    self.phys.frame_bytes_mut(pfn)[keep..].fill(0);
                }
            }
        }
        // ext4_block_truncate_page: when the end of file falls inside a block (the old end
        // on growth, the new one on shrink), ext4 zeroes the block past it through the page
        // cache. A cached page is zeroed and dirtied; an uncached one is left in the cache
        // as an entry that is not up to date (measured on this machine's ext4: mincore
        // shows 0 for it and the next read-ahead stops short of it).
        let edge = if new > old { old } else { new };
        if new != old && edge % PAGE_SIZE != 0 && self.inode(id).kind == FileKind::Regular {
            let pg = edge >> PAGE_SHIFT;
            match self.inode(id).pages.get(&pg).copied() {
                Some(pfn) => {
                    let keep = (edge % PAGE_SIZE) as usize;
                    self.phys.frame_bytes_mut(pfn)[keep..].fill(0);
                    self.set_page_dirty(pfn);
                }
                None => {
                    self.inode_mut(id).stale.insert(pg);
                }
            }
        }
        Ok(())
    }

    /// `fsync(fd)`: writes the file's dirty pages and flushes the real file to disk.
    pub fn fsync(&mut self, pid: Pid, fd: Fd) -> SysResult<()> {
        let r = (|| {
            let fid = self.fd_file(pid, fd)?;
            let id = self.file(fid).inode;
            match self.inode(id).kind {
                FileKind::Regular | FileKind::Directory => {
                    self.writeback_range(id, 0, u64::MAX, true)
                }
                _ => Err(Errno::EINVAL),
            }
        })();
        self.trace_syscall(pid, || format!("fsync({fd})"), &r.map(|_| 0));
        r
    }

    /// `dup(fd)`: a new descriptor for the same open file description.
    pub fn dup(&mut self, pid: Pid, fd: Fd) -> SysResult<Fd> {
        let r = (|| {
            let fid = self.fd_file(pid, fd)?;
            self.file_mut(fid).refs += 1;
            let p = self.proc_mut(pid)?;
            let n = p.lowest_free_fd();
            if n == p.fds.len() {
                p.fds.push(Some(fid));
            } else {
                p.fds[n] = Some(fid);
            }
            Ok(n as Fd)
        })();
        self.trace_syscall(pid, || format!("dup({fd})"), &r);
        r
    }
}

fn preview(data: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(&data[..data.len().min(24)]).into_owned();
    if data.len() > 24 {
        format!("{s}...")
    } else {
        s
    }
}

/// `O_RDWR|O_CREAT` style rendering of open flags.
pub fn open_flags_str(flags: i32) -> String {
    let mut parts = vec![match flags & O_ACCMODE {
        O_RDONLY => "O_RDONLY",
        O_WRONLY => "O_WRONLY",
        O_RDWR => "O_RDWR",
        _ => "O_ACCMODE",
    }
    .to_string()];
    for (bit, name) in [
        (O_CREAT, "O_CREAT"),
        (O_EXCL, "O_EXCL"),
        (O_TRUNC, "O_TRUNC"),
        (O_APPEND, "O_APPEND"),
        (O_NONBLOCK, "O_NONBLOCK"),
        (O_DIRECTORY, "O_DIRECTORY"),
        (O_CLOEXEC, "O_CLOEXEC"),
    ] {
        if flags & bit != 0 {
            parts.push(name.to_string());
        }
    }
    parts.join("|")
}
