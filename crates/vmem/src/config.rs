//! Machine configuration.
//!
//! Owns [`MachineConfig`] (RAM size, TLB shape, paging geometry, the fault-path tunables)
//! and [`PagingGeometry`] (the shape of the page tables, their entry format, and what
//! follows from the architecture: the top of user space and where devices sit on the
//! physical bus). The defaults are those of an x86-64 Linux box: 4-level paging, 48-bit
//! virtual addresses, 4 KiB pages, 64 KiB fault-around, 128 KiB read-around. A kernel built
//! with 16 or 64 KiB pages (the `page-16k` / `page-64k` features) is an arm64 machine with
//! that translation granule, as Linux's `CONFIG_ARM64_16K_PAGES` / `_64K_PAGES` kernels are.

use crate::addr::{PhysAddr, PAGE_SHIFT, PAGE_SIZE};
use crate::hw::phys::PhysMem;
use crate::hw::pte::Pte;
pub use crate::hw::pte_format::PteFormat;

/// The shape of the page tables: how many levels, how many index bits per level, and the
/// format of an entry.
///
/// The walker and the kernel's page-table code read the geometry from here, and every read
/// or write of a table entry in RAM goes through it ([`PagingGeometry::read_pte`] and
/// friends), so another geometry is a new constructor, not a change to callers. Machines:
/// x86-64 4-level (the default) and 5-level, 32-bit x86 two-level (non-PAE i386),
/// RISC-V Sv39 and arm64 with 4, 16 and 64 KiB granules. A geometry's page size must be the
/// kernel's [`PAGE_SIZE`] (fixed when the crate is built): [`crate::Kernel::try_new`]
/// refuses another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingGeometry {
    /// Number of table levels (4 for x86-64 long mode).
    pub levels: u32,
    /// Index bits per level (9: 512 eight-byte entries in a 4 KiB table).
    pub bits_per_level: u32,
    /// log2 of the page size.
    pub page_shift: u32,
    /// The hardware format of an entry (its size and bit layout).
    pub format: PteFormat,
}

impl PagingGeometry {
    /// x86-64 long mode: 4 levels of 512 entries, 48-bit virtual addresses, 4 KiB pages.
    pub const X86_64_4LEVEL: PagingGeometry = PagingGeometry {
        levels: 4,
        bits_per_level: 9,
        page_shift: 12,
        format: PteFormat::X86_64,
    };

    /// x86-64 with LA57: 5 levels of 512 entries, 57-bit virtual addresses, 4 KiB pages.
    pub const X86_64_5LEVEL: PagingGeometry = PagingGeometry {
        levels: 5,
        bits_per_level: 9,
        page_shift: 12,
        format: PteFormat::X86_64,
    };

    /// 32-bit x86 without PAE (i386): 2 levels (PGD, PTE) of 1024 four-byte entries,
    /// 32-bit virtual and physical addresses, 4 KiB pages, no NX bit.
    pub const I386: PagingGeometry = PagingGeometry {
        levels: 2,
        bits_per_level: 10,
        page_shift: 12,
        format: PteFormat::X86_32,
    };

    /// RISC-V Sv39: 3 levels (pgd, pmd, pte) of 512 eight-byte entries, 39-bit virtual
    /// addresses, 4 KiB pages.
    pub const SV39: PagingGeometry = PagingGeometry {
        levels: 3,
        bits_per_level: 9,
        page_shift: 12,
        format: PteFormat::Sv39,
    };

    /// arm64 with the 4 KiB granule: 4 levels of 512 eight-byte descriptors, 48-bit
    /// virtual addresses (Linux `CONFIG_ARM64_4K_PAGES`, `VA_BITS=48`).
    pub const ARM64_4K: PagingGeometry = PagingGeometry {
        levels: 4,
        bits_per_level: 9,
        page_shift: 12,
        format: PteFormat::Arm64,
    };

    /// arm64 with the 16 KiB granule: 3 levels of 2048 descriptors, 47-bit virtual
    /// addresses (Linux `CONFIG_ARM64_16K_PAGES`, `VA_BITS=47`); a level-1 (PMD) block
    /// maps 32 MiB.
    pub const ARM64_16K: PagingGeometry = PagingGeometry {
        levels: 3,
        bits_per_level: 11,
        page_shift: 14,
        format: PteFormat::Arm64,
    };

    /// arm64 with the 64 KiB granule: 2 levels of 8192 descriptors, 42-bit virtual
    /// addresses (Linux `CONFIG_ARM64_64K_PAGES`, `VA_BITS=42`); a level-1 block maps
    /// 512 MiB.
    pub const ARM64_64K: PagingGeometry = PagingGeometry {
        levels: 2,
        bits_per_level: 13,
        page_shift: 16,
        format: PteFormat::Arm64,
    };

    /// The geometry a machine has unless told otherwise: x86-64 4-level with 4 KiB pages,
    /// the arm64 geometry of the granule when the kernel is built with 16 or 64 KiB pages.
    pub const DEFAULT: PagingGeometry = match PAGE_SHIFT {
        14 => PagingGeometry::ARM64_16K,
        16 => PagingGeometry::ARM64_64K,
        _ => PagingGeometry::X86_64_4LEVEL,
    };

    /// The machine geometries by name: `x86-64` (4-level), `la57` (5-level), `i386`, `sv39`,
    /// `arm64` (4 KiB granule), `arm64-16k`, `arm64-64k`. A kernel runs the ones whose page
    /// size is its own ([`PagingGeometry::fits_this_kernel`]).
    pub const NAMED: [(&'static str, PagingGeometry); 7] = [
        ("x86-64", PagingGeometry::X86_64_4LEVEL),
        ("la57", PagingGeometry::X86_64_5LEVEL),
        ("i386", PagingGeometry::I386),
        ("sv39", PagingGeometry::SV39),
        ("arm64", PagingGeometry::ARM64_4K),
        ("arm64-16k", PagingGeometry::ARM64_16K),
        ("arm64-64k", PagingGeometry::ARM64_64K),
    ];

    /// Whether a machine of this kernel build can use the geometry: its page size is
    /// [`PAGE_SIZE`].
    pub const fn fits_this_kernel(&self) -> bool {
        self.page_shift == PAGE_SHIFT
    }

    /// The names of the geometries this kernel build can run, for messages.
    pub fn names_for_this_kernel() -> Vec<&'static str> {
        Self::NAMED
            .iter()
            .filter(|(_, g)| g.fits_this_kernel())
            .map(|(n, _)| *n)
            .collect()
    }

    /// Why this kernel cannot run the geometry (`None` when it can): the page size is fixed
    /// when the kernel is built, as in Linux.
    pub fn unfit_reason(&self) -> Option<String> {
        if self.fits_this_kernel() {
            return None;
        }
        let feature = match self.page_shift {
            14 => " (build with `--features page-16k`)",
            16 => " (build with `--features page-64k`)",
            12 => " (build without the page-16k/page-64k features)",
            _ => "",
        };
        Some(format!(
            "the {} geometry has {} KiB pages but this kernel was built with {} KiB pages{feature}; \
             as in Linux, the page size is chosen when the kernel is built",
            self.name().unwrap_or("given"),
            (1u64 << self.page_shift) >> 10,
            PAGE_SIZE >> 10,
        ))
    }

    /// The geometry called `name` (see [`PagingGeometry::NAMED`]; `x86_64`, `x86-64-5level`
    /// and `riscv-sv39` are accepted too).
    pub fn parse(name: &str) -> Option<PagingGeometry> {
        let name = match name {
            "x86_64" | "x86-64-4level" | "amd64" => "x86-64",
            "x86-64-5level" | "x86_64-5level" => "la57",
            "x86" | "x86-32" | "ia32" => "i386",
            "riscv-sv39" | "riscv64" => "sv39",
            "arm64-4k" | "aarch64" | "aarch64-4k" => "arm64",
            "aarch64-16k" => "arm64-16k",
            "aarch64-64k" => "arm64-64k",
            n => n,
        };
        Self::NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, g)| *g)
    }

    /// The name of a machine geometry (`x86-64`, `la57`, `i386`, `sv39`, `arm64`...), or `None` for
    /// another shape (the trainer's small tables).
    pub fn name(&self) -> Option<&'static str> {
        Self::NAMED.iter().find(|(_, g)| g == self).map(|(n, _)| *n)
    }

    /// One past the highest user address (Linux `TASK_SIZE`): 128 TiB - 4 KiB with 4-level
    /// x86-64 paging (`TASK_SIZE_MAX`), 64 PiB - 4 KiB with 5-level, 0xC000_0000 on i386
    /// (the 3G/1G split, `PAGE_OFFSET`), 256 GiB on Sv39 (`TASK_SIZE_64 = PGDIR_SIZE *
    /// PTRS_PER_PGD / 2`: the lower half of the sign-extended 39-bit space), and on arm64 the
    /// whole range of the user translation table (`TASK_SIZE_64 = 1 << VA_BITS`: 256 TiB,
    /// 128 TiB or 4 TiB for the 4, 16 and 64 KiB granules).
    pub const fn task_size(&self) -> u64 {
        match self.format {
            PteFormat::X86_64 => (1u64 << (self.va_bits() - 1)) - (1 << self.page_shift),
            PteFormat::X86_32 => 0xc000_0000,
            PteFormat::Sv39 => 1u64 << (self.va_bits() - 1),
            PteFormat::Arm64 => 1u64 << self.va_bits(),
        }
    }

    /// The top of the address space `mmap` searches without a hint and under which the stack
    /// starts (Linux `DEFAULT_MAP_WINDOW`, `STACK_TOP` without randomisation): on x86-64
    /// 128 TiB - 4 KiB with 4 and 5 levels alike (5-level addresses need a hint), elsewhere
    /// the top of user space. Page aligned.
    pub const fn mmap_window(&self) -> u64 {
        let top = match self.format {
            PteFormat::X86_64 => {
                let t = self.task_size();
                if t < crate::consts::TASK_SIZE {
                    t
                } else {
                    crate::consts::TASK_SIZE
                }
            }
            _ => self.task_size(),
        };
        top & !((1 << self.page_shift) - 1)
    }

    /// Where the device (MMIO) window starts on the physical bus, which is also the most
    /// RAM the machine can have: 1 TiB on 64-bit machines, 0xE000_0000 on i386 (a hole
    /// below 4 GiB, as on a PC: 32-bit entries cannot name a frame above 4 GiB).
    pub const fn mmio_base(&self) -> PhysAddr {
        match self.format {
            PteFormat::X86_32 => PhysAddr(0xe000_0000),
            PteFormat::X86_64 | PteFormat::Sv39 | PteFormat::Arm64 => {
                PhysAddr(crate::hw::phys::MMIO_BASE)
            }
        }
    }

    /// Bytes per table entry (8, or 4 for i386).
    #[inline(always)]
    pub const fn entry_size(&self) -> u64 {
        self.format.entry_size()
    }

    /// The physical address of entry `index` of the table in frame `table`.
    #[inline(always)]
    pub const fn entry_addr(&self, table: crate::addr::Pfn, index: u64) -> PhysAddr {
        PhysAddr((table.0 << PAGE_SHIFT) + (index << self.format.entry_shift()))
    }

    /// Reads the leaf entry at `pa` (see [`PteFormat::read_pte`]).
    #[inline(always)]
    pub fn read_pte(&self, phys: &PhysMem, pa: PhysAddr) -> Pte {
        self.format.read_pte(phys, pa)
    }

    /// Writes the leaf entry `pte` at `pa` in the machine's format.
    #[inline(always)]
    pub fn write_pte(&self, phys: &mut PhysMem, pa: PhysAddr, pte: Pte) {
        self.format.write_pte(phys, pa, pte)
    }

    /// Reads the upper-level entry at `pa` (see [`PteFormat::read_table`]).
    #[inline(always)]
    pub fn read_table(&self, phys: &PhysMem, pa: PhysAddr) -> Pte {
        self.format.read_table(phys, pa)
    }

    /// Writes the upper-level entry `e` at `pa` in the machine's format.
    #[inline(always)]
    pub fn write_table(&self, phys: &mut PhysMem, pa: PhysAddr, e: Pte) {
        self.format.write_table(phys, pa, e)
    }

    /// The leaf entry `pte` as the hardware stores it, for display.
    pub fn raw_pte(&self, pte: Pte) -> crate::hw::pte_format::RawPte {
        crate::hw::pte_format::RawPte {
            format: self.format,
            bits: self.format.encode_pte(pte),
            leaf: true,
        }
    }

    /// The upper-level entry `e` (a table pointer or a huge page) as the hardware stores
    /// it, for display.
    pub fn raw_table(&self, e: Pte) -> crate::hw::pte_format::RawPte {
        crate::hw::pte_format::RawPte {
            format: self.format,
            bits: self.format.encode_table(e),
            leaf: false,
        }
    }

    /// Number of virtual address bits the tables translate.
    pub const fn va_bits(&self) -> u32 {
        self.levels * self.bits_per_level + self.page_shift
    }

    /// Entries per table.
    pub const fn entries(&self) -> u64 {
        1 << self.bits_per_level
    }

    /// The table index for `va` at `level` (`levels - 1` is the root, 0 the leaf table).
    #[inline]
    pub const fn index(&self, va: u64, level: u32) -> u64 {
        (va >> (self.page_shift + level * self.bits_per_level)) & ((1 << self.bits_per_level) - 1)
    }

    /// Bytes of virtual address space covered by one entry at `level`.
    #[inline]
    pub const fn span(&self, level: u32) -> u64 {
        1 << (self.page_shift + level * self.bits_per_level)
    }

    /// Linux's name for the table at `level` (pgd, pud, pmd, pte for 4 levels).
    pub fn level_name(&self, level: u32) -> &'static str {
        const NAMES: [&str; 5] = ["PTE", "PMD", "PUD", "P4D", "PGD"];
        if self.levels == 1 {
            "PT"
        } else if level + 1 == self.levels {
            "PGD"
        } else {
            NAMES[level as usize]
        }
    }
}

/// When anonymous memory gets 2 MiB transparent huge pages (Linux
/// `/sys/kernel/mm/transparent_hugepage/enabled`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThpMode {
    /// Never.
    Never,
    /// In areas marked with `madvise(MADV_HUGEPAGE)` (the default, as on this host).
    #[default]
    Madvise,
    /// In every anonymous private area not marked `MADV_NOHUGEPAGE`.
    Always,
}

/// How the MMU turns the addresses a program uses into physical addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TranslationMode {
    /// Page tables (of the machine's paging geometry).
    #[default]
    Paging,
    /// Segments only: physical = base + offset after the limit check.
    Segmentation,
    /// A segment gives a linear address, which the page tables translate.
    SegmentPaging,
}

/// Everything that shapes an emulated machine.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// Bytes of RAM (rounded down to whole frames). Default 64 MiB.
    pub ram_bytes: u64,
    /// TLB sets (a power of two).
    pub tlb_sets: usize,
    /// TLB ways per set.
    pub tlb_ways: usize,
    /// Page-table geometry.
    pub geometry: PagingGeometry,
    /// Pages mapped around a read fault from already-cached pages (Linux `fault_around_bytes`
    /// / 4096 = 16).
    pub fault_around_pages: u64,
    /// Pages read around a major fault (Linux `ra_pages`, 128 KiB = 32).
    pub read_around_pages: u64,
    /// Lowest address `mmap` hands out or accepts (Linux `vm.mmap_min_addr`, 65536).
    pub mmap_min_addr: u64,
    /// Most VMAs a process may have (Linux `vm.max_map_count`, 65530).
    pub max_map_count: usize,
    /// Bytes of swap (0: none). Anonymous pages are only reclaimed when there is swap.
    pub swap_bytes: u64,
    /// Where the swap file goes (default: a new file in the system temp directory,
    /// removed when the machine is dropped).
    pub swap_path: Option<std::path::PathBuf>,
    /// The page replacement policy.
    pub policy: crate::reclaim::policy::PolicyKind,
    /// Free frames below which reclaim starts (0: automatic, total/128, at least 8).
    pub watermark_low: u64,
    /// Free frames reclaim stops at (0: automatic, twice the low watermark).
    pub watermark_high: u64,
    /// Percent of RAM that dirty pages may reach before write-back starts (Linux
    /// `vm.dirty_background_ratio`, 10).
    pub dirty_background_ratio: u64,
    /// Back the whole RAM arena with host memory at boot (for benchmarks: no host page
    /// fault inside an emulated one). Off by default: a machine boots in microseconds.
    pub prefault_ram: bool,
    /// How addresses are translated.
    pub translation: TranslationMode,
    /// Transparent huge pages for anonymous memory.
    pub thp: ThpMode,
    /// Pages of the 2 MiB hugetlb pool set aside at boot for MAP_HUGETLB (Linux
    /// `vm.nr_hugepages`, default 0: MAP_HUGETLB is ENOMEM). The pool gets what RAM has
    /// (runs of 512 free frames on a 2 MiB boundary); x86-64 geometries only.
    pub nr_hugepages: u64,
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            ram_bytes: 64 << 20,
            tlb_sets: 64,
            tlb_ways: 4,
            geometry: PagingGeometry::DEFAULT,
            // Linux's fault_around_bytes (64 KiB) and read-ahead window (128 KiB) in pages.
            fault_around_pages: (65536 / PAGE_SIZE).max(1),
            read_around_pages: (131072 / PAGE_SIZE).max(1),
            mmap_min_addr: 0x10000,
            max_map_count: 65530,
            swap_bytes: 0,
            swap_path: None,
            policy: Default::default(),
            watermark_low: 0,
            watermark_high: 0,
            dirty_background_ratio: 10,
            prefault_ram: false,
            translation: TranslationMode::Paging,
            thp: ThpMode::Madvise,
            nr_hugepages: 0,
        }
    }
}

impl MachineConfig {
    /// The default machine with `ram_bytes` of RAM.
    pub fn with_ram(ram_bytes: u64) -> Self {
        MachineConfig {
            ram_bytes,
            ..Default::default()
        }
    }
}
