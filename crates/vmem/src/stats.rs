//! Counters.
//!
//! Owns [`Counters`]: faults by kind, TLB and walk counts, page-cache hits and misses,
//! disk I/O, and the bytes that crossed between kernel and user memory. Every process
//! has one set; the machine's figures ([`crate::Kernel::stats`]) add up the live
//! processes, the exited ones and the kernel's own (I/O that no process caused directly).

use std::fmt;
use std::ops::AddAssign;

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident,)*) => {
        /// Event counters; all start at zero.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[$m])* pub $name: u64,)*
        }

        impl Counters {
            /// `(name, value)` for every counter, in declaration order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }

        impl AddAssign for Counters {
            fn add_assign(&mut self, o: Counters) {
                $(self.$name += o.$name;)*
            }
        }
    };
}

counters! {
    /// Faults resolved without disk I/O.
    minor_faults,
    /// Faults that had to read the page from disk.
    major_faults,
    /// Copy-on-write copies made by write faults (a subset of the faults above).
    cow_faults,
    /// Faults on present pages (write-protect: CoW, dirty tracking, PROT changes).
    wp_faults,
    /// SIGSEGV/SIGBUS/OOM delivered to accesses.
    signals,
    /// Translations found in the TLB.
    tlb_hits,
    /// Translations not in the TLB.
    tlb_misses,
    /// Page-table walks done by the MMU.
    page_walks,
    /// Page-cache lookups that found the page.
    cache_hits,
    /// Page-cache lookups that did not.
    cache_misses,
    /// Read requests sent to a real file.
    disk_reads,
    /// Pages read from real files.
    disk_read_pages,
    /// Bytes read from real files.
    disk_read_bytes,
    /// Write requests sent to a real file.
    disk_writes,
    /// Pages written to real files.
    disk_write_pages,
    /// Bytes written to real files.
    disk_write_bytes,
    /// Bytes copied from the page cache into user buffers by read()/pread().
    copied_to_user,
    /// Bytes copied from user buffers into the page cache by write()/pwrite().
    copied_from_user,
    /// Bytes loaded through mappings (no copy: the CPU reads the frame).
    mapped_loads,
    /// Bytes stored through mappings.
    mapped_stores,
    /// Pages mapped by fault-around without a fault of their own.
    fault_around_pages,
    /// Pages read ahead (read-around / readahead) beyond the faulting page.
    readahead_pages,
    /// Syscalls made.
    syscalls,
    /// Page-cache pages reclaimed (dropped, after write-back if dirty).
    reclaimed_file_pages,
    /// Anonymous pages reclaimed (written to swap).
    reclaimed_anon_pages,
    /// Pages written to swap.
    swap_outs,
    /// Pages read back from swap.
    swap_ins,
    /// Faults on pages that reclaim had evicted.
    refaults,
    /// Faults that found no frame and nothing reclaimable (the OOM killer's cases).
    oom_kills,
    /// Transparent huge pages allocated by faults (Linux `thp_fault_alloc`).
    thp_fault_alloc,
    /// Huge page mappings split into 512 page mappings (Linux `thp_split_pmd`).
    thp_split_pmd,
}

impl Counters {
    /// All faults (minor + major).
    pub fn faults(&self) -> u64 {
        self.minor_faults + self.major_faults
    }
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, v) in self.fields() {
            writeln!(f, "{name:<20} {v:>12}")?;
        }
        Ok(())
    }
}
