//! Elementwise kernels on host slices, written so the compiler vectorises them, and compiled
//! three times: for AVX-512, for AVX2 + FMA, and for the baseline x86-64 (SSE2) or other targets;
//! [`multiversion!`] picks the widest the CPU has at run time (the binary stays portable).
//!
//! Two things make a loop vectorise: no branches in the body, and no floating-point reduction in
//! one accumulator (the compiler may not reorder `s += x[i]`). So `exp` is a polynomial with a
//! clamp instead of `libm` ([`Real::fast_exp`]), and sums run in [`LANES`] accumulators added up at
//! the end (a fixed order: results are deterministic, and differ from a left-to-right sum only by
//! rounding).

use crate::device::Real;

/// Independent partial sums in a reduction (one AVX-512 register of f32).
pub const LANES: usize = 16;

/// Elements per parallel task for the elementwise kernels.
pub const CHUNK: usize = 1 << 14;

/// Rows of width `c` per parallel task: about [`CHUNK`] elements.
pub fn rows_per_task(c: usize) -> usize {
    (CHUNK / c.max(1)).max(1)
}

/// Which instruction set the kernels run with: 4 = AVX-512, 3 = AVX2 + FMA, 0 = baseline.
#[inline]
pub fn level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::atomic::{AtomicU8, Ordering};
        static LEVEL: AtomicU8 = AtomicU8::new(u8::MAX);
        let l = LEVEL.load(Ordering::Relaxed);
        if l != u8::MAX {
            return l;
        }
        let l = if std::arch::is_x86_feature_detected!("avx512f") {
            4
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            3
        } else {
            0
        };
        LEVEL.store(l, Ordering::Relaxed);
        l
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// Defines `pub fn name<E: Real>(args)` whose body is compiled for AVX-512, AVX2 + FMA and the
/// baseline, and dispatched on [`level`]. The body must only call `#[inline(always)]` helpers
/// (or it runs them without the wide instructions).
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident<E: Real>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name<E: $crate::device::Real>($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn imp<E: $crate::device::Real>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
                unsafe fn v4<E: $crate::device::Real>($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3<E: $crate::device::Real>($($arg: $ty),*) $(-> $ret)? {
                    imp($($arg),*)
                }
                match $crate::ops::simd::level() {
                    // SAFETY: level() saw these features on this CPU.
                    4 => return unsafe { v4($($arg),*) },
                    3 => return unsafe { v3($($arg),*) },
                    _ => {}
                }
            }
            imp($($arg),*)
        }
    };
}
pub use multiversion;

/// The first `n` elements of `v` (a multiple of [`LANES`]) as arrays of [`LANES`]: indexing an
/// array of known length needs no bounds check, so a loop over its lanes vectorises.
#[inline(always)]
pub fn lanes<E>(v: &[E], n: usize) -> impl Iterator<Item = &[E; LANES]> {
    v[..n].chunks_exact(LANES).map(|c| c.try_into().expect("chunks_exact gives LANES elements"))
}

/// Σ x[i], in [`LANES`] partial sums.
#[inline(always)]
pub fn sum<E: Real>(x: &[E]) -> E {
    let mut acc = [E::zero(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] += c[l];
        }
    }
    let mut s = chunks.remainder().iter().fold(E::zero(), |a, &v| a + v);
    for a in acc {
        s += a;
    }
    s
}

/// Σ x[i]·y[i], in [`LANES`] partial sums.
#[inline(always)]
pub fn dot<E: Real>(x: &[E], y: &[E]) -> E {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [E::zero(); LANES];
    let mut xc = x.chunks_exact(LANES);
    let mut yc = y.chunks_exact(LANES);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..LANES {
            acc[l] += a[l] * b[l];
        }
    }
    let mut s = xc.remainder().iter().zip(yc.remainder()).fold(E::zero(), |s, (a, b)| s + *a * *b);
    for a in acc {
        s += a;
    }
    s
}

/// Σ (x[i] − m)², in [`LANES`] partial sums.
#[inline(always)]
pub fn sum_sq_dev<E: Real>(x: &[E], m: E) -> E {
    let mut acc = [E::zero(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            let d = c[l] - m;
            acc[l] += d * d;
        }
    }
    let mut s = chunks.remainder().iter().fold(E::zero(), |a, &v| a + (v - m) * (v - m));
    for a in acc {
        s += a;
    }
    s
}

/// max over x (−∞ for an empty slice).
#[inline(always)]
pub fn max<E: Real>(x: &[E]) -> E {
    let mut acc = [E::neg_infinity(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    let mut m = chunks.remainder().iter().fold(E::neg_infinity(), |a, &v| if v > a { v } else { a });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

/// σ(z) = 1 / (1 + e^(−z)).
#[inline(always)]
pub fn sigmoid<E: Real>(z: E) -> E {
    E::one() / (E::one() + (-z).fast_exp())
}

multiversion! {
    /// dst[i] += src[i].
    pub fn add_assign<E: Real>(dst: &mut [E], src: &[E]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += *s;
        }
    }
}

/// dst[i] += src[i], multithreaded.
pub fn add_assign_par<E: Real>(dst: &mut [E], src: &[E]) {
    use rayon::prelude::*;
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| add_assign(d, s));
}

multiversion! {
    /// dst[i] += a · src[i].
    pub fn axpy<E: Real>(dst: &mut [E], a: E, src: &[E]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += a * *s;
        }
    }
}

multiversion! {
    /// dst[i] = a[i] + b[i] (`dst` need not be initialised).
    pub fn add_to<E: Real>(dst: &mut [std::mem::MaybeUninit<E>], a: &[E], b: &[E]) {
        for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
            d.write(*x + *y);
        }
    }
}

/// dst[i] = src[i] (`dst` need not be initialised).
#[inline(always)]
pub fn write_from<E: Copy>(dst: &mut [std::mem::MaybeUninit<E>], src: &[E]) {
    for (d, s) in dst.iter_mut().zip(src) {
        d.write(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The polynomial exp against the library's, over the range softmax and the sigmoids use,
    /// within 2 units in the last place; and its clamps (no inf or NaN for finite input).
    #[test]
    fn fast_exp_f32_is_within_two_ulp_of_exp() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let (a, b) = (x.fast_exp() as f64, (x as f64).exp());
            worst = worst.max((a - b).abs() / (b * f32::EPSILON as f64));
        }
        assert!(worst < 2.0, "worst error {worst} ulp");
        assert!((-1000f32).fast_exp() >= 0.0 && (-1000f32).fast_exp() < 1e-37);
        assert!((1000f32).fast_exp().is_finite());
    }

    /// The lane sums equal the plain sums (integers: exact in any order).
    #[test]
    fn lane_reductions_equal_plain_ones() {
        for n in [0, 1, 15, 16, 17, 100] {
            let x: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            let y: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
            assert_eq!(sum(&x), x.iter().sum::<f32>());
            assert_eq!(dot(&x, &y), x.iter().zip(&y).map(|(a, b)| a * b).sum::<f32>());
            assert_eq!(max(&x), x.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
        }
    }
}
