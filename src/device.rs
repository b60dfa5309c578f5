//! What our own ops need from an element type and from a dfdx device.
//!
//! Every op in [`crate::ops`] has its kernel on host slices (the reference). On [`Cpu`] gradients are
//! accumulated in the tensor's own buffer. On `Cuda` (feature `cuda`, f32) the ops with a `k_*` hook
//! below run CUDA kernels on device buffers (`ops::cuda`); the others still make a round trip through
//! host memory (listed in `ops/cuda/gpu.rs`). The optimizer's hooks (`k_accumulate`,
//! `k_adamw_step`) keep gradient sums and AdamW's moments on the device.

use dfdx::prelude::*;

use crate::ops::layer_norm::LayerNorm;
use crate::ops::tokens::TokenOp;
use crate::ops::{Act, Grid, Kernel3, Rows, SeqAxis, Weights};
use crate::optim::{AdamW, GradSums};
use crate::param::{Param, Params};

/// The floating-point element types our kernels are written for: `f32` for models, `f64` for the
/// finite-difference gradient checks.
pub trait Real:
    Dtype + num_traits::Float + num_traits::FromPrimitive + std::iter::Sum + std::fmt::Display + Send + Sync + 'static
{
    /// The error function (exact GELU needs it; `num_traits::Float` has none).
    fn erf(self) -> Self;
    /// e^x in a form the compiler can vectorise (see [`crate::ops::simd`]). f32: Cody–Waite range
    /// reduction and Cephes' degree-6 polynomial, within 2 ulp of e^x on [−87.3, 88.3]; inputs are
    /// clamped to that range (so e^x ≥ 1.2·10⁻³⁸ and finite). f64: the library's `exp`.
    fn fast_exp(self) -> Self;
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
}

impl Real for f32 {
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline(always)]
    // Cephes' expf coefficients as published (the f32 nearest each is what runs)
    #[allow(clippy::excessive_precision)]
    fn fast_exp(self) -> f32 {
        const LN2_HI: f32 = 0.693_359_4; // ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 8 bits
        const LN2_LO: f32 = -2.121_944_4e-4;
        const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
        let x = self.clamp(-87.33, 88.3);
        let t = x * std::f32::consts::LOG2_E + ROUND;
        let n = t - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = 1.987_569_1e-4f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 5.000_000_1e-1;
        let e = p * r * r + r + 1.0;
        // 2ⁿ from the bits of t: t = 1.5·2²³ + n lies in [2²³, 2²⁴), where one unit is one ulp, so
        // its bits are those of ROUND plus n. Integer lanes, where `n as i32` (a saturating cast)
        // would make the compiler convert lane by lane.
        e * f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
    }
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
}

/// A dfdx device whose gradient buffers our host kernels can read and write.
///
/// dfdx 0.13 keeps a tensor's buffer crate-private (`Tensorlike::data` is not exported), so inputs
/// are read with `tensor_to_vec` (one copy, logical order) and outputs are handed over with
/// `tensor_from_vec` (no copy on CPU). Gradient buffers come from `Gradients::get_or_alloc_mut`.
pub trait KitDevice<E: Real>: Device<E> {
    /// Runs `f` on a gradient buffer; `f` accumulates into it.
    fn update(
        &self,
        buf: &mut <Self as Storage<E>>::Vec,
        f: impl FnOnce(&mut [E]),
    ) -> Result<(), <Self as HasErr>::Err>;

    /// Moves the gradient of an op's output out of its buffer. Only the op that produced the
    /// tensor may call this, once: afterwards the buffer is empty.
    fn take(&self, buf: &mut <Self as Storage<E>>::Vec) -> Vec<E>;

    /// Whether our ops run on this device's own kernels (CUDA, f32). The fused host ops (attention
    /// block, MLP) then run as their separate ops, each on the device.
    const KERNELS: bool = false;

    // The ops on this device's own kernels. Each returns its inputs (`Err`) when the device has none,
    // and the op then runs its host code (the CPU path, the reference). Only `Cuda` (f32) overrides
    // them, with the functions of `ops::cuda::gpu`.

    fn k_activation<S: Shape, T: Tape<E, Self>>(x: Tensor<S, E, Self, T>, act: Act) -> Kernel<S, S, E, Self, T> {
        let _ = act;
        Err(x)
    }
    fn k_layer_norm<S: Rows<Feat = X>, X: Dim, T: Tape<E, Self>>(
        x: Tensor<S, E, Self, T>,
        ln: &LayerNorm<X, E, Self>,
    ) -> Kernel<S, S, E, Self, T> {
        let _ = ln;
        Err(x)
    }
    fn k_dwconv3d<T: Tape<E, Self>>(
        x: Tensor<Tok, E, Self, T>,
        weight: &Param<(usize, usize), E, Self>,
        bias: &Param<(usize,), E, Self>,
        kernel: Kernel3,
        grid: Grid,
    ) -> Kernel<Tok, Tok, E, Self, T> {
        let _ = (weight, bias, kernel, grid);
        Err(x)
    }
    fn k_mask<S: Shape, T: Tape<E, Self>>(
        x: Tensor<S, E, Self, T>,
        factors: &[E],
        block: usize,
    ) -> Kernel<S, S, E, Self, T> {
        let _ = (factors, block);
        Err(x)
    }
    #[allow(clippy::type_complexity)]
    fn k_add<S: Shape, T1: Tape<E, Self> + Merge<T2>, T2: Tape<E, Self>>(
        a: Tensor<S, E, Self, T1>,
        b: Tensor<S, E, Self, T2>,
    ) -> Result<Tensor<S, E, Self, T1>, (Tensor<S, E, Self, T1>, Tensor<S, E, Self, T2>)> {
        Err((a, b))
    }
    fn k_linear<S: Rows<Feat = I>, I: Dim, O: Dim, T: Tape<E, Self>>(
        x: Tensor<S, E, Self, T>,
        weight: &Tensor<(O, I), E, Self>,
        bias: Option<&Tensor<(O,), E, Self>>,
        want_dw: bool,
        want_db: bool,
    ) -> Kernel<S, S::With<O>, E, Self, T> {
        let _ = (weight, bias, want_dw, want_db);
        Err(x)
    }
    fn k_self_attention<X: Dim, T: Tape<E, Self>>(
        qkv: Tensor<Tok, E, Self, T>,
        heads: usize,
        axis: SeqAxis,
        width: X,
    ) -> Kernel<Tok, (usize, usize, X), E, Self, T> {
        let _ = (heads, axis, width);
        Err(qkv)
    }
    fn k_mean_over_frames<X: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, X), E, Self, T>,
        frames: usize,
    ) -> Kernel<(usize, X), (usize, X), E, Self, T> {
        let _ = frames;
        Err(x)
    }
    fn k_tokens<S: Shape, S2: Shape, T: Tape<E, Self>>(
        x: Tensor<S, E, Self, T>,
        out: S2,
        op: &TokenOp,
    ) -> Kernel<S, S2, E, Self, T> {
        let _ = (out, op);
        Err(x)
    }
    /// `clip::vit::patchify` (untraced): `None` runs the host code.
    fn k_patchify(video: &Tensor<VideoShape, E, Self>, p: usize) -> Option<Tensor<Tok, E, Self>> {
        let _ = (video, p);
        None
    }
    fn k_embed_tokens<X: Dim, T: Tape<E, Self>>(
        patches: Tensor<(usize, usize, X), E, Self, T>,
        class_embedding: &Param<(X,), E, Self>,
        positional_embedding: &Param<(usize, X), E, Self>,
        temporal_embedding: Option<&Param<(usize, X), E, Self>>,
        temporal_on_cls: bool,
    ) -> Kernel<TokX<X>, TokX<X>, E, Self, T> {
        let _ = (class_embedding, positional_embedding, temporal_embedding, temporal_on_cls);
        Err(patches)
    }
    fn k_set_prompts<X: Dim, T: Tape<E, Self>>(
        x: Tensor<(usize, usize, X), E, Self, T>,
        old: usize,
        prompts: &Param<(usize, X), E, Self>,
    ) -> Kernel<TokX<X>, TokX<X>, E, Self, T> {
        let _ = (old, prompts);
        Err(x)
    }
    #[allow(clippy::type_complexity)]
    fn k_add_to_patches<X: Dim, TX: Tape<E, Self>, TD: Tape<E, Self> + Merge<TX>>(
        x: Tensor<(usize, usize, X), E, Self, TX>,
        delta: Tensor<(usize, usize, X), E, Self, TD>,
    ) -> Result<
        Tensor<(usize, usize, X), E, Self, TD>,
        (Tensor<(usize, usize, X), E, Self, TX>, Tensor<(usize, usize, X), E, Self, TD>),
    > {
        Err((x, delta))
    }
    #[allow(clippy::type_complexity)]
    fn k_fuse<S: Shape, TB: Tape<E, Self>, T: Tape<E, Self> + Merge<TB>>(
        base: Tensor<S, E, Self, TB>,
        terms: Vec<Tensor<S, E, Self, T>>,
        w: &[E],
        weights: &Weights<E, Self>,
    ) -> Result<Tensor<S, E, Self, T>, (Tensor<S, E, Self, TB>, Vec<Tensor<S, E, Self, T>>)> {
        let _ = (w, weights);
        Err((base, terms))
    }
    #[allow(clippy::type_complexity)]
    fn k_cross_entropy<X: Dim>(
        logits: Tensor<(usize, X), E, Self, OwnedTape<E, Self>>,
        labels: &[usize],
        smoothing: f64,
    ) -> Result<Tensor<Rank0, E, Self, OwnedTape<E, Self>>, Tensor<(usize, X), E, Self, OwnedTape<E, Self>>> {
        let _ = (labels, smoothing);
        Err(logits)
    }

    // The optimizer on this device's own buffers (`crate::optim`): each returns false when the
    // device has none, and the host code runs.

    /// Adds `scale` × the gradient of every trainable parameter of `model` to `sums`, kept in
    /// buffers of the device.
    fn k_accumulate<M: Params<E, Self>>(
        model: &M,
        grads: &mut Gradients<E, Self>,
        scale: E,
        sums: &mut GradSums<E>,
    ) -> bool {
        let _ = (model, grads, scale, sums);
        false
    }
    /// One AdamW update (`opt.step` already counted) of every trainable parameter of `model`, in
    /// place on the device, with the moments held there.
    fn k_adamw_step<M: Params<E, Self>>(opt: &mut AdamW<E>, model: &mut M, sums: &mut GradSums<E>) -> bool {
        let _ = (opt, model, sums);
        false
    }
}

/// Token streams (B·T, L, C) with runtime sizes.
type Tok = (usize, usize, usize);

/// Token streams (B·T, L, X) with a width type.
type TokX<X> = (usize, usize, X);

/// A video batch (B, 3, T, H, W) (`clip::vit::Video`).
type VideoShape = (usize, Const<3>, usize, usize, usize);

/// What a device's kernel returns: the op's output, or its input back for the host code.
pub type Kernel<S, S2, E, D, T> = Result<Tensor<S2, E, D, T>, Tensor<S, E, D, T>>;

impl<E: Real> KitDevice<E> for Cpu
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    fn update(&self, buf: &mut <Cpu as Storage<E>>::Vec, f: impl FnOnce(&mut [E])) -> Result<(), CpuError> {
        f(&mut buf[..]);
        Ok(())
    }

    fn take(&self, buf: &mut <Cpu as Storage<E>>::Vec) -> Vec<E> {
        std::mem::take(&mut **buf)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use crate::ops::cuda::gpu;
    use cudarc::driver::CudaSlice;
    use dfdx::tensor::{Cuda, CudaError};

    /// On CUDA (f32) our ops run their kernels (`ops::cuda`); `update` and `take`, which move a
    /// gradient through host memory, remain for the ops that have no kernel path yet.
    impl KitDevice<f32> for Cuda {
        fn update(&self, buf: &mut <Cuda as Storage<f32>>::Vec, f: impl FnOnce(&mut [f32])) -> Result<(), CudaError> {
            let slice: &mut CudaSlice<f32> = buf;
            let dev = slice.device();
            let mut host = dev.dtoh_sync_copy(slice)?;
            f(&mut host);
            dev.htod_sync_copy_into(&host, slice)?;
            Ok(())
        }

        fn take(&self, buf: &mut <Cuda as Storage<f32>>::Vec) -> Vec<f32> {
            let slice: &CudaSlice<f32> = buf;
            slice.device().dtoh_sync_copy(slice).expect("CUDA device-to-host copy")
        }

        const KERNELS: bool = true;

        fn k_activation<S: Shape, T: Tape<f32, Self>>(
            x: Tensor<S, f32, Self, T>,
            act: Act,
        ) -> Kernel<S, S, f32, Self, T> {
            Ok(gpu::activation(x, act))
        }
        fn k_layer_norm<S: Rows<Feat = X>, X: Dim, T: Tape<f32, Self>>(
            x: Tensor<S, f32, Self, T>,
            ln: &LayerNorm<X, f32, Self>,
        ) -> Kernel<S, S, f32, Self, T> {
            Ok(gpu::layer_norm(x, ln))
        }
        fn k_dwconv3d<T: Tape<f32, Self>>(
            x: Tensor<Tok, f32, Self, T>,
            weight: &Param<(usize, usize), f32, Self>,
            bias: &Param<(usize,), f32, Self>,
            kernel: Kernel3,
            grid: Grid,
        ) -> Kernel<Tok, Tok, f32, Self, T> {
            Ok(gpu::dwconv3d(x, weight, bias, kernel, grid))
        }
        fn k_mask<S: Shape, T: Tape<f32, Self>>(
            x: Tensor<S, f32, Self, T>,
            factors: &[f32],
            block: usize,
        ) -> Kernel<S, S, f32, Self, T> {
            Ok(gpu::mask(x, factors, block))
        }
        fn k_add<S: Shape, T1: Tape<f32, Self> + Merge<T2>, T2: Tape<f32, Self>>(
            a: Tensor<S, f32, Self, T1>,
            b: Tensor<S, f32, Self, T2>,
        ) -> Result<Tensor<S, f32, Self, T1>, (Tensor<S, f32, Self, T1>, Tensor<S, f32, Self, T2>)> {
            Ok(gpu::add(a, b))
        }
        fn k_linear<S: Rows<Feat = I>, I: Dim, O: Dim, T: Tape<f32, Self>>(
            x: Tensor<S, f32, Self, T>,
            weight: &Tensor<(O, I), f32, Self>,
            bias: Option<&Tensor<(O,), f32, Self>>,
            want_dw: bool,
            want_db: bool,
        ) -> Kernel<S, S::With<O>, f32, Self, T> {
            Ok(gpu::linear(x, weight, bias, want_dw, want_db))
        }
        fn k_self_attention<X: Dim, T: Tape<f32, Self>>(
            qkv: Tensor<Tok, f32, Self, T>,
            heads: usize,
            axis: SeqAxis,
            width: X,
        ) -> Kernel<Tok, (usize, usize, X), f32, Self, T> {
            Ok(gpu::self_attention(qkv, heads, axis, width))
        }
        fn k_mean_over_frames<X: Dim, T: Tape<f32, Self>>(
            x: Tensor<(usize, X), f32, Self, T>,
            frames: usize,
        ) -> Kernel<(usize, X), (usize, X), f32, Self, T> {
            Ok(gpu::mean_over_frames(x, frames))
        }
        fn k_tokens<S: Shape, S2: Shape, T: Tape<f32, Self>>(
            x: Tensor<S, f32, Self, T>,
            out: S2,
            op: &TokenOp,
        ) -> Kernel<S, S2, f32, Self, T> {
            Ok(gpu::tokens(x, out, op))
        }
        fn k_patchify(video: &Tensor<VideoShape, f32, Self>, p: usize) -> Option<Tensor<Tok, f32, Self>> {
            Some(gpu::patchify(video, p))
        }
        fn k_embed_tokens<X: Dim, T: Tape<f32, Self>>(
            patches: Tensor<(usize, usize, X), f32, Self, T>,
            class_embedding: &Param<(X,), f32, Self>,
            positional_embedding: &Param<(usize, X), f32, Self>,
            temporal_embedding: Option<&Param<(usize, X), f32, Self>>,
            temporal_on_cls: bool,
        ) -> Kernel<TokX<X>, TokX<X>, f32, Self, T> {
            Ok(gpu::embed_tokens(patches, class_embedding, positional_embedding, temporal_embedding, temporal_on_cls))
        }
        fn k_set_prompts<X: Dim, T: Tape<f32, Self>>(
            x: Tensor<(usize, usize, X), f32, Self, T>,
            old: usize,
            prompts: &Param<(usize, X), f32, Self>,
        ) -> Kernel<TokX<X>, TokX<X>, f32, Self, T> {
            Ok(gpu::set_prompts(x, old, prompts))
        }
        fn k_add_to_patches<X: Dim, TX: Tape<f32, Self>, TD: Tape<f32, Self> + Merge<TX>>(
            x: Tensor<(usize, usize, X), f32, Self, TX>,
            delta: Tensor<(usize, usize, X), f32, Self, TD>,
        ) -> Result<
            Tensor<(usize, usize, X), f32, Self, TD>,
            (Tensor<(usize, usize, X), f32, Self, TX>, Tensor<(usize, usize, X), f32, Self, TD>),
        > {
            Ok(gpu::add_to_patches(x, delta))
        }
        fn k_fuse<S: Shape, TB: Tape<f32, Self>, T: Tape<f32, Self> + Merge<TB>>(
            base: Tensor<S, f32, Self, TB>,
            terms: Vec<Tensor<S, f32, Self, T>>,
            w: &[f32],
            weights: &Weights<f32, Self>,
        ) -> Result<Tensor<S, f32, Self, T>, (Tensor<S, f32, Self, TB>, Vec<Tensor<S, f32, Self, T>>)> {
            Ok(gpu::fuse(base, terms, w, weights))
        }
        fn k_cross_entropy<X: Dim>(
            logits: Tensor<(usize, X), f32, Self, OwnedTape<f32, Self>>,
            labels: &[usize],
            smoothing: f64,
        ) -> Result<Tensor<Rank0, f32, Self, OwnedTape<f32, Self>>, Tensor<(usize, X), f32, Self, OwnedTape<f32, Self>>>
        {
            Ok(gpu::cross_entropy(logits, labels, smoothing))
        }
        fn k_accumulate<M: Params<f32, Self>>(
            model: &M,
            grads: &mut Gradients<f32, Self>,
            scale: f32,
            sums: &mut GradSums<f32>,
        ) -> bool {
            gpu::accumulate(model, grads, scale, sums);
            true
        }
        fn k_adamw_step<M: Params<f32, Self>>(opt: &mut AdamW<f32>, model: &mut M, sums: &mut GradSums<f32>) -> bool {
            gpu::adamw_step(opt, model, sums);
            true
        }
    }
}

/// The device a tool runs on: `--device cpu` (the default) or `--device cuda` / `cuda:N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DeviceArg {
    #[default]
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl DeviceArg {
    /// Parses `cpu`, `cuda` or `cuda:N`. `cuda` is checked at once: the error says whether the kit
    /// was built without feature `cuda` or the machine has no such CUDA device.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ordinal = match s {
            "cpu" => return Ok(DeviceArg::Cpu),
            "cuda" => 0,
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => n,
                _ => return Err(format!("unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N`")),
            },
        };
        cuda_devices().and_then(|n| {
            if ordinal < n {
                Ok(DeviceArg::Cuda(ordinal))
            } else {
                Err(format!("`{s}`: the machine has {n} CUDA device(s)"))
            }
        })
    }
}

/// `cpu` or `cuda:N`, as [`DeviceArg::parse`] reads it.
impl std::fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceArg::Cpu => write!(f, "cpu"),
            DeviceArg::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// The error for `--device cuda:N` in a build that cannot open a device (without feature `cuda`, or
/// with `ci-check`): the same reason [`DeviceArg::parse`] gives, naming the device.
#[cfg(any(not(feature = "cuda"), feature = "ci-check"))]
pub fn cuda_unavailable(ordinal: usize) -> anyhow::Error {
    anyhow::anyhow!("--device cuda:{ordinal}: {}", cuda_devices().err().unwrap_or_default())
}

/// The number of CUDA devices, or why there are none to use. Never panics (dfdx's `Cuda::default()`
/// does without a device): asks the driver directly.
pub fn cuda_devices() -> Result<usize, String> {
    // with `ci-check` the CUDA libraries are not linked: nothing may call them
    #[cfg(all(feature = "cuda", not(feature = "ci-check")))]
    {
        use cudarc::driver::result;
        match result::init().and_then(|_| result::device::get_count()) {
            Ok(0) => Err("no CUDA device: the driver reports 0 devices".into()),
            Ok(n) => Ok(n as usize),
            Err(e) => Err(format!("no CUDA device: the CUDA driver says {e:?}")),
        }
    }
    #[cfg(all(feature = "cuda", feature = "ci-check"))]
    return Err("this build only type-checks CUDA (feature `ci-check`; rebuild with `--features cuda` alone)".into());
    #[cfg(not(feature = "cuda"))]
    Err("this build has no CUDA support (rebuild with `--features cuda`)".into())
}

/// Opens CUDA device `ordinal` (after [`cuda_devices`] says it exists); the error names it.
#[cfg(all(feature = "cuda", not(feature = "ci-check")))]
pub fn open_cuda(ordinal: usize) -> anyhow::Result<dfdx::tensor::Cuda> {
    let n = cuda_devices().map_err(|e| anyhow::anyhow!("cuda:{ordinal}: {e}"))?;
    anyhow::ensure!(ordinal < n, "cuda:{ordinal}: the machine has {n} CUDA device(s)");
    dfdx::tensor::Cuda::try_build(ordinal, 0).map_err(|e| anyhow::anyhow!("opening CUDA device {ordinal}: {e}"))
}

// ANCHOR: device_buffers
/// A copy of a tensor's elements in a buffer of its own device (`D::Vec`), made on the device.
///
/// dfdx 0.13 keeps a tensor's buffer crate-private, but gradient buffers are public: the gradient
/// of `sum(probe · x)` with respect to `probe` is `x`, computed by dfdx's own `mul` backward on the
/// device. Our CUDA ops read their inputs this way (no host transfer); `tests/dfdx_upstream.rs`
/// pins the behaviour.
pub fn buffer_of<S: Shape, E: Dtype, D: Device<E>, T>(
    t: &Tensor<S, E, D, T>,
) -> Result<<D as Storage<E>>::Vec, D::Err> {
    let n = t.shape().num_elements();
    let dev = t.device().clone();
    let flat = t.retaped::<NoneTape>().try_contiguous()?.try_reshape_like(&(n,))?;
    let probe: Tensor<(usize,), E, D> = dev.try_ones_like(&(n,))?;
    let y = probe.clone().traced(Gradients::leaky()).try_mul(flat)?;
    let mut g = y.try_sum::<Rank0, _>()?.try_backward()?;
    let empty = <D as Storage<E>>::try_alloc_len(&dev, 0)?;
    Ok(std::mem::replace(g.get_or_alloc_mut(&probe)?, empty))
}

/// A tensor of `shape` whose elements `fill` writes into a zeroed buffer of the device (a gradient
/// buffer turned into a tensor by `Gradients::get`, the one public way to make a tensor from a
/// device buffer in dfdx 0.13). Our CUDA ops hand over their outputs this way.
pub fn tensor_filled<S: Shape, E: Dtype, D: Device<E>>(
    dev: &D,
    shape: S,
    fill: impl FnOnce(&mut <D as Storage<E>>::Vec),
) -> Result<Tensor<S, E, D>, D::Err> {
    let n = shape.num_elements();
    let carrier: Tensor<(usize,), E, D> = dev.try_zeros_like(&(n,))?;
    let mut g = Gradients::leaky();
    fill(g.get_or_alloc_mut(&carrier)?);
    g.get(&carrier).try_reshape_like(&shape)
}
// ANCHOR_END: device_buffers

// ANCHOR: tune_host_allocator
/// Keeps freed host memory mapped, so that the next step reuses it instead of faulting in fresh
/// pages. Every binary of the kit calls this first; it returns whether the allocator took the
/// settings (false off glibc, where nothing is changed).
///
/// glibc's malloc serves a large block with its own `mmap` and returns it to the kernel when freed,
/// and it returns the free top of its heap once that exceeds a trim threshold. Both thresholds
/// adapt to the sizes freed so far, so during training, blocks of a few MiB (activations and
/// their gradients) keep going back to the kernel. The kernel must then fault in and zero fresh
/// pages for the next step, about a tenth of the small preset's training step on this machine.
/// Fixing the mmap threshold at 32 MiB (the most its adaptive threshold reaches on 64-bit targets)
/// and never trimming below 2 GiB keeps those blocks in the heap. Larger blocks are still mapped
/// and unmapped each time (ViT-B/16's MLP activations at two clips per step and more). The peak
/// resident memory does not grow, because the peak is reached inside a step anyway.
pub fn tune_host_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets malloc parameters; it is safe to call at any time, from any
        // thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}
// ANCHOR_END: tune_host_allocator

/// A tensor's elements in logical (row-major) order (one copy).
///
/// dfdx's `tensor_to_vec` walks the tensor with a strided iterator, element by element; this is one
/// `memcpy` of the buffer (`copy_into`) whenever the tensor is contiguous, which every tensor our
/// ops make is (`contiguous()` returns such a tensor as it is, and copies any other first).
pub fn host<S: Shape, E: Real, D: KitDevice<E>, T>(t: &Tensor<S, E, D, T>) -> Vec<E> {
    let c = t.retaped::<NoneTape>().contiguous();
    let mut v = vec![E::zero(); c.shape().num_elements()];
    c.copy_into(&mut v);
    v
}

/// Wraps a host vector as a tensor of `shape` (no copy on CPU).
pub fn tensor<S: Shape, E: Real, D: KitDevice<E>>(dev: &D, data: Vec<E>, shape: S) -> Tensor<S, E, D> {
    assert_eq!(data.len(), shape.num_elements(), "data length does not match shape {:?}", shape.concrete());
    dev.tensor_from_vec(data, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--device` values: `cpu`, and an error for nonsense naming the value; `cuda` fails with a
    /// reason on a machine or build without CUDA (here: always, unless a GPU is present).
    #[test]
    fn device_arg_parses_cpu_and_names_what_is_wrong() {
        assert_eq!(DeviceArg::parse("cpu"), Ok(DeviceArg::Cpu));
        let e = DeviceArg::parse("gpu").unwrap_err();
        assert!(e.contains("`gpu`") && e.contains("cuda:N"), "{e}");
        assert!(DeviceArg::parse("cuda:x").is_err());
        match (DeviceArg::parse("cuda"), cuda_devices()) {
            (Ok(d), Ok(_)) => assert_eq!(d, DeviceArg::Cuda(0)),
            (Err(e), Err(why)) => assert_eq!(e, why),
            (got, count) => panic!("parse {got:?} disagrees with the device count {count:?}"),
        }
    }

    /// glibc takes both malloc settings (`mallopt` returns 1; it returns 0 for a value it refuses).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_host_allocator_settings() {
        assert!(tune_host_allocator());
    }

    /// `host` gives the logical order of a contiguous tensor (one copy of its buffer) and of a
    /// permuted one (whose buffer is in another order), as dfdx's own `as_vec` does.
    #[test]
    fn host_reads_tensors_in_logical_order() {
        let dev = Cpu::default();
        let t = dev.tensor_from_vec((0..6).map(|i| i as f64).collect(), (2usize, 3usize));
        assert_eq!(host(&t), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let p = t.clone().permute::<(usize, usize), Axes2<1, 0>>();
        assert_eq!(host(&p), p.as_vec());
        assert_eq!(host(&p), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let b: Tensor<(usize, usize), f64, Cpu> =
            dev.tensor_from_vec(vec![1.0, 2.0], (2usize,)).broadcast_like::<_, Axis<0>>(&(3usize, 2usize));
        assert_eq!(host(&b), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    }
}
