//! Token bookkeeping with correct gradients: building the token sequence (CLS + patches +
//! embeddings), reading the CLS token or the patch tokens out of it, adding an adapter's output to
//! the patches only, and shifting CLS channels across frames.
//!
//! A token tensor is (N, L, X) with N = B·T frame rows and token 0 = CLS. These ops copy instead of
//! using dfdx `slice`: dfdx 0.13's CPU `slice` backward assigns its gradient where it must add it,
//! which silently drops the gradient from one of two readers of the same tensor (a CLS/patch split
//! is exactly that). Here every backward accumulates.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::simd::add_assign;
use crate::device::{host, tensor, KitDevice, Real};
use crate::param::Param;

type Tok<X, E, D, T> = Tensor<(usize, usize, X), E, D, T>;

/// The single-input token ops, as a device with its own kernels runs them (`ops/cuda/tokens.cu`) on
/// (N, L, C) tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOp {
    /// [`cls_tokens`].
    Cls { n: usize, l: usize, c: usize },
    /// [`patch_tokens`].
    Patches { n: usize, l: usize, c: usize },
    /// [`temporal_shift`]: per channel, the frame offset it reads (0: unshifted), for the first
    /// `tokens` tokens.
    Shift { n: usize, l: usize, c: usize, frames: usize, tokens: usize, dt: Vec<i32> },
    /// [`average_cls`].
    AverageCls { n: usize, l: usize, c: usize, frames: usize },
}

/// The CLS token of every row: (N, L, X) → (N, X).
pub fn cls_tokens<X: Dim, E: Real, D: KitDevice<E>, T: Tape<E, D>>(x: Tok<X, E, D, T>) -> Tensor<(usize, X), E, D, T> {
    let (n, l, xd) = *x.shape();
    let c = xd.size();
    select(
        x,
        (n, xd),
        TokenOp::Cls { n, l, c },
        move |src: &[E], dst: &mut [E]| {
            for r in 0..n {
                dst[r * c..(r + 1) * c].copy_from_slice(&src[r * l * c..r * l * c + c]);
            }
        },
        move |g: &[E], gx: &mut [E]| {
            for r in 0..n {
                gx[r * l * c..r * l * c + c].iter_mut().zip(&g[r * c..(r + 1) * c]).for_each(|(a, b)| *a += *b);
            }
        },
    )
}

/// The patch tokens of every row: (N, L, X) → (N, L − 1, X).
pub fn patch_tokens<X: Dim, E: Real, D: KitDevice<E>, T: Tape<E, D>>(x: Tok<X, E, D, T>) -> Tok<X, E, D, T> {
    let (n, l, xd) = *x.shape();
    let c = xd.size();
    select(
        x,
        (n, l - 1, xd),
        TokenOp::Patches { n, l, c },
        move |src: &[E], dst: &mut [E]| copy_patch_rows(dst, src, l, c),
        move |g: &[E], gx: &mut [E]| add_to_patch_rows(gx, g, l, c),
    )
}

/// `p = x[:, 1:, :]` on host rows: p (N, L − 1, c), x (N, L, c).
pub(crate) fn copy_patch_rows<E: Real>(p: &mut [E], x: &[E], l: usize, c: usize) {
    p.par_chunks_mut((l - 1) * c).enumerate().for_each(|(r, d)| d.copy_from_slice(&x[r * l * c + c..(r + 1) * l * c]));
}

/// `x[:, 1:, :] += p` on host rows: x (N, L, c), p (N, L − 1, c).
pub(crate) fn add_to_patch_rows<E: Real>(x: &mut [E], p: &[E], l: usize, c: usize) {
    let row = (l - 1) * c;
    x.par_chunks_mut(l * c).enumerate().for_each(|(r, d)| add_assign(&mut d[c..], &p[r * row..(r + 1) * row]));
}

/// `p += x[:, 1:, :]` on host rows: p (N, L − 1, c), x (N, L, c).
pub(crate) fn add_patch_rows_of<E: Real>(p: &mut [E], x: &[E], l: usize, c: usize) {
    p.par_chunks_mut((l - 1) * c).enumerate().for_each(|(r, d)| add_assign(d, &x[r * l * c + c..(r + 1) * l * c]));
}

/// A gather-like op: `y = copy(x)`, `gx += scatter(gy)`.
fn select<S: Shape, S2: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    out_shape: S2,
    op: TokenOp,
    fwd: impl Fn(&[E], &mut [E]),
    bwd: impl Fn(&[E], &mut [E]) + 'static,
) -> Tensor<S2, E, D, T> {
    let x = match D::k_tokens(x, out_shape, &op) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let mut y = vec![E::zero(); out_shape.num_elements()];
    fwd(&host(&x), &mut y);
    let y = tensor(&dev, y, out_shape);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            dev.update(grads.get_or_alloc_mut(&xg)?, |gx| bwd(&gy, gx))
        });
    }
    y.put_tape(tape)
}

/// `y = x` with `delta` added to the patch tokens (token 0, CLS, untouched):
/// (N, L, X) + (N, L − 1, X) → (N, L, X). ST-Adapter's residual `x[:, 1:, :] += adapter(x)`.
/// The output carries `delta`'s tape (the adapter branch), merged with `x`'s.
pub fn add_to_patches<X, E, D, TX, TD>(x: Tok<X, E, D, TX>, delta: Tok<X, E, D, TD>) -> Tok<X, E, D, TD>
where
    X: Dim,
    E: Real,
    D: KitDevice<E>,
    TX: Tape<E, D>,
    TD: Tape<E, D> + Merge<TX>,
{
    let (n, l, xd) = *x.shape();
    let c = xd.size();
    assert_eq!(delta.shape().concrete(), [n, l - 1, c], "add_to_patches: delta must be (N, L-1, X)");
    let (x, delta) = match D::k_add_to_patches(x, delta) {
        Ok(y) => return y,
        Err(xd) => xd,
    };
    let dev = x.device().clone();
    let (x, tx) = x.split_tape();
    let (delta, td) = delta.split_tape();
    let mut tape = td.merge(tx);
    let mut y = host(&x);
    add_to_patch_rows(&mut y, &host(&delta), l, c);
    let y = tensor(&dev, y, (n, l, xd));
    if TD::OWNS_TAPE {
        let (xg, dg, yg) = (x.ghost(), delta.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            dev.update(grads.get_or_alloc_mut(&xg)?, |gx| super::simd::add_assign_par(gx, &gy))?;
            dev.update(grads.get_or_alloc_mut(&dg)?, |gd| add_patch_rows_of(gd, &gy, l, c))
        });
    }
    y.put_tape(tape)
}

/// Builds the token sequence of every frame: `[class_embedding; patches] + positional_embedding`
/// (+ `temporal_embedding[t]` on every token of frame t, AIM; on the patches only when
/// `temporal_on_cls` is false, TimeSformer). (N, P, C) → (N, 1 + P, C).
///
/// Gradients flow to the patches (when traced) and to each trainable embedding.
pub fn embed_tokens<X, E, D, T>(
    patches: Tok<X, E, D, T>,
    class_embedding: &Param<(X,), E, D>,
    positional_embedding: &Param<(usize, X), E, D>,
    temporal_embedding: Option<&Param<(usize, X), E, D>>,
    temporal_on_cls: bool,
) -> Tok<X, E, D, T>
where
    X: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let (n, p, xd) = *patches.shape();
    let (c, l) = (xd.size(), p + 1);
    assert_eq!(
        positional_embedding.value.shape().0,
        l,
        "positional_embedding has {} rows for {l} tokens",
        positional_embedding.value.shape().0
    );
    let frames = temporal_embedding.map_or(1, |t| t.value.shape().0);
    assert_eq!(n % frames, 0, "temporal_embedding for {frames} frames on {n} frame rows");
    let patches =
        match D::k_embed_tokens(patches, class_embedding, positional_embedding, temporal_embedding, temporal_on_cls) {
            Ok(y) => return y,
            Err(patches) => patches,
        };
    let dev = patches.device().clone();
    let (patches, mut tape) = patches.split_tape();

    let mut y = vec![E::zero(); n * l * c];
    {
        let pv = host(&patches);
        let cls = class_embedding.host();
        let pos = positional_embedding.host();
        let tem = temporal_embedding.map(|t| t.host());
        y.par_chunks_mut(l * c).enumerate().for_each(|(r, yr)| {
            yr[..c].copy_from_slice(&cls);
            yr[c..].copy_from_slice(&pv[r * p * c..(r + 1) * p * c]);
            yr.iter_mut().zip(pos.iter()).for_each(|(a, b)| *a += *b);
            if let Some(tem) = &tem {
                let te = &tem[(r % frames) * c..(r % frames + 1) * c];
                let skip = if temporal_on_cls { 0 } else { 1 };
                yr.chunks_exact_mut(c).skip(skip).for_each(|tok| tok.iter_mut().zip(te).for_each(|(a, b)| *a += *b));
            }
        });
    }
    let y = tensor(&dev, y, (n, l, xd));

    if T::OWNS_TAPE {
        let (pg, yg) = (patches.ghost(), y.ghost());
        let cls_g = class_embedding.trainable.then(|| class_embedding.value.ghost());
        let pos_g = positional_embedding.trainable.then(|| positional_embedding.value.ghost());
        let tem_g = temporal_embedding.filter(|t| t.trainable).map(|t| t.value.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            dev.update(grads.get_or_alloc_mut(&pg)?, |gp| {
                gp.par_chunks_mut(p * c).enumerate().for_each(|(r, d)| {
                    d.iter_mut().zip(&gy[r * l * c + c..(r + 1) * l * c]).for_each(|(a, b)| *a += *b)
                })
            })?;
            // Σ over frame rows of the whole (L, C) block
            let per_token: Vec<E> = gy.chunks_exact(l * c).fold(vec![E::zero(); l * c], |mut a, r| {
                a.iter_mut().zip(r).for_each(|(u, v)| *u += *v);
                a
            });
            if let Some(g) = &cls_g {
                dev.update(grads.get_or_alloc_mut(g)?, |d| {
                    d.iter_mut().zip(&per_token[..c]).for_each(|(a, b)| *a += *b)
                })?;
            }
            if let Some(g) = &pos_g {
                dev.update(grads.get_or_alloc_mut(g)?, |d| d.iter_mut().zip(&per_token).for_each(|(a, b)| *a += *b))?;
            }
            if let Some(g) = &tem_g {
                let mut dt = vec![E::zero(); frames * c];
                for (r, yr) in gy.chunks_exact(l * c).enumerate() {
                    let d = &mut dt[(r % frames) * c..(r % frames + 1) * c];
                    yr.chunks_exact(c)
                        .skip(if temporal_on_cls { 0 } else { 1 })
                        .for_each(|tok| d.iter_mut().zip(tok).for_each(|(a, b)| *a += *b));
                }
                dev.update(grads.get_or_alloc_mut(g)?, |d| d.iter_mut().zip(&dt).for_each(|(a, b)| *a += *b))?;
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

// ANCHOR: cls_shift
/// Shifts channels of the CLS token across adjacent frames (TSM-style, zero at the clip ends):
/// for frame t, CLS channels `[0, from_next)` take frame t+1's values, channels
/// `[from_next, from_next + from_prev)` take frame t−1's, the rest and all patch tokens stay.
/// No parameters, no multiply-adds. (MST-Adapter's [CLS] token shift.)
pub fn cls_shift<X: Dim, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tok<X, E, D, T>,
    frames: usize,
    from_next: usize,
    from_prev: usize,
) -> Tok<X, E, D, T> {
    temporal_shift(
        x,
        frames,
        &[Shift { start: 0, len: from_next, dt: 1 }, Shift { start: from_next, len: from_prev, dt: -1 }],
        true,
    )
}
// ANCHOR_END: cls_shift

/// A block of channels moved across frames: channels `[start, start + len)` of frame t take the
/// values of frame t + dt (zero where t + dt is outside the clip).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shift {
    pub start: usize,
    pub len: usize,
    pub dt: isize,
}

/// Moves channel blocks across the frames of each video, for the CLS token only (`cls_only`) or
/// for every token. Channels in no block stay. Used for MST-Adapter's CLS shift and for X-ViT's
/// key/value mixing.
pub fn temporal_shift<X: Dim, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tok<X, E, D, T>,
    frames: usize,
    shifts: &[Shift],
    cls_only: bool,
) -> Tok<X, E, D, T> {
    let (n, l, xd) = *x.shape();
    let c = xd.size();
    assert_eq!(n % frames, 0, "temporal_shift: {n} frame rows is not a multiple of T = {frames}");
    let mut src_dt = vec![0isize; c]; // per channel: the frame offset it reads from
    for s in shifts {
        assert!(s.start + s.len <= c, "temporal_shift: channels {}..{} exceed width {c}", s.start, s.start + s.len);
        src_dt[s.start..s.start + s.len].iter_mut().for_each(|d| *d = s.dt);
    }
    let tokens = if cls_only { 1 } else { l };
    // source index of element (r, tok, ch), or None (zero)
    let src = move |r: usize, tok: usize, ch: usize, dt: isize| -> Option<usize> {
        let t = (r % frames) as isize + dt;
        (0..frames as isize).contains(&t).then(|| (((r as isize + dt) as usize) * l + tok) * c + ch)
    };
    let dts = src_dt.clone();
    let gpu_op = TokenOp::Shift { n, l, c, frames, tokens, dt: src_dt.iter().map(|&d| d as i32).collect() };
    select(
        x,
        (n, l, xd),
        gpu_op,
        move |xv: &[E], y: &mut [E]| {
            y.copy_from_slice(xv);
            for r in 0..n {
                for tok in 0..tokens {
                    for (ch, &dt) in dts.iter().enumerate() {
                        if dt != 0 {
                            y[(r * l + tok) * c + ch] = src(r, tok, ch, dt).map_or(E::zero(), |i| xv[i]);
                        }
                    }
                }
            }
        },
        move |gy: &[E], gx: &mut [E]| {
            for r in 0..n {
                for tok in 0..l {
                    for (ch, &dt) in src_dt.iter().enumerate() {
                        let i = (r * l + tok) * c + ch;
                        if tok < tokens && dt != 0 {
                            if let Some(s) = src(r, tok, ch, dt) {
                                gx[s] += gy[i];
                            }
                        } else {
                            gx[i] += gy[i];
                        }
                    }
                }
            }
        },
    )
}

/// Replaces the CLS token of every frame by its mean over the T frames of the video. TimeSformer
/// keeps one CLS per video: with identical per-frame copies, averaging the copies' residuals is
/// its `cls_token = mean over T of the spatial attention's CLS outputs`.
pub fn average_cls<X: Dim, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tok<X, E, D, T>,
    frames: usize,
) -> Tok<X, E, D, T> {
    let (n, l, xd) = *x.shape();
    let c = xd.size();
    assert_eq!(n % frames, 0, "average_cls: {n} frame rows is not a multiple of T = {frames}");
    let inv = E::one() / E::of(frames as f64);
    let mean = move |v: &[E], r: usize, ch: usize| -> E {
        let b0 = r - r % frames;
        (b0..b0 + frames).map(|q| v[q * l * c + ch]).fold(E::zero(), |a, b| a + b) * inv
    };
    select(
        x,
        (n, l, xd),
        TokenOp::AverageCls { n, l, c, frames },
        move |xv: &[E], y: &mut [E]| {
            y.copy_from_slice(xv);
            for r in 0..n {
                for ch in 0..c {
                    y[r * l * c + ch] = mean(xv, r, ch);
                }
            }
        },
        move |gy: &[E], gx: &mut [E]| {
            for r in 0..n {
                for tok in 0..l {
                    for ch in 0..c {
                        let i = (r * l + tok) * c + ch;
                        gx[i] += if tok == 0 { mean(gy, r, ch) } else { gy[i] };
                    }
                }
            }
        },
    )
}

/// VPT-deep: replaces the `old` prompt tokens that follow CLS with the learned `prompts` (N, X):
/// `[cls, old prompts, patches]` → `[cls, prompts, patches]`. Gradients go to CLS and the
/// patches, and to the prompts (summed over frames) when trainable; the old prompts get none.
pub fn set_prompts<X: Dim, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tok<X, E, D, T>,
    old: usize,
    prompts: &Param<(usize, X), E, D>,
) -> Tok<X, E, D, T> {
    let (n, l, xd) = *x.shape();
    let c = xd.size();
    let np = prompts.value.shape().0;
    assert!(l > old, "set_prompts: {old} prompts in {l} tokens");
    let x = match D::k_set_prompts(x, old, prompts) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let l2 = l - old + np;
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let xv = host(&x);
    let pv = prompts.host();
    let mut y = vec![E::zero(); n * l2 * c];
    for r in 0..n {
        let (src, dst) = (&xv[r * l * c..(r + 1) * l * c], &mut y[r * l2 * c..(r + 1) * l2 * c]);
        dst[..c].copy_from_slice(&src[..c]);
        dst[c..(1 + np) * c].copy_from_slice(&pv);
        dst[(1 + np) * c..].copy_from_slice(&src[(1 + old) * c..]);
    }
    let y = tensor(&dev, y, (n, l2, xd));
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        let pg = prompts.trainable.then(|| prompts.value.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            dev.update(grads.get_or_alloc_mut(&xg)?, |gx| {
                for r in 0..n {
                    let (g, d) = (&gy[r * l2 * c..(r + 1) * l2 * c], &mut gx[r * l * c..(r + 1) * l * c]);
                    d[..c].iter_mut().zip(&g[..c]).for_each(|(a, b)| *a += *b);
                    d[(1 + old) * c..].iter_mut().zip(&g[(1 + np) * c..]).for_each(|(a, b)| *a += *b);
                }
            })?;
            if let Some(pg) = &pg {
                dev.update(grads.get_or_alloc_mut(pg)?, |gp| {
                    for r in 0..n {
                        gp.iter_mut().zip(&gy[r * l2 * c + c..r * l2 * c + (1 + np) * c]).for_each(|(a, b)| *a += *b);
                    }
                })?;
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;

    const N: usize = 6;
    const L: usize = 5;
    const C: usize = 4;

    fn x(dev: &Cpu) -> Tok<Const<C>, f64, Cpu, NoneTape> {
        dev.tensor_from_vec(rand_vec(1, N * L * C), (N, L, Const::<C>))
    }

    /// Reading CLS and patches from one tensor and using both: the gradient is the sum of both
    /// readers' gradients (the case dfdx's `slice` gets wrong), checked by finite differences.
    #[test]
    fn cls_and_patch_readers_accumulate_gradients() {
        let dev = Cpu::default();
        let x = x(&dev);
        let (r1, r2) = (rand_vec(2, N * C), rand_vec(3, N * (L - 1) * C));
        let f = |v: &[f64]| {
            let t = dev.tensor_from_vec(v.to_vec(), (N, L, Const::<C>));
            weighted_sum_value(&cls_tokens(t.clone()), &r1) + weighted_sum_value(&patch_tokens(t), &r2)
        };
        let (xs, tape) = x.leaky_trace().split_tape();
        let a = weighted_sum(cls_tokens(xs.clone().put_tape(tape)), &r1);
        let b = weighted_sum(patch_tokens(xs.retaped::<OwnedTape<f64, Cpu>>()), &r2);
        let g = (a + b).backward();
        assert_close("dx", &g.get(&x).as_vec(), &numeric_grad(&x.as_vec(), f));
        // also the forward: CLS of row 2 and patch 3 of row 1
        let xv = x.as_vec();
        assert_eq!(cls_tokens(x.clone()).as_vec()[2 * C..3 * C], xv[2 * L * C..2 * L * C + C]);
        assert_eq!(patch_tokens(x.clone()).as_vec()[(L - 1 + 2) * C..(L - 1 + 3) * C], xv[(L + 3) * C..(L + 4) * C]);
    }

    /// `add_to_patches` leaves CLS alone and adds to the patches; gradients to both inputs.
    #[test]
    fn add_to_patches_matches_naive_and_finite_differences() {
        let dev = Cpu::default();
        let x = x(&dev);
        let d = dev.tensor_from_vec(rand_vec(4, N * (L - 1) * C), (N, L - 1, Const::<C>));
        let y = add_to_patches(x.clone(), d.clone()).as_vec();
        let (xv, dv) = (x.as_vec(), d.as_vec());
        for r in 0..N {
            for t in 0..L {
                for c in 0..C {
                    let want = xv[(r * L + t) * C + c] + if t == 0 { 0.0 } else { dv[(r * (L - 1) + t - 1) * C + c] };
                    assert_eq!(y[(r * L + t) * C + c], want);
                }
            }
        }
        let rr = rand_vec(5, N * L * C);
        let (xt, tape) = x.leaky_trace().split_tape();
        let g = weighted_sum(add_to_patches(xt.put_tape(tape), d.retaped::<OwnedTape<f64, Cpu>>()), &rr).backward();
        let nx = numeric_grad(&xv, |v| {
            weighted_sum_value(&add_to_patches(dev.tensor_from_vec(v.to_vec(), (N, L, Const::<C>)), d.clone()), &rr)
        });
        let nd = numeric_grad(&dv, |v| {
            weighted_sum_value(&add_to_patches(x.clone(), dev.tensor_from_vec(v.to_vec(), (N, L - 1, Const::<C>))), &rr)
        });
        assert_close("dx", &g.get(&x).as_vec(), &nx);
        assert_close("ddelta", &g.get(&d).as_vec(), &nd);
    }

    /// Embedding forward against its definition: token 0 = class + pos[0] (+ temporal[t] when on
    /// CLS), token 1 + p = patch p + pos[1 + p] + temporal[t].
    #[test]
    fn embed_tokens_matches_its_definition() {
        let dev = Cpu::default();
        let frames = 3;
        let p = dev.tensor_from_vec(rand_vec(6, N * (L - 1) * C), (N, L - 1, Const::<C>));
        let cls = Param::new(dev.tensor_from_vec(rand_vec(7, C), (Const::<C>,)), false);
        let pos = Param::new(dev.tensor_from_vec(rand_vec(8, L * C), (L, Const::<C>)), false);
        let tem = Param::new(dev.tensor_from_vec(rand_vec(9, frames * C), (frames, Const::<C>)), false);
        let (pv, cv, sv, tv) = (p.as_vec(), cls.to_vec(), pos.to_vec(), tem.to_vec());
        for on_cls in [true, false] {
            let y = embed_tokens(p.clone(), &cls, &pos, Some(&tem), on_cls).as_vec();
            for r in 0..N {
                for tok in 0..L {
                    for c in 0..C {
                        let base = if tok == 0 { cv[c] } else { pv[(r * (L - 1) + tok - 1) * C + c] };
                        let te = if tok > 0 || on_cls { tv[(r % frames) * C + c] } else { 0.0 };
                        let want = base + sv[tok * C + c] + te;
                        assert!((y[(r * L + tok) * C + c] - want).abs() < 1e-12);
                    }
                }
            }
        }
    }

    /// Prompt replacement and the all-token shift, forward against their definitions.
    #[test]
    fn set_prompts_and_temporal_shift_match_their_definitions() {
        let dev = Cpu::default();
        let x = x(&dev);
        let xv = x.as_vec();
        let p = Param::new(dev.tensor_from_vec(rand_vec(13, 3 * C), (3usize, Const::<C>)), false);
        let y = set_prompts(x.clone(), 2, &p).as_vec();
        let l2 = L - 2 + 3;
        for r in 0..N {
            assert_eq!(y[r * l2 * C..r * l2 * C + C], xv[r * L * C..r * L * C + C]); // CLS
            assert_eq!(y[(r * l2 + 1) * C..(r * l2 + 4) * C], p.to_vec()[..]); // the new prompts
            assert_eq!(y[(r * l2 + 4) * C..(r + 1) * l2 * C], xv[(r * L + 3) * C..(r + 1) * L * C]);
            // patches
        }
        let frames = 3;
        let y = temporal_shift(x.clone(), frames, &[Shift { start: 1, len: 2, dt: -1 }], false).as_vec();
        for r in 0..N {
            for tok in 0..L {
                for c in 0..C {
                    let i = (r * L + tok) * C + c;
                    let want = if (1..3).contains(&c) {
                        if r % frames == 0 {
                            0.0
                        } else {
                            xv[i - L * C]
                        }
                    } else {
                        xv[i]
                    };
                    assert_eq!(y[i], want);
                }
            }
        }
    }

    /// Embedding: gradients to patches, class, positional and temporal embeddings.
    #[test]
    fn embed_tokens_gradients_match_finite_differences() {
        let dev = Cpu::default();
        let frames = 3;
        let p = dev.tensor_from_vec(rand_vec(6, N * (L - 1) * C), (N, L - 1, Const::<C>));
        let cls = Param::new(dev.tensor_from_vec(rand_vec(7, C), (Const::<C>,)), true);
        let pos = Param::new(dev.tensor_from_vec(rand_vec(8, L * C), (L, Const::<C>)), true);
        let tem = Param::new(dev.tensor_from_vec(rand_vec(9, frames * C), (frames, Const::<C>)), true);
        let r = rand_vec(10, N * L * C);
        for on_cls in [true, false] {
            let g = weighted_sum(embed_tokens(p.leaky_trace(), &cls, &pos, Some(&tem), on_cls), &r).backward();
            let loss = |pv: &[f64], cv: &[f64], sv: &[f64], tv: &[f64]| {
                let mk1 = |v: &[f64]| Param::new(dev.tensor_from_vec(v.to_vec(), (Const::<C>,)), true);
                let mk2 = |v: &[f64], rows| Param::new(dev.tensor_from_vec(v.to_vec(), (rows, Const::<C>)), true);
                weighted_sum_value(
                    &embed_tokens(
                        dev.tensor_from_vec(pv.to_vec(), (N, L - 1, Const::<C>)),
                        &mk1(cv),
                        &mk2(sv, L),
                        Some(&mk2(tv, frames)),
                        on_cls,
                    ),
                    &r,
                )
            };
            let (pv, cv, sv, tv) = (p.as_vec(), cls.to_vec(), pos.to_vec(), tem.to_vec());
            assert_close("dpatches", &g.get(&p).as_vec(), &numeric_grad(&pv, |v| loss(v, &cv, &sv, &tv)));
            assert_close("dclass", &g.get(&cls.value).as_vec(), &numeric_grad(&cv, |v| loss(&pv, v, &sv, &tv)));
            assert_close("dpos", &g.get(&pos.value).as_vec(), &numeric_grad(&sv, |v| loss(&pv, &cv, v, &tv)));
            assert_close("dtemporal", &g.get(&tem.value).as_vec(), &numeric_grad(&tv, |v| loss(&pv, &cv, &sv, v)));
        }
    }

    /// Shift of all tokens (X-ViT's mixing), CLS averaging and prompt replacement: gradients
    /// against finite differences.
    #[test]
    fn temporal_shift_average_cls_and_prompts_match_finite_differences() {
        let dev = Cpu::default();
        let frames = 3;
        let x = x(&dev);
        let xv = x.as_vec();
        let from = |v: &[f64]| dev.tensor_from_vec(v.to_vec(), (N, L, Const::<C>));
        let shifts = [Shift { start: 1, len: 1, dt: -1 }, Shift { start: 2, len: 2, dt: 1 }];
        let r = rand_vec(12, N * L * C);
        let g = weighted_sum(temporal_shift(x.leaky_trace(), frames, &shifts, false), &r).backward();
        assert_close(
            "shift",
            &g.get(&x).as_vec(),
            &numeric_grad(&xv, |v| weighted_sum_value(&temporal_shift(from(v), frames, &shifts, false), &r)),
        );
        let g = weighted_sum(average_cls(x.leaky_trace(), frames), &r).backward();
        assert_close(
            "average_cls",
            &g.get(&x).as_vec(),
            &numeric_grad(&xv, |v| weighted_sum_value(&average_cls(from(v), frames), &r)),
        );
        // forward of average_cls: CLS of row 4 = mean of rows 3, 4, 5
        let y = average_cls(x.clone(), frames).as_vec();
        assert!((y[4 * L * C] - (xv[3 * L * C] + xv[4 * L * C] + xv[5 * L * C]) / 3.0).abs() < 1e-12);
        // prompts: 2 old → 3 new
        let p = Param::new(dev.tensor_from_vec(rand_vec(13, 3 * C), (3usize, Const::<C>)), true);
        let r2 = rand_vec(14, N * (L + 1) * C);
        let g = weighted_sum(set_prompts(x.leaky_trace(), 2, &p), &r2).backward();
        assert_close(
            "prompts dx",
            &g.get(&x).as_vec(),
            &numeric_grad(&xv, |v| weighted_sum_value(&set_prompts(from(v), 2, &p), &r2)),
        );
        let num_p = numeric_grad(&p.to_vec(), |v| {
            let mut q = p.clone();
            q.set(v);
            weighted_sum_value(&set_prompts(x.clone(), 2, &q), &r2)
        });
        assert_close("prompts dp", &g.get(&p.value).as_vec(), &num_p);
    }

    /// CLS shift: forward against a direct definition, gradient against finite differences.
    #[test]
    fn cls_shift_matches_its_definition_and_finite_differences() {
        let dev = Cpu::default();
        let (frames, nxt, prv) = (3, 1, 2);
        let x = x(&dev);
        let xv = x.as_vec();
        let y = cls_shift(x.clone(), frames, nxt, prv).as_vec();
        for r in 0..N {
            let t = r % frames;
            for tok in 0..L {
                for c in 0..C {
                    let i = (r * L + tok) * C + c;
                    let want = if tok > 0 || c >= nxt + prv {
                        xv[i]
                    } else if c < nxt {
                        if t + 1 < frames {
                            xv[((r + 1) * L) * C + c]
                        } else {
                            0.0
                        }
                    } else if t > 0 {
                        xv[((r - 1) * L) * C + c]
                    } else {
                        0.0
                    };
                    assert_eq!(y[i], want, "row {r} token {tok} channel {c}");
                }
            }
        }
        let r = rand_vec(11, N * L * C);
        let g = weighted_sum(cls_shift(x.leaky_trace(), frames, nxt, prv), &r).backward();
        let num = numeric_grad(&xv, |v| {
            weighted_sum_value(&cls_shift(dev.tensor_from_vec(v.to_vec(), (N, L, Const::<C>)), frames, nxt, prv), &r)
        });
        assert_close("dx", &g.get(&x).as_vec(), &num);
    }
}
