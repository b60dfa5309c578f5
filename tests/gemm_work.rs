//! The GEMM work the bench counts ([`video_adapters::ops::stats::gemm_macs_of`]), checked against
//! hand arithmetic on the bench's own ViT-B/16 block and small preset. The counter is
//! process-wide, so this file holds one test: no other test's products can run while it counts.

use dfdx::prelude::*;
use video_adapters::bench::{block_macs, Small};
use video_adapters::clip::vit::{clip_block, Block, ResidualAttentionBlock};
use video_adapters::clip::ClipCfg;
use video_adapters::context::Ctx;
use video_adapters::init::Init;
use video_adapters::ops::stats::gemm_macs_of;
use video_adapters::ops::Grid;
use video_adapters::optim::{AdamW, AdamWCfg};
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
///
/// The small preset (C = 64, 4 blocks of 4 heads, 32 clips × 8 frames of 8 × 8 patches of 4 × 4
/// pixels: 256 frames of L = 65 tokens, 16,640 rows, 16,384 of them patches; an ST-Adapter of
/// width 16 before every MLP; 10 classes):
/// - forward: patch embedding 16,384 × 48 × 64 = 50,331,648; each block
///   [`block_macs`]`(256, 65, 64)` = 817,889,280 + 138,444,800 = 956,334,080, and its adapter's
///   fc1 and fc2 on the patch rows 2 × 16,384 × 64 × 16 = 33,554,432; the head 32 × 64 × 10 =
///   20,480. In all 50,331,648 + 4 × 989,888,512 + 20,480 = 4,009,906,176.
/// - a training step adds the backward. The head: its weight and input gradients, 2 × 20,480.
///   Blocks 4 to 2: the linear layers' input gradients 817,889,280, the attention's five backward
///   products 5 × 16,640 × 65 × 64 = 346,112,000, and the adapter's input and weight gradients
///   4 × 16,777,216 = 67,108,864. Block 1: the frozen attention before its adapter runs untraced,
///   so only the MLP's input gradients (8 · 64² per row, 545,259,520) and the adapter's
///   67,108,864. In all 4,009,906,176 + 40,960 + 3 × 1,231,110,144 + 612,368,384 = 8,315,645,952.
#[test]
fn the_counted_gemm_work_is_the_hand_count() {
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

    let small = Small {
        width: 64,
        layers: 4,
        heads: 4,
        patch: 4,
        resolution: 32,
        frames: 8,
        batch: 32,
        adapter: 16,
        classes: 10,
    };
    assert_eq!(block_macs(256, 65, 64), 956_334_080.0);
    let mut model = small.cfg().build(&dev, &mut Init::seeded(1)).unwrap();
    let video = dev.tensor_from_vec(vec![0.1f32; 32 * 3 * 8 * 32 * 32], (32, Const::<3>, 8, 32, 32));
    let forward = gemm_macs_of(|| drop(model.logits(&video, &mut Ctx::eval())));
    assert_eq!(forward, 4_009_906_176);
    let labels: Vec<usize> = (0..32).map(|i| i % 10).collect();
    let mut opt = AdamW::new(AdamWCfg::default());
    let step = gemm_macs_of(|| {
        model.train_step(&video, &labels, &mut opt, &mut Ctx::train(0));
    });
    assert_eq!(step, 8_315_645_952);

    // outside gemm_macs_of nothing is counted
    drop(frozen.forward(x.clone(), grid, &mut Ctx::eval()));
    assert_eq!(gemm_macs_of(|| ()), 0);
}
