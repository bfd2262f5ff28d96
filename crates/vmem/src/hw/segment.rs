//! The segmentation unit.
//!
//! Owns [`Segment`] descriptors and [`translate`]: a logical address is a segment number
//! and an offset (here the high 32 bits and the low 32 bits of the address); the offset is
//! checked against the segment's limit (for a grows-down segment, valid offsets are the
//! top `limit` bytes of the segment's span) and its protection, and the result is
//! `base + offset` — a physical address in pure segmentation, a linear address that the
//! page tables then translate in segment-plus-paging mode. It reports a fault; the kernel
//! turns it into SIGSEGV.

use crate::hw::mmu::Access;

/// Bits of a logical address that hold the offset.
pub const SEG_SHIFT: u32 = 32;
/// The largest offset span of one segment (4 GiB).
pub const SEG_SPAN: u64 = 1 << SEG_SHIFT;

/// A segment descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where offset 0 (or, growing down, offset `SEG_SPAN - limit`) lands.
    pub base: u64,
    /// Bytes the segment covers.
    pub limit: u64,
    /// `PROT_*` bits.
    pub prot: i32,
    /// Valid offsets are the top `limit` bytes of the span (a stack).
    pub grows_down: bool,
}

/// Why a segment translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegFault {
    /// No descriptor for that segment number.
    NoSegment,
    /// The offset is outside the limit.
    Limit,
    /// The segment's protection forbids the access.
    Protection,
}

/// The segment number and offset of a logical address.
#[inline]
pub const fn split(logical: u64) -> (u64, u64) {
    (logical >> SEG_SHIFT, logical & (SEG_SPAN - 1))
}

/// A logical address from a segment number and an offset.
#[inline]
pub const fn logical(seg: u64, offset: u64) -> u64 {
    (seg << SEG_SHIFT) | (offset & (SEG_SPAN - 1))
}

/// Translates `logical` through `table` (index = segment number; 0 is the null segment).
pub fn translate(table: &[Option<Segment>], logical: u64, access: Access) -> Result<u64, SegFault> {
    let (seg, off) = split(logical);
    let s = table
        .get(seg as usize)
        .copied()
        .flatten()
        .ok_or(SegFault::NoSegment)?;
    let rel = if s.grows_down {
        let low = SEG_SPAN - s.limit;
        if off < low {
            return Err(SegFault::Limit);
        }
        off - low
    } else {
        if off >= s.limit {
            return Err(SegFault::Limit);
        }
        off
    };
    use crate::consts::{PROT_EXEC, PROT_READ, PROT_WRITE};
    let ok = match access {
        Access::Read => s.prot & (PROT_READ | PROT_WRITE | PROT_EXEC) != 0,
        Access::Write => s.prot & PROT_WRITE != 0,
        Access::Exec => s.prot & PROT_EXEC != 0,
    };
    if !ok {
        return Err(SegFault::Protection);
    }
    Ok(s.base + rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts::*;

    #[test]
    fn base_plus_offset_within_the_limit() {
        let t = vec![
            None,
            Some(Segment {
                base: 0x10000,
                limit: 0x2000,
                prot: PROT_READ,
                grows_down: false,
            }),
            Some(Segment {
                base: 0x40000,
                limit: 0x1000,
                prot: PROT_READ | PROT_WRITE,
                grows_down: true,
            }),
        ];
        assert_eq!(translate(&t, logical(1, 0x1fff), Access::Read), Ok(0x11fff));
        assert_eq!(
            translate(&t, logical(1, 0x2000), Access::Read),
            Err(SegFault::Limit)
        );
        assert_eq!(
            translate(&t, logical(1, 0), Access::Write),
            Err(SegFault::Protection)
        );
        assert_eq!(
            translate(&t, logical(0, 0), Access::Read),
            Err(SegFault::NoSegment)
        );
        assert_eq!(
            translate(&t, logical(3, 0), Access::Read),
            Err(SegFault::NoSegment)
        );
        // Growing down: the top 4 KiB of the span.
        assert_eq!(
            translate(&t, logical(2, SEG_SPAN - 1), Access::Write),
            Ok(0x40fff)
        );
        assert_eq!(
            translate(&t, logical(2, SEG_SPAN - 0x1001), Access::Read),
            Err(SegFault::Limit)
        );
    }
}
