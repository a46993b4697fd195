//! Seeded test data: the same values on every machine and every adapter.

use rand::SeedableRng;
use rand_distr::Distribution;

/// `n` values drawn from N(`mean`, `std`²) with a seeded generator
/// (`rand`'s `StdRng`): the same seed gives the same values everywhere.
///
/// ```
/// let a = wgpu_norm::synthetic::normal(7, 4, 0.0, 1.0);
/// assert_eq!(a, wgpu_norm::synthetic::normal(7, 4, 0.0, 1.0));
/// ```
pub fn normal(seed: u64, n: usize, mean: f32, std: f32) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dist = rand_distr::Normal::new(mean, std).expect("std must be finite and >= 0");
    (0..n).map(|_| dist.sample(&mut rng)).collect()
}
