//! The GEMM work the bench counts ([`video_adapters::ops::stats::gemm_macs_of`]), checked against
//! hand arithmetic on the bench's own ViT-B/16 block. The counter is process-wide, so this file
//! holds one test: no other test's products can run while it counts.

use dfdx::prelude::*;
use video_adapters::bench::block_macs;
use video_adapters::clip::vit::{clip_block, Block, ResidualAttentionBlock};
use video_adapters::clip::ClipCfg;
use video_adapters::context::Ctx;
use video_adapters::init::Init;
use video_adapters::ops::stats::gemm_macs_of;
use video_adapters::ops::Grid;
use video_adapters::param::set_trainable;

/// One ViT-B/16 block (C = 768) on 8 frames × 197 tokens, rows = 1,576:
/// - forward: the four linear layers, 12·C² = 7,077,888 per row, 11,154,751,488 in all, and
///   QKᵀ and PV, each L·L·(C/H) per frame and head, so L·C = 151,296 per row each:
///   2 × 238,442,496 = 476,884,992; in all [`block_macs`] = 11,631,636,480.
/// - forward+backward, every weight trained: each linear layer three times (output, input gradient,
///   weight gradient), 33,464,254,464; the attention seven products (QKᵀ and PV forward; the
///   backward recomputes QKᵀ, then dV, dP, dQ, dK), 7 × 238,442,496 = 1,669,097,472; in all
///   35,133,351,936.
/// - forward+backward, every weight frozen: no weight gradient, 2 × 11,154,751,488 + 1,669,097,472
///   = 23,978,600,448.
///
/// A step skipping a frozen layer's weight gradient shows here as 24 instead of 36 C² per row.
#[test]
fn the_counted_gemm_work_of_a_vit_b16_block_is_the_hand_count() {
    const C: usize = 768;
    let dev = Cpu::default();
    let s = ClipCfg::vit_b16().tokens();
    assert_eq!(s, 197);
    let frozen: ResidualAttentionBlock<C, f32, Cpu> = clip_block(&ClipCfg::vit_b16(), &dev, &mut Init::seeded(7));
    let mut trained = frozen.clone();
    set_trainable(&mut trained, |_| true);
    let x = dev.tensor_from_vec(vec![0.01f32; 8 * s * C], (8, s, Const::<C>));
    let grid = Grid { b: 1, t: 8, h: 14, w: 14 };

    let forward = gemm_macs_of(|| drop(frozen.forward(x.clone(), grid, &mut Ctx::eval())));
    assert_eq!(forward, 11_631_636_480);
    assert_eq!(forward as f64, block_macs(8, s, C));
    let all_trained =
        gemm_macs_of(|| drop(trained.forward(x.leaky_trace(), grid, &mut Ctx::eval()).sum::<Rank0, _>().backward()));
    assert_eq!(all_trained, 35_133_351_936);
    let all_frozen =
        gemm_macs_of(|| drop(frozen.forward(x.leaky_trace(), grid, &mut Ctx::eval()).sum::<Rank0, _>().backward()));
    assert_eq!(all_frozen, 23_978_600_448);
    // outside gemm_macs_of nothing is counted
    drop(frozen.forward(x.clone(), grid, &mut Ctx::eval()));
    assert_eq!(gemm_macs_of(|| ()), 0);
}
