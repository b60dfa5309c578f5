//! `train`: a preset on a data set on disk with a recipe ([`crate::train::train`]): frozen encoder,
//! AdamW with warm-up + cosine, micro-batches accumulated to the recipe's batch, checkpoints that
//! resume bit for bit, periodic validation.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use super::{open_dataset, ModelArgs};
use crate::recipe::Recipe;
use crate::train::checkpoint::Checkpoint;
use crate::train::{Ended, Options, Summary};
use crate::video::source::{VideoEval, VideoTrain};

/// Train a model on videos with a paper's recipe (or your own), frozen encoder, checkpoints that
/// resume exactly.
///
/// Example (ST-Adapter ViT-B/16 on K400 with the paper's Table 8 recipe, batch 128 reached as
/// 16 micro-batches of 8):
///   train --preset st_adapter_vit_b16_12x384 --clip ViT-B-16.visual.safetensors
///   --recipe st_k400_vit_b --data list:k400_train.txt:/data/k400/train --batch 8
///   --val-data list:k400_val.txt:/data/k400/val --val 1000 --out runs/st_b16_k400
/// Stop with Ctrl-C (a checkpoint is written after the current step) and continue with --resume.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The recipe: a preset (st_k400_vit_b, st_k400_vit_l, st_ssv2_vit_b, st_ssv2_vit_l, aim_k400_vit_b,
    /// aim_ssv2_vit_b, mst_k400_vit_b) or a RON file. It gives the optimizer, the batch, the schedule,
    /// the training augmentation and the test views.
    #[arg(long)]
    pub recipe: String,
    /// The training videos: list:FILE[:ROOT], kinetics:CSV:ROOT, ssv2:SPLIT.json:ROOT or folder:ROOT.
    #[arg(long)]
    pub data: String,
    /// Validation videos (same forms as --data), evaluated with the recipe's test views every --val steps.
    #[arg(long, requires = "val")]
    pub val_data: Option<String>,
    /// Validate every N steps (and at the end); needs --val-data.
    #[arg(long, requires = "val_data", value_parser = crate::input::count(1..=1 << 30))]
    pub val: Option<usize>,
    /// Run folder: checkpoint.safetensors (trainable parameters under the official keys, AdamW state,
    /// step, seed) and log.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue the run in --out from its checkpoint (same preset, recipe, overrides and seed).
    #[arg(long)]
    pub resume: bool,
    /// Train for N steps instead of the recipe's; the warm-up keeps its share of the schedule.
    #[arg(long, value_parser = crate::input::count(1..=1 << 30))]
    pub steps: Option<usize>,
    /// Stop after N steps of the schedule (writing a checkpoint), to continue later with --resume.
    #[arg(long, value_parser = crate::input::count(1..=1 << 30))]
    pub stop_after: Option<usize>,
    /// Clips per forward pass (micro-batch); the recipe's batch is reached by accumulating
    /// micro-batches. Default: 8, or the recipe's batch if smaller.
    #[arg(long, value_parser = crate::input::count(1..=4096))]
    pub batch: Option<usize>,
    /// Micro-batches per optimizer step; with it the batch per step is --batch × --accumulate
    /// instead of the recipe's (a warning says so when they differ).
    #[arg(long, value_parser = crate::input::count(1..=1 << 20))]
    pub accumulate: Option<usize>,
    /// Write a checkpoint every N steps (always at the end and on Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Skip (and count) videos that are missing or do not decode, instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Loader threads (decoding and augmentation ahead of the model).
    #[arg(long, default_value_t = crate::data::default_workers(), value_parser = crate::input::count(1..=256))]
    pub workers: usize,
}

/// The recipe with the command line's overrides (`--steps`, `--batch` × `--accumulate`) and the
/// micro-batch.
pub fn recipe(a: &Args) -> anyhow::Result<(Recipe, usize)> {
    let mut r = Recipe::named_or_file(&a.recipe)?;
    if let Some(steps) = a.steps {
        let warmup = (r.warmup_steps as f64 * steps as f64 / r.steps as f64).round() as usize;
        (r.steps, r.warmup_steps) = (steps, warmup.min(steps));
    }
    let micro = a.batch.unwrap_or(8.min(r.batch_size));
    if let Some(acc) = a.accumulate {
        if micro * acc != r.batch_size {
            eprintln!(
                "warning: --batch {micro} × --accumulate {acc} = {} clips per step; recipe {} uses {}",
                micro * acc,
                r.name,
                r.batch_size
            );
            r.batch_size = micro * acc;
        }
    }
    r.validate().map_err(|e| anyhow::anyhow!("recipe {}: {e}", r.name))?;
    Ok((r, micro))
}

/// Runs the training; prints what it did.
pub fn run(a: &Args) -> anyhow::Result<Summary> {
    let cfg = a.model.cfg()?;
    let (recipe, micro) = recipe(a)?;
    let ckpt = a.out.join("checkpoint.safetensors");
    let resume = if a.resume {
        if !ckpt.is_file() {
            anyhow::bail!("--resume: {} does not exist (no run to continue in --out)", ckpt.display());
        }
        Some(Checkpoint::load(&ckpt)?)
    } else {
        if ckpt.exists() {
            anyhow::bail!(
                "{} exists: give --resume to continue that run, or another --out for a new one",
                ckpt.display()
            );
        }
        None
    };
    let mut model = a.model.build(&cfg)?;
    let data = open_dataset(&a.data, None)?;
    data.check_labels(cfg.num_classes())?;
    let source = Arc::new(VideoTrain { data: Arc::new(data), pipeline: recipe.train });
    let val = match &a.val_data {
        Some(spec) => {
            let d = open_dataset(spec, None)?;
            d.check_labels(cfg.num_classes())?;
            Some(Arc::new(VideoEval { data: Arc::new(d), pipeline: recipe.test.clone() })
                as Arc<dyn crate::data::EvalSource>)
        }
        None => None,
    };
    let [t, h, w] = crate::data::TrainSource::clip_shape(&*source);
    cfg.check_input(&[1, 3, t, h, w]).map_err(|e| anyhow::anyhow!("recipe {}: {e}", recipe.name))?;
    crate::train::stop_on_ctrl_c()?;
    let opts = Options {
        seed: a.model.seed,
        micro_batch: micro,
        stop_after: a.stop_after,
        checkpoint_every: a.checkpoint_every,
        eval_every: a.val.unwrap_or(0),
        out: Some(a.out.clone()),
        skip_bad: a.skip_bad,
        workers: a.workers,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    eprintln!(
        "training {} with recipe {}: {} steps of {} clips ({} per forward pass), {} videos",
        a.model.preset.clone().unwrap_or_else(|| "the --config model".into()),
        recipe.name,
        recipe.steps,
        recipe.batch_size,
        micro,
        source.data.items.len()
    );
    let s = crate::train::train(model.as_mut(), &cfg, &recipe, source, val, &opts, resume)?;
    let how = match s.ended {
        Ended::Finished => "finished",
        Ended::Stopped => "stopped (--stop-after)",
        Ended::Interrupted => "interrupted (Ctrl-C)",
    };
    let last = s.log.last();
    println!(
        "{how} at step {}/{}{}; checkpoint {}",
        s.step,
        recipe.steps,
        last.map_or(String::new(), |l| format!(", loss {:.4}", l.loss)),
        ckpt.display()
    );
    if !s.skipped.is_empty() {
        println!("skipped {} unreadable videos, e.g. {}", s.skipped.len(), s.skipped[0]);
    }
    Ok(s)
}
