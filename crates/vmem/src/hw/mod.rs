//! The hardware: RAM, the page-table entry formats, the walker, the TLB and the MMU.
//!
//! Nothing in here knows about processes, files or VMAs. The MMU *reports* a fault
//! ([`mmu::HwFault`]); the kernel (`mm/fault.rs`) handles it and retries.

pub mod device;
pub mod mmu;
pub mod phys;
pub mod pte;
pub mod pte_format;
pub mod segment;
pub mod tlb;
pub mod walk;
