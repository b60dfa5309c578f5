//! Depthwise 3D convolution over a token grid: torch `nn.Conv3d(ch, ch, k, padding=k//2,
//! groups=ch)` applied to (B, ch, T, H, W), here on tokens laid out (B·T, H·W, ch).
//!
//! PyTorch's convolution is a cross-correlation: for kernel (kT, kH, kW) and "same" zero padding
//! (kT/2, kH/2, kW/2), `y[b,t,h,w,c] = bias[c] + Σ weight[c, i, j, k] · x[b, t+i−kT/2, h+j−kH/2,
//! w+k−kW/2, c]`, so weight index 0 of a (3,1,1) kernel multiplies frame t−1. dfdx 0.13 has no 3D
//! (nor, on stable, any) convolution: this op is ours, with its own backward.

use dfdx::prelude::*;
use rayon::prelude::*;

use crate::device::{host, tensor, KitDevice, Real};
use crate::param::Param;

use super::Grid;

/// A kernel shape kT × kH × kW (odd sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel3 {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl Kernel3 {
    pub const fn new(t: usize, h: usize, w: usize) -> Self {
        Self { t, h, w }
    }
    pub fn taps(&self) -> usize {
        self.t * self.h * self.w
    }
    pub fn is_odd(&self) -> bool {
        self.t % 2 == 1 && self.h % 2 == 1 && self.w % 2 == 1
    }
    /// Every size odd (the op pads by k/2 on each side, as the official `padding = k // 2`,
    /// which keeps the grid only for odd sizes) and at most 63; the error names `field`.
    pub fn validate(&self, field: &str) -> Result<(), crate::input::ConfigError> {
        crate::input::ensure(self.is_odd() && [self.t, self.h, self.w].iter().all(|k| *k <= 63), field, || {
            format!("kernel {self}: every size must be odd, from 1 to 63 (the conv pads k/2 on each side)")
        })
    }
}

impl std::fmt::Display for Kernel3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.t, self.h, self.w)
    }
}

/// A depthwise `nn.Conv3d` with bias: `weight` (ch, 1, kT, kH, kW) in checkpoints, held as
/// (ch, kT·kH·kW) here; `bias` (ch).
#[derive(Clone, Debug)]
pub struct DwConv3d<E: Dtype, D: Storage<E>> {
    pub weight: Param<(usize, usize), E, D>,
    pub bias: Param<(usize,), E, D>,
    pub kernel: Kernel3,
}

impl<E: Real, D: KitDevice<E>> DwConv3d<E, D> {
    pub fn forward<T: Tape<E, D>>(
        &self,
        x: Tensor<(usize, usize, usize), E, D, T>,
        grid: Grid,
    ) -> Tensor<(usize, usize, usize), E, D, T> {
        dwconv3d(x, &self.weight, &self.bias, self.kernel, grid)
    }
    pub fn channels(&self) -> usize {
        self.bias.numel()
    }
}

crate::impl_params!([E: Real, D: KitDevice<E>] DwConv3d<E, D> {
    param "weight" => weight,
    param "bias" => bias,
});

/// For output position (t, h, w) and tap (i, j, k): the input position, if inside the grid.
#[derive(Clone, Copy)]
struct Geometry {
    g: Grid,
    k: Kernel3,
}

impl Geometry {
    /// Input (t, h, w) seen by output (t, h, w) through tap (i, j, k).
    #[inline]
    fn src(&self, t: usize, h: usize, w: usize, i: usize, j: usize, k: usize) -> Option<(usize, usize, usize)> {
        let st = (t + i).checked_sub(self.k.t / 2).filter(|&v| v < self.g.t)?;
        let sh = (h + j).checked_sub(self.k.h / 2).filter(|&v| v < self.g.h)?;
        let sw = (w + k).checked_sub(self.k.w / 2).filter(|&v| v < self.g.w)?;
        Some((st, sh, sw))
    }
    /// Row of (b, t, h, w) in the (B·T·H·W, ch) token matrix.
    #[inline]
    fn row(&self, b: usize, t: usize, h: usize, w: usize) -> usize {
        ((b * self.g.t + t) * self.g.h + h) * self.g.w + w
    }
    fn taps(&self) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        let k = self.k;
        (0..k.t)
            .flat_map(move |i| (0..k.h).flat_map(move |j| (0..k.w).map(move |l| ((i * k.h + j) * k.w + l, i, j, l))))
    }
}

/// The depthwise convolution on (B·T, H·W, ch) tokens; see the module docs for the formula.
/// Backward: `dx` by the transposed correlation, `dW[c, tap] = Σ gy·x(shifted)` and `db = Σ gy`
/// (only for a trainable weight / bias; the input is kept only for a trainable weight).
pub fn dwconv3d<E, D, T>(
    x: Tensor<(usize, usize, usize), E, D, T>,
    weight: &Param<(usize, usize), E, D>,
    bias: &Param<(usize,), E, D>,
    kernel: Kernel3,
    grid: Grid,
) -> Tensor<(usize, usize, usize), E, D, T>
where
    E: Real,
    D: KitDevice<E>,
    T: Tape<E, D>,
{
    let (frames, positions, ch) = *x.shape();
    assert!(kernel.is_odd(), "dwconv3d: kernel {kernel} must have odd sizes");
    assert_eq!(
        (frames, positions),
        (grid.frames(), grid.positions()),
        "dwconv3d: tokens {frames}x{positions} do not form grid {grid:?}"
    );
    assert_eq!(*weight.value.shape(), (ch, kernel.taps()), "dwconv3d: weight shape for {ch} channels, kernel {kernel}");
    let x = match D::k_dwconv3d(x, weight, bias, kernel, grid) {
        Ok(y) => return y,
        Err(x) => x,
    };
    let taps = kernel.taps();
    let dev = x.device().clone();
    // weight as (taps, ch) so the inner loops run over contiguous channels
    let w_tc = transpose(&weight.host(), ch, taps);
    let (x, mut tape) = x.split_tape();
    let y = conv_forward(&host(&x), &w_tc, &bias.host(), kernel, grid, ch);
    let y = tensor(&dev, y, (frames, positions, ch));

    if T::OWNS_TAPE {
        let (x_ghost, y_ghost) = (x.ghost(), y.ghost());
        let (dw, db) = (weight.grad_key(), bias.grad_key());
        let x_kept = weight.trainable.then_some(x);
        tape.add_backward_op(move |grads| {
            let gy = dev.take(grads.get_or_alloc_mut(&y_ghost)?);
            dev.update(grads.get_or_alloc_mut(&x_ghost)?, |gx| conv_input_grad(&gy, &w_tc, kernel, grid, ch, gx))?;
            let xv = x_kept.as_ref().map(host);
            add_conv_param_grads(&dev, grads, &gy, xv.as_deref(), kernel, grid, ch, dw.as_ref(), db.as_ref())
        });
    }
    y.put_tape(tape)
}

/// The convolution's parameter gradients, added in the backward pass: the weight's
/// ([`conv_weight_grad`]) when it trains (its key given, the input `x` kept for it), then the
/// bias's ([`conv_bias_grad`]) when it does.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_conv_param_grads<E: Real, D: KitDevice<E>>(
    dev: &D,
    grads: &mut Gradients<E, D>,
    gy: &[E],
    x: Option<&[E]>,
    kernel: Kernel3,
    grid: Grid,
    ch: usize,
    w_key: Option<&Tensor<(usize, usize), E, D>>,
    b_key: Option<&Tensor<(usize,), E, D>>,
) -> Result<(), D::Err> {
    if let (Some(k), Some(x)) = (w_key, x) {
        let acc = conv_weight_grad(gy, x, kernel, grid, ch);
        dev.update(grads.get_or_alloc_mut(k)?, |g| super::simd::add_assign(g, &acc))?;
    }
    if let Some(k) = b_key {
        let sums = conv_bias_grad(gy, ch);
        dev.update(grads.get_or_alloc_mut(k)?, |g| super::simd::add_assign(g, &sums))?;
    }
    Ok(())
}

/// The convolution's forward on host rows: x (B·T·H·W, ch) → y, with the weight as (taps, ch).
pub(crate) fn conv_forward<E: Real>(xv: &[E], w_tc: &[E], bv: &[E], kernel: Kernel3, grid: Grid, ch: usize) -> Vec<E> {
    let plane = grid.h * grid.w * ch;
    let mut y = vec![E::zero(); xv.len()];
    y.par_chunks_mut(plane).enumerate().for_each(|(bt, yp)| conv_plane(xv, w_tc, bv, kernel, grid, ch, bt, yp));
    y
}

/// Output frame `bt` (= b·T + t) of [`conv_forward`] into `yp` (H·W rows of ch), every element
/// written: the bias, then the taps in order. A tile of whole videos runs it frame by frame on
/// its own rows, with the tile's grid.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_plane<E: Real>(
    xv: &[E],
    w_tc: &[E],
    bv: &[E],
    kernel: Kernel3,
    grid: Grid,
    ch: usize,
    bt: usize,
    yp: &mut [E],
) {
    let geo = Geometry { g: grid, k: kernel };
    let (b, t) = (bt / grid.t, bt % grid.t);
    for h in 0..grid.h {
        for w in 0..grid.w {
            let yr = &mut yp[(h * grid.w + w) * ch..][..ch];
            yr.copy_from_slice(bv);
            for (tap, i, j, k) in geo.taps() {
                if let Some((st, sh, sw)) = geo.src(t, h, w, i, j, k) {
                    let xr = &xv[geo.row(b, st, sh, sw) * ch..][..ch];
                    let wr = &w_tc[tap * ch..][..ch];
                    for c in 0..ch {
                        yr[c] += wr[c] * xr[c];
                    }
                }
            }
        }
    }
}

/// `gx += ∂y/∂x · gy`: dx[b, s] = Σ_tap w[tap] · gy[b, s − (tap − pad)], a loop over outputs
/// reading each source.
pub(crate) fn conv_input_grad<E: Real>(gy: &[E], w_tc: &[E], kernel: Kernel3, grid: Grid, ch: usize, gx: &mut [E]) {
    let geo = Geometry { g: grid, k: kernel };
    let plane = grid.h * grid.w * ch;
    gx.par_chunks_mut(plane).enumerate().for_each(|(bt, gxp)| {
        let (b, st) = (bt / grid.t, bt % grid.t);
        for sh in 0..grid.h {
            for sw in 0..grid.w {
                let gr = &mut gxp[(sh * grid.w + sw) * ch..][..ch];
                for (tap, i, j, k) in geo.taps() {
                    // output (t, h, w) reads source (st, sh, sw) through tap (i, j, k)
                    let t = (st + kernel.t / 2).checked_sub(i).filter(|&v| v < grid.t);
                    let h = (sh + kernel.h / 2).checked_sub(j).filter(|&v| v < grid.h);
                    let w = (sw + kernel.w / 2).checked_sub(k).filter(|&v| v < grid.w);
                    if let (Some(t), Some(h), Some(w)) = (t, h, w) {
                        let gyr = &gy[geo.row(b, t, h, w) * ch..][..ch];
                        let wr = &w_tc[tap * ch..][..ch];
                        for c in 0..ch {
                            gr[c] += wr[c] * gyr[c];
                        }
                    }
                }
            }
        }
    })
}

/// The weight's gradient `dW[c, tap] = Σ gy·x(shifted)`, as (ch, taps).
pub(crate) fn conv_weight_grad<E: Real>(gy: &[E], xv: &[E], kernel: Kernel3, grid: Grid, ch: usize) -> Vec<E> {
    let geo = Geometry { g: grid, k: kernel };
    let (frames, taps) = (gy.len() / (grid.h * grid.w * ch), kernel.taps());
    // one frame per block: the per-tap sums do not depend on scheduling
    let acc = super::ordered_sum(frames, 1, taps * ch, |bts, acc: &mut [E]| {
        for bt in bts {
            let (b, t) = (bt / grid.t, bt % grid.t);
            for h in 0..grid.h {
                for w in 0..grid.w {
                    let gyr = &gy[geo.row(b, t, h, w) * ch..][..ch];
                    for (tap, i, j, k) in geo.taps() {
                        if let Some((st, sh, sw)) = geo.src(t, h, w, i, j, k) {
                            let xr = &xv[geo.row(b, st, sh, sw) * ch..][..ch];
                            let ar = &mut acc[tap * ch..][..ch];
                            for c in 0..ch {
                                ar[c] += gyr[c] * xr[c];
                            }
                        }
                    }
                }
            }
        }
    });
    transpose(&acc, taps, ch) // back to (ch, taps)
}

/// The bias's gradient `db = Σ gy` over the rows.
pub(crate) fn conv_bias_grad<E: Real>(gy: &[E], ch: usize) -> Vec<E> {
    super::ordered_sum(gy.len() / ch, 256, ch, |rows, a: &mut [E]| {
        for r in rows {
            a.iter_mut().zip(&gy[r * ch..(r + 1) * ch]).for_each(|(u, v)| *u += *v);
        }
    })
}

/// (rows, cols) row-major → (cols, rows) row-major.
pub(crate) fn transpose<E: Real>(v: &[E], rows: usize, cols: usize) -> Vec<E> {
    let mut out = vec![E::zero(); v.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = v[r * cols + c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gradcheck::*;

    /// Direct 5-deep loop over torch's (B, ch, T, H, W) layout with explicit zero padding.
    fn naive(x: &[f64], w: &[f64], b: &[f64], g: Grid, k: Kernel3, ch: usize) -> Vec<f64> {
        let at = |bb: usize, t: isize, h: isize, ww: isize, c: usize| -> f64 {
            if t < 0 || h < 0 || ww < 0 || t >= g.t as isize || h >= g.h as isize || ww >= g.w as isize {
                return 0.0;
            }
            x[((((bb * g.t) + t as usize) * g.h + h as usize) * g.w + ww as usize) * ch + c]
        };
        let mut y = vec![0.0; x.len()];
        for bb in 0..g.b {
            for t in 0..g.t {
                for h in 0..g.h {
                    for ww in 0..g.w {
                        for c in 0..ch {
                            let mut s = b[c];
                            for i in 0..k.t {
                                for j in 0..k.h {
                                    for l in 0..k.w {
                                        let wt = w[c * k.taps() + (i * k.h + j) * k.w + l];
                                        s += wt
                                            * at(
                                                bb,
                                                t as isize + i as isize - (k.t / 2) as isize,
                                                h as isize + j as isize - (k.h / 2) as isize,
                                                ww as isize + l as isize - (k.w / 2) as isize,
                                                c,
                                            );
                                    }
                                }
                            }
                            y[(((bb * g.t + t) * g.h + h) * g.w + ww) * ch + c] = s;
                        }
                    }
                }
            }
        }
        y
    }

    fn check(kernel: Kernel3) {
        let dev = Cpu::default();
        let (g, ch) = (Grid { b: 2, t: 4, h: 3, w: 3 }, 3);
        let n = g.frames() * g.positions() * ch;
        let x = dev.tensor_from_vec(rand_vec(1, n), (g.frames(), g.positions(), ch));
        let w = Param::new(dev.tensor_from_vec(rand_vec(2, ch * kernel.taps()), (ch, kernel.taps())), true);
        let b = Param::new(dev.tensor_from_vec(rand_vec(3, ch), (ch,)), true);
        let y = dwconv3d(x.clone(), &w, &b, kernel, g).as_vec();
        let want = naive(&x.as_vec(), &w.to_vec(), &b.to_vec(), g, kernel, ch);
        assert!(
            y.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-12),
            "{kernel}: forward differs from the naive loop"
        );

        let r = rand_vec(4, n);
        let grads = weighted_sum(dwconv3d(x.leaky_trace(), &w, &b, kernel, g), &r).backward();
        let loss = |xv: &[f64], wv: &[f64], bv: &[f64]| {
            weighted_sum_value(
                &dwconv3d(
                    dev.tensor_from_vec(xv.to_vec(), (g.frames(), g.positions(), ch)),
                    &Param::new(dev.tensor_from_vec(wv.to_vec(), (ch, kernel.taps())), true),
                    &Param::new(dev.tensor_from_vec(bv.to_vec(), (ch,)), true),
                    kernel,
                    g,
                ),
                &r,
            )
        };
        let (xv, wv, bv) = (x.as_vec(), w.to_vec(), b.to_vec());
        assert_close("dx", &grads.get(&x).as_vec(), &numeric_grad(&xv, |v| loss(v, &wv, &bv)));
        assert_close("dW", &grads.get(&w.value).as_vec(), &numeric_grad(&wv, |v| loss(&xv, v, &bv)));
        assert_close("db", &grads.get(&b.value).as_vec(), &numeric_grad(&bv, |v| loss(&xv, &wv, v)));
    }

    /// ST-Adapter's 3×1×1, Table 7's 1×3×3 and 3×3×3, MST-Adapter's longer temporal branches, an
    /// asymmetric 5×3×1 and the pointwise 1×1×1: forward against the loop, gradients against
    /// finite differences.
    #[rstest::rstest]
    #[case(3, 1, 1)]
    #[case(1, 3, 3)]
    #[case(3, 3, 3)]
    #[case(5, 1, 1)]
    #[case(7, 1, 1)]
    #[case(5, 3, 1)]
    #[case(1, 1, 1)]
    fn dwconv3d_matches_naive_loop_and_finite_differences(#[case] t: usize, #[case] h: usize, #[case] w: usize) {
        check(Kernel3::new(t, h, w));
    }

    /// Cross-correlation orientation: with weight (1, 0, 0) on a (3,1,1) kernel, frame t receives
    /// frame t−1 (and frame 0 receives the zero padding), as in PyTorch.
    #[test]
    fn weight_index_zero_multiplies_the_previous_frame() {
        let dev = Cpu::default();
        let g = Grid { b: 1, t: 3, h: 1, w: 1 };
        let x = dev.tensor_from_vec(vec![10.0f64, 20.0, 30.0], (3usize, 1usize, 1usize));
        let w = Param::new(dev.tensor_from_vec(vec![1.0, 0.0, 0.0], (1usize, 3usize)), false);
        let b = Param::new(dev.tensor_from_vec(vec![0.0], (1usize,)), false);
        assert_eq!(dwconv3d(x, &w, &b, Kernel3::new(3, 1, 1), g).as_vec(), vec![0.0, 10.0, 20.0]);
    }
}
