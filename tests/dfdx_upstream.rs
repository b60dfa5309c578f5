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

/// How our CUDA ops reach device buffers without a host transfer (`device::buffer_of`,
/// `device::tensor_filled`), pinned on the CPU: dfdx 0.13's `mul` backward writes `x` into the
/// gradient of a probe in `sum(probe · x)`, and `Gradients::get` makes a tensor of a gradient buffer.
/// The same dfdx code runs on CUDA. If this fails, upstream changed: re-read `ops/cuda/gpu.rs`.
#[test]
fn a_tensors_buffer_is_reached_through_public_gradient_buffers() {
    use video_adapters::device::{buffer_of, tensor_filled};
    let dev: Cpu = Default::default();
    let x = dev.tensor_from_vec(vec![1.5f32, -2.0, 3.25, 0.0, 7.0, -0.5], (2usize, 3usize));
    let buf = buffer_of(&x).unwrap();
    assert_eq!(&buf[..], &[1.5, -2.0, 3.25, 0.0, 7.0, -0.5]);
    // a permuted view: the buffer holds the logical order
    let p = x.clone().permute::<(usize, usize), Axes2<1, 0>>();
    assert_eq!(&buffer_of(&p).unwrap()[..], &p.as_vec()[..]);
    let y: Tensor<(usize, usize), f32, Cpu> =
        tensor_filled(&dev, (3usize, 2usize), |v| v.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])).unwrap();
    assert_eq!(y.as_vec(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(y.shape().concrete(), [3, 2]);
}

/// What the CUDA AdamW (`ops::cuda::gpu::adamw_step`) relies on to write a parameter's own buffer:
/// `SgdConfig::try_update` with lr 1, no momentum and decoupled weight decay x computes
/// w − (u + x·w) from the "gradient" u and hands the velocity buffer back unchanged (the first
/// moment is passed there); without weight decay, w − u. Pinned on the CPU kernel (dfdx's `sgd.cu`
/// is the same formula).
#[test]
fn dfdx_sgd_with_lr_one_subtracts_the_update_and_keeps_the_velocity() {
    use dfdx::optim::{SgdConfig, WeightDecay};
    let dev: Cpu = Default::default();
    let w0 = [1.0f32, -2.0, 4.0];
    let u = [0.5f32, 0.25, -1.0];
    let mut w: Tensor<(usize,), f32, Cpu> = dev.tensor_from_vec(w0.to_vec(), (3,));
    let buf = |v: [f32; 3]| {
        let mut b = <Cpu as Storage<f32>>::try_alloc_len(&dev, 3).unwrap();
        b.copy_from_slice(&v);
        b
    };
    let (mut velocity, grad) = (buf([7.0, 8.0, 9.0]), buf(u));
    let x = 0.125f64;
    let cfg = SgdConfig { lr: 1.0, momentum: None, weight_decay: Some(WeightDecay::Decoupled(x)) };
    cfg.try_update(&mut w, &mut velocity, &grad).unwrap();
    let want: Vec<f32> = w0.iter().zip(&u).map(|(w, u)| w - (u + x as f32 * w)).collect();
    assert_eq!(w.as_vec(), want, "dfdx's SGD update changed");
    assert_eq!(&velocity[..], &[7.0, 8.0, 9.0], "dfdx's SGD without momentum changed the velocity");
    let cfg = SgdConfig { lr: 1.0, momentum: None, weight_decay: None };
    cfg.try_update(&mut w, &mut velocity, &grad).unwrap();
    let want: Vec<f32> = want.iter().zip(&u).map(|(w, u)| w - u).collect();
    assert_eq!(w.as_vec(), want);
}
