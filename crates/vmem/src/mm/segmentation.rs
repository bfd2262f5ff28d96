//! The address-space syscalls when the machine translates with segments.
//!
//! Owns `mmap`, `munmap`, `mprotect` and `msync` for [`TranslationMode::Segmentation`]
//! and [`TranslationMode::SegmentPaging`], and the logical-address translation they
//! need. In pure segmentation `mmap` allocates a segment: a physically contiguous run of
//! frames, loaded whole from the file at `mmap` time (there are no pages to fault in), and
//! written back to the file at `msync` and `munmap` for MAP_SHARED. In segment-plus-paging
//! `mmap` makes an ordinary VMA in the linear address space (demand paging, page cache and
//! all) and a segment over it; the address returned is the logical one, `segment << 32`.
//! Calls that only make sense with pages (`mremap`, and `madvise`/`mincore` in pure
//! segmentation) return ENOSYS.

use crate::addr::{page_align_up, Pfn, PhysAddr, VirtAddr, PAGE_SHIFT};
use crate::config::TranslationMode;
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::events::Event;
use crate::fs::{Fd, FileKind, InodeId};
use crate::hw::mmu::Access;
use crate::hw::phys::FrameFlags;
use crate::hw::segment::{self, SegFault, Segment};
use crate::kernel::Kernel;
use crate::process::Pid;
use crate::signal::{SegvCode, Signal};

/// A process's segment: the descriptor and what is behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentMapping {
    /// The descriptor the segmentation unit reads.
    pub desc: Segment,
    /// Pure segmentation: the first frame of the contiguous run and its length in pages.
    pub frames: Option<(Pfn, u64)>,
    /// A MAP_SHARED file mapping (pure segmentation): written back at msync and munmap.
    pub shared_file: Option<(InodeId, u64)>,
}

impl Kernel {
    /// Whether addresses are logical (segmented).
    #[inline]
    pub(crate) fn segmented(&self) -> bool {
        self.cfg.translation != TranslationMode::Paging
    }

    /// The segments of a process, by number (0 is the null segment).
    pub fn segments(&self, pid: Pid) -> SysResult<Vec<Option<SegmentMapping>>> {
        Ok(self.proc_ref(pid)?.segments.clone())
    }

    /// Translates a logical address through the segmentation unit, then (segment plus
    /// paging) through the page tables.
    #[cold]
    pub(crate) fn translate_segmented(
        &mut self,
        pid: Pid,
        va: VirtAddr,
        access: Access,
    ) -> Result<PhysAddr, Signal> {
        let table: Vec<Option<Segment>> = self
            .proc_ref(pid)
            .map(|p| {
                p.segments
                    .iter()
                    .map(|s| s.as_ref().map(|m| m.desc))
                    .collect()
            })
            .unwrap_or_default();
        let r = segment::translate(&table, va.0, access);
        if self.events.enabled() {
            let (seg, offset) = segment::split(va.0);
            let desc = table.get(seg as usize).copied().flatten();
            let result = r;
            self.events.emit(|| Event::SegmentTranslate {
                pid,
                seg,
                offset,
                desc,
                result,
            });
        }
        match r {
            Ok(linear) => match self.cfg.translation {
                TranslationMode::Segmentation => Ok(PhysAddr(linear)),
                _ => self.translate_paged(pid, VirtAddr(linear), access),
            },
            Err(f) => {
                let code = match f {
                    SegFault::NoSegment => SegvCode::MapErr,
                    SegFault::Limit | SegFault::Protection => SegvCode::AccErr,
                };
                Err(self.deliver(pid, Signal::Segv { addr: va, code }))
            }
        }
    }

    /// The linear address of a logical one (segment plus paging), for calls that pass
    /// addresses on to the paging code.
    pub(crate) fn seg_linear(&self, pid: Pid, va: VirtAddr, len: u64) -> SysResult<VirtAddr> {
        let (seg, off) = segment::split(va.0);
        let p = self.proc_ref(pid)?;
        let s = p
            .segments
            .get(seg as usize)
            .and_then(|s| s.as_ref())
            .ok_or(Errno::ENOMEM)?;
        if off.checked_add(len).is_none_or(|e| e > s.desc.limit) {
            return Err(Errno::ENOMEM);
        }
        Ok(VirtAddr(s.desc.base + off))
    }

    fn seg_lookup(&self, pid: Pid, va: VirtAddr) -> SysResult<(usize, SegmentMapping)> {
        let (seg, off) = segment::split(va.0);
        if off != 0 {
            return Err(Errno::EINVAL);
        }
        let p = self.proc_ref(pid)?;
        let s = p
            .segments
            .get(seg as usize)
            .cloned()
            .flatten()
            .ok_or(Errno::EINVAL)?;
        Ok((seg as usize, s))
    }

    /// `mmap` in a segmented machine.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn seg_mmap(
        &mut self,
        pid: Pid,
        len: u64,
        prot: i32,
        flags: i32,
        fd: Fd,
        offset: i64,
    ) -> SysResult<VirtAddr> {
        self.proc_ref(pid)?;
        if offset as u64 & crate::addr::PAGE_MASK != 0 || len == 0 || len >= segment::SEG_SPAN {
            return Err(Errno::EINVAL);
        }
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            // Logical addresses are the kernel's to choose.
            return Err(Errno::EINVAL);
        }
        let limit = page_align_up(len).ok_or(Errno::ENOMEM)?;
        let seg_no = {
            let p = self.proc_ref(pid)?;
            (1..p.segments.len())
                .find(|&i| p.segments[i].is_none())
                .unwrap_or(p.segments.len().max(1))
        };
        let mapping = if self.cfg.translation == TranslationMode::SegmentPaging {
            let linear = self.do_mmap(pid, VirtAddr(0), len, prot, flags, fd, offset)?;
            SegmentMapping {
                desc: Segment {
                    base: linear.0,
                    limit,
                    prot: prot & 7,
                    grows_down: flags & MAP_GROWSDOWN != 0,
                },
                frames: None,
                shared_file: None,
            }
        } else {
            let file = if flags & MAP_ANONYMOUS == 0 {
                let f = self.file(self.fd_file(pid, fd)?).clone();
                if !f.readable()
                    || (flags & MAP_TYPE != MAP_PRIVATE && prot & PROT_WRITE != 0 && !f.writable())
                {
                    return Err(Errno::EACCES);
                }
                if self.inode(f.inode).kind != FileKind::Regular {
                    return Err(Errno::ENODEV);
                }
                Some(f.inode)
            } else {
                None
            };
            if !matches!(
                flags & MAP_TYPE,
                MAP_SHARED | MAP_PRIVATE | MAP_SHARED_VALIDATE
            ) {
                return Err(Errno::EINVAL);
            }
            let pages = limit >> PAGE_SHIFT;
            let first = self
                .phys
                .alloc_contiguous(pages, FrameFlags::ANON)
                .ok_or(Errno::ENOMEM)?;
            for i in 0..pages {
                let pfn = Pfn(first.0 + i);
                self.phys.frame_bytes_mut(pfn).fill(0);
                self.phys.meta_mut(pfn).refcount = 1;
            }
            if let Some(id) = file {
                // The segment is loaded whole: read the file's bytes (through the page
                // cache, so the data is what read() would see).
                let size = self.inode(id).size;
                let start = offset as u64;
                let n = size.saturating_sub(start).min(limit);
                let data = self.filemap_read(pid, id, 0, start, n as usize)?;
                self.phys.write(first.addr(), &data);
            }
            let shared = flags & MAP_TYPE != MAP_PRIVATE;
            SegmentMapping {
                desc: Segment {
                    base: first.addr().0,
                    limit,
                    prot: prot & 7,
                    grows_down: flags & MAP_GROWSDOWN != 0,
                },
                frames: Some((first, pages)),
                shared_file: file.filter(|_| shared).map(|id| (id, offset as u64)),
            }
        };
        let p = self.proc_mut(pid)?;
        if seg_no >= p.segments.len() {
            p.segments.resize(seg_no + 1, None);
        }
        p.segments[seg_no] = Some(mapping);
        Ok(VirtAddr(segment::logical(seg_no as u64, 0)))
    }

    /// `munmap` of a whole segment.
    pub(crate) fn seg_munmap(&mut self, pid: Pid, addr: VirtAddr, len: u64) -> SysResult<()> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let (no, s) = self.seg_lookup(pid, addr)?;
        if let Some((id, off)) = s.shared_file {
            self.seg_writeback(&s, id, off)?;
        }
        match s.frames {
            Some((first, pages)) => {
                for i in 0..pages {
                    self.put_page(Pfn(first.0 + i));
                }
            }
            None => self.unmap_range(
                pid,
                VirtAddr(s.desc.base),
                VirtAddr(s.desc.base + s.desc.limit),
            ),
        }
        self.proc_mut(pid)?.segments[no] = None;
        Ok(())
    }

    /// `mprotect` of a whole segment.
    pub(crate) fn seg_mprotect(&mut self, pid: Pid, addr: VirtAddr, prot: i32) -> SysResult<()> {
        let (no, s) = self.seg_lookup(pid, addr)?;
        if s.frames.is_none() {
            self.do_mprotect(pid, VirtAddr(s.desc.base), s.desc.limit, prot)?;
        }
        if let Some(m) = self.proc_mut(pid)?.segments[no].as_mut() {
            m.desc.prot = prot & 7;
        }
        Ok(())
    }

    /// `msync` of a segment.
    pub(crate) fn seg_msync(
        &mut self,
        pid: Pid,
        addr: VirtAddr,
        len: u64,
        flags: i32,
    ) -> SysResult<()> {
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || flags & MS_ASYNC != 0 && flags & MS_SYNC != 0
        {
            return Err(Errno::EINVAL);
        }
        if self.cfg.translation == TranslationMode::SegmentPaging {
            let linear = self.seg_linear(pid, addr, len)?;
            return self.do_msync(pid, linear, len, flags);
        }
        let (_, s) = self.seg_lookup(pid, addr)?;
        if let (Some((id, off)), true) = (s.shared_file, flags & MS_SYNC != 0) {
            self.seg_writeback(&s, id, off)?;
        }
        Ok(())
    }

    /// Writes a shared file segment's bytes (up to end of file) back through the file.
    fn seg_writeback(&mut self, s: &SegmentMapping, id: InodeId, off: u64) -> SysResult<()> {
        let Some((first, _)) = s.frames else {
            return Ok(());
        };
        let size = self.inode(id).size;
        let n = size.saturating_sub(off).min(s.desc.limit) as usize;
        let mut buf = vec![0u8; n];
        self.phys.read(first.addr(), &mut buf);
        // Through the page cache, so that read() and other mappings see the same bytes.
        let mut done = 0usize;
        while done < n {
            let pos = off + done as u64;
            let pg = pos >> PAGE_SHIFT;
            let in_page = (pos & crate::addr::PAGE_MASK) as usize;
            let chunk = (crate::addr::PAGE_SIZE as usize - in_page).min(n - done);
            let pfn = self.read_page_now(None, id, pg).map_err(|_| Errno::EIO)?;
            self.phys.frame_bytes_mut(pfn)[in_page..in_page + chunk]
                .copy_from_slice(&buf[done..done + chunk]);
            self.set_page_dirty(pfn);
            done += chunk;
        }
        if n > 0 {
            self.writeback_range(
                id,
                off >> PAGE_SHIFT,
                (off + n as u64 - 1) >> PAGE_SHIFT,
                true,
            )?;
        }
        Ok(())
    }

    /// Frees a process's segments (exit).
    pub(crate) fn seg_release_all(&mut self, pid: Pid) {
        let segs = self
            .proc_ref(pid)
            .map(|p| p.segments.clone())
            .unwrap_or_default();
        for (no, s) in segs.into_iter().enumerate() {
            if s.is_some() {
                let _ = self.seg_munmap(pid, VirtAddr(segment::logical(no as u64, 0)), 1);
            }
        }
    }
}
