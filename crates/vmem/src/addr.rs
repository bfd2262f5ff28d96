//! Typed addresses and page numbers.
//!
//! Owns the newtypes that cross module boundaries: [`VirtAddr`], [`PhysAddr`], [`Vpn`],
//! [`Pfn`] and [`PgOff`], and the page-size constants (4 KiB, or 16 or 64 KiB when
//! built with the `page-16k` or `page-64k` feature). Arithmetic that a user can influence is checked (`checked_add`), in the
//! style of rust-vmm's `GuestAddress`; nothing here knows about processes or files.

use std::fmt;

#[cfg(all(feature = "page-16k", feature = "page-64k"))]
compile_error!("the features page-16k and page-64k choose the page size: enable one of them");

/// log2 of the page size: 12 (4 KiB) unless the crate is built with the `page-16k` (14)
/// or `page-64k` (16) feature. Like Linux's `PAGE_SHIFT`, it is fixed when the kernel is
/// built, not a run-time setting.
#[cfg(not(any(feature = "page-16k", feature = "page-64k")))]
pub const PAGE_SHIFT: u32 = 12;
/// log2 of the page size (16 KiB: the `page-16k` feature).
#[cfg(all(feature = "page-16k", not(feature = "page-64k")))]
pub const PAGE_SHIFT: u32 = 14;
/// log2 of the page size (64 KiB: the `page-64k` feature).
#[cfg(feature = "page-64k")]
pub const PAGE_SHIFT: u32 = 16;
/// The page size in bytes (4 KiB by default; 16 or 64 KiB with the `page-16k` or
/// `page-64k` feature).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// Mask of the offset-in-page bits.
pub const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// Rounds `n` up to a page boundary; `None` on overflow (Linux's `PAGE_ALIGN` wrapping to 0).
#[inline]
pub fn page_align_up(n: u64) -> Option<u64> {
    n.checked_add(PAGE_MASK).map(|v| v & !PAGE_MASK)
}

/// Whether `n` is a multiple of the page size.
#[inline]
pub fn is_page_aligned(n: u64) -> bool {
    n & PAGE_MASK == 0
}

macro_rules! addr_newtype {
    ($(#[$m:meta])* $name:ident, $fmt:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value.
            #[inline]
            pub const fn as_u64(self) -> u64 {
                self.0
            }
            /// `self + n`, or `None` on overflow.
            #[inline]
            pub fn checked_add(self, n: u64) -> Option<Self> {
                self.0.checked_add(n).map(Self)
            }
            /// `self - n`, or `None` on underflow.
            #[inline]
            pub fn checked_sub(self, n: u64) -> Option<Self> {
                self.0.checked_sub(n).map(Self)
            }
            /// `self + n` for callers that have already bounded `n` (panics in debug on overflow).
            /// A method rather than `std::ops::Add`, so that unchecked sums stand out.
            #[allow(clippy::should_implement_trait)]
            #[inline]
            pub fn add(self, n: u64) -> Self {
                Self(self.0 + n)
            }
            /// The offset of this address inside its page.
            #[inline]
            pub const fn page_offset(self) -> u64 {
                self.0 & PAGE_MASK
            }
            /// This address rounded down to its page.
            #[inline]
            pub const fn page_down(self) -> Self {
                Self(self.0 & !PAGE_MASK)
            }
            /// Whether the address is page aligned.
            #[inline]
            pub const fn is_aligned(self) -> bool {
                self.0 & PAGE_MASK == 0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
    };
}

addr_newtype!(
    /// A virtual address in some process's address space.
    VirtAddr,
    "0x{:x}"
);
addr_newtype!(
    /// A physical address on the machine's bus (RAM or a device register).
    PhysAddr,
    "P0x{:x}"
);

impl VirtAddr {
    /// The virtual page number that contains this address.
    #[inline]
    pub const fn vpn(self) -> Vpn {
        Vpn(self.0 >> PAGE_SHIFT)
    }
}

impl PhysAddr {
    /// The frame that contains this address.
    #[inline]
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

/// A virtual page number (`va >> PAGE_SHIFT`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Vpn(pub u64);

impl Vpn {
    /// The first address of the page.
    #[inline]
    pub const fn addr(self) -> VirtAddr {
        VirtAddr(self.0 << PAGE_SHIFT)
    }
}

/// A physical frame number (`pa >> PAGE_SHIFT`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The first physical address of the frame.
    #[inline]
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }
    /// The frame number as an index into per-frame arrays.
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A page offset inside a file (`file offset >> PAGE_SHIFT`), Linux's `pgoff_t`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct PgOff(pub u64);

impl PgOff {
    /// The byte offset of the start of this page in the file.
    #[inline]
    pub const fn byte_offset(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_align_up_overflows_to_none() {
        assert_eq!(page_align_up(1), Some(PAGE_SIZE));
        assert_eq!(page_align_up(PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(page_align_up(u64::MAX), None);
    }

    #[test]
    fn addresses_split_into_page_and_offset() {
        let va = VirtAddr(0x1234_5678);
        assert_eq!(va.vpn(), Vpn(0x1234_5678 >> PAGE_SHIFT));
        assert_eq!(va.page_offset(), 0x1234_5678 & PAGE_MASK);
        assert_eq!(va.vpn().addr(), VirtAddr(0x1234_5678 & !PAGE_MASK));
        if PAGE_SHIFT == 12 {
            assert_eq!(va.vpn(), Vpn(0x12345));
            assert_eq!(va.page_offset(), 0x678);
        }
    }
}
