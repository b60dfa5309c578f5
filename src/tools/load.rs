//! Loading a model's weights the way every tool does (`forward`, `evaluate`, `train`): OpenAI CLIP
//! weights for the frozen encoder (`--clip`), then the trained parameters (`--checkpoint`: a released
//! checkpoint converted by `scripts/convert_checkpoint.py`, or a training checkpoint of this kit).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::bail;

use crate::clip::weights::{is_clip_key, KeyMap};
use crate::registry::{ModelCfg, VideoModel};
use crate::train::checkpoint::{Checkpoint, META_KEY};

/// The model's parameters that a CLIP checkpoint does not have (adapters, heads, …).
pub fn not_in_clip(cfg: &ModelCfg) -> impl Fn(&str) -> bool {
    let encoder = cfg.encoder_prefix();
    move |k: &str| !k.strip_prefix(encoder).is_some_and(is_clip_key)
}

/// Loads OpenAI CLIP weights (`--clip`, encoder keys under `clip_prefix` in the file) into the
/// model's frozen encoder; every other parameter keeps its value. Errors name the file and keys.
pub fn clip(model: &mut dyn VideoModel, cfg: &ModelCfg, clip: &Path, clip_prefix: Option<&str>) -> anyhow::Result<()> {
    let new = not_in_clip(cfg);
    let map = KeyMap {
        model_prefix: cfg.encoder_prefix().into(),
        file_prefix: clip_prefix.unwrap_or_default().into(),
        ignore: vec!["proj".into()],
    };
    let r = model.load(clip, &map, &new)?;
    let not_clip: Vec<&str> = r.loaded.iter().filter(|k| new(k)).map(|k| k.as_str()).collect();
    if !not_clip.is_empty() {
        bail!(
            "{}: --clip holds {} tensors that are not CLIP's image encoder (e.g. {}): a complete state dict goes in with --weights, trained parameters with --checkpoint",
            clip.display(),
            not_clip.len(),
            not_clip.iter().take(3).copied().collect::<Vec<_>>().join(", ")
        );
    }
    eprintln!("loaded {} CLIP tensors ({:?}) from {}", r.loaded.len(), r.dtypes, clip.display());
    Ok(())
}

/// Loads a checkpoint of trained parameters under the model's keys (a released checkpoint
/// converted to safetensors). The frozen parameters come from `--clip`: a checkpoint that holds
/// some of them is refused unless `replaces_clip` (a fully fine-tuned model).
pub fn checkpoint(model: &mut dyn VideoModel, cfg: &ModelCfg, ck: &Path, replaces_clip: bool) -> anyhow::Result<()> {
    let new = not_in_clip(cfg);
    let frozen: BTreeSet<String> = model.params().into_iter().filter(|p| !p.trainable).map(|p| p.key).collect();
    let r = model.load(ck, &KeyMap::identity(), &|k: &str| !new(k))?;
    let replaced: Vec<&String> = r.loaded.iter().filter(|k| frozen.contains(*k)).collect();
    if !replaced.is_empty() && !replaces_clip {
        let some: Vec<&str> = replaced.iter().take(5).map(|k| k.as_str()).collect();
        bail!(
            "{}: --checkpoint holds {} frozen encoder tensors that would replace the --clip weights (e.g. {}{}); give --checkpoint-replaces-clip if that is meant (a fully fine-tuned model), or remove them from the checkpoint",
            ck.display(),
            replaced.len(),
            some.join(", "),
            if replaced.len() > 5 { ", …" } else { "" }
        );
    }
    eprintln!("loaded {} checkpoint tensors from {}", r.loaded.len(), ck.display());
    if !replaced.is_empty() {
        eprintln!("warning: {} of them replace --clip weights (--checkpoint-replaces-clip)", replaced.len());
    }
    Ok(())
}

/// Whether `path` is a training checkpoint written by this kit (it carries the run's header).
pub fn is_training_checkpoint(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    safetensors::SafeTensors::read_metadata(&bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref().map(|m| m.contains_key(META_KEY)))
        .unwrap_or(false)
}

/// Loads a training checkpoint of this kit into `model` (its trainable parameters; the optimizer
/// state is not needed to evaluate). The checkpoint's model config must be `cfg`.
pub fn training_checkpoint(model: &mut dyn VideoModel, cfg: &ModelCfg, path: &Path) -> anyhow::Result<Checkpoint> {
    let ck = Checkpoint::load(path)?;
    if &ck.header.model != cfg {
        bail!(
            "{}: the checkpoint was trained with another model config than --preset/--config gives (it says:\n{})",
            path.display(),
            crate::registry::to_ron(&ck.header.model)
        );
    }
    for (k, _, v) in &ck.params {
        model.set_values(k, v).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    eprintln!(
        "loaded {} trained tensors from {} (step {}, recipe {})",
        ck.params.len(),
        path.display(),
        ck.header.step,
        ck.header.recipe.name
    );
    Ok(ck)
}
