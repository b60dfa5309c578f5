//! `clips`: see what the model sees — a video's frame count and fps, the frames every view samples,
//! a PNG contact sheet per view (the preprocessed frames, un-normalised for display), and optionally
//! the views as the tensor the model takes.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;

use crate::count::Views;
use crate::recipe::Recipe;
use crate::video::source::load_frames;
use crate::video::transform::{CLIP_MEAN, CLIP_STD, MMA_MEAN, MMA_STD};
use crate::video::{Pipeline, Spatial};

/// Show what a test pipeline (or a recipe's training augmentation) makes of a video: frame count,
/// fps, the sampled frame indices of every view, a PNG contact sheet per view, the tensor.
///
/// Examples:
///   clips video.mp4 --pipeline st_k400_test --sheets out/      (indices + out/view0.png …)
///   clips --length 300 --recipe aim_k400_vit_b                  (indices for a 300-frame video)
///   clips video.mp4 --recipe st_k400_vit_b --train --seed 3 --sheets out/
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    /// The video file.
    #[arg(required_unless_present = "length", conflicts_with = "length")]
    pub video: Option<PathBuf>,
    /// Print the indices for a video of N frames, without a file.
    #[arg(long, value_parser = crate::input::count(1..=10_000_000))]
    pub length: Option<usize>,
    /// A test pipeline: st_k400_test, st_ssv2_test, aim_k400_test, aim_ssv2_test, or a RON file.
    #[arg(long, required_unless_present = "recipe", conflicts_with = "recipe")]
    pub pipeline: Option<String>,
    /// A recipe (preset or RON file): its test pipeline, or with --train its training augmentation.
    #[arg(long)]
    pub recipe: Option<String>,
    /// Other views than the pipeline's: FRAMESxCLIPSxCROPS.
    #[arg(long, conflicts_with = "train")]
    pub views: Option<Views>,
    /// Show one training clip of the recipe (sampling and augmentation drawn from --seed).
    #[arg(long, requires = "recipe")]
    pub train: bool,
    /// Seed of the training draws (--train).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write one contact sheet per view into this folder: view<k>.png, the view's frames left to right.
    #[arg(long)]
    pub sheets: Option<PathBuf>,
    /// Side of each frame in the contact sheets, in pixels (frames are shrunk for display).
    #[arg(long, default_value_t = 112, value_parser = crate::input::count(8..=1024))]
    pub tile: usize,
    /// Write the views as safetensors: `video` (V, 3, T, S, S), as `forward --input` reads it.
    #[arg(long)]
    pub tensor: Option<PathBuf>,
}

/// A view as shown: its label, its frame indices, its tensor `(3, T, S, S)`.
type ShownView = (String, Vec<usize>, Vec<f32>);

/// What `clips` prints; writes the files asked for.
pub fn run(a: &Args) -> anyhow::Result<String> {
    let recipe = a.recipe.as_deref().map(Recipe::named_or_file).transpose()?;
    let pipeline = match (&a.pipeline, &recipe) {
        (Some(p), _) => Pipeline::named_or_file(p)?,
        (None, Some(r)) => r.test.clone(),
        (None, None) => anyhow::bail!("give --pipeline or --recipe"),
    };
    let pipeline = match a.views {
        Some(v) => pipeline.with_views(v)?,
        None => pipeline,
    };
    let mut out = String::new();
    if let Some(n) = a.length {
        if a.train {
            let r = recipe.as_ref().expect("--train requires --recipe");
            let idx = r.train.indices(n, &mut crate::data::rng_for(a.seed, 0, 0))?;
            writeln!(out, "recipe {} training clip (seed {}), {n} frames: {idx:?}", r.name, a.seed)?;
        } else {
            writeln!(out, "pipeline {} ({} views), {n} frames:", pipeline.name, pipeline.views_spec())?;
            for (k, v) in pipeline.views(n)?.iter().enumerate() {
                writeln!(out, "  view {k} (clip {}, crop {}): {:?}", v.temporal, v.spatial, v.frames)?;
            }
        }
        return Ok(out);
    }
    let path = a.video.as_ref().expect("clap: a video or --length");
    let info = crate::video::decode::probe(path)?;
    writeln!(
        out,
        "{}: {} frames, {:.3} fps, {}x{}, {} {}",
        path.display(),
        info.frames,
        info.fps,
        info.width,
        info.height,
        info.codec,
        info.pix_fmt
    )?;
    // (indices, tensor (3, T, S, S), how to un-normalise) per view
    let (size, spatial, views): (usize, Spatial, Vec<ShownView>) = if a.train {
        let r = recipe.as_ref().expect("--train requires --recipe");
        let mut rng = crate::data::rng_for(a.seed, 0, 0);
        let mut idx = Vec::new();
        let frames = load_frames(path, |n| {
            idx = r.train.indices(n, &mut rng)?;
            Ok(vec![idx.clone()])
        })?;
        let clip = r.train.apply(&frames[0], &mut rng)?;
        let (size, spatial) = match r.train {
            crate::video::TrainPipeline::St { size, .. } => (size, Spatial::St { size, three_crop: false }),
            crate::video::TrainPipeline::Mma { short, crop, .. } => {
                (crop, Spatial::Mma { short, crop, three_crop: false })
            }
        };
        writeln!(out, "recipe {} training clip (seed {}):", r.name, a.seed)?;
        (size, spatial, vec![("training clip".into(), idx, clip)])
    } else {
        let mut views = Vec::new();
        let frames = load_frames(path, |n| {
            views = pipeline.views(n)?;
            Ok(views.iter().map(|v| v.frames.clone()).collect())
        })?;
        writeln!(out, "pipeline {} ({} views):", pipeline.name, pipeline.views_spec())?;
        let mut v = Vec::new();
        for (view, f) in views.iter().zip(&frames) {
            let label = format!("clip {}, crop {}", view.temporal, view.spatial);
            v.push((label, view.frames.clone(), pipeline.apply(f, view)?));
        }
        (pipeline.spatial.size(), pipeline.spatial, v)
    };
    for (k, (label, idx, _)) in views.iter().enumerate() {
        writeln!(out, "  view {k} ({label}): {idx:?}")?;
    }
    if let Some(dir) = &a.sheets {
        std::fs::create_dir_all(dir).map_err(|e| crate::input::InputError::io(dir, "create", e))?;
        for (k, (_, idx, clip)) in views.iter().enumerate() {
            let png = contact_sheet(clip, idx.len(), size, &spatial, a.tile)?;
            let file = dir.join(format!("view{k}.png"));
            crate::io::write_atomic(&file, &png)?;
            writeln!(out, "  wrote {}", file.display())?;
        }
    }
    if let Some(file) = &a.tensor {
        let t = views[0].1.len();
        let values: Vec<f32> = views.iter().flat_map(|v| v.2.iter().copied()).collect();
        let tensor = crate::clip::weights::NamedTensor {
            name: "video".into(),
            shape: vec![views.len(), 3, t, size, size],
            values,
        };
        crate::clip::weights::write_safetensors(file, &[tensor], None)?;
        writeln!(out, "  wrote {} (video: {}x3x{t}x{size}x{size})", file.display(), views.len())?;
    }
    Ok(out)
}

// ANCHOR: contact_sheet
/// A view `(3, T, S, S)` as a PNG: its T frames left to right, each shrunk to `tile`×`tile`, the
/// normalisation undone (`x·std + mean`, ×255 for ST-Adapter's 0..1 statistics) and clamped to 0..255.
pub fn contact_sheet(clip: &[f32], t: usize, s: usize, spatial: &Spatial, tile: usize) -> anyhow::Result<Vec<u8>> {
    let (mean, std, scale) = match spatial {
        Spatial::St { .. } => (CLIP_MEAN, CLIP_STD, 255.0),
        Spatial::Mma { .. } => (MMA_MEAN, MMA_STD, 1.0),
    };
    let mut sheet = image::RgbImage::new((t * tile) as u32, tile as u32);
    for k in 0..t {
        let frame = image::RgbImage::from_fn(s as u32, s as u32, |x, y| {
            let px = |c: usize| {
                let v = clip[((c * t + k) * s + y as usize) * s + x as usize];
                ((v * std[c] + mean[c]) * scale).round().clamp(0.0, 255.0) as u8
            };
            image::Rgb([px(0), px(1), px(2)])
        });
        let small = image::imageops::resize(&frame, tile as u32, tile as u32, image::imageops::FilterType::Triangle);
        image::imageops::replace(&mut sheet, &small, (k * tile) as i64, 0);
    }
    let mut png = Vec::new();
    sheet.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}
// ANCHOR_END: contact_sheet
