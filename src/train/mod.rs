//! The trainer: a recipe's optimizer steps over a [`TrainSource`], as the official scripts run
//! them, on this machine.
//!
//! One step = the recipe's batch of clips, as micro-batches of `micro_batch` clips whose gradients
//! are summed (each scaled by its share of the batch, so the step equals one pass over the whole
//! batch with the loss averaged over it, as `F.cross_entropy` does), then one AdamW update at the
//! schedule's learning rate, with the recipe's decay groups.
//!
//! Everything random derives from the seed: the order of items (a permutation per epoch), each
//! sample's sampling and augmentation (sample number `g`), each micro-batch's dropout (step,
//! micro-batch). A checkpoint therefore needs only the step and the sample counter besides the
//! parameters and AdamW's moments, and a resumed run continues bit for bit
//! (`tests/train.rs`). On CUDA the gradient sums, the moments and the parameters stay on the device
//! from step to step ([`crate::optim`]); a checkpoint downloads them, a resume uploads them.
//!
//! Departures from the official runs: fp32 throughout (the official code trains under fp16
//! autocast with a loss scaler); one process instead of 8 GPUs (the batch is reached by
//! accumulation; BatchNorm-free models make this exact up to summation order).

pub mod checkpoint;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use dfdx::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::context::Ctx;
use crate::data::{rng_for, EvalSource, ItemError, Labelled, Prefetch, TrainSource};
use crate::optim::{AdamW, GradSums};
use crate::recipe::Recipe;
use crate::registry::{ModelCfg, VideoModel};
use checkpoint::{Checkpoint, Header};

/// Random streams (what a generator is for), mixed into [`rng_for`].
const STREAM_ORDER: u64 = 1;
const STREAM_SAMPLE: u64 = 2;
const STREAM_DROPOUT: u64 = 3;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Makes Ctrl-C (SIGINT) ask the running training to write a checkpoint and stop after the
/// current step. Call once from a binary.
pub fn stop_on_ctrl_c() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint");
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: finishing this step, then writing a checkpoint (press again to quit now)");
    })
    .context("installing the Ctrl-C handler")
}

/// How a run is driven (the recipe says what is trained).
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// Clips per forward pass; the recipe's batch is reached by accumulation.
    pub micro_batch: usize,
    /// Stop after this many steps (writing a checkpoint) without changing the schedule.
    pub stop_after: Option<usize>,
    /// Write a checkpoint every this many steps (and always at the end); 0: only at the end.
    pub checkpoint_every: usize,
    /// Evaluate on the validation source every this many steps; 0: never.
    pub eval_every: usize,
    /// Run folder: `checkpoint.safetensors` and `log.csv`. None: nothing is written.
    pub out: Option<PathBuf>,
    /// Skip (and count) items that fail to load instead of stopping.
    pub skip_bad: bool,
    /// Loader threads.
    pub workers: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seed: 0,
            micro_batch: 8,
            stop_after: None,
            checkpoint_every: 0,
            eval_every: 0,
            out: None,
            skip_bad: false,
            workers: crate::data::default_workers(),
            progress: false,
        }
    }
}

/// One line of the training log.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub step: usize,
    pub lr: f64,
    pub loss: f64,
    pub clips_per_s: f64,
    /// Validation top-1 (%), on steps where it ran.
    pub val_top1: Option<f64>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// All of the recipe's steps ran.
    Finished,
    /// `stop_after` steps ran.
    Stopped,
    /// Ctrl-C: a checkpoint was written after the current step.
    Interrupted,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Summary {
    pub ended: Ended,
    /// Steps done in total (resumed ones included).
    pub step: usize,
    pub log: Vec<LogLine>,
    pub skipped: Vec<ItemError>,
    /// Where the last checkpoint is.
    pub checkpoint: Option<PathBuf>,
}

/// Checks that a source's clips fit a model: frames (when the model is built for a T), size.
pub fn check_fit(cfg: &ModelCfg, shape: [usize; 3], what: &str) -> anyhow::Result<()> {
    let [t, h, w] = shape;
    let r = cfg.clip().input_resolution;
    if (h, w) != (r, r) {
        bail!("{what} gives {h}x{w} frames; the model takes {r}x{r}");
    }
    if let ModelCfg::Aim(a) = cfg {
        if a.frames != t {
            bail!("{what} gives {t} frames per clip; the AIM model is built for num_frames = {}", a.frames);
        }
    }
    if t == 0 {
        bail!("{what} gives clips of 0 frames");
    }
    Ok(())
}

/// Trains `model` (built from `cfg`, weights loaded, trainable set marked) with `recipe` on
/// `source`, continuing from `resume` when given.
pub fn train(
    model: &mut dyn VideoModel,
    cfg: &ModelCfg,
    recipe: &Recipe,
    source: Arc<dyn TrainSource>,
    val: Option<Arc<dyn EvalSource>>,
    opts: &Options,
    resume: Option<Checkpoint>,
) -> anyhow::Result<Summary> {
    recipe.validate().map_err(|e| anyhow::anyhow!("recipe {}: {e}", recipe.name))?;
    if opts.micro_batch == 0 {
        bail!("--micro-batch must be at least 1");
    }
    if source.is_empty() {
        bail!("the training set is empty");
    }
    if source.num_classes() > cfg.num_classes() {
        bail!("the training set has {} classes; the model's head has {}", source.num_classes(), cfg.num_classes());
    }
    check_fit(cfg, source.clip_shape(), "the training set")?;

    let multipliers = {
        let r = recipe.clone();
        move |key: &str| r.multipliers(key)
    };
    let mut opt = AdamW::<f32>::new(recipe.optimizer.clone()).with_groups(Box::new(multipliers));
    let (mut step, mut samples, mut skipped) = (0usize, 0u64, Vec::new());
    if let Some(ck) = resume {
        let h = &ck.header;
        if &h.model != cfg {
            bail!(
                "the checkpoint was trained with another model config (step {}); resume with the same --model",
                h.step
            );
        }
        if &h.recipe != recipe {
            bail!("the checkpoint was trained with recipe `{}`; resume with the same recipe", h.recipe.name);
        }
        if h.seed != opts.seed {
            bail!("the checkpoint was trained with --seed {}; resume with the same seed", h.seed);
        }
        for (k, _, v) in &ck.params {
            model.set_values(k, v).map_err(|e| anyhow::anyhow!("resuming: {e}"))?;
        }
        (step, samples, skipped) = (h.step, h.samples, h.skipped.clone());
        opt.step = h.adam_step;
        opt.moments = ck.moments;
    }
    let trainable: Vec<String> = model.params().into_iter().filter(|p| p.trainable).map(|p| p.key).collect();
    if trainable.is_empty() {
        bail!("the model has no trainable parameter");
    }

    let ckpt_path = opts.out.as_ref().map(|d| d.join("checkpoint.safetensors"));
    let save = |model: &dyn VideoModel, opt: &AdamW<f32>, step, samples, skipped: &[ItemError]| -> anyhow::Result<()> {
        let Some(path) = &ckpt_path else { return Ok(()) };
        let ck = Checkpoint {
            header: Header {
                format: 1,
                model: cfg.clone(),
                recipe: recipe.clone(),
                seed: opts.seed,
                step,
                samples,
                adam_step: opt.step,
                skipped: skipped.to_vec(),
            },
            params: model.values(&|k| trainable.iter().any(|t| t == k)),
            moments: opt.moments.clone(),
        };
        ck.save(path)
    };

    let loader = loader(source.clone(), opts.seed, samples, opts.workers, recipe.batch_size.max(opts.micro_batch));
    let mut loader = loader;
    let [t, h, w] = source.clip_shape();
    let clip_len = 3 * t * h * w;
    let dev = Cpu::default();
    let end = opts.stop_after.map_or(recipe.steps, |s| s.min(recipe.steps));
    let bar = progress_bar(opts.progress, step, end);
    let mut log = Vec::new();
    let mut csv = opts.out.as_ref().map(|d| d.join("log.csv"));
    if let Some(path) = &csv {
        if step == 0 || !path.exists() {
            std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
            std::fs::write(path, "step,lr,loss,clips_per_s,val_top1\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    let mut ended = Ended::Finished;
    while step < end {
        let started = Instant::now();
        let lr = recipe.lr_at(step);
        opt.cfg.lr = lr;
        let mut sums = GradSums::new();
        let mut loss = 0.0f64;
        let mut done = 0usize;
        let mut micro = 0u64;
        while done < recipe.batch_size {
            let m = opts.micro_batch.min(recipe.batch_size - done);
            let (mut data, mut labels) = (Vec::with_capacity(m * clip_len), Vec::with_capacity(m));
            while labels.len() < m {
                let (g, item) = loader.next_item();
                samples = g + 1;
                match item {
                    Ok((clip, label)) => {
                        data.extend_from_slice(&clip);
                        labels.push(label);
                    }
                    Err(e) if opts.skip_bad => skipped.push(e),
                    Err(e) => bail!("training sample {g}: {e} (--skip-bad skips unreadable items)"),
                }
            }
            let video = dev.tensor_from_vec(data, (m, Const::<3>, t, h, w));
            let mut ctx = Ctx::train(rng_for(opts.seed, STREAM_DROPOUT, (step as u64) << 20 | micro).gen());
            let scale = m as f32 / recipe.batch_size as f32;
            let l = model.accumulate(&video, &labels, recipe.label_smoothing, scale, &mut sums, &mut ctx);
            loss += l as f64 * scale as f64;
            done += m;
            micro += 1;
        }
        if !loss.is_finite() {
            bail!(stopped_message(step, &format!("the loss is {loss}"), &ckpt_path));
        }
        if let Some(k) = sums.first_nonfinite() {
            bail!(stopped_message(step, &format!("the gradient of `{k}` is not finite"), &ckpt_path));
        }
        model.apply(&mut opt, &mut sums);
        step += 1;
        let clips_per_s = recipe.batch_size as f64 / started.elapsed().as_secs_f64();
        let val_top1 = match &val {
            Some(v) if opts.eval_every > 0 && (step % opts.eval_every == 0 || step == end) => {
                let eval_opts = crate::eval::Options { workers: opts.workers, ..Default::default() };
                Some(crate::eval::evaluate(&*model, v.clone(), &eval_opts)?.metrics.top1)
            }
            _ => None,
        };
        let line = LogLine { step, lr, loss, clips_per_s, val_top1 };
        if let Some(path) = &mut csv {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(&*path)?;
            writeln!(
                f,
                "{},{:e},{},{:.2},{}",
                step,
                lr,
                loss,
                clips_per_s,
                val_top1.map_or(String::new(), |v| format!("{v:.2}"))
            )?;
        }
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss:.4}  lr {lr:.2e}  {clips_per_s:.1} clips/s"));
        log.push(line);
        let interrupted = INTERRUPTED.load(Ordering::SeqCst);
        if interrupted || step == end || (opts.checkpoint_every > 0 && step % opts.checkpoint_every == 0) {
            // a device's moments come to the host here only
            opt.sync_moments();
            save(&*model, &opt, step, samples, &skipped)?;
        }
        if interrupted {
            ended = Ended::Interrupted;
            break;
        }
    }
    if ended == Ended::Finished && step < recipe.steps {
        ended = Ended::Stopped;
    }
    bar.finish_and_clear();
    Ok(Summary { ended, step, log, skipped, checkpoint: ckpt_path })
}

fn stopped_message(step: usize, what: &str, ckpt: &Option<PathBuf>) -> String {
    let kept = match ckpt {
        Some(p) if p.exists() => format!("the last checkpoint, {}, is kept", p.display()),
        Some(_) => "no checkpoint had been written yet".into(),
        None => "no run folder was given, nothing was written".into(),
    };
    format!("step {}: {what}; training stopped before the update ({kept})", step + 1)
}

// ANCHOR: loader
/// Training samples `first`, `first + 1`, … on worker threads: sample `g` is item
/// `order(epoch)[g mod len]` with `epoch = g div len`, drawn with its own generator.
fn loader(
    source: Arc<dyn TrainSource>,
    seed: u64,
    first: u64,
    workers: usize,
    ahead: usize,
) -> Prefetch<(u64, Labelled)> {
    let len = source.len() as u64;
    let orders: Mutex<BTreeMap<u64, Arc<Vec<u32>>>> = Mutex::new(BTreeMap::new());
    let order = move |epoch: u64| -> Arc<Vec<u32>> {
        let mut cache = orders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(o) = cache.get(&epoch) {
            return o.clone();
        }
        let mut o: Vec<u32> = (0..len as u32).collect();
        o.shuffle(&mut rng_for(seed, STREAM_ORDER, epoch));
        let o = Arc::new(o);
        cache.retain(|e, _| *e + 1 >= epoch);
        cache.insert(epoch, o.clone());
        o
    };
    Prefetch::new(first, workers, ahead, move |g| {
        let item = order(g / len)[(g % len) as usize] as usize;
        (g, source.train_clip(item, &mut rng_for(seed, STREAM_SAMPLE, g)))
    })
}
// ANCHOR_END: loader

/// A progress bar on stderr (hidden when `show` is false or stderr is not a terminal).
pub fn progress_bar(show: bool, pos: usize, len: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta_precise}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_position(pos as u64);
    bar
}
