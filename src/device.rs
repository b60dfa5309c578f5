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
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
}

impl Real for f32 {
    fn erf(self) -> Self {
        libm::erff(self)
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
pub fn host<S: Shape, E: Real, D: KitDevice<E>, T>(t: &Tensor<S, E, D, T>) -> Vec<E> {
    t.device().tensor_to_vec(t)
}

/// Wraps a host vector as a tensor of `shape` (no copy on CPU).
pub fn tensor<S: Shape, E: Real, D: KitDevice<E>>(dev: &D, data: Vec<E>, shape: S) -> Tensor<S, E, D> {
    assert_eq!(data.len(), shape.num_elements(), "data length does not match shape {:?}", shape.concrete());
    dev.tensor_from_vec(data, shape)
}
