//! Where CUDA attention's batched GEMMs read and write: index arithmetic only (no CUDA), shared by
//! [`super::gpu`], which hands it to cuBLAS, and by the host check below, which runs the same calls
//! through a column-major GEMM written from cuBLAS's definition and compares the result with the CPU
//! attention. So the offsets, leading dimensions, batch strides and the row- to column-major mapping
//! are tested on every machine, GPU or not.
//!
//! The (rows, 3C) packed q;k;v buffer and the (rows, C) output hold sequences of `len` tokens; the
//! probability buffer is (heads, sequences, len, len).

use crate::ops::SeqAxis;

/// A row-major matrix operand of a batched GEMM: element offset, row stride (`ld`), batch stride,
/// and whether it is used transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operand {
    pub off: usize,
    pub ld: usize,
    pub stride: usize,
    pub t: bool,
}

/// cuBLAS's column-major strided-batched GEMM for the row-major `C_b (m×n) = op(A_b)·op(B_b)`,
/// computed as `C_bᵀ = op(B_b)ᵀ·op(A_b)ᵀ`: cuBLAS's A is the row-major B and its B the row-major A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColMajor {
    pub transa: bool,
    pub transb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub batch: usize,
}

impl ColMajor {
    /// The call for row-major `a`, `b` and `c` (`c`: leading dimension and batch stride).
    pub fn of_row_major(m: usize, n: usize, k: usize, a: Operand, b: Operand, c: (usize, usize), batch: usize) -> Self {
        ColMajor {
            transa: b.t,
            transb: a.t,
            m: n,
            n: m,
            k,
            lda: b.ld,
            ldb: a.ld,
            ldc: c.0,
            stride_a: b.stride,
            stride_b: a.stride,
            stride_c: c.1,
            batch,
        }
    }
}

/// How attention's sequences sit in the token rows, for the batched GEMMs: `groups` groups
/// `group_rows` token rows apart, each a batch of `batch` sequences `batch_rows` rows apart, a
/// sequence's `len` tokens `row_step` rows apart. Over the tokens of a frame: one group, a batch of
/// every frame row (L rows apart), tokens adjacent. Over the frames (AIM's T-MSA): a group per video
/// (T·L rows apart), a batch of its L token positions (adjacent rows), frames L rows apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqPlan {
    pub groups: usize,
    pub group_rows: usize,
    pub batch: usize,
    pub batch_rows: usize,
    pub row_step: usize,
    pub len: usize,
}

impl SeqPlan {
    /// The plan for `n` frame rows of `l` tokens.
    pub fn new(n: usize, l: usize, axis: SeqAxis) -> Self {
        match axis {
            SeqAxis::Tokens => Self { groups: 1, group_rows: 0, batch: n, batch_rows: l, row_step: 1, len: l },
            SeqAxis::Frames { frames } => {
                assert!(
                    frames > 0 && n.is_multiple_of(frames),
                    "temporal attention: {n} frame rows is not a multiple of T = {frames}"
                );
                Self { groups: n / frames, group_rows: frames * l, batch: l, batch_rows: 1, row_step: l, len: frames }
            }
        }
    }

    /// Sequences in all: sequence g·batch + j.
    pub fn seqs(&self) -> usize {
        self.groups * self.batch
    }

    /// Every (group, head, offset of the block's first score row in the probability buffer): one
    /// batched GEMM each.
    pub fn blocks(&self, heads: usize) -> Vec<(usize, usize, usize)> {
        let (len, seqs) = (self.len, self.seqs());
        let mut v = Vec::with_capacity(heads * self.groups);
        for h in 0..heads {
            for g in 0..self.groups {
                v.push((g, h, (h * seqs + g * self.batch) * len * len));
            }
        }
        v
    }

    /// Columns `col .. col + dh` of the sequences of group `g` in a (rows, `width`) token buffer
    /// (q, k or v in the packed qkv buffer of width 3C; a head of the (rows, C) output).
    pub fn tokens(&self, width: usize, g: usize, col: usize, t: bool) -> Operand {
        Operand {
            off: g * self.group_rows * width + col,
            ld: self.row_step * width,
            stride: self.batch_rows * width,
            t,
        }
    }

    /// The (len × len) probability (or score-gradient) blocks from `off`.
    pub fn probs(&self, off: usize, t: bool) -> Operand {
        Operand { off, ld: self.len, stride: self.len * self.len, t }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::prelude::*;

    /// `C_b = alpha·op(A_b)·op(B_b) + beta·C_b`, column-major, from cuBLAS's definition of
    /// `cublasSgemmStridedBatched` (element (i, j) of a matrix with leading dimension ld at i + j·ld).
    fn host_gemm(cfg: &ColMajor, alpha: f32, a: &[f32], b: &[f32], beta: f32, c: &mut [f32]) {
        for p in 0..cfg.batch {
            let (a, b) = (&a[p * cfg.stride_a..], &b[p * cfg.stride_b..]);
            for j in 0..cfg.n {
                for i in 0..cfg.m {
                    let mut acc = 0.0f32;
                    for l in 0..cfg.k {
                        let x = if cfg.transa { a[l + i * cfg.lda] } else { a[i + l * cfg.lda] };
                        let y = if cfg.transb { b[j + l * cfg.ldb] } else { b[l + j * cfg.ldb] };
                        acc += x * y;
                    }
                    let o = &mut c[p * cfg.stride_c + i + j * cfg.ldc];
                    *o = alpha * acc + beta * *o;
                }
            }
        }
    }

    /// A row-major batched GEMM through [`ColMajor::of_row_major`] and [`host_gemm`], as
    /// `gpu::gemm_batched` hands it to cuBLAS.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        alpha: f32,
        a: (&[f32], Operand),
        b: (&[f32], Operand),
        beta: f32,
        c: (&mut [f32], usize, usize, usize),
        batch: usize,
    ) {
        let cfg = ColMajor::of_row_major(m, n, k, a.1, b.1, (c.2, c.3), batch);
        host_gemm(&cfg, alpha, &b.0[b.1.off..], &a.0[a.1.off..], beta, &mut c.0[c.1..]);
    }

    /// Attention (forward and the qkv gradient) the way `gpu::self_attention` runs it: the same
    /// plan, the same GEMM calls, the softmax and its backward written out.
    fn planned_attention(
        qkv: &[f32],
        go: &[f32],
        n: usize,
        l: usize,
        c: usize,
        heads: usize,
        axis: SeqAxis,
    ) -> (Vec<f32>, Vec<f32>) {
        let plan = SeqPlan::new(n, l, axis);
        let (len, dh, c3) = (plan.len, c / heads, 3 * c);
        let scale = 1.0 / (dh as f32).sqrt();
        let rows = heads * plan.seqs() * len;
        let mut p = vec![0.0f32; rows * len];
        let mut out = vec![0.0f32; n * l * c];
        for (g, h, poff) in plan.blocks(heads) {
            let (q, k) = (plan.tokens(c3, g, h * dh, false), plan.tokens(c3, g, c + h * dh, true));
            gemm(len, len, dh, scale, (qkv, q), (qkv, k), 0.0, (&mut p, poff, len, len * len), plan.batch);
        }
        for row in p.chunks_mut(len) {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let z: f32 = row.iter().map(|v| (v - m).exp()).sum();
            row.iter_mut().for_each(|v| *v = (*v - m).exp() / z);
        }
        for (g, h, poff) in plan.blocks(heads) {
            let o = plan.tokens(c, g, h * dh, false);
            let v = plan.tokens(c3, g, 2 * c + h * dh, false);
            gemm(
                len,
                dh,
                len,
                1.0,
                (&p, plan.probs(poff, false)),
                (qkv, v),
                0.0,
                (&mut out, o.off, o.ld, o.stride),
                plan.batch,
            );
        }
        // backward
        let mut ds = vec![0.0f32; rows * len];
        let mut gq = vec![0.0f32; n * l * c3];
        for (g, h, poff) in plan.blocks(heads) {
            let (dout, v) = (plan.tokens(c, g, h * dh, false), plan.tokens(c3, g, 2 * c + h * dh, true));
            gemm(len, len, dh, 1.0, (go, dout), (qkv, v), 0.0, (&mut ds, poff, len, len * len), plan.batch);
        }
        for (pr, dr) in p.chunks(len).zip(ds.chunks_mut(len)) {
            let dot: f32 = pr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
            pr.iter().zip(dr.iter_mut()).for_each(|(a, b)| *b = a * (*b - dot) * scale);
        }
        for (g, h, poff) in plan.blocks(heads) {
            let at = |col: usize| plan.tokens(c3, g, col + h * dh, false);
            let (dq, dk, dv) = (at(0), at(c), at(2 * c));
            let (k, q, dout) = (at(c), at(0), plan.tokens(c, g, h * dh, false));
            // dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO, each added into its third of the packed gradient
            for (s, t, src, from, to) in [(&ds, false, qkv, k, dq), (&ds, true, qkv, q, dk), (&p, true, go, dout, dv)] {
                let to = (&mut gq[..], to.off, to.ld, to.stride);
                gemm(len, dh, len, 1.0, (s, plan.probs(poff, t)), (src, from), 1.0, to, plan.batch);
            }
        }
        (out, gq)
    }

    /// The batched-GEMM plan of CUDA attention, run through cuBLAS's column-major definition on the
    /// host, gives the CPU attention's output and qkv gradient (within 1e-4·(1 + max), f32 sums in
    /// other orders): over the tokens of a frame (40 tokens, 4 heads) and over 4 frames of 3 videos
    /// (AIM's T-MSA). Exact agreement of every index; the kernels themselves are checked by
    /// `tests/gpu.rs` on a GPU.
    #[test]
    fn cuda_attention_plan_gives_the_cpu_attention() {
        let dev = Cpu::default();
        for (n, l, c, heads, axis) in [(3, 40, 32, 4, SeqAxis::Tokens), (12, 5, 16, 2, SeqAxis::Frames { frames: 4 })] {
            let qkv: Vec<f32> =
                crate::init::Init::seeded(1).normal(n * l * 3 * c, 1.0).into_iter().map(|v| v as f32).collect();
            let go: Vec<f32> =
                crate::init::Init::seeded(2).normal(n * l * c, 1.0).into_iter().map(|v| v as f32).collect();
            let x = dev.tensor_from_vec(qkv.clone(), (n, l, 3 * c));
            let y = crate::ops::self_attention(x.leaky_trace(), heads, axis, c);
            let cpu_out = y.as_vec();
            let r = dev.tensor_from_vec(go.clone(), (n, l, c));
            let cpu_grad = (y * r).sum::<Rank0, _>().backward().get(&x).as_vec();
            let (out, grad) = planned_attention(&qkv, &go, n, l, c, heads, axis);
            for (what, a, b) in [("output", &cpu_out, &out), ("qkv gradient", &cpu_grad, &grad)] {
                let tol = 1e-4 * (1.0 + a.iter().fold(0.0f32, |m, v| m.max(v.abs())));
                for (i, (u, v)) in a.iter().zip(b.iter()).enumerate() {
                    assert!((u - v).abs() <= tol, "{axis:?} {what}[{i}]: cpu {u} vs plan {v}");
                }
            }
        }
    }
}
