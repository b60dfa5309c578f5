//! Multi-head self-attention with CLIP's packed `in_proj` (rows q; k; v), over the tokens of a frame
//! (spatial) or over the frames of a token position (AIM's temporal T-MSA), with the same weights.
//!
//! The token stream is (B·T, L, C) with row b·T + t. Spatial attention attends along L within a
//! row; temporal attention attends along T for each (b, l), which in this layout is the rows
//! (b·T + t)·L + l for t = 0…T−1. Both read the packed qkv buffer in place through strides.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::gemm::{matmul, Mat, MatMut, Threads};
use super::layer_norm::{ln_backward, ln_forward, ln_recompute, LayerNorm};
use super::linear::{affine_new, affine_residual, column_sums, input_grad_new, weight_grad};
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
    let (dh, c3, len) = (c / heads, 3 * c, lay.len);
    let out_ptr = SharedMut(out.as_mut_ptr() as *mut E);
    let lse_ptr = lse.map(|l| SharedMut(l.as_mut_ptr()));
    (0..lay.seqs * heads).into_par_iter().for_each_init(
        || vec![E::zero(); len * len],
        |p, task| {
            let (s, h) = (task / heads, task % heads);
            let (base, stride) = lay.seq(s);
            let q = Mat::strided(qkv, base * c3 + h * dh, len, dh, stride * c3, 1);
            let k = Mat::strided(qkv, base * c3 + c + h * dh, len, dh, stride * c3, 1);
            let v = Mat::strided(qkv, base * c3 + 2 * c + h * dh, len, dh, stride * c3, 1);
            matmul(MatMut::new(p, len, len), q, k.t(), false, Threads::One);
            match lse_ptr {
                // SAFETY: task `task` owns lse[task·len .. (task+1)·len].
                Some(l) => softmax_rows_lse(p, len, scale, unsafe {
                    std::slice::from_raw_parts_mut(l.ptr().add(task * len), len)
                }),
                None => softmax_rows(p, len, scale),
            }
            // SAFETY: the (s, h) output block (rows of sequence s, columns h·dh..(h+1)·dh) is
            // written by this task only.
            let o = unsafe { MatMut::from_raw(out_ptr.ptr().add(base * c + h * dh), len, dh, stride * c, 1) };
            matmul(o, Mat::new(p, len, len), v, false, Threads::One);
        },
    );
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
    let (dh, c3, len) = (c / heads, 3 * c, lay.len);
    let g_ptr = SharedMut(gqkv.as_mut_ptr() as *mut E);
    (0..lay.seqs * heads).into_par_iter().for_each_init(
        || (vec![E::zero(); len * len], vec![E::zero(); len * len]),
        |(p, dp), task| {
            let (s, h) = (task / heads, task % heads);
            let (base, stride) = lay.seq(s);
            let q = Mat::strided(qkv, base * c3 + h * dh, len, dh, stride * c3, 1);
            let k = Mat::strided(qkv, base * c3 + c + h * dh, len, dh, stride * c3, 1);
            let v = Mat::strided(qkv, base * c3 + 2 * c + h * dh, len, dh, stride * c3, 1);
            let d_o = Mat::strided(go, base * c + h * dh, len, dh, stride * c, 1);
            matmul(MatMut::new(p, len, len), q, k.t(), false, Threads::One);
            probs_from_lse(p, len, scale, &lse[task * len..(task + 1) * len]);
            // SAFETY: the q, k and v gradient blocks of (s, h) belong to this task.
            let (dq, dk, dv) = unsafe {
                let at =
                    |off: usize| MatMut::from_raw(g_ptr.ptr().add(base * c3 + off + h * dh), len, dh, stride * c3, 1);
                (at(0), at(c), at(2 * c))
            };
            matmul(dv, Mat::new(p, len, len).t(), d_o, !overwrite, Threads::One);
            matmul(MatMut::new(dp, len, len), d_o, v.t(), false, Threads::One);
            softmax_backward_rows(p, dp, len, scale);
            matmul(dq, Mat::new(dp, len, len), k, !overwrite, Threads::One);
            matmul(dk, Mat::new(dp, len, len).t(), q, !overwrite, Threads::One);
        },
    );
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
    let norm = ln.map(|ln| {
        let (gamma, beta) = (ln.weight.host(), ln.bias.host());
        let (h, stats) = ln_forward(&xv, c, &gamma, &beta, E::of(ln.eps));
        (h, stats, gamma, beta)
    });
    let (w_in, b_in) = (mha.in_proj_weight.host(), mha.in_proj_bias.host());
    let qkv = affine_new(norm.as_ref().map_or(&xv[..], |n| &n.0[..]), &w_in, Some(&b_in), rows, c, c3);
    let norm = norm.map(|(_, stats, gamma, beta)| (stats, gamma, beta)); // the LayerNorm's output is rebuilt when needed
    let (o, lse) = attention_new(&qkv, c, heads, lay, scale, traced);
    let out = &mha.out_proj;
    let (w_out, b_out) = (out.weight.host(), out.bias.as_ref().map(|b| b.host()));
    let b_out = b_out.as_deref().map(|b| &b[..]);
    let y = if residual {
        affine_residual(&xv, &o, &w_out, b_out, c, c)
    } else {
        affine_new(&o, &w_out, b_out, rows, c, c)
    };
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
        let o_kept = g_wout.is_some().then_some(o);
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
}
