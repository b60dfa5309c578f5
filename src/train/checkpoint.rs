//! Training checkpoints: everything a run needs to continue exactly where it stopped, in one
//! safetensors file written atomically.
//!
//! Tensors: the trainable parameters under their official keys (so the file also loads as a
//! released checkpoint would: `--checkpoint`), and AdamW's moments under
//! `optimizer.exp_avg.<key>` / `optimizer.exp_avg_sq.<key>` (torch's names). Metadata
//! (`video_adapters.checkpoint`, RON): the model config, the recipe, the seed, the step, the number
//! of samples drawn, AdamW's step count and the skipped items. All randomness of a run derives from
//! (seed, step, sample number) ([`crate::data::rng_for`]), so these numbers are the whole RNG state.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype as StDtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::clip::weights::{write_safetensors, NamedTensor};
use crate::recipe::Recipe;
use crate::registry::ModelCfg;

/// The metadata key holding [`Header`].
pub const META_KEY: &str = "video_adapters.checkpoint";
const EXP_AVG: &str = "optimizer.exp_avg.";
const EXP_AVG_SQ: &str = "optimizer.exp_avg_sq.";

/// What a checkpoint says about its run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// 1 for this layout.
    pub format: u32,
    pub model: ModelCfg,
    pub recipe: Recipe,
    pub seed: u64,
    /// Optimizer steps done.
    pub step: usize,
    /// Samples drawn from the training source so far (skipped ones included): the next sample's
    /// number.
    pub samples: u64,
    /// AdamW's step count (bias correction).
    pub adam_step: u64,
    /// Items skipped so far (`--skip-bad`), with the reason.
    pub skipped: Vec<crate::data::ItemError>,
}

/// A checkpoint in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub header: Header,
    /// Trainable parameters: (key, stored shape, values).
    pub params: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// AdamW moments by key: (exp_avg, exp_avg_sq).
    pub moments: BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

impl Checkpoint {
    /// Writes the checkpoint atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut tensors: Vec<NamedTensor> = self
            .params
            .iter()
            .map(|(k, shape, v)| NamedTensor { name: k.clone(), shape: shape.clone(), values: v.clone() })
            .collect();
        let shapes: BTreeMap<&str, &Vec<usize>> = self.params.iter().map(|(k, s, _)| (k.as_str(), s)).collect();
        for (k, (m, v)) in &self.moments {
            let shape = shapes.get(k.as_str()).map_or(vec![m.len()], |s| (*s).clone());
            tensors.push(NamedTensor { name: format!("{EXP_AVG}{k}"), shape: shape.clone(), values: m.clone() });
            tensors.push(NamedTensor { name: format!("{EXP_AVG_SQ}{k}"), shape, values: v.clone() });
        }
        let header = ron::ser::to_string(&self.header).map_err(|e| anyhow::anyhow!("serialising the header: {e}"))?;
        Ok(write_safetensors(path, &tensors, Some(BTreeMap::from([(META_KEY.to_string(), header)])))?)
    }

    /// Reads a checkpoint; errors name the file and what is wrong with it.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let name = path.display();
        let bytes = crate::input::read_bytes(path)?;
        // a truncated file or trailing bytes, in words
        let st = crate::clip::weights::parse_safetensors(&bytes, path)?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow::anyhow!("{name} is not a safetensors file: {e:?}"))?;
        let header = meta.metadata().as_ref().and_then(|m| m.get(META_KEY)).ok_or_else(|| {
            anyhow::anyhow!("{name} is not a training checkpoint of this kit (no `{META_KEY}` metadata)")
        })?;
        let header: Header = ron::from_str(header).map_err(|e| anyhow::anyhow!("{name}: checkpoint header: {e}"))?;
        if header.format != 1 {
            anyhow::bail!("{name}: checkpoint format {} (this kit reads format 1)", header.format);
        }
        let mut params = Vec::new();
        let mut exp_avg = BTreeMap::new();
        let mut exp_avg_sq = BTreeMap::new();
        let mut names: Vec<String> = st.names().into_iter().cloned().collect();
        names.sort();
        for key in names {
            let t = st.tensor(&key).map_err(|e| anyhow::anyhow!("{name}: tensor `{key}`: {e:?}"))?;
            if t.dtype() != StDtype::F32 {
                anyhow::bail!("{name}: tensor `{key}` is {:?}; checkpoints hold f32", t.dtype());
            }
            let values: Vec<f32> =
                t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if let Some(k) = key.strip_prefix(EXP_AVG_SQ) {
                exp_avg_sq.insert(k.to_string(), values);
            } else if let Some(k) = key.strip_prefix(EXP_AVG) {
                exp_avg.insert(k.to_string(), values);
            } else {
                params.push((key.clone(), t.shape().to_vec(), values));
            }
        }
        let mut moments = BTreeMap::new();
        for (k, m) in exp_avg {
            let v = exp_avg_sq
                .remove(&k)
                .ok_or_else(|| anyhow::anyhow!("{name}: `{EXP_AVG}{k}` has no `{EXP_AVG_SQ}{k}`"))?;
            moments.insert(k, (m, v));
        }
        if let Some(k) = exp_avg_sq.keys().next() {
            anyhow::bail!("{name}: `{EXP_AVG_SQ}{k}` has no `{EXP_AVG}{k}`");
        }
        Ok(Self { header, params, moments })
    }
}

/// sha256 of a file, hex (what the results file records of the weights evaluated).
pub fn file_sha256(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
