//! The page cache (Linux `mm/filemap.c`, `mm/readahead.c`, `mm/page-writeback.c`,
//! `mm/truncate.c`).
//!
//! Owns everything that moves pages between real files and frames: lookup
//! ([`Kernel::find_get_page`]), reading pages in with read-around ([`Kernel::read_pages`],
//! [`Kernel::filemap_fault`]), write-back of dirty pages with the PTEs write-protected
//! first (`page_mkclean`), truncation, dropping clean pages when RAM runs short, and the
//! rmap walk by file (`unmap_mapping_range`). Each inode's index lives in [`Inode::pages`], a
//! [`index::PageIndex`].

pub mod index;
pub mod readahead;

use crate::addr::{Pfn, PgOff, VirtAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::errno::{Errno, SysResult};
use crate::events::Event;
use crate::fs::{FileKind, Inode, InodeId};
use crate::hw::phys::FrameFlags;
use crate::hw::pte::Pte;
use crate::kernel::Kernel;
use crate::mm::pgtable;
use crate::mm::vma::{vm, Vma};
use crate::process::Pid;

/// Why a page could not be provided to a fault.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PageError {
    /// The page lies wholly past end of file (SIGBUS, BUS_ADRERR).
    BeyondEof,
    /// Reading the file failed (SIGBUS).
    Io,
    /// No frame could be found (OOM).
    NoMemory,
}

impl Kernel {
    pub(crate) fn inode(&self, id: InodeId) -> &Inode {
        &self.inodes[id.0 as usize]
    }

    pub(crate) fn inode_mut(&mut self, id: InodeId) -> &mut Inode {
        &mut self.inodes[id.0 as usize]
    }

    /// Pages the file spans (the last one possibly partial).
    pub(crate) fn size_pages(&self, id: InodeId) -> u64 {
        self.inode(id).size.div_ceil(PAGE_SIZE)
    }

    /// The cached page at `pgoff`, counting the lookup.
    pub(crate) fn find_get_page(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        pgoff: PgOff,
    ) -> Option<Pfn> {
        let pfn = self.inode(id).pages.get(&pgoff.0).copied();
        self.count_cache_lookup(pid, id, pgoff, pfn.is_some());
        pfn
    }

    /// Counts a page-cache lookup of `pgoff` (for `pid`, or the kernel's own) that found
    /// the page (`hit`) or not, and tells any observer.
    pub(crate) fn count_cache_lookup(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        pgoff: PgOff,
        hit: bool,
    ) {
        let stats = match pid.and_then(|p| self.proc_mut(p).ok()) {
            Some(p) => &mut p.stats,
            None => &mut self.kstats,
        };
        if hit {
            stats.cache_hits += 1;
        } else {
            stats.cache_misses += 1;
        }
        if self.events.enabled() {
            let file = self.inode(id).path.clone();
            self.events.emit(|| Event::CacheLookup { file, pgoff, hit });
        }
    }

    pub(crate) fn add_to_page_cache(&mut self, id: InodeId, pgoff: u64, pfn: Pfn) {
        let m = self.phys.meta_mut(pfn);
        m.refcount = 1;
        m.owner = id.0;
        m.index = pgoff;
        self.inode_mut(id).pages.insert(pgoff, pfn);
        self.lru_add(pfn);
    }

    /// Reads the uncached pages of `[start, start + count)` that lie inside the file into
    /// the cache, one disk request per contiguous run. Returns the pages read.
    pub(crate) fn read_pages(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        start: u64,
        count: u64,
    ) -> Result<u64, PageError> {
        let end = start.saturating_add(count).min(self.size_pages(id));
        let mut pg = start;
        let mut total = 0;
        while pg < end {
            pg = self.inode(id).next_miss(pg, end - pg);
            if pg == end {
                break;
            }
            let run_start = pg;
            while pg < end && !self.inode(id).has_entry(pg) {
                pg += 1;
            }
            total += self.read_run(pid, id, run_start, pg - run_start)?;
        }
        Ok(total)
    }

    fn read_run(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        start: u64,
        n: u64,
    ) -> Result<u64, PageError> {
        if self.inode(id).kind == FileKind::Shmem {
            for pg in start..start + n {
                let pfn = self
                    .alloc_frame_zeroed(FrameFlags::PAGE_CACHE)
                    .ok_or(PageError::NoMemory)?;
                self.add_to_page_cache(id, pg, pfn);
            }
            return Ok(n);
        }
        let mut frames = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match self.alloc_frame(FrameFlags::PAGE_CACHE) {
                Some(f) => frames.push(f),
                None => break,
            }
        }
        if frames.is_empty() {
            return Err(PageError::NoMemory);
        }
        let n = frames.len() as u64;
        let bytes = (n << PAGE_SHIFT) as usize;
        let mut buf = std::mem::take(&mut self.io_buf);
        buf.resize(bytes, 0);
        let offset = start << PAGE_SHIFT;
        let res = {
            let ino = self.inode(id);
            match &ino.store {
                Some(s) => crate::fs::store::read_full(s.as_ref(), &mut buf[..bytes], offset),
                None => Ok(0),
            }
        };
        let got = match res {
            Ok(got) => got,
            Err(_) => {
                for f in frames {
                    self.phys.free(f);
                }
                self.io_buf = buf;
                return Err(PageError::Io);
            }
        };
        // Bytes past i_size read as zero even if the host file is longer.
        let size = self.inode(id).size;
        let valid = (size.saturating_sub(offset) as usize).min(bytes);
        buf[valid..bytes].fill(0);
        for (i, f) in frames.iter().enumerate() {
            let o = i << PAGE_SHIFT;
            self.phys
                .frame_bytes_mut(*f)
                .copy_from_slice(&buf[o..o + PAGE_SIZE as usize]);
            self.add_to_page_cache(id, start + i as u64, *f);
        }
        self.io_buf = buf;
        let stats = match pid.and_then(|p| self.proc_mut(p).ok()) {
            Some(p) => &mut p.stats,
            None => &mut self.kstats,
        };
        stats.disk_reads += 1;
        stats.disk_read_pages += n;
        stats.disk_read_bytes += got as u64;
        if self.events.enabled() {
            let file = self.inode(id).path.clone();
            for f in &frames {
                let pfn = *f;
                self.events.emit(|| Event::FrameAlloc {
                    pfn,
                    purpose: "page cache",
                });
            }
            self.events.emit(|| Event::DiskRead {
                file,
                pgoff: PgOff(start),
                pages: n,
                bytes: got as u64,
            });
        }
        Ok(n)
    }

    /// The up-to-date cached page at `pg`, reading it from the file now if it is missing
    /// or not up to date (Linux `filemap_read_folio`).
    pub(crate) fn read_page_now(
        &mut self,
        pid: Option<Pid>,
        id: InodeId,
        pg: u64,
    ) -> Result<Pfn, PageError> {
        self.inode_mut(id).stale.remove(&pg);
        if let Some(&pfn) = self.inode(id).pages.get(&pg) {
            return Ok(pfn);
        }
        self.read_run(pid, id, pg, 1)?;
        self.inode(id).pages.get(&pg).copied().ok_or(PageError::Io)
    }

    /// Finds or reads the page at `pgoff` for a fault (Linux `filemap_fault` and
    /// `do_sync_mmap_readahead`): a cache hit is a minor fault; a miss is major and reads
    /// around the page: `read_around_pages` centred on it; forward from it for
    /// MADV_SEQUENTIAL; forward from it, clipped to the VMA, for an executable mapping
    /// (Linux 6.16+); the page alone for MADV_RANDOM.
    pub(crate) fn filemap_fault(
        &mut self,
        pid: Pid,
        id: InodeId,
        pgoff: PgOff,
        vma: &Vma,
    ) -> Result<(Pfn, bool), PageError> {
        if pgoff.0 >= self.size_pages(id) {
            return Err(PageError::BeyondEof);
        }
        if self.inode(id).stale.contains(&pgoff.0) {
            // In the cache but not up to date: read it; not a major fault (Linux
            // filemap_fault's page_not_uptodate path).
            return Ok((self.read_page_now(Some(pid), id, pgoff.0)?, false));
        }
        if let Some(pfn) = self.find_get_page(Some(pid), id, pgoff) {
            // do_async_mmap_readahead: reaching the mark starts the next window.
            // (The mark is on the page just found: no second lookup.)
            if vma.flags & vm::RAND_READ == 0
                && self.phys.meta(pfn).flags.has(FrameFlags::READAHEAD)
            {
                // Hold the page while the next window is read: reclaim skips busy pages.
                self.get_page(pfn);
                let n = self
                    .page_cache_async_ra(Some(pid), id, vma.file_serial, pgoff.0, 1)
                    .unwrap_or(0);
                self.put_page(pfn);
                if let Ok(p) = self.proc_mut(pid) {
                    p.stats.readahead_pages += n;
                }
            }
            return Ok((pfn, false));
        }
        if self.inode(id).kind == FileKind::Shmem {
            self.read_pages(Some(pid), id, pgoff.0, 1)?;
            return Ok((self.inode(id).pages[&pgoff.0], false));
        }
        // do_sync_mmap_readahead. If RAM is too short for the window, the faulting page
        // alone is read below.
        let ra = self.cfg.read_around_pages;
        let serial = vma.file_serial;
        let mut read = 0;
        if vma.flags & vm::RAND_READ == 0 && ra > 0 {
            read = if vma.flags & vm::SEQ_READ != 0 {
                self.page_cache_sync_ra(Some(pid), id, serial, pgoff.0, ra)
            } else {
                let (start, size, async_size) = if vma.executable() {
                    // Executable memory: forward from the fault, clipped to the VMA, no
                    // asynchronous part (Linux 6.16+).
                    let vma_end = vma.pgoff.0 + vma.pages();
                    (pgoff.0, ra.min(vma_end - pgoff.0), 0)
                } else {
                    // mmap read-around: a window centred on the fault.
                    (pgoff.0.saturating_sub(ra / 2), ra, ra / 4)
                };
                let mut st = self.ra_state(serial);
                st.start = start;
                st.size = size;
                st.async_size = async_size;
                self.set_ra_state(serial, st);
                self.ra_submit(Some(pid), id, start, size, async_size)
            }
            .unwrap_or(0);
        }
        if !self.inode(id).pages.contains_key(&pgoff.0) {
            self.read_page_now(Some(pid), id, pgoff.0)?;
            read += 1;
        }
        let refault = self.shadow.remove(&(id.0, pgoff.0));
        if let Ok(p) = self.proc_mut(pid) {
            p.stats.readahead_pages += read.saturating_sub(1);
            p.stats.refaults += u64::from(refault);
        }
        let pfn = *self.inode(id).pages.get(&pgoff.0).ok_or(PageError::Io)?;
        Ok((pfn, true))
    }

    /// Write-protects and cleans every PTE that maps file pages `[first, last]` of `id`
    /// in shared mappings, so that the next store faults and re-dirties (Linux
    /// `page_mkclean`, found through the file's mappings as `rmap_walk_file` does).
    pub(crate) fn page_mkclean_range(&mut self, id: InodeId, first: u64, last: u64) {
        let geom = self.cfg.geometry;
        for pi in 0..self.procs.len() {
            let Some(p) = self.procs[pi].as_ref() else {
                continue;
            };
            let root = p.mm.root;
            let asid = p.mm.asid;
            let ranges: Vec<(VirtAddr, VirtAddr)> =
                p.mm.vmas
                    .values()
                    .filter(|v| v.inode() == Some(id) && v.flags & vm::SHARED != 0)
                    .filter_map(|v| clip_to_pgoffs(v.start, v.pgoff.0, v.pages(), first, last))
                    .collect();
            for (s, e) in ranges {
                let mut flushed = Vec::new();
                pgtable::for_each_pte(
                    &mut self.phys,
                    &geom,
                    root,
                    s,
                    e,
                    &mut |phys, va, slot, pte| {
                        if pte.writable() || pte.dirty() {
                            geom.write_pte(phys, slot, pte.without(Pte::WRITABLE | Pte::DIRTY));
                            flushed.push(va);
                        }
                    },
                );
                for va in flushed {
                    self.tlb.flush_page(asid, va.vpn());
                }
            }
        }
    }

    /// Removes the mappings of file pages `>= from` in every process, private copies
    /// included (Linux `unmap_mapping_range(..., even_cows = 1)` at truncate).
    pub(crate) fn unmap_mapping_range(&mut self, id: InodeId, from: u64) {
        for pi in 0..self.procs.len() {
            let Some(p) = self.procs[pi].as_ref() else {
                continue;
            };
            let pid = p.pid;
            let ranges: Vec<(VirtAddr, VirtAddr)> =
                p.mm.vmas
                    .values()
                    .filter(|v| v.inode() == Some(id))
                    .filter_map(|v| clip_to_pgoffs(v.start, v.pgoff.0, v.pages(), from, u64::MAX))
                    .collect();
            for (s, e) in ranges {
                self.zap_range(pid, s, e);
            }
        }
    }

    /// Writes the dirty cached pages of `[first, last]` to the file, one request per run
    /// of contiguous dirty pages, after write-protecting their PTEs; with `sync`, then
    /// fsyncs the file. The part of the last page past end of file is zeroed and never
    /// written (as ext4's writeback does).
    pub(crate) fn writeback_range(
        &mut self,
        id: InodeId,
        first: u64,
        last: u64,
        sync: bool,
    ) -> SysResult<()> {
        if self.inode(id).kind != FileKind::Regular {
            return Ok(());
        }
        if self.inode(id).nr_dirty > 0 {
            let dirty: Vec<(u64, Pfn)> = self
                .inode(id)
                .pages
                .range(first..=last)
                .filter(|(_, p)| self.phys.meta(*p).flags.has(FrameFlags::DIRTY))
                .collect();
            if !dirty.is_empty() {
                self.page_mkclean_range(id, dirty[0].0, dirty[dirty.len() - 1].0);
                let mut i = 0;
                while i < dirty.len() {
                    let mut j = i + 1;
                    while j < dirty.len() && dirty[j].0 == dirty[j - 1].0 + 1 {
                        j += 1;
                    }
                    self.write_run(id, &dirty[i..j])?;
                    i = j;
                }
            }
        }
        if sync {
            if let Some(s) = &self.inode(id).store {
                s.sync().map_err(|e| Errno::from_io(&e))?;
            }
        }
        Ok(())
    }

    fn write_run(&mut self, id: InodeId, run: &[(u64, Pfn)]) -> SysResult<()> {
        let size = self.inode(id).size;
        let start = run[0].0 << PAGE_SHIFT;
        let end = ((run[run.len() - 1].0 + 1) << PAGE_SHIFT).min(size);
        if end <= start {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.io_buf);
        buf.clear();
        for &(pg, pfn) in run {
            let page_start = pg << PAGE_SHIFT;
            if page_start + PAGE_SIZE > size {
                let keep = (size - page_start) as usize;
                self.phys.frame_bytes_mut(pfn)[keep..].fill(0);
            }
            buf.extend_from_slice(self.phys.frame_bytes(pfn));
        }
        let len = (end - start) as usize;
        let res = match &self.inode(id).store {
            Some(s) if self.inode(id).store_writable => s.write_at(&buf[..len], start),
            Some(_) => Err(std::io::Error::from_raw_os_error(Errno::EBADF as i32)),
            None => Ok(()),
        };
        self.io_buf = buf;
        res.map_err(|e| Errno::from_io(&e))?;
        for &(_, pfn) in run {
            self.phys.meta_mut(pfn).flags.0 &= !FrameFlags::DIRTY;
        }
        self.inode_mut(id).nr_dirty -= run.len() as u64;
        self.kstats.disk_writes += 1;
        self.kstats.disk_write_pages += run.len() as u64;
        self.kstats.disk_write_bytes += len as u64;
        if self.events.enabled() {
            let file = self.inode(id).path.clone();
            let n = run.len() as u64;
            self.events.emit(|| Event::DiskWrite {
                file,
                pgoff: PgOff(run[0].0),
                pages: n,
                bytes: len as u64,
            });
        }
        Ok(())
    }

    /// Marks a cached page dirty (Linux `set_page_dirty`).
    pub(crate) fn set_page_dirty(&mut self, pfn: Pfn) {
        let m = self.phys.meta_mut(pfn);
        if !m.flags.has(FrameFlags::DIRTY) {
            m.flags.0 |= FrameFlags::DIRTY;
            let owner = m.owner;
            self.inodes[owner as usize].nr_dirty += 1;
        }
    }

    /// Drops every cached page of `id` from `from` on (they must be unmapped already).
    pub(crate) fn truncate_inode_pages(&mut self, id: InodeId, from: u64) {
        let _ = self.inode_mut(id).stale.split_off(&from);
        let gone: Vec<(u64, Pfn)> = self.inode(id).pages.range(from..).collect();
        for (pg, pfn) in gone {
            self.inode_mut(id).pages.remove(&pg);
            if self.phys.meta(pfn).flags.has(FrameFlags::DIRTY) {
                self.phys.meta_mut(pfn).flags.0 &= !FrameFlags::DIRTY;
                self.inode_mut(id).nr_dirty -= 1;
            }
            if self.events.enabled() {
                let file = self.inode(id).path.clone();
                self.events.emit(|| Event::CacheEvict {
                    file,
                    pgoff: PgOff(pg),
                });
            }
            self.put_page(pfn);
        }
    }

    /// Drops up to `want` clean page-cache pages that no process maps; returns how many.
    pub(crate) fn shrink_page_cache(&mut self, want: usize) -> usize {
        let mut freed = 0;
        for i in 0..self.inodes.len() {
            if self.inodes[i].kind == FileKind::Shmem {
                continue;
            }
            let victims: Vec<(u64, Pfn)> = self.inodes[i]
                .pages
                .iter()
                .filter(|(_, p)| {
                    let m = self.phys.meta(*p);
                    m.refcount == 1 && !m.flags.has(FrameFlags::DIRTY)
                })
                .take(want - freed)
                .collect();
            for (pg, pfn) in victims {
                self.inodes[i].pages.remove(&pg);
                if self.events.enabled() {
                    let file = self.inodes[i].path.clone();
                    self.events.emit(|| Event::CacheEvict {
                        file,
                        pgoff: PgOff(pg),
                    });
                }
                self.put_page(pfn);
                freed += 1;
            }
            if freed >= want {
                break;
            }
        }
        freed
    }

    /// Drops every clean, unmapped page-cache page (`echo 1 > /proc/sys/vm/drop_caches`).
    /// Returns the pages dropped.
    pub fn drop_caches(&mut self) -> u64 {
        for ino in &mut self.inodes {
            ino.stale.clear();
        }
        self.shrink_page_cache(usize::MAX) as u64
    }
}

/// The sub-range of a VMA (`start`, first page `pgoff`, `pages` long) that maps file pages
/// `[first, last]`.
fn clip_to_pgoffs(
    start: VirtAddr,
    pgoff: u64,
    pages: u64,
    first: u64,
    last: u64,
) -> Option<(VirtAddr, VirtAddr)> {
    let lo = first.max(pgoff);
    let hi = last.min(pgoff + pages - 1);
    (lo <= hi).then(|| {
        (
            start.add((lo - pgoff) << PAGE_SHIFT),
            start.add((hi - pgoff + 1) << PAGE_SHIFT),
        )
    })
}
