//! Runs a model described by a RON config on a video tensor and writes the logits (and, with
//! `--taps`, the named intermediates) to safetensors.
//!
//! ```text
//! forward --model fixtures/configs/st_adapter_vit_b16_12x384.ron \
//!         --clip ViT-B-16.visual.safetensors --checkpoint st_adapter_k400.safetensors \
//!         --input clip.safetensors --output logits.safetensors
//! ```
//!
//! Every input is checked before the forward pass: the config (unknown fields, values), the
//! weights (keys, shapes, dtypes, finite values), the video (shape against the config, finite
//! values); and the logits after it (finite). Errors name the file, the field, key or flag.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::bail;
use clap::Parser;
use dfdx::prelude::*;
use video_adapters::clip::weights::{read_all, write_safetensors, KeyMap, NamedTensor};
use video_adapters::init::Init;
use video_adapters::input::{check_finite, InputError};
use video_adapters::registry::ModelCfg;
use video_adapters::Ctx;

/// Run one forward pass (eval mode) and write logits and intermediates.
#[derive(Parser, Debug)]
#[command(version, long_about = None)]
struct Args {
    /// Model config (RON), e.g. fixtures/configs/aim_vitclip_base_k400.ron.
    #[arg(long)]
    model: PathBuf,
    /// A complete state dict under the model's own keys (every parameter; strict).
    #[arg(long, conflicts_with_all = ["clip", "clip_prefix", "checkpoint", "checkpoint_replaces_clip"])]
    weights: Option<PathBuf>,
    /// OpenAI CLIP weights for the frozen encoder (see scripts/convert_clip.py); the model's new
    /// parameters (adapters, head) keep their initial values unless --checkpoint gives them.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// Key prefix of the encoder inside the --clip file ("visual." for a whole CLIP checkpoint);
    /// none by default.
    #[arg(long, requires = "clip")]
    clip_prefix: Option<String>,
    /// A checkpoint of the trained parameters (adapters, head, …) under the model's keys, e.g. a
    /// released ST-Adapter checkpoint converted by scripts/convert_checkpoint.py. It may not hold
    /// frozen encoder weights (they come from --clip) unless --checkpoint-replaces-clip.
    #[arg(long, requires = "clip")]
    checkpoint: Option<PathBuf>,
    /// Let --checkpoint replace frozen encoder weights loaded from --clip (a checkpoint of a fully
    /// fine-tuned model, say); each replaced tensor is counted on stderr.
    #[arg(long, requires = "checkpoint")]
    checkpoint_replaces_clip: bool,
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
    /// Where the model runs: `cpu`, `cuda` or `cuda:N` (a build with `--features cuda` and a GPU).
    #[arg(long, default_value = "cpu", value_parser = video_adapters::device::DeviceArg::parse)]
    device: video_adapters::device::DeviceArg,
}

fn main() {
    video_adapters::device::tune_host_allocator();
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    if a.output.is_dir() {
        // refused before the work, not after it
        return Err(InputError::unusable(
            &a.output,
            "--output names a directory; give a file name, e.g. logits.safetensors",
        )
        .into());
    }
    let cfg = ModelCfg::from_ron_file(&a.model)?;
    let dev = Cpu::default();
    let mut model =
        cfg.build_for(a.device, &mut Init::seeded(0)).map_err(|e| anyhow::anyhow!("{}: {e:#}", a.model.display()))?;
    let new = video_adapters::tools::load::not_in_clip(&cfg);
    match (&a.weights, &a.clip) {
        (Some(w), _) => {
            if let Err(mut e) = model.load(w, &KeyMap::identity(), &|_| false) {
                if let InputError::Weights(w) = &mut e {
                    if w.unexpected.is_empty() && w.mismatched.is_empty() && w.missing.iter().all(|(k, _)| new(k)) {
                        w.hints.push(
                            "the file has the encoder but none of the missing parameters, which CLIP does not have (adapters, head): give it with --clip, and the trained parameters with --checkpoint".into(),
                        );
                    }
                }
                return Err(e.into());
            }
        }
        (None, Some(clip)) => {
            use video_adapters::tools::load;
            load::clip(model.as_mut(), &cfg, clip, a.clip_prefix.as_deref())?;
            match &a.checkpoint {
                Some(ck) => load::checkpoint(model.as_mut(), &cfg, ck, a.checkpoint_replaces_clip)?,
                None => {
                    let kept = model.params().iter().filter(|p| new(&p.key)).count();
                    eprintln!("warning: no --checkpoint: {kept} new parameters keep their initial values")
                }
            }
        }
        (None, None) => bail!("give --weights, or --clip (and usually --checkpoint)"),
    }
    let input = read_all(&a.input)?;
    let Some((shape, values)) = input.get(&a.key) else {
        let have: Vec<&String> = input.keys().collect();
        return Err(
            InputError::tensor(&a.input, &a.key, format!("no such tensor (--key); the file has {have:?}")).into()
        );
    };
    cfg.check_input(shape).map_err(|e| InputError::tensor(&a.input, &a.key, e.to_string()))?;
    check_finite(&a.input, &a.key, shape, values)?;
    let video = dev.tensor_from_vec(
        values.iter().map(|v| *v as f32).collect(),
        (shape[0], Const::<3>, shape[2], shape[3], shape[4]),
    );
    let mut ctx = if a.taps { Ctx::eval().recording() } else { Ctx::eval() };
    let logits = model.logits(&video, &mut ctx);
    let values = logits.as_vec();
    if let Some((i, v)) = video_adapters::input::first_non_finite(&values) {
        let shape: Vec<usize> = logits.shape().concrete().into();
        bail!(
            "the logits hold non-finite values (the first is {v} at {}), although the input and the weights are finite: the activations overflow f32 (inputs far outside the normalised range?)",
            video_adapters::input::Index(i, &shape)
        );
    }
    let mut out = vec![NamedTensor { name: "logits".into(), shape: logits.shape().concrete().into(), values }];
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
