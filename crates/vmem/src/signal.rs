//! Signals delivered to a memory access.
//!
//! Owns [`Signal`]: what a load or store gets when the kernel cannot resolve its fault.
//! The codes are Linux's `si_code` values (`SEGV_MAPERR`, `SEGV_ACCERR`, `BUS_ADRERR`, ...),
//! and the address is the faulting one (`si_addr`).

use crate::addr::VirtAddr;
use std::fmt;

/// `si_code` values for SIGSEGV.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SegvCode {
    /// No mapping at the address (`SEGV_MAPERR`).
    MapErr,
    /// A mapping exists but forbids the access (`SEGV_ACCERR`).
    AccErr,
}

/// `si_code` values for SIGBUS.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BusCode {
    /// Nonexistent physical address: a file page wholly past end of file (`BUS_ADRERR`).
    AdrErr,
    /// The backing store failed to read the page (Linux: `VM_FAULT_SIGBUS` from an I/O error).
    ObjErr,
}

/// A signal raised by a memory access that the kernel could not satisfy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Signal {
    /// SIGSEGV: invalid address or permission.
    Segv {
        /// The faulting address.
        addr: VirtAddr,
        /// Why.
        code: SegvCode,
    },
    /// SIGBUS: the mapping exists but there is no memory behind it.
    Bus {
        /// The faulting address.
        addr: VirtAddr,
        /// Why.
        code: BusCode,
    },
    /// SIGKILL from the out-of-memory killer: no frame could be found for the fault.
    OomKill {
        /// The faulting address.
        addr: VirtAddr,
    },
}

impl Signal {
    /// The signal's name: `"SIGSEGV"`, `"SIGBUS"` or `"SIGKILL"`.
    pub fn name(&self) -> &'static str {
        match self {
            Signal::Segv { .. } => "SIGSEGV",
            Signal::Bus { .. } => "SIGBUS",
            Signal::OomKill { .. } => "SIGKILL",
        }
    }

    /// The Linux signal number.
    pub fn number(&self) -> i32 {
        match self {
            Signal::Segv { .. } => 11,
            Signal::Bus { .. } => 7,
            Signal::OomKill { .. } => 9,
        }
    }

    /// The faulting address.
    pub fn addr(&self) -> VirtAddr {
        match *self {
            Signal::Segv { addr, .. } | Signal::Bus { addr, .. } | Signal::OomKill { addr } => addr,
        }
    }

    /// The `si_code` name, e.g. `"SEGV_MAPERR"`.
    pub fn code_name(&self) -> &'static str {
        match self {
            Signal::Segv {
                code: SegvCode::MapErr,
                ..
            } => "SEGV_MAPERR",
            Signal::Segv {
                code: SegvCode::AccErr,
                ..
            } => "SEGV_ACCERR",
            Signal::Bus {
                code: BusCode::AdrErr,
                ..
            } => "BUS_ADRERR",
            Signal::Bus {
                code: BusCode::ObjErr,
                ..
            } => "BUS_OBJERR",
            Signal::OomKill { .. } => "OOM",
        }
    }

    /// A sentence a user can read.
    pub fn reason(&self) -> &'static str {
        match self {
            Signal::Segv {
                code: SegvCode::MapErr,
                ..
            } => "address not mapped",
            Signal::Segv {
                code: SegvCode::AccErr,
                ..
            } => "access forbidden by the mapping's protection",
            Signal::Bus {
                code: BusCode::AdrErr,
                ..
            } => "page lies wholly past end of file",
            Signal::Bus {
                code: BusCode::ObjErr,
                ..
            } => "the backing file could not be read",
            Signal::OomKill { .. } => "out of memory: no free frame and nothing reclaimable",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}) at {}: {}",
            self.name(),
            self.code_name(),
            self.addr(),
            self.reason()
        )
    }
}

impl std::error::Error for Signal {}
