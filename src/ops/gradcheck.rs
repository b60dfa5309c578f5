//! f64 finite-difference gradient checks shared by the op and model tests.

use dfdx::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

/// The step of the central differences (f64).
pub const STEP: f64 = 1e-5;
/// The largest accepted relative error between analytic and numeric gradients.
pub const TOL: f64 = 1e-6;

/// Deterministic uniform values in [-1, 1).
pub fn rand_vec(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()
}

/// ∂f/∂x by central differences, every coordinate.
pub fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + STEP;
            let fp = f(&x);
            x[i] = x0 - STEP;
            let fm = f(&x);
            x[i] = x0;
            (fp - fm) / (2.0 * STEP)
        })
        .collect()
}

/// The relative error used throughout: |a − n| / max(|a|, |n|, 1e-3).
pub fn rel_err(a: f64, n: f64) -> f64 {
    (a - n).abs() / a.abs().max(n.abs()).max(1e-3)
}

/// Panics with the worst coordinate when any relative error exceeds [`TOL`]; returns the worst.
pub fn assert_close(what: &str, analytic: &[f64], numeric: &[f64]) -> f64 {
    assert_eq!(analytic.len(), numeric.len(), "{what}: gradient lengths differ");
    let (i, worst) = analytic
        .iter()
        .zip(numeric)
        .map(|(a, n)| rel_err(*a, *n))
        .enumerate()
        .fold((0, 0.0), |b, (i, e)| if e > b.1 { (i, e) } else { b });
    assert!(
        worst <= TOL,
        "{what}: relative error {worst:.3e} at {i} (analytic {}, numeric {})",
        analytic[i],
        numeric[i]
    );
    worst
}

/// Σ y ⊙ r: a scalar loss whose gradient with respect to y is the fixed random tensor r.
pub fn weighted_sum<S: Shape>(
    y: Tensor<S, f64, Cpu, OwnedTape<f64, Cpu>>,
    r: &[f64],
) -> Tensor<Rank0, f64, Cpu, OwnedTape<f64, Cpu>> {
    let shape = *y.shape();
    let r = y.device().tensor_from_vec(r.to_vec(), shape);
    (y * r).sum::<Rank0, _>()
}

/// The same loss on an untraced output.
pub fn weighted_sum_value<S: Shape>(y: &Tensor<S, f64, Cpu>, r: &[f64]) -> f64 {
    y.as_vec().iter().zip(r).map(|(a, b)| a * b).sum()
}
