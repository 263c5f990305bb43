//! Parameters of the FMA-peak chains (the arithmetic ceiling): x ← x·m + c, `iters` times.

/// Parameters of the FMA chains: x ← x·m + c, `iters` times.
#[derive(Clone, Copy, Debug)]
pub struct FmaPeakParams {
    /// Steps per chain (a multiple of 8).
    pub iters: u32,
    /// Multiplier (|m| < 1 keeps values bounded).
    pub m: f32,
    /// Addend.
    pub c: f32,
}

impl Default for FmaPeakParams {
    fn default() -> Self {
        Self {
            iters: 1024,
            m: 0.999,
            c: 0.001,
        }
    }
}
