//! The frozen-backbone training path: a backward pass through a frozen CLIP encoder gives the
//! trainable parameters exactly the gradients a fully traced computation gives them, while no
//! backbone parameter gets a gradient buffer and no weight-gradient product runs for a frozen layer.

use std::collections::BTreeSet;
use std::path::PathBuf;

use dfdx::prelude::*;
use video_adapters::clip::vit::Video;
use video_adapters::clip::weights::{load_params, read_all, KeyMap};
use video_adapters::ops::{cross_entropy, stats};
use video_adapters::param::{param_list, set_trainable, Params};
use video_adapters::testing::grads_by_key;
use video_adapters::{init::Init, Ctx};

type Tp = OwnedTape<f64, Cpu>;

fn fixture(id: &str) -> (serde_json::Value, PathBuf, Video<f64, Cpu>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity").join(id);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let (s, v) = read_all(&dir.join("input.safetensors")).unwrap().remove("video").unwrap();
    let video = Cpu::default().tensor_from_vec(v, (s[0], Const::<3>, s[2], s[3], s[4]));
    (meta, dir.join("weights.safetensors"), video)
}

/// Runs the frozen and the all-traced computation of `model` and checks the claims: the numbers
/// of weight-gradient products (frozen, all traced) and of attention ops recorded on the tape
/// with the frozen backbone (the frozen attentions before the first trainable stage run untraced).
fn check<M: Params<f64, Cpu> + Clone>(
    model: M,
    forward: impl Fn(&M) -> Tensor<(usize, usize), f64, Cpu, Tp>,
    trainable_linears: usize,
    all_linears: usize,
    traced_attentions: usize,
) {
    let trainable: BTreeSet<String> = param_list(&model).into_iter().filter(|p| p.trainable).map(|p| p.key).collect();
    assert!(!trainable.is_empty());

    let (before, attentions) = (stats::weight_grad_products(), stats::traced_attentions());
    let logits = forward(&model);
    assert_eq!(stats::traced_attentions() - attentions, traced_attentions, "attentions recorded on the tape");
    let g = cross_entropy(logits, &[1, 3], 0.0).backward();
    assert_eq!(
        stats::weight_grad_products() - before,
        trainable_linears,
        "weight-gradient products with a frozen backbone"
    );
    let frozen_grads = grads_by_key(&model, &g);
    let with_grad: BTreeSet<String> = frozen_grads.keys().cloned().collect();
    assert_eq!(with_grad, trainable, "parameters with a gradient buffer must be exactly the trainable ones");

    let mut all = model.clone();
    set_trainable(&mut all, |_| true);
    let before = stats::weight_grad_products();
    let g_all = cross_entropy(forward(&all), &[1, 3], 0.0).backward();
    assert_eq!(stats::weight_grad_products() - before, all_linears, "weight-gradient products, all traced");
    let all_grads = grads_by_key(&all, &g_all);
    assert_eq!(all_grads.len(), param_list(&all).len());
    for (k, g1) in &frozen_grads {
        let g2 = &all_grads[k];
        let worst = g1.iter().zip(g2).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).fold(0.0, f64::max);
        assert!(worst < 1e-12, "`{k}`: frozen-path gradient differs from the all-traced one by {worst:e}");
    }
}

/// ST-Adapter (tiny, the K400 fixture's weights, f64): 2 adapters × (fc1, fc2) + fc = 5
/// weight-gradient products; all traced: conv1 + 2 blocks × (in_proj, out_proj, c_fc, c_proj) +
/// 4 adapter linears + fc = 14. Block 0's attention comes before its first adapter: untraced; block
/// 1's is traced (1 attention on the tape).
#[test]
fn frozen_st_adapter_backward_allocates_no_backbone_gradient_and_matches_all_traced() {
    let (meta, weights, video) = fixture("st_adapter_k400");
    let cfg = video_adapters::st_adapter::from_official_kwargs(&meta["constructor_kwargs"], 4).unwrap();
    let mut model = cfg.build::<64, f64, Cpu>(&Cpu::default(), &mut Init::zeros()).unwrap();
    load_params(&mut model, &weights, &KeyMap::identity(), |_| false).unwrap();
    check(model, |m| m.forward::<Tp>(&video, &mut Ctx::eval()), 5, 14, 1);
}

/// AIM (tiny, f64): 2 blocks × 3 adapters × (D_fc1, D_fc2) + fc_cls = 13 products; all traced:
/// conv1 + 2 blocks × (in_proj and out_proj twice, for T-MSA and S-MSA, + c_fc + c_proj) + 12
/// adapter linears + fc_cls = 1 + 12 + 12 + 1 = 26. Every block starts with its trainable temporal
/// stage: all 4 attentions (T-MSA and S-MSA of 2 blocks) are traced.
#[test]
fn frozen_aim_backward_allocates_no_backbone_gradient_and_matches_all_traced() {
    let (meta, weights, video) = fixture("aim_k400");
    let cfg = video_adapters::aim::from_official_kwargs(&meta["constructor_kwargs"]).unwrap();
    let mut model = cfg.build::<64, f64, Cpu>(&Cpu::default(), &mut Init::zeros()).unwrap();
    load_params(&mut model, &weights, &KeyMap::identity(), |_| false).unwrap();
    check(model, |m| m.forward::<Tp>(&video, &mut Ctx::eval()), 13, 26, 4);
}

/// The frame-wise baseline trains only `fc`: the whole encoder runs untraced (one product, no
/// attention on the tape).
#[test]
fn linear_probe_runs_the_encoder_untraced() {
    let (_, weights, video) = fixture("clip_baseline");
    let mut model = video_adapters::clip::vit::FrameBaseline::<64, f64, Cpu>::build(
        &video_adapters::clip::ClipCfg::tiny(),
        5,
        &Cpu::default(),
        &mut Init::zeros(),
    )
    .unwrap();
    load_params(&mut model, &weights, &KeyMap::identity(), |_| false).unwrap();
    check(model, |m| m.forward::<Tp>(&video, &mut Ctx::eval()), 1, 10, 0);
}

/// MST-Adapter (tiny preset: 2 blocks × 2 post-residual adapters, random f64 weights, the ST-Adapter
/// fixture's video). Trainable products: 2 blocks × 2 adapters × (down, dense 1×1×1, up) + fc = 13;
/// all traced: conv1 + 2 blocks × (in_proj, out_proj, c_fc, c_proj) + 12 + fc = 22. The first
/// stage of block 0 (the shifted attention residual) is frozen and runs untraced; the stream is
/// promoted at the first adapter, so only block 1's attention is on the tape.
#[test]
fn frozen_mst_adapter_backward_allocates_no_backbone_gradient_and_matches_all_traced() {
    let (_, _, video) = fixture("st_adapter_k400");
    let cfg = video_adapters::registry::presets()
        .into_iter()
        .find_map(|(name, cfg)| match cfg {
            video_adapters::registry::ModelCfg::MstAdapter(c) if name == "tiny_mst_adapter" => Some(c),
            _ => None,
        })
        .unwrap();
    let mut model = cfg.build::<64, f64, Cpu>(&Cpu::default(), &mut Init::zeros()).unwrap();
    video_adapters::testing::randomize(&mut model, 7);
    check(model, |m| m.forward::<Tp>(&video, &mut Ctx::eval()), 13, 22, 1);
}
