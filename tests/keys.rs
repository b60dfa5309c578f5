//! The exact safetensors keys (and stored shapes) each model reads from an official file, as
//! reviewed snapshots: what `scripts/convert_clip.py` must produce for CLIP ViT-B/16, what a
//! released ST-Adapter K400 checkpoint holds (trainable only), what a released AIM K400 checkpoint
//! holds (the whole model), and MST-Adapter's keys (ours: no checkpoint was released).

use dfdx::prelude::*;
use video_adapters::aim::AimCfg;
use video_adapters::clip::weights::is_clip_key;
use video_adapters::init::Init;
use video_adapters::mst_adapter::MstAdapterCfg;
use video_adapters::param::{param_list, ParamInfo};
use video_adapters::st_adapter::StAdapterCfg;

fn listing(params: &[ParamInfo]) -> String {
    let n: usize = params.iter().map(|p| p.numel).sum();
    let mut s = format!("{} tensors, {} values\n", params.len(), n);
    for p in params {
        s += &format!("{} {:?}\n", p.key, p.stored_shape);
    }
    s
}

/// CLIP ViT-B/16's encoder keys (read from a converted `ViT-B-16.pt`, `proj` ignored).
#[test]
fn clip_vit_b16_keys() {
    let m = StAdapterCfg::vit_b16_12x384().build::<768, f32, Cpu>(&Cpu::default(), &mut Init::zeros()).unwrap();
    let keys: Vec<ParamInfo> = param_list(&m).into_iter().filter(|p| is_clip_key(&p.key)).collect();
    insta::assert_snapshot!(listing(&keys));
}

/// A released ST-Adapter checkpoint (`clip_vit_base_patch16_adapter12x384`, K400): the trainable
/// tensors `utils.save_model` stores: 12 × (fc1, conv, fc2) and `fc`.
#[test]
fn st_adapter_k400_release_keys() {
    let m = StAdapterCfg::vit_b16_12x384().build::<768, f32, Cpu>(&Cpu::default(), &mut Init::zeros()).unwrap();
    let keys: Vec<ParamInfo> = param_list(&m).into_iter().filter(|p| p.trainable).collect();
    insta::assert_snapshot!(listing(&keys));
}

/// A released AIM checkpoint (`vitclip_base_k400`): mmcv's `state_dict`, the whole model.
#[test]
fn aim_k400_release_keys() {
    let m = AimCfg::vitclip_base_k400().build::<768, f32, Cpu>(&Cpu::default(), &mut Init::zeros()).unwrap();
    insta::assert_snapshot!(listing(&param_list(&m)));
}

/// MST-Adapter (our key names; its trainable set: the 24 adapters and `fc`).
#[test]
fn mst_adapter_keys() {
    let m = MstAdapterCfg::vit_b16_k400().build::<768, f32, Cpu>(&Cpu::default(), &mut Init::zeros()).unwrap();
    let keys: Vec<ParamInfo> = param_list(&m).into_iter().filter(|p| p.trainable).collect();
    insta::assert_snapshot!(listing(&keys));
}
