//! The results file: what an evaluation measured and exactly what it evaluated, written by
//! `evaluate` and read by the table binaries (`--results DIR`). It sits below both, so neither
//! imports the other.
//!
//! A record names the model config, the views, the test pipeline, the weights (sha256), the recipe
//! when the kit trained them, and the data set as read (items listed, found, unreadable, a hash of
//! the list): two evaluations of "the K400 validation set" on different copies, or with views that
//! differ between a README and a config, are told apart by their records, not by memory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::count::Views;
use crate::data::Manifest;
use crate::eval::Metrics;
use crate::recipe::Recipe;
use crate::registry::ModelCfg;

/// A weights file by path and content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileId {
    pub path: String,
    pub sha256: String,
}

/// One evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRecord {
    /// 1 for this layout.
    pub format: u32,
    pub model: ModelCfg,
    pub views: Views,
    /// The test pipeline's name (`st_k400_test`, …).
    pub pipeline: String,
    /// The backbone weights (`--clip`), when given.
    pub backbone: Option<FileId>,
    /// The trained weights (`--checkpoint`), when given.
    pub checkpoint: Option<FileId>,
    /// The recipe the kit trained the checkpoint with, when it did.
    pub recipe: Option<Recipe>,
    /// Set when some weights were random initial values (`--init random`): which, and the seed. Such a
    /// record tests the plumbing; its accuracy is not a model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
    pub dataset: Manifest,
    pub metrics: Metrics,
    /// Views per second through the model on the evaluating machine.
    pub clips_per_s: f64,
    /// `video-adapters <version>`.
    pub written_by: String,
}

impl EvalRecord {
    /// The problems that make a record unusable (non-finite or out-of-range numbers, an empty
    /// set), each naming the field.
    pub fn check(&self) -> Result<(), String> {
        let m = &self.metrics;
        for (name, v) in [("top1", m.top1), ("top5", m.top5), ("mean_class_accuracy", m.mean_class_accuracy)] {
            if !v.is_finite() || !(0.0..=100.0).contains(&v) {
                return Err(format!("metrics.{name} is {v}: a percentage in [0, 100] is expected"));
            }
        }
        if m.top5 < m.top1 {
            return Err(format!("metrics.top5 ({}) is below metrics.top1 ({})", m.top5, m.top1));
        }
        if m.videos == 0 {
            return Err("metrics.videos is 0".into());
        }
        if self.format != 1 {
            return Err(format!("format {} (this kit reads format 1)", self.format));
        }
        if self.views.frames == 0 || self.views.views() == 0 {
            return Err(format!("views {} has no frames or no views", self.views));
        }
        Ok(())
    }

    /// Writes the record as pretty RON, atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let pretty = ron::ser::PrettyConfig::new().struct_names(false);
        let text = ron::ser::to_string_pretty(self, pretty)? + "\n";
        Ok(crate::io::write_atomic(path, text.as_bytes())?)
    }
}

/// Reads every `*.ron` record of `dir`. Fails, naming the file, on a missing or empty folder, a
/// file that does not parse as a record, or a record that fails [`EvalRecord::check`].
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<(PathBuf, EvalRecord)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("--results {}: {e}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        anyhow::bail!(
            "--results {}: no results file (*.ron) in the folder; `evaluate --out` writes them",
            dir.display()
        );
    }
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            let r: EvalRecord = ron::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: not a results file of this kit: {e}", p.display()))?;
            r.check().map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            Ok((p, r))
        })
        .collect()
}
