//! One training step (cross-entropy, AdamW) on each tiny model changes exactly its stated
//! trainable set: every trainable tensor moves, every frozen one stays bit for bit.

use dfdx::prelude::*;
use video_adapters::clip::vit::Video;
use video_adapters::init::Init;
use video_adapters::ops::cross_entropy;
use video_adapters::optim::{AdamW, AdamWCfg};
use video_adapters::param::{param_list, Params};
use video_adapters::registry::ModelCfg;
use video_adapters::testing::{param_values, randomize};
use video_adapters::Ctx;

type Tp = OwnedTape<f32, Cpu>;

fn video(dev: &Cpu, frames: usize) -> Video<f32, Cpu> {
    let v: Vec<f32> = Init::seeded(3).normal(2 * 3 * frames * 32 * 32, 1.0).into_iter().map(|x| x as f32).collect();
    dev.tensor_from_vec(v, (2, Const::<3>, frames, 32, 32))
}

fn step<M: Params<f32, Cpu>>(
    name: &str,
    mut m: M,
    forward: impl Fn(&M, &mut Ctx) -> Tensor<(usize, usize), f32, Cpu, Tp>,
) {
    randomize(&mut m, 11);
    let before: Vec<(String, bool, Vec<f64>)> =
        param_list(&m).into_iter().map(|p| (p.key.clone(), p.trainable, param_values(&m, &p.key))).collect();
    let mut ctx = Ctx::train(1);
    let mut grads = cross_entropy(forward(&m, &mut ctx), &[0, 3], 0.1).backward();
    AdamW::new(AdamWCfg { lr: 1e-3, ..Default::default() }).update(&mut m, &mut grads);
    for (key, trainable, old) in before {
        let new = param_values(&m, &key);
        if trainable {
            assert!(new != old, "{name}: trainable `{key}` did not change");
        } else {
            assert!(new == old, "{name}: frozen `{key}` changed");
        }
    }
}

/// All tiny presets, plus every benchmark protocol on the tiny backbone.
#[test]
fn a_training_step_updates_exactly_the_trainable_set() {
    use video_adapters::baselines::{BenchmarkCfg, Tuning};
    let dev = Cpu::default();
    let mut cfgs: Vec<(String, ModelCfg)> =
        video_adapters::registry::presets().into_iter().filter(|(n, _)| n.starts_with("tiny_")).collect();
    for (arch, tuning) in BenchmarkCfg::table1_rows() {
        let tuning = match tuning {
            Tuning::Prompt { .. } => Tuning::Prompt { tokens: 2 },
            Tuning::Adapter { .. } => Tuning::Adapter { width: 8 },
            t => t,
        };
        let cfg = BenchmarkCfg { clip: video_adapters::clip::ClipCfg::tiny(), arch, tuning, num_classes: 5, frames: 4 };
        cfgs.push((cfg.name(), ModelCfg::Benchmark(cfg)));
    }
    for (name, cfg) in cfgs {
        let v = video(&dev, 4);
        match cfg {
            ModelCfg::ClipBaseline(c) => step(
                &name,
                video_adapters::clip::vit::FrameBaseline::<64, f32, Cpu>::build(
                    &c.clip,
                    c.num_classes,
                    &dev,
                    &mut Init::seeded(0),
                )
                .unwrap(),
                |m, ctx| m.forward::<Tp>(&v, ctx),
            ),
            ModelCfg::StAdapter(c) => {
                step(&name, c.build::<64, f32, Cpu>(&dev, &mut Init::seeded(0)).unwrap(), |m, ctx| {
                    m.forward::<Tp>(&v, ctx)
                })
            }
            ModelCfg::Aim(c) => step(&name, c.build::<64, f32, Cpu>(&dev, &mut Init::seeded(0)).unwrap(), |m, ctx| {
                m.forward::<Tp>(&v, ctx)
            }),
            ModelCfg::MstAdapter(c) => {
                step(&name, c.build::<64, f32, Cpu>(&dev, &mut Init::seeded(0)).unwrap(), |m, ctx| {
                    m.forward::<Tp>(&v, ctx)
                })
            }
            ModelCfg::Benchmark(c) => {
                step(&name, c.build::<64, f32, Cpu>(&dev, &mut Init::seeded(0)).unwrap(), |m, ctx| {
                    m.forward::<Tp>(&v, ctx)
                })
            }
        }
    }
}
