//! The formats page-table entries have in RAM: x86-64, 32-bit x86 (non-PAE), RISC-V Sv39
//! and arm64 (VMSAv8-64 descriptors).
//!
//! Owns [`PteFormat`] (which hardware format a machine's tables use), the encoding of the
//! kernel's [`Pte`] into that format and back, the reads and writes of table entries in
//! [`PhysMem`], and [`RawPte`], an entry exactly as stored, for display. The kernel and the
//! MMU work on [`Pte`] (x86-64 bit positions) whatever the format; the bytes in RAM are
//! the real hardware's, so a dump of a table shows real i386 or Sv39 entries.
//!
//! It does not own the table shape (levels, index bits: `config::PagingGeometry`) nor the
//! walk (`hw/walk.rs`).
//!
//! Formats, and the software bits Linux uses in each:
//!
//! - **x86-64** (8 bytes): the RAM value *is* the [`Pte`] value, so the default machine
//!   pays no conversion.
//! - **x86, 32-bit, non-PAE** (4 bytes, Linux `arch/x86/include/asm/pgtable-2level.h`):
//!   P=0, R/W=1, U/S=2, A=5, D=6, frame = bits 31..12; no NX bit, so every present user
//!   page is executable (Linux cannot make a readable page non-executable there: without
//!   NX the CPU does not even report an instruction fetch as such in the fault error
//!   code). Software bits: `_PAGE_PROTNONE` is the Global bit (8) of a not-present entry,
//!   `_PAGE_SPECIAL` is the first AVL bit (9). A swap entry has P=0, PROTNONE=0, the swap
//!   type in bits 1..5 and the swap offset from bit 9.
//! - **RISC-V Sv39** (8 bytes, Linux `arch/riscv/include/asm/pgtable-bits.h`, `pgtable.h`):
//!   V=0, R=1, W=2, X=3, U=4, G=5, A=6, D=7, RSW=8..9, PPN = bits 53..10. A pointer to the
//!   next table is V=1 with R=W=X=0 (and, as the privileged spec requires, U=A=D=0); a
//!   leaf has R, W or X set. Every present leaf the kernel writes has R set (the kernel's
//!   model, like x86, has no execute-only pages). `_PAGE_SPECIAL` is RSW bit 8;
//!   `_PAGE_PROT_NONE` is G on a not-present entry (`PAGE_NONE` = `_PAGE_PROT_NONE |
//!   _PAGE_READ`); a swap entry has V=0, G=0, the swap type in bits 7..11 and the offset
//!   from bit 12. The MMU sets A and D itself (the Svadu behaviour) rather than faulting.
//!
//! - **arm64** (8 bytes, Linux `arch/arm64/include/asm/pgtable-hwdef.h`, `pgtable-prot.h`,
//!   `pgtable.h`): bits 1..0 are 3 for a page (last level) or a pointer to the next table,
//!   1 for a block (a huge page at an upper level), bit 0 clear for an invalid entry;
//!   AttrIndx=4..2 (0: normal memory, 4: `MT_DEVICE_nGnRE` for device pages), AP[1]=6
//!   (`PTE_USER`), AP[2]=7 (`PTE_RDONLY`), SH=9..8 (3: inner shareable), AF=10, nG=11,
//!   DBM=51, PXN=53, UXN=54, and the output address in bits 47..`PAGE_SHIFT` (the granule:
//!   4, 16 or 64 KiB). Linux keeps "writable" in DBM (`PTE_WRITE`) and "dirty" in the
//!   hardware's way, a writable entry with AP[2] clear (`pte_hw_dirty`), or in software bit
//!   55 (`PTE_DIRTY`) for a dirty read-only entry; so a clean writable page is DBM with
//!   RDONLY, and the first write clears RDONLY (hardware dirty-bit management, FEAT_HAFDBS,
//!   which also sets AF). `PTE_SPECIAL` is bit 56; PROT_NONE is V clear with nG set
//!   (`PTE_PRESENT_INVALID`, Linux 6.10 on); a swap entry has V and nG clear, the type in
//!   bits 10..6 and the offset from bit 12. A table pointer has no AF, so the walker sets
//!   no Accessed bit in the upper levels.
//!
//! Swap entries: Linux never uses swap offset 0 (that page of a swap area is its header),
//! which is what keeps a swap entry distinct from the empty entry. The model's swap slots
//! count from 0, so slot `n` is stored as offset `n + 1` of swap type 0. (The x86-64 format
//! keeps the model's own encoding: bit 9 marks a swap entry, the slot is in the frame bits.)
//!
//! Large pages: the x86-64 PS bit, arm64 blocks and Sv39 megapages (a leaf, R/W/X set, at
//! the PMD level) carry the kernel's huge PMDs ([`Pte::HUGE`]). i386 4 MiB PDEs are not
//! modelled: the kernel never writes them, and one reads as not present.

use crate::addr::{Pfn, PhysAddr, PAGE_SHIFT};
use crate::hw::phys::PhysMem;
use crate::hw::pte::Pte;

/// The hardware format of a page-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PteFormat {
    /// x86-64 long mode (4- or 5-level): 8-byte entries, the [`Pte`] layout itself.
    X86_64,
    /// 32-bit x86 without PAE: 4-byte entries, no NX bit.
    X86_32,
    /// RISC-V Sv39: 8-byte entries, PPN from bit 10, separate R/W/X bits.
    Sv39,
    /// arm64 (VMSAv8-64) descriptors: 8 bytes, output address from bit `PAGE_SHIFT`,
    /// AP[2] read-only, DBM writable, AF accessed.
    Arm64,
}

/// i386 bit positions (those shared with [`Pte`] are P, R/W, U/S, A, D).
mod i386 {
    pub const FLAGS: u32 = 0x067; // P | RW | US | A | D
    pub const PROTNONE: u32 = 1 << 8; // _PAGE_PROTNONE = _PAGE_GLOBAL
    pub const SPECIAL: u32 = 1 << 9; // _PAGE_SPECIAL = _PAGE_SOFTW1
    pub const FRAME: u32 = 0xffff_f000;
    pub const SWP_OFFSET_SHIFT: u32 = 9; // _PAGE_BIT_PROTNONE + 1
}

/// Sv39 bit positions.
mod sv39 {
    pub const V: u64 = 1 << 0;
    pub const R: u64 = 1 << 1;
    pub const W: u64 = 1 << 2;
    pub const X: u64 = 1 << 3;
    pub const U: u64 = 1 << 4;
    pub const G: u64 = 1 << 5; // _PAGE_PROT_NONE when V is clear
    pub const A: u64 = 1 << 6;
    pub const D: u64 = 1 << 7;
    pub const SPECIAL: u64 = 1 << 8; // _PAGE_SPECIAL (RSW)
    pub const PPN_SHIFT: u32 = 10;
    pub const PPN_MASK: u64 = ((1 << 44) - 1) << PPN_SHIFT; // bits 53..10
    pub const SWP_OFFSET_SHIFT: u32 = 12; // __SWP_TYPE_SHIFT 7 + __SWP_TYPE_BITS 5
}

/// arm64 descriptor bits (Linux `pgtable-hwdef.h`, `pgtable-prot.h`).
mod arm64 {
    pub const VALID: u64 = 1 << 0;
    /// Bits 1..0 of a page (last level) or of a pointer to the next table.
    pub const TYPE_PAGE: u64 = 3;
    /// Bit 1 clear at an upper level: a block (Linux `PMD_TYPE_SECT`).
    pub const TABLE_BIT: u64 = 1 << 1;
    /// AttrIndx of device memory (`MT_DEVICE_nGnRE` = 4), for special (device) pages.
    pub const ATTR_DEVICE: u64 = 4 << 2;
    pub const USER: u64 = 1 << 6; // AP[1]
    pub const RDONLY: u64 = 1 << 7; // AP[2]
    pub const SHARED: u64 = 3 << 8; // inner shareable
    pub const AF: u64 = 1 << 10;
    pub const NG: u64 = 1 << 11; // also PTE_PRESENT_INVALID when VALID is clear
    pub const DBM: u64 = 1 << 51; // PTE_WRITE
    pub const PXN: u64 = 1 << 53;
    pub const UXN: u64 = 1 << 54;
    pub const DIRTY: u64 = 1 << 55; // software PTE_DIRTY
    pub const SPECIAL: u64 = 1 << 56; // software PTE_SPECIAL
    /// Output address bits 47..PAGE_SHIFT.
    pub const OA_MASK: u64 = ((1 << 48) - 1) & !((1 << super::PAGE_SHIFT) - 1);
    pub const SWP_OFFSET_SHIFT: u32 = 12; // __SWP_OFFSET_SHIFT
}

impl PteFormat {
    /// log2 of the entry size: 3 (8 bytes) or 2 (4 bytes).
    #[inline(always)]
    pub const fn entry_shift(self) -> u32 {
        match self {
            PteFormat::X86_32 => 2,
            PteFormat::X86_64 | PteFormat::Sv39 | PteFormat::Arm64 => 3,
        }
    }

    /// Bytes per entry.
    #[inline(always)]
    pub const fn entry_size(self) -> u64 {
        1 << self.entry_shift()
    }

    /// Whether the format has a no-execute bit (without one, a readable page is executable).
    #[inline(always)]
    pub const fn has_nx(self) -> bool {
        !matches!(self, PteFormat::X86_32)
    }

    /// Whether the hardware sets the Accessed bit in the upper-level entries it walks
    /// through (x86 does; in Sv39 A is reserved in a pointer entry and stays clear; an arm64
    /// table descriptor has no AF).
    #[inline(always)]
    pub const fn sets_table_accessed(self) -> bool {
        !matches!(self, PteFormat::Sv39 | PteFormat::Arm64)
    }

    /// Width of a physical address (bits): 52 for x86-64, 32 for non-PAE x86, 56 for Sv39,
    /// 48 for arm64 (without the 52-bit LPA extensions).
    pub const fn phys_bits(self) -> u32 {
        match self {
            PteFormat::X86_64 => 52,
            PteFormat::X86_32 => 32,
            PteFormat::Sv39 => 56,
            PteFormat::Arm64 => 48,
        }
    }

    /// Whether an upper-level entry can map a huge page itself (the x86-64 PS bit, an arm64
    /// block, an Sv39 megapage), which is what the kernel's huge PMDs need. (i386 has 4 MiB
    /// PDEs, but Linux gives non-PAE i386 no transparent huge pages, and this machine's
    /// huge pages are 2 MiB.)
    pub const fn has_huge_pmd(self) -> bool {
        matches!(self, PteFormat::X86_64 | PteFormat::Arm64 | PteFormat::Sv39)
    }

    /// A short name: `x86-64`, `i386`, `sv39` or `arm64`.
    pub const fn name(self) -> &'static str {
        match self {
            PteFormat::X86_64 => "x86-64",
            PteFormat::X86_32 => "i386",
            PteFormat::Sv39 => "sv39",
            PteFormat::Arm64 => "arm64",
        }
    }

    /// The bit layout, in one line (for exercises and explain output).
    pub const fn legend(self) -> &'static str {
        match self {
            PteFormat::X86_64 => {
                "P=bit 0, R/W=1, U/S=2, A=5, D=6, NX=63, frame number = bits 51..12"
            }
            PteFormat::X86_32 => {
                "P=bit 0, R/W=1, U/S=2, A=5, D=6, frame number = bits 31..12 (no NX bit: \
                 every present page is executable)"
            }
            PteFormat::Sv39 => {
                "V=bit 0, R=1, W=2, X=3, U=4, G=5, A=6, D=7, PPN = bits 53..10; \
                 V with R=W=X=0 points to the next table"
            }
            PteFormat::Arm64 => {
                "bits 1..0 = 3 page or table pointer, 1 block; AP[1] user=6, AP[2] read-only=7, \
                 AF=10, nG=11, DBM writable=51, UXN=54, output address = bits 47..page shift; \
                 dirty = writable and not read-only"
            }
        }
    }

    /// The raw entry bits at `pa` (4 or 8 bytes, little-endian).
    #[inline(always)]
    pub fn read_raw(self, phys: &PhysMem, pa: PhysAddr) -> u64 {
        match self {
            PteFormat::X86_32 => {
                let mut b = [0u8; 4];
                phys.read(pa, &mut b);
                u64::from(u32::from_le_bytes(b))
            }
            PteFormat::X86_64 | PteFormat::Sv39 | PteFormat::Arm64 => phys.read_u64(pa),
        }
    }

    /// Stores raw entry bits at `pa` (4 or 8 bytes, little-endian).
    #[inline(always)]
    pub fn write_raw(self, phys: &mut PhysMem, pa: PhysAddr, raw: u64) {
        match self {
            PteFormat::X86_32 => phys.write(pa, &(raw as u32).to_le_bytes()),
            PteFormat::X86_64 | PteFormat::Sv39 | PteFormat::Arm64 => phys.write_u64(pa, raw),
        }
    }

    // The entry accessors below are a test of one enum value inline (x86-64: a plain u64
    // access, what the default machine ran before there were other formats) and a call
    // for the formats that decode, so that the default paths keep their size.

    /// The leaf (last-level) entry at `pa`, decoded (Linux `ptep_get`).
    #[inline(always)]
    pub fn read_pte(self, phys: &PhysMem, pa: PhysAddr) -> Pte {
        match self {
            PteFormat::X86_64 => Pte(phys.read_u64(pa)),
            _ => self.read_pte_decoded(phys, pa),
        }
    }

    /// Stores the leaf entry `pte` at `pa`, encoded (Linux `set_pte`).
    #[inline(always)]
    pub fn write_pte(self, phys: &mut PhysMem, pa: PhysAddr, pte: Pte) {
        match self {
            PteFormat::X86_64 => phys.write_u64(pa, pte.0),
            _ => self.write_pte_encoded(phys, pa, pte),
        }
    }

    /// The upper-level entry at `pa` (a pgd/pud/pmd entry), decoded: present, with the
    /// frame of the next table, or not present.
    #[inline(always)]
    pub fn read_table(self, phys: &PhysMem, pa: PhysAddr) -> Pte {
        match self {
            PteFormat::X86_64 => Pte(phys.read_u64(pa)),
            _ => self.read_table_decoded(phys, pa),
        }
    }

    /// Stores the upper-level entry `e` (pointing at the next table) at `pa`.
    #[inline(always)]
    pub fn write_table(self, phys: &mut PhysMem, pa: PhysAddr, e: Pte) {
        match self {
            PteFormat::X86_64 => phys.write_u64(pa, e.0),
            _ => self.write_table_encoded(phys, pa, e),
        }
    }

    #[inline(never)]
    fn read_pte_decoded(self, phys: &PhysMem, pa: PhysAddr) -> Pte {
        self.decode_pte(self.read_raw(phys, pa))
    }

    #[inline(never)]
    fn write_pte_encoded(self, phys: &mut PhysMem, pa: PhysAddr, pte: Pte) {
        self.write_raw(phys, pa, self.encode_pte(pte))
    }

    #[inline(never)]
    fn read_table_decoded(self, phys: &PhysMem, pa: PhysAddr) -> Pte {
        self.decode_table(self.read_raw(phys, pa))
    }

    #[inline(never)]
    fn write_table_encoded(self, phys: &mut PhysMem, pa: PhysAddr, e: Pte) {
        self.write_raw(phys, pa, self.encode_table(e))
    }

    /// The hardware bits of the leaf entry `pte`.
    pub fn encode_pte(self, pte: Pte) -> u64 {
        let p = pte.0;
        match self {
            PteFormat::X86_64 => p,
            _ if p == 0 => 0,
            PteFormat::X86_32 => {
                if pte.is_swap() {
                    return ((pte.swap_slot() + 1) << i386::SWP_OFFSET_SHIFT) & 0xffff_ffff;
                }
                debug_assert!(pte.pfn().0 < 1 << 20, "i386 frame above 4 GiB: {pte:?}");
                let mut v = ((pte.pfn().0 << 12) as u32 & i386::FRAME) | (p as u32 & i386::FLAGS);
                if p & Pte::PROTNONE != 0 {
                    v |= i386::PROTNONE;
                }
                if pte.special() {
                    v |= i386::SPECIAL;
                }
                u64::from(v)
            }
            PteFormat::Sv39 => {
                if pte.is_swap() {
                    return (pte.swap_slot() + 1) << sv39::SWP_OFFSET_SHIFT;
                }
                let mut v = ((pte.pfn().0 << sv39::PPN_SHIFT) & sv39::PPN_MASK) | sv39::R;
                if pte.present() {
                    v |= sv39::V;
                } else if pte.protnone() {
                    v |= sv39::G;
                }
                let map = [
                    (Pte::WRITABLE, sv39::W),
                    (Pte::USER, sv39::U),
                    (Pte::ACCESSED, sv39::A),
                    (Pte::DIRTY, sv39::D),
                    (Pte::SPECIAL, sv39::SPECIAL),
                ];
                for (from, to) in map {
                    if p & from != 0 {
                        v |= to;
                    }
                }
                if !pte.nx() {
                    v |= sv39::X;
                }
                v
            }
            PteFormat::Arm64 => {
                if pte.is_swap() {
                    return (pte.swap_slot() + 1) << arm64::SWP_OFFSET_SHIFT;
                }
                let mut v = ((pte.pfn().0 << PAGE_SHIFT) & arm64::OA_MASK)
                    | arm64::TYPE_PAGE
                    | arm64::SHARED
                    | arm64::NG;
                if !pte.present() {
                    // PROT_NONE: PTE_PRESENT_INVALID (nG) with V clear.
                    v &= !arm64::VALID;
                }
                if pte.user() {
                    v |= arm64::USER | arm64::PXN;
                }
                if pte.accessed() {
                    v |= arm64::AF;
                }
                if pte.nx() {
                    v |= arm64::UXN;
                }
                if pte.special() {
                    v |= arm64::SPECIAL | arm64::ATTR_DEVICE;
                }
                // pte_mkwrite sets DBM; pte_mkdirty clears RDONLY when writable, and
                // keeps PTE_DIRTY in software when not.
                match (pte.writable(), pte.dirty()) {
                    (true, true) => v |= arm64::DBM,
                    (true, false) => v |= arm64::DBM | arm64::RDONLY,
                    (false, true) => v |= arm64::DIRTY | arm64::RDONLY,
                    (false, false) => v |= arm64::RDONLY,
                }
                v
            }
        }
    }

    /// The leaf entry the hardware bits `raw` hold.
    pub fn decode_pte(self, raw: u64) -> Pte {
        match self {
            PteFormat::X86_64 => Pte(raw),
            _ if raw == 0 => Pte::NONE,
            PteFormat::X86_32 => {
                let v = raw as u32;
                if v & (Pte::PRESENT as u32 | i386::PROTNONE) == 0 {
                    let offset = u64::from(v >> i386::SWP_OFFSET_SHIFT);
                    return if offset == 0 {
                        Pte::NONE
                    } else {
                        Pte::swap(offset - 1)
                    };
                }
                let mut p = u64::from(v & i386::FRAME) | u64::from(v & i386::FLAGS);
                if v & i386::PROTNONE != 0 && v & Pte::PRESENT as u32 == 0 {
                    p |= Pte::PROTNONE;
                }
                if v & i386::SPECIAL != 0 {
                    p |= Pte::SPECIAL;
                }
                Pte(p)
            }
            PteFormat::Sv39 => {
                if raw & (sv39::V | sv39::G) == 0 {
                    let offset = raw >> sv39::SWP_OFFSET_SHIFT;
                    return if offset == 0 {
                        Pte::NONE
                    } else {
                        Pte::swap(offset - 1)
                    };
                }
                let pfn = Pfn((raw & sv39::PPN_MASK) >> sv39::PPN_SHIFT);
                let mut f = 0;
                if raw & sv39::V != 0 {
                    f |= Pte::PRESENT;
                } else {
                    f |= Pte::PROTNONE;
                }
                let map = [
                    (sv39::W, Pte::WRITABLE),
                    (sv39::U, Pte::USER),
                    (sv39::A, Pte::ACCESSED),
                    (sv39::D, Pte::DIRTY),
                    (sv39::SPECIAL, Pte::SPECIAL),
                ];
                for (from, to) in map {
                    if raw & from != 0 {
                        f |= to;
                    }
                }
                if raw & sv39::X == 0 {
                    f |= Pte::NX;
                }
                Pte::new(pfn, f)
            }
            PteFormat::Arm64 => {
                if raw & (arm64::VALID | arm64::NG) == 0 {
                    let offset = raw >> arm64::SWP_OFFSET_SHIFT;
                    return if offset == 0 {
                        Pte::NONE
                    } else {
                        Pte::swap(offset - 1)
                    };
                }
                let pfn = Pfn((raw & arm64::OA_MASK) >> PAGE_SHIFT);
                let mut f = if raw & arm64::VALID != 0 {
                    Pte::PRESENT
                } else {
                    Pte::PROTNONE
                };
                let writable = raw & arm64::DBM != 0;
                if writable {
                    f |= Pte::WRITABLE;
                }
                // pte_dirty: software dirty, or hardware dirty (writable, not read-only).
                if raw & arm64::DIRTY != 0 || (writable && raw & arm64::RDONLY == 0) {
                    f |= Pte::DIRTY;
                }
                if raw & arm64::USER != 0 {
                    f |= Pte::USER;
                }
                if raw & arm64::AF != 0 {
                    f |= Pte::ACCESSED;
                }
                if raw & arm64::UXN != 0 {
                    f |= Pte::NX;
                }
                if raw & arm64::SPECIAL != 0 {
                    f |= Pte::SPECIAL;
                }
                Pte::new(pfn, f)
            }
        }
    }

    /// The hardware bits of the upper-level entry `e` (a pointer to the next table).
    pub fn encode_table(self, e: Pte) -> u64 {
        match self {
            PteFormat::X86_64 => e.0,
            // A page-directory entry has the page-table entry's layout.
            PteFormat::X86_32 => self.encode_pte(e),
            PteFormat::Sv39 => {
                if e.huge() {
                    // A megapage: a leaf (R, W or X set) at the PMD level.
                    return self.encode_pte(e.without(Pte::HUGE));
                }
                if !e.present() {
                    return 0;
                }
                ((e.pfn().0 << sv39::PPN_SHIFT) & sv39::PPN_MASK) | sv39::V
            }
            PteFormat::Arm64 => {
                if e.huge() {
                    // A block: the page descriptor's layout with bit 1 clear.
                    return self.encode_pte(e.without(Pte::HUGE)) & !arm64::TABLE_BIT;
                }
                if !e.present() {
                    return 0;
                }
                ((e.pfn().0 << PAGE_SHIFT) & arm64::OA_MASK) | arm64::TYPE_PAGE
            }
        }
    }

    /// The upper-level entry the hardware bits `raw` hold: present with the next table's
    /// frame (and Present|Writable|User: the leaf decides), or not present.
    pub fn decode_table(self, raw: u64) -> Pte {
        match self {
            PteFormat::X86_64 => Pte(raw),
            PteFormat::X86_32 => {
                let v = raw as u32;
                if v & Pte::PRESENT as u32 == 0 || v & (1 << 7) != 0 {
                    // Not present, or a 4 MiB page (not modelled).
                    return Pte(u64::from(v) & !Pte::PRESENT);
                }
                Pte(u64::from(v & (i386::FRAME | i386::FLAGS)))
            }
            PteFormat::Sv39 => {
                if raw & sv39::V == 0 {
                    return Pte::NONE;
                }
                if raw & (sv39::R | sv39::W | sv39::X) != 0 {
                    // A leaf at an upper level: a superpage (a megapage at the PMD level).
                    return self.decode_pte(raw).with(Pte::HUGE);
                }
                Pte::new(
                    Pfn((raw & sv39::PPN_MASK) >> sv39::PPN_SHIFT),
                    Pte::PRESENT | Pte::WRITABLE | Pte::USER,
                )
            }
            PteFormat::Arm64 => {
                if raw & arm64::VALID == 0 {
                    return Pte::NONE;
                }
                if raw & arm64::TABLE_BIT == 0 {
                    // A block: a huge page mapped by this entry.
                    return self.decode_pte(raw | arm64::TABLE_BIT).with(Pte::HUGE);
                }
                Pte::new(
                    Pfn((raw & arm64::OA_MASK) >> PAGE_SHIFT),
                    Pte::PRESENT | Pte::WRITABLE | Pte::USER,
                )
            }
        }
    }
}

/// A table entry exactly as the hardware stores it, with its format, for display.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawPte {
    /// The format of `bits`.
    pub format: PteFormat,
    /// The entry's bits (the low 32 for a 4-byte format).
    pub bits: u64,
    /// Whether it is a leaf (last-level) entry rather than a pointer to a table.
    pub leaf: bool,
}

impl RawPte {
    /// The entry decoded into the kernel's [`Pte`].
    pub fn decode(self) -> Pte {
        if self.leaf {
            self.format.decode_pte(self.bits)
        } else {
            self.format.decode_table(self.bits)
        }
    }
}

impl std::fmt::Debug for RawPte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for RawPte {
    /// x86-64 entries print as [`Pte`] does; i386 entries as 8 hex digits with the same
    /// flag letters (always `X`: no NX bit); Sv39 entries with their own flags, bit 7 down
    /// to bit 0 (`DAGUXWRV`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.format {
            PteFormat::X86_64 => write!(f, "{}", Pte(self.bits)),
            PteFormat::X86_32 => {
                let p = self.decode();
                let v = self.bits as u32;
                if p.is_swap() {
                    return write!(f, "0x{v:08x} (swapped out to slot {})", p.swap_slot());
                }
                if !p.has_frame() {
                    return write!(f, "0x{v:08x} (not present)");
                }
                let flag = |b: bool, c: char| if b { c } else { '-' };
                write!(
                    f,
                    "0x{v:08x} (pfn 0x{:x} {}{}{}{}{}X)",
                    p.pfn().0,
                    if p.protnone() { 'N' } else { 'P' },
                    flag(p.writable(), 'W'),
                    flag(p.user(), 'U'),
                    flag(p.accessed(), 'A'),
                    flag(p.dirty(), 'D'),
                )
            }
            PteFormat::Sv39 | PteFormat::Arm64 => {
                let p = self.decode();
                let v = self.bits;
                if p.is_swap() {
                    return write!(f, "0x{v:016x} (swapped out to slot {})", p.swap_slot());
                }
                if !p.has_frame() {
                    return write!(f, "0x{v:016x} (not present)");
                }
                if self.format == PteFormat::Arm64 {
                    return self.fmt_arm64(f, p);
                }
                let letters: String = "DAGUXWRV"
                    .chars()
                    .enumerate()
                    .map(|(i, c)| if v & (1 << (7 - i)) != 0 { c } else { '-' })
                    .collect();
                write!(
                    f,
                    "0x{v:016x} (ppn 0x{:x} {letters}{})",
                    p.pfn().0,
                    if p.protnone() { " PROT_NONE" } else { "" }
                )
            }
        }
    }
}

impl RawPte {
    /// An arm64 descriptor that holds a frame: its kind and output address, then the names
    /// of the attribute bits set.
    fn fmt_arm64(&self, f: &mut std::fmt::Formatter<'_>, p: Pte) -> std::fmt::Result {
        let v = self.bits;
        let kind = if p.protnone() {
            "PROT_NONE"
        } else if !self.leaf && v & arm64::TABLE_BIT == 0 {
            "block"
        } else if self.leaf {
            "page"
        } else {
            "table"
        };
        let names = [
            (arm64::USER, " USER"),
            (arm64::RDONLY, " RDONLY"),
            (arm64::AF, " AF"),
            (arm64::DBM, " DBM"),
            (arm64::UXN, " UXN"),
            (arm64::DIRTY, " DIRTY"),
            (arm64::SPECIAL, " SPECIAL"),
        ];
        let attrs: String = names
            .iter()
            .filter(|(b, _)| v & b != 0)
            .map(|(_, n)| *n)
            .collect();
        write!(
            f,
            "0x{v:016x} ({kind} at 0x{:x}{attrs})",
            p.pfn().0 << PAGE_SHIFT
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [u64; 7] = [
        Pte::PRESENT,
        Pte::WRITABLE,
        Pte::USER,
        Pte::ACCESSED,
        Pte::DIRTY,
        Pte::SPECIAL,
        Pte::NX,
    ];

    #[test]
    fn i386_entries_have_the_hardware_layout() {
        let p = Pte::new(
            Pfn(0x1234),
            Pte::PRESENT | Pte::WRITABLE | Pte::USER | Pte::ACCESSED | Pte::DIRTY,
        );
        assert_eq!(PteFormat::X86_32.encode_pte(p), 0x0123_4067);
        // NX has nowhere to go: the page reads back executable.
        let q = p.with(Pte::NX);
        assert_eq!(PteFormat::X86_32.encode_pte(q), 0x0123_4067);
        assert!(!PteFormat::X86_32.decode_pte(0x0123_4067).nx());
        assert_eq!(PteFormat::X86_32.decode_pte(0x0123_4067), p);
        // A read-only, not yet accessed user page.
        assert_eq!(
            PteFormat::X86_32.encode_pte(Pte::new(Pfn(0xabcde), Pte::PRESENT | Pte::USER)),
            0xabcd_e005
        );
        // Special (a device page) is AVL bit 9; PROT_NONE is bit 8 with P clear.
        let dev = Pte::new(Pfn(0xe0000), Pte::PRESENT | Pte::USER | Pte::SPECIAL);
        assert_eq!(PteFormat::X86_32.encode_pte(dev), 0xe000_0205);
        let none = Pte::new(Pfn(7), Pte::PROTNONE | Pte::USER | Pte::ACCESSED);
        assert_eq!(PteFormat::X86_32.encode_pte(none), 0x0000_7124);
        assert!(PteFormat::X86_32.decode_pte(0x0000_7124).protnone());
        // Swap slot 4 is offset 5 of type 0: 5 << 9.
        assert_eq!(PteFormat::X86_32.encode_pte(Pte::swap(4)), 0xa00);
        assert_eq!(PteFormat::X86_32.decode_pte(0xa00).swap_slot(), 4);
        assert!(PteFormat::X86_32.decode_pte(0xa00).is_swap());
        assert_eq!(PteFormat::X86_32.decode_pte(0), Pte::NONE);
    }

    #[test]
    fn sv39_entries_have_the_hardware_layout() {
        let f = PteFormat::Sv39;
        // V R W U A D, executable: 0xdf; PPN 0x1234 at bit 10.
        let p = Pte::new(
            Pfn(0x1234),
            Pte::PRESENT | Pte::WRITABLE | Pte::USER | Pte::ACCESSED | Pte::DIRTY,
        );
        assert_eq!(f.encode_pte(p), (0x1234 << 10) | 0xdf);
        assert_eq!(f.decode_pte((0x1234 << 10) | 0xdf), p);
        // Read-only, no-execute: V R U = 0x13.
        let ro = Pte::new(Pfn(0x80042), Pte::PRESENT | Pte::USER | Pte::NX);
        assert_eq!(f.encode_pte(ro), (0x80042 << 10) | 0x13);
        assert_eq!(f.decode_pte((0x80042 << 10) | 0x13).pfn(), Pfn(0x80042));
        // A pointer to the next table: V only.
        let t = Pte::new(Pfn(0x99), Pte::PRESENT | Pte::WRITABLE | Pte::USER);
        assert_eq!(f.encode_table(t), (0x99 << 10) | 1);
        assert_eq!(f.decode_table((0x99 << 10) | 1), t);
        // PROT_NONE: G and R, V clear (Linux PAGE_NONE).
        let none = Pte::new(Pfn(3), Pte::PROTNONE | Pte::USER | Pte::NX);
        assert_eq!(f.encode_pte(none), (3 << 10) | 0x32);
        assert!(f.decode_pte((3 << 10) | 0x32).protnone());
        // Swap slot 4: offset 5 from bit 12.
        assert_eq!(f.encode_pte(Pte::swap(4)), 5 << 12);
        assert_eq!(f.decode_pte(5 << 12), Pte::swap(4));
    }

    #[test]
    fn arm64_descriptors_have_the_hardware_layout() {
        let f = PteFormat::Arm64;
        let oa = 0x1234 << PAGE_SHIFT;
        // A writable, dirty, accessed user page: page type (3), USER, SH=3, AF, nG, DBM,
        // PXN, UXN; AP[2] clear because it is dirty.
        let p = Pte::new(
            Pfn(0x1234),
            Pte::PRESENT | Pte::WRITABLE | Pte::USER | Pte::ACCESSED | Pte::DIRTY | Pte::NX,
        );
        let raw = oa | 3 | (1 << 6) | (3 << 8) | (1 << 10) | (1 << 11) | (1 << 51) | (3 << 53);
        assert_eq!(f.encode_pte(p), raw);
        assert_eq!(f.decode_pte(raw), p);
        // Clean and writable: DBM with AP[2] (read-only) set, so that the first write is
        // the hardware's to record (clearing AP[2]).
        let clean = p.without(Pte::DIRTY);
        assert_eq!(f.encode_pte(clean), raw | (1 << 7));
        assert!(!f.decode_pte(raw | (1 << 7)).dirty());
        // Dirty but write-protected (after fork or mprotect): software PTE_DIRTY (55).
        let wp = p.without(Pte::WRITABLE);
        assert_eq!(f.encode_pte(wp), (raw & !(1 << 51)) | (1 << 7) | (1 << 55));
        assert_eq!(f.decode_pte(f.encode_pte(wp)), wp);
        // PROT_NONE: V clear, nG (PTE_PRESENT_INVALID) set.
        let none = Pte::new(Pfn(3), Pte::PROTNONE | Pte::USER | Pte::NX);
        let raw_none = f.encode_pte(none);
        assert_eq!(raw_none & 3, 2);
        assert_ne!(raw_none & (1 << 11), 0);
        assert!(f.decode_pte(raw_none).protnone());
        // A table pointer: type 3 and the next table's address, nothing else.
        let t = Pte::new(Pfn(0x99), Pte::PRESENT | Pte::WRITABLE | Pte::USER);
        assert_eq!(f.encode_table(t), (0x99 << PAGE_SHIFT) | 3);
        assert_eq!(f.decode_table((0x99 << PAGE_SHIFT) | 3), t);
        // A block (huge page): the page layout with bit 1 clear.
        let huge = p.with(Pte::HUGE);
        assert_eq!(f.encode_table(huge), raw & !2);
        assert_eq!(f.decode_table(raw & !2), huge);
        // Swap slot 4: offset 5 from bit 12; V and nG clear.
        assert_eq!(f.encode_pte(Pte::swap(4)), 5 << 12);
        assert_eq!(f.decode_pte(5 << 12), Pte::swap(4));
    }

    #[test]
    fn every_kernel_entry_survives_a_round_trip() {
        for f in [
            PteFormat::X86_64,
            PteFormat::X86_32,
            PteFormat::Sv39,
            PteFormat::Arm64,
        ] {
            for mask in 0u32..(1 << ALL.len()) {
                let mut flags = 0;
                for (i, b) in ALL.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        flags |= b;
                    }
                }
                if !f.has_nx() {
                    flags &= !Pte::NX;
                }
                for base in [flags, (flags & !Pte::PRESENT) | Pte::PROTNONE] {
                    if base & (Pte::PRESENT | Pte::PROTNONE) == 0 {
                        continue;
                    }
                    let p = Pte::new(Pfn(0xfedc), base);
                    assert_eq!(f.decode_pte(f.encode_pte(p)), p, "{f:?} {p:?}");
                }
            }
            for slot in [0, 1, 4095, 1 << 18] {
                assert_eq!(f.decode_pte(f.encode_pte(Pte::swap(slot))), Pte::swap(slot));
            }
        }
    }
}
