//! Machine configuration.
//!
//! Owns [`MachineConfig`] (RAM size, TLB shape, paging geometry, the fault-path tunables)
//! and [`PagingGeometry`]. The defaults are those of an x86-64 Linux box: 4-level paging,
//! 48-bit virtual addresses, 4 KiB pages, 64 KiB fault-around, 128 KiB read-around.

use crate::addr::PAGE_SHIFT;

/// The shape of the page tables: how many levels and how many index bits per level.
///
/// The walker and the kernel's page-table code read the geometry from here, so another
/// geometry (5-level, Sv39, 32-bit two-level) is a new constructor, not a change to callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagingGeometry {
    /// Number of table levels (4 for x86-64 long mode).
    pub levels: u32,
    /// Index bits per level (9: 512 eight-byte entries in a 4 KiB table).
    pub bits_per_level: u32,
    /// log2 of the page size.
    pub page_shift: u32,
}

impl PagingGeometry {
    /// x86-64 long mode: 4 levels of 512 entries, 48-bit virtual addresses, 4 KiB pages.
    pub const X86_64_4LEVEL: PagingGeometry = PagingGeometry {
        levels: 4,
        bits_per_level: 9,
        page_shift: PAGE_SHIFT,
    };

    /// x86-64 with LA57: 5 levels of 512 entries, 57-bit virtual addresses, 4 KiB pages.
    pub const X86_64_5LEVEL: PagingGeometry = PagingGeometry {
        levels: 5,
        bits_per_level: 9,
        page_shift: PAGE_SHIFT,
    };

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
    /// Page tables (x86-64 long mode).
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
}

impl Default for MachineConfig {
    fn default() -> Self {
        MachineConfig {
            ram_bytes: 64 << 20,
            tlb_sets: 64,
            tlb_ways: 4,
            geometry: PagingGeometry::X86_64_4LEVEL,
            fault_around_pages: 16,
            read_around_pages: 32,
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
