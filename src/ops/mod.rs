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

/// Counts of work done by the backward passes of the current thread (for tests that check what a
/// frozen backbone skips).
pub mod stats {
    use std::cell::Cell;

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
