//! What our own ops need from an element type and from a dfdx device.
//!
//! Every op in [`crate::ops`] runs its kernel on host slices. On [`Cpu`] gradients are accumulated
//! in the tensor's own buffer; on `Cuda` (feature `cuda`) the buffer makes a round trip through
//! host memory, which is correct and slow.

use dfdx::prelude::*;

/// The floating-point element types our kernels are written for: `f32` for models, `f64` for the
/// finite-difference gradient checks.
pub trait Real:
    Dtype + num_traits::Float + num_traits::FromPrimitive + std::iter::Sum + std::fmt::Display + Send + Sync + 'static
{
    /// The error function (exact GELU needs it; `num_traits::Float` has none).
    fn erf(self) -> Self;
    /// e^x in a form the compiler can vectorise (see [`crate::ops::simd`]). f32: Cody–Waite range
    /// reduction and Cephes' degree-6 polynomial, within 2 ulp of e^x on [−87.3, 88.3]; inputs are
    /// clamped to that range (so e^x ≥ 1.2·10⁻³⁸ and finite). f64: the library's `exp`.
    fn fast_exp(self) -> Self;
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
}

impl Real for f32 {
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline(always)]
    // Cephes' expf coefficients as published (the f32 nearest each is what runs)
    #[allow(clippy::excessive_precision)]
    fn fast_exp(self) -> f32 {
        const LN2_HI: f32 = 0.693_359_4; // ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 8 bits
        const LN2_LO: f32 = -2.121_944_4e-4;
        const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting it rounds to an integer
        let x = self.clamp(-87.33, 88.3);
        let t = x * std::f32::consts::LOG2_E + ROUND;
        let n = t - ROUND;
        let r = x - n * LN2_HI - n * LN2_LO;
        let mut p = 1.987_569_1e-4f32;
        p = p * r + 1.398_199_9e-3;
        p = p * r + 8.333_452e-3;
        p = p * r + 4.166_579_6e-2;
        p = p * r + 1.666_666_5e-1;
        p = p * r + 5.000_000_1e-1;
        let e = p * r * r + r + 1.0;
        // 2ⁿ from the bits of t: t = 1.5·2²³ + n lies in [2²³, 2²⁴), where one unit is one ulp, so
        // its bits are those of ROUND plus n. Integer lanes, where `n as i32` (a saturating cast)
        // would make the compiler convert lane by lane.
        e * f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23)
    }
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn fast_exp(self) -> f64 {
        self.exp()
    }
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
}

/// A dfdx device whose gradient buffers our host kernels can read and write.
///
/// dfdx 0.13 keeps a tensor's buffer crate-private (`Tensorlike::data` is not exported), so inputs
/// are read with `tensor_to_vec` (one copy, logical order) and outputs are handed over with
/// `tensor_from_vec` (no copy on CPU). Gradient buffers come from `Gradients::get_or_alloc_mut`.
pub trait KitDevice<E: Real>: Device<E> {
    /// Runs `f` on a gradient buffer; `f` accumulates into it.
    fn update(
        &self,
        buf: &mut <Self as Storage<E>>::Vec,
        f: impl FnOnce(&mut [E]),
    ) -> Result<(), <Self as HasErr>::Err>;

    /// Moves the gradient of an op's output out of its buffer. Only the op that produced the
    /// tensor may call this, once: afterwards the buffer is empty.
    fn take(&self, buf: &mut <Self as Storage<E>>::Vec) -> Vec<E>;
}

impl<E: Real> KitDevice<E> for Cpu
where
    Cpu: Device<E>,
    <Cpu as Storage<E>>::Vec: std::ops::DerefMut<Target = Vec<E>>,
{
    fn update(&self, buf: &mut <Cpu as Storage<E>>::Vec, f: impl FnOnce(&mut [E])) -> Result<(), CpuError> {
        f(&mut buf[..]);
        Ok(())
    }

    fn take(&self, buf: &mut <Cpu as Storage<E>>::Vec) -> Vec<E> {
        std::mem::take(&mut **buf)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use cudarc::driver::{CudaSlice, DeviceRepr};
    use dfdx::tensor::{Cuda, CudaError};

    /// Host round trip: correct and slow. Our kernels are CPU kernels; nothing here has run on a GPU.
    impl<E: Real + DeviceRepr> KitDevice<E> for Cuda
    where
        Cuda: Device<E>,
        <Cuda as Storage<E>>::Vec: std::ops::DerefMut<Target = CudaSlice<E>>,
    {
        fn update(&self, buf: &mut <Cuda as Storage<E>>::Vec, f: impl FnOnce(&mut [E])) -> Result<(), CudaError> {
            let slice: &mut CudaSlice<E> = buf;
            let dev = slice.device();
            let mut host = dev.dtoh_sync_copy(slice)?;
            f(&mut host);
            dev.htod_sync_copy_into(&host, slice)?;
            Ok(())
        }

        fn take(&self, buf: &mut <Cuda as Storage<E>>::Vec) -> Vec<E> {
            let slice: &CudaSlice<E> = buf;
            slice.device().dtoh_sync_copy(slice).expect("CUDA device-to-host copy")
        }
    }
}

/// A tensor's elements in logical (row-major) order (one copy).
///
/// dfdx's `tensor_to_vec` walks the tensor with a strided iterator, element by element; this is one
/// `memcpy` of the buffer (`copy_into`) whenever the tensor is contiguous, which every tensor our
/// ops make is (`contiguous()` returns such a tensor as it is, and copies any other first).
pub fn host<S: Shape, E: Real, D: KitDevice<E>, T>(t: &Tensor<S, E, D, T>) -> Vec<E> {
    let c = t.retaped::<NoneTape>().contiguous();
    let mut v = vec![E::zero(); c.shape().num_elements()];
    c.copy_into(&mut v);
    v
}

/// Wraps a host vector as a tensor of `shape` (no copy on CPU).
pub fn tensor<S: Shape, E: Real, D: KitDevice<E>>(dev: &D, data: Vec<E>, shape: S) -> Tensor<S, E, D> {
    assert_eq!(data.len(), shape.num_elements(), "data length does not match shape {:?}", shape.concrete());
    dev.tensor_from_vec(data, shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `host` gives the logical order of a contiguous tensor (one copy of its buffer) and of a
    /// permuted one (whose buffer is in another order), as dfdx's own `as_vec` does.
    #[test]
    fn host_reads_tensors_in_logical_order() {
        let dev = Cpu::default();
        let t = dev.tensor_from_vec((0..6).map(|i| i as f64).collect(), (2usize, 3usize));
        assert_eq!(host(&t), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let p = t.clone().permute::<(usize, usize), Axes2<1, 0>>();
        assert_eq!(host(&p), p.as_vec());
        assert_eq!(host(&p), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let b: Tensor<(usize, usize), f64, Cpu> =
            dev.tensor_from_vec(vec![1.0, 2.0], (2usize,)).broadcast_like::<_, Axis<0>>(&(3usize, 2usize));
        assert_eq!(host(&b), vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    }
}
