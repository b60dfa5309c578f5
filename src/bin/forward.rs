//! Runs a model described by a RON config on a video tensor and writes the logits (and, with
//! `--taps`, the named intermediates) to safetensors.
//!
//! ```text
//! forward --model fixtures/configs/st_adapter_vit_b16_12x384.ron \
//!         --clip ViT-B-16.visual.safetensors --checkpoint st_adapter_k400.safetensors \
//!         --input clip.safetensors --output logits.safetensors
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;
use dfdx::prelude::*;
use video_adapters::clip::weights::{is_clip_key, read_all, write_safetensors, KeyMap, NamedTensor};
use video_adapters::init::Init;
use video_adapters::registry::ModelCfg;
use video_adapters::Ctx;

/// Run one forward pass (eval mode) and write logits and intermediates.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    /// Model config (RON), e.g. fixtures/configs/aim_vitclip_base_k400.ron.
    #[arg(long)]
    model: PathBuf,
    /// A complete state dict under the model's own keys (every parameter; strict).
    #[arg(long, conflicts_with_all = ["clip", "checkpoint"])]
    weights: Option<PathBuf>,
    /// OpenAI CLIP weights for the frozen encoder (see scripts/convert_clip.py); the model's new
    /// parameters (adapters, head) keep their initial values unless --checkpoint gives them.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Key prefix of the encoder inside the --clip file ("visual." for a whole CLIP checkpoint).
    #[arg(long, default_value = "")]
    clip_prefix: String,
    /// A checkpoint of the non-CLIP parameters (adapters, head) under the model's keys, e.g. a
    /// released ST-Adapter checkpoint converted by scripts/convert_checkpoint.py.
    #[arg(long, requires = "clip")]
    checkpoint: Option<PathBuf>,
    /// Input safetensors holding the video (B, 3, T, H, W), normalised as the model expects.
    #[arg(long)]
    input: PathBuf,
    /// Tensor name of the video in --input.
    #[arg(long, default_value = "video")]
    key: String,
    /// Output safetensors: `logits` (B, classes), plus intermediates with --taps.
    #[arg(long)]
    output: PathBuf,
    /// Also write the named intermediates (embed_out, block{i}_out, pre_logits, …).
    #[arg(long)]
    taps: bool,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    let cfg = ModelCfg::from_ron_file(&a.model)?;
    let dev = Cpu::default();
    let mut model = cfg.build(&dev, &mut Init::seeded(0))?;
    let encoder = cfg.encoder_prefix();
    match (&a.weights, &a.clip) {
        (Some(w), _) => {
            model.load(w, &KeyMap::identity(), &|_| false)?;
        }
        (None, Some(clip)) => {
            let map = KeyMap {
                model_prefix: encoder.into(),
                file_prefix: a.clip_prefix.clone(),
                ignore: vec!["proj".into()],
            };
            let new = move |k: &str| !k.strip_prefix(encoder).is_some_and(is_clip_key);
            let r = model.load(clip, &map, &new)?;
            eprintln!("loaded {} CLIP tensors ({:?}) from {}", r.loaded.len(), r.dtypes, clip.display());
            match &a.checkpoint {
                Some(ck) => {
                    let r = model.load(ck, &KeyMap::identity(), &|k: &str| !new(k))?;
                    eprintln!("loaded {} checkpoint tensors from {}", r.loaded.len(), ck.display());
                }
                None => {
                    eprintln!("warning: no --checkpoint: {} new parameters keep their initial values", r.kept.len())
                }
            }
        }
        (None, None) => bail!("give --weights, or --clip (and usually --checkpoint)"),
    }
    let input = read_all(&a.input)?;
    let (shape, values) = input.get(&a.key).with_context(|| {
        format!("{} has no tensor `{}` (it has {:?})", a.input.display(), a.key, input.keys().collect::<Vec<_>>())
    })?;
    if shape.len() != 5 || shape[1] != 3 {
        bail!("`{}` in {} has shape {shape:?}; expected (B, 3, T, H, W)", a.key, a.input.display());
    }
    let res = cfg.clip().input_resolution;
    if shape[3] != res || shape[4] != res {
        bail!("frames are {}x{}; the model was configured for {res}x{res}", shape[3], shape[4]);
    }
    let video = dev.tensor_from_vec(
        values.iter().map(|v| *v as f32).collect(),
        (shape[0], Const::<3>, shape[2], shape[3], shape[4]),
    );
    let mut ctx = if a.taps { Ctx::eval().recording() } else { Ctx::eval() };
    let logits = model.logits(&video, &mut ctx);
    let mut out =
        vec![NamedTensor { name: "logits".into(), shape: logits.shape().concrete().into(), values: logits.as_vec() }];
    if a.taps {
        for (name, t) in ctx.taps() {
            if name != "logits" {
                out.push(NamedTensor { name, shape: t.shape, values: t.values.iter().map(|v| *v as f32).collect() });
            }
        }
    }
    let meta = BTreeMap::from([("model".to_string(), a.model.display().to_string())]);
    write_safetensors(&a.output, &out, Some(meta))?;
    eprintln!("wrote {} tensors to {}", out.len(), a.output.display());
    Ok(())
}
