//! Every model of the kit behind one config enum (read from RON) and one object-safe trait, for the
//! tools that pick a model at run time: the `forward` binary, the parity suite, the reproductions.

use std::path::Path;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::aim::{Aim, AimCfg};
use crate::baselines::{Benchmark, BenchmarkCfg};
use crate::clip::vit::head_lines;
use crate::clip::vit::{Block, FrameBaseline, FrameClassifier, Video};
use crate::clip::weights::{load_params, KeyMap, LoadReport};
use crate::clip::ClipCfg;
use crate::context::Ctx;
use crate::count::{encoder_lines, Breakdown};
use crate::device::{DeviceArg, KitDevice};
use crate::init::Init;
use crate::input::{ensure, ensure_count, ConfigError, InputError, Validate};
use crate::mst_adapter::MstAdapterCfg;
use crate::optim::{AdamW, GradSums};
use crate::param::{param_list, set_trainable, ParamInfo};
use crate::st_adapter::StAdapterCfg;
use crate::with_width;

/// The frame-wise CLIP baseline: frozen encoder, mean of per-frame CLS, `ln_post`, `fc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineCfg {
    pub clip: ClipCfg,
    pub num_classes: usize,
    pub frames: usize,
}

impl BaselineCfg {
    /// Parameters and multiply-adds per view: the frozen encoder, `ln_post`, `fc`.
    pub fn breakdown(&self) -> Breakdown {
        let mut b = Breakdown::new(format!("CLIP {} frame-wise baseline", self.clip.name()), self.frames);
        encoder_lines(&mut b, &self.clip, self.frames, false, "");
        head_lines(&mut b, self.clip.width as u64, self.num_classes as u64, "");
        b
    }
}

impl Validate for BaselineCfg {
    fn validate(&self) -> Result<(), ConfigError> {
        self.clip.validate().map_err(|e| e.within("clip"))?;
        validate_head(self.num_classes, self.frames)
    }
}

/// The fields every model has besides its encoder: `num_classes` and `frames` (frames per view).
pub fn validate_head(num_classes: usize, frames: usize) -> Result<(), ConfigError> {
    ensure_count(num_classes, "num_classes", 1 << 20)?;
    ensure_count(frames, "frames", 1024)
}

/// A model the kit can build, as written in `fixtures/configs/*.ron`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelCfg {
    ClipBaseline(BaselineCfg),
    StAdapter(StAdapterCfg),
    Aim(AimCfg),
    MstAdapter(MstAdapterCfg),
    /// ST-Adapter Table 1's baselines.
    Benchmark(BenchmarkCfg),
}

impl ModelCfg {
    /// The encoder and the class count, which every model has: the one place that names each variant's fields.
    fn common(&self) -> (&ClipCfg, usize) {
        match self {
            ModelCfg::ClipBaseline(c) => (&c.clip, c.num_classes),
            ModelCfg::StAdapter(c) => (&c.clip, c.num_classes),
            ModelCfg::Aim(c) => (&c.clip, c.num_classes),
            ModelCfg::MstAdapter(c) => (&c.clip, c.num_classes),
            ModelCfg::Benchmark(c) => (&c.clip, c.num_classes),
        }
    }

    /// [`ModelCfg::common`], to change.
    fn common_mut(&mut self) -> (&mut ClipCfg, &mut usize) {
        match self {
            ModelCfg::ClipBaseline(c) => (&mut c.clip, &mut c.num_classes),
            ModelCfg::StAdapter(c) => (&mut c.clip, &mut c.num_classes),
            ModelCfg::Aim(c) => (&mut c.clip, &mut c.num_classes),
            ModelCfg::MstAdapter(c) => (&mut c.clip, &mut c.num_classes),
            ModelCfg::Benchmark(c) => (&mut c.clip, &mut c.num_classes),
        }
    }

    pub fn clip(&self) -> &ClipCfg {
        self.common().0
    }

    /// Classes of the classifier head.
    pub fn num_classes(&self) -> usize {
        self.common().1
    }

    /// The same model with a `classes`-way classifier.
    pub fn with_num_classes(&self, classes: usize) -> Self {
        let mut m = self.clone();
        *m.common_mut().1 = classes;
        m
    }

    /// The same model on another backbone shape.
    pub fn with_clip(&self, clip: ClipCfg) -> Self {
        let mut m = self.clone();
        *m.common_mut().0 = clip;
        m
    }

    /// Where the CLIP encoder's keys sit in this model's state dict: "" for the ST-Adapter
    /// codebase's models, "backbone." for AIM's.
    pub fn encoder_prefix(&self) -> &'static str {
        match self {
            ModelCfg::Aim(_) => "backbone.",
            _ => "",
        }
    }

    /// Parameters and multiply-adds per view.
    pub fn breakdown(&self) -> Breakdown {
        match self {
            ModelCfg::ClipBaseline(c) => c.breakdown(),
            ModelCfg::StAdapter(c) => c.breakdown(),
            ModelCfg::Aim(c) => c.breakdown(),
            ModelCfg::MstAdapter(c) => c.breakdown(),
            ModelCfg::Benchmark(c) => c.breakdown(),
        }
    }

    /// Builds the model in f32 on the CPU. The config is validated first (an error names the
    /// field); a width the kit does not compile in is an error too.
    pub fn build(&self, dev: &Cpu, init: &mut Init) -> anyhow::Result<Box<dyn VideoModel>> {
        self.build_on(dev, init)
    }

    /// [`ModelCfg::build`] on the device the user chose (`--device cpu|cuda`).
    pub fn build_for(&self, device: DeviceArg, init: &mut Init) -> anyhow::Result<Box<dyn VideoModel>> {
        match device {
            DeviceArg::Cpu => self.build_on(&Cpu::default(), init),
            DeviceArg::Cuda(ordinal) => {
                // (`ci-check` links no CUDA library: nothing may open a device)
                #[cfg(all(feature = "cuda", not(feature = "ci-check")))]
                return self.build_on(&crate::device::open_cuda(ordinal)?, init);
                #[cfg(any(not(feature = "cuda"), feature = "ci-check"))]
                Err(crate::device::cuda_unavailable(ordinal))
            }
        }
    }

    /// [`ModelCfg::build`] on any device our ops run on (`Cpu`; `Cuda` with feature `cuda`): the same
    /// code, the same initial values (drawn on the host from `init`).
    pub fn build_on<D: KitDevice<f32>>(&self, dev: &D, init: &mut Init) -> anyhow::Result<Box<dyn VideoModel>> {
        self.validate()?;
        let width = self.clip().width;
        fn boxed<M: VideoModel + 'static>(m: Result<M, ConfigError>) -> anyhow::Result<Box<dyn VideoModel>> {
            Ok(Box::new(m?))
        }
        match self {
            ModelCfg::ClipBaseline(c) => {
                with_width!(width, |W| boxed(FrameBaseline::<W, f32, D>::build(&c.clip, c.num_classes, dev, init)))?
            }
            ModelCfg::StAdapter(c) => with_width!(width, |W| boxed(c.build::<W, f32, D>(dev, init)))?,
            ModelCfg::Aim(c) => with_width!(width, |W| boxed(c.build::<W, f32, D>(dev, init)))?,
            ModelCfg::MstAdapter(c) => with_width!(width, |W| boxed(c.build::<W, f32, D>(dev, init)))?,
            ModelCfg::Benchmark(c) => with_width!(width, |W| boxed(c.build::<W, f32, D>(dev, init)))?,
        }
    }

    /// Reads a RON model config and validates it: unknown fields, values of the wrong type and
    /// values the model cannot take are errors naming the file, the field and (for syntax) the
    /// line and column.
    pub fn from_ron_file(path: &Path) -> Result<Self, InputError> {
        crate::input::read_ron(path)
    }
}

// Checks of what comes from outside (issue 8): the config's values, and the shape of a video
// before a forward pass.
impl ModelCfg {
    /// Frames per view: the T every input must have.
    pub fn frames(&self) -> usize {
        match self {
            ModelCfg::ClipBaseline(c) => c.frames,
            ModelCfg::StAdapter(c) => c.frames,
            ModelCfg::Aim(c) => c.frames,
            ModelCfg::MstAdapter(c) => c.frames,
            ModelCfg::Benchmark(c) => c.frames,
        }
    }

    /// Checks a video's shape (B, 3, T, H, W) against the config, before a forward pass: B ≥ 1,
    /// 3 channels, T = `frames` (AIM's temporal embedding and the temporal attentions have that
    /// length; for the others the config's counts and the training recipe assume it), H = W =
    /// `clip.input_resolution` (the positional embedding has one entry per patch). The message
    /// names the dimension and the config field.
    pub fn check_input(&self, shape: &[usize]) -> Result<(), ShapeError> {
        let bad = |m: String| Err(ShapeError(m));
        let [b, c, t, h, w] = shape else {
            return bad(format!("shape {shape:?} has {} dimensions; expected 5: (B, 3, T, H, W)", shape.len()));
        };
        let (frames, res) = (self.frames(), self.clip().input_resolution);
        if *b == 0 {
            return bad(format!("shape {shape:?}: the batch B is empty"));
        }
        if *c != 3 {
            return bad(format!("shape {shape:?}: {c} channels; expected (B, 3, T, H, W) with 3 (RGB)"));
        }
        if *t != frames {
            return bad(format!(
                "shape {shape:?}: T = {t} frames, but the model config has `frames: {frames}` (give {frames} frames, or change `frames`)"
            ));
        }
        if (*h, *w) != (res, res) {
            return bad(format!(
                "shape {shape:?}: frames are {h}x{w}, but the model config has `clip.input_resolution: {res}` ({res}x{res})"
            ));
        }
        Ok(())
    }

    /// Weights in f32, estimated from the encoder's shape: refuses configs that could not fit in
    /// memory before allocating them.
    fn check_size(&self) -> Result<(), ConfigError> {
        let c = self.clip();
        let (w, l, t) = (c.width as f64, c.layers as f64, c.tokens() as f64);
        let params = l * 12.0 * w * w + t * w;
        ensure(params <= 2e9, "clip", || {
            format!(
                "the encoder alone has about {:.1e} weights ({:.0} GB in f32); the kit builds at most 2e9",
                params,
                params * 4e-9
            )
        })
    }
}

/// A video shape a model cannot take, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

impl Validate for ModelCfg {
    fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ModelCfg::ClipBaseline(c) => c.validate(),
            ModelCfg::StAdapter(c) => c.validate(),
            ModelCfg::Aim(c) => c.validate(),
            ModelCfg::MstAdapter(c) => c.validate(),
            ModelCfg::Benchmark(c) => c.validate(),
        }?;
        self.check_size()
    }
}

/// Every named model config the kit ships, as `(file stem, config)`: each is also
/// `fixtures/configs/<stem>.ron` (a test keeps the files and this list equal).
pub fn presets() -> Vec<(String, ModelCfg)> {
    use crate::clip::Blocks;
    use crate::st_adapter::Position;
    let tiny_st = StAdapterCfg {
        clip: ClipCfg::tiny(),
        num_classes: 5,
        frames: 4,
        adapter_width: 16,
        kernel: crate::ops::Kernel3::new(3, 1, 1),
        positions: vec![Position::PreMlp],
        blocks: Blocks::Last(2),
    };
    let tiny_aim = AimCfg {
        clip: ClipCfg::tiny(),
        num_classes: 5,
        frames: 4,
        blocks: Blocks::Last(2),
        ..AimCfg::vitclip_base_k400()
    };
    [
        (
            "clip_baseline_vit_b16",
            ModelCfg::ClipBaseline(BaselineCfg { clip: ClipCfg::vit_b16(), num_classes: 400, frames: 8 }),
        ),
        (
            "clip_baseline_vit_l14",
            ModelCfg::ClipBaseline(BaselineCfg { clip: ClipCfg::vit_l14(), num_classes: 400, frames: 8 }),
        ),
        ("st_adapter_vit_b16_12x384", ModelCfg::StAdapter(StAdapterCfg::vit_b16_12x384())),
        ("st_adapter_vit_b16_24x384", ModelCfg::StAdapter(StAdapterCfg::vit_b16_24x384())),
        ("st_adapter_vit_l14_24x384", ModelCfg::StAdapter(StAdapterCfg::vit_l14_24x384())),
        ("aim_vitclip_base_k400", ModelCfg::Aim(AimCfg::vitclip_base_k400())),
        ("aim_vitclip_large_k400", ModelCfg::Aim(AimCfg::vitclip_large_k400())),
        ("aim_vitclip_base_sthv2", ModelCfg::Aim(AimCfg::vitclip_base_sthv2())),
        ("aim_vitclip_large_sthv2", ModelCfg::Aim(AimCfg::vitclip_large_sthv2())),
        ("mst_adapter_vit_b16_k400", ModelCfg::MstAdapter(MstAdapterCfg::vit_b16_k400())),
        ("mst_adapter_vit_b16_ssv2", ModelCfg::MstAdapter(MstAdapterCfg::vit_b16_ssv2())),
        ("mst_adapter_vit_l14_k400", ModelCfg::MstAdapter(MstAdapterCfg::vit_l14_k400())),
        ("mst_adapter_vit_l14_ssv2", ModelCfg::MstAdapter(MstAdapterCfg::vit_l14_ssv2())),
    ]
    .into_iter()
    .map(|(n, c)| (n.to_string(), c))
    .chain(BenchmarkCfg::table1_rows().into_iter().map(|(arch, tuning)| {
        let cfg = BenchmarkCfg::clip_b16(arch, tuning);
        (benchmark_stem(&cfg), ModelCfg::Benchmark(cfg))
    }))
    .chain([
        (
            "tiny_clip_baseline".to_string(),
            ModelCfg::ClipBaseline(BaselineCfg { clip: ClipCfg::tiny(), num_classes: 5, frames: 4 }),
        ),
        ("tiny_st_adapter_k400".to_string(), ModelCfg::StAdapter(tiny_st)),
        ("tiny_aim_k400".to_string(), ModelCfg::Aim(tiny_aim)),
        (
            "tiny_mst_adapter".to_string(),
            ModelCfg::MstAdapter(MstAdapterCfg {
                clip: ClipCfg::tiny(),
                num_classes: 5,
                frames: 4,
                adapter_width: 16,
                blocks: Blocks::Last(2),
                ..MstAdapterCfg::vit_b16_k400()
            }),
        ),
    ])
    .collect()
}

/// File stem of a benchmark preset: "benchmark_sa_ta_partial".
fn benchmark_stem(c: &BenchmarkCfg) -> String {
    use crate::baselines::{Arch, Tuning};
    let a = match c.arch {
        Arch::Sa => "sa",
        Arch::SaTa => "sa_ta",
        Arch::SaTs => "sa_ts",
    };
    let t = match c.tuning {
        Tuning::Full => "full",
        Tuning::Partial => "partial",
        Tuning::Temporal => "temporal",
        Tuning::Prompt { .. } => "prompt",
        Tuning::AttentionalPooling => "attentional_pooling",
        Tuning::LinearProbe => "linear_probe",
        Tuning::Adapter { .. } => "adapter",
    };
    format!("benchmark_{a}_{t}")
}

/// A config as pretty RON (how `fixtures/configs/*.ron` are written).
pub fn to_ron(cfg: &ModelCfg) -> String {
    let pretty = ron::ser::PrettyConfig::new().depth_limit(4).struct_names(false);
    ron::ser::to_string_pretty(cfg, pretty).expect("configs serialise") + "\n"
}

/// What the tools need from a built model.
pub trait VideoModel {
    /// Logits (B, classes), untraced.
    fn logits(&self, video: &Video<f32, Cpu>, ctx: &mut Ctx) -> Tensor<(usize, usize), f32, Cpu>;
    /// Every parameter by official key.
    fn params(&self) -> Vec<ParamInfo>;
    /// Loads weights (see [`load_params`]).
    fn load(&mut self, path: &Path, map: &KeyMap, fresh: &dyn Fn(&str) -> bool) -> Result<LoadReport, InputError>;
    /// Marks the parameters whose key satisfies `pred` trainable, all others frozen.
    fn set_trainable(&mut self, pred: &dyn Fn(&str) -> bool);
    /// Traced forward (dropout as `ctx` says), cross-entropy with `smoothing`, backward; adds
    /// `scale` × every trainable parameter's gradient to `sums`. Returns the loss.
    fn accumulate(
        &self,
        video: &Video<f32, Cpu>,
        labels: &[usize],
        smoothing: f64,
        scale: f32,
        sums: &mut GradSums<f32>,
        ctx: &mut Ctx,
    ) -> f32;
    /// One AdamW update of the trainable set from gradient sums (consumed on a device that keeps
    /// them: [`AdamW::step`]).
    fn apply(&mut self, opt: &mut AdamW<f32>, sums: &mut GradSums<f32>);
    /// One training step on one batch: [`VideoModel::accumulate`] then [`VideoModel::apply`].
    /// Returns the loss.
    fn train_step(&mut self, video: &Video<f32, Cpu>, labels: &[usize], opt: &mut AdamW<f32>, ctx: &mut Ctx) -> f32 {
        let mut sums = GradSums::new();
        let loss = self.accumulate(video, labels, 0.0, 1.0, &mut sums, ctx);
        self.apply(opt, &mut sums);
        loss
    }
    /// The parameters whose key satisfies `pred`: (key, stored shape, values).
    fn values(&self, pred: &dyn Fn(&str) -> bool) -> Vec<(String, Vec<usize>, Vec<f32>)>;
    /// Overwrites one parameter; the error names the key.
    fn set_values(&mut self, key: &str, values: &[f32]) -> Result<(), String>;
}

/// The device a model's parameters live on (read from its first parameter).
fn device_of<D: KitDevice<f32>, M: crate::param::Params<f32, D>>(m: &M) -> D {
    struct First<D>(Option<D>);
    impl<D: KitDevice<f32>> crate::param::Visitor<f32, D> for First<D> {
        fn param<S: Shape>(&mut self, _: &str, p: &crate::param::Param<S, f32, D>) {
            if self.0.is_none() {
                self.0 = Some(p.value.device().clone());
            }
        }
    }
    let mut first = First(None);
    crate::param::visit(m, &mut first);
    first.0.expect("a model has parameters")
}

/// A host tensor on `dev` (a copy; on the CPU too, which costs one copy of the video per call).
fn to_device<S: Shape, D: KitDevice<f32>>(t: &Tensor<S, f32, Cpu>, dev: &D) -> Tensor<S, f32, D> {
    dev.tensor_from_vec(crate::device::host(t), *t.shape())
}

/// The same implementation for every model type and device: they all have `forward::<Tape>` and
/// `Params`. Videos come in and logits go out on the host; the model runs on its own device.
macro_rules! video_model {
    ($([$($g:tt)*] $t:ty),* $(,)?) => {$(
        impl<$($g)*> VideoModel for $t {
            fn logits(&self, video: &Video<f32, Cpu>, ctx: &mut Ctx) -> Tensor<(usize, usize), f32, Cpu> {
                let video = to_device(video, &device_of(self));
                let y = self.forward::<NoneTape>(&video, ctx);
                Cpu::default().tensor_from_vec(crate::device::host(&y), *y.shape())
            }
            fn params(&self) -> Vec<ParamInfo> {
                param_list(self)
            }
            fn load(&mut self, path: &Path, map: &KeyMap, fresh: &dyn Fn(&str) -> bool) -> Result<LoadReport, InputError> {
                load_params(self, path, map, fresh)
            }
            fn set_trainable(&mut self, pred: &dyn Fn(&str) -> bool) {
                set_trainable(self, pred)
            }
            fn accumulate(
                &self,
                video: &Video<f32, Cpu>,
                labels: &[usize],
                smoothing: f64,
                scale: f32,
                sums: &mut GradSums<f32>,
                ctx: &mut Ctx,
            ) -> f32 {
                let video = to_device(video, &device_of(self));
                let logits = self.forward::<OwnedTape<f32, D>>(&video, ctx);
                let loss = crate::ops::cross_entropy(logits, labels, smoothing);
                let value = loss.retaped::<NoneTape>().as_vec()[0];
                let mut grads = loss.backward();
                crate::optim::accumulate(self, &mut grads, scale, sums);
                value
            }
            fn apply(&mut self, opt: &mut AdamW<f32>, sums: &mut GradSums<f32>) {
                opt.step(self, sums)
            }
            fn values(&self, pred: &dyn Fn(&str) -> bool) -> Vec<(String, Vec<usize>, Vec<f32>)> {
                crate::param::values_of(self, pred)
            }
            fn set_values(&mut self, key: &str, values: &[f32]) -> Result<(), String> {
                crate::param::set_values(self, key, values)
            }
        }
    )*};
}

video_model!(
    [const C: usize, B: Block<C, f32, D>, D: KitDevice<f32>] FrameClassifier<C, B, f32, D>,
    [const C: usize, D: KitDevice<f32>] Benchmark<C, f32, D>,
    [const C: usize, D: KitDevice<f32>] Aim<C, f32, D>,
);
