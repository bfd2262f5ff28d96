//! Devices on the physical bus (memory-mapped I/O).
//!
//! Owns the [`Device`] trait (register reads and writes at an offset) and the devices the
//! machine ships: a [`Console`] (bytes written to its data register appear on the
//! machine's console output) and a [`Timer`] (a counter that advances as it is read).
//! [`crate::hw::phys::PhysMem`] routes a physical address outside RAM to the device
//! region that contains it; the kernel exposes each device as `/dev/vmem/<name>`, which a
//! process can map MAP_SHARED (no page cache, no copy-on-write).

use std::fmt;

/// A device with a register window on the physical bus.
pub trait Device: Send {
    /// Its name (also its file: `/dev/vmem/<name>`).
    fn name(&self) -> &'static str;
    /// Bytes of register space (a whole number of pages).
    fn size(&self) -> u64;
    /// A load of `width` bytes (1, 2, 4 or 8) at `offset`.
    fn read(&mut self, offset: u64, width: usize) -> u64;
    /// A store of `width` bytes at `offset`.
    fn write(&mut self, offset: u64, width: usize, value: u64);
    /// What the device printed since the last call (consoles only).
    fn take_output(&mut self) -> Vec<u8> {
        Vec::new()
    }
}

impl fmt::Debug for dyn Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

/// A serial console. Registers: `0x0` DATA (write: the low byte is printed; read: 0),
/// `0x8` STATUS (read: 1, always ready), `0x10` COUNT (read: bytes printed so far).
#[derive(Debug, Default)]
pub struct Console {
    out: Vec<u8>,
    count: u64,
}

impl Console {
    /// The DATA register.
    pub const DATA: u64 = 0x0;
    /// The STATUS register.
    pub const STATUS: u64 = 0x8;
    /// The COUNT register.
    pub const COUNT: u64 = 0x10;
}

impl Device for Console {
    fn name(&self) -> &'static str {
        "console"
    }
    fn size(&self) -> u64 {
        crate::addr::PAGE_SIZE
    }
    fn read(&mut self, offset: u64, _: usize) -> u64 {
        match offset {
            Console::STATUS => 1,
            Console::COUNT => self.count,
            _ => 0,
        }
    }
    fn write(&mut self, offset: u64, width: usize, value: u64) {
        if offset == Console::DATA {
            // A wide store prints its bytes in order, as a UART's FIFO would take them.
            for i in 0..width {
                self.out.push((value >> (8 * i)) as u8);
                self.count += 1;
            }
        }
    }
    fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

/// A counter. Registers: `0x0` COUNT (read: the value, which then advances by STEP),
/// `0x8` RESET (write: back to 0), `0x10` STEP (read/write: the increment, default 1).
#[derive(Debug)]
pub struct Timer {
    count: u64,
    step: u64,
}

impl Default for Timer {
    fn default() -> Self {
        Timer { count: 0, step: 1 }
    }
}

impl Timer {
    /// The COUNT register.
    pub const COUNT: u64 = 0x0;
    /// The RESET register.
    pub const RESET: u64 = 0x8;
    /// The STEP register.
    pub const STEP: u64 = 0x10;
}

impl Device for Timer {
    fn name(&self) -> &'static str {
        "timer"
    }
    fn size(&self) -> u64 {
        crate::addr::PAGE_SIZE
    }
    fn read(&mut self, offset: u64, _: usize) -> u64 {
        match offset {
            Timer::COUNT => {
                let v = self.count;
                self.count = self.count.wrapping_add(self.step);
                v
            }
            Timer::STEP => self.step,
            _ => 0,
        }
    }
    fn write(&mut self, offset: u64, _: usize, value: u64) {
        match offset {
            Timer::RESET => self.count = 0,
            Timer::STEP => self.step = value,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_prints_and_timer_counts() {
        let mut c = Console::default();
        c.write(Console::DATA, 1, b'h' as u64);
        c.write(Console::DATA, 2, u64::from(u16::from_le_bytes(*b"i!")));
        assert_eq!(c.read(Console::COUNT, 8), 3);
        assert_eq!(c.take_output(), b"hi!");
        let mut t = Timer::default();
        assert_eq!(t.read(Timer::COUNT, 8), 0);
        assert_eq!(t.read(Timer::COUNT, 8), 1);
        t.write(Timer::STEP, 8, 10);
        t.write(Timer::RESET, 8, 0);
        assert_eq!(t.read(Timer::COUNT, 8), 0);
        assert_eq!(t.read(Timer::COUNT, 8), 10);
    }
}
