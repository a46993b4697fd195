//! Seeded test data: the same values on every machine, adapter and version.
//!
//! The generator is SplitMix64 (Steele, Lea and Flood 2014) with the
//! Box–Muller transform, written out here rather than taken from `rand` so
//! that the library needs no random-number crate and the values are fixed
//! by this file alone (`rand`'s `StdRng` may change between releases).

/// `n` values drawn from N(`mean`, `std`²) with a seeded generator: the same
/// seed gives the same values everywhere.
///
/// ```
/// let a = wgpu_norm::synthetic::normal(7, 1000, 3.0, 2.0);
/// assert_eq!(a, wgpu_norm::synthetic::normal(7, 1000, 3.0, 2.0));
/// let mean = a.iter().map(|v| *v as f64).sum::<f64>() / 1000.0;
/// assert!((mean - 3.0).abs() < 0.2, "{mean}");
/// ```
pub fn normal(seed: u64, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    // A uniform in (0, 1]: the top 53 bits, never 0 (ln(0) is -inf).
    let mut uniform = move || ((next() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (u1, u2) = (uniform(), uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f64::consts::TAU * u2;
        for z in [r * theta.cos(), r * theta.sin()] {
            if out.len() < n {
                out.push((mean as f64 + std as f64 * z) as f32);
            }
        }
    }
    out
}
