//! The logic of the command-line tools, so that the binaries stay thin and the tests can call it:
//! weight loading shared by every tool ([`load`]), and (feature `video`) the `train`, `evaluate` and
//! `clips` tools on real videos.

#[cfg(feature = "video")]
pub mod clips;
#[cfg(feature = "video")]
pub mod evaluate;
pub mod load;
#[cfg(feature = "video")]
pub mod train;

use std::path::PathBuf;

use crate::init::Init;
use crate::registry::{ModelCfg, VideoModel};

/// Which model, and where its weights come from (`train` and `evaluate`).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A model preset by name: the stems of fixtures/configs/*.ron, e.g. st_adapter_vit_b16_12x384,
    /// aim_vitclip_base_k400, mst_adapter_vit_b16_k400, tiny_st_adapter_k400.
    #[arg(long, required_unless_present = "config", conflicts_with = "config")]
    pub preset: Option<String>,
    /// A model config file (RON), as fixtures/configs/*.ron.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Give the classifier this many classes instead of the preset's (e.g. 101 for UCF-101).
    #[arg(long, value_parser = crate::input::count(1..=1_000_000))]
    pub num_classes: Option<usize>,
    /// A complete state dict under the model's own keys (every parameter, strict), e.g. a released
    /// AIM checkpoint converted by scripts/convert_checkpoint.py.
    #[arg(long, conflicts_with_all = ["clip", "init"])]
    pub weights: Option<PathBuf>,
    /// OpenAI CLIP weights for the frozen encoder, converted to safetensors by
    /// scripts/convert_clip.py (README: "Real weights").
    #[arg(long)]
    pub clip: Option<PathBuf>,
    /// Key prefix of the encoder inside the --clip file ("visual." for a whole CLIP checkpoint).
    #[arg(long, requires = "clip")]
    pub clip_prefix: Option<String>,
    /// Keep the random initial weights (seeded by --seed) where no file gives weights: a test of the
    /// plumbing, not a model. Recorded as such in the results file.
    #[arg(long, value_enum)]
    pub init: Option<InitMode>,
    /// Seed of the initial weights, of the order of the items and of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the model runs: `cpu`, `cuda` or `cuda:N` (a build with `--features cuda` and a GPU).
    /// Videos are decoded and batched on the host either way.
    #[arg(long, default_value = "cpu", value_parser = crate::device::DeviceArg::parse)]
    pub device: crate::device::DeviceArg,
}

/// `--init`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitMode {
    /// Random initial weights from --seed.
    Random,
}

impl ModelArgs {
    /// The model config: the preset or the file, with `--num-classes` applied.
    pub fn cfg(&self) -> anyhow::Result<ModelCfg> {
        let cfg = match (&self.preset, &self.config) {
            (Some(name), _) => {
                crate::registry::presets().into_iter().find(|(n, _)| n == name).map(|p| p.1).ok_or_else(|| {
                    let names: Vec<String> = crate::registry::presets().into_iter().map(|p| p.0).collect();
                    anyhow::anyhow!("--preset `{name}` is not a preset; the presets are: {}", names.join(", "))
                })?
            }
            (None, Some(path)) => ModelCfg::from_ron_file(path)?,
            (None, None) => anyhow::bail!("give --preset NAME or --config FILE"),
        };
        Ok(match self.num_classes {
            Some(n) => cfg.with_num_classes(n),
            None => cfg,
        })
    }

    /// Builds the model with random initial weights from `--seed` and loads `--clip` if given.
    /// Without `--clip`, `--init random` must say that random encoder weights are meant.
    pub fn build(&self, cfg: &ModelCfg) -> anyhow::Result<Box<dyn VideoModel>> {
        let mut model = cfg.build_for(self.device, &mut Init::seeded(self.seed))?;
        if let Some(w) = &self.weights {
            model.load(w, &crate::clip::weights::KeyMap::identity(), &|_| false)?;
            eprintln!("loaded every parameter from {}", w.display());
            return Ok(model);
        }
        match (&self.clip, self.init) {
            (Some(clip), _) => load::clip(model.as_mut(), cfg, clip, self.clip_prefix.as_deref())?,
            (None, Some(InitMode::Random)) => {
                eprintln!("warning: --init random: the encoder keeps random weights (seed {})", self.seed)
            }
            (None, None) => anyhow::bail!(
                "no weights for the frozen encoder: give --clip ViT-B-16.visual.safetensors (scripts/convert_clip.py), \
                 --weights for a complete state dict, or --init random to run on random weights (a test of the plumbing, not a model)"
            ),
        }
        Ok(model)
    }

    /// What the results file says about the weights when some are random.
    pub fn init_note(&self) -> Option<String> {
        self.init.map(|InitMode::Random| {
            format!(
                "random (seed {}) where no file gave weights{}",
                self.seed,
                if self.clip.is_none() { ", the encoder included" } else { "" }
            )
        })
    }
}

/// `--data` and `--dataset-name`: a data set on disk.
pub fn open_dataset(spec: &str, name: Option<&str>) -> anyhow::Result<crate::video::dataset::Dataset> {
    let mut d = crate::video::dataset::Dataset::open(spec)?;
    if let Some(n) = name {
        d.name = n.to_string();
    }
    let report = d.missing_report();
    if !report.is_empty() {
        eprintln!("warning: {report}");
    }
    Ok(d)
}
