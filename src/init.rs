//! Parameter initialisation, deterministic from a seed, with the official codes' rules named where
//! they are used (`Init::torch_linear` is `nn.Linear`'s default, and so on).

use dfdx::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::device::{tensor, KitDevice, Real};
use crate::param::Param;

/// A source of initial values. `Init::zeros()` builds shape-only models fast (for counting).
pub struct Init {
    rng: Option<StdRng>,
}

impl Init {
    /// Random values from a generator seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self { rng: Some(StdRng::seed_from_u64(seed)) }
    }

    /// Every random draw replaced by zero (constants stay constants): for building big models only
    /// to count or to load weights into.
    pub fn zeros() -> Self {
        Self { rng: None }
    }

    fn draw(&mut self, n: usize, f: impl Fn(&mut StdRng) -> f64) -> Vec<f64> {
        match &mut self.rng {
            Some(rng) => (0..n).map(|_| f(rng)).collect(),
            None => vec![0.0; n],
        }
    }

    /// N(0, std²).
    pub fn normal(&mut self, n: usize, std: f64) -> Vec<f64> {
        self.draw(n, |r| {
            let z: f64 = StandardNormal.sample(r);
            std * z
        })
    }

    /// N(0, std²) truncated to [−2, 2] (timm's `trunc_normal_(std)`, absolute bounds).
    pub fn trunc_normal(&mut self, n: usize, std: f64) -> Vec<f64> {
        self.draw(n, |r| loop {
            let z: f64 = StandardNormal.sample(r);
            let v = std * z;
            if (-2.0..=2.0).contains(&v) {
                break v;
            }
        })
    }

    /// U(−bound, bound).
    pub fn uniform(&mut self, n: usize, bound: f64) -> Vec<f64> {
        self.draw(n, |r| if bound > 0.0 { r.gen_range(-bound..bound) } else { 0.0 })
    }

    /// torch `nn.Linear`'s default weight init: kaiming-uniform with a = √5, i.e. U(±1/√fan_in).
    pub fn torch_linear(&mut self, out: usize, fan_in: usize) -> Vec<f64> {
        self.uniform(out * fan_in, 1.0 / (fan_in as f64).sqrt())
    }
}

/// A parameter of `shape` holding `values`.
pub fn param<S: Shape, E: Real, D: KitDevice<E>>(
    dev: &D,
    shape: S,
    values: Vec<f64>,
    trainable: bool,
) -> Param<S, E, D> {
    Param::new(tensor(dev, values.into_iter().map(E::of).collect(), shape), trainable)
}

/// A parameter of `shape` filled with `v`.
pub fn constant<S: Shape, E: Real, D: KitDevice<E>>(dev: &D, shape: S, v: f64, trainable: bool) -> Param<S, E, D> {
    param(dev, shape, vec![v; shape.num_elements()], trainable)
}
