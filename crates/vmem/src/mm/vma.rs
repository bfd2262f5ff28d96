//! Virtual memory areas (Linux `struct vm_area_struct`).
//!
//! Owns [`Vma`]: a page-aligned range with protection, flags, a backing (anonymous or a
//! file, with the file page offset of its first page) and the rules for splitting and
//! merging two areas. The tree of areas is in `mm/mod.rs`.

use crate::addr::{PgOff, VirtAddr, PAGE_SHIFT};
use crate::consts::{PROT_EXEC, PROT_READ, PROT_WRITE};
use crate::fs::InodeId;

/// What is behind a VMA.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backing {
    /// Private anonymous memory: zero-filled on demand.
    Anon,
    /// A file (or shmem inode): pages come from its page cache.
    File(InodeId),
}

/// VMA flag bits (Linux `VM_*`).
pub mod vm {
    /// Writes go to the shared object (MAP_SHARED on a writable file).
    pub const SHARED: u32 = 1 << 0;
    /// Mapped with MAP_SHARED (even if not writable).
    pub const MAYSHARE: u32 = 1 << 1;
    /// mprotect may add PROT_READ.
    pub const MAYREAD: u32 = 1 << 2;
    /// mprotect may add PROT_WRITE.
    pub const MAYWRITE: u32 = 1 << 3;
    /// mprotect may add PROT_EXEC.
    pub const MAYEXEC: u32 = 1 << 4;
    /// MAP_NORESERVE.
    pub const NORESERVE: u32 = 1 << 5;
    /// MADV_SEQUENTIAL.
    pub const SEQ_READ: u32 = 1 << 6;
    /// MADV_RANDOM.
    pub const RAND_READ: u32 = 1 << 7;
    /// MADV_DONTFORK.
    pub const DONTCOPY: u32 = 1 << 8;
    /// MADV_WIPEONFORK.
    pub const WIPEONFORK: u32 = 1 << 9;
    /// MAP_LOCKED / mlock.
    pub const LOCKED: u32 = 1 << 10;
    /// MAP_GROWSDOWN.
    pub const GROWSDOWN: u32 = 1 << 11;
    /// MADV_DONTDUMP.
    pub const DONTDUMP: u32 = 1 << 12;
    /// MADV_HUGEPAGE.
    pub const HUGEPAGE: u32 = 1 << 13;
    /// MADV_NOHUGEPAGE.
    pub const NOHUGEPAGE: u32 = 1 << 14;
    /// MADV_MERGEABLE.
    pub const MERGEABLE: u32 = 1 << 15;
    /// Private writable memory charged to the commit limit (Linux `VM_ACCOUNT`); it stays
    /// after write access is removed, so it keeps such areas from merging with others.
    pub const ACCOUNT: u32 = 1 << 16;
    /// A hugetlb mapping (MAP_HUGETLB): 2 MiB pages from the pool (Linux `VM_HUGETLB`).
    pub const HUGETLB: u32 = 1 << 17;
}

/// One virtual memory area.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vma {
    /// First address.
    pub start: VirtAddr,
    /// One past the last address.
    pub end: VirtAddr,
    /// `PROT_*` bits (read, write, exec only).
    pub prot: i32,
    /// [`vm`] bits.
    pub flags: u32,
    /// What is behind it.
    pub backing: Backing,
    /// File page offset of `start` (for anonymous memory, `start`'s page number at creation).
    pub pgoff: PgOff,
    /// The file the mapping was made through when it is nonetheless anonymous memory
    /// (a private mapping of `/dev/zero`): Linux keeps it as `vm_file`, so it shows in
    /// `/proc/pid/maps` and only merges with mappings of the same file.
    pub anon_file: Option<InodeId>,
    /// The open file description mapped (its serial; 0 for anonymous memory): Linux
    /// merges only VMAs with the same `vm_file`.
    pub file_serial: u64,
    /// The anon_vma that the area's anonymous pages hang off (0: none yet). Set by the
    /// first anonymous page; two areas with different ones never merge.
    pub anon_vma: u64,
    /// What `/proc/pid/maps` calls it when it is not a file: `[stack]`, `[heap]`.
    pub special: Special,
}

/// Areas the kernel makes for a program, named in `/proc/pid/maps`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Special {
    /// An ordinary mapping.
    #[default]
    None,
    /// The main thread's stack, made by exec; it grows down on faults below it.
    Stack,
    /// The brk heap.
    Heap,
}

impl Vma {
    /// Bytes covered.
    pub fn len(&self) -> u64 {
        self.end.0 - self.start.0
    }
    /// Whether it covers nothing (never true for a VMA in a tree).
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    /// Pages covered.
    pub fn pages(&self) -> u64 {
        self.len() >> PAGE_SHIFT
    }
    /// Whether `va` lies inside.
    pub fn contains(&self, va: VirtAddr) -> bool {
        self.start <= va && va < self.end
    }
    /// Writes reach a shared object.
    pub fn is_shared(&self) -> bool {
        self.flags & vm::SHARED != 0
    }
    /// Mapped MAP_SHARED (writable or not).
    pub fn is_mayshare(&self) -> bool {
        self.flags & vm::MAYSHARE != 0
    }
    /// Private anonymous memory.
    pub fn is_anon(&self) -> bool {
        self.backing == Backing::Anon
    }
    /// The inode behind it, if any.
    pub fn inode(&self) -> Option<InodeId> {
        match self.backing {
            Backing::File(i) => Some(i),
            Backing::Anon => None,
        }
    }
    /// Readable (x86: write and exec imply read).
    pub fn readable(&self) -> bool {
        self.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0
    }
    /// Writable.
    pub fn writable(&self) -> bool {
        self.prot & PROT_WRITE != 0
    }
    /// Executable.
    pub fn executable(&self) -> bool {
        self.prot & PROT_EXEC != 0
    }
    /// The file page offset that `va` maps.
    pub fn pgoff_of(&self, va: VirtAddr) -> PgOff {
        PgOff(self.pgoff.0 + ((va.0 - self.start.0) >> PAGE_SHIFT))
    }
    /// The address that maps file page `pgoff`, if inside this VMA.
    pub fn addr_of(&self, pgoff: PgOff) -> Option<VirtAddr> {
        let rel = pgoff.0.checked_sub(self.pgoff.0)?;
        (rel < self.pages()).then(|| self.start.add(rel << PAGE_SHIFT))
    }
    /// The part of this VMA from `at` on (for splitting); `self` keeps `[start, at)`.
    pub fn split_off(&mut self, at: VirtAddr) -> Vma {
        let mut tail = *self;
        tail.start = at;
        tail.pgoff = self.pgoff_of(at);
        self.end = at;
        tail
    }
    /// Whether `next` can be merged onto the end of `self` (Linux `can_vma_merge_after`).
    /// Hugetlb areas never merge: their `vm_ops->close` keeps Linux from removing one
    /// into another (`can_merge_remove_vma`), so the pieces of an mprotect stay apart.
    pub fn can_merge_with(&self, next: &Vma) -> bool {
        self.end == next.start
            && (self.flags | next.flags) & vm::HUGETLB == 0
            && self.prot == next.prot
            && self.flags == next.flags
            && self.backing == next.backing
            && self.anon_file == next.anon_file
            && self.file_serial == next.file_serial
            && self.special == next.special
            && (self.anon_vma == 0 || next.anon_vma == 0 || self.anon_vma == next.anon_vma)
            && self.pgoff.0 + self.pages() == next.pgoff.0
    }

    /// Whether `next` could share this area's anon_vma (Linux `anon_vma_compatible`):
    /// adjacent and mergeable but for their protection.
    pub fn anon_vma_compatible(&self, next: &Vma) -> bool {
        self.end == next.start
            && self.flags == next.flags
            && self.backing == next.backing
            && self.anon_file == next.anon_file
            && self.file_serial == next.file_serial
            && self.pgoff.0 + self.pages() == next.pgoff.0
    }
    /// `rwxp`/`rwxs` as `/proc/pid/maps` prints them.
    pub fn perms(&self) -> String {
        format!(
            "{}{}{}{}",
            if self.prot & PROT_READ != 0 { 'r' } else { '-' },
            if self.prot & PROT_WRITE != 0 {
                'w'
            } else {
                '-'
            },
            if self.prot & PROT_EXEC != 0 { 'x' } else { '-' },
            if self.is_mayshare() { 's' } else { 'p' },
        )
    }
}
