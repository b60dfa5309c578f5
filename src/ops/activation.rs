//! Activations: CLIP's QuickGELU and the exact (erf) GELU of AIM's adapters.

use dfdx::prelude::*;
use rayon::prelude::*;

use super::simd::{multiversion, sigmoid, CHUNK};
use crate::device::{host, tensor, KitDevice, Real};

/// The activations of the kit's MLPs and adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// CLIP's QuickGELU `x·σ(1.702·x)`.
    QuickGelu,
    /// The exact GELU `x·Φ(x)`.
    Gelu,
}

const QUICK: f64 = 1.702;

impl Act {
    #[inline(always)]
    fn f<E: Real>(self, x: E) -> E {
        match self {
            Act::QuickGelu => x * sigmoid(E::of(QUICK) * x),
            Act::Gelu => E::of(0.5) * x * (E::one() + (x * E::of(std::f64::consts::FRAC_1_SQRT_2)).erf()),
        }
    }

    #[inline(always)]
    fn df<E: Real>(self, x: E) -> E {
        match self {
            Act::QuickGelu => {
                let k = E::of(QUICK);
                let s = sigmoid(k * x);
                s + k * x * s * (E::one() - s)
            }
            Act::Gelu => {
                let cdf = E::of(0.5) * (E::one() + (x * E::of(std::f64::consts::FRAC_1_SQRT_2)).erf());
                let pdf = (-(x * x) * E::of(0.5)).fast_exp() * E::of(1.0 / (2.0 * std::f64::consts::PI).sqrt());
                cdf + x * pdf
            }
        }
    }

    /// `(f(x), f'(x))` sharing the sigmoid (QuickGELU) or the erf (GELU): the same expressions,
    /// so the same bits, as [`Act::f`] and [`Act::df`].
    #[inline(always)]
    fn f_df<E: Real>(self, x: E) -> (E, E) {
        match self {
            Act::QuickGelu => {
                let k = E::of(QUICK);
                let s = sigmoid(k * x);
                (x * s, s + k * x * s * (E::one() - s))
            }
            Act::Gelu => {
                let e = (x * E::of(std::f64::consts::FRAC_1_SQRT_2)).erf();
                let cdf = E::of(0.5) * (E::one() + e);
                let pdf = (-(x * x) * E::of(0.5)).fast_exp() * E::of(1.0 / (2.0 * std::f64::consts::PI).sqrt());
                (E::of(0.5) * x * (E::one() + e), cdf + x * pdf)
            }
        }
    }
}

multiversion! {
    /// y[i] = f(x[i]) and x[i] ← f'(x[i]), in one pass (`y` need not be initialised).
    pub(crate) fn act_and_slope<E: Real>(act: Act, x: &mut [E], y: &mut [std::mem::MaybeUninit<E>]) {
        match act {
            Act::QuickGelu => y.iter_mut().zip(x.iter_mut()).for_each(|(y, x)| {
                let (f, d) = Act::QuickGelu.f_df(*x);
                y.write(f);
                *x = d;
            }),
            Act::Gelu => y.iter_mut().zip(x.iter_mut()).for_each(|(y, x)| {
                let (f, d) = Act::Gelu.f_df(*x);
                y.write(f);
                *x = d;
            }),
        }
    }
}

multiversion! {
    /// y[i] = f(x[i]) and d[i] = f'(x[i]), in one pass (`y` and `d` need not be initialised): the
    /// same bits as [`act_and_slope`], with the pre-activation left in place (a tile's scratch) and
    /// the slope written elsewhere (the rows the backward pass keeps).
    pub(crate) fn act_and_slope_to<E: Real>(
        act: Act,
        x: &[E],
        y: &mut [std::mem::MaybeUninit<E>],
        d: &mut [std::mem::MaybeUninit<E>],
    ) {
        match act {
            Act::QuickGelu => y.iter_mut().zip(d.iter_mut()).zip(x).for_each(|((y, d), &x)| {
                let (f, s) = Act::QuickGelu.f_df(x);
                y.write(f);
                d.write(s);
            }),
            Act::Gelu => y.iter_mut().zip(d.iter_mut()).zip(x).for_each(|((y, d), &x)| {
                let (f, s) = Act::Gelu.f_df(x);
                y.write(f);
                d.write(s);
            }),
        }
    }
}

multiversion! {
    /// g[i] ← g[i] · d[i].
    pub(crate) fn mul_assign<E: Real>(g: &mut [E], d: &[E]) {
        for (g, d) in g.iter_mut().zip(d) {
            *g *= *d;
        }
    }
}

multiversion! {
    /// y[i] = f(x[i]) (`y` need not be initialised).
    pub(crate) fn act_forward<E: Real>(act: Act, x: &[E], y: &mut [std::mem::MaybeUninit<E>]) {
        match act {
            Act::QuickGelu => y.iter_mut().zip(x).for_each(|(y, &x)| {
                y.write(Act::QuickGelu.f(x));
            }),
            Act::Gelu => y.iter_mut().zip(x).for_each(|(y, &x)| {
                y.write(Act::Gelu.f(x));
            }),
        }
    }
}

multiversion! {
    /// x[i] ← f(x[i]).
    pub(crate) fn act_in_place<E: Real>(act: Act, x: &mut [E]) {
        match act {
            Act::QuickGelu => x.iter_mut().for_each(|x| *x = Act::QuickGelu.f(*x)),
            Act::Gelu => x.iter_mut().for_each(|x| *x = Act::Gelu.f(*x)),
        }
    }
}

multiversion! {
    /// out[i] += g[i] · f'(x[i]).
    pub(crate) fn act_backward<E: Real>(act: Act, x: &[E], g: &[E], out: &mut [E]) {
        match act {
            Act::QuickGelu => {
                out.iter_mut().zip(g).zip(x).for_each(|((o, &g), &x)| *o += g * Act::QuickGelu.df(x))
            }
            Act::Gelu => out.iter_mut().zip(g).zip(x).for_each(|((o, &g), &x)| *o += g * Act::Gelu.df(x)),
        }
    }
}

multiversion! {
    /// g[i] ← g[i] · f'(x[i]).
    pub(crate) fn act_backward_in_place<E: Real>(act: Act, x: &[E], g: &mut [E]) {
        match act {
            Act::QuickGelu => g.iter_mut().zip(x).for_each(|(g, &x)| *g *= Act::QuickGelu.df(x)),
            Act::Gelu => g.iter_mut().zip(x).for_each(|(g, &x)| *g *= Act::Gelu.df(x)),
        }
    }
}

/// `f(x)` elementwise into a new vector, multithreaded (not zero-filled first).
pub(crate) fn act_new<E: Real>(act: Act, x: &[E]) -> Vec<E> {
    // SAFETY: act_forward writes every element of each chunk.
    unsafe {
        super::written(x.len(), |y| {
            y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| act_forward(act, x, y))
        })
    }
}

/// `y = f(x)` elementwise, multithreaded; the backward is `dx += gy · f'(x)` and keeps `x` when traced.
pub fn activation<S, E, D, T>(x: Tensor<S, E, D, T>, act: Act) -> Tensor<S, E, D, T>
where
    S: Shape,
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let x = match D::k_activation(x, act) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let shape = *x.shape();
    let dev = x.device().clone();
    let (x, mut tape) = x.split_tape();
    let xv = host(&x);
    let y = act_new(act, &xv);
    let y = tensor(&dev, y, shape);
    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| {
                gx.par_chunks_mut(CHUNK)
                    .zip(gy.par_chunks(CHUNK))
                    .zip(xv.par_chunks(CHUNK))
                    .for_each(|((o, g), x)| act_backward(act, x, g, o))
            })
        });
    }
    y.put_tape(tape)
}

/// CLIP's QuickGELU `x·σ(1.702·x)` (the activation inside every CLIP MLP).
pub fn quick_gelu<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Tensor<S, E, D, T> {
    activation(x, Act::QuickGelu)
}

/// The exact GELU `x·Φ(x) = x/2·(1 + erf(x/√2))` (torch `nn.GELU()`, AIM's adapters). The tanh
/// approximation would move AIM's block outputs by ~1e-3 (see the parity fixtures' notes).
pub fn gelu<S: Shape, E: Real, D: KitDevice<E>, T: Tape<E, D>>(x: Tensor<S, E, D, T>) -> Tensor<S, E, D, T> {
    activation(x, Act::Gelu)
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
