//! Multi-head self-attention with CLIP's packed `in_proj` (rows q; k; v), over the tokens of a frame
//! (spatial) or over the frames of a token position (AIM's temporal T-MSA), with the same weights.
//!
//! The token stream is (B·T, L, C) with row b·T + t. Spatial attention attends along L within a
//! row; temporal attention attends along T for each (b, l), which in this layout is the rows
//! (b·T + t)·L + l for t = 0…T−1. Both read the packed qkv buffer in place through strides.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::gemm::{matmul, Mat, MatMut, Threads};
use super::simd::{dot, max, multiversion, sum};
use super::{linear, Linear, SharedMut};
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

/// Scaled dot-product attention on a packed (N, L, 3·C) q;k;v buffer → (N, L, C), no mask,
/// scale 1/√(C/heads). `width` names the output's feature dimension C.
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
    assert!(heads > 0 && c.is_multiple_of(heads), "attention: {heads} heads do not divide width {c}");
    let dh = c / heads;
    let scale = E::one() / E::of(dh as f64).sqrt();
    let lay = Layout::new(n, l, axis);
    let len = lay.len;
    let dev = qkv.device().clone();

    let (qkv, mut tape) = qkv.split_tape();
    let keep_probs = T::OWNS_TAPE;
    let mut out = vec![E::zero(); n * l * c];
    let mut probs = vec![E::zero(); if keep_probs { lay.seqs * heads * len * len } else { 0 }];
    {
        let qv = host(&qkv);
        let out_ptr = SharedMut(out.as_mut_ptr());
        let probs_ptr = SharedMut(probs.as_mut_ptr());
        (0..lay.seqs * heads).into_par_iter().for_each_init(
            || vec![E::zero(); len * len],
            |p_local, task| {
                let (s, h) = (task / heads, task % heads);
                let (base, stride) = lay.seq(s);
                let q = Mat::strided(&qv, base * c3 + h * dh, len, dh, stride * c3, 1);
                let k = Mat::strided(&qv, base * c3 + c + h * dh, len, dh, stride * c3, 1);
                let v = Mat::strided(&qv, base * c3 + 2 * c + h * dh, len, dh, stride * c3, 1);
                let p: &mut [E] = if keep_probs {
                    // SAFETY: task `task` owns probs[task·len² .. (task+1)·len²].
                    unsafe { std::slice::from_raw_parts_mut(probs_ptr.ptr().add(task * len * len), len * len) }
                } else {
                    &mut p_local[..]
                };
                matmul(MatMut::new(p, len, len), q, k.t(), false, Threads::One);
                softmax_rows(p, len, scale);
                // SAFETY: the (s, h) output block (rows of sequence s, columns h·dh..(h+1)·dh) is
                // written by this task only.
                let o = unsafe { MatMut::from_raw(out_ptr.ptr().add(base * c + h * dh), len, dh, stride * c, 1) };
                matmul(o, Mat::new(p, len, len), v, false, Threads::One);
            },
        );
    }
    let out = tensor(&dev, out, (n, l, width));

    if T::OWNS_TAPE {
        super::stats::count_traced_attention();
        let (qkv_ghost, out_ghost) = (qkv.ghost(), out.ghost());
        tape.add_backward_op(move |grads| {
            let go = dev.take(grads.get_or_alloc_mut(&out_ghost)?);
            let qv = host(&qkv);
            dev.update(grads.get_or_alloc_mut(&qkv_ghost)?, |gqkv| {
                let g_ptr = SharedMut(gqkv.as_mut_ptr());
                (0..lay.seqs * heads).into_par_iter().for_each_init(
                    || vec![E::zero(); len * len],
                    |dp, task| {
                        let (s, h) = (task / heads, task % heads);
                        let (base, stride) = lay.seq(s);
                        let p = &probs[task * len * len..(task + 1) * len * len];
                        let q = Mat::strided(&qv, base * c3 + h * dh, len, dh, stride * c3, 1);
                        let k = Mat::strided(&qv, base * c3 + c + h * dh, len, dh, stride * c3, 1);
                        let v = Mat::strided(&qv, base * c3 + 2 * c + h * dh, len, dh, stride * c3, 1);
                        let d_o = Mat::strided(&go, base * c + h * dh, len, dh, stride * c, 1);
                        // SAFETY: the q, k and v gradient blocks of (s, h) belong to this task.
                        let (dq, dk, dv) = unsafe {
                            let at = |off: usize| {
                                MatMut::from_raw(g_ptr.ptr().add(base * c3 + off + h * dh), len, dh, stride * c3, 1)
                            };
                            (at(0), at(c), at(2 * c))
                        };
                        // dV = Pᵀ·dO
                        matmul(dv, Mat::new(p, len, len).t(), d_o, true, Threads::One);
                        // dP = dO·Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) · scale
                        matmul(MatMut::new(dp, len, len), d_o, v.t(), false, Threads::One);
                        softmax_backward_rows(p, dp, len, scale);
                        // dQ = dS·K, dK = dSᵀ·Q
                        matmul(dq, Mat::new(dp, len, len), k, true, Threads::One);
                        matmul(dk, Mat::new(dp, len, len).t(), q, true, Threads::One);
                    },
                );
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
        let qkv = linear(x, &self.in_proj_weight, Some(&self.in_proj_bias)); // (B·T, L, 3C)
        let o = self_attention(qkv, self.heads, axis, Const::<C>);
        self.out_proj.forward(o)
    }

    pub fn set_trainable(&mut self, trainable: bool) {
        self.in_proj_weight.trainable = trainable;
        self.in_proj_bias.trainable = trainable;
        self.out_proj.set_trainable(trainable);
    }
}
// ANCHOR_END: mha_forward

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
}
