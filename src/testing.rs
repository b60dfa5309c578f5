//! Small helpers shared by the unit tests and the integration tests in `tests/`.

use dfdx::prelude::*;
use std::sync::Mutex;

static HOOK: Mutex<()> = Mutex::new(());

/// Whether `grads` holds an entry for `t`. For tests only: nothing in the library calls it.
///
/// dfdx 0.13 has no public "contains" on `Gradients` (`get_ref_checked` is crate-private) and
/// `Gradients::get` panics on a missing entry, so this asks `get` under `catch_unwind`, with the
/// panic message silenced while it does.
pub fn has_grad<S: Shape, E: Dtype, D: Storage<E>>(grads: &Gradients<E, D>, t: &Tensor<S, E, D>) -> bool {
    let _guard = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| grads.get(t))).is_ok();
    std::panic::set_hook(hook);
    found
}

/// Hex sha256 of `bytes` (fixture checksums).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

use crate::device::{KitDevice, Real};
use crate::param::{visit, visit_mut, Param, Params, Visitor, VisitorMut};

/// The values of the parameter with key `key` (panics naming the key when absent).
pub fn param_values<E: Real, D: KitDevice<E>, M: Params<E, D>>(m: &M, key: &str) -> Vec<f64> {
    struct Get<'a>(&'a str, Option<Vec<f64>>);
    impl<'a, E: Real, D: KitDevice<E>> Visitor<E, D> for Get<'a> {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            if key == self.0 {
                self.1 = Some(p.to_vec().into_iter().map(|v| v.f64()).collect());
            }
        }
    }
    let mut g = Get(key, None);
    visit(m, &mut g);
    g.1.unwrap_or_else(|| panic!("no parameter `{key}`"))
}

/// Overwrites the parameter with key `key`.
pub fn set_param_values<E: Real, D: KitDevice<E>, M: Params<E, D>>(m: &mut M, key: &str, values: &[f64]) {
    struct Set<'a>(&'a str, &'a [f64], bool);
    impl<'a, E: Real, D: KitDevice<E>> VisitorMut<E, D> for Set<'a> {
        fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>) {
            if key == self.0 {
                p.set(&self.1.iter().map(|v| E::of(*v)).collect::<Vec<_>>());
                self.2 = true;
            }
        }
    }
    let mut s = Set(key, values, false);
    visit_mut(m, &mut s);
    assert!(s.2, "no parameter `{key}`");
}

/// The gradient of every parameter of `m` that has one in `grads`, by key.
pub fn grads_by_key<E: Real, D: KitDevice<E>, M: Params<E, D>>(
    m: &M,
    grads: &Gradients<E, D>,
) -> std::collections::BTreeMap<String, Vec<f64>> {
    struct G<'a, E: Real, D: KitDevice<E>>(&'a Gradients<E, D>, std::collections::BTreeMap<String, Vec<f64>>);
    impl<'a, E: Real, D: KitDevice<E>> Visitor<E, D> for G<'a, E, D> {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            if has_grad(self.0, &p.value) {
                self.1.insert(key.to_string(), self.0.get(&p.value).as_vec().into_iter().map(|v| v.f64()).collect());
            }
        }
    }
    let mut g = G(grads, Default::default());
    visit(m, &mut g);
    g.1
}

/// Overwrites every parameter with deterministic random values (LayerNorm weights near 1, the
/// rest N(0, 0.2²)), so no adapter starts as an identity and no gradient is zero by construction.
pub fn randomize<E: Real, D: KitDevice<E>, M: Params<E, D>>(m: &mut M, seed: u64) {
    struct R(crate::init::Init);
    impl<E: Real, D: KitDevice<E>> VisitorMut<E, D> for R {
        fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>) {
            let n = p.numel();
            let ln_weight = key.ends_with("weight") && (key.contains("ln_") || key.contains("norm"));
            let v: Vec<E> = self
                .0
                .normal(n, if ln_weight { 0.05 } else { 0.2 })
                .into_iter()
                .map(|x| E::of(if ln_weight { 1.0 + x } else { x }))
                .collect();
            p.set(&v);
        }
    }
    visit_mut(m, &mut R(crate::init::Init::seeded(seed)));
}

/// ST-Adapter's K400 recipe at the size of the `tiny` presets: 4 frames (dense, rate 2), 32 px,
/// batch 4, no augmentation; `steps` steps, `warmup_steps` of them warm-up. The training and resume
/// tests on the CPU (`tests/train.rs`) and on CUDA (`tests/gpu.rs`) run it.
pub fn tiny_recipe(steps: usize, warmup_steps: usize) -> crate::recipe::Recipe {
    use crate::video::{Pipeline, Sampling, Spatial, TrainPipeline};
    let sampling = Sampling::StDense { frames: 4, rate: 2, views: 1 };
    crate::recipe::Recipe {
        name: "tiny".into(),
        batch_size: 4,
        steps,
        warmup_steps,
        train: TrainPipeline::St { sampling, size: 32, jitter: None, mirror: false, rand_augment: false },
        test: Pipeline { name: "tiny".into(), sampling, spatial: Spatial::St { size: 32, three_crop: false } },
        ..crate::recipe::Recipe::st_k400_vit_b()
    }
}
