//! Official-code parity: run a fixture folder made by the official PyTorch code (random weights,
//! official key names, one input video, expected logits and intermediates) through our port.
//!
//! A folder holds `meta.json` (the official class and its constructor arguments), `weights.safetensors`,
//! `input.safetensors` (key `video`, (B, 3, T, H, W)) and `expected.safetensors`. The model is built
//! from the constructor arguments alone (every keyword honoured, unknown ones refused), so any
//! folder made the same way with other flags is checked too.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use dfdx::prelude::*;

use crate::clip::weights::{read_all, KeyMap};
use crate::context::Ctx;
use crate::init::Init;
use crate::registry::{BaselineCfg, ModelCfg};

/// The pass criterion on every compared tensor: max |ours − official| ≤ 1e-4 (fp32).
pub const TOLERANCE: f64 = 1e-4;

/// One compared tensor.
#[derive(Clone, Debug)]
pub struct Diff {
    pub name: String,
    pub shape: Vec<usize>,
    pub max_abs: f64,
}

/// The result of one folder.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Compared: every tensor's difference (the caller decides pass/fail with [`TOLERANCE`]).
    Checked { model: String, diffs: Vec<Diff> },
    /// The folder's official class has no port yet: a skipped case, never a pass.
    NotImplemented(String),
}

/// Fixture folders under `root` (those with a `meta.json`), sorted.
pub fn discover(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("reading parity folder {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The model config a fixture's `meta.json` describes.
pub fn model_from_meta(meta: &serde_json::Value, frames: usize) -> anyhow::Result<Result<ModelCfg, String>> {
    let class = meta
        .pointer("/official_source/class")
        .and_then(|v| v.as_str())
        .context("meta.json: official_source.class missing")?;
    let kwargs = meta.get("constructor_kwargs").context("meta.json: constructor_kwargs missing")?;
    Ok(Ok(match class {
        // ST-Adapter's `models_adapter.VisionTransformer`; adapter_layers = 0 is the plain baseline
        "VisionTransformer" => {
            let st = crate::st_adapter::from_official_kwargs(kwargs, frames)?;
            if st.num_adapters() == 0 {
                ModelCfg::ClipBaseline(BaselineCfg { clip: st.clip, num_classes: st.num_classes, frames })
            } else {
                ModelCfg::StAdapter(st)
            }
        }
        // AIM's `ViT_CLIP` backbone with mmaction2's I3DHead
        "ViT_CLIP" => ModelCfg::Aim(crate::aim::from_official_kwargs(kwargs)?),
        other => return Ok(Err(format!("model not implemented: official class `{other}`"))),
    }))
}

/// Runs one fixture folder.
pub fn check(dir: &Path) -> anyhow::Result<Outcome> {
    let meta_path = dir.join("meta.json");
    let meta: serde_json::Value = crate::input::read_json(&meta_path)?;
    let input = read_all(&dir.join("input.safetensors"))?;
    let (vshape, video) =
        input.get("video").with_context(|| format!("{}/input.safetensors has no `video`", dir.display()))?;
    if vshape.len() != 5 || vshape[1] != 3 {
        bail!("{}: `video` has shape {vshape:?}, expected (B, 3, T, H, W)", dir.display());
    }
    let cfg = match model_from_meta(&meta, vshape[2]).with_context(|| meta_path.display().to_string())? {
        Ok(cfg) => cfg,
        Err(why) => return Ok(Outcome::NotImplemented(why)),
    };
    let dev = Cpu::default();
    let mut model = cfg.build(&dev, &mut Init::zeros()).with_context(|| meta_path.display().to_string())?;
    // the fixture holds the whole state dict: strict, nothing may stay at its initial value
    model.load(&dir.join("weights.safetensors"), &KeyMap::identity(), &|_| false).map_err(anyhow::Error::new)?;
    let video: Tensor<(usize, Const<3>, usize, usize, usize), f32, Cpu> = dev.tensor_from_vec(
        video.iter().map(|v| *v as f32).collect(),
        (vshape[0], Const::<3>, vshape[2], vshape[3], vshape[4]),
    );
    let mut ctx = Ctx::eval().recording();
    model.logits(&video, &mut ctx);
    let taps = ctx.taps();

    let expected = read_all(&dir.join("expected.safetensors"))?;
    let mut diffs = Vec::new();
    for (name, (shape, values)) in &expected {
        let layout = meta.pointer(&format!("/expected/tensors/{name}/layout")).and_then(|v| v.as_str()).unwrap_or("");
        let (shape, values) = to_our_layout(name, layout, shape, values)?;
        let ours = taps.get(name).with_context(|| format!("{}: our model records no `{name}`", dir.display()))?;
        if ours.shape != shape {
            bail!("{}: `{name}` has shape {:?} in our model, {shape:?} expected", dir.display(), ours.shape);
        }
        let max_abs = ours.values.iter().zip(&values).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        diffs.push(Diff { name: name.clone(), shape, max_abs });
    }
    let model_name = match &cfg {
        ModelCfg::ClipBaseline(_) => "frame-wise CLIP baseline".to_string(),
        ModelCfg::StAdapter(c) => format!("ST-Adapter ({} adapters, width {})", c.num_adapters(), c.adapter_width),
        ModelCfg::Aim(c) => format!("AIM (num_tadapter {}, s {})", c.num_tadapter, c.adapter_scale),
        ModelCfg::MstAdapter(_) => "MST-Adapter".to_string(),
        ModelCfg::Benchmark(c) => c.name(),
    };
    Ok(Outcome::Checked { model: model_name, diffs })
}

/// Expected tensors in our layouts: the stream is (B·T, L, D) batch-first; AIM's intermediates are
/// sequence-first (L, B·T, D); AIM's `backbone_out` is (B, D, T, 1, 1) and our tap (B·T, D).
fn to_our_layout(name: &str, layout: &str, shape: &[usize], v: &[f64]) -> anyhow::Result<(Vec<usize>, Vec<f64>)> {
    let rank = |r: usize| {
        if shape.len() == r {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "expected tensor `{name}` has shape {shape:?}, but its layout {layout} has {r} dimensions"
            ))
        }
    };
    if layout.starts_with("(L, B*T, D)") {
        rank(3)?;
        let (l, n, d) = (shape[0], shape[1], shape[2]);
        let mut out = vec![0.0; v.len()];
        for i in 0..l {
            for j in 0..n {
                out[(j * l + i) * d..(j * l + i + 1) * d].copy_from_slice(&v[(i * n + j) * d..(i * n + j + 1) * d]);
            }
        }
        return Ok((vec![n, l, d], out));
    }
    if layout.starts_with("(B, D, T, 1, 1)") {
        rank(5)?;
        let (b, d, t) = (shape[0], shape[1], shape[2]);
        let mut out = vec![0.0; v.len()];
        for bi in 0..b {
            for di in 0..d {
                for ti in 0..t {
                    out[(bi * t + ti) * d + di] = v[(bi * d + di) * t + ti];
                }
            }
        }
        return Ok((vec![b * t, d], out));
    }
    if layout.is_empty() || layout.starts_with("(B*T, L, D)") || layout.starts_with("(B, ") {
        return Ok((shape.to_vec(), v.to_vec()));
    }
    bail!("expected tensor `{name}` has a layout this harness does not know: {layout}")
}
