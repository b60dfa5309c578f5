//! Strided matrix products on host slices, through the `gemm` crate (0.19; dfdx 0.13 pins 0.15,
//! which measured 1.3× slower on our block), with its `x86-v4` feature: AVX-512 kernels, chosen at
//! run time on CPUs that have them (twice the GEMM peak of the AVX2 kernels on this machine:
//! `cargo run --release --bin bench -- --only gemm`).
//!
//! A [`Mat`] is a window on a slice: element (i, j) lives at `off + i·rs + j·cs`. Transposing is
//! swapping the strides, so `x·Wᵀ`, `gyᵀ·x` and the per-head attention products read the packed
//! buffers where they are, without copies.

use crate::device::Real;

/// A read-only strided matrix view.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, E> {
    pub data: &'a [E],
    pub off: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a, E> Mat<'a, E> {
    /// A dense row-major `rows × cols` matrix.
    pub fn new(data: &'a [E], rows: usize, cols: usize) -> Self {
        Self { data, off: 0, rows, cols, rs: cols, cs: 1 }
    }

    /// A window with explicit offset and strides.
    pub fn strided(data: &'a [E], off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Self { data, off, rows, cols, rs, cs }
    }

    /// The transpose (a view).
    pub fn t(self) -> Self {
        Self { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = self.off + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// A writable strided matrix view over raw memory.
///
/// Built from a slice ([`MatMut::new`]) or, for kernels that hand disjoint windows of one buffer to
/// several threads, from a pointer ([`MatMut::from_raw`]).
#[derive(Debug)]
pub struct MatMut<E> {
    ptr: *mut E,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

unsafe impl<E: Send> Send for MatMut<E> {}

impl<E> MatMut<E> {
    /// A dense row-major `rows × cols` matrix over `data`.
    pub fn new(data: &mut [E], rows: usize, cols: usize) -> Self {
        assert!(rows * cols <= data.len(), "matrix view out of bounds");
        Self { ptr: data.as_mut_ptr(), rows, cols, rs: cols, cs: 1 }
    }

    /// A window with explicit offset and strides over `data`.
    pub fn strided(data: &mut [E], off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            assert!(off + (rows - 1) * rs + (cols - 1) * cs < data.len(), "matrix view out of bounds");
        }
        Self { ptr: unsafe { data.as_mut_ptr().add(off) }, rows, cols, rs, cs }
    }

    /// A dense row-major `rows × cols` matrix over memory that need not be initialised: for a
    /// product with `accumulate = false`, which writes every element without reading it.
    pub fn uninit(data: &mut [std::mem::MaybeUninit<E>], rows: usize, cols: usize) -> Self {
        assert!(rows * cols <= data.len(), "matrix view out of bounds");
        Self { ptr: data.as_mut_ptr() as *mut E, rows, cols, rs: cols, cs: 1 }
    }

    /// # Safety
    /// Every element `ptr + i·rs + j·cs` must be valid for writes and touched by no other thread
    /// while this view is used.
    pub unsafe fn from_raw(ptr: *mut E, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        Self { ptr, rows, cols, rs, cs }
    }
}

/// How many threads a product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// All of rayon's pool: for the big token-matrix products.
    All,
    /// One: for products issued from inside a parallel loop.
    One,
}

/// `dst = a·b` (or `dst += a·b` when `accumulate`). Without `accumulate`, `dst` is only written
/// (gemm is called with `read_dst = false`, and an empty inner dimension writes zeros), so it may be
/// uninitialised memory ([`MatMut::uninit`]).
pub fn matmul<E: Real>(dst: MatMut<E>, a: Mat<'_, E>, b: Mat<'_, E>, accumulate: bool, threads: Threads) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!((dst.rows, dst.cols), (a.rows, b.cols), "output shape differs");
    a.check();
    b.check();
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    super::stats::count_gemm(m, n, k);
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    unsafe { *dst.ptr.add(i * dst.rs + j * dst.cs) = E::zero() };
                }
            }
        }
        return;
    }
    let par = match threads {
        Threads::All => gemm::Parallelism::Rayon(rayon::current_num_threads()),
        Threads::One => gemm::Parallelism::None,
    };
    // SAFETY: the views were bounds-checked above (dst at construction); gemm reads and writes only
    // within them. gemm computes dst := alpha·dst + beta·(lhs·rhs).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr().add(a.off),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr().add(b.off),
            b.cs as isize,
            b.rs as isize,
            E::one(),
            E::one(),
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strided product (a transposed view times a window) equals the triple loop.
    #[test]
    fn strided_product_matches_the_triple_loop() {
        let a: Vec<f64> = (0..12).map(|i| i as f64 * 0.5 - 2.0).collect(); // 3x4
        let b: Vec<f64> = (0..20).map(|i| (i as f64).sin()).collect(); // 4x5 inside a 4x5
        let mut out = vec![1.0; 4 * 2];
        // dst (4x2) += aᵀ (4x3) · b[0..3, 1..3] (3x2)
        let at = Mat::new(&a, 3, 4).t();
        let bw = Mat::strided(&b, 1, 3, 2, 5, 1);
        matmul(MatMut::new(&mut out, 4, 2), at, bw, true, Threads::All);
        for i in 0..4 {
            for j in 0..2 {
                let mut s = 1.0;
                for k in 0..3 {
                    s += a[k * 4 + i] * b[k * 5 + 1 + j];
                }
                assert!((out[i * 2 + j] - s).abs() < 1e-12);
            }
        }
    }
}
