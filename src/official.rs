//! Reading the keyword arguments of the official constructors (`constructor_kwargs` in a parity
//! fixture's `meta.json`): every keyword must be known to the port, and every value has the
//! official type. Errors name the keyword.

use anyhow::{bail, Context};
use serde_json::{Map, Value};

use crate::clip::ClipCfg;
use crate::input::Validate;

/// The keyword arguments of one official constructor.
pub struct Kwargs<'a> {
    /// What they construct, for messages: "ST-Adapter VisionTransformer", "AIM backbone".
    what: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> Kwargs<'a> {
    /// `value` must be an object whose keys are all in `known`.
    pub fn new(what: &'a str, value: Option<&'a Value>, known: &[&str]) -> anyhow::Result<Self> {
        let map = value.and_then(|v| v.as_object()).with_context(|| format!("{what}: keyword arguments missing"))?;
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            bail!("{what} keyword `{k}` is not supported by this port");
        }
        Ok(Self { what, map })
    }

    /// A required non-negative integer.
    pub fn int(&self, k: &str) -> anyhow::Result<usize> {
        self.opt_int(k)?.with_context(|| format!("{}: keyword `{k}` missing", self.what))
    }

    /// An optional non-negative integer.
    pub fn opt_int(&self, k: &str) -> anyhow::Result<Option<usize>> {
        self.map
            .get(k)
            .map(|v| v.as_u64().map(|v| v as usize).with_context(|| format!("{}: `{k}` is not an integer", self.what)))
            .transpose()
    }

    /// A number, `default` when absent.
    pub fn num(&self, k: &str, default: f64) -> anyhow::Result<f64> {
        self.map
            .get(k)
            .map_or(Ok(default), |v| v.as_f64().with_context(|| format!("{}: `{k}` is not a number", self.what)))
    }

    /// A required boolean.
    pub fn flag(&self, k: &str) -> anyhow::Result<bool> {
        self.map
            .get(k)
            .with_context(|| format!("{}: keyword `{k}` missing", self.what))?
            .as_bool()
            .with_context(|| format!("{}: `{k}` is not a bool", self.what))
    }

    /// An optional string.
    pub fn opt_str(&self, k: &str) -> anyhow::Result<Option<&'a str>> {
        self.map.get(k).map(|v| v.as_str().with_context(|| format!("{}: `{k}` is not a string", self.what))).transpose()
    }

    /// A required list of integers.
    pub fn ints(&self, k: &str) -> anyhow::Result<Vec<usize>> {
        let list = self.map.get(k).with_context(|| format!("{}: keyword `{k}` missing", self.what))?;
        let list = list.as_array().with_context(|| format!("{}: `{k}` is not a list", self.what))?;
        list.iter()
            .map(|v| {
                v.as_u64().map(|v| v as usize).with_context(|| format!("{}: `{k}` has a non-integer entry", self.what))
            })
            .collect()
    }

    /// The ViT shape every official constructor takes (`input_resolution`, `patch_size`, `width`,
    /// `layers`, `heads`), as a CLIP config, validated.
    pub fn clip(&self) -> anyhow::Result<ClipCfg> {
        let clip = ClipCfg {
            input_resolution: self.int("input_resolution")?,
            patch_size: self.int("patch_size")?,
            width: self.int("width")?,
            layers: self.int("layers")?,
            heads: self.int("heads")?,
            ..ClipCfg::vit_b16()
        };
        clip.validate().map_err(|e| anyhow::anyhow!("{}: {e}", self.what))?;
        Ok(clip)
    }
}
