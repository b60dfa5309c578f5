//! Our ops on a CUDA device, f32: the kernels of [`super::SOURCES`] compiled by NVRTC (once per device)
//! and cuBLAS for the GEMMs, forward and backward, with no host round trip for activations or
//! gradients. Each function mirrors the CPU op of the same name in [`crate::ops`] (the reference).
//!
//! Reaching a tensor's device buffer: dfdx 0.13 keeps `Tensor::data` crate-private, but its gradient
//! buffers are public (`Gradients::get_or_alloc_mut`) and `Gradients::get` turns a gradient buffer into
//! a tensor. So [`read`] copies a tensor into a buffer on the device through dfdx's own `mul` backward
//! (the gradient of `sum(probe · x)` with respect to `probe` is `x`), and [`wrap`] turns a buffer into a
//! tensor through `Gradients::get`. Both are device-to-device (a few kernels and one copy each): no
//! host transfer, but not free either — the cost a future dfdx with public buffers would remove.
//! `tests/dfdx_upstream.rs` pins the behaviour [`read`] relies on (on the CPU).
//!
//! Every op of the models (each `KitDevice::k_*` hook, patchify, token embedding and prompts included)
//! runs here, forward and backward, without a host round trip, and so does the optimizer
//! (`crate::optim`): gradient sums and AdamW's moments stay in device buffers and the parameters are
//! updated in place ([`accumulate`], [`adamw_step`]). Nothing here has run on a GPU: `tests/gpu.rs` compares every op with the CPU where one exists.

use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{CudaDevice, CudaFunction, CudaSlice, DevicePtr, DeviceSlice, LaunchAsync, LaunchConfig};
use dfdx::prelude::*;
use dfdx::tensor::{Cuda, CudaError};

use super::plan::{ColMajor, Operand, SeqPlan};
use crate::device::{buffer_of, tensor_filled};
use crate::ops::layer_norm::LayerNorm;
use crate::ops::tokens::TokenOp;
use crate::ops::{Grid, Kernel3, Rows, SeqAxis, Weights};
use crate::param::Param;

/// Threads per block of every launch.
const BLOCK: u32 = 256;

/// Compiles every source with NVRTC and loads it on `dev`, once per device (later calls find the
/// modules loaded). Errors name the source file.
pub fn load_kernels(dev: &Arc<CudaDevice>) -> Result<(), String> {
    static LOADED: OnceLock<Mutex<Vec<usize>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(Default::default);
    let mut loaded = loaded.lock().map_err(|_| "kernel registry poisoned".to_string())?;
    if loaded.contains(&dev.ordinal()) {
        return Ok(());
    }
    for s in super::SOURCES {
        let ptx =
            cudarc::nvrtc::compile_ptx(s.text).map_err(|e| format!("NVRTC could not compile {}: {e:?}", s.file))?;
        dev.load_ptx(ptx, s.module, s.kernels).map_err(|e| format!("loading {} on the GPU: {e:?}", s.file))?;
    }
    loaded.push(dev.ordinal());
    Ok(())
}

/// The kernel `name` (loading every kernel on first use).
fn func(dev: &Arc<CudaDevice>, name: &str) -> CudaFunction {
    load_kernels(dev).unwrap_or_else(|e| panic!("{e}"));
    let module = super::SOURCES
        .iter()
        .find(|s| s.kernels.contains(&name))
        .unwrap_or_else(|| panic!("no CUDA kernel named {name} in ops/cuda"))
        .module;
    dev.get_func(module, name).unwrap_or_else(|| panic!("CUDA kernel {name} not loaded"))
}

/// A 1-D launch of `n` threads.
fn cfg(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: ((n as u32).div_ceil(BLOCK).max(1), 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// The cuBLAS handle of `dev` (one per device, on its default stream, as dfdx's own).
fn blas(dev: &Arc<CudaDevice>) -> Arc<CudaBlas> {
    type Handles = Mutex<Vec<(usize, Arc<CudaBlas>)>>;
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    let mut hs = HANDLES.get_or_init(Default::default).lock().expect("cuBLAS handles");
    if let Some((_, h)) = hs.iter().find(|(o, _)| *o == dev.ordinal()) {
        return h.clone();
    }
    let h = Arc::new(CudaBlas::new(dev.clone()).expect("cuBLAS handle"));
    hs.push((dev.ordinal(), h.clone()));
    h
}

/// A raw device pointer for a nullable kernel argument (0 = null).
fn ptr(s: Option<&CudaSlice<f32>>) -> u64 {
    s.map_or(0, |s| *s.device_ptr())
}

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("CUDA {what}: {e:?}"))
}

/// A tensor's elements, copied on the device into a buffer of our own ([`buffer_of`]).
pub fn read<S: Shape, T>(t: &Tensor<S, f32, Cuda, T>) -> CudaSlice<f32> {
    let mut b = ok(buffer_of(t), "device copy");
    ok(take(&mut b), "device copy")
}

/// A buffer as a tensor of `shape` ([`tensor_filled`]).
pub fn wrap<S: Shape>(dev: &Cuda, mut buf: CudaSlice<f32>, shape: S) -> Tensor<S, f32, Cuda> {
    let n = shape.num_elements();
    assert_eq!(buf.len(), n, "wrap: buffer of {} for shape {:?}", buf.len(), shape.concrete());
    ok(tensor_filled(dev, shape, |slot| std::mem::swap(&mut **slot, &mut buf)), "device buffer")
}

/// The device of a buffer.
fn device_of(s: &CudaSlice<f32>) -> Arc<CudaDevice> {
    s.device()
}

fn zeros(dev: &Arc<CudaDevice>, n: usize) -> CudaSlice<f32> {
    ok(dev.alloc_zeros::<f32>(n), "alloc")
}

/// Moves a gradient buffer out of the tape (only the op that produced a tensor reads its gradient,
/// once, as the CPU ops' `KitDevice::take`).
fn take(slot: &mut CudaSlice<f32>) -> Result<CudaSlice<f32>, CudaError> {
    let null = slot.device().null::<f32>()?;
    Ok(std::mem::replace(slot, null))
}

macro_rules! launch {
    ($dev:expr, $name:literal, $n:expr, ($($arg:expr),* $(,)?)) => {{
        let f = func($dev, $name);
        // SAFETY: the arguments match the kernel's signature in ops/cuda/*.cu (sizes as size_t, flags
        // as int, buffers as float*); every buffer is at least as long as the kernel's bounds read.
        ok(unsafe { f.launch(cfg($n), ($($arg,)*)) }, $name);
    }};
}

// ---------------------------------------------------------------------------------------------
// Ops. Each: split the tape, read inputs, launch the forward, wrap the output, record a backward.
// ---------------------------------------------------------------------------------------------

/// [`crate::ops::activation`] (kernel kind 0: QuickGELU, 1: exact GELU).
pub fn activation<S: Shape, T: Tape<f32, Cuda>>(
    x: Tensor<S, f32, Cuda, T>,
    act: crate::ops::Act,
) -> Tensor<S, f32, Cuda, T> {
    let kind: i32 = match act {
        crate::ops::Act::QuickGelu => 0,
        crate::ops::Act::Gelu => 1,
    };
    let shape = *x.shape();
    let n = shape.num_elements();
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let xb = read(&x);
    let d = device_of(&xb);
    let mut y = zeros(&d, n);
    launch!(&d, "act_fwd", n, (n, kind, &xb, &mut y));
    let y = wrap(&dev, y, shape);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            let gx: &mut CudaSlice<f32> = grads.get_or_alloc_mut(&xg)?;
            launch!(&d, "act_bwd", n, (n, kind, &xb, &gy, gx));
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::ops::layer_norm`].
pub fn layer_norm<S: Shape, X: Dim, T: Tape<f32, Cuda>>(
    x: Tensor<S, f32, Cuda, T>,
    ln: &LayerNorm<X, f32, Cuda>,
) -> Tensor<S, f32, Cuda, T> {
    let shape = *x.shape();
    let c = ln.weight.numel();
    let n = shape.num_elements();
    let rows = n / c;
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let (xb, gamma, beta) = (read(&x), read(&ln.weight.value), read(&ln.bias.value));
    let d = device_of(&xb);
    let mut stats = zeros(&d, 2 * rows);
    let mut y = zeros(&d, n);
    launch!(&d, "ln_stats", rows, (rows, c, ln.eps as f32, &xb, &mut stats));
    launch!(&d, "ln_apply", n, (rows, c, &xb, &stats, &gamma, &beta, &mut y));
    let y = wrap(&dev, y, shape);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        let (dgamma, dbeta) = (ln.weight.grad_key(), ln.bias.grad_key());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(&d, "ln_bwd_x", rows, (rows, c, &xb, &stats, &gamma, &gy, &mut **grads.get_or_alloc_mut(&xg)?));
            ln_param_grads(&d, grads, dgamma.as_ref(), dbeta.as_ref(), rows, c, &xb, &stats, &gy)
        });
    }
    y.put_tape(tape)
}

/// Adds a LayerNorm's γ and β gradients (each only when it trains).
#[allow(clippy::too_many_arguments)]
fn ln_param_grads<X: Dim>(
    d: &Arc<CudaDevice>,
    grads: &mut Gradients<f32, Cuda>,
    gamma: Option<&Tensor<(X,), f32, Cuda>>,
    beta: Option<&Tensor<(X,), f32, Cuda>>,
    rows: usize,
    c: usize,
    x: &CudaSlice<f32>,
    stats: &CudaSlice<f32>,
    gy: &CudaSlice<f32>,
) -> Result<(), CudaError> {
    let dg = match gamma {
        Some(t) => ptr(Some(&**grads.get_or_alloc_mut(t)?)),
        None => 0,
    };
    let db = match beta {
        Some(t) => ptr(Some(&**grads.get_or_alloc_mut(t)?)),
        None => 0,
    };
    if dg != 0 || db != 0 {
        launch!(d, "ln_bwd_params", c, (rows, c, x, stats, gy, dg, db));
    }
    Ok(())
}

/// [`crate::ops::dwconv3d`].
pub fn dwconv3d<T: Tape<f32, Cuda>>(
    x: Tensor<(usize, usize, usize), f32, Cuda, T>,
    weight: &Param<(usize, usize), f32, Cuda>,
    bias: &Param<(usize,), f32, Cuda>,
    kernel: Kernel3,
    grid: Grid,
) -> Tensor<(usize, usize, usize), f32, Cuda, T> {
    let shape = *x.shape();
    let (frames, positions, c) = shape;
    assert!(kernel.is_odd(), "dwconv3d: kernel {kernel} must have odd sizes");
    assert_eq!((frames, positions), (grid.frames(), grid.positions()), "dwconv3d: tokens do not form grid {grid:?}");
    assert_eq!(*weight.value.shape(), (c, kernel.taps()), "dwconv3d: weight shape for {c} channels, kernel {kernel}");
    let n = frames * positions * c;
    let (nb, nt, nh, nw) = (frames / grid.t, grid.t, grid.h, grid.w);
    let (kt, kh, kw) = (kernel.t as i32, kernel.h as i32, kernel.w as i32);
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let (xb, wb, bb) = (read(&x), read(&weight.value), read(&bias.value));
    let d = device_of(&xb);
    let mut y = zeros(&d, n);
    launch!(&d, "dwconv_fwd", n, (nb, nt, nh, nw, c, kt, kh, kw, &xb, &wb, &bb, &mut y));
    let y = wrap(&dev, y, shape);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        let (dw, db) = (weight.grad_key(), bias.grad_key());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(
                &d,
                "dwconv_bwd_x",
                n,
                (nb, nt, nh, nw, c, kt, kh, kw, &wb, &gy, &mut **grads.get_or_alloc_mut(&xg)?)
            );
            let gw = match &dw {
                Some(t) => ptr(Some(&**grads.get_or_alloc_mut(t)?)),
                None => 0,
            };
            let gb = match &db {
                Some(t) => ptr(Some(&**grads.get_or_alloc_mut(t)?)),
                None => 0,
            };
            if gw != 0 || gb != 0 {
                let threads = c * (kernel.taps() + 1);
                launch!(&d, "dwconv_bwd_params", threads, (nb, nt, nh, nw, c, kt, kh, kw, &xb, &gy, gw, gb));
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::ops::elementwise::mask`]: `y[i] = x[i] · factors[i / block]` (dropout, drop path, scale).
pub fn mask<S: Shape, T: Tape<f32, Cuda>>(
    x: Tensor<S, f32, Cuda, T>,
    factors: &[f32],
    block: usize,
) -> Tensor<S, f32, Cuda, T> {
    let shape = *x.shape();
    let n = shape.num_elements();
    let block = block.max(1);
    assert_eq!(factors.len() * block, n, "mask: factor blocks do not cover the tensor");
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let xb = read(&x);
    let d = device_of(&xb);
    // the factors are drawn on the host (the kit's dropout stream): one upload, one number per block
    let fb = ok(d.htod_sync_copy(factors), "upload");
    let mut y = zeros(&d, n);
    launch!(&d, "mask_fwd", n, (n, block, &fb, &xb, &mut y));
    let y = wrap(&dev, y, shape);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(&d, "mask_bwd", n, (n, block, &fb, &gy, &mut **grads.get_or_alloc_mut(&xg)?));
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::ops::add`].
pub fn add<S: Shape, T1: Tape<f32, Cuda> + Merge<T2>, T2: Tape<f32, Cuda>>(
    a: Tensor<S, f32, Cuda, T1>,
    b: Tensor<S, f32, Cuda, T2>,
) -> Tensor<S, f32, Cuda, T1> {
    let shape = *a.shape();
    assert_eq!(shape.concrete(), b.shape().concrete(), "add: shapes differ");
    let n = shape.num_elements();
    let dev = a.device().clone();
    let (a, ta) = a.split_tape();
    let (b, tb) = b.split_tape();
    let mut tape = ta.merge(tb);
    let (ab, bb) = (read(&a), read(&b));
    let d = device_of(&ab);
    let mut y = zeros(&d, n);
    launch!(&d, "add_fwd", n, (n, &ab, &bb, &mut y));
    drop((ab, bb));
    let y = wrap(&dev, y, shape);
    if T1::OWNS_TAPE {
        let (ag, bg, yg) = (a.ghost(), b.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(&d, "axpy", n, (n, 1.0f32, &gy, &mut **grads.get_or_alloc_mut(&ag)?));
            launch!(&d, "axpy", n, (n, 1.0f32, &gy, &mut **grads.get_or_alloc_mut(&bg)?));
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::ops::mean_over_frames`]: (B·T, X) → (B, X).
pub fn mean_over_frames<X: Dim, T: Tape<f32, Cuda>>(
    x: Tensor<(usize, X), f32, Cuda, T>,
    frames: usize,
) -> Tensor<(usize, X), f32, Cuda, T> {
    let (rows, xd) = *x.shape();
    let c = xd.size();
    assert!(
        frames > 0 && rows.is_multiple_of(frames),
        "mean_over_frames: {rows} rows is not a multiple of T = {frames}"
    );
    let videos = rows / frames;
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let xb = read(&x);
    let d = device_of(&xb);
    let mut y = zeros(&d, videos * c);
    launch!(&d, "mean_frames_fwd", videos * c, (videos, frames, c, &xb, &mut y));
    let y = wrap(&dev, y, (videos, xd));
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(&d, "mean_frames_bwd", rows * c, (rows, frames, c, &gy, &mut **grads.get_or_alloc_mut(&xg)?));
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// Row-major `C (m×n) = op(A)·op(B) + beta·C` on cuBLAS (column-major): computed as
/// `Cᵀ = op(B)ᵀ·op(A)ᵀ`. `ta`/`tb`: whether A (stored m×k, or k×m when transposed) and B are
/// transposed.
#[allow(clippy::too_many_arguments)]
fn gemm(
    d: &Arc<CudaDevice>,
    m: usize,
    n: usize,
    k: usize,
    a: &CudaSlice<f32>,
    ta: bool,
    b: &CudaSlice<f32>,
    tb: bool,
    beta: f32,
    c: &mut CudaSlice<f32>,
) {
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    // row-major A (m×k) has leading dimension k; transposed (stored k×m), m
    let (lda, ldb) = (if ta { m } else { k }, if tb { k } else { n });
    let cfg = GemmConfig {
        transa: op(tb),
        transb: op(ta),
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: ldb as i32,
        ldb: lda as i32,
        beta,
        ldc: n as i32,
    };
    // SAFETY: the buffers hold m·k, k·n and m·n elements (checked by the callers' shapes).
    ok(unsafe { blas(d).gemm(cfg, b, a, c) }, "cuBLAS sgemm");
}

/// [`crate::ops::linear`] and [`crate::ops::frozen_linear`]: `y = x·Wᵀ + b` on cuBLAS; the backward
/// computes `dW` only for `want_dw` (and keeps `x` only then), `db` only for `want_db`.
pub fn linear<S: Rows<Feat = I>, I: Dim, O: Dim, T: Tape<f32, Cuda>>(
    x: Tensor<S, f32, Cuda, T>,
    weight: &Tensor<(O, I), f32, Cuda>,
    bias: Option<&Tensor<(O,), f32, Cuda>>,
    want_dw: bool,
    want_db: bool,
) -> Tensor<S::With<O>, f32, Cuda, T> {
    let (o_dim, i_dim) = *weight.shape();
    let (n_out, n_in) = (o_dim.size(), i_dim.size());
    assert_eq!(x.shape().feat().size(), n_in, "linear: input width differs from weight (out {n_out}, in {n_in})");
    let rows = x.shape().rows();
    let out_shape = x.shape().with_feat(o_dim);
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let (xb, wb) = (read(&x), read(weight));
    let d = device_of(&xb);
    let mut y = zeros(&d, rows * n_out);
    if let Some(b) = bias {
        let bb = read(b);
        launch!(&d, "bias_rows", rows * n_out, (rows, n_out, &bb, &mut y));
    }
    gemm(&d, rows, n_out, n_in, &xb, false, &wb, true, 1.0, &mut y);
    let y = wrap(&dev, y, out_shape);
    if T::OWNS_TAPE {
        let (xg, yg, wg) = (x.ghost(), y.ghost(), weight.ghost());
        let bg = bias.filter(|_| want_db).map(|b| b.ghost());
        let x_kept = want_dw.then_some(xb);
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            gemm(&d, rows, n_in, n_out, &gy, false, &wb, false, 1.0, grads.get_or_alloc_mut(&xg)?);
            if let Some(xb) = &x_kept {
                crate::ops::stats::count_weight_grad_product();
                gemm(&d, n_out, n_in, rows, &gy, true, xb, false, 1.0, grads.get_or_alloc_mut(&wg)?);
            }
            if let Some(bg) = &bg {
                launch!(&d, "column_sums", n_out, (rows, n_out, &gy, &mut **grads.get_or_alloc_mut(bg)?));
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// Row-major `C_b (m×n) = alpha·op(A_b)·op(B_b) + beta·C_b` for `batch` members on cuBLAS's
/// strided-batched GEMM, computed column-major ([`ColMajor::of_row_major`]). `c` is (buffer, offset,
/// leading dimension, batch stride). The operands are read in place through their leading
/// dimensions and offsets: a head's q, k or v is a strided block of the packed qkv buffer, no copy.
/// `plan.rs` runs the same calls through cuBLAS's definition on the host (its test).
#[allow(clippy::too_many_arguments)]
fn gemm_batched(
    d: &Arc<CudaDevice>,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: (&CudaSlice<f32>, Operand),
    b: (&CudaSlice<f32>, Operand),
    beta: f32,
    c: (&mut CudaSlice<f32>, usize, usize, usize),
    batch: usize,
) {
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let (cbuf, coff, ldc, cstride) = c;
    let cm = ColMajor::of_row_major(m, n, k, a.1, b.1, (ldc, cstride), batch);
    let cfg = StridedBatchedConfig {
        gemm: GemmConfig {
            transa: op(cm.transa),
            transb: op(cm.transb),
            m: cm.m as i32,
            n: cm.n as i32,
            k: cm.k as i32,
            alpha,
            lda: cm.lda as i32,
            ldb: cm.ldb as i32,
            beta,
            ldc: cm.ldc as i32,
        },
        batch_size: cm.batch as i32,
        stride_a: cm.stride_a as i64,
        stride_b: cm.stride_b as i64,
        stride_c: cm.stride_c as i64,
    };
    // cuBLAS's A is the row-major B, its B the row-major A
    let (first, second) = (b.0.slice(b.1.off..), a.0.slice(a.1.off..));
    let mut cv = cbuf.slice_mut(coff..);
    // SAFETY: the plan keeps every batch member's blocks inside the buffers (`plan.rs`, whose test
    // runs the same calls on the host); the C blocks of different members do not overlap.
    ok(unsafe { blas(d).gemm_strided_batched(cfg, &first, &second, &mut cv) }, "cuBLAS strided-batched sgemm");
}

/// [`crate::ops::self_attention`]: per head, the scores `scale·QKᵀ` and the output `P·V` as
/// strided-batched cuBLAS GEMMs reading q, k and v in place in the packed buffer ([`SeqPlan`]), and
/// a softmax kernel (a warp per row) that also keeps each row's log-sum-exp; the backward rebuilds
/// the probabilities from the saved log-sum-exps, as the CPU op, and runs `dP = dO·Vᵀ`, `dV = Pᵀ·dO`,
/// `dQ = dS·K`, `dK = dSᵀ·Q` as GEMMs accumulating into the packed gradient.
pub fn self_attention<X: Dim, T: Tape<f32, Cuda>>(
    qkv: Tensor<(usize, usize, usize), f32, Cuda, T>,
    heads: usize,
    axis: SeqAxis,
    width: X,
) -> Tensor<(usize, usize, X), f32, Cuda, T> {
    let (n, l, c3) = *qkv.shape();
    let c = width.size();
    assert_eq!(c3, 3 * c, "attention: packed width {c3} is not 3 × {c}");
    assert!(heads > 0 && c.is_multiple_of(heads), "attention: {heads} heads do not divide width {c}");
    let plan = SeqPlan::new(n, l, axis);
    let (len, dh, batch) = (plan.len, c / heads, plan.batch);
    assert_eq!(plan.seqs() * len, n * l, "attention: the sequences cover every token");
    let scale = 1.0 / (dh as f32).sqrt();
    let rows = heads * plan.seqs() * len; // score rows
    let pc = (len, len * len); // (leading dimension, batch stride) of the probability blocks
    let dev = qkv.device().clone();
    let (qkv, mut tape) = qkv.split_tape();
    let qb = read(&qkv);
    let d = device_of(&qb);
    let mut p = zeros(&d, rows * len);
    let mut lse = zeros(&d, rows);
    let mut out = zeros(&d, n * l * c);
    scores(&d, &plan, heads, c, scale, &qb, &mut p);
    launch!(&d, "attn_softmax", rows * 32, (rows, len, &mut p, &mut lse));
    for (g, h, poff) in plan.blocks(heads) {
        let (o, v) = (plan.tokens(c, g, h * dh, false), plan.tokens(c3, g, 2 * c + h * dh, false));
        let probs = (&p, plan.probs(poff, false));
        gemm_batched(&d, len, dh, len, 1.0, probs, (&qb, v), 0.0, (&mut out, o.off, o.ld, o.stride), batch);
    }
    drop(p);
    let out = wrap(&dev, out, (n, l, width));
    if T::OWNS_TAPE {
        crate::ops::stats::count_traced_attention();
        let (qg, og) = (qkv.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let go = take(grads.get_or_alloc_mut(&og)?)?;
            let mut p = zeros(&d, rows * len);
            let mut ds = zeros(&d, rows * len);
            scores(&d, &plan, heads, c, scale, &qb, &mut p);
            launch!(&d, "attn_probs_from_lse", rows * len, (rows, len, &lse, &mut p));
            for (g, h, poff) in plan.blocks(heads) {
                // dP = dO·Vᵀ
                let (dout, v) = (plan.tokens(c, g, h * dh, false), plan.tokens(c3, g, 2 * c + h * dh, true));
                gemm_batched(&d, len, len, dh, 1.0, (&go, dout), (&qb, v), 0.0, (&mut ds, poff, pc.0, pc.1), batch);
            }
            launch!(&d, "attn_softmax_bwd", rows * 32, (rows, len, scale, &p, &mut ds));
            let gq: &mut CudaSlice<f32> = grads.get_or_alloc_mut(&qg)?;
            for (g, h, poff) in plan.blocks(heads) {
                let at = |col: usize| plan.tokens(c3, g, col + h * dh, false);
                let (dq, dk, dv) = (at(0), at(c), at(2 * c));
                let dout = plan.tokens(c, g, h * dh, false);
                // dQ += dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO
                let (s, st, pt) =
                    ((&ds, plan.probs(poff, false)), (&ds, plan.probs(poff, true)), (&p, plan.probs(poff, true)));
                gemm_batched(&d, len, dh, len, 1.0, s, (&qb, at(c)), 1.0, (&mut *gq, dq.off, dq.ld, dq.stride), batch);
                gemm_batched(&d, len, dh, len, 1.0, st, (&qb, at(0)), 1.0, (&mut *gq, dk.off, dk.ld, dk.stride), batch);
                gemm_batched(&d, len, dh, len, 1.0, pt, (&go, dout), 1.0, (&mut *gq, dv.off, dv.ld, dv.stride), batch);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// The scaled scores `scale·QKᵀ` of every (head, sequence) into `p` (heads, seqs, len, len).
fn scores(
    d: &Arc<CudaDevice>,
    plan: &SeqPlan,
    heads: usize,
    c: usize,
    scale: f32,
    qb: &CudaSlice<f32>,
    p: &mut CudaSlice<f32>,
) {
    let (len, dh) = (plan.len, c / heads);
    for (g, h, poff) in plan.blocks(heads) {
        let (q, k) = (plan.tokens(3 * c, g, h * dh, false), plan.tokens(3 * c, g, c + h * dh, true));
        gemm_batched(d, len, len, dh, scale, (qb, q), (qb, k), 0.0, (&mut *p, poff, len, len * len), plan.batch);
    }
}

/// [`crate::ops::cross_entropy`]: per-sample losses and gradients in one kernel, their mean in a
/// fixed order.
pub fn cross_entropy<X: Dim>(
    logits: Tensor<(usize, X), f32, Cuda, OwnedTape<f32, Cuda>>,
    labels: &[usize],
    smoothing: f64,
) -> Tensor<Rank0, f32, Cuda, OwnedTape<f32, Cuda>> {
    let (b, kd) = *logits.shape();
    let k = kd.size();
    assert_eq!(labels.len(), b, "cross_entropy: {} labels for a batch of {b}", labels.len());
    if let Some(bad) = labels.iter().find(|&&l| l >= k) {
        panic!("cross_entropy: label {bad} out of range for {k} classes");
    }
    let dev = logits.device().clone();
    let (z, mut tape) = logits.split_tape();
    let zb = read(&z);
    let d = device_of(&zb);
    let lb: Vec<u32> = labels.iter().map(|&l| l as u32).collect();
    let lb = ok(d.htod_sync_copy(&lb), "upload");
    let (mut rows, mut grad, mut loss) = (zeros(&d, b), zeros(&d, b * k), zeros(&d, 1));
    launch!(&d, "ce_rows", b, (b, k, smoothing as f32, &zb, &lb, &mut rows, &mut grad));
    launch!(&d, "ce_mean", 1, (b, &rows, &mut loss));
    let loss = wrap(&dev, loss, ());
    let (zg, lg) = (z.ghost(), loss.ghost());
    tape.add_backward_op(move |grads| {
        let gl = take(grads.get_or_alloc_mut(&lg)?)?;
        launch!(&d, "ce_bwd", b * k, (b * k, &grad, &gl, &mut **grads.get_or_alloc_mut(&zg)?));
        Ok(())
    });
    loss.put_tape(tape)
}

/// The single-input token ops ([`TokenOp`]): CLS and patch selection, temporal shift, CLS averaging.
pub fn tokens<S: Shape, S2: Shape, T: Tape<f32, Cuda>>(
    x: Tensor<S, f32, Cuda, T>,
    out_shape: S2,
    op: &TokenOp,
) -> Tensor<S2, f32, Cuda, T> {
    let dev = x.device().clone();
    let m = out_shape.num_elements();
    let (x, mut tape) = x.split_tape();
    let xb = read(&x);
    let d = device_of(&xb);
    let mut y = zeros(&d, m);
    let dt = match op {
        TokenOp::Shift { dt, .. } => Some(ok(d.htod_sync_copy(dt), "upload")),
        _ => None,
    };
    match *op {
        TokenOp::Cls { n, l, c } => launch!(&d, "cls_select", n * c, (n, l, c, &xb, &mut y)),
        TokenOp::Patches { n, l, c } => launch!(&d, "patch_select", n * (l - 1) * c, (n, l, c, &xb, &mut y)),
        TokenOp::Shift { n, l, c, frames, tokens, .. } => {
            let dt = dt.as_ref().expect("uploaded above");
            launch!(&d, "temporal_shift", n * l * c, (n, l, c, frames, tokens, dt, &xb, &mut y))
        }
        TokenOp::AverageCls { n, l, c, frames } => {
            launch!(&d, "average_cls", n * l * c, (n, l, c, frames, &xb, &mut y))
        }
    }
    drop(xb);
    let y = wrap(&dev, y, out_shape);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        let op = op.clone();
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            let gx: &mut CudaSlice<f32> = grads.get_or_alloc_mut(&xg)?;
            match op {
                TokenOp::Cls { n, l, c } => launch!(&d, "cls_select_bwd", n * c, (n, l, c, &gy, gx)),
                TokenOp::Patches { n, l, c } => launch!(&d, "patch_select_bwd", n * (l - 1) * c, (n, l, c, &gy, gx)),
                TokenOp::Shift { n, l, c, frames, tokens, .. } => {
                    let dt = dt.as_ref().expect("uploaded in the forward");
                    launch!(&d, "temporal_shift_bwd", n * l * c, (n, l, c, frames, tokens, dt, &gy, gx))
                }
                TokenOp::AverageCls { n, l, c, frames } => {
                    launch!(&d, "average_cls_bwd", n * l * c, (n, l, c, frames, &gy, gx))
                }
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::ops::add_to_patches`]: `delta` (N, L−1, C) added to the patch tokens of `x` (N, L, C).
pub fn add_to_patches<X: Dim, TX: Tape<f32, Cuda>, TD: Tape<f32, Cuda> + Merge<TX>>(
    x: Tensor<(usize, usize, X), f32, Cuda, TX>,
    delta: Tensor<(usize, usize, X), f32, Cuda, TD>,
) -> Tensor<(usize, usize, X), f32, Cuda, TD> {
    let shape = *x.shape();
    let (n, l, c) = (shape.0, shape.1, shape.2.size());
    let dev = x.device().clone();
    let (x, tx) = x.split_tape();
    let (delta, td) = delta.split_tape();
    let mut tape = td.merge(tx);
    let (xb, db) = (read(&x), read(&delta));
    let d = device_of(&xb);
    let mut y = zeros(&d, n * l * c);
    launch!(&d, "add_to_patches", n * l * c, (n, l, c, &xb, &db, &mut y));
    drop((xb, db));
    let y = wrap(&dev, y, shape);
    if TD::OWNS_TAPE {
        let (xg, dg, yg) = (x.ghost(), delta.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(&d, "axpy", n * l * c, (n * l * c, 1.0f32, &gy, &mut **grads.get_or_alloc_mut(&xg)?));
            let m = n * (l - 1) * c;
            let mut gp = zeros(&d, m);
            launch!(&d, "patch_select", m, (n, l, c, &gy, &mut gp));
            launch!(&d, "axpy", m, (m, 1.0f32, &gp, &mut **grads.get_or_alloc_mut(&dg)?));
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::ops::fuse`]: `base + Σᵢ wᵢ · termsᵢ` (MST-Adapter's branch fusion); the weights' gradient
/// `Σ termᵢ · gy` when they are a trainable parameter.
pub fn fuse<S: Shape, TB: Tape<f32, Cuda>, T: Tape<f32, Cuda> + Merge<TB>>(
    base: Tensor<S, f32, Cuda, TB>,
    terms: Vec<Tensor<S, f32, Cuda, T>>,
    w: &[f32],
    weights: &Weights<f32, Cuda>,
) -> Tensor<S, f32, Cuda, T> {
    let shape = *base.shape();
    let n = shape.num_elements();
    let dev = base.device().clone();
    let (base, tb) = base.split_tape();
    let mut tape = T::default().merge(tb);
    let mut kept = Vec::new();
    for t in terms {
        assert_eq!(t.shape().concrete(), shape.concrete(), "fuse: term shape differs");
        let (t, tt) = t.split_tape();
        tape = tape.merge(tt);
        kept.push(t);
    }
    let mut y = read(&base);
    let d = device_of(&y);
    let values: Vec<CudaSlice<f32>> = kept.iter().map(|t| read(t)).collect();
    for (tv, wi) in values.iter().zip(w) {
        launch!(&d, "axpy", n, (n, *wi, tv, &mut y));
    }
    let y = wrap(&dev, y, shape);
    if T::OWNS_TAPE {
        let (bg, yg) = (base.ghost(), y.ghost());
        let term_ghosts: Vec<_> = kept.iter().map(|t| t.ghost()).collect();
        let w_param = match weights {
            Weights::Learned(p) if p.trainable => Some(p.value.clone()),
            _ => None,
        };
        let values = w_param.is_some().then_some(values);
        let w = w.to_vec();
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(&d, "axpy", n, (n, 1.0f32, &gy, &mut **grads.get_or_alloc_mut(&bg)?));
            for (tg, wi) in term_ghosts.iter().zip(&w) {
                launch!(&d, "axpy", n, (n, *wi, &gy, &mut **grads.get_or_alloc_mut(tg)?));
            }
            if let (Some(wp), Some(values)) = (&w_param, &values) {
                let gw: &mut CudaSlice<f32> = grads.get_or_alloc_mut(wp)?;
                let base = *gw.device_ptr();
                for (i, tv) in values.iter().enumerate() {
                    // one block of 256 threads sums term i · gy into gw[i]
                    let out = base + (i * std::mem::size_of::<f32>()) as u64;
                    launch!(&d, "dot_rows", BLOCK as usize, (n, tv, &gy, out));
                }
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::clip::vit::patchify`]: a video (B, 3, T, H, W) → patches (B·T, (H/p)·(W/p), 3·p·p), untraced.
pub fn patchify(
    video: &Tensor<(usize, Const<3>, usize, usize, usize), f32, Cuda>,
    p: usize,
) -> Tensor<(usize, usize, usize), f32, Cuda> {
    let (b, _, t, h, w) = *video.shape();
    let (gh, gw) = (h / p, w / p);
    let n = b * t * gh * gw * 3 * p * p;
    let vb = read(video);
    let d = device_of(&vb);
    let mut y = zeros(&d, n);
    launch!(&d, "patchify", n, (b, t, h, w, p, &vb, &mut y));
    wrap(video.device(), y, (b * t, gh * gw, 3 * p * p))
}

/// [`crate::ops::embed_tokens`]: `[class_embedding; patches] + positional_embedding` (+ the temporal
/// embedding of each frame, on the patch tokens or on all); gradients to the patches and to each
/// trainable embedding.
pub fn embed_tokens<X: Dim, T: Tape<f32, Cuda>>(
    patches: Tensor<(usize, usize, X), f32, Cuda, T>,
    class_embedding: &Param<(X,), f32, Cuda>,
    positional_embedding: &Param<(usize, X), f32, Cuda>,
    temporal_embedding: Option<&Param<(usize, X), f32, Cuda>>,
    temporal_on_cls: bool,
) -> Tensor<(usize, usize, X), f32, Cuda, T> {
    let (n, np, xd) = *patches.shape();
    let (c, l) = (xd.size(), np + 1);
    assert_eq!(positional_embedding.value.shape().0, l, "positional_embedding rows for {l} tokens");
    let frames = temporal_embedding.map_or(1, |t| t.value.shape().0);
    assert_eq!(n % frames, 0, "temporal_embedding for {frames} frames on {n} frame rows");
    let on_cls = temporal_on_cls as i32;
    let dev = patches.device().clone();
    let (patches, mut tape) = patches.split_tape();
    let (pb, cb, posb) = (read(&patches), read(&class_embedding.value), read(&positional_embedding.value));
    let tb = temporal_embedding.map(|t| read(&t.value));
    let d = device_of(&pb);
    let mut y = zeros(&d, n * l * c);
    launch!(&d, "embed_tokens", n * l * c, (n, l, c, frames, on_cls, &pb, &cb, &posb, ptr(tb.as_ref()), &mut y));
    drop((pb, cb, posb, tb));
    let y = wrap(&dev, y, (n, l, xd));
    if T::OWNS_TAPE {
        let (pg, yg) = (patches.ghost(), y.ghost());
        let (cls_k, pos_k) = (class_embedding.grad_key(), positional_embedding.grad_key());
        let tem_k = temporal_embedding.and_then(|t| t.grad_key());
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            let m = n * np * c;
            let mut gp = zeros(&d, m);
            launch!(&d, "patch_select", m, (n, l, c, &gy, &mut gp));
            launch!(&d, "axpy", m, (m, 1.0f32, &gp, &mut **grads.get_or_alloc_mut(&pg)?));
            let gcls = match &cls_k {
                Some(t) => ptr(Some(&**grads.get_or_alloc_mut(t)?)),
                None => 0,
            };
            let gpos = match &pos_k {
                Some(t) => ptr(Some(&**grads.get_or_alloc_mut(t)?)),
                None => 0,
            };
            if gcls != 0 || gpos != 0 {
                launch!(&d, "embed_tokens_bwd_pos", l * c, (n, l, c, &gy, gcls, gpos));
            }
            if let Some(t) = &tem_k {
                let gt: &mut CudaSlice<f32> = grads.get_or_alloc_mut(t)?;
                launch!(&d, "embed_tokens_bwd_tem", frames * c, (n, l, c, frames, on_cls, &gy, gt));
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// [`crate::ops::set_prompts`]: `[cls, old prompts, patches]` → `[cls, prompts, patches]`; gradients to
/// CLS and the patches, and to the prompts (summed over frames) when they train.
pub fn set_prompts<X: Dim, T: Tape<f32, Cuda>>(
    x: Tensor<(usize, usize, X), f32, Cuda, T>,
    old: usize,
    prompts: &Param<(usize, X), f32, Cuda>,
) -> Tensor<(usize, usize, X), f32, Cuda, T> {
    let (n, l, xd) = *x.shape();
    let c = xd.size();
    let np = prompts.value.shape().0;
    assert!(l > old, "set_prompts: {old} prompts in {l} tokens");
    let l2 = l - old + np;
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let (xb, pb) = (read(&x), read(&prompts.value));
    let d = device_of(&xb);
    let mut y = zeros(&d, n * l2 * c);
    launch!(&d, "set_prompts", n * l2 * c, (n, l, c, old, np, &xb, &pb, &mut y));
    drop((xb, pb));
    let y = wrap(&dev, y, (n, l2, xd));
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        let pk = prompts.grad_key();
        tape.add_backward_op(move |grads| {
            let gy = take(grads.get_or_alloc_mut(&yg)?)?;
            launch!(&d, "set_prompts_bwd_x", n * l * c, (n, l, c, old, np, &gy, &mut **grads.get_or_alloc_mut(&xg)?));
            if let Some(t) = &pk {
                launch!(&d, "set_prompts_bwd_p", np * c, (n, l, c, old, np, &gy, &mut **grads.get_or_alloc_mut(t)?));
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

// ---------------------------------------------------------------------------------------------
// The optimizer (crate::optim): gradient sums and AdamW's moments in device buffers, parameters
// updated in place.
// ---------------------------------------------------------------------------------------------

/// A buffer of dfdx's own type for the device (what `SgdConfig::try_update` takes), zeroed.
type DevVec = <Cuda as Storage<f32>>::Vec;

fn dev_zeros(dev: &Cuda, n: usize) -> DevVec {
    ok(<Cuda as Storage<f32>>::try_alloc_len(dev, n), "alloc")
}

fn dev_upload(dev: &Cuda, host: &[f32]) -> DevVec {
    let mut b = dev_zeros(dev, host.len());
    let d = b.device();
    ok(d.htod_sync_copy_into(host, &mut *b), "host-to-device copy");
    b
}

fn dev_download(b: &DevVec) -> Vec<f32> {
    ok(b.device().dtoh_sync_copy(&**b), "device-to-host copy")
}

/// Gradient sums on the device, by key.
struct Sums(std::collections::BTreeMap<String, DevVec>);

impl crate::optim::DeviceSums<f32> for Sums {
    fn download(&self) -> std::collections::BTreeMap<String, Vec<f32>> {
        self.0.iter().map(|(k, b)| (k.clone(), dev_download(b))).collect()
    }
    /// One flag per key, set by `nonfinite_flag` on the device; the flags (one int each) come to
    /// the host in one copy.
    fn first_nonfinite(&self) -> Option<String> {
        let d = self.0.values().next()?.device();
        let mut flags = ok(d.alloc_zeros::<i32>(self.0.len()), "alloc");
        for (slot, b) in self.0.values().enumerate() {
            let n = b.len();
            launch!(&d, "nonfinite_flag", n, (n, &**b, &mut flags, slot));
        }
        let flags = ok(d.dtoh_sync_copy(&flags), "device-to-host copy");
        self.0.keys().zip(flags).find(|(_, f)| *f != 0).map(|(k, _)| k.clone())
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// AdamW's moments on the device, (exp_avg, exp_avg_sq) by key; `pending`: host moments (a
/// resumed run's) each uploaded at its parameter's first step on the device.
struct Moments {
    on_device: std::collections::BTreeMap<String, (DevVec, DevVec)>,
    pending: std::collections::BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

impl crate::optim::DeviceMoments<f32> for Moments {
    fn download(&self) -> std::collections::BTreeMap<String, (Vec<f32>, Vec<f32>)> {
        let mut all = self.pending.clone();
        all.extend(self.on_device.iter().map(|(k, (m, v))| (k.clone(), (dev_download(m), dev_download(v)))));
        all
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// The device sums of `sums`, made (from its host sums, if any) on first use.
fn device_sums<'a>(dev: &Cuda, sums: &'a mut crate::optim::GradSums<f32>) -> &'a mut Sums {
    if sums.device.is_none() {
        let host = std::mem::take(&mut sums.host);
        sums.device = Some(Box::new(Sums(host.iter().map(|(k, g)| (k.clone(), dev_upload(dev, g))).collect())));
    }
    let any = sums.device.as_mut().expect("device sums").as_any_mut();
    any.downcast_mut::<Sums>().expect("gradient sums of another device")
}

/// [`crate::optim::accumulate`] on the device: `sum += scale · gradient` (`axpy`) into a buffer per
/// trainable parameter, made at its first gradient. The gradient buffers are read where dfdx keeps
/// them; nothing comes to the host.
pub fn accumulate<M: crate::param::Params<f32, Cuda>>(
    model: &M,
    grads: &mut Gradients<f32, Cuda>,
    scale: f32,
    sums: &mut crate::optim::GradSums<f32>,
) {
    struct Acc<'a> {
        grads: &'a mut Gradients<f32, Cuda>,
        scale: f32,
        sums: &'a mut crate::optim::GradSums<f32>,
    }
    impl<'a> crate::param::Visitor<f32, Cuda> for Acc<'a> {
        fn param<S: Shape>(&mut self, key: &str, p: &Param<S, f32, Cuda>) {
            if !p.trainable {
                return;
            }
            let n = p.numel();
            let dev = p.value.device().clone();
            let sums = device_sums(&dev, self.sums);
            let sum = sums.0.entry(key.to_string()).or_insert_with(|| dev_zeros(&dev, n));
            let g = self.grads.get_or_alloc_mut(&p.value).unwrap_or_else(|e| panic!("gradient of `{key}`: {e:?}"));
            let d = g.device();
            launch!(&d, "axpy", n, (n, self.scale, &**g, &mut **sum));
        }
    }
    crate::param::visit(model, &mut Acc { grads, scale, sums });
}

/// [`crate::optim::AdamW::step`] on the device. Per trainable parameter: `adamw_update` advances
/// the moments (held in `opt`, uploaded from `opt.moments` at the first step) and writes the
/// update u over the gradient sum; then dfdx's SGD kernel, the one public way in dfdx 0.13 to write
/// a parameter's own buffer (`SgdConfig::try_update`: in place when the parameter's buffer is not
/// shared), computes w − (u + lr·wd·w) with lr 1 and no momentum (the first moment is passed as
/// its velocity buffer, which it then reads and writes back unchanged). That is the host's
/// (w·(1 − lr·wd)) − u up to the rounding of the last two operations. The sums are consumed.
pub fn adamw_step<M: crate::param::Params<f32, Cuda>>(
    opt: &mut crate::optim::AdamW<f32>,
    model: &mut M,
    sums: &mut crate::optim::GradSums<f32>,
) {
    if opt.device.is_none() {
        let pending = std::mem::take(&mut opt.moments);
        opt.device = Some(Box::new(Moments { on_device: Default::default(), pending }));
    }
    struct Step<'a> {
        opt: &'a mut crate::optim::AdamW<f32>,
        sums: &'a mut crate::optim::GradSums<f32>,
    }
    impl<'a> crate::param::VisitorMut<f32, Cuda> for Step<'a> {
        fn param<S: Shape>(&mut self, key: &str, p: &mut Param<S, f32, Cuda>) {
            if !p.trainable {
                return;
            }
            let c = self.opt.coeffs(key);
            let n = p.numel();
            let dev = p.value.device().clone();
            let mut u = device_sums(&dev, self.sums).0.remove(key).unwrap_or_else(|| dev_zeros(&dev, n));
            let any = self.opt.device.as_mut().expect("device moments").as_any_mut();
            let moments = any.downcast_mut::<Moments>().expect("moments of another device");
            let pending = &mut moments.pending;
            let (m, v) = moments.on_device.entry(key.to_string()).or_insert_with(|| match pending.remove(key) {
                Some((m, v)) => (dev_upload(&dev, &m), dev_upload(&dev, &v)),
                None => (dev_zeros(&dev, n), dev_zeros(&dev, n)),
            });
            let lens = (u.len(), m.len(), v.len());
            assert_eq!(lens, (n, n, n), "AdamW state of `{key}` (sum, moments) does not have its {n} elements");
            let d = u.device();
            launch!(&d, "adamw_update", n, (n, c.b1, c.b2, c.eps, c.step, c.inv_bc2, &mut *u, &mut **m, &mut **v));
            let sgd = dfdx::optim::SgdConfig {
                lr: 1.0,
                momentum: None,
                weight_decay: (c.lr_wd != 0.0).then_some(dfdx::optim::WeightDecay::Decoupled(c.lr_wd)),
            };
            ok(sgd.try_update(&mut p.value, m, &u), "parameter update");
        }
    }
    crate::param::visit_mut(model, &mut Step { opt, sums });
    sums.device = None;
    sums.host.clear();
}
