//! `evaluate`: a model on a data set on disk with a test pipeline, the official multi-view protocol
//! ([`crate::eval`]), and the results file the table binaries read (`--results DIR`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;

use super::{load, open_dataset, ModelArgs};
use crate::count::Views;
use crate::results::{EvalRecord, FileId};
use crate::video::source::VideoEval;
use crate::video::Pipeline;

/// Evaluate a model on videos: top-1, top-5, mean class accuracy, per-class accuracy and the
/// confusion matrix, with the official multi-view protocol (the softmax of every view averaged).
///
/// Example (a released ST-Adapter checkpoint on the K400 validation set):
///   evaluate --preset st_adapter_vit_b16_12x384 --clip ViT-B-16.visual.safetensors
///   --checkpoint st_k400.safetensors --data list:k400_val.txt:/data/k400/val --dataset-name k400
///   --pipeline st_k400_test --out results/st_b16_k400.ron
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The trained parameters: a released checkpoint converted by scripts/convert_checkpoint.py, or a
    /// training checkpoint written by `train` (DIR/checkpoint.safetensors).
    #[arg(long, conflicts_with = "weights")]
    pub checkpoint: Option<PathBuf>,
    /// Let --checkpoint replace frozen encoder weights from --clip (a fully fine-tuned model).
    #[arg(long, requires = "checkpoint")]
    pub checkpoint_replaces_clip: bool,
    /// The videos: list:FILE[:ROOT] (official `path label` lists), kinetics:CSV:ROOT,
    /// ssv2:SPLIT.json:ROOT (labels.json next to it), or folder:ROOT (a folder per class).
    #[arg(long)]
    pub data: String,
    /// The data set's name in the results file, as the tables name their columns: k400, ssv2, k700,
    /// diving48 (default: k400/k600/k700 for a Kinetics CSV, ssv2 for SSv2, the file or folder name
    /// otherwise).
    #[arg(long)]
    pub dataset_name: Option<String>,
    /// Use this recipe's test pipeline (a preset name, e.g. st_k400_vit_b, or a RON file).
    #[arg(long, conflicts_with = "pipeline")]
    pub recipe: Option<String>,
    /// A test pipeline: st_k400_test, st_ssv2_test, aim_k400_test, aim_ssv2_test, or a RON file.
    /// Default: the recipe of a training checkpoint.
    #[arg(long)]
    pub pipeline: Option<String>,
    /// Other views than the pipeline's: FRAMESxCLIPSxCROPS, e.g. 16x3x1 (crops 1 or 3).
    #[arg(long)]
    pub views: Option<Views>,
    /// Write the results file here (RON, read by the table binaries' --results DIR), with
    /// <stem>.per_class.csv and <stem>.confusion.csv next to it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Evaluate only the first N videos of the list.
    #[arg(long, value_parser = crate::input::count(1..=100_000_000))]
    pub limit: Option<usize>,
    /// Skip (and count) videos that are missing or do not decode, instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Loader threads (decoding and transforms ahead of the model).
    #[arg(long, default_value_t = crate::data::default_workers(), value_parser = crate::input::count(1..=256))]
    pub workers: usize,
}

/// Runs the evaluation, prints the numbers, writes the files; returns the record.
pub fn run(a: &Args) -> anyhow::Result<EvalRecord> {
    if let Some(out) = &a.out {
        if out.is_dir() {
            anyhow::bail!("--out {}: is a folder; give a file name, e.g. results/k400.ron", out.display());
        }
    }
    let cfg = a.model.cfg()?;
    let mut model = a.model.build(&cfg)?;
    let mut recipe = None;
    let checkpoint = match &a.checkpoint {
        Some(ck) if load::is_training_checkpoint(ck) => {
            recipe = Some(load::training_checkpoint(model.as_mut(), &cfg, ck)?.header.recipe);
            Some(FileId { path: ck.display().to_string(), sha256: crate::train::checkpoint::file_sha256(ck)? })
        }
        Some(ck) => {
            load::checkpoint(model.as_mut(), &cfg, ck, a.checkpoint_replaces_clip)?;
            Some(FileId { path: ck.display().to_string(), sha256: crate::train::checkpoint::file_sha256(ck)? })
        }
        None => match &a.model.weights {
            Some(w) => {
                Some(FileId { path: w.display().to_string(), sha256: crate::train::checkpoint::file_sha256(w)? })
            }
            None => {
                eprintln!("warning: no --checkpoint: the adapters and the classifier keep their initial values");
                None
            }
        },
    };
    let pipeline = match (&a.pipeline, &a.recipe, &recipe) {
        (Some(p), _, _) => Pipeline::named_or_file(p)?,
        (None, Some(r), _) => crate::recipe::Recipe::named_or_file(r)?.test,
        (None, None, Some(r)) => r.test.clone(),
        (None, None, None) => {
            anyhow::bail!("give --pipeline (st_k400_test, st_ssv2_test, aim_k400_test, aim_ssv2_test) or --recipe")
        }
    };
    let pipeline = match a.views {
        Some(v) => pipeline.with_views(v)?,
        None => pipeline,
    };
    let views = pipeline.views_spec();
    let s = pipeline.spatial.size();
    cfg.check_input(&[1, 3, views.frames, s, s]).map_err(|e| anyhow::anyhow!("pipeline {}: {e}", pipeline.name))?;

    let data = open_dataset(&a.data, a.dataset_name.as_deref())?;
    data.check_labels(cfg.num_classes())?;
    let source = Arc::new(VideoEval { data: Arc::new(data), pipeline: pipeline.clone() });
    let names = source.data.classes.clone();
    let opts = crate::eval::Options {
        workers: a.workers,
        skip_bad: a.skip_bad,
        limit: a.limit,
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let manifest = crate::data::EvalSource::manifest(&*source);
    let ev = crate::eval::evaluate(&*model, source, &opts)?;
    let m = &ev.metrics;
    println!(
        "{} on {} ({} videos, {views} views, pipeline {}):",
        a.model.preset.clone().unwrap_or_else(|| a
            .model
            .config
            .as_ref()
            .map_or(String::new(), |p| p.display().to_string())),
        manifest.dataset,
        m.videos,
        pipeline.name
    );
    println!("  top-1 {:.2}%  top-5 {:.2}%  mean class accuracy {:.2}%", m.top1, m.top5, m.mean_class_accuracy);
    println!("  {:.2} clips/s ({:.1} s)", ev.clips_per_s, ev.seconds);
    if !ev.failures.is_empty() {
        println!("  skipped {} unreadable videos, e.g. {}", ev.failures.len(), ev.failures[0]);
    }
    let record = EvalRecord {
        format: 1,
        model: cfg,
        views,
        pipeline: pipeline.name.clone(),
        backbone: match &a.model.clip {
            Some(c) => {
                Some(FileId { path: c.display().to_string(), sha256: crate::train::checkpoint::file_sha256(c)? })
            }
            None => None,
        },
        checkpoint,
        recipe,
        init: a.model.init_note(),
        dataset: crate::data::Manifest { unreadable: ev.failures.len(), ..manifest },
        metrics: ev.metrics.clone(),
        clips_per_s: ev.clips_per_s,
        written_by: format!("video-adapters {}", env!("CARGO_PKG_VERSION")),
    };
    if let Some(out) = &a.out {
        record.check().map_err(|e| anyhow::anyhow!("the record is not usable: {e}"))?;
        record.save(out)?;
        let (per_class, confusion) = csv_paths(out);
        crate::io::write_atomic(&per_class, ev.per_class_csv(names.as_deref()).as_bytes())?;
        crate::io::write_atomic(&confusion, ev.confusion_csv().as_bytes())?;
        println!("wrote {}, {}, {}", out.display(), per_class.display(), confusion.display());
    }
    Ok(record)
}

/// `<stem>.per_class.csv` and `<stem>.confusion.csv` next to the results file.
pub fn csv_paths(out: &Path) -> (PathBuf, PathBuf) {
    let stem = out.file_stem().map_or("results".into(), |s| s.to_string_lossy().into_owned());
    let dir = out.parent().unwrap_or(Path::new(""));
    (dir.join(format!("{stem}.per_class.csv")), dir.join(format!("{stem}.confusion.csv")))
}
