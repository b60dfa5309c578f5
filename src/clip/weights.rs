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
use crate::input::InputError;
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

/// Everything wrong between a weights file and a model, by key, with hints for common causes.
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
    /// (key, index of the first NaN or infinity, its value, how many)
    pub non_finite: Vec<(String, String, f64, usize)>,
    /// Likely causes, in words (a key prefix, another model size).
    pub hints: Vec<String>,
}

/// Lines printed per kind of problem; the rest are counted.
pub const LINES_PER_KIND: usize = 10;

impl WeightsError {
    fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.bad_dtype.is_empty()
            && self.non_finite.is_empty()
    }
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            (self.missing.len(), "missing"),
            (self.unexpected.len(), "unexpected"),
            (self.mismatched.len(), "mis-shaped"),
            (self.bad_dtype.len(), "of an unsupported dtype"),
            (self.non_finite.len(), "with NaN or infinite values"),
        ];
        let summary: Vec<String> =
            kinds.iter().filter(|(n, _)| *n > 0).map(|(n, what)| format!("{n} {what}")).collect();
        writeln!(f, "cannot load weights from {}: keys {}", self.file.display(), summary.join(", "))?;
        for h in &self.hints {
            writeln!(f, "  hint: {h}")?;
        }
        fn list<T>(f: &mut fmt::Formatter<'_>, items: &[T], line: impl Fn(&T) -> String) -> fmt::Result {
            for item in items.iter().take(LINES_PER_KIND) {
                writeln!(f, "  {}", line(item))?;
            }
            if items.len() > LINES_PER_KIND {
                writeln!(f, "  … and {} more", items.len() - LINES_PER_KIND)?;
            }
            Ok(())
        }
        list(f, &self.missing, |(k, s)| format!("missing key `{k}` (expected shape {s:?})"))?;
        list(f, &self.unexpected, |(k, s)| format!("unexpected key `{k}` (shape {s:?})"))?;
        list(f, &self.mismatched, |(k, want, got)| {
            format!("shape mismatch for `{k}`: model expects {want:?}, file has {got:?}")
        })?;
        list(f, &self.bad_dtype, |(k, d)| {
            format!("unsupported dtype {d} for `{k}` (f16, bf16, f32 and f64 are read)")
        })?;
        list(f, &self.non_finite, |(k, at, v, n)| {
            format!("`{k}` holds {n} non-finite value(s); the first is {v} at {at}")
        })?;
        Ok(())
    }
}

impl std::error::Error for WeightsError {}

impl WeightsError {
    /// Words for the patterns behind most mismatches: a prefix on every key of one side (a
    /// `module.` from DataParallel, a whole CLIP checkpoint's `visual.`, AIM's `backbone.`), and
    /// a file saved from a model of another size.
    fn find_hints(&mut self, file_keys: &BTreeMap<String, (StDtype, Vec<usize>)>, shared: usize) {
        let missing: BTreeSet<&str> = self.missing.iter().map(|(k, _)| k.as_str()).collect();
        let mismatched: BTreeSet<&str> = self.mismatched.iter().map(|(k, _, _)| k.as_str()).collect();
        let unexpected: BTreeSet<&str> = self.unexpected.iter().map(|(k, _)| k.as_str()).collect();
        let wanted = |k: &str| missing.contains(k) || mismatched.contains(k);
        // file keys = prefix + model keys
        let mut extra: BTreeMap<&str, usize> = BTreeMap::new();
        for u in &unexpected {
            for (i, _) in u.match_indices('.') {
                if wanted(&u[i + 1..]) {
                    *extra.entry(&u[..=i]).or_default() += 1;
                }
            }
        }
        if let Some((p, n)) = extra.into_iter().max_by_key(|(_, n)| *n).filter(|(_, n)| 2 * n >= missing.len().max(1)) {
            let why = match p {
                "module." => " (a checkpoint saved from a DataParallel / DistributedDataParallel wrapper; scripts/convert_checkpoint.py removes it)",
                "visual." => " (a whole OpenAI CLIP checkpoint: with `forward`, pass --clip FILE --clip-prefix visual.)",
                "backbone." => " (an AIM checkpoint: its encoder sits under `backbone.`)",
                _ => "",
            };
            self.hints.push(format!(
                "{n} keys of the file are the model's keys with the prefix `{p}` in front{why}: load with that prefix, or strip it from the file"
            ));
        }
        // model keys = prefix + file keys
        let mut lacking: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &missing {
            for (i, _) in m.match_indices('.') {
                if unexpected.contains(&m[i + 1..]) || file_keys.contains_key(&m[i + 1..]) {
                    *lacking.entry(&m[..=i]).or_default() += 1;
                }
            }
        }
        if let Some((p, n)) = lacking.into_iter().max_by_key(|(_, n)| *n).filter(|(_, n)| 2 * n >= missing.len().max(1))
        {
            let why = match p {
                "backbone." => {
                    " (AIM keeps its encoder under `backbone.`: a plain CLIP encoder file goes in with --clip)"
                }
                _ => "",
            };
            self.hints.push(format!("{n} keys the model expects are file keys with the prefix `{p}` added{why}"));
        }
        if file_keys.contains_key("token_embedding.weight") || file_keys.contains_key("text_projection") {
            self.hints.push(
                "the file holds CLIP's text tower (`token_embedding`, `text_projection`): it is a whole CLIP checkpoint, whose image encoder sits under `visual.`".into(),
            );
        }
        // another model size: most shared tensors differ in shape
        if !self.mismatched.is_empty() && 2 * self.mismatched.len() >= shared {
            let width = |key_end: &str, side: usize| {
                self.mismatched
                    .iter()
                    .find(|(k, _, _)| k.ends_with(key_end))
                    .map(|(_, w, g)| if side == 0 { w[0] } else { g[0] })
            };
            let layers = |keys: &mut dyn Iterator<Item = &str>| {
                keys.filter_map(|k| k.split("resblocks.").nth(1)?.split('.').next()?.parse::<usize>().ok())
                    .max()
                    .map(|m| m + 1)
            };
            let file_layers = layers(&mut file_keys.keys().map(|k| k.as_str()));
            let model_layers =
                layers(&mut self.missing.iter().map(|(k, _)| k.as_str()).chain(mismatched.iter().copied()));
            let mut s = format!(
                "{} of the {shared} tensors the file and the model share differ in shape: the file was saved from a model of another size than the config",
                self.mismatched.len()
            );
            if let (Some(m), Some(w)) = (width("class_embedding", 0), width("class_embedding", 1)) {
                s += &format!(" (width: the config {m}, the file {w}");
                if let (Some(ml), Some(fl)) = (model_layers, file_layers) {
                    s += &format!("; layers: the config {ml}, the file {fl}");
                }
                s += "); check the config's `clip`";
            }
            self.hints.push(s);
        }
    }
}

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
/// Every value loaded must be finite. Nothing is changed unless everything fits.
pub fn load_params<E: Real, D: KitDevice<E>, M: Params<E, D>>(
    model: &mut M,
    path: &Path,
    map: &KeyMap,
    fresh: impl Fn(&str) -> bool,
) -> Result<LoadReport, InputError> {
    let bytes = crate::input::read_bytes(path)?;
    let st = parse_safetensors(&bytes, path)?;
    let file: BTreeMap<String, (StDtype, Vec<usize>)> =
        st.tensors().into_iter().map(|(k, v)| (k, (v.dtype(), v.shape().to_vec()))).collect();
    let mut err = WeightsError { file: path.to_path_buf(), ..Default::default() };

    // 1. check everything before touching the model
    struct Plan<'a, 'b> {
        map: &'a KeyMap,
        fresh: &'a dyn Fn(&str) -> bool,
        file: &'a BTreeMap<String, (StDtype, Vec<usize>)>,
        st: &'a SafeTensors<'b>,
        err: &'a mut WeightsError,
        used: BTreeSet<String>,
        report: LoadReport,
    }
    impl<'a, 'b, E: Real, D: KitDevice<E>> Visitor<E, D> for Plan<'a, 'b> {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, E, D>) {
            let fk = self.map.file_key(key);
            match fk.as_ref().and_then(|fk| self.file.get(fk).map(|v| (fk, v))) {
                Some((fk, (dtype, shape))) => {
                    self.used.insert(fk.clone());
                    if shape != &p.stored_shape {
                        self.err.mismatched.push((fk.clone(), p.stored_shape.clone(), shape.clone()));
                    } else if !matches!(dtype, StDtype::F16 | StDtype::BF16 | StDtype::F32 | StDtype::F64) {
                        self.err.bad_dtype.push((fk.clone(), format!("{dtype:?}")));
                    } else if let Some((i, v, n)) =
                        self.st.tensor(fk).ok().and_then(|view| non_finite(view.dtype(), view.data()))
                    {
                        let at = crate::input::Index(i, shape).to_string();
                        self.err.non_finite.push((fk.clone(), at, v, n));
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
    let mut plan = Plan {
        map,
        fresh: &fresh,
        file: &file,
        st: &st,
        err: &mut err,
        used: BTreeSet::new(),
        report: LoadReport::default(),
    };
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
        err.find_hints(&file, used.len());
        return Err(err.into());
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

/// Parses safetensors bytes read from `path`, saying in words what is wrong with a broken file:
/// shorter than its header says (truncated), bytes after the data, a header that is not JSON.
pub fn parse_safetensors<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>, InputError> {
    use safetensors::SafeTensorError as S;
    let bad = |m: String| InputError::unusable(path, format!("not a readable safetensors file: {m}"));
    let len = bytes.len();
    if len < 8 {
        return Err(bad(format!(
            "the file is {len} bytes long, shorter than the 8-byte header length it must start with"
        )));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if n.saturating_add(8) > len as u64 {
        return Err(bad(format!(
            "its first 8 bytes announce a {n}-byte header but the file has only {} bytes after them (truncated, or not a safetensors file)",
            len - 8
        )));
    }
    match SafeTensors::deserialize(bytes) {
        Ok(st) => Ok(st),
        Err(S::MetadataIncompleteBuffer) => {
            // the tensors' data must end exactly at the end of the file
            let header = std::str::from_utf8(&bytes[8..8 + n as usize]).ok();
            let end = header
                .and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
                .and_then(|v| {
                    v.as_object()?
                        .iter()
                        .filter(|(k, _)| *k != "__metadata__")
                        .filter_map(|(_, t)| t.get("data_offsets")?.get(1)?.as_u64())
                        .max()
                })
                .unwrap_or(0);
            let need = 8 + n + end;
            if (len as u64) < need {
                Err(bad(format!(
                    "the file is shorter than its header says: {len} bytes, the header describes {need} (truncated: {} bytes missing)",
                    need - len as u64
                )))
            } else {
                Err(bad(format!(
                    "{} extra bytes after the tensor data (the header describes {need} bytes, the file has {len})",
                    len as u64 - need
                )))
            }
        }
        Err(S::InvalidHeader) => Err(bad("the header is not UTF-8 text".into())),
        Err(S::InvalidHeaderStart | S::InvalidHeaderDeserialization | S::JsonError(_)) => {
            Err(bad("the header is not the JSON table of tensors safetensors files start with".into()))
        }
        Err(S::HeaderTooLarge) => Err(bad(format!("its first 8 bytes announce a header of {n} bytes (over 100 MB)"))),
        Err(S::InvalidOffset(k)) => Err(bad(format!("the data offsets of tensor `{k}` overlap or leave gaps"))),
        Err(S::TensorInvalidInfo) => Err(bad("a tensor's byte range does not match its shape and dtype".into())),
        Err(e) => Err(bad(format!("{e:?}"))),
    }
}

/// The first NaN or infinity of little-endian f16 / bf16 / f32 / f64 data: (index, value, count).
fn non_finite(dtype: StDtype, data: &[u8]) -> Option<(usize, f64, usize)> {
    let mut first = None;
    let mut n = 0;
    let mut note = |i: usize, v: f64| {
        if !v.is_finite() {
            n += 1;
            first.get_or_insert((i, v));
        }
    };
    match dtype {
        StDtype::F16 => {
            data.chunks_exact(2).enumerate().for_each(|(i, b)| note(i, half::f16::from_le_bytes([b[0], b[1]]).to_f64()))
        }
        StDtype::BF16 => data
            .chunks_exact(2)
            .enumerate()
            .for_each(|(i, b)| note(i, half::bf16::from_le_bytes([b[0], b[1]]).to_f64())),
        StDtype::F32 => data
            .chunks_exact(4)
            .enumerate()
            .for_each(|(i, b)| note(i, f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)),
        StDtype::F64 => data
            .chunks_exact(8)
            .enumerate()
            .for_each(|(i, b)| note(i, f64::from_le_bytes(b.try_into().expect("8 bytes")))),
        _ => {}
    }
    first.map(|(i, v)| (i, v, n))
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

/// Writes f32 tensors to `path` atomically ([`crate::io::write_atomic`]): a temporary file in
/// the same folder, flushed, then renamed, so a crash never leaves a truncated file under the final
/// name and an error leaves nothing behind; a directory as `path` is refused.
pub fn write_safetensors(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: Option<BTreeMap<String, String>>,
) -> Result<(), InputError> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            safetensors::tensor::TensorView::new(StDtype::F32, t.shape.clone(), b).map(|v| (t.name.clone(), v)).map_err(
                |e| {
                    InputError::tensor(
                        path,
                        &t.name,
                        format!("shape {:?} does not hold {} values: {e:?}", t.shape, t.values.len()),
                    )
                },
            )
        })
        .collect::<Result<Vec<_>, InputError>>()?;
    let meta = metadata.map(|m| m.into_iter().collect());
    let data = safetensors::serialize(views, &meta)
        .map_err(|e| InputError::unusable(path, format!("cannot serialise the tensors: {e:?}")))?;
    crate::io::write_atomic(path, &data)
}

/// Tensors by key, each as (shape, row-major values).
pub type TensorMap = BTreeMap<String, (Vec<usize>, Vec<f64>)>;

/// Reads every f16/bf16/f32/f64 tensor of a safetensors file as f64 (for inputs and fixtures).
pub fn read_all(path: &Path) -> Result<TensorMap, InputError> {
    let bytes = crate::input::read_bytes(path)?;
    let st = parse_safetensors(&bytes, path)?;
    let mut out = BTreeMap::new();
    for (k, v) in st.tensors() {
        if !matches!(v.dtype(), StDtype::F16 | StDtype::BF16 | StDtype::F32 | StDtype::F64) {
            return Err(InputError::tensor(
                path,
                &k,
                format!("dtype {:?}; expected a float type (f16, bf16, f32, f64)", v.dtype()),
            ));
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
