//! Our own differentiable ops: forward and backward written here, on top of dfdx's tape.
//!
//! Why not dfdx's own ops: dfdx 0.13 has no convolution on stable, its CPU `slice` backward
//! overwrites gradients instead of adding them (see `tests/dfdx_upstream.rs`), its `matmul` always
//! computes a weight gradient, and its elementwise ops, LayerNorm and softmax are single-threaded
//! and unfused. Each op here:
//! - takes and returns dfdx tensors generic over the tape, so the same code runs traced
//!   (`OwnedTape`, training) or untraced (`NoneTape`, inference, frozen prefixes);
//! - reads each parameter's `trainable` flag: a frozen parameter gets no gradient buffer and no
//!   weight-gradient product, and the activations only its gradient would need are not kept;
//! - moves its output gradient out of the tape when it consumes it, so activation gradients are
//!   freed as the backward pass walks down the network;
//! - is checked against an f64 finite-difference gradient and a naive forward (tests in each file).

use dfdx::prelude::*;

pub mod activation;
pub mod attention;
pub mod cuda;
pub mod dwconv3d;
pub mod elementwise;
pub mod gemm;
pub mod grid;
pub mod layer_norm;
pub mod linear;
pub mod loss;
pub mod mlp;
pub mod simd;
pub mod tokens;

#[cfg(test)]
pub(crate) mod gradcheck;

pub use activation::{activation, gelu, quick_gelu, Act};
pub use attention::{self_attention, SeqAxis};
pub use dwconv3d::{dwconv3d, Kernel3};
pub use elementwise::{add, drop_rows, dropout, fuse, mean_over_frames, scale, Weights};
pub use grid::Grid;
pub use layer_norm::layer_norm;
pub use linear::{frozen_linear, linear, Linear};
pub use loss::cross_entropy;
pub use mlp::mlp;
pub use tokens::{
    add_to_patches, average_cls, cls_shift, cls_tokens, embed_tokens, patch_tokens, set_prompts, temporal_shift, Shift,
};

/// Shapes whose last axis is the feature axis and whose other axes are rows: (N, X) or (N, L, X).
pub trait Rows: Shape {
    type Feat: Dim;
    type With<X: Dim>: Rows<Feat = X>;
    fn feat(&self) -> Self::Feat;
    fn with_feat<X: Dim>(&self, x: X) -> Self::With<X>;
    /// The number of rows (all elements but the last axis).
    fn rows(&self) -> usize {
        let c = self.concrete();
        (0..Self::NUM_DIMS - 1).map(|i| c[i]).product()
    }
}

impl<A: Dim, X: Dim> Rows for (A, X) {
    type Feat = X;
    type With<Y: Dim> = (A, Y);
    fn feat(&self) -> X {
        self.1
    }
    fn with_feat<Y: Dim>(&self, y: Y) -> (A, Y) {
        (self.0, y)
    }
}

impl<A: Dim, B: Dim, X: Dim> Rows for (A, B, X) {
    type Feat = X;
    type With<Y: Dim> = (A, B, Y);
    fn feat(&self) -> X {
        self.2
    }
    fn with_feat<Y: Dim>(&self, y: Y) -> (A, B, Y) {
        (self.0, self.1, y)
    }
}

// ANCHOR: promote
/// Gives an untraced tensor the tape type of the traced region it enters.
///
/// Frozen prefixes of a network run untraced (`NoneTape`); at the first trainable parameter the
/// activations are promoted to `OwnedTape`. `OwnedTape → OwnedTape` and `NoneTape → NoneTape` are
/// identities; `OwnedTape → NoneTape` does not compile.
pub fn promote<S: Shape, E: Dtype, D: Storage<E>, Tin, Tout>(x: Tensor<S, E, D, Tin>) -> Tensor<S, E, D, Tout>
where
    Tin: Tape<E, D>,
    Tout: Tape<E, D> + Merge<Tin>,
{
    let (x, tape) = x.split_tape();
    x.put_tape(Tout::default().merge(tape))
}
// ANCHOR_END: promote

/// Counts of work done: by the backward passes of the current thread (for tests that check what a
/// frozen backbone skips), and the multiply-adds of the matrix products of the whole process while
/// [`stats::gemm_macs_of`] runs (for the bench's GEMM bound).
pub mod stats {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    static COUNT_GEMM: AtomicBool = AtomicBool::new(false);
    static GEMM_MACS: AtomicU64 = AtomicU64::new(0);

    /// Runs `f` and returns the multiply-adds (m·n·k each) of every product [`super::gemm::matmul`]
    /// ran meanwhile, on any thread of the process: the GEMM work of a computation as the kit
    /// executes it. Counting is off outside this call (one relaxed load per product). Two calls at
    /// once, or products of other threads meanwhile, would be counted together: for one
    /// computation at a time in its own process (the bench's children, a test binary of one test).
    pub fn gemm_macs_of(f: impl FnOnce()) -> u64 {
        GEMM_MACS.store(0, Ordering::SeqCst);
        COUNT_GEMM.store(true, Ordering::SeqCst);
        f();
        COUNT_GEMM.store(false, Ordering::SeqCst);
        GEMM_MACS.swap(0, Ordering::SeqCst)
    }

    #[inline]
    pub(crate) fn count_gemm(m: usize, n: usize, k: usize) {
        if COUNT_GEMM.load(Ordering::Relaxed) {
            GEMM_MACS.fetch_add((m * n * k) as u64, Ordering::Relaxed);
        }
    }

    thread_local! {
        static WEIGHT_GRAD_PRODUCTS: Cell<usize> = const { Cell::new(0) };
        static TRACED_ATTENTIONS: Cell<usize> = const { Cell::new(0) };
    }

    /// Attention ops recorded on a tape (traced, keeping q, k, v for the backward) on this thread so
    /// far: frozen attention before the first trainable stage must not be.
    pub fn traced_attentions() -> usize {
        TRACED_ATTENTIONS.with(|c| c.get())
    }

    pub(crate) fn count_traced_attention() {
        TRACED_ATTENTIONS.with(|c| c.set(c.get() + 1));
    }

    /// Weight-gradient products (dW = gyᵀ·x) run by linear layers on this thread so far.
    pub fn weight_grad_products() -> usize {
        WEIGHT_GRAD_PRODUCTS.with(|c| c.get())
    }

    pub(crate) fn count_weight_grad_product() {
        WEIGHT_GRAD_PRODUCTS.with(|c| c.set(c.get() + 1));
    }
}

/// A sum over `n` items computed in parallel, deterministically: the items are cut into fixed blocks
/// of `block`, one task sums a block into a zeroed vector of `len` with `f(items, acc)`, and the
/// partial sums are added in block order. Neither the thread count nor the scheduling changes a
/// bit of the result (rayon's `fold`/`reduce` tree depends on work stealing), which exact resume
/// and run-to-run reproducibility need.
pub(crate) fn ordered_sum<E: crate::Real>(
    n: usize,
    block: usize,
    len: usize,
    f: impl Fn(std::ops::Range<usize>, &mut [E]) + Sync,
) -> Vec<E> {
    use rayon::prelude::*;
    let block = block.max(1);
    let parts: Vec<Vec<E>> = (0..n.div_ceil(block))
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![E::zero(); len];
            f(b * block..((b + 1) * block).min(n), &mut acc);
            acc
        })
        .collect();
    let mut out = vec![E::zero(); len];
    for p in parts {
        out.iter_mut().zip(&p).for_each(|(u, v)| *u += *v);
    }
    out
}

/// A vector of `n` elements written in place by `fill`, without zero-filling it first (a fresh
/// `vec![0; n]` costs a pass over memory that every writer here would overwrite).
///
/// # Safety
/// `fill` must write every element of the slice it is given (with `MaybeUninit::write`, or through
/// raw pointers such as a product with `accumulate = false`) before returning.
pub(crate) unsafe fn written<E>(n: usize, fill: impl FnOnce(&mut [std::mem::MaybeUninit<E>])) -> Vec<E> {
    let mut v = Vec::new();
    // SAFETY: the caller's contract is `written_into`'s.
    unsafe { written_into(&mut v, n, fill) };
    v
}

/// [`written`] into a reused vector (a parallel worker's scratch buffer): its old contents are
/// dropped and its allocation kept, so a loop over tiles allocates (and the kernel zeroes) each page
/// once per worker instead of once per tile.
///
/// # Safety
/// As for [`written`]: `fill` must write every element of the slice it is given.
pub(crate) unsafe fn written_into<E>(
    v: &mut Vec<E>,
    n: usize,
    fill: impl FnOnce(&mut [std::mem::MaybeUninit<E>]),
) -> &mut [E] {
    fill(uninit_scratch(v, n));
    // SAFETY: the caller's `fill` initialised all n elements.
    unsafe { v.set_len(n) };
    v
}

/// `n` elements of a reused vector's allocation, uninitialised: its old contents are dropped and
/// its allocation kept (grown to `n` if needed). The vector's length stays 0.
pub(crate) fn uninit_scratch<E>(v: &mut Vec<E>, n: usize) -> &mut [std::mem::MaybeUninit<E>] {
    v.clear();
    v.reserve(n);
    &mut v.spare_capacity_mut()[..n]
}

/// Views an initialised slice as possibly-uninitialised memory, for a kernel that writes either
/// kind of buffer.
///
/// # Safety
/// Whoever writes through the result must store only initialised values: the slice is read as `E`
/// again afterwards.
pub(crate) unsafe fn as_uninit<E>(s: &mut [E]) -> &mut [std::mem::MaybeUninit<E>] {
    // SAFETY: same layout; the caller promises to write only initialised values.
    unsafe { &mut *(s as *mut [E] as *mut [std::mem::MaybeUninit<E>]) }
}

/// A slice of `MaybeUninit` whose every element was written, read as values.
///
/// # Safety
/// Every element must have been initialised.
pub(crate) unsafe fn assume_init<E>(s: &[std::mem::MaybeUninit<E>]) -> &[E] {
    // SAFETY: same layout; the caller promises every element is initialised.
    unsafe { &*(s as *const [std::mem::MaybeUninit<E>] as *const [E]) }
}

/// A raw pointer that kernels share between threads writing disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut<E>(pub *mut E);
unsafe impl<E> Send for SharedMut<E> {}
unsafe impl<E> Sync for SharedMut<E> {}

impl<E> SharedMut<E> {
    /// The pointer (a method, so closures capture the whole `Send + Sync` wrapper).
    pub(crate) fn ptr(&self) -> *mut E {
        self.0
    }
}

#[cfg(test)]
mod tests {
    /// `ordered_sum` gives the same bits with 1 and 2 threads and over repeated runs (a sum of
    /// 10⁵ values whose rounding depends on the order).
    #[test]
    fn ordered_sum_is_bit_identical_for_any_thread_count() {
        let xs: Vec<f32> = (0..100_000).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1.37e-3).collect();
        let sum = || super::ordered_sum(xs.len(), 64, 1, |r, acc: &mut [f32]| acc[0] = xs[r].iter().sum())[0];
        let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        let one = pool(1).install(sum);
        let two: Vec<f32> = (0..5).map(|_| pool(2).install(sum)).collect();
        assert!(two.iter().all(|v| v.to_bits() == one.to_bits()), "{one} vs {two:?}");
    }
}
