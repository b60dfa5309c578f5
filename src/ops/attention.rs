//! Multi-head self-attention with CLIP's packed `in_proj` (rows q; k; v), over the tokens of a frame
//! (spatial) or over the frames of a token position (AIM's temporal T-MSA), with the same weights.
//!
//! The token stream is (B·T, L, C) with row b·T + t. Spatial attention attends along L within a
//! row; temporal attention attends along T for each (b, l), which in this layout is the rows
//! (b·T + t)·L + l for t = 0…T−1. Both read the packed qkv buffer in place through strides.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::gemm::{matmul, Mat, MatMut, Threads};
use super::layer_norm::{ln_backward, ln_backward_rows, ln_forward, ln_forward_rows, ln_recompute, LayerNorm};
use super::linear::{affine_new, affine_residual, affine_tile, column_sums, input_grad_new, weight_grad};
use super::simd::{add_assign, add_assign_par, dot, max, multiversion, sum};
use super::{Linear, SharedMut};
use crate::device::{host, tensor, KitDevice, Real};
use crate::param::Param;

// ANCHOR: seq_axis
/// Which axis of the (B·T, L, ·) token stream the attention sequences run along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqAxis {
    /// Within each frame: sequences of L tokens (CLIP's attention).
    Tokens,
    /// Across frames: for each video b and token position l, a sequence of `frames` tokens
    /// (AIM's T-MSA, CLS included).
    Frames { frames: usize },
}
// ANCHOR_END: seq_axis

/// Where the sequences live in a (rows, L) token grid.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Number of sequences.
    seqs: usize,
    /// Sequence length.
    len: usize,
    /// Token rows of sequence s: `base(s) + i·stride`.
    l: usize,
    frames: usize,
    temporal: bool,
}

impl Layout {
    fn new(rows: usize, l: usize, axis: SeqAxis) -> Self {
        match axis {
            SeqAxis::Tokens => Self { seqs: rows, len: l, l, frames: 1, temporal: false },
            SeqAxis::Frames { frames } => {
                assert!(
                    frames > 0 && rows.is_multiple_of(frames),
                    "temporal attention: {rows} frame rows is not a multiple of T = {frames}"
                );
                Self { seqs: rows / frames * l, len: frames, l, frames, temporal: true }
            }
        }
    }
    /// (first token index, token index stride) of sequence s.
    fn seq(&self, s: usize) -> (usize, usize) {
        if self.temporal {
            let (b, l) = (s / self.l, s % self.l);
            (b * self.frames * self.l + l, self.l)
        } else {
            (s * self.l, 1)
        }
    }
}

/// The attention of a packed (rows, 3·C) q;k;v buffer: per sequence and head, `softmax(q·kᵀ·scale)·v`
/// into `out` (rows, C). With `lse`, also each score row's log-sum-exp (`max + ln Σ exp(s − max)`,
/// of the scaled scores), which is all the backward pass needs to rebuild the probabilities.
/// Every element of `out` and `lse` is written once (the (sequence, head) blocks tile them), so
/// neither needs to be initialised.
#[allow(clippy::too_many_arguments)]
fn attention_forward<E: Real>(
    qkv: &[E],
    c: usize,
    heads: usize,
    lay: Layout,
    scale: E,
    out: &mut [std::mem::MaybeUninit<E>],
    lse: Option<&mut [std::mem::MaybeUninit<E>]>,
) {
    assert!(out.len() >= lay.seqs * lay.len * c && lse.as_ref().is_none_or(|l| l.len() >= lay.seqs * heads * lay.len));
    let out_ptr = SharedMut(out.as_mut_ptr() as *mut E);
    let lse_ptr = lse.map(|l| SharedMut(l.as_mut_ptr()));
    (0..lay.seqs * heads).into_par_iter().for_each_init(
        || vec![E::zero(); lay.len * lay.len],
        // SAFETY: each task is run once, and the (sequence, head) blocks tile `out` and `lse`.
        |p, task| unsafe { attention_task(qkv, c, heads, lay, scale, task, p, &out_ptr, lse_ptr.as_ref()) },
    );
}

/// One (sequence, head) of [`attention_forward`], with `p` (at least len² values) for the scores.
///
/// # Safety
/// The task's output block (the rows of its sequence, columns h·dh..(h+1)·dh of `out`) and its
/// log-sum-exps (`lse[task·len .. (task+1)·len]`) must be valid for writes and written by no other
/// task meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn attention_task<E: Real>(
    qkv: &[E],
    c: usize,
    heads: usize,
    lay: Layout,
    scale: E,
    task: usize,
    p: &mut [E],
    out: &SharedMut<E>,
    lse: Option<&SharedMut<std::mem::MaybeUninit<E>>>,
) {
    let (dh, c3, len) = (c / heads, 3 * c, lay.len);
    let (s, h) = (task / heads, task % heads);
    let (base, stride) = lay.seq(s);
    let q = Mat::strided(qkv, base * c3 + h * dh, len, dh, stride * c3, 1);
    let k = Mat::strided(qkv, base * c3 + c + h * dh, len, dh, stride * c3, 1);
    let v = Mat::strided(qkv, base * c3 + 2 * c + h * dh, len, dh, stride * c3, 1);
    let p = &mut p[..len * len];
    matmul(MatMut::new(p, len, len), q, k.t(), false, Threads::One);
    match lse {
        // SAFETY: the caller's contract for lse.
        Some(l) => {
            softmax_rows_lse(p, len, scale, unsafe { std::slice::from_raw_parts_mut(l.ptr().add(task * len), len) })
        }
        None => softmax_rows(p, len, scale),
    }
    // SAFETY: the caller's contract for the output block.
    let o = unsafe { MatMut::from_raw(out.ptr().add(base * c + h * dh), len, dh, stride * c, 1) };
    matmul(o, Mat::new(p, len, len), v, false, Threads::One);
}

/// The attention's backward: from the output gradient `go` (rows, C), adds the q, k and v
/// gradients to `gqkv` (rows, 3·C), rebuilding each probability matrix from q, k and the saved
/// log-sum-exps: `P = exp(q·kᵀ·scale − lse)`, `dV = Pᵀ·dO`, `dP = dO·Vᵀ`,
/// `dS = P ⊙ (dP − rowsum(dP ⊙ P))·scale`, `dQ = dS·K`, `dK = dSᵀ·Q`. With `overwrite` the
/// gradients are written instead of added: each element of `gqkv` lies in one (sequence, head)
/// block of q, k or v and is written once, so `gqkv` need not be initialised.
#[allow(clippy::too_many_arguments)]
fn attention_backward<E: Real>(
    qkv: &[E],
    lse: &[E],
    go: &[E],
    c: usize,
    heads: usize,
    lay: Layout,
    scale: E,
    gqkv: &mut [std::mem::MaybeUninit<E>],
    overwrite: bool,
) {
    assert!(gqkv.len() >= lay.seqs * lay.len * 3 * c);
    let g_ptr = SharedMut(gqkv.as_mut_ptr() as *mut E);
    (0..lay.seqs * heads).into_par_iter().for_each_init(
        || vec![E::zero(); 2 * lay.len * lay.len],
        // SAFETY: each task is run once, and the (sequence, head) blocks of q, k and v tile `gqkv`.
        |pp, task| unsafe {
            attention_backward_task((qkv, lse, go), c, heads, lay, scale, task, pp, &g_ptr, overwrite)
        },
    );
}

/// One (sequence, head) of [`attention_backward`], with `pp` (at least 2·len² values) for the
/// probabilities and their gradient.
///
/// # Safety
/// The task's q, k and v gradient blocks in `g` must be valid for writes (and reads, without
/// `overwrite`) and touched by no other task meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn attention_backward_task<E: Real>(
    (qkv, lse, go): (&[E], &[E], &[E]),
    c: usize,
    heads: usize,
    lay: Layout,
    scale: E,
    task: usize,
    pp: &mut [E],
    g: &SharedMut<E>,
    overwrite: bool,
) {
    let (dh, c3, len) = (c / heads, 3 * c, lay.len);
    let (p, dp) = pp[..2 * len * len].split_at_mut(len * len);
    let (s, h) = (task / heads, task % heads);
    let (base, stride) = lay.seq(s);
    let q = Mat::strided(qkv, base * c3 + h * dh, len, dh, stride * c3, 1);
    let k = Mat::strided(qkv, base * c3 + c + h * dh, len, dh, stride * c3, 1);
    let v = Mat::strided(qkv, base * c3 + 2 * c + h * dh, len, dh, stride * c3, 1);
    let d_o = Mat::strided(go, base * c + h * dh, len, dh, stride * c, 1);
    matmul(MatMut::new(p, len, len), q, k.t(), false, Threads::One);
    probs_from_lse(p, len, scale, &lse[task * len..(task + 1) * len]);
    // SAFETY: the caller's contract for the q, k and v gradient blocks of (s, h).
    let (dq, dk, dv) = unsafe {
        let at = |off: usize| MatMut::from_raw(g.ptr().add(base * c3 + off + h * dh), len, dh, stride * c3, 1);
        (at(0), at(c), at(2 * c))
    };
    matmul(dv, Mat::new(p, len, len).t(), d_o, !overwrite, Threads::One);
    matmul(MatMut::new(dp, len, len), d_o, v.t(), false, Threads::One);
    softmax_backward_rows(p, dp, len, scale);
    matmul(dq, Mat::new(dp, len, len), k, !overwrite, Threads::One);
    matmul(dk, Mat::new(dp, len, len).t(), q, !overwrite, Threads::One);
}

/// [`attention_forward`] into new vectors (not zero-filled first): the output (rows, C) and, when
/// `with_lse`, the log-sum-exps (empty otherwise).
fn attention_new<E: Real>(
    qkv: &[E],
    c: usize,
    heads: usize,
    lay: Layout,
    scale: E,
    with_lse: bool,
) -> (Vec<E>, Vec<E>) {
    let rows = lay.seqs * lay.len;
    let n_lse = if with_lse { lay.seqs * heads * lay.len } else { 0 };
    let mut lse = Vec::with_capacity(n_lse);
    // SAFETY: attention_forward writes every element of `out`, and of `lse` when given (see there).
    let out = unsafe {
        super::written(rows * c, |o| {
            attention_forward(qkv, c, heads, lay, scale, o, with_lse.then(|| &mut lse.spare_capacity_mut()[..n_lse]))
        })
    };
    // SAFETY: as above (with_lse: all n_lse written; otherwise n_lse = 0).
    unsafe { lse.set_len(n_lse) };
    (out, lse)
}

/// The attention's geometry: width, heads, scale, where the sequences lie.
fn geometry<E: Real>(n: usize, l: usize, c: usize, heads: usize, axis: SeqAxis) -> (E, Layout) {
    assert!(heads > 0 && c.is_multiple_of(heads), "attention: {heads} heads do not divide width {c}");
    (E::one() / E::of((c / heads) as f64).sqrt(), Layout::new(n, l, axis))
}

/// Scaled dot-product attention on a packed (N, L, 3·C) q;k;v buffer → (N, L, C), no mask,
/// scale 1/√(C/heads). `width` names the output's feature dimension C. Keeps q;k;v and one number
/// per score row for the backward pass.
pub fn self_attention<X, E, D, T>(
    qkv: Tensor<(usize, usize, usize), E, D, T>,
    heads: usize,
    axis: SeqAxis,
    width: X,
) -> Tensor<(usize, usize, X), E, D, T>
where
    X: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let (n, l, c3) = *qkv.shape();
    let c = width.size();
    assert_eq!(c3, 3 * c, "attention: packed width {c3} is not 3 × {c}");
    let (scale, lay) = geometry::<E>(n, l, c, heads, axis);
    let qkv = match D::k_self_attention(qkv, heads, axis, width) {
        Ok(y) => return y,
        Err(qkv) => qkv,
    };
    let dev = qkv.device().clone();
    let (qkv, mut tape) = qkv.split_tape();
    let qv = host(&qkv);
    let (out, lse) = attention_new(&qv, c, heads, lay, scale, T::OWNS_TAPE);
    let out = tensor(&dev, out, (n, l, width));
    if T::OWNS_TAPE {
        super::stats::count_traced_attention();
        let (qkv_ghost, out_ghost) = (qkv.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let go = dev.take(grads.get_or_alloc_mut(&out_ghost)?);
            dev.update(grads.get_or_alloc_mut(&qkv_ghost)?, |gqkv| {
                // SAFETY: attention_backward stores only computed gradient values into it.
                let gqkv = unsafe { super::as_uninit(gqkv) };
                attention_backward(&qv, &lse, &go, c, heads, lay, scale, gqkv, false)
            })
        });
    }
    out.put_tape(tape)
}

multiversion! {
    /// In place: row i ← softmax(scale · row i).
    fn softmax_rows<E: Real>(p: &mut [E], len: usize, scale: E) {
        for row in p.chunks_exact_mut(len) {
            let m = max(row) * scale;
            for v in row.iter_mut() {
                *v = (*v * scale - m).fast_exp();
            }
            let inv = E::one() / sum(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

multiversion! {
    /// [`softmax_rows`], also writing each row's log-sum-exp of the scaled scores to `lse`.
    fn softmax_rows_lse<E: Real>(p: &mut [E], len: usize, scale: E, lse: &mut [std::mem::MaybeUninit<E>]) {
        for (row, l) in p.chunks_exact_mut(len).zip(lse.iter_mut()) {
            let m = max(row) * scale;
            for v in row.iter_mut() {
                *v = (*v * scale - m).fast_exp();
            }
            let z = sum(row);
            let inv = E::one() / z;
            for v in row.iter_mut() {
                *v *= inv;
            }
            l.write(m + z.ln());
        }
    }
}

multiversion! {
    /// In place: scores → probabilities from saved log-sum-exps, `p = exp(s·scale − lse)`.
    fn probs_from_lse<E: Real>(p: &mut [E], len: usize, scale: E, lse: &[E]) {
        for (row, &l) in p.chunks_exact_mut(len).zip(lse) {
            for v in row.iter_mut() {
                *v = (*v * scale - l).fast_exp();
            }
        }
    }
}

multiversion! {
    /// In place: dP ← P ⊙ (dP − rowsum(dP ⊙ P)) · scale, the gradient of the scores.
    fn softmax_backward_rows<E: Real>(p: &[E], dp: &mut [E], len: usize, scale: E) {
        for (pr, dr) in p.chunks_exact(len).zip(dp.chunks_exact_mut(len)) {
            let d = dot(pr, dr);
            for (g, &q) in dr.iter_mut().zip(pr) {
                *g = q * (*g - d) * scale;
            }
        }
    }
}

/// torch `nn.MultiheadAttention` as CLIP stores it: a packed `in_proj_weight` (3C, C) whose rows
/// are q; k; v, `in_proj_bias` (3C), and `out_proj` (C → C).
#[derive(Clone, Debug)]
pub struct MultiheadAttention<const C: usize, E: Dtype, D: Storage<E>> {
    pub in_proj_weight: Param<(usize, Const<C>), E, D>,
    pub in_proj_bias: Param<(usize,), E, D>,
    pub out_proj: Linear<Const<C>, Const<C>, E, D>,
    pub heads: usize,
}

// ANCHOR: mha_forward
impl<const C: usize, E: Real, D: KitDevice<E>> MultiheadAttention<C, E, D> {
    /// `out_proj(attention(in_proj(x)))` along `axis`; x is (B·T, L, C).
    pub fn forward<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, usize, Const<C>), E, D, T>,
        axis: SeqAxis,
    ) -> Tensor<(usize, usize, Const<C>), E, D, T> {
        attend(x, None, self, axis, false)
    }

    /// `attn(ln(x))`: the same, on the LayerNorm of x.
    pub fn forward_normed<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, usize, Const<C>), E, D, T>,
        ln: &LayerNorm<Const<C>, E, D>,
        axis: SeqAxis,
    ) -> Tensor<(usize, usize, Const<C>), E, D, T> {
        attend(x, Some(ln), self, axis, false)
    }

    /// `x + attn(ln(x))`: CLIP's attention residual branch.
    pub fn residual<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, usize, Const<C>), E, D, T>,
        ln: &LayerNorm<Const<C>, E, D>,
        axis: SeqAxis,
    ) -> Tensor<(usize, usize, Const<C>), E, D, T> {
        attend(x, Some(ln), self, axis, true)
    }

    pub fn set_trainable(&mut self, trainable: bool) {
        self.in_proj_weight.trainable = trainable;
        self.in_proj_bias.trainable = trainable;
        self.out_proj.set_trainable(trainable);
    }
}
// ANCHOR_END: mha_forward

/// `[x +] out_proj(attention(in_proj([ln](x))))` as one op: the LayerNorm, the two projections and
/// the attention run on host buffers of this op, and only the output becomes a tensor. What the
/// backward pass keeps: the input and two numbers per row (for the LayerNorm, or the input alone
/// when `in_proj` trains without one), q;k;v, one log-sum-exp per score row (the probabilities are
/// rebuilt), and the attention output only when `out_proj.weight` trains. Each part's gradient is
/// the one of the separate ops (`layer_norm`, `linear`, [`self_attention`]), checked against them
/// and against finite differences in the tests below.
///
/// At small width (the embedded benchmark's 64) and within frames, the forward pass runs over
/// tiles of whole frames ([`forward_tiled`]), and so does the backward pass when in_proj and the
/// LayerNorm are frozen ([`backward_tiled`]): each tile's intermediates stay in the core's L2
/// cache instead of going through memory between the steps, with the same bits.
fn attend<const C: usize, E, D, T>(
    x: Tensor<(usize, usize, Const<C>), E, D, T>,
    ln: Option<&LayerNorm<Const<C>, E, D>>,
    mha: &MultiheadAttention<C, E, D>,
    axis: SeqAxis,
    residual: bool,
) -> Tensor<(usize, usize, Const<C>), E, D, T>
where
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    attend_by(x, ln, mha, axis, residual, frames_per_tile)
}

/// [`attend`] with its tiles chosen by `frames` (from width, tokens per frame and axis: frames per
/// tile, or `None` for no tiles).
fn attend_by<const C: usize, E, D, T>(
    x: Tensor<(usize, usize, Const<C>), E, D, T>,
    ln: Option<&LayerNorm<Const<C>, E, D>>,
    mha: &MultiheadAttention<C, E, D>,
    axis: SeqAxis,
    residual: bool,
    frames: TileRule,
) -> Tensor<(usize, usize, Const<C>), E, D, T>
where
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    if D::KERNELS {
        return attend_unfused(x, ln, mha, axis, residual);
    }
    let (n, l, _) = *x.shape();
    let (c, c3, rows, heads) = (C, 3 * C, n * l, mha.heads);
    assert_eq!(mha.in_proj_weight.numel(), c3 * c, "attention: in_proj_weight is not (3·{c}, {c})");
    let (scale, lay) = geometry::<E>(n, l, c, heads, axis);
    let dev = x.device().clone();
    let traced = T::OWNS_TAPE;
    let (x, mut tape) = x.split_tape();
    let xv = host(&x);

    // ln → in_proj → attention → out_proj (+ x)
    let lnp = ln.map(|ln| (ln.weight.host(), ln.bias.host(), E::of(ln.eps)));
    let (w_in, b_in) = (mha.in_proj_weight.host(), mha.in_proj_bias.host());
    let out = &mha.out_proj;
    let (w_out, b_out) = (out.weight.host(), out.bias.as_ref().map(|b| b.host()));
    let b_out = b_out.as_deref().map(|b| &b[..]);
    let keep_o = traced && out.weight.trainable;
    let tile_frames = frames(c, l, axis);
    let Forward { y, stats, qkv, lse, o: o_kept } = {
        let lnr = lnp.as_ref().map(|(g, b, eps)| (&g[..], &b[..], *eps));
        let w = Weights { w_in: &w_in, b_in: &b_in, w_out: &w_out, b_out };
        match tile_frames {
            Some(frames) => forward_tiled(&xv, (l, c, heads, scale), lnr, w, residual, (traced, keep_o), frames),
            None => forward_whole(&xv, (c, heads, scale, lay), lnr, w, residual, (traced, keep_o)),
        }
    };
    // the LayerNorm's output is rebuilt when needed
    let norm = lnp.map(|(gamma, beta, _)| (stats, gamma, beta));
    let y = tensor(&dev, y, (n, l, Const::<C>));

    if traced {
        super::stats::count_traced_attention();
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let (g_win, g_bin) = (mha.in_proj_weight.grad_key(), mha.in_proj_bias.grad_key());
        let g_wout = out.weight.grad_key();
        let g_bout = out.bias.as_ref().and_then(|b| b.grad_key());
        let (g_gamma, g_beta) = match ln {
            Some(ln) => (ln.weight.grad_key(), ln.bias.grad_key()),
            None => (None, None),
        };
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            // out_proj
            if let Some(g) = &g_bout {
                let s = column_sums(&gy, c);
                dev.update(grads.get_or_alloc_mut(g)?, |gb| add_assign(gb, &s))?;
            }
            if let (Some(g), Some(o)) = (&g_wout, &o_kept) {
                dev.update(grads.get_or_alloc_mut(g)?, |gw| weight_grad(gw, &gy, o, c, c))?;
            }
            // with in_proj and the LayerNorm frozen, the rest over tiles of frames
            if let (Some(frames), None, None, None, None) = (tile_frames, &g_win, &g_bin, &g_gamma, &g_beta) {
                let norm = norm.as_ref().map(|(stats, gamma, _)| (&stats[..], &gamma[..]));
                let parts = ((&qkv[..], &lse[..]), (&w_in[..], &w_out[..]), (l, c, heads, scale));
                return dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                    backward_tiled(gx, &gy, &xv, norm, parts, residual, frames)
                });
            }
            let go = input_grad_new(&gy, &w_out, c, c);
            // attention: every element of gqkv is written once (overwrite)
            // SAFETY: attention_backward with overwrite writes every element (see there).
            let gqkv = unsafe {
                super::written(rows * c3, |g| attention_backward(&qkv, &lse, &go, c, heads, lay, scale, g, true))
            };
            drop((go, qkv, lse));
            // in_proj
            if let Some(g) = &g_bin {
                let s = column_sums(&gqkv, c3);
                dev.update(grads.get_or_alloc_mut(g)?, |gb| add_assign(gb, &s))?;
            }
            if let Some(g) = &g_win {
                let h = match &norm {
                    Some((stats, gamma, beta)) => ln_recompute(&xv, c, gamma, beta, stats),
                    None => xv.clone(),
                };
                dev.update(grads.get_or_alloc_mut(g)?, |gw| weight_grad(gw, &gqkv, &h, c, c3))?;
            }
            let gh = input_grad_new(&gqkv, &w_in, c, c3);
            drop(gqkv);
            // the LayerNorm and the residual
            let mut params = None;
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                if residual {
                    add_assign_par(gx, &gy);
                }
                match &norm {
                    Some((stats, gamma, _)) => {
                        params = ln_backward(&xv, c, stats, gamma, &gh, gx, g_gamma.is_some() || g_beta.is_some());
                    }
                    None => add_assign_par(gx, &gh),
                }
            })?;
            super::layer_norm::add_ln_param_grads(&dev, grads, g_gamma.as_ref(), g_beta.as_ref(), params)
        });
    }
    y.put_tape(tape)
}

/// Frames per tile from (width, tokens per frame, axis), or `None` for no tiles.
type TileRule = fn(usize, usize, SeqAxis) -> Option<usize>;

/// The host values of the attention's projections.
#[derive(Clone, Copy)]
struct Weights<'a, E> {
    w_in: &'a [E],
    b_in: &'a [E],
    w_out: &'a [E],
    b_out: Option<&'a [E]>,
}

/// What [`attend`]'s forward pass gives: the output, and for the backward pass (traced) the
/// LayerNorm's statistics, q;k;v, the log-sum-exps and (when `out_proj.weight` trains) the
/// attention output. Untraced, only `y` is filled.
struct Forward<E> {
    y: Vec<E>,
    stats: Vec<E>,
    qkv: Vec<E>,
    lse: Vec<E>,
    o: Option<Vec<E>>,
}

/// Frames per tile of [`forward_tiled`] (whole frames, at least 256 rows), or `None` where the
/// forward pass runs each step over all rows: attention across frames (its sequences span
/// tiles), and projections too large for tiles to pay (the MLP's rule, `mlp::tile_rows`, with
/// in_proj's 3·C outputs: up to width 147).
///
/// Measured on the small preset (width 64, 256 frames of 65 tokens, one thread, per layer): the
/// forward pass from 20.8 to 17.0 ms, the frozen backward from 22.2 to 19.4 ms. In the bench
/// (2 threads, against the build before): evaluation 0.90 to 0.94 of its time, the training step
/// 0.95 to 0.98 in CPU time and 0.98 to 1.00 on the wall clock.
fn frames_per_tile(c: usize, l: usize, axis: SeqAxis) -> Option<usize> {
    let fits = super::mlp::tile_rows(c, 3 * c) != usize::MAX;
    (axis == SeqAxis::Tokens && fits && l > 0).then(|| 256usize.div_ceil(l))
}

/// The token-row ranges of tiles of `frames` whole frames (of `l` rows) out of `n` (the last tile
/// takes the remainder), shared by [`forward_tiled`] and [`backward_tiled`].
fn frame_tiles(n: usize, l: usize, frames: usize) -> Vec<std::ops::Range<usize>> {
    super::mlp::tiles(n, frames).iter().map(|f| f.start * l..f.end * l).collect()
}

/// [`attend`]'s forward pass, each step over all rows: the LayerNorm, in_proj, the attention and
/// out_proj (with the residual).
fn forward_whole<E: Real>(
    xv: &[E],
    (c, heads, scale, lay): (usize, usize, E, Layout),
    ln: Option<(&[E], &[E], E)>,
    w: Weights<'_, E>,
    residual: bool,
    (traced, keep_o): (bool, bool),
) -> Forward<E> {
    let rows = xv.len() / c;
    let norm = ln.map(|(gamma, beta, eps)| ln_forward(xv, c, gamma, beta, eps));
    let qkv = affine_new(norm.as_ref().map_or(xv, |n| &n.0[..]), w.w_in, Some(w.b_in), rows, c, 3 * c);
    let stats = norm.map(|(_, stats)| stats).unwrap_or_default();
    let (o, lse) = attention_new(&qkv, c, heads, lay, scale, traced);
    let y = if residual {
        affine_residual(xv, &o, w.w_out, w.b_out, c, c)
    } else {
        affine_new(&o, w.w_out, w.b_out, rows, c, c)
    };
    Forward { y, stats, qkv, lse, o: keep_o.then_some(o) }
}

/// [`forward_whole`] over tiles of whole frames, in parallel (spatial attention: each frame's
/// sequence lies in one tile). Each tile goes through the LayerNorm, in_proj, the attention and
/// out_proj while its rows stay in the core's L2 cache: the LayerNorm's output, and q;k;v and
/// the attention output unless the backward pass keeps them, live in the worker's scratch. Every
/// row, and every (frame, head), is computed by the same kernels as over all rows, so the bits
/// are the same (`tiled_attention_gives_the_same_bits_as_untiled`).
fn forward_tiled<E: Real>(
    xv: &[E],
    (l, c, heads, scale): (usize, usize, usize, E),
    ln: Option<(&[E], &[E], E)>,
    w: Weights<'_, E>,
    residual: bool,
    (traced, keep_o): (bool, bool),
    frames: usize,
) -> Forward<E> {
    use super::mlp::{cut, with_scratch, Scratch};
    let (rows, c3) = (xv.len() / c, 3 * c);
    let n = rows / l;
    let by_row = frame_tiles(n, l, frames);
    let len = |keep: bool, per_row: usize| if keep { rows * per_row } else { 0 };
    let n_stats = len(traced && ln.is_some(), 2);
    let (n_qkv, n_lse, n_o) = (len(traced, c3), len(traced, heads), len(keep_o, c));
    let mut f = Forward {
        y: Vec::with_capacity(rows * c),
        stats: Vec::with_capacity(n_stats),
        qkv: Vec::with_capacity(n_qkv),
        lse: Vec::with_capacity(n_lse),
        o: keep_o.then(|| Vec::with_capacity(n_o)),
    };
    let ys = cut(&mut f.y.spare_capacity_mut()[..rows * c], c, &by_row);
    let statss = cut(&mut f.stats.spare_capacity_mut()[..n_stats], if n_stats > 0 { 2 } else { 0 }, &by_row);
    let qkvs = cut(&mut f.qkv.spare_capacity_mut()[..n_qkv], if traced { c3 } else { 0 }, &by_row);
    let lses = cut(&mut f.lse.spare_capacity_mut()[..n_lse], if traced { heads } else { 0 }, &by_row);
    let os = match &mut f.o {
        Some(o) => cut(&mut o.spare_capacity_mut()[..n_o], c, &by_row),
        None => cut(&mut [], 0, &by_row),
    };
    let tasks = ys.into_par_iter().zip(statss).zip(qkvs).zip(lses).zip(os).zip(by_row.par_iter());
    tasks.for_each(|(((((y, stats), qkv), lse), o), r)| {
        with_scratch(|s: &mut Scratch<E>| {
            let Scratch { h, stats: st, pre, a, scores } = s;
            let nr = r.len();
            let x = &xv[r.start * c..r.end * c];
            // SAFETY (the four `written_into`/`assume_init` below): ln_forward_rows, a product after
            // the bias rows, and the (frame, head) tasks write every element of their outputs.
            let h: &[E] = match ln {
                Some((gamma, beta, eps)) => {
                    let st = if traced { stats } else { super::uninit_scratch(st, 2 * nr) };
                    unsafe { super::written_into(h, nr * c, |h| ln_forward_rows(x, c, gamma, beta, eps, h, st)) }
                }
                None => x,
            };
            let qkv: &[E] = if traced {
                affine_tile(qkv, None, h, w.w_in, Some(w.b_in), c, c3);
                unsafe { super::assume_init(qkv) }
            } else {
                unsafe { super::written_into(pre, nr * c3, |q| affine_tile(q, None, h, w.w_in, Some(w.b_in), c, c3)) }
            };
            let lay = Layout::new(nr / l, l, SeqAxis::Tokens);
            let o = if keep_o { o } else { super::uninit_scratch(a, nr * c) };
            let out = SharedMut(o.as_mut_ptr() as *mut E);
            let lse = traced.then_some(SharedMut(lse.as_mut_ptr()));
            scores.resize(l * l, E::zero());
            for task in 0..lay.seqs * heads {
                // SAFETY: one task at a time; the blocks tile `o` and `lse` (the tile's own rows).
                unsafe { attention_task(qkv, c, heads, lay, scale, task, scores, &out, lse.as_ref()) };
            }
            let o: &[E] = unsafe { super::assume_init(o) };
            affine_tile(y, residual.then_some(x), o, w.w_out, w.b_out, c, c);
        })
    });
    // SAFETY: the tiles cover all rows, and each wrote every element of its rows of every buffer.
    unsafe {
        f.y.set_len(rows * c);
        f.stats.set_len(n_stats);
        f.qkv.set_len(n_qkv);
        f.lse.set_len(n_lse);
        if let Some(o) = &mut f.o {
            o.set_len(n_o);
        }
    }
    f
}

/// [`attend`]'s backward pass from the output gradient `gy`, with in_proj and the LayerNorm
/// frozen, over tiles of whole frames (spatial attention): per tile, the attention output's
/// gradient, the q;k;v gradient and the LayerNorm output's gradient stay in the worker's scratch,
/// and the tile's rows of `gx` get the residual's and the LayerNorm's terms. Every row and every
/// (frame, head) is computed by the kernels of the pass over all rows, in the same order, so
/// the bits are the same (`tiled_attention_gives_the_same_bits_as_untiled`).
#[allow(clippy::type_complexity)]
fn backward_tiled<E: Real>(
    gx: &mut [E],
    gy: &[E],
    xv: &[E],
    norm: Option<(&[E], &[E])>,
    ((qkv, lse), (w_in, w_out), (l, c, heads, scale)): ((&[E], &[E]), (&[E], &[E]), (usize, usize, usize, E)),
    residual: bool,
    frames: usize,
) {
    use super::linear::input_grad_tile;
    use super::mlp::{cut, with_scratch, Scratch};
    let (rows, c3) = (xv.len() / c, 3 * c);
    let by_row = frame_tiles(rows / l, l, frames);
    let gxs = cut(gx, c, &by_row);
    gxs.into_par_iter().zip(by_row.par_iter()).for_each(|(gx, r)| {
        with_scratch(|s: &mut Scratch<E>| {
            let Scratch { h, pre, a, scores, .. } = s;
            let nr = r.len();
            fn rows_of<'a, E>(v: &'a [E], r: &std::ops::Range<usize>, w: usize) -> &'a [E] {
                &v[r.start * w..r.end * w]
            }
            let at = |v, w| rows_of(v, r, w);
            let gy = at(gy, c);
            // SAFETY (the three `written_into`): products with accumulate = false, and the
            // (frame, head) tasks with overwrite, write every element.
            let go: &[E] = unsafe { super::written_into(a, nr * c, |g| input_grad_tile(g, gy, w_out, c, c)) };
            let lay = Layout::new(nr / l, l, SeqAxis::Tokens);
            scores.resize(2 * l * l, E::zero());
            let (qkv, lse) = (at(qkv, c3), at(lse, heads));
            let gqkv: &[E] = unsafe {
                super::written_into(pre, nr * c3, |g| {
                    let g = SharedMut(g.as_mut_ptr() as *mut E);
                    for task in 0..lay.seqs * heads {
                        // one task at a time; the blocks tile the tile's q, k and v gradients
                        attention_backward_task((qkv, lse, go), c, heads, lay, scale, task, scores, &g, true);
                    }
                })
            };
            let gh: &[E] = unsafe { super::written_into(h, nr * c, |g| input_grad_tile(g, gqkv, w_in, c, c3)) };
            if residual {
                add_assign(gx, gy);
            }
            match norm {
                Some((stats, gamma)) => ln_backward_rows(at(xv, c), c, at(stats, 2), gamma, gh, gx),
                None => add_assign(gx, gh),
            }
        })
    });
}

/// [`attend`] as its separate ops (`layer_norm`, `linear`, [`self_attention`], `linear`, `add`), for
/// a device whose kernels run each op (CUDA): the same arithmetic, the same frozen/trainable rules.
fn attend_unfused<const C: usize, E, D, T>(
    x: Tensor<(usize, usize, Const<C>), E, D, T>,
    ln: Option<&LayerNorm<Const<C>, E, D>>,
    mha: &MultiheadAttention<C, E, D>,
    axis: SeqAxis,
    residual: bool,
) -> Tensor<(usize, usize, Const<C>), E, D, T>
where
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let (xs, tape) = x.split_tape();
    let h = xs.clone().put_tape(tape);
    let h = match ln {
        Some(ln) => super::layer_norm(h, ln),
        None => h,
    };
    let qkv = super::linear(h, &mha.in_proj_weight, Some(&mha.in_proj_bias));
    let o = self_attention(qkv, mha.heads, axis, Const::<C>);
    let y = mha.out_proj.forward(o);
    if residual {
        super::add(y, xs)
    } else {
        y
    }
}

crate::impl_params!([const C: usize, E: Real, D: KitDevice<E>] MultiheadAttention<C, E, D> {
    param "in_proj_weight" => in_proj_weight,
    param "in_proj_bias" => in_proj_bias,
    module "out_proj" => out_proj,
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;

    /// Naive attention: for each sequence and head, softmax(q·kᵀ/√d)·v with explicit loops.
    fn naive(qkv: &[f64], n: usize, l: usize, c: usize, heads: usize, axis: SeqAxis) -> Vec<f64> {
        let dh = c / heads;
        let lay = Layout::new(n, l, axis);
        let mut out = vec![0.0; n * l * c];
        for s in 0..lay.seqs {
            let (base, stride) = lay.seq(s);
            let row = |i: usize| (base + i * stride) * 3 * c;
            for h in 0..heads {
                for i in 0..lay.len {
                    let scores: Vec<f64> = (0..lay.len)
                        .map(|j| {
                            (0..dh).map(|d| qkv[row(i) + h * dh + d] * qkv[row(j) + c + h * dh + d]).sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                    for d in 0..dh {
                        let o: f64 =
                            (0..lay.len).map(|j| (scores[j] - m).exp() / z * qkv[row(j) + 2 * c + h * dh + d]).sum();
                        out[(base + i * stride) * c + h * dh + d] = o;
                    }
                }
            }
        }
        out
    }

    const N: usize = 6; // B = 2 videos × T = 3 frames
    const L: usize = 5;
    const C: usize = 8;
    const H: usize = 2;

    fn run(axis: SeqAxis) {
        let dev = Cpu::default();
        let qkv_v: Vec<f64> = rand_vec(11, N * L * 3 * C).iter().map(|v| 2.0 * v).collect();
        let qkv = dev.tensor_from_vec(qkv_v.clone(), (N, L, 3 * C));
        let out = self_attention(qkv.clone(), H, axis, C).as_vec();
        let want = naive(&qkv_v, N, L, C, H, axis);
        let err = out.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "forward differs from the naive loops by {err:e}");

        let r = rand_vec(12, N * L * C);
        let g = weighted_sum(self_attention(qkv.leaky_trace(), H, axis, C), &r).backward();
        let num = numeric_grad(&qkv_v, |v| {
            weighted_sum_value(&self_attention(dev.tensor_from_vec(v.to_vec(), (N, L, 3 * C)), H, axis, C), &r)
        });
        assert_close("dqkv", &g.get(&qkv).as_vec(), &num);
    }

    /// Spatial attention (within frames): naive forward and finite-difference gradient.
    #[test]
    fn spatial_attention_matches_naive_loops_and_finite_differences() {
        run(SeqAxis::Tokens);
    }

    /// Temporal attention (across the T = 3 frames of each token position, AIM's T-MSA).
    #[test]
    fn temporal_attention_matches_naive_loops_and_finite_differences() {
        run(SeqAxis::Frames { frames: 3 });
    }

    /// Temporal attention equals spatial attention on the rearranged stream
    /// `(b t) l c -> (b l) t c`: the strided layout is the rearrangement AIM's code does.
    #[test]
    fn temporal_attention_is_spatial_attention_on_the_transposed_stream() {
        let dev = Cpu::default();
        let (b, t) = (2, 3);
        let v = rand_vec(13, N * L * 3 * C);
        let tt =
            self_attention(dev.tensor_from_vec(v.clone(), (N, L, 3 * C)), H, SeqAxis::Frames { frames: t }, C).as_vec();
        // rearrange (b t) l c -> (b l) t c
        let mut w = vec![0.0; v.len()];
        for bi in 0..b {
            for ti in 0..t {
                for li in 0..L {
                    let src = ((bi * t + ti) * L + li) * 3 * C;
                    let dst = ((bi * L + li) * t + ti) * 3 * C;
                    w[dst..dst + 3 * C].copy_from_slice(&v[src..src + 3 * C]);
                }
            }
        }
        let ss = self_attention(dev.tensor_from_vec(w, (b * L, t, 3 * C)), H, SeqAxis::Tokens, C).as_vec();
        for bi in 0..b {
            for ti in 0..t {
                for li in 0..L {
                    let a = &tt[((bi * t + ti) * L + li) * C..][..C];
                    let s = &ss[((bi * L + li) * t + ti) * C..][..C];
                    assert!(a.iter().zip(s).all(|(x, y)| (x - y).abs() < 1e-12));
                }
            }
        }
    }

    fn block_parts(dev: &Cpu) -> (LayerNorm<Const<C>, f64, Cpu>, MultiheadAttention<C, f64, Cpu>) {
        let v = |seed, n: usize, scale: f64| rand_vec(seed, n).iter().map(|x| x * scale).collect::<Vec<_>>();
        let ln = LayerNorm {
            weight: Param::new(
                dev.tensor_from_vec(v(21, C, 0.3).iter().map(|x| 1.0 + x).collect(), (Const::<C>,)),
                true,
            ),
            bias: Param::new(dev.tensor_from_vec(v(22, C, 1.0), (Const::<C>,)), true),
            eps: 1e-5,
        };
        let mha = MultiheadAttention {
            in_proj_weight: Param::new(dev.tensor_from_vec(v(23, 3 * C * C, 0.8), (3 * C, Const::<C>)), true),
            in_proj_bias: Param::new(dev.tensor_from_vec(v(24, 3 * C, 0.5), (3 * C,)), true),
            out_proj: Linear {
                weight: Param::new(dev.tensor_from_vec(v(25, C * C, 0.8), (Const::<C>, Const::<C>)), true),
                bias: Some(Param::new(dev.tensor_from_vec(v(26, C, 0.5), (Const::<C>,)), true)),
            },
            heads: H,
        };
        (ln, mha)
    }

    /// Sets one parameter of (LayerNorm, attention) from a flat vector, for finite differences.
    type Setter<'a> = &'a dyn Fn(&mut LayerNorm<Const<C>, f64, Cpu>, &mut MultiheadAttention<C, f64, Cpu>, &[f64]);

    /// The fused attention op (`[x +] out_proj(attention(in_proj([ln](x))))`) against the separate
    /// ops (LayerNorm, linear, [`self_attention`], linear, add) on the forward, and every gradient
    /// (x, γ, β, in_proj weight and bias, out_proj weight and bias) against f64 finite
    /// differences, spatial and temporal, with and without the LayerNorm and the residual.

    #[rstest::rstest]
    #[case(SeqAxis::Tokens, true, true)]
    #[case(SeqAxis::Frames { frames: 3 }, true, false)]
    #[case(SeqAxis::Tokens, false, false)]
    #[case(SeqAxis::Frames { frames: 3 }, false, true)]
    fn fused_attention_matches_the_separate_ops_and_finite_differences(
        #[case] axis: SeqAxis,
        #[case] with_ln: bool,
        #[case] residual: bool,
    ) {
        let dev = Cpu::default();
        let (ln, mha) = block_parts(&dev);
        let ln_opt = with_ln.then_some(&ln);
        let shape = (N, L, Const::<C>);
        let x = dev.tensor_from_vec(rand_vec(27, N * L * C).iter().map(|v| 2.0 * v).collect(), shape);
        let fused = attend(x.clone(), ln_opt, &mha, axis, residual).as_vec();
        let h = match ln_opt {
            Some(ln) => crate::ops::layer_norm(x.clone(), ln),
            None => x.clone(),
        };
        let qkv = crate::ops::linear(h, &mha.in_proj_weight, Some(&mha.in_proj_bias));
        let (n, l, c3) = *qkv.shape();
        let qkv = dev.tensor_from_vec(qkv.as_vec(), (n, l, c3));
        let o = mha.out_proj.forward(self_attention(qkv, H, axis, Const::<C>));
        let want = if residual { crate::ops::add(o, x.clone()).as_vec() } else { o.as_vec() };
        let err = fused.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(err < 1e-12, "forward differs from the separate ops by {err:e}");

        let r = rand_vec(28, N * L * C);
        let g = weighted_sum(attend(x.leaky_trace(), ln_opt, &mha, axis, residual), &r).backward();
        let loss = |ln: &LayerNorm<Const<C>, f64, Cpu>, mha: &MultiheadAttention<C, f64, Cpu>, xv: &[f64]| {
            let x = dev.tensor_from_vec(xv.to_vec(), shape);
            weighted_sum_value(&attend(x, with_ln.then_some(ln), mha, axis, residual), &r)
        };
        let xv = x.as_vec();
        assert_close("dx", &g.get(&x).as_vec(), &numeric_grad(&xv, |v| loss(&ln, &mha, v)));
        let check = |name: &str, got: Vec<f64>, values: Vec<f64>, set: Setter| {
            let num = numeric_grad(&values, |v| {
                let (mut l2, mut m2) = (ln.clone(), mha.clone());
                set(&mut l2, &mut m2, v);
                loss(&l2, &m2, &xv)
            });
            assert_close(name, &got, &num);
        };
        check(
            "d in_proj_weight",
            g.get(&mha.in_proj_weight.value).as_vec(),
            mha.in_proj_weight.to_vec(),
            &|_, m, v| m.in_proj_weight.set(v),
        );
        check("d in_proj_bias", g.get(&mha.in_proj_bias.value).as_vec(), mha.in_proj_bias.to_vec(), &|_, m, v| {
            m.in_proj_bias.set(v)
        });
        check(
            "d out_proj.weight",
            g.get(&mha.out_proj.weight.value).as_vec(),
            mha.out_proj.weight.to_vec(),
            &|_, m, v| m.out_proj.weight.set(v),
        );
        let ob = mha.out_proj.bias.as_ref().unwrap();
        check("d out_proj.bias", g.get(&ob.value).as_vec(), ob.to_vec(), &|_, m, v| {
            m.out_proj.bias.as_mut().unwrap().set(v)
        });
        if with_ln {
            check("dγ", g.get(&ln.weight.value).as_vec(), ln.weight.to_vec(), &|l, _, v| l.weight.set(v));
            check("dβ", g.get(&ln.bias.value).as_vec(), ln.bias.to_vec(), &|l, _, v| l.bias.set(v));
        }
    }

    /// Frozen weights: no weight-gradient product, no parameter gradient, the same input gradient.
    #[test]
    fn frozen_fused_attention_computes_the_input_gradient_only() {
        let dev = Cpu::default();
        let (mut ln, mut mha) = block_parts(&dev);
        let x = dev.tensor_from_vec(rand_vec(27, N * L * C), (N, L, Const::<C>));
        let r = rand_vec(28, N * L * C);
        let all = weighted_sum(attend(x.leaky_trace(), Some(&ln), &mha, SeqAxis::Tokens, true), &r).backward();
        ln.set_trainable(false);
        mha.set_trainable(false);
        let before = crate::ops::stats::weight_grad_products();
        let g = weighted_sum(attend(x.leaky_trace(), Some(&ln), &mha, SeqAxis::Tokens, true), &r).backward();
        assert_eq!(crate::ops::stats::weight_grad_products(), before);
        assert!(!crate::testing::has_grad(&g, &mha.in_proj_weight.value));
        assert!(!crate::testing::has_grad(&g, &mha.out_proj.weight.value));
        assert!(!crate::testing::has_grad(&g, &ln.weight.value));
        let (a, b) = (g.get(&x).as_vec(), all.get(&x).as_vec());
        assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-12));
    }

    /// The passes over tiles of whole frames give the same bits as over all rows (which computed
    /// the committed results), in f32: the output untraced (evaluation); and traced, the output
    /// and every gradient, with the projections and the LayerNorm frozen (a frozen backbone: the
    /// backward pass tiled too), the LayerNorm alone trained, and everything trained (the
    /// backward pass over all rows). 7 frames of 37 tokens in tiles of 3 frames (the last tile
    /// takes 4), width 32, two heads.
    #[rstest::rstest]
    #[case(true, true, false, false)]
    #[case(true, false, false, false)]
    #[case(false, true, false, false)]
    #[case(false, false, false, false)]
    #[case(true, true, false, true)]
    #[case(true, true, true, true)]
    #[case(false, false, true, false)]
    fn tiled_attention_gives_the_same_bits_as_untiled(
        #[case] with_ln: bool,
        #[case] residual: bool,
        #[case] trained: bool,
        #[case] ln_trained: bool,
    ) {
        const W: usize = 32;
        let dev = Cpu::default();
        let v = |seed, n: usize, scale: f32| rand_vec(seed, n).iter().map(|x| *x as f32 * scale).collect::<Vec<_>>();
        let ln = LayerNorm {
            weight: Param::new(
                dev.tensor_from_vec(v(21, W, 0.3).iter().map(|x| 1.0 + x).collect(), (Const::<W>,)),
                true,
            ),
            bias: Param::new(dev.tensor_from_vec(v(22, W, 1.0), (Const::<W>,)), true),
            eps: 1e-5,
        };
        let mut ln = ln;
        ln.set_trainable(ln_trained);
        let mut mha = MultiheadAttention {
            in_proj_weight: Param::new(dev.tensor_from_vec(v(23, 3 * W * W, 0.3), (3 * W, Const::<W>)), true),
            in_proj_bias: Param::new(dev.tensor_from_vec(v(24, 3 * W, 0.5), (3 * W,)), true),
            out_proj: Linear {
                weight: Param::new(dev.tensor_from_vec(v(25, W * W, 0.3), (Const::<W>, Const::<W>)), true),
                bias: Some(Param::new(dev.tensor_from_vec(v(26, W, 0.5), (Const::<W>,)), true)),
            },
            heads: 2,
        };
        mha.set_trainable(trained);
        let ln = with_ln.then_some(&ln);
        let shape = (7usize, 37usize, Const::<W>);
        let x = dev.tensor_from_vec(v(27, 7 * 37 * W, 2.0), shape);
        let r = dev.tensor_from_vec(v(28, 7 * 37 * W, 1.0), shape);
        let bits = |t: Vec<f32>| t.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let tiles: [TileRule; 2] = [|_, _, _| Some(3), |_, _, _| None];
        let [tiled, whole] = tiles.map(|frames| {
            let eval = bits(attend_by(x.clone(), ln, &mha, SeqAxis::Tokens, residual, frames).as_vec());
            let y = attend_by(x.leaky_trace(), ln, &mha, SeqAxis::Tokens, residual, frames);
            let yv = bits(y.as_vec());
            let g = (y * r.clone()).sum::<Rank0, _>().backward();
            let mut out = vec![eval, yv, bits(g.get(&x).as_vec())];
            let mut params = crate::testing::grads_by_key(&mha, &g);
            if let Some(ln) = ln {
                params.extend(crate::testing::grads_by_key(ln, &g));
            }
            assert_eq!(params.len(), if trained { 4 } else { 0 } + if with_ln && ln_trained { 2 } else { 0 });
            out.extend(params.into_values().map(|v| v.into_iter().map(|x| (x as f32).to_bits()).collect()));
            out
        });
        assert_eq!(tiled, whole);
    }
}
