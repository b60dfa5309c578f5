//! The per-call state of a forward pass: train or eval, the random numbers of dropout and drop
//! path, and (optionally) named intermediates recorded for parity checks and debugging.

use std::collections::BTreeMap;

use dfdx::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::device::{host, KitDevice, Real};

/// A recorded intermediate: its shape and values (as f64).
#[derive(Clone, Debug)]
pub struct Tap {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// Forward-pass state. `Ctx::eval()` for inference (dropout and drop path off).
pub struct Ctx {
    pub train: bool,
    rng: StdRng,
    taps: Option<BTreeMap<String, Tap>>,
}

impl Ctx {
    /// Inference: dropout and drop path are identities.
    pub fn eval() -> Self {
        Self { train: false, rng: StdRng::seed_from_u64(0), taps: None }
    }

    /// Training: dropout and drop path sample masks from a generator seeded with `seed`.
    pub fn train(seed: u64) -> Self {
        Self { train: true, rng: StdRng::seed_from_u64(seed), taps: None }
    }

    /// Also record the intermediates models report through [`Ctx::tap`].
    pub fn recording(mut self) -> Self {
        self.taps = Some(BTreeMap::new());
        self
    }

    /// Records `t` under `name` when recording (a copy; otherwise free).
    pub fn tap<S: Shape, E: Real, D: KitDevice<E>, T>(&mut self, name: &str, t: &Tensor<S, E, D, T>) {
        if let Some(taps) = &mut self.taps {
            let values = host(t).into_iter().map(|v| v.f64()).collect();
            taps.insert(name.to_string(), Tap { shape: t.shape().concrete().into(), values });
        }
    }

    /// The recorded intermediates (empty unless [`Ctx::recording`]).
    pub fn taps(&self) -> BTreeMap<String, Tap> {
        self.taps.clone().unwrap_or_default()
    }

    /// Keep factors for `n` units dropped with probability `p`: 0 for dropped, 1/(1 − p) for kept.
    /// `None` when nothing is dropped (eval mode or p = 0): callers then skip the op.
    pub fn drop_factors<E: Real>(&mut self, n: usize, p: f64) -> Option<Vec<E>> {
        if !self.train || p <= 0.0 {
            return None;
        }
        let keep = E::of(1.0 / (1.0 - p));
        Some((0..n).map(|_| if self.rng.gen::<f64>() < p { E::zero() } else { keep }).collect())
    }
}
