//! Finite-difference checks (f64) of the gradients every adapter's trainable parameters receive
//! through a whole tiny model: logits → a fixed random weighting → backward, against central
//! differences of the same scalar, on a few coordinates of every trainable tensor.

use dfdx::prelude::*;
use video_adapters::clip::vit::Video;
use video_adapters::clip::ClipCfg;
use video_adapters::init::Init;
use video_adapters::ops::Kernel3;
use video_adapters::param::{param_list, Params};
use video_adapters::testing::{grads_by_key, param_values, randomize, set_param_values};
use video_adapters::Ctx;

type Tp = OwnedTape<f64, Cpu>;
const STEP: f64 = 1e-5;

fn video(dev: &Cpu) -> Video<f64, Cpu> {
    let v = Init::seeded(99).normal(2 * 3 * 4 * 32 * 32, 1.0);
    dev.tensor_from_vec(v, (2, Const::<3>, 4, 32, 32))
}

/// Checks 5 coordinates of every trainable tensor; returns the worst relative error.
fn check<M: Params<f64, Cpu> + Clone>(
    model: M,
    forward: impl Fn(&M, Ctx) -> (Tensor<(usize, usize), f64, Cpu, Tp>, Option<Tensor<(usize, usize), f64, Cpu>>),
) -> f64 {
    let r: Vec<f64> = Init::seeded(7).normal(64, 1.0);
    let loss = |m: &M| -> f64 {
        let (_, untraced) = forward(m, Ctx::eval());
        untraced.unwrap().as_vec().iter().zip(&r).map(|(a, b)| a * b).sum()
    };
    let (logits, _) = forward(&model, Ctx::eval());
    let n = logits.shape().num_elements();
    let weights = logits.device().tensor_from_vec(r[..n].to_vec(), *logits.shape());
    let g = (logits * weights).sum::<Rank0, _>().backward();
    let analytic = grads_by_key(&model, &g);
    let mut worst: f64 = 0.0;
    let trainable: Vec<_> = param_list(&model).into_iter().filter(|p| p.trainable).collect();
    assert!(!trainable.is_empty());
    for p in trainable {
        let a = analytic.get(&p.key).unwrap_or_else(|| panic!("`{}` got no gradient", p.key));
        let base = param_values(&model, &p.key);
        for j in 0..5.min(base.len()) {
            let i = (j * 7919 + 13) % base.len();
            let mut m = model.clone();
            let mut v = base.clone();
            v[i] = base[i] + STEP;
            set_param_values(&mut m, &p.key, &v);
            let lp = loss(&m);
            v[i] = base[i] - STEP;
            set_param_values(&mut m, &p.key, &v);
            let lm = loss(&m);
            let num = (lp - lm) / (2.0 * STEP);
            // floor 1e-2: through a whole model the central difference carries ~1e-9 of round-off,
            // and some gradients are exactly zero (the key part of in_proj_bias: softmax ignores
            // a constant added to every score of a row)
            let err = (a[i] - num).abs() / a[i].abs().max(num.abs()).max(1e-2);
            assert!(err < 1e-6, "`{}`[{i}]: analytic {} vs numeric {num} (relative error {err:e})", p.key, a[i]);
            worst = worst.max(err);
        }
    }
    worst
}

/// ST-Adapter with adapters at all three positions and a 3×3×3 kernel.
#[test]
fn st_adapter_gradients_match_finite_differences() {
    use video_adapters::clip::Blocks;
    use video_adapters::st_adapter::{Position, StAdapterCfg};
    let dev = Cpu::default();
    let cfg = StAdapterCfg {
        clip: ClipCfg::tiny(),
        num_classes: 5,
        frames: 4,
        adapter_width: 8,
        kernel: Kernel3::new(3, 3, 3),
        positions: vec![Position::PreAttn, Position::PreMlp, Position::PostMlp],
        blocks: Blocks::Last(2),
    };
    let mut m = cfg.build::<64, f64, Cpu>(&dev, &mut Init::seeded(1)).unwrap();
    randomize(&mut m, 2);
    let v = video(&dev);
    let worst =
        check(m, |m, mut ctx| (m.forward::<Tp>(&v, &mut ctx), Some(m.forward::<NoneTape>(&v, &mut Ctx::eval()))));
    println!("ST-Adapter: worst relative error {worst:e}");
}

/// AIM with all four adapters (num_tadapter = 2) and s = 0.7.
#[test]
fn aim_gradients_match_finite_differences() {
    use video_adapters::aim::AimCfg;
    use video_adapters::clip::Blocks;
    let dev = Cpu::default();
    let cfg = AimCfg {
        clip: ClipCfg::tiny(),
        num_classes: 5,
        frames: 4,
        num_tadapter: 2,
        adapter_scale: 0.7,
        blocks: Blocks::Last(2),
        ..AimCfg::vitclip_base_k400()
    };
    let mut m = cfg.build::<64, f64, Cpu>(&dev, &mut Init::seeded(1)).unwrap();
    randomize(&mut m, 3);
    let v = video(&dev);
    let worst =
        check(m, |m, mut ctx| (m.forward::<Tp>(&v, &mut ctx), Some(m.forward::<NoneTape>(&v, &mut Ctx::eval()))));
    println!("AIM: worst relative error {worst:e}");
}

/// MST-Adapter in every placement, with the CLS shift; dense, depthwise and no 1×1×1 conv,
/// learned and averaged fusion.
#[rstest::rstest]
#[case::post_residual(video_adapters::mst_adapter::Placement::PostResidual, video_adapters::mst_adapter::Pointwise::Dense, video_adapters::mst_adapter::Fusion::Learned { init: 0.33 })]
#[case::prior_ln(
    video_adapters::mst_adapter::Placement::PriorLn,
    video_adapters::mst_adapter::Pointwise::Depthwise,
    video_adapters::mst_adapter::Fusion::Average
)]
#[case::prior_branch(video_adapters::mst_adapter::Placement::PriorBranch, video_adapters::mst_adapter::Pointwise::None, video_adapters::mst_adapter::Fusion::Learned { init: 0.33 })]
#[case::post_branch(video_adapters::mst_adapter::Placement::PostBranch, video_adapters::mst_adapter::Pointwise::Dense, video_adapters::mst_adapter::Fusion::Learned { init: 0.33 })]
fn mst_adapter_gradients_match_finite_differences(
    #[case] placement: video_adapters::mst_adapter::Placement,
    #[case] pointwise: video_adapters::mst_adapter::Pointwise,
    #[case] fusion: video_adapters::mst_adapter::Fusion,
) {
    use video_adapters::clip::Blocks;
    use video_adapters::mst_adapter::MstAdapterCfg;
    let dev = Cpu::default();
    let v = video(&dev);
    let cfg = MstAdapterCfg {
        clip: ClipCfg::tiny(),
        num_classes: 5,
        frames: 4,
        adapter_width: 8,
        blocks: Blocks::Last(2),
        placement,
        pointwise,
        fusion,
        ..MstAdapterCfg::vit_b16_k400()
    };
    let mut m = cfg.build::<64, f64, Cpu>(&dev, &mut Init::seeded(1)).unwrap();
    randomize(&mut m, 4);
    let worst =
        check(m, |m, mut ctx| (m.forward::<Tp>(&v, &mut ctx), Some(m.forward::<NoneTape>(&v, &mut Ctx::eval()))));
    println!("MST-Adapter {placement:?} {pointwise:?} {fusion:?}: worst relative error {worst:e}");
}

/// The benchmark baselines' trainable parts (TimeSformer temporal attention and time embedding,
/// X-ViT mixing and aggregation head, VPT prompts, attentional pooling, Houlsby adapter), fully
/// trained so every path is checked.
#[test]
fn baseline_gradients_match_finite_differences() {
    use video_adapters::baselines::{Arch, BenchmarkCfg, Tuning};
    use video_adapters::param::set_trainable;
    let dev = Cpu::default();
    let v = video(&dev);
    for (arch, tuning) in [
        (Arch::SaTa, Tuning::Temporal),
        (Arch::SaTs, Tuning::Full),
        (Arch::Sa, Tuning::Prompt { tokens: 3 }),
        (Arch::Sa, Tuning::AttentionalPooling),
        (Arch::Sa, Tuning::Adapter { width: 8 }),
    ] {
        let cfg = BenchmarkCfg { clip: ClipCfg::tiny(), arch, tuning, num_classes: 5, frames: 4 };
        let mut m = cfg.build::<64, f64, Cpu>(&dev, &mut Init::seeded(1)).unwrap();
        randomize(&mut m, 5);
        if tuning == Tuning::Full {
            // checking every tensor of a fully trained model is slow: the X-ViT parts suffice
            set_trainable(&mut m, |k| {
                k.starts_with("temporal_head.")
                    || k.starts_with("transformer.resblocks.1.attn.")
                    || k.starts_with("fc.")
            });
        }
        let worst =
            check(m, |m, mut ctx| (m.forward::<Tp>(&v, &mut ctx), Some(m.forward::<NoneTape>(&v, &mut Ctx::eval()))));
        println!("{}: worst relative error {worst:e}", cfg.name());
    }
}
