//! Two linear layers with an activation between them, `fc2(act(fc1([ln](x))))` (`+ x` for a
//! residual branch), as one op: CLIP's MLP (`c_fc`, QuickGELU, `c_proj`) and AIM's adapters
//! (`D_fc1`, GELU, `D_fc2`).
//!
//! As separate ops, the hidden activations (4·C wide in CLIP's MLP) would be copied out of a
//! tensor twice (into the activation and into `fc2`) and once more for the activation's backward;
//! here they stay in this op's buffers. The backward keeps the input (for the LayerNorm, or for a
//! trainable `fc1`), two numbers per row for the LayerNorm, and the pre-activation; the
//! LayerNorm's output and the activation are recomputed when a weight gradient needs them.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::activation::{act_and_slope, act_backward_in_place, act_in_place, act_new, mul_assign, Act};
use super::layer_norm::{ln_backward, ln_forward, ln_recompute, LayerNorm};
use super::linear::{affine_new, affine_residual, column_sums, input_grad_new, weight_grad, Linear};
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

    let norm = ln.map(|ln| {
        let (gamma, beta) = (ln.weight.host(), ln.bias.host());
        let (h, stats) = ln_forward(&xv, c, &gamma, &beta, E::of(ln.eps));
        (h, stats, gamma, beta)
    });
    let (w1, b1) = (fc1.weight.host(), fc1.bias.as_ref().map(|b| b.host()));
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
    let (w2, b2) = (fc2.weight.host(), fc2.bias.as_ref().map(|b| b.host()));
    let b2 = b2.as_deref().map(|b| &b[..]);
    let y = if residual { affine_residual(&xv, &a, &w2, b2, hd, c) } else { affine_new(&a, &w2, b2, rows, hd, c) };
    drop(a);
    let y = tensor(&dev, y, shape);

    if traced {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let (g_w1, g_b1) = (fc1.weight.grad_key(), fc1.bias.as_ref().and_then(|b| b.grad_key()));
        let (g_w2, g_b2) = (fc2.weight.grad_key(), fc2.bias.as_ref().and_then(|b| b.grad_key()));
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
            let mut params = None;
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                if residual {
                    add_assign_par(gx, &gy);
                }
                match (&norm, &xv) {
                    (Some((stats, gamma, _)), Some(xv)) => {
                        params = ln_backward(xv, c, stats, gamma, &gh, gx, g_gamma.is_some() || g_beta.is_some());
                    }
                    _ => add_assign_par(gx, &gh),
                }
            })?;
            super::layer_norm::add_ln_param_grads(&dev, grads, g_gamma.as_ref(), g_beta.as_ref(), params)
        });
    }
    y.put_tape(tape)
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
}
