//! Upstream behaviour we work around, pinned so that we notice when it changes.
//!
//! dfdx 0.13.0's CPU `slice` backward assigns the slice's gradient into the input gradient
//! (`tensor_ops/slice/cpu_kernel.rs`: `view[i] = o`) instead of adding it. Two readers of one
//! tensor through `slice` therefore lose one reader's gradient. A CLS/patch split, or a temporal
//! conv built from shifted slices, is exactly that, which is why `ops::tokens` and `ops::dwconv3d`
//! are our own ops with accumulating backward passes. If this test fails, upstream has changed:
//! re-read the workaround.

use dfdx::prelude::*;
use video_adapters::ops::{cls_tokens, patch_tokens};

/// y = sum(x[0..3]) + sum(x[1..4]): the true gradient is [1, 2, 2, 1]; dfdx 0.13 gives [1, 1, 1, 1].
#[test]
fn dfdx_slice_backward_overwrites_instead_of_accumulating() {
    let dev: Cpu = Default::default();
    let x: Tensor<Rank1<4>, f32, Cpu> = dev.tensor([1.0, 2.0, 3.0, 4.0]);
    let (xs, tape) = x.leaky_trace().split_tape();
    let a = xs.clone().put_tape(tape).slice((0..3,)).sum::<Rank0, _>();
    let b = xs.retaped::<OwnedTape<f32, Cpu>>().slice((1..4,)).sum::<Rank0, _>();
    let g = (a + b).backward();
    let got = g.get(&x).array();
    assert_eq!(
        got,
        [1.0, 1.0, 1.0, 1.0],
        "dfdx's slice backward changed: it now gives {got:?} (correct: [1, 2, 2, 1])"
    );
}

/// Our token ops on the same pattern (two readers of one tensor) give the correct, summed gradient.
#[test]
fn our_token_ops_accumulate_where_dfdx_slice_overwrites() {
    let dev: Cpu = Default::default();
    // (N=1, L=2, C=2): CLS = [1, 2], patch = [3, 4]; read CLS twice-over: cls_tokens and patch_tokens
    let x = dev.tensor_from_vec(vec![1.0f32, 2.0, 3.0, 4.0], (1usize, 2usize, Const::<2>));
    let (xs, tape) = x.leaky_trace().split_tape();
    let a = cls_tokens(xs.clone().put_tape(tape)).sum::<Rank0, _>();
    let b = patch_tokens(xs.clone().retaped::<OwnedTape<f32, Cpu>>()).sum::<Rank0, _>();
    let c = (xs.retaped::<OwnedTape<f32, Cpu>>() * 2.0).sum::<Rank0, _>();
    let g = (a + b + c).backward();
    assert_eq!(g.get(&x).as_vec(), vec![3.0, 3.0, 3.0, 3.0]);
}
