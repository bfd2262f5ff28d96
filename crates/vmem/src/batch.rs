//! Batches of memory accesses: how a trace replayer (`vmem replay`) drives the machine.
//!
//! Owns [`TraceAccess`] (one record: address, kind, size) and [`Kernel::access_batch`],
//! which runs a slice of them with exactly the effects of calling [`Kernel::load`],
//! [`Kernel::store`] and [`Kernel::fetch`] for each in turn, only faster. Does not own
//! the single accesses (`kernel.rs`), the translation (`hw/mmu.rs`) or the fault handling
//! (`mm/fault.rs`): it calls them.
//!
//! Why faster: on the default machine with nobody observing, a block of accesses is
//! translated first, in order, each with its TLB lookup, page walk, Accessed/Dirty update
//! and TLB fill; then the block's data moves, in order. The data reads depend on nothing
//! but the physical addresses, so the host keeps many of their cache misses in flight at
//! once, as it does for a native loop; one access at a time, a walk's few hundred
//! instructions sit between two misses and the host overlaps about two. The order of
//! effects is kept where it can be seen: a translation changes page-table entries and the
//! TLB, which no data access reads (page-table frames are never mapped as data), and an
//! access that faults, is refused by its TLB entry, reaches a device or crosses a page
//! ends the block: the block's data moves first, then that access runs alone, through the
//! same code as a single access (fault handling may reclaim and reuse frames).

use crate::addr::{PhysAddr, VirtAddr};
use crate::hw::mmu::{self, Access, HwFault};
use crate::kernel::{short_path_refuses, Kernel};
use crate::process::Pid;
use crate::signal::Signal;

/// One memory access of a batch, as a trace records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceAccess {
    /// The first byte.
    pub va: VirtAddr,
    /// Load, store or instruction fetch.
    pub access: Access,
    /// Bytes accessed (a load or store of 0 bytes touches nothing).
    pub size: u8,
}

impl TraceAccess {
    /// A load of `size` bytes at `va`.
    pub fn read(va: VirtAddr, size: u8) -> TraceAccess {
        TraceAccess {
            va,
            access: Access::Read,
            size,
        }
    }

    /// A store of `size` bytes at `va`.
    pub fn write(va: VirtAddr, size: u8) -> TraceAccess {
        TraceAccess {
            va,
            access: Access::Write,
            size,
        }
    }

    /// An instruction fetch of `size` bytes at `va`.
    pub fn fetch(va: VirtAddr, size: u8) -> TraceAccess {
        TraceAccess {
            va,
            access: Access::Exec,
            size,
        }
    }
}

/// Accesses translated before their data moves (one block of [`Kernel::access_batch`]).
const BLOCK: usize = 64;

/// The largest access the block path moves itself (a 64-byte AVX-512 load); larger ones
/// run alone.
const BLOCK_MAX_SIZE: u64 = 64;

/// What ended a block before its last access: `None` for an access the general path must
/// run from the start, or the outcome of the refill the block already did for it.
type BlockStop = Option<Result<PhysAddr, (HwFault, Option<PhysAddr>)>>;

impl Kernel {
    /// Runs `batch` in order for `pid`: each load or fetch of `size` bytes puts its first
    /// (up to) 8 bytes, little-endian, in the same index of `values`; each store writes
    /// the value at that index, little-endian, then zeros up to `size`. Exactly what
    /// [`Kernel::load`], [`Kernel::fetch`] and [`Kernel::store`] would do one by one: the
    /// same bytes, faults, signals, counters, page-table bits and TLB contents.
    ///
    /// On a signal, returns the index of the access that raised it (delivered as those
    /// calls deliver it); the accesses before it are done, the ones after it are not.
    ///
    /// # Panics
    /// If `values` is not as long as `batch`.
    pub fn access_batch(
        &mut self,
        pid: Pid,
        batch: &[TraceAccess],
        values: &mut [u64],
    ) -> Result<(), (usize, Signal)> {
        assert_eq!(
            batch.len(),
            values.len(),
            "access_batch: one value per access"
        );
        let mut pas = [PhysAddr(0); BLOCK];
        let mut i = 0;
        while i < batch.len() {
            if !self.fast_walk || !self.hot_or_make(pid) {
                values[i] = self
                    .access_one(pid, batch[i], values[i])
                    .map_err(|s| (i, s))?;
                i += 1;
                continue;
            }
            let end = batch.len().min(i + BLOCK);
            let (j, stop) = self.translate_block(&batch[i..end], &mut pas);
            self.move_block(&batch[i..i + j], &pas[..j], &mut values[i..i + j]);
            i += j;
            if let Some(stop) = stop {
                let a = batch[i];
                values[i] = self
                    .finish_alone(pid, a, values[i], stop)
                    .map_err(|s| (i, s))?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Pass 1 of a block: translates `block` in order into `pas` (hot process, fast walk),
    /// up to the first access the block cannot take. Returns how many were translated
    /// and, when it stopped early, what stopped it.
    #[inline(always)]
    fn translate_block(
        &mut self,
        block: &[TraceAccess],
        pas: &mut [PhysAddr; BLOCK],
    ) -> (usize, Option<BlockStop>) {
        let ram = self.phys.ram_bytes();
        for (j, a) in block.iter().enumerate() {
            let n = u64::from(a.size);
            // Empty, large, crossing a page or untranslatable: the general path.
            if n.wrapping_sub(1) >= BLOCK_MAX_SIZE || short_path_refuses(a.va, n) {
                return (j, Some(None));
            }
            let pa = match self.tlb.lookup_translatable(self.hot_asid, a.va.vpn()) {
                Some(e) if mmu::tlb_allows(&e, a.access) => {
                    let pa = e.pa(a.va.page_offset());
                    if pa.0 + n > ram {
                        // A device.
                        return (j, Some(None));
                    }
                    self.hot.tlb_hits += 1;
                    pa
                }
                // An entry that needs a walk (a store through a clean entry) or refuses.
                Some(_) => return (j, Some(None)),
                None => match self.refill_hot(a.va, a.access) {
                    Ok(pa) if pa.0 + n <= ram => pa,
                    r => return (j, Some(Some(r))),
                },
            };
            pas[j] = pa;
        }
        (block.len(), None)
    }

    /// Pass 2 of a block: the data of each access at its translated address (RAM).
    #[inline(always)]
    fn move_block(&mut self, block: &[TraceAccess], pas: &[PhysAddr], values: &mut [u64]) {
        for ((a, &pa), v) in block.iter().zip(pas).zip(values.iter_mut()) {
            let n = usize::from(a.size);
            match a.access {
                Access::Read if n == 8 => {
                    *v = self.phys.read_u64(pa);
                    self.hot.mapped_loads += 8;
                }
                Access::Write => {
                    self.phys.cpu_write(pa, &store_bytes(*v)[..n]);
                    self.hot.mapped_stores += n as u64;
                }
                Access::Read | Access::Exec => {
                    let mut b = [0u8; BLOCK_MAX_SIZE as usize];
                    self.phys.cpu_read(pa, &mut b[..n]);
                    *v = value_of(&b[..n]);
                    if a.access == Access::Read {
                        self.hot.mapped_loads += n as u64;
                    }
                }
            }
        }
    }

    /// The access that ended a block, run alone: from the start through the general
    /// path, or after the refill the block did for it, as the single-access short path
    /// goes on after its own (`load_unfinished`, `store_missed`): the fault handling, then the
    /// data at the address it gives, RAM or a device.
    fn finish_alone(
        &mut self,
        pid: Pid,
        a: TraceAccess,
        value: u64,
        stop: BlockStop,
    ) -> Result<u64, Signal> {
        let pa = match stop {
            None => return self.access_one(pid, a, value),
            Some(Ok(pa)) => pa,
            Some(Err((hw, slot))) => self.fault_and_retry::<true>(pid, a.va, a.access, hw, slot)?,
        };
        let n = usize::from(a.size);
        let stats = &mut self.live(pid).stats;
        if a.access == Access::Write {
            stats.mapped_stores += n as u64;
            self.phys.cpu_write(pa, &store_bytes(value)[..n]);
            return Ok(value);
        }
        if a.access == Access::Read {
            stats.mapped_loads += n as u64;
        }
        let mut b = [0u8; BLOCK_MAX_SIZE as usize];
        self.phys.cpu_read(pa, &mut b[..n]);
        Ok(value_of(&b[..n]))
    }

    /// One access through [`Kernel::load`], [`Kernel::fetch`] or [`Kernel::store`]: the
    /// meaning of a batch record.
    fn access_one(&mut self, pid: Pid, a: TraceAccess, value: u64) -> Result<u64, Signal> {
        let n = usize::from(a.size);
        let mut b = [0u8; 256];
        match a.access {
            Access::Read => self
                .load(pid, a.va, &mut b[..n])
                .map(|()| value_of(&b[..n])),
            Access::Exec => self
                .fetch(pid, a.va, &mut b[..n])
                .map(|()| value_of(&b[..n])),
            Access::Write => {
                b[..8].copy_from_slice(&value.to_le_bytes());
                self.store(pid, a.va, &b[..n]).map(|()| value)
            }
        }
    }
}

/// The bytes a store of `v` writes: its 8 little-endian bytes, then zeros.
#[inline(always)]
fn store_bytes(v: u64) -> [u8; BLOCK_MAX_SIZE as usize] {
    let mut b = [0u8; BLOCK_MAX_SIZE as usize];
    b[..8].copy_from_slice(&v.to_le_bytes());
    b
}

/// The value a load of `b` gives: its first (up to) 8 bytes, little-endian.
#[inline(always)]
pub(crate) fn value_of(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    let n = b.len().min(8);
    v[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(v)
}
