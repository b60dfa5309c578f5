//! AdamW with decoupled weight decay, as `torch.optim.AdamW` computes it, over the trainable
//! parameters of a module (found by key), with per-key learning-rate and weight-decay multipliers
//! (the param groups the papers' recipes use: no decay on embeddings and norms, 1/100 lr on CLIP
//! layers for full fine-tuning).
//!
//! On the CPU the gradient sums and the moments are host vectors and the loop in [`AdamW::step`] is
//! the reference. On a device with its own optimizer kernels (CUDA, f32: `KitDevice::k_accumulate`,
//! `KitDevice::k_adamw_step`) the sums and the moments stay in device buffers from step to step and
//! the parameters are updated in place there; the moments come to the host only when asked
//! ([`AdamW::sync_moments`]: a checkpoint) and go back to the device from [`AdamW::moments`] at the
//! first step after a resume.

use std::any::Any;
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
    /// The moments on the host. Once a device holds them ([`AdamW::on_device`]) this map is empty,
    /// or the copy [`AdamW::sync_moments`] made last; the device's are the current ones.
    pub moments: BTreeMap<String, (Vec<E>, Vec<E>)>,
    groups: Groups,
    /// The moments in device buffers (CUDA), created at the first device step from `moments`.
    pub(crate) device: Option<Box<dyn DeviceMoments<E>>>,
}

/// Moments held by a device, by key.
pub trait DeviceMoments<E>: Send {
    /// Host copies: (exp_avg, exp_avg_sq) by key.
    fn download(&self) -> BTreeMap<String, (Vec<E>, Vec<E>)>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// Per-parameter constants of one step, in the element type, as [`AdamW::step`] uses them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coeffs<E> {
    pub b1: E,
    pub b2: E,
    pub eps: E,
    /// lr / (1 − β₁ᵗ)
    pub step: E,
    /// 1 − lr·wd (the decoupled decay factor)
    pub decay: E,
    /// lr·wd
    pub lr_wd: f64,
    /// 1 / (1 − β₂ᵗ)
    pub inv_bc2: E,
}

impl<E: Real> AdamW<E> {
    pub fn new(cfg: AdamWCfg) -> Self {
        Self { cfg, step: 0, moments: BTreeMap::new(), groups: Box::new(|_| (1.0, 1.0)), device: None }
    }

    /// Whether a device holds the moments (then [`AdamW::moments`] is empty until
    /// [`AdamW::sync_moments`]).
    pub fn on_device(&self) -> bool {
        self.device.is_some()
    }

    /// Copies the moments a device holds into [`AdamW::moments`] (for a checkpoint); the device
    /// keeps its copy and goes on from it. Nothing to do on the CPU.
    pub fn sync_moments(&mut self) {
        if let Some(d) = &self.device {
            self.moments = d.download();
        }
    }

    /// The constants of the current step (`self.step` already counted) for the parameter `key`.
    pub fn coeffs(&self, key: &str) -> Coeffs<E> {
        let (lr_mult, wd_mult) = (self.groups)(key);
        let c = &self.cfg;
        let (lr, wd) = (c.lr * lr_mult, c.weight_decay * wd_mult);
        let t = self.step as i32;
        let (b1, b2) = c.betas;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        Coeffs {
            b1: E::of(b1),
            b2: E::of(b2),
            eps: E::of(c.eps),
            step: E::of(lr / bc1),
            decay: E::one() - E::of(lr * wd),
            lr_wd: lr * wd,
            inv_bc2: E::of(1.0 / bc2),
        }
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
        self.step(model, &mut sums);
    }

    /// One update of every trainable parameter of `model` from gradient sums by key.
    ///
    /// A trainable parameter without a gradient (off the traced path) is updated with a zero
    /// gradient (torch would skip it); `tests/frozen.rs` checks that every trainable parameter of
    /// every model is on the traced path.
    ///
    /// On a device with optimizer kernels the update runs there, and the sums' buffers serve as
    /// its scratch: `sums` is empty afterwards.
    pub fn step<D: KitDevice<E>, M: Params<E, D>>(&mut self, model: &mut M, sums: &mut GradSums<E>) {
        self.step += 1;
        if D::k_adamw_step(self, model, sums) {
            return;
        }
        struct Step<'a, E: Real> {
            opt: &'a mut AdamW<E>,
            sums: &'a GradSums<E>,
        }
        impl<'a, E: Real, D: KitDevice<E>> VisitorMut<E, D> for Step<'a, E> {
            fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>) {
                if !p.trainable {
                    return;
                }
                let Coeffs { b1, b2, eps, step, decay, inv_bc2, .. } = self.opt.coeffs(key);
                let n = p.numel();
                let zeros;
                let g = match self.sums.host.get(key) {
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

/// Gradients of the trainable parameters by key, summed over the micro-batches of a step: host
/// vectors (CPU), or buffers of the device (CUDA), which stay there.
pub struct GradSums<E> {
    pub(crate) host: BTreeMap<String, Vec<E>>,
    pub(crate) device: Option<Box<dyn DeviceSums<E>>>,
}

/// Gradient sums held by a device, by key.
pub trait DeviceSums<E>: Send {
    /// Host copies by key.
    fn download(&self) -> BTreeMap<String, Vec<E>>;
    /// The first key (in key order) whose sum has a NaN or an infinity.
    fn first_nonfinite(&self) -> Option<String>;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<E: Real> Default for GradSums<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Real> GradSums<E> {
    pub fn new() -> Self {
        Self { host: BTreeMap::new(), device: None }
    }

    /// The sums by key, on the host (a copy from the device where they are held there).
    pub fn to_host(&self) -> BTreeMap<String, Vec<E>> {
        match &self.device {
            Some(d) => d.download(),
            None => self.host.clone(),
        }
    }

    /// The first key (in key order) whose sum is not finite everywhere. On a device the check
    /// runs there and only one flag per key comes to the host.
    pub fn first_nonfinite(&self) -> Option<String> {
        match &self.device {
            Some(d) => d.first_nonfinite(),
            None => self.host.iter().find(|(_, g)| g.iter().any(|v| !v.is_finite())).map(|(k, _)| k.clone()),
        }
    }
}

/// Adds `scale` × the gradient of every trainable parameter of `model` to `sums`. A parameter off
/// the traced path contributes zeros.
pub fn accumulate<E: Real, D: KitDevice<E>, M: Params<E, D>>(
    model: &M,
    grads: &mut Gradients<E, D>,
    scale: E,
    sums: &mut GradSums<E>,
) {
    if D::k_accumulate(model, grads, scale, sums) {
        return;
    }
    struct Acc<'a, E: Real, D: KitDevice<E>> {
        grads: &'a mut Gradients<E, D>,
        scale: E,
        sums: &'a mut BTreeMap<String, Vec<E>>,
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
    visit(model, &mut Acc { grads, scale, sums: &mut sums.host });
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

    /// The per-parameter constants the host loop and the CUDA kernel share (`coeffs`): the group's
    /// multipliers scale lr and weight decay (a no-decay group: decay factor exactly 1, and the
    /// device's update gets no decay term), bias corrections at the current step t:
    /// step = lr/(1 − β₁ᵗ), inv_bc2 = 1/(1 − β₂ᵗ) (torch's `step_size` and `bias_correction2`).
    #[test]
    fn coefficients_follow_the_groups_and_the_step() {
        let cfg = AdamWCfg { lr: 0.1, betas: (0.9, 0.99), eps: 1e-8, weight_decay: 0.5 };
        let mut opt =
            AdamW::<f64>::new(cfg).with_groups(Box::new(|k| if k == "norm" { (2.0, 0.0) } else { (1.0, 1.0) }));
        opt.step = 2;
        let c = opt.coeffs("w");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(c.step, 0.1 / (1.0 - 0.81)) && close(c.inv_bc2, 1.0 / (1.0 - 0.9801)), "{c:?}");
        assert!(close(c.decay, 0.95) && close(c.lr_wd, 0.05), "{c:?}");
        let n = opt.coeffs("norm");
        assert!(n.decay == 1.0 && n.lr_wd == 0.0 && close(n.step, 0.2 / (1.0 - 0.81)), "{n:?}");
        assert_eq!((n.b1, n.b2, n.eps), (0.9, 0.99, 1e-8));
    }

    /// The host's check names the first key (in key order) whose gradient sum has a NaN or an
    /// infinity (the trainer stops before the update on it), and passes finite sums; `to_host` is
    /// the sums themselves; `sync_moments` leaves host moments as they are.
    #[test]
    fn host_sums_name_the_first_non_finite_key() {
        let mut s = GradSums::<f32>::new();
        s.host.insert("b".into(), vec![0.0, 1.0]);
        s.host.insert("c".into(), vec![2.0]);
        assert_eq!(s.first_nonfinite(), None);
        s.host.insert("d".into(), vec![0.0, f32::NAN]);
        s.host.insert("c".into(), vec![f32::NEG_INFINITY]);
        assert_eq!(s.first_nonfinite().as_deref(), Some("c"));
        assert_eq!(s.to_host().len(), 3);
        let mut opt = AdamW::<f32>::new(AdamWCfg::default());
        opt.moments.insert("b".into(), (vec![1.0], vec![2.0]));
        opt.sync_moments();
        assert!(!opt.on_device() && opt.moments["b"] == (vec![1.0], vec![2.0]));
    }
}
