//! Linear layers: `y = x·Wᵀ + b` over the last axis, with the weight gradient computed only for
//! trainable weights.

use std::sync::Arc;

use dfdx::prelude::*;

use super::gemm::{matmul, Mat, MatMut, Threads};
use super::{stats, Rows};
use crate::device::{host, tensor, KitDevice, Real};
use crate::param::Param;

/// A torch `nn.Linear`: `weight` is (out, in), `bias` is (out).
#[derive(Clone, Debug)]
pub struct Linear<I: Dim, O: Dim, E: Dtype, D: Storage<E>> {
    pub weight: Param<(O, I), E, D>,
    pub bias: Option<Param<(O,), E, D>>,
}

impl<I: Dim, O: Dim, E: Real, D: KitDevice<E>> Linear<I, O, E, D> {
    pub fn forward<S: Rows<Feat = I>, T: Tape<E, D>>(&self, x: Tensor<S, E, D, T>) -> Tensor<S::With<O>, E, D, T> {
        linear(x, &self.weight, self.bias.as_ref())
    }

    pub fn in_features(&self) -> usize {
        self.weight.value.shape().1.size()
    }

    pub fn out_features(&self) -> usize {
        self.weight.value.shape().0.size()
    }

    /// Sets every parameter's `trainable` flag.
    pub fn set_trainable(&mut self, trainable: bool) {
        self.weight.trainable = trainable;
        if let Some(b) = &mut self.bias {
            b.trainable = trainable;
        }
    }
}

crate::impl_params!([I: Dim, O: Dim, E: Real, D: KitDevice<E>] Linear<I, O, E, D> {
    param "weight" => weight,
    module "bias" => bias,
});

// ANCHOR: linear
/// `y = x·Wᵀ + b`. The backward pass always propagates to `x` (when traced); it computes
/// `dW = gyᵀ·x` only if `weight.trainable` (and keeps `x` alive only then), and `db` only if
/// `bias.trainable`.
pub fn linear<S, I, O, E, D, T>(
    x: Tensor<S, E, D, T>,
    weight: &Param<(O, I), E, D>,
    bias: Option<&Param<(O,), E, D>>,
) -> Tensor<S::With<O>, E, D, T>
where
    S: Rows<Feat = I>,
    I: Dim,
    O: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let want_dw = weight.trainable;
    let want_db = bias.is_some_and(|b| b.trainable);
    linear_impl(x, (&weight.value, weight.host()), bias.map(|b| (&b.value, b.host())), want_dw, want_db)
}

/// A frozen linear layer: the backward pass computes the input gradient only. No gradient buffer
/// is allocated for `weight` or `bias`, no `gyᵀ·x` product runs, and `x` is not kept for it.
pub fn frozen_linear<S, I, O, E, D, T>(
    x: Tensor<S, E, D, T>,
    weight: &Tensor<(O, I), E, D>,
    bias: Option<&Tensor<(O,), E, D>>,
) -> Tensor<S::With<O>, E, D, T>
where
    S: Rows<Feat = I>,
    I: Dim,
    O: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    linear_impl(x, (weight, Arc::new(host(weight))), bias.map(|b| (b, Arc::new(host(b)))), false, false)
}
// ANCHOR_END: linear

/// A tensor and its values on the host.
type WithHost<'a, S, E, D> = (&'a Tensor<S, E, D>, Arc<Vec<E>>);

fn linear_impl<S, I, O, E, D, T>(
    x: Tensor<S, E, D, T>,
    weight: WithHost<(O, I), E, D>,
    bias: Option<WithHost<(O,), E, D>>,
    want_dw: bool,
    want_db: bool,
) -> Tensor<S::With<O>, E, D, T>
where
    S: Rows<Feat = I>,
    I: Dim,
    O: Dim,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let (weight, wv) = weight;
    let (o_dim, i_dim) = *weight.shape();
    let (n_out, n_in) = (o_dim.size(), i_dim.size());
    assert_eq!(x.shape().feat().size(), n_in, "linear: input width differs from weight (out {n_out}, in {n_in})");
    let rows = x.shape().rows();
    let out_shape = x.shape().with_feat(o_dim);
    let dev = x.device().clone();

    let (x, mut tape) = x.split_tape();
    let y = {
        let xv = host(&x);
        let mut y = match &bias {
            Some((_, b)) => b.repeat(rows),
            None => vec![E::zero(); rows * n_out],
        };
        matmul(
            MatMut::new(&mut y, rows, n_out),
            Mat::new(&xv, rows, n_in),
            Mat::new(&wv, n_out, n_in).t(),
            bias.is_some(),
            Threads::All,
        );
        tensor(&dev, y, out_shape)
    };

    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let w_ghost = weight.ghost();
        let b_ghost = bias.filter(|_| want_db).map(|(b, _)| b.ghost());
        let x_kept = want_dw.then_some(x);
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                matmul(
                    MatMut::new(gx, rows, n_in),
                    Mat::new(&gy, rows, n_out),
                    Mat::new(&wv, n_out, n_in),
                    true,
                    Threads::All,
                )
            })?;
            if let Some(x) = x_kept {
                stats::count_weight_grad_product();
                let xv = host(&x);
                dev.update(grads.get_or_alloc_mut(&w_ghost)?, |gw| {
                    matmul(
                        MatMut::new(gw, n_out, n_in),
                        Mat::new(&gy, rows, n_out).t(),
                        Mat::new(&xv, rows, n_in),
                        true,
                        Threads::All,
                    )
                })?;
            }
            if let Some(b_ghost) = b_ghost {
                dev.update(grads.get_or_alloc_mut(&b_ghost)?, |gb| {
                    for row in gy.chunks_exact(n_out) {
                        for (g, v) in gb.iter_mut().zip(row) {
                            *g += *v;
                        }
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

    type Dev = Cpu;

    fn layer(dev: &Dev, trainable: bool) -> Linear<Const<5>, usize, f64, Dev> {
        let w = dev.tensor_from_vec(rand_vec(1, 3 * 5), (3usize, Const::<5>));
        let b = dev.tensor_from_vec(rand_vec(2, 3), (3usize,));
        Linear { weight: Param::new(w, trainable), bias: Some(Param::new(b, trainable)) }
    }

    fn input(dev: &Dev) -> Tensor<(usize, usize, Const<5>), f64, Dev> {
        dev.tensor_from_vec(rand_vec(3, 2 * 4 * 5), (2usize, 4usize, Const::<5>))
    }

    /// The forward pass is x·Wᵀ + b, checked against the sum over the inner index.
    #[test]
    fn linear_matches_the_naive_sum() {
        let dev = Dev::default();
        let (lin, x) = (layer(&dev, false), input(&dev));
        let y = lin.forward(x.clone()).as_vec();
        let (xv, wv, bv) = (x.as_vec(), lin.weight.to_vec(), lin.bias.as_ref().unwrap().to_vec());
        for r in 0..8 {
            for o in 0..3 {
                let want: f64 = bv[o] + (0..5).map(|i| xv[r * 5 + i] * wv[o * 5 + i]).sum::<f64>();
                assert!((y[r * 3 + o] - want).abs() < 1e-12);
            }
        }
    }

    /// Gradients of x, W and b match f64 central differences.
    #[test]
    fn linear_gradients_match_finite_differences() {
        let dev = Dev::default();
        let (lin, x) = (layer(&dev, true), input(&dev));
        let r = rand_vec(9, 2 * 4 * 3);
        let g = weighted_sum(lin.forward(x.leaky_trace()), &r).backward();

        let loss = |lin: &Linear<Const<5>, usize, f64, Dev>, x: &Tensor<(usize, usize, Const<5>), f64, Dev>| {
            weighted_sum_value(&lin.forward(x.clone()), &r)
        };
        let num_x = numeric_grad(&x.as_vec(), |v| loss(&lin, &dev.tensor_from_vec(v.to_vec(), *x.shape())));
        assert_close("dx", &g.get(&x).as_vec(), &num_x);
        let num_w = numeric_grad(&lin.weight.to_vec(), |v| {
            let mut l = lin.clone();
            l.weight.set(v);
            loss(&l, &x)
        });
        assert_close("dW", &g.get(&lin.weight.value).as_vec(), &num_w);
        let num_b = numeric_grad(&lin.bias.as_ref().unwrap().to_vec(), |v| {
            let mut l = lin.clone();
            l.bias.as_mut().unwrap().set(v);
            loss(&l, &x)
        });
        assert_close("db", &g.get(&lin.bias.as_ref().unwrap().value).as_vec(), &num_b);
    }

    /// `frozen_linear`: the input gradient matches finite differences, and neither the weight nor
    /// the bias gets a gradient entry, nor does a weight-gradient product run.
    #[test]
    fn frozen_linear_propagates_the_input_gradient_only() {
        let dev = Dev::default();
        let (lin, x) = (layer(&dev, true), input(&dev));
        let r = rand_vec(9, 2 * 4 * 3);
        let before = stats::weight_grad_products();
        let bias = lin.bias.as_ref().map(|b| &b.value);
        let g = weighted_sum(frozen_linear(x.leaky_trace(), &lin.weight.value, bias), &r).backward();
        assert_eq!(stats::weight_grad_products(), before);
        let num_x = numeric_grad(&x.as_vec(), |v| {
            weighted_sum_value(&lin.forward(dev.tensor_from_vec(v.to_vec(), *x.shape())), &r)
        });
        assert_close("dx", &g.get(&x).as_vec(), &num_x);
        assert!(!crate::testing::has_grad(&g, &lin.weight.value));
        assert!(!crate::testing::has_grad(&g, &lin.bias.as_ref().unwrap().value));
    }
}
