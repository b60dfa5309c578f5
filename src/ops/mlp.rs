//! Two linear layers with an activation between them, `fc2(act(fc1([ln](x))))` (`+ x` for a
//! residual branch), as one op: CLIP's MLP (`c_fc`, QuickGELU, `c_proj`) and AIM's adapters
//! (`D_fc1`, GELU, `D_fc2`).
//!
//! As separate ops, the hidden activations (4·C wide in CLIP's MLP) would be copied out of a
//! tensor twice (into the activation and into `fc2`) and once more for the activation's backward;
//! here they stay in this op's buffers. The backward keeps the input (for the LayerNorm, or for a
//! trainable `fc1`), two numbers per row for the LayerNorm, and the pre-activation; the
//! LayerNorm's output and the activation are recomputed when a weight gradient needs them.
//!
//! With small weights (the embedded benchmark's width 64: see [`tile_rows`]) and nothing traced,
//! or fc1 and fc2 frozen (a frozen backbone), the op runs over tiles of rows in parallel instead
//! of one stage over all rows after the other: each tile goes through the LayerNorm, fc1, the
//! activation and fc2 while its hidden block (256 × 4·C) stays in the core's L2 cache, and the
//! backward pass likewise computes `((gy·W2) ⊙ act'(pre))·W1` tile by tile. The hidden
//! activations and their gradient then live in per-thread scratch; only act'(pre) is kept, for
//! the backward pass. The same bits as over all rows (`tiled_mlp_gives_the_same_bits_as_untiled`).

use dfdx::prelude::*;
use rayon::prelude::*;

use super::activation::{
    act_and_slope, act_and_slope_to, act_backward_in_place, act_in_place, act_new, mul_assign, Act,
};
use super::layer_norm::{ln_backward, ln_forward, ln_forward_rows, ln_recompute, LayerNorm};
use super::linear::{
    affine_new, affine_residual, affine_tile, column_sums, input_grad_new, input_grad_tile, weight_grad, Linear,
};
use super::simd::{add_assign, add_assign_par, CHUNK};
use super::Rows;
use crate::device::{host, tensor, KitDevice, Real};

/// `[x +] fc2(act(fc1([ln](x))))` over the last axis of x; fc1: X → H, fc2: H → X. Gradients of
/// each part are those of [`super::layer_norm`], [`super::linear`] and [`super::activation`]
/// (checked against them and against finite differences below), for the trainable parameters
/// only.
pub fn mlp<S, X, H, E, D, T>(
    x: Tensor<S, E, D, T>,
    ln: Option<&LayerNorm<X, E, D>>,
    fc1: &Linear<X, H, E, D>,
    act: Act,
    fc2: &Linear<H, X, E, D>,
    residual: bool,
) -> Tensor<S, E, D, T>
where
    S: Rows<Feat = X>,
    X: Dim,
    H: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let tile = tile_rows(fc1.in_features(), fc1.out_features());
    mlp_tiled_by(x, ln, fc1, act, fc2, residual, tile)
}

/// [`mlp`] with row tiles of `tile` rows (the last one takes the remainder) where the op may tile
/// (see [`mlp`]); `usize::MAX` never tiles.
///
/// Tiles of more than 64 rows give the same bits as none: every output element is the same sum in
/// the same order, as gemm cuts a product's inner dimension into blocks chosen from that
/// dimension alone once a product has more than 64 rows (smaller products take other kernels:
/// one row a matrix-vector kernel, at most 256 outputs a dot-product kernel, at most 64 × 64
/// another blocking; `tiled_mlp_gives_the_same_bits_as_untiled` checks it).
pub(crate) fn mlp_tiled_by<S, X, H, E, D, T>(
    x: Tensor<S, E, D, T>,
    ln: Option<&LayerNorm<X, E, D>>,
    fc1: &Linear<X, H, E, D>,
    act: Act,
    fc2: &Linear<H, X, E, D>,
    residual: bool,
    tile: usize,
) -> Tensor<S, E, D, T>
where
    S: Rows<Feat = X>,
    X: Dim,
    H: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    assert!(tile > 64, "mlp: tiles of {tile} rows could change the results' bits");
    let shape = *x.shape();
    if D::KERNELS {
        // on a device whose kernels run each op (CUDA): the fused host op as its separate ops
        let (xs, tape) = x.split_tape();
        let h = xs.clone().put_tape(tape);
        let h = match ln {
            Some(ln) => super::layer_norm(h, ln),
            None => h,
        };
        let y = fc2.forward(super::activation(fc1.forward(h), act)).reshape_like(&shape);
        return if residual { super::add(y, xs) } else { y };
    }
    let (c, hd, rows) = (shape.feat().size(), fc1.out_features(), shape.rows());
    assert_eq!(fc1.in_features(), c, "mlp: fc1 takes {} features, x has {c}", fc1.in_features());
    assert_eq!((fc2.in_features(), fc2.out_features()), (hd, c), "mlp: fc2 must map {hd} features to {c}");
    let dev = x.device().clone();
    let traced = T::OWNS_TAPE;
    let (x, mut tape) = x.split_tape();
    let xv = host(&x);
    let (w1, b1) = (fc1.weight.host(), fc1.bias.as_ref().map(|b| b.host()));
    let (w2, b2) = (fc2.weight.host(), fc2.bias.as_ref().map(|b| b.host()));
    let (g_w1, g_b1) = (fc1.weight.grad_key(), fc1.bias.as_ref().and_then(|b| b.grad_key()));
    let (g_w2, g_b2) = (fc2.weight.grad_key(), fc2.bias.as_ref().and_then(|b| b.grad_key()));
    let fc_frozen = g_w1.is_none() && g_b1.is_none() && g_w2.is_none() && g_b2.is_none();

    // Row tiles when no weight gradient needs the hidden activations of all rows at once, and
    // there are two tiles at least (one tile would run its products on one thread).
    if rows >= tile.saturating_mul(2) && (!traced || fc_frozen) {
        let lnp = ln.map(|ln| (ln.weight.host(), ln.bias.host(), E::of(ln.eps)));
        let parts = Parts {
            c,
            hd,
            ln: lnp.as_ref().map(|(g, b, eps)| (&g[..], &b[..], *eps)),
            w1: &w1,
            b1: b1.as_deref().map(|b| &b[..]),
            act,
            w2: &w2,
            b2: b2.as_deref().map(|b| &b[..]),
        };
        let (y, slope, stats) = forward_tiled(&parts, &xv, residual, traced, tile);
        let y = tensor(&dev, y, shape);
        if traced {
            let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
            let (g_gamma, g_beta) = match ln {
                Some(ln) => (ln.weight.grad_key(), ln.bias.grad_key()),
                None => (None, None),
            };
            let norm = lnp.map(|(gamma, _, _)| (stats, gamma));
            let xv = norm.is_some().then_some(xv);
            tape.add_backward_op(move |grads| {
                let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
                let gh = input_grad_tiled(&gy, &slope, &w1, &w2, c, hd, tile);
                drop(slope);
                let norm = norm.as_ref().zip(xv.as_deref()).map(|((stats, gamma), xv)| (xv, &stats[..], &gamma[..]));
                let want = g_gamma.is_some() || g_beta.is_some();
                let mut params = None;
                dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                    params = ln_residual_backward(gx, &gy, &gh, residual, norm, c, want)
                })?;
                super::layer_norm::add_ln_param_grads(&dev, grads, g_gamma.as_ref(), g_beta.as_ref(), params)
            });
        }
        return y.put_tape(tape);
    }

    let norm = ln.map(|ln| {
        let (gamma, beta) = (ln.weight.host(), ln.bias.host());
        let (h, stats) = ln_forward(&xv, c, &gamma, &beta, E::of(ln.eps));
        (h, stats, gamma, beta)
    });
    let mut pre =
        affine_new(norm.as_ref().map_or(&xv[..], |n| &n.0[..]), &w1, b1.as_deref().map(|b| &b[..]), rows, c, hd);
    let norm = norm.map(|(_, stats, gamma, beta)| (stats, gamma, beta));
    // the activation: in place when nothing is traced, beside the pre-activation otherwise. When
    // fc2's weight is frozen, the backward needs only act'(pre): one pass computes act(pre) and
    // turns `pre` into act'(pre) in place (one sigmoid or erf per element, not one here and one in
    // the backward pass).
    let slope_kept = traced && !fc2.weight.trainable;
    let a = if slope_kept {
        // SAFETY: act_and_slope writes every element of each chunk of `a`.
        unsafe {
            super::written(rows * hd, |a| {
                a.par_chunks_mut(CHUNK).zip(pre.par_chunks_mut(CHUNK)).for_each(|(a, p)| act_and_slope(act, p, a))
            })
        }
    } else if traced {
        act_new(act, &pre)
    } else {
        pre.par_chunks_mut(CHUNK).for_each(|p| act_in_place(act, p));
        std::mem::take(&mut pre)
    };
    let b2 = b2.as_deref().map(|b| &b[..]);
    let y = if residual { affine_residual(&xv, &a, &w2, b2, hd, c) } else { affine_new(&a, &w2, b2, rows, hd, c) };
    drop(a);
    let y = tensor(&dev, y, shape);

    if traced {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let (g_gamma, g_beta) = match ln {
            Some(ln) => (ln.weight.grad_key(), ln.bias.grad_key()),
            None => (None, None),
        };
        // the input is needed by the LayerNorm's backward, or by fc1's weight gradient
        let xv = (norm.is_some() || g_w1.is_some()).then_some(xv);
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            // fc2
            if let Some(g) = &g_b2 {
                let s = column_sums(&gy, c);
                dev.update(grads.get_or_alloc_mut(g)?, |t| add_assign(t, &s))?;
            }
            // fc2's weight gradient needs act(pre): one pass rebuilds it and turns `pre` into
            // act'(pre) in place (one sigmoid or erf per element instead of two)
            let mut pre = pre;
            let slope = if slope_kept {
                true
            } else if let Some(g) = &g_w2 {
                // SAFETY: act_and_slope writes every element of each chunk of `a`.
                let a = unsafe {
                    super::written(rows * hd, |a| {
                        a.par_chunks_mut(CHUNK)
                            .zip(pre.par_chunks_mut(CHUNK))
                            .for_each(|(a, p)| act_and_slope(act, p, a))
                    })
                };
                dev.update(grads.get_or_alloc_mut(g)?, |t| weight_grad(t, &gy, &a, hd, c))?;
                true
            } else {
                false
            };
            // the activation: g ← (gy·W2) ⊙ act'(pre)
            let mut g = input_grad_new(&gy, &w2, hd, c);
            if slope {
                g.par_chunks_mut(CHUNK).zip(pre.par_chunks(CHUNK)).for_each(|(g, d)| mul_assign(g, d));
            } else {
                g.par_chunks_mut(CHUNK).zip(pre.par_chunks(CHUNK)).for_each(|(g, p)| act_backward_in_place(act, p, g));
            }
            drop(pre);
            // fc1
            if let Some(gb) = &g_b1 {
                let s = column_sums(&g, hd);
                dev.update(grads.get_or_alloc_mut(gb)?, |t| add_assign(t, &s))?;
            }
            if let Some(gw) = &g_w1 {
                let xv = xv.as_ref().expect("input kept for fc1's weight gradient");
                let h = match &norm {
                    Some((stats, gamma, beta)) => ln_recompute(xv, c, gamma, beta, stats),
                    None => xv.clone(),
                };
                dev.update(grads.get_or_alloc_mut(gw)?, |t| weight_grad(t, &g, &h, c, hd))?;
            }
            let gh = input_grad_new(&g, &w1, c, hd);
            drop(g);
            // the LayerNorm and the residual
            let norm = norm.as_ref().zip(xv.as_deref()).map(|((stats, gamma, _), xv)| (xv, &stats[..], &gamma[..]));
            let want = g_gamma.is_some() || g_beta.is_some();
            let mut params = None;
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                params = ln_residual_backward(gx, &gy, &gh, residual, norm, c, want)
            })?;
            super::layer_norm::add_ln_param_grads(&dev, grads, g_gamma.as_ref(), g_beta.as_ref(), params)
        });
    }
    y.put_tape(tape)
}

/// The backward pass of the residual and the LayerNorm: `gx += gy` for a residual branch, then
/// `gx += ln'(gh)` (`gh`: the gradient at the LayerNorm's output; `norm`: its input, statistics and
/// γ) or `gx += gh` without one. Returns the γ, β gradients when `want_params`.
fn ln_residual_backward<E: Real>(
    gx: &mut [E],
    gy: &[E],
    gh: &[E],
    residual: bool,
    norm: Option<(&[E], &[E], &[E])>,
    c: usize,
    want_params: bool,
) -> Option<(Vec<E>, Vec<E>)> {
    if residual {
        add_assign_par(gx, gy);
    }
    match norm {
        Some((xv, stats, gamma)) => ln_backward(xv, c, stats, gamma, gh, gx, want_params),
        None => {
            add_assign_par(gx, gh);
            None
        }
    }
}

/// Rows per tile, or `usize::MAX` (no tiles), for fc1: c → hd.
///
/// Measured on this machine (2 cores, 2 MiB L2 each; the op alone with a LayerNorm and a
/// residual, CPU time, 2 threads): at c = 64, hd = 256 (the embedded benchmark's small preset,
/// 16 640 rows) tiles of 256 rows take the evaluation from 12.5 to 9.9 ms and the frozen training
/// pass from 25.5 to 22.7 ms (128, 512 and 1024 rows: within 1 ms of that; 64: slower than none);
/// at c = 128, hd = 512 they save about 10 % and 3 %. From c = 256, hd = 1024 on they lose
/// (30 → 32.5 ms; ViT-B/16's 768 × 3072: 137 → 150 ms): gemm then packs a weight matrix larger
/// than L2 once per tile, and one product over all rows already runs near the GEMM peak. The
/// bounds on c and hd also bound each thread's scratch (under 3 MiB of f32).
///
/// In the whole small-preset step (the bench, 2 threads, interleaved against the untiled build,
/// nine rounds of three repetitions): on a quiet machine 0.91 and 0.93 of the time before in CPU
/// time, 0.92 and 0.93 on the wall clock, evaluation 0.96 to 1.00; peak memory 202 → 186 MiB.
/// Measured earlier with other work on the machine, the same comparison had ranged from 0.96 to
/// 1.09 of before.
pub(crate) fn tile_rows(c: usize, hd: usize) -> usize {
    if c <= 512 && hd <= 512 && c * hd <= 1 << 16 {
        256
    } else {
        usize::MAX
    }
}

/// The row ranges of the tiles: `tile` rows each, the last one also takes the remainder (so no
/// tile is short: gemm treats products of one row, or of at most 256 outputs, differently).
pub(super) fn tiles(rows: usize, tile: usize) -> Vec<std::ops::Range<usize>> {
    let n = (rows / tile.max(1)).max(1);
    (0..n).map(|i| i * tile..if i + 1 == n { rows } else { (i + 1) * tile }).collect()
}

/// Cuts `buf` (rows of `width` values) into the row ranges of `tiles`, in order.
pub(crate) fn cut<'a, T>(mut buf: &'a mut [T], width: usize, tiles: &[std::ops::Range<usize>]) -> Vec<&'a mut [T]> {
    tiles
        .iter()
        .map(|r| {
            let (head, tail) = std::mem::take(&mut buf).split_at_mut(r.len() * width);
            buf = tail;
            head
        })
        .collect()
}

/// The host values of the op's parts: widths, (γ, β, eps), fc1, the activation, fc2.
struct Parts<'a, E> {
    c: usize,
    hd: usize,
    ln: Option<(&'a [E], &'a [E], E)>,
    w1: &'a [E],
    b1: Option<&'a [E]>,
    act: Act,
    w2: &'a [E],
    b2: Option<&'a [E]>,
}

/// One worker's buffers for one tile at a time: the LayerNorm's output and statistics, the
/// pre-activation and the activation (or, in the backward pass, the hidden gradient). The
/// attention's tiles (`attention::forward_tiled`) use them for q;k;v and the attention output,
/// and `scores` for one score matrix.
#[derive(Default)]
pub(crate) struct Scratch<E> {
    pub h: Vec<E>,
    pub stats: Vec<E>,
    pub pre: Vec<E>,
    pub a: Vec<E>,
    pub scores: Vec<E>,
}

thread_local! {
    /// This thread's [`Scratch`] (of whichever element type it last served), kept across calls:
    /// with buffers allocated per rayon task (`for_each_init`), glibc mapped and unmapped blocks
    /// of this size over and over, and each unmapping interrupted the other core to flush its TLB
    /// (7 % of a small-preset step's profile at 2 threads, in `native_write_msr` and
    /// `smp_call_function_many_cond`).
    static SCRATCH: std::cell::RefCell<Option<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's scratch buffers. `f` must not call back into rayon (a stolen tile
/// would find the buffers borrowed); the tiles' products run on the calling thread.
pub(crate) fn with_scratch<E: Real, R>(f: impl FnOnce(&mut Scratch<E>) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut slot = cell.borrow_mut();
        if !slot.as_ref().is_some_and(|b| b.is::<Scratch<E>>()) {
            *slot = Some(Box::new(Scratch::<E>::default()));
        }
        f(slot.as_mut().and_then(|b| b.downcast_mut()).expect("scratch of this element type"))
    })
}

/// The forward pass over row tiles, in parallel: y, and when `keep` (traced, fc1 and fc2
/// frozen) act'(pre) (rows, H) and the LayerNorm's statistics (two per row) for the backward
/// pass; the hidden activations themselves live in per-worker scratch only.
fn forward_tiled<E: Real>(
    p: &Parts<'_, E>,
    xv: &[E],
    residual: bool,
    keep: bool,
    tile: usize,
) -> (Vec<E>, Vec<E>, Vec<E>) {
    let (c, hd) = (p.c, p.hd);
    let rows = xv.len() / c;
    let ranges = tiles(rows, tile);
    let n_slope = if keep { rows * hd } else { 0 };
    let n_stats = if keep && p.ln.is_some() { 2 * rows } else { 0 };
    let (mut y, mut slope, mut stats) =
        (Vec::with_capacity(rows * c), Vec::with_capacity(n_slope), Vec::with_capacity(n_stats));
    let ys = cut(&mut y.spare_capacity_mut()[..rows * c], c, &ranges);
    let slopes = cut(&mut slope.spare_capacity_mut()[..n_slope], if keep { hd } else { 0 }, &ranges);
    let statss = cut(&mut stats.spare_capacity_mut()[..n_stats], if n_stats > 0 { 2 } else { 0 }, &ranges);
    ys.into_par_iter().zip(slopes).zip(statss).zip(ranges.par_iter()).for_each(|(((y, slope), stats), r)| {
        with_scratch(|s: &mut Scratch<E>| {
            let n = r.len();
            let x = &xv[r.start * c..r.end * c];
            let h: &[E] = match p.ln {
                Some((gamma, beta, eps)) => {
                    let Scratch { h, stats: st, .. } = s;
                    let st: &mut [std::mem::MaybeUninit<E>] = if keep {
                        stats
                    } else {
                        // untraced: the statistics are written to scratch and not read again
                        super::uninit_scratch(st, 2 * n)
                    };
                    // SAFETY: ln_forward_rows writes every row (c values) of its output.
                    unsafe { super::written_into(h, n * c, |h| ln_forward_rows(x, c, gamma, beta, eps, h, st)) }
                }
                None => x,
            };
            // SAFETY: the product with accumulate = false, or after the bias rows, writes every element.
            let pre =
                unsafe { super::written_into(&mut s.pre, n * hd, |pre| affine_tile(pre, None, h, p.w1, p.b1, c, hd)) };
            let a: &[E] = if keep {
                // SAFETY: act_and_slope_to writes every element of `a` (and of `slope`).
                unsafe { super::written_into(&mut s.a, n * hd, |a| act_and_slope_to(p.act, pre, a, slope)) }
            } else {
                act_in_place(p.act, pre);
                pre
            };
            affine_tile(y, residual.then_some(x), a, p.w2, p.b2, hd, c);
        })
    });
    // SAFETY: the tiles cover all rows, and each wrote every element of its rows of y (the product
    // after the first pass), of slope (act_and_slope_to) and of stats (ln_forward_rows).
    unsafe {
        y.set_len(rows * c);
        slope.set_len(n_slope);
        stats.set_len(n_stats);
    }
    (y, slope, stats)
}

/// The backward pass through fc2, the activation and fc1 (frozen) over row tiles:
/// `gh = ((gy·W2) ⊙ act'(pre))·W1` (rows, C), with the hidden gradient in per-worker scratch.
fn input_grad_tiled<E: Real>(gy: &[E], slope: &[E], w1: &[E], w2: &[E], c: usize, hd: usize, tile: usize) -> Vec<E> {
    let rows = gy.len() / c;
    let ranges = tiles(rows, tile);
    // SAFETY: the tiles cover all rows, and each tile's product (accumulate = false) writes every
    // element of its rows.
    unsafe {
        super::written(rows * c, |gh| {
            cut(gh, c, &ranges).into_par_iter().zip(ranges.par_iter()).for_each(|(gh, r)| {
                with_scratch(|s: &mut Scratch<E>| {
                    let gy = &gy[r.start * c..r.end * c];
                    // SAFETY: the product with accumulate = false writes every element.
                    let g = super::written_into(&mut s.a, r.len() * hd, |g| input_grad_tile(g, gy, w2, hd, c));
                    mul_assign(g, &slope[r.start * hd..r.end * hd]);
                    input_grad_tile(gh, g, w1, c, hd);
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;
    use crate::ops::{activation, layer_norm::layer_norm, linear};
    use crate::param::Param;

    type Dev = Cpu;
    const C: usize = 5;
    const H: usize = 7;

    type Parts = (LayerNorm<Const<C>, f64, Dev>, Linear<Const<C>, usize, f64, Dev>, Linear<usize, Const<C>, f64, Dev>);

    fn parts(dev: &Dev) -> Parts {
        let p = |seed, shape: (usize, usize), scale: f64| {
            rand_vec(seed, shape.0 * shape.1).iter().map(|v| v * scale).collect::<Vec<_>>()
        };
        let ln = LayerNorm {
            weight: Param::new(
                dev.tensor_from_vec(p(1, (1, C), 0.3).iter().map(|v| 1.0 + v).collect(), (Const::<C>,)),
                true,
            ),
            bias: Param::new(dev.tensor_from_vec(p(2, (1, C), 1.0), (Const::<C>,)), true),
            eps: 1e-5,
        };
        let fc1 = Linear {
            weight: Param::new(dev.tensor_from_vec(p(3, (H, C), 1.0), (H, Const::<C>)), true),
            bias: Some(Param::new(dev.tensor_from_vec(p(4, (1, H), 1.0), (H,)), true)),
        };
        let fc2 = Linear {
            weight: Param::new(dev.tensor_from_vec(p(5, (C, H), 1.0), (Const::<C>, H)), true),
            bias: Some(Param::new(dev.tensor_from_vec(p(6, (1, C), 1.0), (Const::<C>,)), true)),
        };
        (ln, fc1, fc2)
    }

    /// The same computation from the separate ops: `[x +] fc2(act(fc1([ln](x))))`.
    fn separate<T: Tape<f64, Dev> + Merge<NoneTape>>(
        x: Tensor<(usize, usize, Const<C>), f64, Dev, T>,
        ln: Option<&LayerNorm<Const<C>, f64, Dev>>,
        fc1: &Linear<Const<C>, usize, f64, Dev>,
        act: Act,
        fc2: &Linear<usize, Const<C>, f64, Dev>,
        residual: bool,
    ) -> Tensor<(usize, usize, Const<C>), f64, Dev, T> {
        let (x, tape) = x.split_tape();
        let h = x.clone().put_tape(tape);
        let h = match ln {
            Some(ln) => layer_norm(h, ln),
            None => h,
        };
        let y = linear(
            activation::activation(linear(h, &fc1.weight, fc1.bias.as_ref()), act),
            &fc2.weight,
            fc2.bias.as_ref(),
        );
        if residual {
            crate::ops::add(y, x)
        } else {
            y
        }
    }

    /// Forward values equal the separate ops', and every gradient (x, γ, β, both weights and
    /// biases) matches f64 central differences, for both activations, with and without the
    /// LayerNorm and the residual.
    #[rstest::rstest]
    #[case(Act::QuickGelu, true, true)]
    #[case(Act::Gelu, false, false)]
    #[case(Act::Gelu, true, false)]
    #[case(Act::QuickGelu, false, true)]
    fn mlp_matches_the_separate_ops_and_finite_differences(
        #[case] act: Act,
        #[case] with_ln: bool,
        #[case] residual: bool,
    ) {
        let dev = Dev::default();
        let (ln, fc1, fc2) = parts(&dev);
        let ln = with_ln.then_some(&ln);
        let shape = (2usize, 3usize, Const::<C>);
        let x = dev.tensor_from_vec(rand_vec(7, 2 * 3 * C).iter().map(|v| 2.0 * v).collect(), shape);
        let fused = mlp(x.clone(), ln, &fc1, act, &fc2, residual).as_vec();
        let want = separate(x.clone(), ln, &fc1, act, &fc2, residual).as_vec();
        assert!(fused.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12), "forward differs from the separate ops");

        let r = rand_vec(8, 2 * 3 * C);
        let g = weighted_sum(mlp(x.leaky_trace(), ln, &fc1, act, &fc2, residual), &r).backward();
        let loss = |ln: Option<&LayerNorm<Const<C>, f64, Dev>>,
                    fc1: &Linear<Const<C>, usize, f64, Dev>,
                    fc2: &Linear<usize, Const<C>, f64, Dev>,
                    xv: &[f64]| {
            weighted_sum_value(&mlp(dev.tensor_from_vec(xv.to_vec(), shape), ln, fc1, act, fc2, residual), &r)
        };
        let xv = x.as_vec();
        assert_close("dx", &g.get(&x).as_vec(), &numeric_grad(&xv, |v| loss(ln, &fc1, &fc2, v)));
        assert_close(
            "dW1",
            &g.get(&fc1.weight.value).as_vec(),
            &numeric_grad(&fc1.weight.to_vec(), |v| {
                let mut f = fc1.clone();
                f.weight.set(v);
                loss(ln, &f, &fc2, &xv)
            }),
        );
        assert_close(
            "db1",
            &g.get(&fc1.bias.as_ref().unwrap().value).as_vec(),
            &numeric_grad(&fc1.bias.as_ref().unwrap().to_vec(), |v| {
                let mut f = fc1.clone();
                f.bias.as_mut().unwrap().set(v);
                loss(ln, &f, &fc2, &xv)
            }),
        );
        assert_close(
            "dW2",
            &g.get(&fc2.weight.value).as_vec(),
            &numeric_grad(&fc2.weight.to_vec(), |v| {
                let mut f = fc2.clone();
                f.weight.set(v);
                loss(ln, &fc1, &f, &xv)
            }),
        );
        assert_close(
            "db2",
            &g.get(&fc2.bias.as_ref().unwrap().value).as_vec(),
            &numeric_grad(&fc2.bias.as_ref().unwrap().to_vec(), |v| {
                let mut f = fc2.clone();
                f.bias.as_mut().unwrap().set(v);
                loss(ln, &fc1, &f, &xv)
            }),
        );
        if let Some(ln) = ln {
            assert_close(
                "dγ",
                &g.get(&ln.weight.value).as_vec(),
                &numeric_grad(&ln.weight.to_vec(), |v| {
                    let mut l = ln.clone();
                    l.weight.set(v);
                    loss(Some(&l), &fc1, &fc2, &xv)
                }),
            );
            assert_close(
                "dβ",
                &g.get(&ln.bias.value).as_vec(),
                &numeric_grad(&ln.bias.to_vec(), |v| {
                    let mut l = ln.clone();
                    l.bias.set(v);
                    loss(Some(&l), &fc1, &fc2, &xv)
                }),
            );
        }
    }

    /// With every weight frozen, no weight-gradient product runs and no parameter gets a gradient
    /// entry; the input gradient equals the all-trained one (which has no act'(pre) kept from the
    /// forward pass), for both activations.
    #[rstest::rstest]
    fn frozen_mlp_computes_the_input_gradient_only(#[values(Act::QuickGelu, Act::Gelu)] act: Act) {
        let dev = Dev::default();
        let (mut ln, mut fc1, mut fc2) = parts(&dev);
        let x = dev.tensor_from_vec(rand_vec(7, 2 * 3 * C), (2usize, 3usize, Const::<C>));
        let r = rand_vec(8, 2 * 3 * C);
        let trained = weighted_sum(mlp(x.leaky_trace(), Some(&ln), &fc1, act, &fc2, true), &r).backward();
        ln.set_trainable(false);
        fc1.set_trainable(false);
        fc2.set_trainable(false);
        let before = crate::ops::stats::weight_grad_products();
        let g = weighted_sum(mlp(x.leaky_trace(), Some(&ln), &fc1, act, &fc2, true), &r).backward();
        assert_eq!(crate::ops::stats::weight_grad_products(), before);
        assert!(!crate::testing::has_grad(&g, &fc1.weight.value));
        assert!(!crate::testing::has_grad(&g, &fc2.weight.value));
        assert!(!crate::testing::has_grad(&g, &ln.weight.value));
        let (a, b) = (g.get(&x).as_vec(), trained.get(&x).as_vec());
        assert!(a.iter().zip(&b).all(|(u, v)| (u - v).abs() < 1e-12));
    }

    type Parts32 = (LayerNorm<usize, f32, Dev>, Linear<usize, usize, f32, Dev>, Linear<usize, usize, f32, Dev>);

    /// f32 parts of widths c → h → c with fc1 and fc2 frozen, the LayerNorm trainable or not.
    fn frozen_parts32(dev: &Dev, c: usize, h: usize, ln_trainable: bool) -> Parts32 {
        let p = |seed, n: usize, scale: f64| rand_vec(seed, n).iter().map(|v| (v * scale) as f32).collect::<Vec<_>>();
        let gamma = p(1, c, 0.3).iter().map(|v| 1.0 + v).collect();
        let ln = LayerNorm {
            weight: Param::new(dev.tensor_from_vec(gamma, (c,)), ln_trainable),
            bias: Param::new(dev.tensor_from_vec(p(2, c, 1.0), (c,)), ln_trainable),
            eps: 1e-5,
        };
        let (s1, s2) = (1.0 / (c as f64).sqrt(), 1.0 / (h as f64).sqrt());
        let fc1 = Linear {
            weight: Param::new(dev.tensor_from_vec(p(3, h * c, s1), (h, c)), false),
            bias: Some(Param::new(dev.tensor_from_vec(p(4, h, 1.0), (h,)), false)),
        };
        let fc2 = Linear {
            weight: Param::new(dev.tensor_from_vec(p(5, c * h, s2), (c, h)), false),
            bias: Some(Param::new(dev.tensor_from_vec(p(6, c, 1.0), (c,)), false)),
        };
        (ln, fc1, fc2)
    }

    /// 222 rows in tiles of 70 are cut into 70, 70 and 82 rows: no short tile at the end (gemm
    /// takes other kernels for one row or for at most 256 outputs).
    #[test]
    fn the_last_tile_takes_the_remainder() {
        assert_eq!(tiles(222, 70), vec![0..70, 70..140, 140..222]);
        assert_eq!(tiles(100, 70), vec![0..100]);
        assert_eq!(tiles(16640, 256).len(), 65);
    }

    /// The row-tiled path gives the same bits as the untiled one (which computed the committed
    /// results), in f32: the output untraced (evaluation), and the output, the input gradient and
    /// the LayerNorm's parameter gradients with fc1 and fc2 frozen (a frozen backbone). 222 rows
    /// in tiles of 70 (not a divisor); H = 600 makes gemm cut the sums over H into blocks, which
    /// depend on H only, not on the number of rows.
    #[rstest::rstest]
    #[case(Act::QuickGelu, 96, true, true, false)]
    #[case(Act::QuickGelu, 96, true, true, true)]
    #[case(Act::Gelu, 600, true, false, true)]
    #[case(Act::Gelu, 40, false, true, false)]
    fn tiled_mlp_gives_the_same_bits_as_untiled(
        #[case] act: Act,
        #[case] h: usize,
        #[case] with_ln: bool,
        #[case] residual: bool,
        #[case] ln_trainable: bool,
    ) {
        let dev = Dev::default();
        let c = 32;
        let (ln, fc1, fc2) = frozen_parts32(&dev, c, h, ln_trainable);
        let ln = with_ln.then_some(&ln);
        let shape = (3usize, 74usize, c);
        let x = dev.tensor_from_vec(rand_vec(7, 222 * c).iter().map(|v| 2.0 * *v as f32).collect(), shape);
        let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
        let run = |tile: usize| bits(mlp_tiled_by(x.clone(), ln, &fc1, act, &fc2, residual, tile).as_vec());
        assert_eq!(run(70), run(usize::MAX), "evaluation output");

        let r = dev.tensor_from_vec(rand_vec(8, 222 * c).iter().map(|v| *v as f32).collect(), shape);
        let train = |tile: usize| {
            let y = mlp_tiled_by(x.leaky_trace(), ln, &fc1, act, &fc2, residual, tile);
            let yv = y.as_vec();
            let g = (y * r.clone()).sum::<Rank0, _>().backward();
            let mut out = vec![bits(yv), bits(g.get(&x).as_vec())];
            if let (Some(ln), true) = (ln, ln_trainable) {
                out.push(bits(g.get(&ln.weight.value).as_vec()));
                out.push(bits(g.get(&ln.bias.value).as_vec()));
            }
            out
        };
        let (tiled, untiled) = (train(70), train(usize::MAX));
        for (what, (a, b)) in ["output", "dx", "dγ", "dβ"].iter().zip(tiled.iter().zip(&untiled)) {
            assert_eq!(a, b, "training: {what}");
        }
    }
}
