//! Helpers shared by the behaviour tests.

/// A tiny xorshift generator: the same sequence for the same seed, no RNG crate.
pub struct Rng(pub u64);

impl Rng {
    /// The next value (the seed must not be zero).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
