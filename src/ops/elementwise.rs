//! Residual adds, scaling, per-row masks (dropout, drop path) and the mean over frames:
//! multithreaded, and freeing their output gradient once used.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::Rows;
use crate::device::{host, tensor, KitDevice, Real};
use crate::param::Param;

const CHUNK: usize = 1 << 14;

/// `a + b` (same shape). Either side may be traced; the tapes merge.
pub fn add<S, E, D, T1, T2>(a: Tensor<S, E, D, T1>, b: Tensor<S, E, D, T2>) -> Tensor<S, E, D, T1>
where
    S: Shape,
    E: Real,
    D: KitDevice<E>,
    T1: Tape<E, D> + Merge<T2>,
    T2: Tape<E, D>,
{
    let shape = *a.shape();
    assert_eq!(shape.concrete(), b.shape().concrete(), "add: shapes differ");
    let (a, b) = match D::k_add(a, b) {
        Ok(y) => return y,
        Err(ab) => ab,
    };
    let dev = a.device().clone();
    let (a, ta) = a.split_tape();
    let (b, tb) = b.split_tape();
    let mut tape = ta.merge(tb);
    let y: Vec<E> = host(&a).par_iter().with_min_len(CHUNK).zip(host(&b).par_iter()).map(|(x, y)| *x + *y).collect();
    let y = tensor(&dev, y, shape);
    if T1::OWNS_TAPE {
        let (ag, bg, yg) = (a.ghost(), b.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            let acc = |g: &mut [E]| g.par_iter_mut().with_min_len(CHUNK).zip(gy.par_iter()).for_each(|(u, v)| *u += *v);
            dev.update(grads.get_or_alloc_mut(&ag)?, acc)?;
            dev.update(grads.get_or_alloc_mut(&bg)?, acc)
        });
    }
    y.put_tape(tape)
}

/// `base + Σᵢ wᵢ · termsᵢ`: MST-Adapter's fusion of its conv branches (Eq. 8). The weights are a
/// trainable parameter (one scalar per term) or fixed values (plain averaging). Gradients go to
/// `base`, every term, and the weights when trainable.
pub fn fuse<S, E, D, TB, T>(
    base: Tensor<S, E, D, TB>,
    terms: Vec<Tensor<S, E, D, T>>,
    weights: &Weights<E, D>,
) -> Tensor<S, E, D, T>
where
    S: Shape,
    E: Real,
    D: KitDevice<E>,
    TB: Tape<E, D>,
    T: Tape<E, D> + Merge<TB>,
{
    let shape = *base.shape();
    let w: Vec<E> = match weights {
        Weights::Learned(p) => p.to_vec(),
        Weights::Fixed(v) => v.iter().map(|x| E::of(*x)).collect(),
    };
    assert_eq!(w.len(), terms.len(), "fuse: {} weights for {} terms", w.len(), terms.len());
    let (base, terms) = match D::k_fuse(base, terms, &w, weights) {
        Ok(y) => return y,
        Err(bt) => bt,
    };
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
    let mut y = host(&base);
    let values: Vec<Vec<E>> = kept.iter().map(|t| host(t)).collect();
    for (tv, wi) in values.iter().zip(&w) {
        y.par_iter_mut().with_min_len(CHUNK).zip(tv.par_iter()).for_each(|(a, b)| *a += *wi * *b);
    }
    let y = tensor(&dev, y, shape);
    if T::OWNS_TAPE {
        let (bg, yg) = (base.ghost(), y.ghost());
        let term_ghosts: Vec<_> = kept.iter().map(|t| t.ghost()).collect();
        let w_param = match weights {
            Weights::Learned(p) if p.trainable => Some(p.value.clone()),
            _ => None,
        };
        let values = w_param.is_some().then_some(values);
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            dev.update(grads.get_or_alloc_mut(&bg)?, |g| {
                g.par_iter_mut().with_min_len(CHUNK).zip(gy.par_iter()).for_each(|(u, v)| *u += *v)
            })?;
            for (tg, wi) in term_ghosts.iter().zip(&w) {
                dev.update(grads.get_or_alloc_mut(tg)?, |g| {
                    g.par_iter_mut().with_min_len(CHUNK).zip(gy.par_iter()).for_each(|(u, v)| *u += *wi * *v)
                })?;
            }
            if let (Some(wp), Some(values)) = (&w_param, &values) {
                let dw: Vec<E> = values
                    .iter()
                    .map(|tv| {
                        super::ordered_sum(tv.len(), CHUNK, 1, |r, acc: &mut [E]| {
                            acc[0] = tv[r.clone()].iter().zip(&gy[r]).map(|(a, b)| *a * *b).sum();
                        })[0]
                    })
                    .collect();
                dev.update(grads.get_or_alloc_mut(wp)?, |g| g.iter_mut().zip(&dw).for_each(|(u, v)| *u += *v))?;
            }
            Ok(())
        });
    }
    y.put_tape(tape)
}

/// The fusion weights of [`fuse`].
#[derive(Clone, Debug)]
pub enum Weights<E: Dtype, D: Storage<E>> {
    /// One learned scalar per term (MST-Adapter: initialised to 0.33).
    Learned(Param<(usize,), E, D>),
    /// Fixed weights (plain averaging: 1/3 each); no parameters.
    Fixed(Vec<f64>),
}

crate::impl_params!([E: Real, D: KitDevice<E>] Weights<E, D>, |m, w| {
    if let Weights::Learned(p) = r!(*m) {
        w.param("", p);
    }
});

/// `s · x` for a constant s.
pub fn scale<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>, s: f64) -> Tensor<S, E, D, T> {
    let n = x.shape().num_elements();
    mask(x, vec![E::of(s); 1], n)
}

/// Dropout with probability `p` on every element (kept ones scaled by 1/(1 − p)); the identity in
/// evaluation (`ctx.train` false) and for p = 0.
pub fn dropout<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    p: f64,
    ctx: &mut crate::context::Ctx,
) -> Tensor<S, E, D, T> {
    match ctx.drop_factors(x.shape().num_elements(), p) {
        Some(factors) => mask(x, factors, 1),
        None => x,
    }
}

/// Multiplies row i (of `x.shape().rows()` rows) by `factors[i]`. Dropout (one factor per element,
/// pass a row length of 1), DropPath (one factor per sample) and AIM's token-position DropPath are
/// all this op with different factor vectors: 0 for dropped, 1/(1 − p) for kept.
pub fn drop_rows<S: Rows, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    factors: Vec<E>,
) -> Tensor<S, E, D, T> {
    let rows = x.shape().rows();
    assert_eq!(factors.len(), rows, "drop_rows: {} factors for {rows} rows", factors.len());
    let row_len = x.shape().feat().size();
    mask(x, factors, row_len)
}

/// `y[i] = x[i] · factors[i / block]`.
pub(crate) fn mask<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tensor<S, E, D, T>,
    factors: Vec<E>,
    block: usize,
) -> Tensor<S, E, D, T> {
    let shape = *x.shape();
    assert_eq!(factors.len() * block, shape.num_elements(), "mask: factor blocks do not cover the tensor");
    let x = match D::k_mask(x, &factors, block) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let mut y = host(&x);
    y.par_chunks_mut(block.max(1)).zip(factors.par_iter()).for_each(|(r, f)| r.iter_mut().for_each(|v| *v *= *f));
    let y = tensor(&dev, y, shape);
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            dev.update(grads.get_or_alloc_mut(&xg)?, |gx| {
                gx.par_chunks_mut(block.max(1))
                    .zip(gy.par_chunks(block.max(1)))
                    .zip(factors.par_iter())
                    .for_each(|((a, b), f)| a.iter_mut().zip(b).for_each(|(u, v)| *u += *v * *f))
            })
        });
    }
    y.put_tape(tape)
}

/// The mean over the T frames of each video: (B·T, X) → (B, X), frames batch-major (row b·T + t).
pub fn mean_over_frames<X: Dim, E: Real, D: KitDevice<E>, T: Tape<E, D>>(
    x: Tensor<(usize, X), E, D, T>,
    frames: usize,
) -> Tensor<(usize, X), E, D, T> {
    let (n, xd) = *x.shape();
    let c = xd.size();
    assert!(frames > 0 && n % frames == 0, "mean_over_frames: {n} rows is not a multiple of T = {frames}");
    let x = match D::k_mean_over_frames(x, frames) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let b = n / frames;
    let inv = E::one() / E::of(frames as f64);
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let xv = host(&x);
    let mut y = vec![E::zero(); b * c];
    for (r, row) in xv.chunks_exact(c).enumerate() {
        y[(r / frames) * c..(r / frames + 1) * c].iter_mut().zip(row).for_each(|(u, v)| *u += *v * inv);
    }
    let y = tensor(&dev, y, (b, xd));
    if T::OWNS_TAPE {
        let (xg, yg) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&yg)?);
            dev.update(grads.get_or_alloc_mut(&xg)?, |gx| {
                for (r, row) in gx.chunks_exact_mut(c).enumerate() {
                    row.iter_mut().zip(&gy[(r / frames) * c..(r / frames + 1) * c]).for_each(|(u, v)| *u += *v * inv);
                }
            })
        });
    }
    y.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;

    /// Both addends of `add`, and `scale`, `drop_rows`, `mean_over_frames`, against central differences.
    #[test]
    fn elementwise_gradients_match_finite_differences() {
        let dev = Cpu::default();
        let (n, c) = (6usize, 4usize);
        let a = dev.tensor_from_vec(rand_vec(1, n * c), (n, c));
        let b = dev.tensor_from_vec(rand_vec(2, n * c), (n, c));
        let factors = vec![0.0, 2.0, 2.0, 0.0, 2.0, 2.0];
        let r = rand_vec(3, 2 * c);
        let f = |a: Tensor<(usize, usize), f64, Cpu>, b: Tensor<(usize, usize), f64, Cpu>| {
            mean_over_frames(drop_rows(scale(add(a, b), 0.5), factors.clone()), 3)
        };
        let (at, tape) = a.leaky_trace().split_tape();
        let y = mean_over_frames(
            drop_rows(scale(add(at.put_tape(tape), b.retaped::<OwnedTape<f64, Cpu>>()), 0.5), factors.clone()),
            3,
        );
        let g = weighted_sum(y, &r).backward();
        let na = numeric_grad(&a.as_vec(), |v| {
            weighted_sum_value(&f(dev.tensor_from_vec(v.to_vec(), (n, c)), b.clone()), &r)
        });
        let nb = numeric_grad(&b.as_vec(), |v| {
            weighted_sum_value(&f(a.clone(), dev.tensor_from_vec(v.to_vec(), (n, c))), &r)
        });
        assert_close("da", &g.get(&a).as_vec(), &na);
        assert_close("db", &g.get(&b).as_vec(), &nb);
        // forward: video 0, channel 0 = mean over its 3 frame rows of 0.5·(a+b)·factor
        let (av, bv) = (a.as_vec(), b.as_vec());
        let want: f64 = (0..3).map(|t| 0.5 * (av[t * c] + bv[t * c]) * factors[t]).sum::<f64>() / 3.0;
        assert!((f(a, b).as_vec()[0] - want).abs() < 1e-12);
    }

    /// `fuse`: base + Σ wᵢ termsᵢ, gradients to base, terms and the learned weights.
    #[test]
    fn fuse_matches_its_definition_and_finite_differences() {
        let dev = Cpu::default();
        let n = 12usize;
        let mk = |seed| dev.tensor_from_vec(rand_vec(seed, n), (n,));
        let (b, t1, t2) = (mk(1), mk(2), mk(3));
        let w = Param::new(dev.tensor_from_vec(vec![0.33, -0.7], (2usize,)), true);
        let r = rand_vec(4, n);
        let f = |b: Tensor<(usize,), f64, Cpu>,
                 t1: Tensor<(usize,), f64, Cpu>,
                 t2: Tensor<(usize,), f64, Cpu>,
                 w: &Param<(usize,), f64, Cpu>| {
            weighted_sum_value(&fuse(b, vec![t1, t2], &Weights::Learned(w.clone())), &r)
        };
        let y = fuse(b.clone(), vec![t1.clone(), t2.clone()], &Weights::Learned(w.clone())).as_vec();
        let (bv, v1, v2) = (b.as_vec(), t1.as_vec(), t2.as_vec());
        assert!((0..n).all(|i| (y[i] - (bv[i] + 0.33 * v1[i] - 0.7 * v2[i])).abs() < 1e-12));
        let (bt, tape) = b.leaky_trace().split_tape();
        let g = weighted_sum(
            fuse(
                bt.put_tape(tape),
                vec![t1.retaped::<OwnedTape<f64, Cpu>>(), t2.retaped()],
                &Weights::Learned(w.clone()),
            ),
            &r,
        )
        .backward();
        let from = |v: &[f64]| dev.tensor_from_vec(v.to_vec(), (n,));
        assert_close("dbase", &g.get(&b).as_vec(), &numeric_grad(&bv, |v| f(from(v), t1.clone(), t2.clone(), &w)));
        assert_close("dterm1", &g.get(&t1).as_vec(), &numeric_grad(&v1, |v| f(b.clone(), from(v), t2.clone(), &w)));
        assert_close("dterm2", &g.get(&t2).as_vec(), &numeric_grad(&v2, |v| f(b.clone(), t1.clone(), from(v), &w)));
        let num_w = numeric_grad(&w.to_vec(), |v| {
            let mut w2 = w.clone();
            w2.set(v);
            f(b.clone(), t1.clone(), t2.clone(), &w2)
        });
        assert_close("dw", &g.get(&w.value).as_vec(), &num_w);
    }
}
