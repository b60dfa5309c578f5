//! LayerNorm over the last axis, fused and multithreaded, with torch semantics (biased variance,
//! `eps` inside the square root; CLIP uses eps = 1e-5 everywhere).

use dfdx::prelude::*;
use rayon::prelude::*;

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

/// `y = (x − mean) / sqrt(var + eps) · γ + β` per row. Backward: with `x̂` the normalised input and
/// `g = gy·γ`, `dx = (g − mean(g) − x̂·mean(g·x̂)) / sqrt(var + eps)`; `dγ = Σ gy·x̂`, `dβ = Σ gy`
/// (only for trainable γ, β).
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
    let shape = *x.shape();
    let rows = shape.rows();
    let dev = x.device().clone();
    let eps = E::of(ln.eps);
    let inv_c = E::one() / E::of(c as f64);

    let (x, mut tape) = x.split_tape();
    let (gamma, beta) = (ln.weight.host(), ln.bias.host());
    let mut xhat = vec![E::zero(); rows * c];
    let mut rstd = vec![E::zero(); rows];
    let mut y = vec![E::zero(); rows * c];
    {
        let xv = host(&x);
        xhat.par_chunks_mut(c).zip(rstd.par_iter_mut()).zip(y.par_chunks_mut(c)).zip(xv.par_chunks(c)).for_each(
            |(((xh, rs), yr), xr)| {
                let mean = xr.iter().copied().sum::<E>() * inv_c;
                let var = xr.iter().map(|&v| (v - mean) * (v - mean)).sum::<E>() * inv_c;
                *rs = E::one() / (var + eps).sqrt();
                for i in 0..c {
                    xh[i] = (xr[i] - mean) * *rs;
                    yr[i] = xh[i] * gamma[i] + beta[i];
                }
            },
        );
    }
    let y = tensor(&dev, y, shape);

    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let dgamma = ln.weight.trainable.then(|| ln.weight.value.ghost());
        let dbeta = ln.bias.trainable.then(|| ln.bias.value.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            let gam = &gamma;
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                gx.par_chunks_mut(c).zip(gy.par_chunks(c)).zip(xhat.par_chunks(c)).zip(rstd.par_iter()).for_each(
                    |(((gxr, gyr), xh), &rs)| {
                        let (mut mg, mut mgx) = (E::zero(), E::zero());
                        for i in 0..c {
                            let g = gyr[i] * gam[i];
                            mg += g;
                            mgx += g * xh[i];
                        }
                        mg *= inv_c;
                        mgx *= inv_c;
                        for i in 0..c {
                            gxr[i] += (gyr[i] * gam[i] - mg - xh[i] * mgx) * rs;
                        }
                    },
                )
            })?;
            if dgamma.is_some() || dbeta.is_some() {
                let (dg, db) = gy
                    .par_chunks(c)
                    .zip(xhat.par_chunks(c))
                    .fold(
                        || (vec![E::zero(); c], vec![E::zero(); c]),
                        |(mut dg, mut db), (gyr, xh)| {
                            for i in 0..c {
                                dg[i] += gyr[i] * xh[i];
                                db[i] += gyr[i];
                            }
                            (dg, db)
                        },
                    )
                    .reduce(
                        || (vec![E::zero(); c], vec![E::zero(); c]),
                        |(mut a, mut b), (c2, d2)| {
                            a.iter_mut().zip(&c2).for_each(|(u, v)| *u += *v);
                            b.iter_mut().zip(&d2).for_each(|(u, v)| *u += *v);
                            (a, b)
                        },
                    );
                if let Some(t) = &dgamma {
                    dev.update(grads.get_or_alloc_mut(t)?, |g| g.iter_mut().zip(&dg).for_each(|(u, v)| *u += *v))?;
                }
                if let Some(t) = &dbeta {
                    dev.update(grads.get_or_alloc_mut(t)?, |g| g.iter_mut().zip(&db).for_each(|(u, v)| *u += *v))?;
                }
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

    type Dev = Cpu;
    const C: usize = 6;

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
