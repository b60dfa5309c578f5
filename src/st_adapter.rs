//! # ST-Adapter
//!
//! Junting Pan, Ziyi Lin, Xiatian Zhu, Jing Shao, Hongsheng Li. *ST-Adapter: Parameter-Efficient
//! Image-to-Video Transfer Learning*. NeurIPS 2022. arXiv:2206.13559.
//! Official code: <https://github.com/linziyi96/st-adapter>, `models_adapter.py` @ b914b38.
//!
//! Shape legend: B videos · T frames · H×W patch grid · L = 1 + H·W tokens · C width ·
//! W adapter bottleneck width.
//!
//! What the official code does that the paper does not say (all reproduced here):
//! - the adapter has **no activation** (the paper's Eq. 2 has an `f`);
//! - it reads and writes the **patch tokens only**; the CLS token passes unchanged;
//! - the depthwise conv's weight and bias, and both linear biases, start at zero, so a fresh
//!   adapter is an exact identity;
//! - the released K400 model has one adapter per block **before the MLP** (`adapter12x384`), the
//!   SSv2 model two, before the attention and before the MLP (`adapter24x384`); the paper's text
//!   says "before MHSA".
//!
//! Departures: the (3,1,1) depthwise Conv3d is our own op ([`crate::ops::dwconv3d`]: dfdx 0.13 has
//! no 3D convolution); identical numbers, see `tests/parity.rs`. The official code adds the
//! adapter output in place (`x_id[:, 1:, :] += x`); [`ops::add_to_patches`] builds a new tensor.
//! `after FFN` (Table 5c) is not in the official code: it is ours, as `adapter_post_mlp`.

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clip::vit::{
    clip_block, head, head_lines, maybe, trains, Block, FrameClassifier, ResidualAttentionBlock, Tokens,
    VisionTransformer,
};
use crate::clip::{Blocks, ClipCfg};
use crate::context::Ctx;
use crate::count::{dwconv_macs, encoder_lines, linear_macs, linear_params, Breakdown};
use crate::device::{KitDevice, Real};
use crate::init::{constant, param, Init};
use crate::input::{ensure_count, ConfigError, Validate};
use crate::ops::{self, dwconv3d::DwConv3d, Grid, Kernel3, Linear};
use crate::param::Param;
use crate::registry::validate_head;

/// Where in a block an adapter sits (Table 5c).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Position {
    /// Before the attention: `adapter_pre_attn` ("before MHSA").
    PreAttn,
    /// Between attention and MLP: `adapter_pre_mlp` ("after MHSA"; the released K400 model).
    PreMlp,
    /// After the MLP residual: `adapter_post_mlp` ("after FFN"; not in the official code).
    PostMlp,
}

/// An ST-Adapter video model: the CLIP encoder with adapters, and the frame-averaging head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StAdapterCfg {
    pub clip: ClipCfg,
    pub num_classes: usize,
    /// Frames per view (8, 16, 32). The layers would take any T; the kit holds inputs to this one
    /// ([`crate::registry::ModelCfg::check_input`]) so that counts, recipe and input agree.
    pub frames: usize,
    /// Bottleneck width W (Table 5a).
    pub adapter_width: usize,
    /// Depthwise kernel kT×kH×kW (Table 7).
    pub kernel: Kernel3,
    pub positions: Vec<Position>,
    pub blocks: Blocks,
}

impl StAdapterCfg {
    /// `clip_vit_base_patch16_adapter12x384` (K400): 12 adapters of width 384, one per block
    /// before the MLP, kernel 3×1×1, 400 classes, 8 frames.
    pub fn vit_b16_12x384() -> Self {
        Self {
            clip: ClipCfg::vit_b16(),
            num_classes: 400,
            frames: 8,
            adapter_width: 384,
            kernel: Kernel3::new(3, 1, 1),
            positions: vec![Position::PreMlp],
            blocks: Blocks::Last(12),
        }
    }

    /// `clip_vit_base_patch16_adapter24x384` (SSv2): 24 adapters, before attention and before
    /// MLP in every block, 174 classes.
    pub fn vit_b16_24x384() -> Self {
        Self { num_classes: 174, positions: vec![Position::PreAttn, Position::PreMlp], ..Self::vit_b16_12x384() }
    }

    /// The paper's ViT-L/14 rows: one adapter of width 384 per block (Table 8), 24 blocks. This
    /// config was never released; the position (before the MLP, as in the B/16 K400 release) is
    /// our assumption and does not change any count.
    pub fn vit_l14_24x384() -> Self {
        Self { clip: ClipCfg::vit_l14(), blocks: Blocks::Last(24), ..Self::vit_b16_12x384() }
    }

    /// Which of (pre-attn, pre-mlp, post-mlp) block `i` gets.
    pub fn adapters_of(&self, i: usize) -> [bool; 3] {
        let on = self.blocks.contains(i, self.clip.layers);
        [Position::PreAttn, Position::PreMlp, Position::PostMlp].map(|p| on && self.positions.contains(&p))
    }

    /// The number of adapters in the model.
    pub fn num_adapters(&self) -> usize {
        (0..self.clip.layers).map(|i| self.adapters_of(i).iter().filter(|b| **b).count()).sum()
    }
}

impl Validate for StAdapterCfg {
    fn validate(&self) -> Result<(), ConfigError> {
        self.clip.validate().map_err(|e| e.within("clip"))?;
        validate_head(self.num_classes, self.frames)?;
        ensure_count(self.adapter_width, "adapter_width", 1 << 14)?;
        self.kernel.validate("kernel")?;
        if let Some((i, p)) = self.positions.iter().enumerate().find(|(i, p)| self.positions[..*i].contains(p)) {
            return Err(ConfigError::new("positions", format!("{p:?} is listed twice (entry {i})")));
        }
        self.blocks.validate(self.clip.layers, "blocks")
    }
}

// ANCHOR: count
impl StAdapterCfg {
    // ANCHOR: adapter_params
    /// Parameters of one adapter: fc1 (C·W + W) + depthwise conv (W·kT·kH·kW + W) + fc2 (W·C + C).
    pub fn adapter_params(&self) -> u64 {
        let (c, w, k) = (self.clip.width as u64, self.adapter_width as u64, self.kernel.taps() as u64);
        linear_params(c, w) + (w * k + w) + linear_params(w, c)
    }

    /// Multiply-adds of one adapter on one frame: the H·W patch tokens through fc1, the conv, fc2.
    pub fn adapter_macs_per_frame(&self) -> u64 {
        let (c, w, k, n) = (
            self.clip.width as u64,
            self.adapter_width as u64,
            self.kernel.taps() as u64,
            (self.clip.tokens() - 1) as u64,
        );
        linear_macs(n, c, w) + dwconv_macs(n * w, k) + linear_macs(n, w, c)
    }
    // ANCHOR_END: adapter_params

    /// Parameters and multiply-adds per view (`frames` frames), line by line.
    pub fn breakdown(&self) -> Breakdown {
        let (c, t) = (self.clip.width as u64, self.frames as u64);
        let mut b = Breakdown::new(
            format!(
                "ST-Adapter {} ({}×{}, kernel {})",
                self.clip.name(),
                self.num_adapters(),
                self.adapter_width,
                self.kernel
            ),
            self.frames,
        );
        encoder_lines(&mut b, &self.clip, self.frames, false, "");
        let n = self.num_adapters() as u64;
        b.line(
            &format!("{n} × ST-Adapter (fc1, dwconv {}, fc2)", self.kernel),
            &[
                "transformer.resblocks.*.adapter_pre_attn.",
                "transformer.resblocks.*.adapter_pre_mlp.",
                "transformer.resblocks.*.adapter_post_mlp.",
            ],
            n * self.adapter_params(),
            true,
            n * t * self.adapter_macs_per_frame(),
        );
        head_lines(&mut b, c, self.num_classes as u64, "");
        b
    }
}

// ANCHOR_END: count

// ANCHOR: adapter
/// `x + fc2(DWConv3D(fc1(x)))` on the patch tokens; the CLS token is not touched. No activation.
#[derive(Clone, Debug)]
pub struct Adapter<const C: usize, E: Dtype, D: Storage<E>> {
    pub fc1: Linear<Const<C>, usize, E, D>,
    pub conv: DwConv3d<E, D>,
    pub fc2: Linear<usize, Const<C>, E, D>,
}

impl<const C: usize, E: Real, D: KitDevice<E>> Adapter<C, E, D> {
    pub fn forward<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid) -> Tokens<C, E, D, T> {
        if D::KERNELS {
            self.forward_separate(x, grid)
        } else {
            self.forward_fused(x, grid)
        }
    }

    /// The branch as its separate ops (each on the device's kernels where it has them).
    pub fn forward_separate<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid) -> Tokens<C, E, D, T> {
        let (x, tape) = x.split_tape();
        let h = ops::patch_tokens(x.clone().put_tape(tape)); // (B·T, L, C) -> (B·T, H·W, C)
        let h = self.fc1.forward(h); // (B·T, H·W, W)
        let h = self.conv.forward(h, grid); // depthwise kT×kH×kW over the (T, H, W) grid of each video
        let h = self.fc2.forward(h); // (B·T, H·W, C)
        ops::add_to_patches(x, h) // x[:, 1:, :] += h
    }
}
// ANCHOR_END: adapter

impl<const C: usize, E: Real, D: KitDevice<E>> Adapter<C, E, D> {
    /// [`Adapter::forward_separate`] as one op on host rows, with the same kernels in the same
    /// order, so the same bits (tested). As separate ops, every intermediate went into a dfdx
    /// tensor and was copied out again by the next op (five copies of up to N·L·C values, each into
    /// a zeroed buffer); here the input is copied once and the intermediates stay in this op's
    /// vectors. Each gradient buffer is zeroed and then added to, as dfdx's are, so that even the
    /// sign of a zero matches. At small width the forward pass runs over tiles of one video
    /// (`forward_tiled`); measured on the small preset against the build before (one thread):
    /// evaluation 0.91 of its time, the training step 0.98.
    pub fn forward_fused<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid) -> Tokens<C, E, D, T> {
        // Tiles of one video, where the weights are small (the MLP's rule) and each product has
        // more than 256 outputs (gemm computes smaller products another way: other bits).
        let w = self.fc1.out_features();
        let tiled = ops::mlp::tile_rows(C, w) != usize::MAX && grid.t * grid.positions() * w.min(C) > 256;
        self.forward_fused_by(x, grid, tiled)
    }

    /// [`Adapter::forward_fused`], its forward pass over tiles of whole videos or not.
    fn forward_fused_by<T: Tape<E, D>>(&self, x: Tokens<C, E, D, T>, grid: Grid, tiled: bool) -> Tokens<C, E, D, T> {
        use ops::dwconv3d::{add_conv_param_grads, conv_forward, conv_input_grad, transpose};
        use ops::linear::{add_param_grads, affine_new, input_grad};
        use ops::tokens::{add_patch_rows_of, add_to_patch_rows, copy_patch_rows};

        let (n, l, _) = *x.shape();
        let (w, kernel) = (self.fc1.out_features(), self.conv.kernel);
        assert_eq!(n * (l - 1), grid.frames() * grid.positions(), "adapter: tokens do not form grid {grid:?}");
        let rows = n * (l - 1);
        let dev = x.device().clone();
        let (x, mut tape) = x.split_tape();
        let mut y = crate::device::host(&x);
        let (w1, b1) = (self.fc1.weight.host(), self.fc1.bias.as_ref().map(|b| b.host()));
        let w_tc = transpose(&self.conv.weight.host(), w, kernel.taps());
        let bc = self.conv.bias.host();
        let (w2, b2) = (self.fc2.weight.host(), self.fc2.bias.as_ref().map(|b| b.host()));
        let (b1s, b2s) = (b1.as_deref().map(|b| &b[..]), b2.as_deref().map(|b| &b[..]));
        let (h0, h1, h2) = if tiled {
            let traced = T::OWNS_TAPE;
            let keep = [self.fc1.weight.trainable, self.conv.weight.trainable, self.fc2.weight.trainable];
            let parts =
                TileParts { c: C, w, l, grid, w1: &w1, b1: b1s, w_tc: &w_tc, bc: &bc, kernel, w2: &w2, b2: b2s };
            forward_tiled(&mut y, &parts, keep.map(|k| traced && k))
        } else {
            // patch_tokens, fc1, the conv, fc2
            let mut h0 = vec![E::zero(); rows * C];
            copy_patch_rows(&mut h0, &y, l, C);
            let h1 = affine_new(&h0, &w1, b1s, rows, C, w);
            let h2 = conv_forward(&h1, &w_tc, &bc, kernel, grid, w);
            let h3 = affine_new(&h2, &w2, b2s, rows, w, C);
            // add_to_patches
            add_to_patch_rows(&mut y, &h3, l, C);
            (h0, h1, h2)
        };
        let y = crate::device::tensor(&dev, y, (n, l, Const::<C>));

        if T::OWNS_TAPE {
            let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
            let (fc1_w, fc1_b) = (self.fc1.weight.grad_key(), self.fc1.bias.as_ref().and_then(|b| b.grad_key()));
            let (conv_w, conv_b) = (self.conv.weight.grad_key(), self.conv.bias.grad_key());
            let (fc2_w, fc2_b) = (self.fc2.weight.grad_key(), self.fc2.bias.as_ref().and_then(|b| b.grad_key()));
            // what each weight gradient reads, kept only for a trainable weight
            let h0 = fc1_w.is_some().then_some(h0);
            let h1 = conv_w.is_some().then_some(h1);
            let h2 = fc2_w.is_some().then_some(h2);
            tape.add_backward_op(move |grads| {
                let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
                // add_to_patches
                dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| ops::simd::add_assign_par(gx, &gy))?;
                let mut g3 = vec![E::zero(); rows * C];
                add_patch_rows_of(&mut g3, &gy, l, C);
                drop(gy);
                // fc2
                let mut g2 = vec![E::zero(); rows * w];
                input_grad(&mut g2, &g3, &w2, w, C, true);
                add_param_grads(&dev, grads, &g3, h2.as_deref(), (w, C), fc2_w.as_ref(), fc2_b.as_ref())?;
                drop(g3);
                // the conv
                let mut g1 = vec![E::zero(); rows * w];
                conv_input_grad(&g2, &w_tc, kernel, grid, w, &mut g1);
                add_conv_param_grads(
                    &dev,
                    grads,
                    &g2,
                    h1.as_deref(),
                    kernel,
                    grid,
                    w,
                    conv_w.as_ref(),
                    conv_b.as_ref(),
                )?;
                drop(g2);
                // fc1
                let mut g0 = vec![E::zero(); rows * C];
                input_grad(&mut g0, &g1, &w1, C, w, true);
                add_param_grads(&dev, grads, &g1, h0.as_deref(), (C, w), fc1_w.as_ref(), fc1_b.as_ref())?;
                drop(g1);
                // patch_tokens
                dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| add_to_patch_rows(gx, &g0, l, C))
            });
        }
        y.put_tape(tape)
    }
}

/// The host values of the branch for [`forward_tiled`]: widths, tokens per frame, the grid, fc1,
/// the conv (weight as (taps, ch), bias, kernel), fc2.
struct TileParts<'a, E> {
    c: usize,
    w: usize,
    l: usize,
    grid: Grid,
    w1: &'a [E],
    b1: Option<&'a [E]>,
    w_tc: &'a [E],
    bc: &'a [E],
    kernel: Kernel3,
    w2: &'a [E],
    b2: Option<&'a [E]>,
}

/// The fused branch's forward pass over tiles of one video each, in parallel: patch tokens, fc1,
/// the conv over the video's (T, H, W) grid, fc2, and the sum into `y`'s patch rows, while the
/// video's rows stay in the core's L2 cache. `y` holds the input and receives the output. Returns
/// the inputs of fc1, the conv and fc2 where `keep` says the backward pass needs them (empty
/// otherwise); the rest lives in the worker's scratch. Every row is computed by the kernels of
/// the pass over all rows, so the bits are the same (`the_fused_branch_has_the_bits_of_the_separate_ops`).
fn forward_tiled<E: Real>(y: &mut [E], p: &TileParts<'_, E>, keep: [bool; 3]) -> (Vec<E>, Vec<E>, Vec<E>) {
    use ops::dwconv3d::conv_plane;
    use ops::linear::affine_tile;
    use ops::mlp::{cut, with_scratch, Scratch};
    use rayon::prelude::*;
    let (c, w, l, g) = (p.c, p.w, p.l, p.grid);
    let (np, rows) = (g.t * g.positions(), g.frames() * g.positions()); // patch rows per video, in all
    let videos: Vec<_> = (0..g.b).map(|v| v..v + 1).collect();
    let all = [rows * c, rows * w, rows * w];
    let n = [0, 1, 2].map(|i| if keep[i] { all[i] } else { 0 });
    let (mut h0, mut h1) = (Vec::with_capacity(n[0]), Vec::with_capacity(n[1]));
    let mut h2 = vec![E::zero(); n[2]];
    let width = |i: usize, per_row: usize| if keep[i] { np * per_row } else { 0 };
    let ys = cut(y, g.t * l * c, &videos);
    let h0s = cut(&mut h0.spare_capacity_mut()[..n[0]], width(0, c), &videos);
    let h1s = cut(&mut h1.spare_capacity_mut()[..n[1]], width(1, w), &videos);
    let h2s = cut(&mut h2[..], width(2, w), &videos);
    let vgrid = Grid { b: 1, ..g };
    let plane = g.h * g.w * w;
    ys.into_par_iter().zip(h0s).zip(h1s).zip(h2s).for_each(|(((y, k0), k1), k2)| {
        with_scratch(|s: &mut Scratch<E>| {
            let Scratch { h: s0, pre: s1, a: s2, stats: s3, .. } = s;
            // SAFETY (the `written_into`s and `assume_init`s below): a copy of every patch row, and
            // products with accumulate = false or after the bias rows, write every element.
            let patches = |d: &mut [std::mem::MaybeUninit<E>]| {
                for (f, dr) in d.chunks_exact_mut((l - 1) * c).enumerate() {
                    ops::simd::write_from(dr, &y[f * l * c + c..(f + 1) * l * c]);
                }
            };
            let h0: &[E] = match keep[0] {
                true => {
                    patches(k0);
                    unsafe { ops::assume_init(k0) }
                }
                false => unsafe { ops::written_into(s0, np * c, patches) },
            };
            let h1: &[E] = match keep[1] {
                true => {
                    affine_tile(k1, None, h0, p.w1, p.b1, c, w);
                    unsafe { ops::assume_init(k1) }
                }
                false => unsafe { ops::written_into(s1, np * w, |d| affine_tile(d, None, h0, p.w1, p.b1, c, w)) },
            };
            let h2: &mut [E] = match keep[2] {
                true => k2,
                false => {
                    s2.clear();
                    s2.resize(np * w, E::zero());
                    s2
                }
            };
            for (t, yp) in h2.chunks_exact_mut(plane).enumerate() {
                conv_plane(h1, p.w_tc, p.bc, p.kernel, vgrid, w, t, yp);
            }
            let h3: &[E] = unsafe { ops::written_into(s3, np * c, |d| affine_tile(d, None, h2, p.w2, p.b2, w, c)) };
            // add_to_patches, frame by frame (the kernel `tokens::add_to_patch_rows` runs)
            for (f, hr) in h3.chunks_exact((l - 1) * c).enumerate() {
                ops::simd::add_assign(&mut y[f * l * c + c..(f + 1) * l * c], hr);
            }
        })
    });
    // SAFETY: the videos cover all rows, and each wrote every element of its rows of h0 and h1.
    unsafe {
        h0.set_len(n[0]);
        h1.set_len(n[1]);
    }
    (h0, h1, h2)
}

impl<const C: usize, E: Real, D: KitDevice<E>> Adapter<C, E, D> {
    /// A fresh adapter as the official constructor makes it: `nn.Linear` default weights, zero
    /// biases, zero conv weight and bias (an exact identity until trained). Trainable.
    pub fn build(width: usize, kernel: Kernel3, dev: &D, init: &mut Init) -> Self {
        let taps = kernel.taps();
        Self {
            fc1: Linear {
                weight: param(dev, (width, Const::<C>), init.torch_linear(width, C), true),
                bias: Some(constant(dev, (width,), 0.0, true)),
            },
            conv: DwConv3d {
                weight: Param::stored_as(
                    constant(dev, (width, taps), 0.0, true).value,
                    true,
                    &[width, 1, kernel.t, kernel.h, kernel.w],
                ),
                bias: constant(dev, (width,), 0.0, true),
                kernel,
            },
            fc2: Linear {
                weight: param(dev, (Const::<C>, width), init.torch_linear(C, width), true),
                bias: Some(constant(dev, (Const::<C>,), 0.0, true)),
            },
        }
    }
}

// ANCHOR: block
/// A CLIP block with ST-Adapters at up to three positions:
/// `[x = A_attn(x)]; x += attn(ln_1(x)); [x = A_mlp(x)]; x += mlp(ln_2(x)); [x = A_post(x)]`.
#[derive(Clone, Debug)]
pub struct StBlock<const C: usize, E: Dtype, D: Storage<E>> {
    /// The frozen CLIP block; its keys sit directly under `resblocks.{i}`.
    pub clip: ResidualAttentionBlock<C, E, D>,
    pub adapter_pre_attn: Option<Adapter<C, E, D>>,
    pub adapter_pre_mlp: Option<Adapter<C, E, D>>,
    pub adapter_post_mlp: Option<Adapter<C, E, D>>,
}

/// The block's five stages, the absent adapters being identities:
/// `x = A_attn(x)`, `x += attn(ln_1(x))`, `x = A_mlp(x)`, `x += mlp(ln_2(x))`, `x = A_post(x)`.
impl<const C: usize, E: Real, D: KitDevice<E>> Block<C, E, D> for StBlock<C, E, D> {
    fn stages(&self) -> usize {
        5
    }

    fn stage<T: Tape<E, D>>(&self, i: usize, x: Tokens<C, E, D, T>, grid: Grid, ctx: &mut Ctx) -> Tokens<C, E, D, T> {
        match i {
            0 => maybe(self.adapter_pre_attn.as_ref(), x, |a, x| a.forward(x, grid)),
            1 => self.clip.stage(0, x, grid, ctx),
            2 => maybe(self.adapter_pre_mlp.as_ref(), x, |a, x| a.forward(x, grid)),
            3 => self.clip.stage(1, x, grid, ctx),
            _ => maybe(self.adapter_post_mlp.as_ref(), x, |a, x| a.forward(x, grid)),
        }
    }

    fn stage_trains(&self, i: usize) -> bool {
        match i {
            0 => trains(&self.adapter_pre_attn),
            1 => self.clip.stage_trains(0),
            2 => trains(&self.adapter_pre_mlp),
            3 => self.clip.stage_trains(1),
            _ => trains(&self.adapter_post_mlp),
        }
    }
}
// ANCHOR_END: block

/// ST-Adapter's video model (the official `VisionTransformer` of `models_adapter.py`): keys
/// `conv1.weight`, …, `transformer.resblocks.{i}.adapter_pre_mlp.{fc1,conv,fc2}.*`, …, `fc.*`.
pub type StAdapterViT<const C: usize, E, D> = FrameClassifier<C, StBlock<C, E, D>, E, D>;

impl StAdapterCfg {
    /// Builds the model: frozen CLIP encoder (values from `init`, to be overwritten by a CLIP
    /// checkpoint), trainable adapters and `fc` (N(0, 0.02²) weight, zero bias, as officially).
    /// An invalid config is an error naming the field.
    pub fn build<const C: usize, E: Real, D: KitDevice<E>>(
        &self,
        dev: &D,
        init: &mut Init,
    ) -> Result<StAdapterViT<C, E, D>, ConfigError> {
        self.validate()?;
        let clip = &self.clip;
        let backbone = VisionTransformer::build(clip, dev, init, None, |i, init| {
            let [pre_attn, pre_mlp, post_mlp] = self.adapters_of(i);
            let block = clip_block(clip, dev, init);
            let mut adapter = |on: bool| on.then(|| Adapter::build(self.adapter_width, self.kernel, dev, init));
            StBlock {
                clip: block,
                adapter_pre_attn: adapter(pre_attn),
                adapter_pre_mlp: adapter(pre_mlp),
                adapter_post_mlp: adapter(post_mlp),
            }
        })?;
        Ok(FrameClassifier { backbone, fc: head(dev, init, self.num_classes, 0.02), dropout: 0.5 })
    }
}

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] Adapter<C, E, D> {
    module "fc1" => fc1,
    module "conv" => conv,
    module "fc2" => fc2,
});

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] StBlock<C, E, D> {
    module "" => clip,
    module "adapter_pre_attn" => adapter_pre_attn,
    module "adapter_pre_mlp" => adapter_pre_mlp,
    module "adapter_post_mlp" => adapter_post_mlp,
});

/// The official constructor `VisionTransformer(**kwargs)` as a config. Every keyword must be
/// known: an unknown one is an error (naming it), never silently ignored.
pub fn from_official_kwargs(kw: &serde_json::Value, frames: usize) -> anyhow::Result<StAdapterCfg> {
    const KNOWN: [&str; 11] = [
        "input_resolution",
        "patch_size",
        "width",
        "layers",
        "heads",
        "num_classes",
        "adapter_width",
        "adapter_layers",
        "adapter_kernel_size",
        "adapter_pre_attn",
        "adapter_pre_mlp",
    ];
    let kw = crate::official::Kwargs::new("ST-Adapter constructor", Some(kw), &KNOWN)?;
    let ks = kw.ints("adapter_kernel_size")?;
    if ks.len() != 3 {
        anyhow::bail!("adapter_kernel_size must have 3 entries, has {}", ks.len());
    }
    let clip = kw.clip()?;
    let mut positions = Vec::new();
    if kw.flag("adapter_pre_attn")? {
        positions.push(Position::PreAttn);
    }
    if kw.flag("adapter_pre_mlp")? {
        positions.push(Position::PreMlp);
    }
    Ok(StAdapterCfg {
        clip,
        num_classes: kw.int("num_classes")?,
        frames,
        adapter_width: kw.int("adapter_width")?,
        kernel: Kernel3::new(ks[0], ks[1], ks[2]),
        positions,
        blocks: Blocks::Last(kw.int("adapter_layers")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::host;
    use crate::ops::gradcheck::rand_vec;

    const C: usize = 8;

    fn f32s(seed: u64, n: usize) -> Vec<f32> {
        rand_vec(seed, n).into_iter().map(|v| v as f32).collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// An adapter of width 4 with every parameter random (a built one has a zero conv and biases).
    fn adapter(dev: &Cpu, kernel: Kernel3) -> Adapter<C, f32, Cpu> {
        let mut a = Adapter::build(4, kernel, dev, &mut Init::seeded(3));
        a.fc1.bias.as_mut().unwrap().set(&f32s(4, 4));
        a.conv.weight.set(&f32s(5, 4 * kernel.taps()));
        a.conv.bias.set(&f32s(6, 4));
        a.fc2.bias.as_mut().unwrap().set(&f32s(7, C));
        a
    }

    /// The output, and the gradients of x and of every parameter (None where none is kept), of
    /// Σ r·adapter(x), bit patterns.
    /// The branch as separate ops (`None`), or fused with its forward over tiles of whole videos
    /// or not (`Some(tiled)`).
    fn branch<T: Tape<f32, Cpu>>(
        a: &Adapter<C, f32, Cpu>,
        x: Tokens<C, f32, Cpu, T>,
        grid: Grid,
        fused: Option<bool>,
    ) -> Tokens<C, f32, Cpu, T> {
        match fused {
            Some(tiled) => a.forward_fused_by(x, grid, tiled),
            None => a.forward_separate(x, grid),
        }
    }

    fn run(
        a: &Adapter<C, f32, Cpu>,
        x: &Tokens<C, f32, Cpu>,
        grid: Grid,
        fused: Option<bool>,
    ) -> Vec<Option<Vec<u32>>> {
        let y = branch(a, x.leaky_trace(), grid, fused);
        let yv = host(&y);
        let r = x.device().tensor_from_vec(f32s(8, yv.len()), *y.shape());
        let g = (y * r).sum::<Rank0, _>().backward();
        fn grad<S: Shape>(g: &Gradients<f32, Cpu>, t: &Tensor<S, f32, Cpu>) -> Option<Vec<u32>> {
            crate::testing::has_grad(g, t).then(|| bits(&g.get(t).as_vec()))
        }
        vec![
            Some(bits(&yv)),
            Some(bits(&g.get(x).as_vec())),
            grad(&g, &a.fc1.weight.value),
            grad(&g, &a.fc1.bias.as_ref().unwrap().value),
            grad(&g, &a.conv.weight.value),
            grad(&g, &a.conv.bias.value),
            grad(&g, &a.fc2.weight.value),
            grad(&g, &a.fc2.bias.as_ref().unwrap().value),
        ]
    }

    /// The fused branch, with its forward pass over tiles of whole videos and without, gives the
    /// bits of the separate ops (patch tokens, fc1, the conv, fc2, the residual into the patches):
    /// the output, the input gradient and every parameter's gradient, for kernels 3×1×1 and
    /// 3×3×3, with every parameter trained and with some frozen (no gradient on either path), on
    /// tokens that include negative zeros (a copy keeps their sign where an addition to zero would
    /// not).
    #[test]
    fn the_fused_branch_has_the_bits_of_the_separate_ops() {
        let dev = Cpu::default();
        // 90 patch rows per video: fc1's 4 and fc2's 8 outputs per row make products of more than
        // 256 outputs per tile, as in the models
        let grid = Grid { b: 2, t: 3, h: 5, w: 6 };
        let (n, l) = (grid.b * grid.t, 1 + grid.h * grid.w);
        let mut xv = f32s(1, n * l * C);
        xv.iter_mut().step_by(5).for_each(|v| *v = -0.0);
        let x: Tokens<C, f32, Cpu> = dev.tensor_from_vec(xv, (n, l, Const::<C>));
        for (kernel, tiled) in
            [(Kernel3::new(3, 1, 1), false), (Kernel3::new(3, 1, 1), true), (Kernel3::new(3, 3, 3), true)]
        {
            let mut a = adapter(&dev, kernel);
            let fused = run(&a, &x, grid, Some(tiled));
            assert_eq!(fused, run(&a, &x, grid, None), "kernel {kernel}, tiled {tiled}");
            assert!(fused.iter().all(Option::is_some));
            a.fc1.weight.trainable = false;
            a.conv.bias.trainable = false;
            a.fc2.bias.as_mut().unwrap().trainable = false;
            let fused = run(&a, &x, grid, Some(tiled));
            assert_eq!(fused, run(&a, &x, grid, None), "kernel {kernel}, tiled {tiled}, partly frozen");
            assert_eq!(fused.iter().filter(|g| g.is_none()).count(), 3);
            let eval = |f| bits(&host(&branch(&a, x.clone(), grid, f)));
            assert_eq!(eval(Some(tiled)), eval(None), "kernel {kernel}, tiled {tiled}, untraced");
        }
    }
}
