//! `mremap` (Linux `mm/mremap.c`).
//!
//! Owns resizing and moving a mapping: shrinking unmaps the tail; growing extends the VMA
//! in place when the addresses after it are free, and otherwise (with MREMAP_MAYMOVE)
//! moves it. A move carries the page-table entries to the new addresses (Linux
//! `move_page_tables`): the frames, and so the data, go with them without a copy.
//! MREMAP_FIXED names the destination; MREMAP_DONTUNMAP leaves the old range mapped but
//! empty. `old_len == 0` on a shared mapping makes a second mapping of the same pages.

use crate::addr::{page_align_up, VirtAddr, PAGE_SHIFT};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::events::Event;
use crate::hw::phys::FrameFlags;
use crate::hw::pte::Pte;
use crate::kernel::Kernel;
use crate::mm::pgtable;
use crate::mm::vma::Vma;
use crate::process::Pid;

impl Kernel {
    /// `mremap(old_addr, old_len, new_len, flags, new_addr)`: returns the mapping's address.
    pub fn mremap(
        &mut self,
        pid: Pid,
        old: VirtAddr,
        old_len: u64,
        new_len: u64,
        flags: i32,
        new_addr: VirtAddr,
    ) -> SysResult<VirtAddr> {
        let r = if self.segmented() {
            Err(Errno::ENOSYS)
        } else {
            self.do_mremap(pid, old, old_len, new_len, flags, new_addr)
        };
        self.trace_syscall(
            pid,
            || format!("mremap({old}, {old_len}, {new_len}, {flags}, {new_addr})"),
            &r,
        );
        r
    }

    fn do_mremap(
        &mut self,
        pid: Pid,
        old: VirtAddr,
        old_len: u64,
        new_len: u64,
        flags: i32,
        new_addr: VirtAddr,
    ) -> SysResult<VirtAddr> {
        self.proc_ref(pid)?;
        if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::EINVAL);
        }
        if flags & MREMAP_DONTUNMAP != 0 && (flags & MREMAP_MAYMOVE == 0 || old_len != new_len) {
            return Err(Errno::EINVAL);
        }
        if !old.is_aligned() {
            return Err(Errno::EINVAL);
        }
        let mut old_len = page_align_up(old_len).ok_or(Errno::EINVAL)?;
        let mut new_len = page_align_up(new_len).ok_or(Errno::EINVAL)?;
        if new_len == 0 {
            return Err(Errno::EINVAL);
        }
        // A hugetlb area: lengths in whole huge pages, addresses on their boundaries, no
        // growth (Linux align_hugetlb), and no MREMAP_DONTUNMAP (VM_DONTEXPAND).
        if let Some(v) = self.proc_ref(pid)?.mm.find_vma(old) {
            if v.is_hugetlb() {
                (old_len, new_len) =
                    crate::mm::hugetlb::hugetlb_mremap_lens(old, old_len, new_len, new_addr)?;
                if flags & MREMAP_DONTUNMAP != 0 {
                    return Err(Errno::EINVAL);
                }
            }
        }
        if new_len > self.task_size() || old_len > self.task_size() {
            return Err(Errno::EINVAL);
        }

        if old_len == 0 {
            // Duplicate a shared mapping.
            let v = self
                .proc_ref(pid)?
                .mm
                .find_vma(old)
                .copied()
                .ok_or(Errno::EFAULT)?;
            if !v.is_mayshare() {
                return Err(Errno::EINVAL);
            }
            if flags & MREMAP_MAYMOVE == 0 {
                return Err(Errno::ENOMEM);
            }
            let dst = self.mremap_destination(pid, flags, new_addr, new_len, old, 0)?;
            let dup = Vma {
                start: dst,
                end: dst.add(new_len),
                pgoff: v.pgoff_of(old),
                ..v
            };
            self.insert_vma(pid, dup);
            return Ok(dst);
        }

        if flags & MREMAP_FIXED != 0 {
            // check_mremap_params: the destination's own checks come first.
            if !new_addr.is_aligned() || new_addr.0 > self.task_size() - new_len {
                return Err(Errno::EINVAL);
            }
            if new_addr.0 < old.0 + old_len && old.0 < new_addr.0 + new_len {
                return Err(Errno::EINVAL);
            }
        }
        // The old address must be mapped before anything is unmapped (vma_lookup: EFAULT).
        self.proc_ref(pid)?.mm.find_vma(old).ok_or(Errno::EFAULT)?;

        if flags & MREMAP_FIXED != 0 {
            // Linux mremap_to: shrink the source first, then check it, then clear the
            // destination, then move. Without a size change the source may span several
            // VMAs (and the gaps between them); each moves to the same offset.
            let keep = old_len.min(new_len);
            if old_len != new_len {
                // The part that moves must lie in one VMA before anything changes.
                self.mremap_source(pid, old, keep)?;
            }
            if old_len > new_len {
                self.unmap_range(pid, old.add(new_len), old.add(old_len));
            }
            let dontunmap = flags & MREMAP_DONTUNMAP != 0;
            if old_len == new_len {
                let p = self.proc_mut(pid)?;
                p.mm.split_at(old);
                p.mm.split_at(old.add(keep));
                let pieces = p.mm.vmas_in(old, old.add(keep));
                // Each VMA clears only its own destination: what lies opposite a gap in
                // the source stays mapped.
                for v in pieces {
                    let to = new_addr.add(v.start.0 - old.0);
                    self.unmap_range(pid, to, to.add(v.len()));
                    self.move_vma(pid, &v, v.start, v.len(), to, v.len(), dontunmap);
                }
                return Ok(new_addr);
            }
            let v = self.mremap_source(pid, old, keep)?;
            let dst = self.mremap_destination(pid, flags, new_addr, new_len, old, keep)?;
            self.move_vma(pid, &v, old, keep, dst, new_len, dontunmap);
            return Ok(dst);
        }

        if old_len >= new_len {
            // Shrinking (or same size): the tail goes, the address stays.
            if old_len > new_len {
                self.unmap_range(pid, old.add(new_len), old.add(old_len));
            }
            if flags & MREMAP_DONTUNMAP == 0 {
                self.proc_ref(pid)?.mm.find_vma(old).ok_or(Errno::EFAULT)?;
                return Ok(old);
            }
        }
        let v = self.mremap_source(pid, old, old_len)?;
        // Grow in place?
        let old_end = old.add(old_len);
        if flags & MREMAP_DONTUNMAP == 0 && old_end == v.end {
            let new_end = old.checked_add(new_len).ok_or(Errno::ENOMEM)?;
            if new_end.0 <= self.task_size() && !self.proc_ref(pid)?.mm.intersects(old_end, new_end)
            {
                let p = self.proc_mut(pid)?;
                let vm = p.mm.vmas.get_mut(&v.start.0).expect("source VMA");
                vm.end = new_end;
                let merged = p.mm.merge_around(v.start);
                if self.events.enabled() {
                    let desc = self.describe_vma(&merged);
                    self.events.emit(|| Event::VmaMapped {
                        pid,
                        start: merged.start,
                        end: merged.end,
                        desc,
                    });
                }
                return Ok(old);
            }
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(Errno::ENOMEM);
        }
        let dst = self.get_unmapped_area(pid, VirtAddr(0), new_len, 0)?;
        self.move_vma(
            pid,
            &v,
            old,
            old_len,
            dst,
            new_len,
            flags & MREMAP_DONTUNMAP != 0,
        );
        Ok(dst)
    }

    /// The VMA that holds all of `[old, old + len)`; EFAULT if none does.
    fn mremap_source(&self, pid: Pid, old: VirtAddr, len: u64) -> SysResult<Vma> {
        let v = self
            .proc_ref(pid)?
            .mm
            .find_vma(old)
            .copied()
            .ok_or(Errno::EFAULT)?;
        if old.checked_add(len).is_none_or(|e| e > v.end) {
            return Err(Errno::EFAULT);
        }
        Ok(v)
    }

    fn mremap_destination(
        &mut self,
        pid: Pid,
        flags: i32,
        new_addr: VirtAddr,
        new_len: u64,
        old: VirtAddr,
        old_len: u64,
    ) -> SysResult<VirtAddr> {
        if flags & MREMAP_FIXED == 0 {
            return self.get_unmapped_area(pid, VirtAddr(0), new_len, 0);
        }
        self.hugetlb_check_split(pid, new_addr)?;
        self.hugetlb_check_split(pid, new_addr.add(new_len))?;
        if !new_addr.is_aligned() || new_addr.0 > self.task_size() - new_len {
            return Err(Errno::EINVAL);
        }
        // The ranges may not overlap.
        if new_addr.0 < old.0 + old_len && old.0 < new_addr.0 + new_len {
            return Err(Errno::EINVAL);
        }
        self.unmap_range(pid, new_addr, new_addr.add(new_len));
        Ok(new_addr)
    }

    /// Removes the moved range `old..old+len` from the VMA tree (its pages are gone
    /// already) and announces it.
    fn remove_moved_area(&mut self, pid: Pid, old: VirtAddr, len: u64) {
        if let Ok(p) = self.proc_mut(pid) {
            p.mm.split_at(old);
            p.mm.split_at(old.add(len));
            p.mm.vmas.remove(&old.0);
        }
        self.events.emit(|| Event::VmaUnmapped {
            pid,
            start: old,
            end: old.add(len),
        });
    }

    fn insert_vma(&mut self, pid: Pid, v: Vma) {
        let Ok(p) = self.proc_mut(pid) else { return };
        let merged = p.mm.insert(v);
        if self.events.enabled() {
            let desc = self.describe_vma(&merged);
            self.events.emit(|| Event::VmaMapped {
                pid,
                start: merged.start,
                end: merged.end,
                desc,
            });
        }
    }

    /// Linux `move_vma`: a VMA for `[dst, dst + new_len)` with the same backing, the PTEs
    /// of `[old, old + len)` carried over, and the old range removed (or left empty).
    #[allow(clippy::too_many_arguments)]
    fn move_vma(
        &mut self,
        pid: Pid,
        v: &Vma,
        old: VirtAddr,
        len: u64,
        dst: VirtAddr,
        new_len: u64,
        dontunmap: bool,
    ) {
        let geom = self.cfg.geometry;
        // copy_vma: anonymous memory that never had a page takes the new address as its
        // page offset, so that it can merge with its new neighbours.
        let pgoff = if v.is_anon() && v.anon_file.is_none() && v.anon_vma == 0 {
            crate::addr::PgOff(dst.0 >> PAGE_SHIFT)
        } else {
            v.pgoff_of(old)
        };
        let new_vma = Vma {
            start: dst,
            end: dst.add(new_len),
            pgoff,
            ..*v
        };
        if v.is_hugetlb() {
            // The huge PMD entries move whole (Linux move_hugetlb_page_tables).
            let moved = self.move_hugetlb_page_tables(pid, old, len, dst);
            self.remove_moved_area(pid, old, len);
            self.insert_vma(pid, new_vma);
            self.install_moved_hugetlb(pid, &new_vma, moved);
            return;
        }
        // The pages move one by one (Linux moves an aligned huge PMD whole:
        // `move_huge_pmd`; here huge pages are split first).
        self.split_huge_pmds(pid, old, old.add(len), false);
        let Ok(p) = self.proc_mut(pid) else { return };
        let (root, asid) = (p.mm.root, p.mm.asid);
        let mut moved: Vec<(VirtAddr, Pte)> = Vec::new();
        pgtable::for_each_pte(
            &mut self.phys,
            &geom,
            root,
            old,
            old.add(len),
            &mut |phys, va, slot, pte| {
                geom.write_pte(phys, slot, Pte::NONE);
                moved.push((va, pte));
            },
        );
        // The old range goes first so that the new VMA cannot merge with it.
        if !dontunmap {
            self.remove_moved_area(pid, old, len);
        }
        self.insert_vma(pid, new_vma);
        let mut moved_ok = true;
        for (va, pte) in moved {
            self.tlb.flush_page(asid, va.vpn());
            // Anonymous pages keep their page offset (the VMA's pgoff moves with them),
            // so the reverse map still finds them.
            let to = dst.add(va.0 - old.0);
            if !moved_ok || self.set_pte(pid, to, pte).is_err() {
                // No frame for a page table: the page is lost, as an OOM kill would lose it.
                moved_ok = false;
                if pte.is_swap() {
                    if let Some(s) = self.swap.as_mut() {
                        s.put(pte.swap_slot());
                    }
                    continue;
                }
                if !pte.has_frame() || pte.special() {
                    continue;
                }
                let m = *self.phys.meta(pte.pfn());
                if let Ok(p) = self.proc_mut(pid) {
                    if m.flags.has(FrameFlags::ANON) {
                        p.mm.rss_anon -= 1;
                    } else if m.flags.has(FrameFlags::PAGE_CACHE) {
                        p.mm.rss_file -= 1;
                    }
                }
                self.put_page(pte.pfn());
            }
        }
    }
}
