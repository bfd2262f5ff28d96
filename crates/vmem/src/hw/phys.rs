//! Physical memory: the frame arena and its per-frame metadata.
//!
//! Owns the machine's RAM as one contiguous byte arena (an anonymous host mapping: zero
//! and unbacked until touched, like `calloc`, and on Linux backed by transparent huge
//! pages when the whole arena is prefaulted), the frame allocator (a free-list
//! stack of frame numbers) and [`FrameMeta`], a few words per frame (reference count,
//! flags, owner, index), like Linux's `struct page`. Frame 0 is reserved, as on a PC, so
//! that a zero physical address never names a usable frame.

use crate::addr::{Pfn, PhysAddr, PAGE_SHIFT, PAGE_SIZE};

/// What a frame is used for, and its state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FrameFlags(pub u16);

impl FrameFlags {
    /// Allocated (not on the free list).
    pub const ALLOCATED: u16 = 1 << 0;
    /// Holds a page table.
    pub const PAGE_TABLE: u16 = 1 << 1;
    /// The shared zero page.
    pub const ZERO: u16 = 1 << 2;
    /// A page-cache page (`owner` is the inode, `index` the page offset).
    pub const PAGE_CACHE: u16 = 1 << 3;
    /// An anonymous page (`owner` is the mm, `index` the virtual page number).
    pub const ANON: u16 = 1 << 4;
    /// A page-cache page with data newer than the file.
    pub const DIRTY: u16 = 1 << 5;
    /// Reserved by the machine (frame 0).
    pub const RESERVED: u16 = 1 << 6;
    /// Read-ahead mark: reaching this page starts the next asynchronous window
    /// (Linux `PG_readahead`).
    pub const READAHEAD: u16 = 1 << 7;
    /// Used through read()/write() since reclaim last looked (Linux `PG_referenced`).
    pub const REFERENCED: u16 = 1 << 8;
    /// One of the 512 frames of a transparent huge page still mapped by a PMD (cleared
    /// when the huge page is split into 4 KiB mappings).
    pub const THP: u16 = 1 << 9;
    /// One of the 512 frames of a page of the hugetlb pool (`vm.nr_hugepages`): free in
    /// the pool or mapped by PMD entries; never on the LRU lists. The first frame holds
    /// the page's reference count.
    pub const HUGETLB: u16 = 1 << 10;

    /// Whether `bit` is set.
    #[inline]
    pub const fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// Metadata of one frame: 32 bytes, 0.8% of a 4 KiB frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameMeta {
    /// References: one per page-table entry that maps it, plus one for page-cache membership.
    pub refcount: u32,
    /// Who owns it: an inode id for page-cache pages, an mm id for anonymous pages.
    pub owner: u32,
    /// Page offset in the file, or virtual page number for anonymous pages.
    pub index: u64,
    /// [`FrameFlags`] bits.
    pub flags: FrameFlags,
    /// Bumped at each allocation, so that a replacement policy can tell a reused frame
    /// from the page it queued. Zero only for a frame never allocated since boot (the
    /// count skips zero when it wraps), whose bytes are therefore still zero.
    pub stamp: u32,
    /// Access clock at the last access (kept only for the exact-LRU policy).
    pub last_use: u32,
}

/// The allocation stamp after `stamp`: never zero, which means "never allocated".
#[inline]
fn next_stamp(stamp: u32) -> u32 {
    stamp.wrapping_add(1).max(1)
}

/// Where memory-mapped devices start on the physical bus of a 64-bit machine (1 TiB,
/// above any RAM size). A machine's own base is [`PhysMem::mmio_base`] (from its paging
/// geometry: i386 has its device window below 4 GiB).
pub const MMIO_BASE: u64 = 1 << 40;
/// Bytes of physical address space each device slot takes.
pub const MMIO_SLOT: u64 = 1 << 16;

/// The physical bus: RAM (frames of real bytes and their metadata) at address 0, and
/// device register windows from [`PhysMem::mmio_base`] ([`MMIO_BASE`] unless set).
#[derive(Debug)]
pub struct PhysMem {
    bytes: memmap2::MmapMut,
    frames: Vec<FrameMeta>,
    free: Vec<u32>,
    devices: Vec<Box<dyn crate::hw::device::Device>>,
    mmio_base: u64,
}

impl PhysMem {
    /// `ram_bytes` of RAM (rounded down to frames; at least 16 frames).
    pub fn new(ram_bytes: u64) -> PhysMem {
        Self::with_prefault(ram_bytes, false)
    }

    /// `ram_bytes` of RAM; with `prefault`, every byte is written once now, so that the
    /// host backs the whole arena before the first emulated access (what a real machine's
    /// RAM is) and no host page fault lands inside a measured emulated fault. A
    /// prefaulted arena asks the host for huge pages (`MADV_HUGEPAGE`, as hypervisors
    /// back guest RAM): the emulated walk's reads and the data access then rarely miss
    /// the host's TLB. A lazily backed arena does not, so that a large machine that
    /// touches little RAM costs little host memory.
    ///
    /// Panics if the host cannot reserve `ram_bytes` of address space.
    pub fn with_prefault(ram_bytes: u64, prefault: bool) -> PhysMem {
        let nframes = (ram_bytes >> PAGE_SHIFT).max(16);
        let len = (nframes << PAGE_SHIFT) as usize;
        let mut bytes = match memmap2::MmapMut::map_anon(len) {
            Ok(m) => m,
            Err(e) => panic!("vmem: cannot reserve {len} bytes of RAM: {e}"),
        };
        if prefault {
            // Advice only: without huge pages the arena works the same, slower.
            #[cfg(target_os = "linux")]
            let _ = bytes.advise(memmap2::Advice::HugePage);
            // The zeros are already there: writing them is what backs the arena.
            bytes.fill(0);
        }
        let mut frames = vec![FrameMeta::default(); nframes as usize];
        frames[0].flags = FrameFlags(FrameFlags::RESERVED | FrameFlags::ALLOCATED);
        // Hand out low frames first: push in reverse so pop() yields 1, 2, 3, ...
        let free = (1..nframes as u32).rev().collect();
        PhysMem {
            bytes,
            frames,
            free,
            devices: Vec::new(),
            mmio_base: MMIO_BASE,
        }
    }

    /// Moves the device window to `base` (before any device is attached; it must lie
    /// above RAM).
    pub fn set_mmio_base(&mut self, base: PhysAddr) {
        assert!(
            self.devices.is_empty() && base.0 >= self.bytes.len() as u64,
            "vmem: device window at {base} must be set before devices and above RAM"
        );
        self.mmio_base = base.0;
    }

    /// Where the device window starts.
    pub fn mmio_base(&self) -> PhysAddr {
        PhysAddr(self.mmio_base)
    }

    /// The physical address of device `i`'s register window.
    pub fn device_base(&self, i: u16) -> PhysAddr {
        PhysAddr(self.mmio_base + u64::from(i) * MMIO_SLOT)
    }

    /// Attaches a device; returns the physical address of its register window.
    pub fn attach(&mut self, dev: Box<dyn crate::hw::device::Device>) -> PhysAddr {
        let base = self.mmio_base + self.devices.len() as u64 * MMIO_SLOT;
        self.devices.push(dev);
        PhysAddr(base)
    }

    /// The attached devices: (name, base address, size).
    pub fn devices(&self) -> Vec<(&'static str, PhysAddr, u64)> {
        self.devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    d.name(),
                    PhysAddr(self.mmio_base + i as u64 * MMIO_SLOT),
                    d.size(),
                )
            })
            .collect()
    }

    /// The device named `name`, mutably.
    pub fn device_mut(
        &mut self,
        name: &str,
    ) -> Option<&mut (dyn crate::hw::device::Device + 'static)> {
        self.devices
            .iter_mut()
            .find(|d| d.name() == name)
            .map(|d| d.as_mut())
    }

    /// Who answers at `pa`: `"RAM"`, a device's name, or `None` (nothing: a bus error).
    pub fn target(&self, pa: PhysAddr) -> Option<&'static str> {
        if pa.0 < self.bytes.len() as u64 {
            return Some("RAM");
        }
        self.device_at(pa).map(|(i, _)| self.devices[i].name())
    }

    fn device_at(&self, pa: PhysAddr) -> Option<(usize, u64)> {
        let rel = pa.0.checked_sub(self.mmio_base)?;
        let i = (rel / MMIO_SLOT) as usize;
        let off = rel % MMIO_SLOT;
        (i < self.devices.len() && off < self.devices[i].size()).then_some((i, off))
    }

    /// A CPU load of `buf.len()` bytes at `pa` (within one page): RAM or a device.
    /// Device registers are read in naturally sized pieces of up to 8 bytes.
    pub fn cpu_read(&mut self, pa: PhysAddr, buf: &mut [u8]) {
        let start = pa.0 as usize;
        if let Some(src) = self.bytes.get(start..start + buf.len()) {
            buf.copy_from_slice(src);
            return;
        }
        let mut done = 0;
        while done < buf.len() {
            let w = (buf.len() - done).min(8);
            let v = self.device_read(PhysAddr(pa.0 + done as u64), w);
            buf[done..done + w].copy_from_slice(&v.to_le_bytes()[..w]);
            done += w;
        }
    }

    /// A CPU store of `data` at `pa` (within one page): RAM or a device.
    pub fn cpu_write(&mut self, pa: PhysAddr, data: &[u8]) {
        let start = pa.0 as usize;
        if let Some(dst) = self.bytes.get_mut(start..start + data.len()) {
            dst.copy_from_slice(data);
            return;
        }
        let mut done = 0;
        while done < data.len() {
            let w = (data.len() - done).min(8);
            let mut b = [0u8; 8];
            b[..w].copy_from_slice(&data[done..done + w]);
            self.device_write(PhysAddr(pa.0 + done as u64), w, u64::from_le_bytes(b));
            done += w;
        }
    }

    /// The `N` bytes of RAM at `pa`, or `None` outside RAM (the hot path).
    #[inline(always)]
    pub fn ram_array<const N: usize>(&self, pa: PhysAddr) -> Option<[u8; N]> {
        let start = pa.0 as usize;
        // A wrapped end is below the start: `get` answers `None`.
        let s = self.bytes.get(start..start.wrapping_add(N))?;
        s.try_into().ok()
    }

    /// Stores `N` bytes to RAM at `pa`; false (nothing written) outside RAM.
    #[inline(always)]
    pub fn ram_write_array<const N: usize>(&mut self, pa: PhysAddr, b: [u8; N]) -> bool {
        let start = pa.0 as usize;
        match self.bytes.get_mut(start..start.wrapping_add(N)) {
            Some(d) => {
                d.copy_from_slice(&b);
                true
            }
            None => false,
        }
    }

    /// A little-endian u64 of RAM at `pa`, or `None` outside RAM.
    #[inline(always)]
    pub fn ram_u64(&self, pa: PhysAddr) -> Option<u64> {
        self.ram_array(pa).map(u64::from_le_bytes)
    }

    /// Stores a little-endian u64 to RAM at `pa`; false (nothing written) outside RAM.
    #[inline(always)]
    pub fn ram_write_u64(&mut self, pa: PhysAddr, v: u64) -> bool {
        self.ram_write_array(pa, v.to_le_bytes())
    }

    /// A CPU load of a little-endian u64 at `pa`: RAM or a device.
    #[inline]
    pub fn cpu_read_u64(&mut self, pa: PhysAddr) -> u64 {
        let start = pa.0 as usize;
        match self.bytes.get(start..start + 8) {
            Some(s) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(s);
                u64::from_le_bytes(b)
            }
            None => self.device_read(pa, 8),
        }
    }

    /// A CPU store of a little-endian u64 at `pa`: RAM or a device.
    #[inline]
    pub fn cpu_write_u64(&mut self, pa: PhysAddr, v: u64) {
        let start = pa.0 as usize;
        match self.bytes.get_mut(start..start + 8) {
            Some(d) => d.copy_from_slice(&v.to_le_bytes()),
            None => self.device_write(pa, 8, v),
        }
    }

    #[cold]
    fn device_read(&mut self, pa: PhysAddr, width: usize) -> u64 {
        match self.device_at(pa) {
            Some((i, off)) => self.devices[i].read(off, width),
            // Nothing answers: the bus floats high, as on a PC.
            None => u64::MAX,
        }
    }

    #[cold]
    fn device_write(&mut self, pa: PhysAddr, width: usize, v: u64) {
        if let Some((i, off)) = self.device_at(pa) {
            self.devices[i].write(off, width, v);
        }
    }

    /// Whether `pfn` is a frame of RAM (device frames have no metadata).
    #[inline]
    pub fn is_ram(&self, pfn: Pfn) -> bool {
        pfn.index() < self.frames.len()
    }

    /// Total frames, including reserved ones.
    pub fn total_frames(&self) -> u64 {
        self.frames.len() as u64
    }

    /// Frames on the free list.
    pub fn free_frames(&self) -> u64 {
        self.free.len() as u64
    }

    /// Bytes of RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Takes a frame off the free list and zeroes it; `None` when RAM is exhausted.
    /// A frame never allocated since boot is still zero (RAM starts zeroed) and is not
    /// written again.
    pub fn alloc_zeroed(&mut self, flags: u16) -> Option<Pfn> {
        let fresh = self.frames[*self.free.last()? as usize].stamp == 0;
        let pfn = self.alloc(flags)?;
        if !fresh {
            self.frame_bytes_mut(pfn).fill(0);
        }
        Some(pfn)
    }

    /// Takes a frame off the free list without clearing it (the caller overwrites it all).
    pub fn alloc(&mut self, flags: u16) -> Option<Pfn> {
        let n = self.free.pop()?;
        let meta = &mut self.frames[n as usize];
        *meta = FrameMeta {
            refcount: 0,
            owner: 0,
            index: 0,
            flags: FrameFlags(flags | FrameFlags::ALLOCATED),
            stamp: next_stamp(meta.stamp),
            last_use: 0,
        };
        Some(Pfn(n as u64))
    }

    /// Takes `n` physically contiguous frames (first fit); `None` when no run is free.
    pub fn alloc_contiguous(&mut self, n: u64, flags: u16) -> Option<Pfn> {
        self.alloc_contiguous_aligned(n, 1, flags)
    }

    /// Takes `n` physically contiguous frames starting at a multiple of `align` frames
    /// (first fit: a huge page's frames start on a huge-page boundary); `None` when no
    /// such run is free.
    pub fn alloc_contiguous_aligned(&mut self, n: u64, align: u64, flags: u16) -> Option<Pfn> {
        if n == 0 || align == 0 {
            return None;
        }
        let mut is_free = vec![false; self.frames.len()];
        for &f in &self.free {
            is_free[f as usize] = true;
        }
        let mut run = 0u64;
        let mut start = None;
        for (i, free) in is_free.iter().enumerate() {
            if run == 0 && i as u64 % align != 0 {
                continue;
            }
            if *free {
                run += 1;
                if run == n {
                    start = Some(i as u64 + 1 - n);
                    break;
                }
            } else {
                run = 0;
            }
        }
        let first = start?;
        self.free
            .retain(|&f| (f as u64) < first || (f as u64) >= first + n);
        for i in first..first + n {
            let meta = &mut self.frames[i as usize];
            *meta = FrameMeta {
                flags: FrameFlags(flags | FrameFlags::ALLOCATED),
                stamp: next_stamp(meta.stamp),
                ..FrameMeta::default()
            };
        }
        Some(Pfn(first))
    }

    /// Returns a frame to the free list.
    pub fn free(&mut self, pfn: Pfn) {
        let meta = &mut self.frames[pfn.index()];
        debug_assert!(
            meta.flags.has(FrameFlags::ALLOCATED),
            "double free of {pfn:?}"
        );
        debug_assert!(!meta.flags.has(FrameFlags::RESERVED | FrameFlags::ZERO));
        *meta = FrameMeta {
            stamp: meta.stamp,
            ..FrameMeta::default()
        };
        self.free.push(pfn.0 as u32);
    }

    /// The metadata of `pfn`.
    #[inline]
    pub fn meta(&self, pfn: Pfn) -> &FrameMeta {
        &self.frames[pfn.index()]
    }

    /// The metadata of `pfn`, mutably.
    #[inline]
    pub fn meta_mut(&mut self, pfn: Pfn) -> &mut FrameMeta {
        &mut self.frames[pfn.index()]
    }

    /// Whether `pa` lies in RAM.
    #[inline]
    pub fn contains(&self, pa: PhysAddr) -> bool {
        pa.0 < self.bytes.len() as u64
    }

    /// The 4 KiB of `pfn`.
    #[inline]
    pub fn frame_bytes(&self, pfn: Pfn) -> &[u8] {
        let start = (pfn.0 << PAGE_SHIFT) as usize;
        &self.bytes[start..start + PAGE_SIZE as usize]
    }

    /// The 4 KiB of `pfn`, mutably.
    #[inline]
    pub fn frame_bytes_mut(&mut self, pfn: Pfn) -> &mut [u8] {
        let start = (pfn.0 << PAGE_SHIFT) as usize;
        &mut self.bytes[start..start + PAGE_SIZE as usize]
    }

    /// The `len` bytes of RAM at `pa` and every frame's metadata, both mutable (for code
    /// that rewrites a run of page-table entries and the frames they map in one pass).
    /// Panics if the bytes do not lie in RAM.
    #[inline]
    pub fn bytes_and_meta_mut(
        &mut self,
        pa: PhysAddr,
        len: usize,
    ) -> (&mut [u8], &mut [FrameMeta]) {
        let start = pa.0 as usize;
        (&mut self.bytes[start..start + len], &mut self.frames)
    }

    /// Copies `from` into `to` (both whole frames).
    pub fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        let src = (from.0 << PAGE_SHIFT) as usize;
        let dst = (to.0 << PAGE_SHIFT) as usize;
        self.bytes.copy_within(src..src + PAGE_SIZE as usize, dst);
    }

    /// Reads `buf.len()` bytes at `pa` (must lie in RAM).
    #[inline]
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) {
        let start = pa.0 as usize;
        buf.copy_from_slice(&self.bytes[start..start + buf.len()]);
    }

    /// Writes `data` at `pa` (must lie in RAM).
    #[inline]
    pub fn write(&mut self, pa: PhysAddr, data: &[u8]) {
        let start = pa.0 as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
    }

    /// Reads a little-endian u64 at `pa`.
    #[inline]
    pub fn read_u64(&self, pa: PhysAddr) -> u64 {
        let start = pa.0 as usize;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[start..start + 8]);
        u64::from_le_bytes(b)
    }

    /// Writes a little-endian u64 at `pa`.
    #[inline]
    pub fn write_u64(&mut self, pa: PhysAddr, v: u64) {
        let start = pa.0 as usize;
        self.bytes[start..start + 8].copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_allocated_zeroed_and_recycled() {
        let mut m = PhysMem::new(64 * PAGE_SIZE);
        assert_eq!(m.total_frames(), 64);
        assert_eq!(m.free_frames(), 63);
        let a = m.alloc_zeroed(FrameFlags::ANON).unwrap();
        assert_eq!(a, Pfn(1));
        m.write(a.addr().add(10), b"hi");
        m.free(a);
        let b = m.alloc_zeroed(FrameFlags::ANON).unwrap();
        assert_eq!(b, a);
        assert_eq!(&m.frame_bytes(b)[10..12], &[0, 0]);
    }

    #[test]
    fn a_recycled_frame_is_zeroed_and_a_fresh_one_reads_zero() {
        let mut m = PhysMem::new(16 * PAGE_SIZE);
        let all: Vec<Pfn> = (0..15).map(|_| m.alloc(0).unwrap()).collect();
        for &f in &all {
            m.frame_bytes_mut(f).fill(0xaa);
        }
        for &f in all.iter().rev().skip(5) {
            m.free(f);
        }
        for _ in 0..10 {
            let f = m.alloc_zeroed(FrameFlags::ANON).unwrap();
            assert!(m.frame_bytes(f).iter().all(|&b| b == 0));
        }
        let mut fresh = PhysMem::new(16 * PAGE_SIZE);
        let f = fresh.alloc_zeroed(FrameFlags::ANON).unwrap();
        assert_eq!(fresh.meta(f).stamp, 1);
        assert!(fresh.frame_bytes(f).iter().all(|&b| b == 0));
        assert_eq!(next_stamp(u32::MAX), 1);
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut m = PhysMem::new(16 * PAGE_SIZE);
        for _ in 0..15 {
            assert!(m.alloc(0).is_some());
        }
        assert!(m.alloc(0).is_none());
    }

    #[test]
    fn metadata_is_a_few_words() {
        assert!(std::mem::size_of::<FrameMeta>() as u64 * 100 <= PAGE_SIZE);
    }
}
