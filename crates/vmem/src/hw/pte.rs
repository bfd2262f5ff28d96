//! The kernel's page-table entry: x86-64 long-mode bit positions.
//!
//! Owns [`Pte`], a `u64` exactly as x86-64 hardware stores it in a table: bit 0 Present,
//! 1 Writable, 2 User, 5 Accessed, 6 Dirty, 63 No-execute, bits 12..52 the frame number.
//! Bit 8 (Global on real hardware, unused for user pages) is taken, while Present is
//! clear, as Linux's `_PAGE_PROTNONE`: a PROT_NONE page that stays mapped.
//!
//! The kernel and the MMU work on `Pte` on every machine; on machines with another entry
//! format (i386, Sv39) `hw/pte_format.rs` converts to and from the bits in RAM.

use crate::addr::Pfn;

/// A page-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Pte(pub u64);

impl Pte {
    /// Present.
    pub const PRESENT: u64 = 1 << 0;
    /// Writable.
    pub const WRITABLE: u64 = 1 << 1;
    /// User-accessible.
    pub const USER: u64 = 1 << 2;
    /// Accessed: set by the MMU on any access through the entry.
    pub const ACCESSED: u64 = 1 << 5;
    /// Dirty: set by the MMU on a write through a leaf entry.
    pub const DIRTY: u64 = 1 << 6;
    /// Page Size: in a PMD (level 1) entry, the entry maps a 2 MiB page itself instead of
    /// pointing at a page table (Linux `_PAGE_PSE`, `pmd_trans_huge`).
    pub const HUGE: u64 = 1 << 7;
    /// Software bit: a PROT_NONE mapping (only meaningful when not present).
    pub const PROTNONE: u64 = 1 << 8;
    /// Software bit: a swap entry (not present; the frame-number bits hold the swap slot).
    pub const SWAP: u64 = 1 << 9;
    /// Software bit: maps a device page, which has no frame metadata (Linux
    /// `pte_special`): never reference counted, never reclaimed.
    pub const SPECIAL: u64 = 1 << 10;
    /// No-execute.
    pub const NX: u64 = 1 << 63;
    /// Frame-number bits.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

    /// The empty (not present) entry.
    pub const NONE: Pte = Pte(0);

    /// An entry pointing at `pfn` with the flag bits `flags`.
    #[inline]
    pub const fn new(pfn: Pfn, flags: u64) -> Pte {
        Pte((pfn.0 << 12) & Self::ADDR_MASK | flags)
    }
    /// Present bit.
    #[inline]
    pub const fn present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }
    /// Writable bit.
    #[inline]
    pub const fn writable(self) -> bool {
        self.0 & Self::WRITABLE != 0
    }
    /// User bit.
    #[inline]
    pub const fn user(self) -> bool {
        self.0 & Self::USER != 0
    }
    /// Accessed bit.
    #[inline]
    pub const fn accessed(self) -> bool {
        self.0 & Self::ACCESSED != 0
    }
    /// Dirty bit.
    #[inline]
    pub const fn dirty(self) -> bool {
        self.0 & Self::DIRTY != 0
    }
    /// No-execute bit.
    #[inline]
    pub const fn nx(self) -> bool {
        self.0 & Self::NX != 0
    }
    /// A PROT_NONE entry that still holds its frame.
    #[inline]
    pub const fn protnone(self) -> bool {
        !self.present() && self.0 & Self::PROTNONE != 0
    }
    /// Whether the entry holds a frame (present, or PROT_NONE).
    #[inline]
    pub const fn has_frame(self) -> bool {
        self.present() || self.protnone()
    }
    /// Whether this upper-level entry maps a huge page (the PS bit).
    #[inline]
    pub const fn huge(self) -> bool {
        self.present() && self.0 & Self::HUGE != 0
    }
    /// Whether it maps a device page (no frame metadata).
    #[inline]
    pub const fn special(self) -> bool {
        self.0 & Self::SPECIAL != 0
    }
    /// A swap entry for `slot` (Linux `swp_entry_t` in a non-present PTE).
    #[inline]
    pub const fn swap(slot: u64) -> Pte {
        Pte(((slot << 12) & Self::ADDR_MASK) | Self::SWAP)
    }
    /// Whether this is a swap entry.
    #[inline]
    pub const fn is_swap(self) -> bool {
        !self.present() && self.0 & Self::SWAP != 0
    }
    /// The swap slot of a swap entry.
    #[inline]
    pub const fn swap_slot(self) -> u64 {
        (self.0 & Self::ADDR_MASK) >> 12
    }
    /// The frame the entry points at.
    #[inline]
    pub const fn pfn(self) -> Pfn {
        Pfn((self.0 & Self::ADDR_MASK) >> 12)
    }
    /// This entry with `bits` set.
    #[inline]
    pub const fn with(self, bits: u64) -> Pte {
        Pte(self.0 | bits)
    }
    /// This entry with `bits` cleared.
    #[inline]
    pub const fn without(self, bits: u64) -> Pte {
        Pte(self.0 & !bits)
    }
}

impl std::fmt::Debug for Pte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Pte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_swap() {
            return write!(
                f,
                "0x{:016x} (swapped out to slot {})",
                self.0,
                self.swap_slot()
            );
        }
        if !self.has_frame() {
            return write!(f, "0x{:016x} (not present)", self.0);
        }
        let flag = |b: bool, c: char| if b { c } else { '-' };
        write!(
            f,
            "0x{:016x} ({}pfn 0x{:x} {}{}{}{}{}{})",
            self.0,
            if self.huge() {
                crate::mm::huge_memory::HUGE_PAGE_AT
            } else {
                ""
            },
            self.pfn().0,
            if self.protnone() { 'N' } else { 'P' },
            flag(self.writable(), 'W'),
            flag(self.user(), 'U'),
            flag(self.accessed(), 'A'),
            flag(self.dirty(), 'D'),
            if self.nx() { "-" } else { "X" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_round_trip() {
        let p = Pte::new(Pfn(0x1234), Pte::PRESENT | Pte::WRITABLE | Pte::NX);
        assert!(p.present() && p.writable() && p.nx() && !p.dirty());
        assert_eq!(p.pfn(), Pfn(0x1234));
        assert_eq!(p.with(Pte::DIRTY).0 & Pte::DIRTY, Pte::DIRTY);
        assert!(!Pte::new(Pfn(3), Pte::PROTNONE).present());
        assert!(Pte::new(Pfn(3), Pte::PROTNONE).has_frame());
    }
}
