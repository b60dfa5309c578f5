//! Training recipes: the settings a training run uses besides the model (optimizer, batch, schedule,
//! augmentation, test views), as presets named after the paper settings they follow.

use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::input::{ensure, ensure_count, ConfigError, InputError, Validate};
use crate::optim::AdamWCfg;

/// How training frames are resized before the crop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Resize {
    /// Scale the short side to a random length in [min, max], then crop (K400).
    ShortSideJitter { min: usize, max: usize },
    /// torchvision-style RandomResizedCrop to the crop size (SSv2).
    RandomResizedCrop,
}

/// How the frames of a clip are picked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum Sampling {
    /// Every `stride`-th frame: 16 for 8 frames, 8 for 16, 4 for 32 (K400).
    Stride { by_frames: Vec<(usize, usize)> },
    /// Frames spread evenly over the whole video (SSv2).
    Uniform,
}

/// A training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub optimizer: AdamWCfg,
    pub batch_size: usize,
    pub steps: usize,
    pub resize: Resize,
    pub crop: usize,
    pub sampling: Sampling,
    pub mirror: bool,
    pub rand_augment: bool,
    /// Test views: (temporal clips, spatial crops).
    pub test_views: (usize, usize),
}

impl Validate for Recipe {
    fn validate(&self) -> Result<(), ConfigError> {
        self.optimizer.validate().map_err(|e| e.within("optimizer"))?;
        ensure_count(self.batch_size, "batch_size", 1 << 16)?;
        ensure_count(self.steps, "steps", 1 << 30)?;
        ensure_count(self.crop, "crop", 1 << 13)?;
        if let Resize::ShortSideJitter { min, max } = self.resize {
            ensure_count(min, "resize.ShortSideJitter.min", 1 << 13)?;
            ensure(min <= max && max <= 1 << 13, "resize.ShortSideJitter.max", || {
                format!("must be from min ({min}) to {}, is {max}", 1 << 13)
            })?;
            ensure(min >= self.crop, "resize.ShortSideJitter.min", || {
                format!("{min} is smaller than the crop {} (the short side must hold the crop)", self.crop)
            })?;
        }
        if let Sampling::Stride { by_frames } = &self.sampling {
            ensure(!by_frames.is_empty(), "sampling.Stride.by_frames", || {
                "is empty: give (frames, stride) pairs".into()
            })?;
            for (i, (frames, stride)) in by_frames.iter().enumerate() {
                ensure_count(*frames, &format!("sampling.Stride.by_frames[{i}].0"), 1024)?;
                ensure_count(*stride, &format!("sampling.Stride.by_frames[{i}].1"), 1024)?;
            }
        }
        ensure_count(self.test_views.0, "test_views.0", 100)?;
        ensure_count(self.test_views.1, "test_views.1", 100)
    }
}

impl Recipe {
    /// Reads a RON recipe and validates it; errors name the file and the field.
    pub fn from_ron_file(path: &Path) -> Result<Self, InputError> {
        crate::input::read_ron(path)
    }

    /// ST-Adapter on Kinetics-400 with ViT-B/16 (ST-Adapter appendix, Table 8).
    pub fn st_k400_vit_b() -> Self {
        Self {
            optimizer: AdamWCfg { lr: 5e-4, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 1e-2 },
            batch_size: 128,
            steps: 20_000,
            resize: Resize::ShortSideJitter { min: 224, max: 256 },
            crop: 224,
            sampling: Sampling::Stride { by_frames: vec![(8, 16), (16, 8), (32, 4)] },
            mirror: true,
            rand_augment: false,
            test_views: (3, 1),
        }
    }
    /// ST-Adapter, Kinetics-400, ViT-L: as ViT-B, 40k steps.
    pub fn st_k400_vit_l() -> Self {
        Self { steps: 40_000, ..Self::st_k400_vit_b() }
    }
    /// ST-Adapter, Something-Something v2, ViT-B: RandomResizedCrop, uniform sampling, no mirror,
    /// RandAugment, 50k steps, 1 temporal × 3 spatial test views.
    pub fn st_ssv2_vit_b() -> Self {
        Self {
            steps: 50_000,
            resize: Resize::RandomResizedCrop,
            sampling: Sampling::Uniform,
            mirror: false,
            rand_augment: true,
            test_views: (1, 3),
            ..Self::st_k400_vit_b()
        }
    }
    /// ST-Adapter, Something-Something v2, ViT-L: as ViT-B.
    pub fn st_ssv2_vit_l() -> Self {
        Self::st_ssv2_vit_b()
    }
}
