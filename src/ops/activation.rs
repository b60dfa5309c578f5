//! Activations: CLIP's QuickGELU and the exact (erf) GELU of AIM's adapters.

use dfdx::prelude::*;
use rayon::prelude::*;

use crate::device::{host, tensor, KitDevice, Real};

/// Elements per parallel task for the elementwise kernels.
const CHUNK: usize = 1 << 14;

/// An elementwise op `y = f(x)` whose backward is `dx = gy · f'(x)`; keeps `x` when traced.
fn elementwise<S, E, D, T>(x: Tensor<S, E, D, T>, f: fn(E) -> E, df: fn(E) -> E) -> Tensor<S, E, D, T>
where
    S: Shape,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let shape = *x.shape();
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let y: Vec<E> = host(&x).par_iter().with_min_len(CHUNK).map(|&v| f(v)).collect();
    let y = tensor(&dev, y, shape);
    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            let xv = host(&x);
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                gx.par_iter_mut()
                    .with_min_len(CHUNK)
                    .zip(gy.par_iter())
                    .zip(xv.par_iter())
                    .for_each(|((g, &d), &v)| *g += d * df(v))
            })
        });
    }
    y.put_tape(tape)
}

fn sigmoid<E: Real>(z: E) -> E {
    E::one() / (E::one() + (-z).exp())
}

fn quick_gelu_f<E: Real>(x: E) -> E {
    x * sigmoid(E::of(1.702) * x)
}

fn quick_gelu_df<E: Real>(x: E) -> E {
    let k = E::of(1.702);
    let s = sigmoid(k * x);
    s + k * x * s * (E::one() - s)
}

fn gelu_f<E: Real>(x: E) -> E {
    E::of(0.5) * x * (E::one() + (x * E::of(std::f64::consts::FRAC_1_SQRT_2)).erf())
}

fn gelu_df<E: Real>(x: E) -> E {
    let cdf = E::of(0.5) * (E::one() + (x * E::of(std::f64::consts::FRAC_1_SQRT_2)).erf());
    let pdf = (-(x * x) * E::of(0.5)).exp() * E::of(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    cdf + x * pdf
}

/// CLIP's QuickGELU `x·σ(1.702·x)` (the activation inside every CLIP MLP).
pub fn quick_gelu<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Tensor<S, E, D, T> {
    elementwise(x, quick_gelu_f, quick_gelu_df)
}

/// The exact GELU `x·Φ(x) = x/2·(1 + erf(x/√2))` (torch `nn.GELU()`, AIM's adapters). The tanh
/// approximation would move AIM's block outputs by ~1e-3 (see the parity fixtures' notes).
pub fn gelu<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Tensor<S, E, D, T> {
    elementwise(x, gelu_f, gelu_df)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;

    type Traced = Tensor<(usize, usize), f64, Cpu, OwnedTape<f64, Cpu>>;
    type Plain = Tensor<(usize, usize), f64, Cpu>;

    fn check(op: fn(Traced) -> Traced, op0: fn(Plain) -> Plain) {
        let dev = Cpu::default();
        let xv: Vec<f64> = rand_vec(1, 40).iter().map(|v| 4.0 * v).collect();
        let x = dev.tensor_from_vec(xv.clone(), (5usize, 8usize));
        let r = rand_vec(2, 40);
        let g = weighted_sum(op(x.leaky_trace()), &r).backward();
        let num =
            numeric_grad(&xv, |v| weighted_sum_value(&op0(dev.tensor_from_vec(v.to_vec(), (5usize, 8usize))), &r));
        assert_close("dx", &g.get(&x).as_vec(), &num);
    }

    /// QuickGELU's gradient matches central differences on [-4, 4].
    #[test]
    fn quick_gelu_gradient_matches_finite_differences() {
        check(quick_gelu, quick_gelu);
    }

    /// Exact GELU's gradient matches central differences on [-4, 4].
    #[test]
    fn gelu_gradient_matches_finite_differences() {
        check(gelu, gelu);
    }

    /// Forward values against closed forms: QuickGELU(1) = σ(1.702), GELU(1) = Φ(1) = 0.841344746…
    #[test]
    fn activations_match_reference_values() {
        let dev = Cpu::default();
        let x = dev.tensor_from_vec(vec![1.0f64, -2.0, 0.0], (1usize, 3usize));
        let q = quick_gelu(x.clone()).as_vec();
        assert!((q[0] - 1.0 / (1.0 + (-1.702f64).exp())).abs() < 1e-15);
        assert!((q[1] - (-2.0) / (1.0 + (3.404f64).exp())).abs() < 1e-15);
        let g = gelu(x).as_vec();
        assert!((g[0] - 0.841_344_746_068_542_9).abs() < 1e-12);
        assert!((g[1] - (-2.0 * 0.022_750_131_948_179_2)).abs() < 1e-12);
        assert_eq!(g[2], 0.0);
    }
}
