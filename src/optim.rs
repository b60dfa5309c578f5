//! AdamW with decoupled weight decay, as `torch.optim.AdamW` computes it, over the trainable
//! parameters of a module (found by key), with per-key learning-rate and weight-decay multipliers
//! (the param groups the papers' recipes use: no decay on embeddings and norms, 1/100 lr on CLIP
//! layers for full fine-tuning).

use std::collections::BTreeMap;

use dfdx::prelude::*;

use crate::device::{KitDevice, Real};
use crate::param::{visit, visit_mut, Param, Params, Visitor, VisitorMut};

/// Hyper-parameters.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWCfg {
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
}

impl crate::input::Validate for AdamWCfg {
    /// torch's own checks: lr ≥ 0, eps ≥ 0, betas in [0, 1), weight decay ≥ 0; and finite.
    fn validate(&self) -> Result<(), crate::input::ConfigError> {
        use crate::input::ensure_in;
        ensure_in(self.lr, "lr", 0.0, 1e3, true)?;
        ensure_in(self.betas.0, "betas.0", 0.0, 1.0, false)?;
        ensure_in(self.betas.1, "betas.1", 0.0, 1.0, false)?;
        ensure_in(self.eps, "eps", 0.0, 1.0, true)?;
        ensure_in(self.weight_decay, "weight_decay", 0.0, 1e3, true)
    }
}

impl Default for AdamWCfg {
    /// torch's defaults except weight decay 0.05 (AIM, MST-Adapter).
    fn default() -> Self {
        Self { lr: 1e-3, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.05 }
    }
}

/// Per-parameter multipliers: (lr multiplier, weight-decay multiplier) for a key.
pub type Groups = Box<dyn Fn(&str) -> (f64, f64)>;

/// AdamW state: step count and first/second moments by key (so a checkpoint can store it by
/// name), in the model's element type.
pub struct AdamW<E = f32> {
    pub cfg: AdamWCfg,
    pub step: u64,
    pub moments: BTreeMap<String, (Vec<E>, Vec<E>)>,
    groups: Groups,
}

impl<E: Real> AdamW<E> {
    pub fn new(cfg: AdamWCfg) -> Self {
        Self { cfg, step: 0, moments: BTreeMap::new(), groups: Box::new(|_| (1.0, 1.0)) }
    }

    /// Sets the per-key (lr, weight-decay) multipliers.
    pub fn with_groups(mut self, groups: Groups) -> Self {
        self.groups = groups;
        self
    }

    /// One update of every trainable parameter of `model` from the gradients of one backward pass.
    pub fn update<D: KitDevice<E>, M: Params<E, D>>(&mut self, model: &mut M, grads: &mut Gradients<E, D>) {
        let mut sums = GradSums::new();
        accumulate(model, grads, E::one(), &mut sums);
        self.step(model, &sums);
    }

    /// One update of every trainable parameter of `model` from gradient sums by key.
    ///
    /// A trainable parameter without a gradient (off the traced path) is updated with a zero
    /// gradient (torch would skip it); `tests/frozen.rs` checks that every trainable parameter of
    /// every model is on the traced path.
    pub fn step<D: KitDevice<E>, M: Params<E, D>>(&mut self, model: &mut M, sums: &GradSums<E>) {
        self.step += 1;
        struct Step<'a, E: Real> {
            opt: &'a mut AdamW<E>,
            sums: &'a GradSums<E>,
        }
        impl<'a, E: Real, D: KitDevice<E>> VisitorMut<E, D> for Step<'a, E> {
            fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>) {
                if !p.trainable {
                    return;
                }
                let (lr_mult, wd_mult) = (self.opt.groups)(key);
                let c = &self.opt.cfg;
                let (lr, wd) = (c.lr * lr_mult, c.weight_decay * wd_mult);
                let t = self.opt.step as i32;
                let (b1, b2) = c.betas;
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                let (b1, b2, eps) = (E::of(b1), E::of(b2), E::of(c.eps));
                let (step, decay) = (E::of(lr / bc1), E::one() - E::of(lr * wd));
                let inv_bc2 = E::of(1.0 / bc2);
                let n = p.numel();
                let zeros;
                let g = match self.sums.get(key) {
                    Some(g) => g,
                    None => {
                        zeros = vec![E::zero(); n];
                        &zeros
                    }
                };
                let (m, v) =
                    self.opt.moments.entry(key.to_string()).or_insert_with(|| (vec![E::zero(); n], vec![E::zero(); n]));
                let mut w = p.to_vec();
                for i in 0..n {
                    w[i] *= decay;
                    m[i] = b1 * m[i] + (E::one() - b1) * g[i];
                    v[i] = b2 * v[i] + (E::one() - b2) * g[i] * g[i];
                    w[i] -= step * m[i] / ((v[i] * inv_bc2).sqrt() + eps);
                }
                p.set(&w);
            }
        }
        visit_mut(model, &mut Step { opt: self, sums });
    }
}

/// Gradients of the trainable parameters by key, summed over the micro-batches of a step.
pub type GradSums<E> = BTreeMap<String, Vec<E>>;

/// Adds `scale` × the gradient of every trainable parameter of `model` to `sums`. A parameter off
/// the traced path contributes zeros.
pub fn accumulate<E: Real, D: KitDevice<E>, M: Params<E, D>>(
    model: &M,
    grads: &mut Gradients<E, D>,
    scale: E,
    sums: &mut GradSums<E>,
) {
    struct Acc<'a, E: Real, D: KitDevice<E>> {
        grads: &'a mut Gradients<E, D>,
        scale: E,
        sums: &'a mut GradSums<E>,
    }
    impl<'a, E: Real, D: KitDevice<E>> Visitor<E, D> for Acc<'a, E, D> {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            if !p.trainable {
                return;
            }
            let n = p.numel();
            let sum = self.sums.entry(key.to_string()).or_insert_with(|| vec![E::zero(); n]);
            let scale = self.scale;
            let dev = p.value.device().clone();
            let buf = self.grads.get_or_alloc_mut(&p.value).unwrap_or_else(|e| panic!("gradient of `{key}`: {e:?}"));
            dev.update(buf, |g| sum.iter_mut().zip(g.iter()).for_each(|(s, g)| *s += scale * *g))
                .unwrap_or_else(|e| panic!("gradient of `{key}`: {e:?}"));
        }
    }
    visit(model, &mut Acc { grads, scale, sums });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::param;

    struct One<E: Dtype, D: Storage<E>> {
        w: Param<(usize,), E, D>,
    }
    crate::impl_params!([E: Real, D: KitDevice<E>] One<E, D> { param "w" => w });

    /// Two steps on w = [1, -2] with constant gradient g = [0.5, 0.5], lr 0.1, wd 0.1, against the
    /// torch.optim.AdamW update written out by hand:
    /// step 1: w ← w(1 − 0.01); m̂ = g, v̂ = g², so w ← w − 0.1·g/(|g| + 1e-8) ≈ w − 0.1 (eps: 2e-9).
    #[test]
    fn adamw_first_step_matches_the_closed_form() {
        let dev = Cpu::default();
        let mut m = One { w: param(&dev, (2usize,), vec![1.0, -2.0], true) };
        let x = m.w.value.leaky_trace();
        let loss = (x * dev.tensor_from_vec(vec![0.5, 0.5], (2usize,))).sum::<Rank0, _>();
        let mut g = loss.backward();
        let mut opt = AdamW::<f64>::new(AdamWCfg { lr: 0.1, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.1 });
        opt.update(&mut m, &mut g);
        let w = m.w.to_vec();
        assert!((w[0] - (1.0 * 0.99 - 0.1)).abs() < 1e-7 && (w[1] - (-2.0 * 0.99 - 0.1)).abs() < 1e-7, "{w:?}");
    }
}
