//! `execve` of real ELF files, and mapping shared libraries (Linux `fs/binfmt_elf.c`,
//! and what `ld.so` does with `mmap`).
//!
//! Owns building an address space from a real executable on disk: the old mappings go,
//! each `PT_LOAD` segment is mapped MAP_PRIVATE from the file with the segment's
//! permissions and page-aligned offset, the part of the last file page past the
//! segment's file size is zeroed (`padzero`, which copies that page on write) and the rest
//! of `.bss` is anonymous memory; a stack VMA sits below the top of the address space and
//! grows down on faults (with a guard gap); the brk heap starts after the highest segment.
//! No instruction is executed: accesses come from the API, scripts or traces.
//! [`Kernel::map_library`] maps a shared object the way the dynamic loader does, so that
//! every process maps the same page-cache pages of its text (one physical copy) and gets
//! a private copy of a data page only when it writes to it.

use crate::addr::{page_align_up, VirtAddr, PAGE_MASK, PAGE_SHIFT, PAGE_SIZE};
use crate::consts::*;
use crate::errno::{Errno, SysResult};
use crate::kernel::Kernel;
use crate::mm::vma::{vm, Backing, Special, Vma};
use crate::process::Pid;
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use std::path::Path;

/// Where a position-independent executable is loaded on x86-64 (`ELF_ET_DYN_BASE` without
/// randomisation: two thirds of the mmap window; other geometries get two thirds of theirs).
pub const ELF_ET_DYN_BASE: u64 = 0x5555_5555_4000;
/// The top of the stack (x86-64 `STACK_TOP` without randomisation).
pub const STACK_TOP: u64 = TASK_SIZE;
/// The initial stack VMA (Linux sets up 128 KiB plus the argument pages).
pub const STACK_INITIAL: u64 = 132 << 10;
/// How far the stack may grow (`RLIMIT_STACK`, 8 MiB).
pub const STACK_LIMIT: u64 = 8 << 20;
/// Pages kept free below the stack (Linux `stack_guard_gap`, 256 pages).
pub const STACK_GUARD_GAP: u64 = 256 << PAGE_SHIFT;

/// One loaded segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// First address mapped from the file.
    pub start: VirtAddr,
    /// End of the file-backed part (page aligned).
    pub file_end: VirtAddr,
    /// End of the segment in memory (page aligned), `.bss` included.
    pub mem_end: VirtAddr,
    /// `PROT_*` bits.
    pub prot: i32,
    /// File offset mapped at `start`.
    pub offset: u64,
}

/// What `exec` or `map_library` built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Load bias added to the file's virtual addresses.
    pub bias: u64,
    /// Entry point (biased).
    pub entry: VirtAddr,
    /// The `PT_LOAD` segments as mapped.
    pub segments: Vec<Segment>,
    /// The program interpreter named by `PT_INTERP`, if any (not loaded).
    pub interp: Option<String>,
}

/// What `exec` built besides the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecInfo {
    /// The executable's segments.
    pub image: LoadedImage,
    /// Start of the stack VMA.
    pub stack_start: VirtAddr,
    /// Top of the stack.
    pub stack_top: VirtAddr,
    /// Start of the brk heap.
    pub brk: VirtAddr,
}

struct PtLoad {
    vaddr: u64,
    offset: u64,
    filesz: u64,
    memsz: u64,
    prot: i32,
}

/// The ELF machine a kernel of this entry format runs (Linux `elf_check_arch`).
fn elf_machine(format: crate::hw::pte_format::PteFormat) -> u16 {
    use crate::hw::pte_format::PteFormat;
    match format {
        PteFormat::X86_64 => elf::EM_X86_64,
        PteFormat::X86_32 => elf::EM_386,
        PteFormat::Sv39 => elf::EM_RISCV,
        PteFormat::Arm64 => elf::EM_AARCH64,
    }
}

/// Parses a 64-bit ELF file for `machine` (`elf_check_arch`: another architecture's binary,
/// or a 32-bit one, is ENOEXEC).
fn parse(bytes: &[u8], machine: u16) -> SysResult<(u16, u64, Vec<PtLoad>, Option<String>)> {
    let hdr = elf::FileHeader64::<object::Endianness>::parse(bytes).map_err(|_| Errno::ENOEXEC)?;
    let endian = hdr.endian().map_err(|_| Errno::ENOEXEC)?;
    if hdr.e_machine(endian) != machine {
        return Err(Errno::ENOEXEC);
    }
    let kind = hdr.e_type(endian);
    if kind != elf::ET_EXEC && kind != elf::ET_DYN {
        return Err(Errno::ENOEXEC);
    }
    let mut loads = Vec::new();
    let mut interp = None;
    for ph in hdr
        .program_headers(endian, bytes)
        .map_err(|_| Errno::ENOEXEC)?
    {
        match ph.p_type(endian) {
            elf::PT_LOAD => {
                let f = ph.p_flags(endian);
                let mut prot = 0;
                if f & elf::PF_R != 0 {
                    prot |= PROT_READ;
                }
                if f & elf::PF_W != 0 {
                    prot |= PROT_WRITE;
                }
                if f & elf::PF_X != 0 {
                    prot |= PROT_EXEC;
                }
                let (filesz, memsz) = (ph.p_filesz(endian), ph.p_memsz(endian));
                if filesz > memsz {
                    return Err(Errno::ENOEXEC);
                }
                loads.push(PtLoad {
                    vaddr: ph.p_vaddr(endian),
                    offset: ph.p_offset(endian),
                    filesz,
                    memsz,
                    prot,
                });
            }
            elf::PT_INTERP => {
                if let Ok(d) = ph.data(endian, bytes) {
                    let s = String::from_utf8_lossy(d)
                        .trim_end_matches('\0')
                        .to_string();
                    interp = Some(s);
                }
            }
            _ => {}
        }
    }
    if loads.is_empty() {
        return Err(Errno::ENOEXEC);
    }
    Ok((kind, hdr.e_entry(endian), loads, interp))
}

impl Kernel {
    /// `execve(path)`: replaces `pid`'s address space with the real ELF executable at
    /// `path` (descriptors stay open).
    pub fn exec(&mut self, pid: Pid, path: impl AsRef<Path>) -> SysResult<ExecInfo> {
        let path = path.as_ref();
        let r = if self.segmented() {
            Err(Errno::ENOSYS)
        } else {
            self.do_exec(pid, path)
        };
        self.trace_syscall(
            pid,
            || format!("execve(\"{}\")", path.display()),
            &r.as_ref().map(|_| 0).map_err(|e| *e),
        );
        r
    }

    fn do_exec(&mut self, pid: Pid, path: &Path) -> SysResult<ExecInfo> {
        self.proc_ref(pid)?;
        let bytes = std::fs::read(path).map_err(|e| Errno::from_io(&e))?;
        let (kind, _, _, _) = parse(&bytes, elf_machine(self.cfg.geometry.format))?;
        // The point of no return: the old address space goes.
        let vmas = self.vmas(pid)?;
        for v in vmas {
            self.unmap_range(pid, v.start, v.end);
        }
        let bias = if kind == elf::ET_DYN {
            // Two thirds of the way up the mmap window (ELF_ET_DYN_BASE on x86-64 and
            // arm64), page aligned.
            (self.cfg.geometry.mmap_window() / 3 * 2) & !crate::addr::PAGE_MASK
        } else {
            0
        };
        let image = self.load_image(pid, path, &bytes, Some(bias))?;
        let highest = image
            .segments
            .iter()
            .map(|s| s.mem_end)
            .max()
            .unwrap_or(VirtAddr(0));
        // The stack.
        // The top of user space of a smaller geometry (i386: 0xC000_0000).
        let top = STACK_TOP.min(self.cfg.geometry.mmap_window());
        let stack_top = VirtAddr(top);
        let stack_start = VirtAddr(top - STACK_INITIAL);
        let stack = Vma {
            start: stack_start,
            end: stack_top,
            prot: PROT_READ | PROT_WRITE,
            flags: vm::MAYREAD | vm::MAYWRITE | vm::MAYEXEC | vm::GROWSDOWN | vm::ACCOUNT,
            backing: Backing::Anon,
            pgoff: crate::addr::PgOff(stack_start.0 >> PAGE_SHIFT),
            anon_file: None,
            file_serial: 0,
            anon_vma: 0,
            special: Special::Stack,
        };
        let p = self.proc_mut(pid)?;
        p.mm.insert(stack);
        p.mm.start_brk = highest;
        p.mm.brk = highest;
        Ok(ExecInfo {
            image,
            stack_start,
            stack_top,
            brk: highest,
        })
    }

    /// Maps the shared object at `path` into `pid` as the dynamic loader does (at a free
    /// address, each `PT_LOAD` segment MAP_PRIVATE from the file).
    pub fn map_library(&mut self, pid: Pid, path: impl AsRef<Path>) -> SysResult<LoadedImage> {
        let path = path.as_ref();
        let r = (|| {
            self.proc_ref(pid)?;
            let bytes = std::fs::read(path).map_err(|e| Errno::from_io(&e))?;
            self.load_image(pid, path, &bytes, None)
        })();
        self.trace_syscall(
            pid,
            || format!("map_library(\"{}\")", path.display()),
            &r.as_ref().map(|_| 0).map_err(|e| *e),
        );
        r
    }

    /// Maps the segments of an ELF image. `bias: None` picks a free range for the whole
    /// image first (a PROT_NONE reservation, as ld.so makes).
    fn load_image(
        &mut self,
        pid: Pid,
        path: &Path,
        bytes: &[u8],
        bias: Option<u64>,
    ) -> SysResult<LoadedImage> {
        let (kind, entry, loads, interp) = parse(bytes, elf_machine(self.cfg.geometry.format))?;
        let lo = loads
            .iter()
            .map(|l| l.vaddr & !PAGE_MASK)
            .min()
            .unwrap_or(0);
        let hi = loads
            .iter()
            .map(|l| page_align_up(l.vaddr + l.memsz).unwrap_or(u64::MAX))
            .max()
            .unwrap_or(0);
        let span = hi.checked_sub(lo).ok_or(Errno::ENOEXEC)?;
        let bias = match bias {
            Some(b) => b,
            None if kind == elf::ET_EXEC => 0,
            None => {
                let base = self.mmap(
                    pid,
                    VirtAddr(0),
                    span,
                    PROT_NONE,
                    MAP_PRIVATE | MAP_ANONYMOUS,
                    -1,
                    0,
                )?;
                base.0 - lo
            }
        };
        let fd = self.open(pid, path, O_RDONLY, 0)?;
        let mut segments = Vec::new();
        let res = (|| {
            for l in &loads {
                let start = (l.vaddr + bias) & !PAGE_MASK;
                let page_off = l.vaddr & PAGE_MASK;
                if l.offset & PAGE_MASK != page_off {
                    // elf_map's mmap gets an offset that is not page aligned (a binary
                    // linked for smaller pages than the kernel's): vm_mmap's EINVAL.
                    return Err(Errno::EINVAL);
                }
                let file_end = page_align_up(l.vaddr + bias + l.filesz).ok_or(Errno::ENOEXEC)?;
                let mem_end = page_align_up(l.vaddr + bias + l.memsz).ok_or(Errno::ENOEXEC)?;
                if file_end > start {
                    self.mmap(
                        pid,
                        VirtAddr(start),
                        file_end - start,
                        l.prot,
                        MAP_PRIVATE | MAP_FIXED,
                        fd,
                        (l.offset - page_off) as i64,
                    )?;
                }
                if l.memsz > l.filesz {
                    // padzero: the rest of the last file page belongs to .bss.
                    let bss = l.vaddr + bias + l.filesz;
                    if bss & PAGE_MASK != 0 && l.prot & PROT_WRITE != 0 {
                        let n = (PAGE_SIZE - (bss & PAGE_MASK)) as usize;
                        self.store(pid, VirtAddr(bss), &vec![0u8; n])
                            .map_err(|_| Errno::EFAULT)?;
                    }
                    if mem_end > file_end {
                        self.mmap(
                            pid,
                            VirtAddr(file_end),
                            mem_end - file_end,
                            l.prot,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                            -1,
                            0,
                        )?;
                    }
                }
                segments.push(Segment {
                    start: VirtAddr(start),
                    file_end: VirtAddr(file_end.max(start)),
                    mem_end: VirtAddr(mem_end),
                    prot: l.prot,
                    offset: l.offset - page_off,
                });
            }
            Ok(())
        })();
        self.close(pid, fd)?;
        res?;
        Ok(LoadedImage {
            bias,
            entry: VirtAddr(entry + bias),
            segments,
            interp,
        })
    }

    /// `brk(addr)`: moves the end of the heap (0 asks for the current end). Returns the new
    /// end; on failure, the old one (as the Linux syscall does).
    pub fn brk(&mut self, pid: Pid, addr: VirtAddr) -> SysResult<VirtAddr> {
        let r = self.do_brk(pid, addr);
        self.trace_syscall(pid, || format!("brk({addr})"), &r);
        r
    }

    fn do_brk(&mut self, pid: Pid, addr: VirtAddr) -> SysResult<VirtAddr> {
        let (start, cur) = {
            let mm = &self.proc_ref(pid)?.mm;
            (mm.start_brk, mm.brk)
        };
        if addr < start || addr.0 > self.task_size() {
            return Ok(cur);
        }
        let old_end = page_align_up(cur.0).unwrap_or(cur.0);
        let new_end = match page_align_up(addr.0) {
            Some(e) => e,
            None => return Ok(cur),
        };
        if new_end < old_end {
            self.unmap_range(pid, VirtAddr(new_end), VirtAddr(old_end));
        } else if new_end > old_end {
            // Linux check_brk_limits: the heap keeps one page clear of what follows it.
            if self
                .proc_ref(pid)?
                .mm
                .intersects(VirtAddr(old_end), VirtAddr(new_end + PAGE_SIZE))
            {
                return Ok(cur);
            }
            let heap = Vma {
                start: VirtAddr(old_end),
                end: VirtAddr(new_end),
                prot: PROT_READ | PROT_WRITE,
                flags: vm::MAYREAD | vm::MAYWRITE | vm::MAYEXEC | vm::ACCOUNT,
                backing: Backing::Anon,
                pgoff: crate::addr::PgOff(old_end >> PAGE_SHIFT),
                anon_file: None,
                file_serial: 0,
                anon_vma: 0,
                special: Special::Heap,
            };
            self.proc_mut(pid)?.mm.insert(heap);
        }
        self.proc_mut(pid)?.mm.brk = addr;
        Ok(addr)
    }
}
