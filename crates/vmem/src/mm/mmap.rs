//! `mmap` (Linux `mm/mmap.c`: `ksys_mmap_pgoff`, `do_mmap`, `get_unmapped_area`,
//! `mmap_region`).
//!
//! Owns the creation of mappings: argument checks in the kernel's order (so that the
//! errno a bad call gets is the one Linux gives), the placement of the new range (MAP_FIXED,
//! MAP_FIXED_NOREPLACE, a hint, or the top-down search below `mmap_base`), the VMA with
//! its flags and backing, merging with compatible neighbours, and MAP_POPULATE. Nothing is
//! read or allocated for the pages themselves: they arrive at the first touch.

use crate::addr::{page_align_up, PgOff, VirtAddr, PAGE_MASK, PAGE_SHIFT};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::events::Event;
use crate::fs::{Fd, FileKind};
use crate::kernel::Kernel;
use crate::mm::vma::{vm, Backing, Vma};
use crate::process::Pid;

impl Kernel {
    /// `mmap(addr, len, prot, flags, fd, offset)`: returns the start of the new mapping.
    #[allow(clippy::too_many_arguments)]
    pub fn mmap(
        &mut self,
        pid: Pid,
        addr: VirtAddr,
        len: u64,
        prot: i32,
        flags: i32,
        fd: Fd,
        offset: i64,
    ) -> SysResult<VirtAddr> {
        let r = if self.segmented() {
            self.seg_mmap(pid, len, prot, flags, fd, offset)
        } else {
            self.do_mmap(pid, addr, len, prot, flags, fd, offset)
        };
        self.trace_syscall(
            pid,
            || {
                format!(
                    "mmap({}, {len}, {}, {}, {fd}, {offset})",
                    if addr.0 == 0 {
                        "NULL".to_string()
                    } else {
                        addr.to_string()
                    },
                    prot_str(prot),
                    map_flags_str(flags)
                )
            },
            &r,
        );
        r
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn do_mmap(
        &mut self,
        pid: Pid,
        addr: VirtAddr,
        len: u64,
        prot: i32,
        mut flags: i32,
        fd: Fd,
        offset: i64,
    ) -> SysResult<VirtAddr> {
        self.proc_ref(pid)?;
        // arch sys_mmap: the offset must be page aligned before anything else.
        if offset as u64 & PAGE_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        // ksys_mmap_pgoff: the descriptor, unless anonymous.
        let file = if flags & MAP_ANONYMOUS == 0 {
            let fid = self.fd_file(pid, fd)?;
            Some(self.file(fid).clone())
        } else {
            None
        };
        if flags & MAP_HUGETLB != 0 {
            // A file that is not on hugetlbfs cannot be mapped MAP_HUGETLB; anonymous
            // memory gets an anonymous hugetlbfs file (mm/hugetlb.rs).
            if file.is_some() {
                return Err(Errno::EINVAL);
            }
            return self.hugetlb_mmap(pid, addr, len, prot, flags, offset);
        }
        // do_mmap.
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len).ok_or(Errno::ENOMEM)?;
        let (start, pgoff) = self.mmap_place(pid, addr, len, &mut flags, offset, false)?;
        let end = start.add(len);

        let mut vm_flags = vm::MAYREAD | vm::MAYWRITE | vm::MAYEXEC;
        if flags & MAP_NORESERVE != 0 {
            vm_flags |= vm::NORESERVE;
        }
        if flags & MAP_LOCKED != 0 {
            vm_flags |= vm::LOCKED;
        }
        let backing;
        let mut anon_file = None;
        let mut file_serial = 0;
        let mut vma_pgoff = PgOff(pgoff);
        match file {
            Some(f) => {
                let inode = f.inode;
                let kind = self.inode(inode).kind;
                // file_mmap_ok: the mapped range must fit below the largest file offset.
                let maxsize = i64::MAX as u64;
                if len > maxsize || pgoff > (maxsize - len) >> PAGE_SHIFT {
                    return Err(Errno::EOVERFLOW);
                }
                match flags & MAP_TYPE {
                    MAP_SHARED | MAP_SHARED_VALIDATE => {
                        if flags & MAP_TYPE == MAP_SHARED {
                            flags &= LEGACY_MAP_MASK;
                        }
                        if flags & !LEGACY_MAP_MASK != 0 {
                            return Err(Errno::EOPNOTSUPP);
                        }
                        if prot & PROT_WRITE != 0 && !f.writable() {
                            return Err(Errno::EACCES);
                        }
                        vm_flags |= vm::SHARED | vm::MAYSHARE;
                        if !f.writable() {
                            vm_flags &= !(vm::MAYWRITE | vm::SHARED);
                        }
                        if !f.readable() {
                            return Err(Errno::EACCES);
                        }
                    }
                    MAP_PRIVATE => {
                        if !f.readable() {
                            return Err(Errno::EACCES);
                        }
                    }
                    _ => return Err(Errno::EINVAL),
                }
                if !kind.mappable() {
                    return Err(Errno::ENODEV);
                }
                if flags & MAP_GROWSDOWN != 0 {
                    return Err(Errno::EINVAL);
                }
                if flags & MAP_SYNC != 0 && kind == FileKind::Regular {
                    // No DAX here: like ext4, refuse synchronous page faults.
                    return Err(Errno::EOPNOTSUPP);
                }
                if let FileKind::Device(_) = kind {
                    // A device refuses copy-on-write mappings and ranges past its registers
                    // (what drivers' mmap handlers answer: EINVAL).
                    let size = self.inode(inode).size;
                    if vm_flags & vm::MAYSHARE == 0
                        || pgoff
                            .saturating_mul(crate::addr::PAGE_SIZE)
                            .saturating_add(len)
                            > size
                    {
                        return Err(Errno::EINVAL);
                    }
                }
                if kind == FileKind::DevZero {
                    // /dev/zero: private is anonymous memory, shared is a fresh shmem object.
                    if vm_flags & vm::MAYSHARE != 0 {
                        let shm = self.new_shmem_inode(len);
                        file_serial = self.next_file_serial();
                        backing = Backing::File(shm);
                        vma_pgoff = PgOff(0);
                    } else {
                        backing = Backing::Anon;
                        anon_file = Some(inode);
                        file_serial = f.serial;
                    }
                } else {
                    backing = Backing::File(inode);
                    file_serial = f.serial;
                }
            }
            None => match flags & MAP_TYPE {
                MAP_SHARED => {
                    if flags & MAP_GROWSDOWN != 0 {
                        return Err(Errno::EINVAL);
                    }
                    vm_flags |= vm::SHARED | vm::MAYSHARE;
                    let shm = self.new_shmem_inode(len);
                    file_serial = self.next_file_serial();
                    backing = Backing::File(shm);
                    vma_pgoff = PgOff(0);
                }
                MAP_PRIVATE | MAP_DROPPABLE => {
                    if flags & MAP_GROWSDOWN != 0 {
                        vm_flags |= vm::GROWSDOWN;
                    }
                    backing = Backing::Anon;
                    vma_pgoff = PgOff(start.0 >> PAGE_SHIFT);
                }
                _ => return Err(Errno::EINVAL),
            },
        }

        // mmap_region: MAP_FIXED replaces whatever was there (a hugetlb area may only
        // be cut on a huge-page boundary).
        if flags & MAP_FIXED != 0 {
            self.hugetlb_check_split(pid, start)?;
            self.hugetlb_check_split(pid, end)?;
            self.unmap_range(pid, start, end);
        }
        // accountable_mapping: private writable memory is charged to the commit limit.
        if vm_flags & (vm::NORESERVE | vm::SHARED) == 0 && prot & PROT_WRITE != 0 {
            vm_flags |= vm::ACCOUNT;
        }
        let vma = Vma {
            start,
            end,
            prot: prot & (PROT_READ | PROT_WRITE | PROT_EXEC),
            flags: vm_flags,
            backing,
            pgoff: vma_pgoff,
            anon_file,
            file_serial,
            anon_vma: 0,
            special: Default::default(),
        };
        self.insert_vma_and_populate(pid, vma, flags)
    }

    /// `do_mmap`'s placement, for a length already rounded (to pages, or to huge pages
    /// for a hugetlb mapping): MAP_FIXED_NOREPLACE implies MAP_FIXED (set in `flags`), a
    /// hint is raised to `mmap_min_addr`, the file page range must not overflow
    /// (EOVERFLOW), the process must be below `max_map_count` (ENOMEM), an address is
    /// found (`get_unmapped_area`, or the huge-page-aligned `hugetlb_get_unmapped_area`),
    /// and MAP_FIXED_NOREPLACE over a mapping is EEXIST. Returns the start and the file
    /// page offset.
    pub(crate) fn mmap_place(
        &self,
        pid: Pid,
        addr: VirtAddr,
        len: u64,
        flags: &mut i32,
        offset: i64,
        hugetlb: bool,
    ) -> SysResult<(VirtAddr, u64)> {
        if *flags & MAP_FIXED_NOREPLACE != 0 {
            *flags |= MAP_FIXED;
        }
        let addr = if *flags & MAP_FIXED == 0 {
            self.round_hint_to_min(addr)
        } else {
            addr
        };
        let pgoff = (offset as u64) >> PAGE_SHIFT;
        if pgoff.checked_add(len >> PAGE_SHIFT).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        if self.proc_ref(pid)?.mm.map_count() > self.cfg.max_map_count {
            return Err(Errno::ENOMEM);
        }
        let start = if hugetlb {
            self.hugetlb_get_unmapped_area(pid, addr, len, *flags)?
        } else {
            self.get_unmapped_area(pid, addr, len, *flags)?
        };
        if *flags & MAP_FIXED_NOREPLACE != 0
            && self.proc_ref(pid)?.mm.intersects(start, start.add(len))
        {
            return Err(Errno::EEXIST);
        }
        Ok((start, pgoff))
    }

    /// The end of Linux `mmap_region` and `do_mmap`: inserts `vma` (merged with mergeable
    /// neighbours), announces it, and faults it in for MAP_POPULATE (without
    /// MAP_NONBLOCK) or MAP_LOCKED. A populate that cannot get a page (SIGBUS past the end
    /// of a file, an empty hugetlb pool) just stops, as in Linux. Returns the area's start.
    pub(crate) fn insert_vma_and_populate(
        &mut self,
        pid: Pid,
        vma: Vma,
        flags: i32,
    ) -> SysResult<VirtAddr> {
        let merged = self.proc_mut(pid)?.mm.insert(vma);
        if self.events.enabled() {
            let desc = self.describe_vma(&merged);
            self.events.emit(|| Event::VmaMapped {
                pid,
                start: merged.start,
                end: merged.end,
                desc,
            });
        }
        if (flags & MAP_POPULATE != 0 && flags & MAP_NONBLOCK == 0) || flags & MAP_LOCKED != 0 {
            let write = vma.writable() && !vma.is_shared();
            let _ = self.populate_range(pid, vma.start, vma.end, write);
        }
        Ok(vma.start)
    }

    /// `/proc/pid/maps`-style description of a VMA's permissions and backing.
    pub(crate) fn describe_vma(&self, v: &Vma) -> String {
        let backing = match v.backing {
            Backing::Anon if v.is_hugetlb() => format!(
                "anonymous 2 MiB huge pages (hugetlb, {})",
                if v.is_mayshare() { "shared" } else { "private" }
            ),
            Backing::Anon if v.anon_file.is_some() => "anonymous (private /dev/zero)".to_string(),
            Backing::Anon => "anonymous".to_string(),
            Backing::File(i) => {
                let ino = self.inode(i);
                if ino.kind == FileKind::Shmem {
                    "shared anonymous".to_string()
                } else {
                    format!("{} @ offset {}", ino.path, v.pgoff.byte_offset())
                }
            }
        };
        format!("{} {}", v.perms(), backing)
    }

    /// Linux `round_hint_to_min`: a hint below `mmap_min_addr` is raised to it; a hint
    /// that rounds down to zero is no hint.
    pub(crate) fn round_hint_to_min(&self, hint: VirtAddr) -> VirtAddr {
        let h = hint.0 & !PAGE_MASK;
        if h != 0 && h < self.cfg.mmap_min_addr {
            VirtAddr(page_align_up(self.cfg.mmap_min_addr).unwrap_or(0))
        } else {
            VirtAddr(h)
        }
    }

    /// Linux `get_unmapped_area`: where a new mapping of `len` bytes goes.
    pub(crate) fn get_unmapped_area(
        &self,
        pid: Pid,
        addr: VirtAddr,
        len: u64,
        flags: i32,
    ) -> SysResult<VirtAddr> {
        if len > self.task_size() {
            return Err(Errno::ENOMEM);
        }
        let mm = &self.proc_ref(pid)?.mm;
        if flags & MAP_FIXED != 0 {
            if addr.0 > self.task_size() - len {
                return Err(Errno::ENOMEM);
            }
            if !addr.is_aligned() {
                return Err(Errno::EINVAL);
            }
            return Ok(addr);
        }
        if addr.0 != 0 && addr.0 <= self.task_size() - len && !mm.intersects(addr, addr.add(len)) {
            return Ok(addr);
        }
        let low = self.cfg.mmap_min_addr;
        // Top-down: the highest gap below mmap_base that fits.
        let mut gap_end = mm.mmap_base;
        for v in mm.vmas.range(..mm.mmap_base).rev().map(|(_, v)| v) {
            if v.end.0 < gap_end && gap_end - v.end.0 >= len {
                return Ok(VirtAddr(gap_end - len));
            }
            gap_end = gap_end.min(v.start.0);
        }
        if gap_end >= low && gap_end - low >= len {
            return Ok(VirtAddr(gap_end - len));
        }
        // Fallback: bottom-up over the whole user range (Linux arch_get_unmapped_area).
        let mut cur = low;
        for v in mm.vmas.values() {
            if v.start.0 >= cur && v.start.0 - cur >= len {
                return Ok(VirtAddr(cur));
            }
            cur = cur.max(v.end.0);
        }
        if self.task_size() >= cur && self.task_size() - cur >= len {
            return Ok(VirtAddr(cur));
        }
        Err(Errno::ENOMEM)
    }
}

/// `PROT_READ|PROT_WRITE` style rendering.
pub fn prot_str(prot: i32) -> String {
    if prot == 0 {
        return "PROT_NONE".into();
    }
    let mut parts = Vec::new();
    for (bit, name) in [
        (PROT_READ, "PROT_READ"),
        (PROT_WRITE, "PROT_WRITE"),
        (PROT_EXEC, "PROT_EXEC"),
    ] {
        if prot & bit != 0 {
            parts.push(name.to_string());
        }
    }
    let rest = prot & !(PROT_READ | PROT_WRITE | PROT_EXEC);
    if rest != 0 {
        parts.push(format!("0x{rest:x}"));
    }
    parts.join("|")
}

/// `MAP_SHARED|MAP_FIXED` style rendering.
pub fn map_flags_str(flags: i32) -> String {
    let mut parts = vec![match flags & MAP_TYPE {
        MAP_SHARED => "MAP_SHARED".to_string(),
        MAP_PRIVATE => "MAP_PRIVATE".to_string(),
        MAP_SHARED_VALIDATE => "MAP_SHARED_VALIDATE".to_string(),
        t => format!("0x{t:x}"),
    }];
    let mut rest = flags & !MAP_TYPE;
    for (bit, name) in [
        (MAP_FIXED, "MAP_FIXED"),
        (MAP_ANONYMOUS, "MAP_ANONYMOUS"),
        (MAP_NORESERVE, "MAP_NORESERVE"),
        (MAP_POPULATE, "MAP_POPULATE"),
        (MAP_FIXED_NOREPLACE, "MAP_FIXED_NOREPLACE"),
        (MAP_LOCKED, "MAP_LOCKED"),
        (MAP_GROWSDOWN, "MAP_GROWSDOWN"),
        (MAP_STACK, "MAP_STACK"),
        (MAP_HUGETLB, "MAP_HUGETLB"),
    ] {
        if flags & bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    let huge = (rest >> MAP_HUGE_SHIFT) & MAP_HUGE_MASK;
    if huge != 0 {
        parts.push(match huge {
            21 => "MAP_HUGE_2MB".to_string(),
            30 => "MAP_HUGE_1GB".to_string(),
            n => format!("({n} << MAP_HUGE_SHIFT)"),
        });
        rest &= !(MAP_HUGE_MASK << MAP_HUGE_SHIFT);
    }
    if rest != 0 {
        parts.push(format!("0x{rest:x}"));
    }
    parts.join("|")
}
