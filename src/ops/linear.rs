//! Linear layers: `y = x·Wᵀ + b` over the last axis, with the weight gradient computed only for
//! trainable weights.

use std::sync::Arc;

use dfdx::prelude::*;

use rayon::prelude::*;

use super::gemm::{matmul, Mat, MatMut, Threads};
use super::simd::{add_assign, add_to, rows_per_task, write_from};
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
    let x = match D::k_linear(x, &weight.value, bias.map(|b| &b.value), want_dw, want_db) {
        Ok(y) => return y,
        Err(x) => x,
    };
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
    let x = match D::k_linear(x, weight, bias, false, false) {
        Ok(y) => return y,
        Err(x) => x,
    };
    linear_impl(x, (weight, Arc::new(host(weight))), bias.map(|b| (b, Arc::new(host(b)))), false, false)
}
// ANCHOR_END: linear

/// `x·Wᵀ + b` into a new vector (rows, n_out), not zero-filled first.
pub(crate) fn affine_new<E: Real>(x: &[E], w: &[E], b: Option<&[E]>, rows: usize, n_in: usize, n_out: usize) -> Vec<E> {
    // SAFETY: every element is written: the bias rows first (then the product is added), or the
    // product alone with accumulate = false.
    unsafe {
        super::written(rows * n_out, |y| {
            if let Some(b) = b {
                y.par_chunks_mut(rows_per_task(n_out) * n_out)
                    .for_each(|ch| ch.chunks_exact_mut(n_out).for_each(|row| write_from(row, b)));
            }
            let (x, w) = (Mat::new(x, rows, n_in), Mat::new(w, n_out, n_in).t());
            matmul(MatMut::uninit(y, rows, n_out), x, w, b.is_some(), Threads::All);
        })
    }
}

/// `res + x·Wᵀ + b` into a new vector (a residual branch's output): res (rows, n_out). One pass
/// writes `res + b` (or `res`), and the product is added to it; nothing is zero-filled.
pub(crate) fn affine_residual<E: Real>(
    res: &[E],
    x: &[E],
    w: &[E],
    b: Option<&[E]>,
    n_in: usize,
    n_out: usize,
) -> Vec<E> {
    let rows = res.len() / n_out.max(1);
    let block = rows_per_task(n_out) * n_out;
    // SAFETY: the first pass writes every element (res + b, or res), the product then adds to it.
    unsafe {
        super::written(res.len(), |y| {
            y.par_chunks_mut(block).zip(res.par_chunks(block)).for_each(|(ych, rch)| match b {
                Some(b) => {
                    ych.chunks_exact_mut(n_out).zip(rch.chunks_exact(n_out)).for_each(|(yr, rr)| add_to(yr, rr, b))
                }
                None => write_from(ych, rch),
            });
            let (x, w) = (Mat::new(x, rows, n_in), Mat::new(w, n_out, n_in).t());
            matmul(MatMut::uninit(y, rows, n_out), x, w, true, Threads::All);
        })
    }
}

/// `[res +] x·Wᵀ + b` into `y` (rows, n_out) on the calling thread: one row tile of
/// [`affine_new`] or [`affine_residual`] inside a parallel loop over tiles. Each row gets the same
/// bits as there: the same first pass (`res + b`, `res`, `b` or nothing), then the product added
/// (gemm's sum over the inner dimension is cut into blocks that depend on that dimension only).
pub(crate) fn affine_tile<E: Real>(
    y: &mut [std::mem::MaybeUninit<E>],
    res: Option<&[E]>,
    x: &[E],
    w: &[E],
    b: Option<&[E]>,
    n_in: usize,
    n_out: usize,
) {
    let rows = y.len() / n_out.max(1);
    match (res, b) {
        (Some(res), Some(b)) => {
            y.chunks_exact_mut(n_out).zip(res.chunks_exact(n_out)).for_each(|(yr, rr)| add_to(yr, rr, b))
        }
        (Some(res), None) => write_from(y, res),
        (None, Some(b)) => y.chunks_exact_mut(n_out).for_each(|row| write_from(row, b)),
        (None, None) => {}
    }
    let (x, w) = (Mat::new(x, rows, n_in), Mat::new(w, n_out, n_in).t());
    matmul(MatMut::uninit(y, rows, n_out), x, w, res.is_some() || b.is_some(), Threads::One);
}

/// `gy·W` into `gx` (rows, n_in) on the calling thread, every element written: one row tile of
/// [`input_grad_new`] (the same bits per row).
pub(crate) fn input_grad_tile<E: Real>(
    gx: &mut [std::mem::MaybeUninit<E>],
    gy: &[E],
    w: &[E],
    n_in: usize,
    n_out: usize,
) {
    let rows = gy.len() / n_out.max(1);
    matmul(MatMut::uninit(gx, rows, n_in), Mat::new(gy, rows, n_out), Mat::new(w, n_out, n_in), false, Threads::One)
}

/// `gy·W` into a new vector (rows, n_in), not zero-filled first: gy (rows, n_out), W (n_out, n_in).
pub(crate) fn input_grad_new<E: Real>(gy: &[E], w: &[E], n_in: usize, n_out: usize) -> Vec<E> {
    let rows = gy.len() / n_out.max(1);
    // SAFETY: the product with accumulate = false writes every element.
    unsafe {
        super::written(rows * n_in, |gx| {
            let (gy, w) = (Mat::new(gy, rows, n_out), Mat::new(w, n_out, n_in));
            matmul(MatMut::uninit(gx, rows, n_in), gy, w, false, Threads::All)
        })
    }
}

/// The sums over rows of `g` (rows, n): a bias gradient.
pub(crate) fn column_sums<E: Real>(g: &[E], n: usize) -> Vec<E> {
    // Fixed blocks summed in block order (`ordered_sum`): the same bits for any thread count.
    super::ordered_sum(g.len() / n.max(1), rows_per_task(n), n, |rows, acc: &mut [E]| {
        for row in g[rows.start * n..rows.end * n].chunks_exact(n) {
            add_assign(acc, row);
        }
    })
}

/// `gW += gyᵀ·x`: gW (n_out, n_in), gy (rows, n_out), x (rows, n_in). Counted in [`stats`].
pub(crate) fn weight_grad<E: Real>(gw: &mut [E], gy: &[E], x: &[E], n_in: usize, n_out: usize) {
    stats::count_weight_grad_product();
    let rows = gy.len() / n_out.max(1);
    matmul(MatMut::new(gw, n_out, n_in), Mat::new(gy, rows, n_out).t(), Mat::new(x, rows, n_in), true, Threads::All);
}

/// `gx = gy·W` (or `gx += gy·W` when `accumulate`): gx (rows, n_in), gy (rows, n_out), W (n_out, n_in).
pub(crate) fn input_grad<E: Real>(gx: &mut [E], gy: &[E], w: &[E], n_in: usize, n_out: usize, accumulate: bool) {
    let rows = gy.len() / n_out.max(1);
    matmul(MatMut::new(gx, rows, n_in), Mat::new(gy, rows, n_out), Mat::new(w, n_out, n_in), accumulate, Threads::All);
}

/// A linear layer's parameter gradients, added in the backward pass: `dW += gyᵀ·x` when the
/// weight trains (its key given, `x` kept for it), then `db += Σ gy` when the bias does. The keys
/// are the parameter tensors (shared, not copied), as [`Param::grad_key`] gives them.
pub(crate) fn add_param_grads<E: Real, D: KitDevice<E>, SW: Shape, SB: Shape>(
    dev: &D,
    grads: &mut Gradients<E, D>,
    gy: &[E],
    x: Option<&[E]>,
    (n_in, n_out): (usize, usize),
    w_key: Option<&Tensor<SW, E, D>>,
    b_key: Option<&Tensor<SB, E, D>>,
) -> Result<(), D::Err> {
    if let (Some(k), Some(x)) = (w_key, x) {
        dev.update(grads.get_or_alloc_mut(k)?, |gw| weight_grad(gw, gy, x, n_in, n_out))?;
    }
    if let Some(k) = b_key {
        let sums = column_sums(gy, n_out);
        dev.update(grads.get_or_alloc_mut(k)?, |gb| add_assign(gb, &sums))?;
    }
    Ok(())
}

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
    let xv = host(&x);
    let y = affine_new(&xv, &wv, bias.as_ref().map(|(_, b)| &b[..]), rows, n_in, n_out);
    let y = tensor(&dev, y, out_shape);

    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let w_key = want_dw.then(|| weight.clone());
        let b_key = bias.filter(|_| want_db).map(|(b, _)| b.clone());
        let x_kept = want_dw.then_some(xv);
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| input_grad(gx, &gy, &wv, n_in, n_out, true))?;
            add_param_grads(&dev, grads, &gy, x_kept.as_deref(), (n_in, n_out), w_key.as_ref(), b_key.as_ref())
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
