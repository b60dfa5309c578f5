//! LayerNorm over the last axis, fused and multithreaded, with torch semantics (biased variance,
//! `eps` inside the square root; CLIP uses eps = 1e-5 everywhere).

use dfdx::prelude::*;
use rayon::prelude::*;

use super::simd::{add_assign, lanes, multiversion, rows_per_task, sum, sum_sq_dev, LANES};
use super::Rows;
use crate::device::{host, tensor, KitDevice, Real};
use crate::param::Param;

/// A torch `nn.LayerNorm(width)`: `weight` (γ) and `bias` (β).
#[derive(Clone, Debug)]
pub struct LayerNorm<X: Dim, E: Dtype, D: Storage<E>> {
    pub weight: Param<(X,), E, D>,
    pub bias: Param<(X,), E, D>,
    pub eps: f64,
}

impl<X: Dim, E: Real, D: KitDevice<E>> LayerNorm<X, E, D> {
    pub fn forward<S: Rows<Feat = X>, T: Tape<E, D>>(&self, x: Tensor<S, E, D, T>) -> Tensor<S, E, D, T> {
        layer_norm(x, self)
    }

    pub fn set_trainable(&mut self, trainable: bool) {
        self.weight.trainable = trainable;
        self.bias.trainable = trainable;
    }
}

crate::impl_params!([X: Dim, E: Real, D: KitDevice<E>] LayerNorm<X, E, D> {
    param "weight" => weight,
    param "bias" => bias,
});

multiversion! {
    /// Per row of `x` (width `c`): `stats[2r] = mean`, `stats[2r + 1] = 1/sqrt(var + eps)` (biased
    /// variance, two passes), and `y = (x − mean)·rstd·γ + β`.
    pub(crate) fn ln_forward_rows<E: Real>(
        x: &[E],
        c: usize,
        gamma: &[E],
        beta: &[E],
        eps: E,
        y: &mut [std::mem::MaybeUninit<E>],
        stats: &mut [std::mem::MaybeUninit<E>],
    ) {
        let inv_c = E::one() / E::of(c as f64);
        for ((xr, yr), st) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)).zip(stats.chunks_exact_mut(2)) {
            let mean = sum(xr) * inv_c;
            let rs = E::one() / (sum_sq_dev(xr, mean) * inv_c + eps).sqrt();
            for (((y, &x), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
                y.write((x - mean) * rs * g + b);
            }
            st[0].write(mean);
            st[1].write(rs);
        }
    }
}

multiversion! {
    /// `y = (x − mean)·rstd·γ + β` from known statistics (recomputing a LayerNorm's output).
    pub(crate) fn ln_apply_rows<E: Real>(
        x: &[E],
        c: usize,
        gamma: &[E],
        beta: &[E],
        stats: &[E],
        y: &mut [std::mem::MaybeUninit<E>],
    ) {
        for ((xr, yr), st) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)).zip(stats.chunks_exact(2)) {
            let (mean, rs) = (st[0], st[1]);
            for (((y, &x), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
                y.write((x - mean) * rs * g + b);
            }
        }
    }
}

multiversion! {
    /// `gx += (g − mean(g) − x̂·mean(g·x̂))·rstd` with `g = gy·γ`, `x̂ = (x − mean)·rstd`, per row.
    pub(crate) fn ln_backward_rows<E: Real>(x: &[E], c: usize, stats: &[E], gamma: &[E], gy: &[E], gx: &mut [E]) {
        let inv_c = E::one() / E::of(c as f64);
        // γ cut to the row width and every row walked by iterators, not indices: with an index into
        // a slice of unknown length, each access kept its bounds check and the loops ran one scalar
        // at a time (2 ns per element on the small preset's width 64, by `perf annotate`).
        let gamma = &gamma[..c];
        let full = c - c % LANES;
        for (((xr, gyr), gxr), st) in
            x.chunks_exact(c).zip(gy.chunks_exact(c)).zip(gx.chunks_exact_mut(c)).zip(stats.chunks_exact(2))
        {
            let (mean, rs) = (st[0], st[1]);
            // Σ g and Σ g·(x − mean) in LANES partial sums each, as two loops: in one loop the
            // compiler paired the two sums of a lane into one 2-wide register instead of running 16
            // lanes of each sum (the same arithmetic either way)
            let (mut a, mut b) = ([E::zero(); LANES], [E::zero(); LANES]);
            let lanes = |v| lanes(v, full);
            for (gl, ml) in lanes(gyr).zip(lanes(gamma)) {
                for l in 0..LANES {
                    a[l] += gl[l] * ml[l];
                }
            }
            for ((xl, gl), ml) in lanes(xr).zip(lanes(gyr)).zip(lanes(gamma)) {
                for l in 0..LANES {
                    b[l] += gl[l] * ml[l] * (xl[l] - mean);
                }
            }
            let (mut mg, mut mgx) = (E::zero(), E::zero());
            for ((&xj, &gj), &mj) in xr[full..].iter().zip(&gyr[full..]).zip(&gamma[full..]) {
                let g = gj * mj;
                mg += g;
                mgx += g * (xj - mean);
            }
            for l in 0..LANES {
                mg += a[l];
                mgx += b[l];
            }
            mg *= inv_c;
            mgx *= inv_c * rs;
            for (((gx, &xj), &gj), &mj) in gxr.iter_mut().zip(xr).zip(gyr).zip(gamma) {
                let xh = (xj - mean) * rs;
                *gx += (gj * mj - mg - xh * mgx) * rs;
            }
        }
    }
}

multiversion! {
    /// `dγ += Σ_rows gy·x̂`, `dβ += Σ_rows gy` (over the rows of this slice).
    pub(crate) fn ln_param_grads_rows<E: Real>(x: &[E], c: usize, stats: &[E], gy: &[E], dg: &mut [E], db: &mut [E]) {
        for ((xr, gyr), st) in x.chunks_exact(c).zip(gy.chunks_exact(c)).zip(stats.chunks_exact(2)) {
            let (mean, rs) = (st[0], st[1]);
            for (((dg, db), &x), &g) in dg.iter_mut().zip(db.iter_mut()).zip(xr).zip(gyr) {
                *dg += g * (x - mean) * rs;
                *db += g;
            }
        }
    }
}

/// A LayerNorm's forward on host rows: the output and the per-row (mean, rstd).
pub(crate) fn ln_forward<E: Real>(xv: &[E], c: usize, gamma: &[E], beta: &[E], eps: E) -> (Vec<E>, Vec<E>) {
    let rows = xv.len() / c;
    let (mut y, mut stats) = (Vec::with_capacity(xv.len()), Vec::with_capacity(2 * rows));
    let n = rows_per_task(c);
    y.spare_capacity_mut()[..xv.len()]
        .par_chunks_mut(n * c)
        .zip(stats.spare_capacity_mut()[..2 * rows].par_chunks_mut(2 * n))
        .zip(xv.par_chunks(n * c))
        .for_each(|((y, st), x)| ln_forward_rows(x, c, gamma, beta, eps, y, st));
    // SAFETY: ln_forward_rows wrote every row of y (c values) and of stats (2 values), and the
    // blocks cover all `rows` rows (xv.len() = rows·c).
    unsafe {
        y.set_len(xv.len());
        stats.set_len(2 * rows);
    }
    (y, stats)
}

/// The output of a LayerNorm from its input and statistics (for a weight gradient that needs it).
pub(crate) fn ln_recompute<E: Real>(xv: &[E], c: usize, gamma: &[E], beta: &[E], stats: &[E]) -> Vec<E> {
    let n = rows_per_task(c);
    // SAFETY: ln_apply_rows writes every row of every block.
    unsafe {
        super::written(xv.len(), |y| {
            y.par_chunks_mut(n * c)
                .zip(stats.par_chunks(2 * n))
                .zip(xv.par_chunks(n * c))
                .for_each(|((y, st), x)| ln_apply_rows(x, c, gamma, beta, st, y))
        })
    }
}

/// Adds the γ and β gradients [`ln_backward`] returned to the gradients of the parameters that
/// train (`gamma`, `beta`: their gradient keys, `None` when frozen). The LayerNorm op and the fused
/// attention and MLP ops all hand over their LayerNorm's parameter gradients here.
pub(crate) fn add_ln_param_grads<E: Real, D: KitDevice<E>, S: Shape>(
    dev: &D,
    grads: &mut Gradients<E, D>,
    gamma: Option<&Tensor<S, E, D>>,
    beta: Option<&Tensor<S, E, D>>,
    params: Option<(Vec<E>, Vec<E>)>,
) -> Result<(), D::Err> {
    if let Some((dg, db)) = params {
        if let Some(t) = gamma {
            dev.update(grads.get_or_alloc_mut(t)?, |g| add_assign(g, &dg))?;
        }
        if let Some(t) = beta {
            dev.update(grads.get_or_alloc_mut(t)?, |g| add_assign(g, &db))?;
        }
    }
    Ok(())
}

/// A LayerNorm's backward: `gx += …` for the output gradient `gy`, and the γ, β gradients when
/// asked for.
pub(crate) fn ln_backward<E: Real>(
    xv: &[E],
    c: usize,
    stats: &[E],
    gamma: &[E],
    gy: &[E],
    gx: &mut [E],
    want_params: bool,
) -> Option<(Vec<E>, Vec<E>)> {
    let n = rows_per_task(c);
    gx.par_chunks_mut(n * c)
        .zip(gy.par_chunks(n * c))
        .zip(xv.par_chunks(n * c))
        .zip(stats.par_chunks(2 * n))
        .for_each(|(((gx, gy), x), st)| ln_backward_rows(x, c, st, gamma, gy, gx));
    // Fixed blocks summed in block order (`ordered_sum`): the same bits for any thread count.
    want_params.then(|| {
        let sums = super::ordered_sum(gy.len() / c, n, 2 * c, |rows, acc: &mut [E]| {
            let (dg, db) = acc.split_at_mut(c);
            let (x, gy) = (&xv[rows.start * c..rows.end * c], &gy[rows.start * c..rows.end * c]);
            ln_param_grads_rows(x, c, &stats[2 * rows.start..2 * rows.end], gy, dg, db);
        });
        let (dg, db) = sums.split_at(c);
        (dg.to_vec(), db.to_vec())
    })
}

/// `y = (x − mean) / sqrt(var + eps) · γ + β` per row. Backward: with `x̂` the normalised input and
/// `g = gy·γ`, `dx = (g − mean(g) − x̂·mean(g·x̂)) / sqrt(var + eps)`; `dγ = Σ gy·x̂`, `dβ = Σ gy`
/// (only for trainable γ, β). Keeps the input and two numbers per row for the backward pass.
pub fn layer_norm<S, X, E, D, T>(x: Tensor<S, E, D, T>, ln: &LayerNorm<X, E, D>) -> Tensor<S, E, D, T>
where
    S: Rows<Feat = X>,
    X: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let c = x.shape().feat().size();
    assert_eq!(ln.weight.numel(), c, "layer_norm: γ has {} entries for width {c}", ln.weight.numel());
    let x = match D::k_layer_norm(x, ln) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let shape = *x.shape();
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let (gamma, beta) = (ln.weight.host(), ln.bias.host());
    let xv = host(&x);
    let (y, stats) = ln_forward(&xv, c, &gamma, &beta, E::of(ln.eps));
    let y = tensor(&dev, y, shape);

    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let (dgamma, dbeta) = (ln.weight.grad_key(), ln.bias.grad_key());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            let mut params = None;
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                params = ln_backward(&xv, c, &stats, &gamma, &gy, gx, dgamma.is_some() || dbeta.is_some());
            })?;
            add_ln_param_grads(&dev, grads, dgamma.as_ref(), dbeta.as_ref(), params)
        });
    }
    y.put_tape(tape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;

    type Dev = Cpu;
    const C: usize = 6;

    /// The vectorised backward rows give the bits of the scalar loop they replaced (same sums in
    /// the same order: 16 lane sums, the tail, the lanes added in order), for widths with and
    /// without a tail, so results computed before the change (the proxy pages) still hold.
    #[test]
    fn ln_backward_rows_keeps_the_bits_of_the_scalar_loop() {
        fn scalar(x: &[f32], c: usize, stats: &[f32], gamma: &[f32], gy: &[f32], gx: &mut [f32]) {
            for (((xr, gyr), gxr), st) in
                x.chunks_exact(c).zip(gy.chunks_exact(c)).zip(gx.chunks_exact_mut(c)).zip(stats.chunks_exact(2))
            {
                let (mean, rs) = (st[0], st[1]);
                let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
                let mut i = 0;
                while i + LANES <= c {
                    for l in 0..LANES {
                        let g = gyr[i + l] * gamma[i + l];
                        a[l] += g;
                        b[l] += g * (xr[i + l] - mean);
                    }
                    i += LANES;
                }
                let (mut mg, mut mgx) = (0f32, 0f32);
                for j in i..c {
                    let g = gyr[j] * gamma[j];
                    mg += g;
                    mgx += g * (xr[j] - mean);
                }
                for l in 0..LANES {
                    mg += a[l];
                    mgx += b[l];
                }
                mg *= 1.0 / c as f32;
                mgx *= 1.0 / c as f32 * rs;
                for j in 0..c {
                    let xh = (xr[j] - mean) * rs;
                    gxr[j] += (gyr[j] * gamma[j] - mg - xh * mgx) * rs;
                }
            }
        }
        let f = |seed, n| rand_vec(seed, n).into_iter().map(|v| v as f32).collect::<Vec<f32>>();
        for c in [5, 16, 64, 77] {
            let rows = 9;
            let (x, gamma, gy, base) = (f(1, rows * c), f(2, c), f(3, rows * c), f(4, rows * c));
            let stats: Vec<f32> = (0..rows).flat_map(|r| [0.1 * r as f32, 1.0 + 0.05 * r as f32]).collect();
            let (mut want, mut got) = (base.clone(), base);
            scalar(&x, c, &stats, &gamma, &gy, &mut want);
            ln_backward_rows(&x, c, &stats, &gamma, &gy, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "width {c}");
        }
    }

    fn ln(dev: &Dev) -> LayerNorm<Const<C>, f64, Dev> {
        let w: Vec<f64> = rand_vec(1, C).iter().map(|v| 1.0 + 0.3 * v).collect();
        LayerNorm {
            weight: Param::new(dev.tensor_from_vec(w, (Const::<C>,)), true),
            bias: Param::new(dev.tensor_from_vec(rand_vec(2, C), (Const::<C>,)), true),
            eps: 1e-5,
        }
    }

    /// Against the textbook formula with a two-pass mean and biased variance.
    #[test]
    fn layer_norm_matches_the_textbook_formula() {
        let dev = Dev::default();
        let ln = ln(&dev);
        let x = dev.tensor_from_vec(rand_vec(3, 5 * C), (5usize, Const::<C>));
        let y = ln.forward(x.clone()).as_vec();
        let (xv, g, b) = (x.as_vec(), ln.weight.to_vec(), ln.bias.to_vec());
        for r in 0..5 {
            let row = &xv[r * C..(r + 1) * C];
            let mean = row.iter().sum::<f64>() / C as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / C as f64;
            for i in 0..C {
                let want = (row[i] - mean) / (var + 1e-5).sqrt() * g[i] + b[i];
                assert!((y[r * C + i] - want).abs() < 1e-12);
            }
        }
    }

    /// Gradients of x, γ and β match f64 central differences.
    #[test]
    fn layer_norm_gradients_match_finite_differences() {
        let dev = Dev::default();
        let ln = ln(&dev);
        let x = dev.tensor_from_vec(rand_vec(3, 2 * 3 * C), (2usize, 3usize, Const::<C>));
        let r = rand_vec(4, 2 * 3 * C);
        let g = weighted_sum(ln.forward(x.leaky_trace()), &r).backward();
        let loss = |ln: &LayerNorm<Const<C>, f64, Dev>, xv: &[f64]| {
            weighted_sum_value(&ln.forward(dev.tensor_from_vec(xv.to_vec(), *x.shape())), &r)
        };
        assert_close("dx", &g.get(&x).as_vec(), &numeric_grad(&x.as_vec(), |v| loss(&ln, v)));
        let num_g = numeric_grad(&ln.weight.to_vec(), |v| {
            let mut l = ln.clone();
            l.weight.set(v);
            loss(&l, &x.as_vec())
        });
        assert_close("dγ", &g.get(&ln.weight.value).as_vec(), &num_g);
        let num_b = numeric_grad(&ln.bias.to_vec(), |v| {
            let mut l = ln.clone();
            l.bias.set(v);
            loss(&l, &x.as_vec())
        });
        assert_close("dβ", &g.get(&ln.bias.value).as_vec(), &num_b);
    }

    /// A frozen LayerNorm gives γ and β no gradient entry.
    #[test]
    fn frozen_layer_norm_allocates_no_parameter_gradient() {
        let dev = Dev::default();
        let mut ln = ln(&dev);
        ln.set_trainable(false);
        let x = dev.tensor_from_vec(rand_vec(3, 2 * C), (2usize, Const::<C>));
        let g = weighted_sum(ln.forward(x.leaky_trace()), &rand_vec(4, 2 * C)).backward();
        assert!(crate::testing::has_grad(&g, &x));
        assert!(!crate::testing::has_grad(&g, &ln.weight.value));
        assert!(!crate::testing::has_grad(&g, &ln.bias.value));
    }
}
