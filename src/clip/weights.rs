//! Loading and writing safetensors by official key.
//!
//! Loading is strict: every parameter the model expects from the file must be there with the shape
//! the official code stores it under, and every tensor under the file's prefix must be used (or
//! explicitly ignored, like CLIP's `proj`). All problems are reported at once, by key and shape.
//! f16, bf16, f32 and f64 tensors are converted to the model's element type.
//!
//! dfdx's own `load_safetensors` needs every key, checks shapes but not dtypes (an f16 tensor loaded
//! into f32 panics) and knows only its own key names; hence this module.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use dfdx::prelude::*;
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::device::{KitDevice, Real};
use crate::param::{visit, visit_mut, Param, Params, Visitor, VisitorMut};

// ANCHOR: key_map
/// How model keys map to file keys: a model key `model_prefix + k` is read from `file_prefix + k`.
///
/// OpenAI's CLIP checkpoint converted whole keeps the encoder under `visual.`; AIM's model keeps it
/// under `backbone.`. Model keys outside `model_prefix` are not in the file.
#[derive(Clone, Debug, Default)]
pub struct KeyMap {
    pub model_prefix: String,
    pub file_prefix: String,
    /// File keys (after `file_prefix`) that are present but not used, e.g. CLIP's `proj`.
    pub ignore: Vec<String>,
}

impl KeyMap {
    /// Model keys are file keys.
    pub fn identity() -> Self {
        Self::default()
    }

    /// The file key for a model key, if the model key is meant to come from this file.
    pub fn file_key(&self, model_key: &str) -> Option<String> {
        model_key.strip_prefix(self.model_prefix.as_str()).map(|k| format!("{}{k}", self.file_prefix))
    }
}
// ANCHOR_END: key_map

/// Everything wrong with a weights file, by key.
#[derive(Debug, Default)]
pub struct WeightsError {
    pub file: PathBuf,
    /// (key, expected shape)
    pub missing: Vec<(String, Vec<usize>)>,
    /// (key, shape in file)
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// (key, expected, found)
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    /// (key, dtype)
    pub bad_dtype: Vec<(String, String)>,
    /// unreadable file or header
    pub io: Option<String>,
}

impl WeightsError {
    fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.bad_dtype.is_empty()
            && self.io.is_none()
    }
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "cannot load weights from {}:", self.file.display())?;
        if let Some(e) = &self.io {
            writeln!(f, "  {e}")?;
        }
        for (k, s) in &self.missing {
            writeln!(f, "  missing key `{k}` (expected shape {s:?})")?;
        }
        for (k, s) in &self.unexpected {
            writeln!(f, "  unexpected key `{k}` (shape {s:?})")?;
        }
        for (k, want, got) in &self.mismatched {
            writeln!(f, "  shape mismatch for `{k}`: model expects {want:?}, file has {got:?}")?;
        }
        for (k, d) in &self.bad_dtype {
            writeln!(f, "  unsupported dtype {d} for `{k}` (f16, bf16, f32 and f64 are read)")?;
        }
        Ok(())
    }
}

impl std::error::Error for WeightsError {}

/// What a successful load did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model keys read from the file.
    pub loaded: Vec<String>,
    /// Model keys not in the file that keep their initial values (`fresh` said so).
    pub kept: Vec<String>,
    /// File keys present and ignored by request.
    pub ignored: Vec<String>,
    /// Source dtypes seen, e.g. {"F16"}.
    pub dtypes: BTreeSet<String>,
}

/// Loads `path` into `model`. Model keys for which `fresh(key)` is true may be absent from the
/// file (new adapters, a new head) and then keep their values; any other absent key is an error.
pub fn load_params<E: Real, D: KitDevice<E>, M: Params<E, D>>(
    model: &mut M,
    path: &Path,
    map: &KeyMap,
    fresh: impl Fn(&str) -> bool,
) -> Result<LoadReport, WeightsError> {
    let mut err = WeightsError { file: path.to_path_buf(), ..Default::default() };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            err.io = Some(format!("cannot read the file: {e}"));
            return Err(err);
        }
    };
    let st = match SafeTensors::deserialize(&bytes) {
        Ok(st) => st,
        Err(e) => {
            err.io = Some(format!("not a safetensors file: {e:?}"));
            return Err(err);
        }
    };
    let file: BTreeMap<String, (StDtype, Vec<usize>)> =
        st.tensors().into_iter().map(|(k, v)| (k, (v.dtype(), v.shape().to_vec()))).collect();

    // 1. check everything before touching the model
    struct Plan<'a> {
        map: &'a KeyMap,
        fresh: &'a dyn Fn(&str) -> bool,
        file: &'a BTreeMap<String, (StDtype, Vec<usize>)>,
        err: &'a mut WeightsError,
        used: BTreeSet<String>,
        report: LoadReport,
    }
    impl<'a, E: Real, D: KitDevice<E>> Visitor<E, D> for Plan<'a> {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            let fk = self.map.file_key(key);
            match fk.as_ref().and_then(|fk| self.file.get(fk).map(|v| (fk, v))) {
                Some((fk, (dtype, shape))) => {
                    self.used.insert(fk.clone());
                    if shape != &p.stored_shape {
                        self.err.mismatched.push((fk.clone(), p.stored_shape.clone(), shape.clone()));
                    } else if !matches!(dtype, StDtype::F16 | StDtype::BF16 | StDtype::F32 | StDtype::F64) {
                        self.err.bad_dtype.push((fk.clone(), format!("{dtype:?}")));
                    } else {
                        self.report.loaded.push(key.to_string());
                        self.report.dtypes.insert(format!("{dtype:?}"));
                    }
                }
                None if (self.fresh)(key) => self.report.kept.push(key.to_string()),
                None => self.err.missing.push((fk.unwrap_or_else(|| key.to_string()), p.stored_shape.clone())),
            }
        }
    }
    let mut plan =
        Plan { map, fresh: &fresh, file: &file, err: &mut err, used: BTreeSet::new(), report: LoadReport::default() };
    visit(model, &mut plan);
    let (used, mut report) = (plan.used, plan.report);
    for (k, (_, shape)) in &file {
        let Some(rest) = k.strip_prefix(map.file_prefix.as_str()) else { continue };
        if used.contains(k) {
            continue;
        }
        if map.ignore.iter().any(|i| i == rest) {
            report.ignored.push(k.clone());
        } else {
            err.unexpected.push((k.clone(), shape.clone()));
        }
    }
    if !err.is_empty() {
        return Err(err);
    }

    // 2. copy, converting dtypes
    struct Copy<'a, 'b> {
        map: &'a KeyMap,
        st: &'a SafeTensors<'b>,
    }
    impl<'a, 'b, E: Real, D: KitDevice<E>> VisitorMut<E, D> for Copy<'a, 'b> {
        fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, E, D>) {
            let Some(fk) = self.map.file_key(key) else { return };
            let Ok(view) = self.st.tensor(&fk) else { return };
            let values: Vec<E> = decode(view.dtype(), view.data()).into_iter().map(E::of).collect();
            p.set(&values);
        }
    }
    visit_mut(model, &mut Copy { map, st: &st });
    Ok(report)
}

/// Little-endian bytes of f16 / bf16 / f32 / f64 as f64 values.
fn decode(dtype: StDtype, data: &[u8]) -> Vec<f64> {
    match dtype {
        StDtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f64()).collect(),
        StDtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f64()).collect(),
        StDtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
        StDtype::F64 => data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect(),
        d => unreachable!("dtype {d:?} is rejected before decoding"),
    }
}

/// A named f32 tensor to write.
#[derive(Clone, Debug)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Writes f32 tensors to `path` atomically ([`crate::io::write_atomic`]).
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: Option<BTreeMap<String, String>>,
) -> anyhow::Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| Ok((t.name.clone(), safetensors::tensor::TensorView::new(StDtype::F32, t.shape.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow::anyhow!("bad tensor for {}: {e:?}", path.display()))?;
    let meta = metadata.map(|m| m.into_iter().collect());
    let data =
        safetensors::serialize(views, &meta).map_err(|e| anyhow::anyhow!("serialising {}: {e:?}", path.display()))?;
    crate::io::write_atomic(path, &data)
}

/// Tensors by key, each as (shape, row-major values).
pub type TensorMap = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

/// Reads every f16/bf16/f32/f64 tensor of a safetensors file as f64 (for inputs and fixtures).
pub fn read_all(path: &Path) -> anyhow::Result<TensorMap> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a safetensors file: {e:?}", path.display()))?;
    let mut out = BTreeMap::new();
    for (k, v) in st.tensors() {
        if !matches!(v.dtype(), StDtype::F16 | StDtype::BF16 | StDtype::F32 | StDtype::F64) {
            anyhow::bail!("{}: tensor `{k}` has dtype {:?}; expected a float type", path.display(), v.dtype());
        }
        out.insert(k, (v.shape().to_vec(), decode(v.dtype(), v.data())));
    }
    Ok(out)
}

/// Every parameter as a named f32 tensor under its stored shape (optionally only trainable ones).
pub fn named_params<E: Real, D: KitDevice<E>, M: Params<E, D>>(model: &M, trainable_only: bool) -> Vec<NamedTensor> {
    struct Collect(Vec<NamedTensor>, bool);
    impl<E: Real, D: KitDevice<E>> Visitor<E, D> for Collect {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            if p.trainable || !self.1 {
                self.0.push(NamedTensor {
                    name: key.into(),
                    shape: p.stored_shape.clone(),
                    values: p.to_vec().into_iter().map(|v| v.f64() as f32).collect(),
                });
            }
        }
    }
    let mut c = Collect(Vec::new(), trainable_only);
    visit(model, &mut c);
    c.0
}

/// Keys of OpenAI CLIP's visual encoder (without the `visual.` prefix), as a predicate: what a CLIP
/// checkpoint provides. Everything else in our models (adapters, heads, AIM's temporal embedding)
/// is new and starts from its initialisation.
pub fn is_clip_key(key: &str) -> bool {
    const TOP: [&str; 5] = ["class_embedding", "positional_embedding", "conv1.weight", "ln_pre.", "ln_post."];
    if TOP.iter().any(|t| key == *t || (t.ends_with('.') && key.starts_with(t))) {
        return true;
    }
    let Some(rest) = key.strip_prefix("transformer.resblocks.") else { return false };
    let Some((idx, field)) = rest.split_once('.') else { return false };
    idx.parse::<usize>().is_ok() && ["attn.", "ln_1.", "mlp.", "ln_2."].iter().any(|p| field.starts_with(p))
}
