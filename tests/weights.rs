//! Weight loading by official key: strict by default, every problem named by key and shape, any
//! of f16 / bf16 / f32 accepted. The files are variations of the tiny parity fixture's weights.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use video_adapters::clip::weights::{is_clip_key, load_params, read_all, KeyMap};
use video_adapters::clip::{vit::FrameBaseline, ClipCfg};
use video_adapters::init::Init;
use video_adapters::param::param_list;

type Model = FrameBaseline<64, f32, Cpu>;

fn fixture() -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    read_all(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/clip_baseline/weights.safetensors"))
        .unwrap()
}

fn model() -> Model {
    FrameBaseline::build(&ClipCfg::tiny(), 5, &Cpu::default(), &mut Init::seeded(0)).unwrap()
}

/// Writes tensors with the given safetensors dtype (F16, BF16 or F32).
fn write(
    dir: &Path,
    name: &str,
    tensors: &BTreeMap<String, (Vec<usize>, Vec<f64>)>,
    dtype: safetensors::Dtype,
) -> PathBuf {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, (s, v))| {
            let b: Vec<u8> = match dtype {
                safetensors::Dtype::F16 => v.iter().flat_map(|x| half::f16::from_f64(*x).to_le_bytes()).collect(),
                safetensors::Dtype::BF16 => v.iter().flat_map(|x| half::bf16::from_f64(*x).to_le_bytes()).collect(),
                _ => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
            };
            (k.clone(), s.clone(), b)
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, s, b)| (k.clone(), safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
    path
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("video-adapters-weights-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn load_err(path: &Path) -> String {
    match load_params(&mut model(), path, &KeyMap::identity(), |_| false) {
        Ok(_) => panic!("loading {} should fail", path.display()),
        Err(e) => e.to_string(),
    }
}

/// A missing tensor is named, with the shape the model expects.
#[test]
fn missing_key_is_named_with_its_shape() {
    let mut t = fixture();
    t.remove("transformer.resblocks.1.mlp.c_fc.bias");
    let msg = load_err(&write(&tmp("missing"), "w.safetensors", &t, safetensors::Dtype::F32));
    assert!(msg.contains("missing key `transformer.resblocks.1.mlp.c_fc.bias` (expected shape [256])"), "{msg}");
}

/// A tensor the model does not have is named, with its shape.
#[test]
fn unexpected_key_is_named_with_its_shape() {
    let mut t = fixture();
    t.insert("transformer.resblocks.0.adapter_pre_mlp.fc1.weight".into(), (vec![16, 64], vec![0.0; 16 * 64]));
    let msg = load_err(&write(&tmp("unexpected"), "w.safetensors", &t, safetensors::Dtype::F32));
    assert!(
        msg.contains("unexpected key `transformer.resblocks.0.adapter_pre_mlp.fc1.weight` (shape [16, 64])"),
        "{msg}"
    );
}

/// A wrong shape is named with both shapes; conv1 is compared in its stored (C, 3, p, p) form.
#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let mut t = fixture();
    t.insert("conv1.weight".into(), (vec![64, 3 * 8 * 8], vec![0.0; 64 * 192]));
    let msg = load_err(&write(&tmp("shape"), "w.safetensors", &t, safetensors::Dtype::F32));
    assert!(
        msg.contains("shape mismatch for `conv1.weight`: model expects [64, 3, 8, 8], file has [64, 192]"),
        "{msg}"
    );
}

/// Several problems at once: all reported in one error.
#[test]
fn all_problems_are_reported_together() {
    let mut t = fixture();
    t.remove("ln_post.weight");
    t.insert("proj".into(), (vec![64, 32], vec![0.0; 64 * 32]));
    let msg = load_err(&write(&tmp("several"), "w.safetensors", &t, safetensors::Dtype::F32));
    assert!(msg.contains("missing key `ln_post.weight`") && msg.contains("unexpected key `proj`"), "{msg}");
}

/// f16 and bf16 files load, converted to f32 (OpenAI's CLIP checkpoints are f16); the values are
/// the f16 roundings of the f32 originals, and the report says which dtype it read.
#[test]
fn f16_and_bf16_weights_load_as_f32() {
    let t = fixture();
    for (dtype, tol) in [(safetensors::Dtype::F16, 1e-3), (safetensors::Dtype::BF16, 1e-2)] {
        let path = write(&tmp("half"), &format!("{dtype:?}.safetensors"), &t, dtype);
        let mut m = model();
        let report = load_params(&mut m, &path, &KeyMap::identity(), |_| false).unwrap();
        assert_eq!(report.dtypes.iter().cloned().collect::<Vec<_>>(), vec![format!("{dtype:?}")]);
        assert_eq!(report.loaded.len(), t.len());
        let got = m.backbone.transformer.resblocks[0].attn.in_proj_weight.to_vec();
        let want = &t["transformer.resblocks.0.attn.in_proj_weight"].1;
        let worst = got.iter().zip(want).map(|(a, b)| ((*a as f64) - b).abs() / b.abs().max(1e-2)).fold(0.0, f64::max);
        assert!(worst < tol, "{dtype:?}: relative error {worst}");
    }
}

/// A CLIP checkpoint converted whole (`visual.` prefix, a `proj`, and the text tower): the encoder
/// loads, `proj` is ignored on request, text keys are outside the prefix, `fc` keeps its init.
#[test]
fn a_whole_clip_checkpoint_loads_under_the_visual_prefix() {
    let mut t: BTreeMap<String, (Vec<usize>, Vec<f64>)> =
        fixture().into_iter().filter(|(k, _)| !k.starts_with("fc.")).map(|(k, v)| (format!("visual.{k}"), v)).collect();
    t.insert("visual.proj".into(), (vec![64, 32], vec![0.5; 64 * 32]));
    t.insert("token_embedding.weight".into(), (vec![10, 32], vec![0.0; 320]));
    let path = write(&tmp("visual"), "clip.safetensors", &t, safetensors::Dtype::F16);
    let mut m = model();
    let fc_before = m.fc.weight.to_vec();
    let map = KeyMap { model_prefix: String::new(), file_prefix: "visual.".into(), ignore: vec!["proj".into()] };
    let report = load_params(&mut m, &path, &map, |k| !is_clip_key(k)).unwrap();
    assert_eq!(report.kept, vec!["fc.weight".to_string(), "fc.bias".to_string()]);
    assert_eq!(report.ignored, vec!["visual.proj".to_string()]);
    assert_eq!(report.loaded.len(), param_list(&m).len() - 2);
    assert_eq!(m.fc.weight.to_vec(), fc_before);
    // without the ignore list, `proj` is unexpected
    let strict = KeyMap { ignore: vec![], ..map };
    let msg = load_params(&mut model(), &path, &strict, |k| !is_clip_key(k)).unwrap_err().to_string();
    assert!(msg.contains("unexpected key `visual.proj` (shape [64, 32])"), "{msg}");
}

/// A file that is not safetensors, and a file that does not exist, give errors naming the file.
#[test]
fn unreadable_files_are_named() {
    let d = tmp("bad");
    let bad = d.join("not.safetensors");
    std::fs::write(&bad, b"hello").unwrap();
    let msg = load_err(&bad);
    assert!(msg.contains(&bad.display().to_string()) && msg.contains("not a readable safetensors file"), "{msg}");
    assert!(msg.contains("5 bytes long"), "{msg}");
    let msg = load_err(&d.join("absent.safetensors"));
    assert!(msg.contains("absent.safetensors") && msg.contains("cannot read the file"), "{msg}");
}
