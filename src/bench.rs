//! One CLIP ViT-B/16 block, forward and backward, three ways in one run: our ops (trained, and
//! frozen), the same block built from dfdx 0.13's stock modules and ops, and optionally PyTorch
//! (`scripts/bench_block.py`). Rounds interleave the variants; medians and ratios are reported.
//! `cargo run --release --bin bench_block -- --help`.

use std::fmt::Write as _;
use std::time::Instant;

use dfdx::nn::modules;
use dfdx::prelude::*;

use crate::clip::vit::{clip_block, ResidualAttentionBlock};
use crate::clip::ClipCfg;
use crate::init::Init;
use crate::ops::Grid;
use crate::param::set_trainable;

const C: usize = 768;
const F: usize = 3072;
const H: usize = 12;
const DH: usize = 64;

type X<T> = Tensor<(usize, Const<C>), f32, Cpu, T>;

/// The block in dfdx's own modules: separate q, k, v (dfdx's `MultiheadAttention` layout, which
/// also keeps `slice` out of the picture), `LayerNorm1D`, stock matmul, softmax and sigmoid.
pub struct StockBlock {
    ln_1: modules::LayerNorm1D<C, f32, Cpu>,
    q: modules::Linear<C, C, f32, Cpu>,
    k: modules::Linear<C, C, f32, Cpu>,
    v: modules::Linear<C, C, f32, Cpu>,
    out_proj: modules::Linear<C, C, f32, Cpu>,
    ln_2: modules::LayerNorm1D<C, f32, Cpu>,
    c_fc: modules::Linear<C, F, f32, Cpu>,
    c_proj: modules::Linear<F, C, f32, Cpu>,
}

impl StockBlock {
    /// The same weights as `ours`.
    pub fn from(ours: &ResidualAttentionBlock<C, f32, Cpu>, dev: &Cpu) -> Self {
        let mut m = Self {
            ln_1: BuildModule::build(dev),
            q: BuildModule::build(dev),
            k: BuildModule::build(dev),
            v: BuildModule::build(dev),
            out_proj: BuildModule::build(dev),
            ln_2: BuildModule::build(dev),
            c_fc: BuildModule::build(dev),
            c_proj: BuildModule::build(dev),
        };
        let w = ours.attn.in_proj_weight.to_vec();
        let b = ours.attn.in_proj_bias.to_vec();
        for (i, lin) in [&mut m.q, &mut m.k, &mut m.v].into_iter().enumerate() {
            lin.weight.copy_from(&w[i * C * C..(i + 1) * C * C]);
            lin.bias.copy_from(&b[i * C..(i + 1) * C]);
        }
        m.out_proj.weight.copy_from(&ours.attn.out_proj.weight.to_vec());
        m.out_proj.bias.copy_from(&ours.attn.out_proj.bias.as_ref().unwrap().to_vec());
        m.c_fc.weight.copy_from(&ours.mlp.c_fc.weight.to_vec());
        m.c_fc.bias.copy_from(&ours.mlp.c_fc.bias.as_ref().unwrap().to_vec());
        m.c_proj.weight.copy_from(&ours.mlp.c_proj.weight.to_vec());
        m.c_proj.bias.copy_from(&ours.mlp.c_proj.bias.as_ref().unwrap().to_vec());
        for (ln, o) in [(&mut m.ln_1, &ours.ln_1), (&mut m.ln_2, &ours.ln_2)] {
            ln.gamma.copy_from(&o.weight.to_vec());
            ln.beta.copy_from(&o.bias.to_vec());
            ln.epsilon = o.eps;
        }
        m
    }

    /// `x += attn(ln_1(x)); x += mlp(ln_2(x))` on (B·S, C) rows.
    pub fn forward<T: Tape<f32, Cpu> + Merge<NoneTape> + Merge<T>>(&self, x: X<T>, b: usize, s: usize) -> X<T> {
        let (x, tape) = x.split_tape();
        let h = self.ln_1.forward(x.clone().put_tape(tape));
        let (h, tape) = h.split_tape();
        let heads = |t: X<T>| t.reshape_like(&(b, s, Const::<H>, Const::<DH>));
        let q = heads(self.q.forward(h.clone().put_tape(tape)))
            .permute::<(usize, Const<H>, usize, Const<DH>), Axes4<0, 2, 1, 3>>();
        let k =
            heads(self.k.forward(h.retaped::<T>())).permute::<(usize, Const<H>, Const<DH>, usize), Axes4<0, 2, 3, 1>>();
        let v =
            heads(self.v.forward(h.retaped::<T>())).permute::<(usize, Const<H>, usize, Const<DH>), Axes4<0, 2, 1, 3>>();
        let att = (q.matmul(k) * (1.0 / (DH as f32).sqrt())).softmax::<Axis<3>>();
        let o = att
            .matmul(v)
            .permute::<(usize, usize, Const<H>, Const<DH>), Axes4<0, 2, 1, 3>>()
            .reshape_like(&(b * s, Const::<C>));
        let x1 = self.out_proj.forward(o) + x;
        let (x1, tape) = x1.split_tape();
        let f = self.c_fc.forward(self.ln_2.forward(x1.clone().put_tape(tape)));
        let (f, tape) = f.split_tape();
        let g = (f.clone().put_tape(tape) * 1.702f32).sigmoid() * f;
        self.c_proj.forward(g) + x1
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Runs the benchmark: `rounds` rounds, each timing every variant once (after one warm-up round),
/// on `frames` frames of 197 tokens. With `torch`, also runs `scripts/bench_block.py` each round.
pub fn run(rounds: usize, frames: usize, torch: bool) -> anyhow::Result<String> {
    anyhow::ensure!(rounds >= 1, "--rounds must be at least 1 (the medians need a timed round), is {rounds}");
    anyhow::ensure!(frames >= 1, "--frames must be at least 1, is {frames}");
    let dev = Cpu::default();
    let s = ClipCfg::vit_b16().tokens();
    let mut init = Init::seeded(7);
    let ours: ResidualAttentionBlock<C, f32, Cpu> = clip_block(&ClipCfg::vit_b16(), &dev, &mut init);
    let mut trained = ours.clone();
    set_trainable(&mut trained, |_| true);
    let stock = StockBlock::from(&ours, &dev);
    let xv: Vec<f32> = Init::seeded(8).normal(frames * s * C, 1.0).into_iter().map(|v| v as f32).collect();
    let x_ours = dev.tensor_from_vec(xv.clone(), (frames, s, Const::<C>));
    let x_stock = dev.tensor_from_vec(xv, (frames * s, Const::<C>));
    let grid = Grid { b: 1, t: frames, h: 14, w: 14 };
    use crate::clip::vit::Block;

    // agreement: outputs and input gradients of ours and stock
    let y_ours = ours.forward(x_ours.clone(), grid, &mut crate::Ctx::eval()).as_vec();
    let y_stock = stock.forward(x_stock.clone(), frames, s).as_vec();
    let dy = y_ours.iter().zip(&y_stock).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let gx_ours = ours
        .forward(x_ours.leaky_trace(), grid, &mut crate::Ctx::eval())
        .sum::<Rank0, _>()
        .backward()
        .get(&x_ours)
        .as_vec();
    let gx_stock = stock.forward(x_stock.leaky_trace(), frames, s).sum::<Rank0, _>().backward().get(&x_stock).as_vec();
    let dgx = gx_ours.iter().zip(&gx_stock).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);

    let names = [
        "dfdx stock ops, all weights trained",
        "ours, all weights trained",
        "ours, frozen weights (input gradient only)",
        "dfdx stock ops, forward only",
        "ours, forward only",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut torch_times: Vec<(f64, f64)> = Vec::new();
    for round in 0..rounds + 1 {
        let mut sample = Vec::new();
        let t = Instant::now();
        stock.forward(x_stock.leaky_trace(), frames, s).sum::<Rank0, _>().backward();
        sample.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        trained.forward(x_ours.leaky_trace(), grid, &mut crate::Ctx::eval()).sum::<Rank0, _>().backward();
        sample.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        ours.forward(x_ours.leaky_trace(), grid, &mut crate::Ctx::eval()).sum::<Rank0, _>().backward();
        sample.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        stock.forward(x_stock.clone(), frames, s);
        sample.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        ours.forward(x_ours.clone(), grid, &mut crate::Ctx::eval());
        sample.push(t.elapsed().as_secs_f64());
        if round > 0 {
            for (v, t) in times.iter_mut().zip(sample) {
                v.push(t);
            }
            if torch {
                torch_times.push(torch_round(frames)?);
            }
        }
    }
    let med: Vec<f64> = times.into_iter().map(median).collect();
    let mut out = String::new();
    writeln!(
        out,
        "One CLIP ViT-B/16 block (width 768, 12 heads, MLP 3072), {frames} frames × 197 tokens, f32, CPU, {} threads.",
        rayon::current_num_threads()
    )?;
    writeln!(out, "Medians over {rounds} rounds; every variant once per round, after a warm-up round. Ratios: time ÷ the dfdx-stock row of the same kind.\n")?;
    writeln!(out, "| variant | median ms | ratio |")?;
    writeln!(out, "|---|---:|---:|")?;
    for (i, name) in names.iter().enumerate() {
        let base = if i < 3 { med[0] } else { med[3] };
        writeln!(out, "| {name} | {:.0} | {:.2} |", med[i] * 1e3, med[i] / base)?;
    }
    if !torch_times.is_empty() {
        let fb = median(torch_times.iter().map(|t| t.0).collect());
        let f = median(torch_times.iter().map(|t| t.1).collect());
        writeln!(
            out,
            "| PyTorch (scripts/bench_block.py), all weights trained | {:.0} | {:.2} |",
            fb * 1e3,
            fb / med[0]
        )?;
        writeln!(out, "| PyTorch, forward only | {:.0} | {:.2} |", f * 1e3, f / med[3])?;
    }
    writeln!(
        out,
        "\nOurs vs stock on the same weights and input: max |Δy| = {dy:.1e}, max |Δ dL/dx| = {dgx:.1e} (L = Σ y)."
    )?;
    Ok(out)
}

/// One PyTorch measurement (fwd+bwd, fwd) in seconds, from the optional script.
fn torch_round(frames: usize) -> anyhow::Result<(f64, f64)> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_block.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(["--frames", &frames.to_string(), "--threads", &rayon::current_num_threads().to_string()])
        .output()
        .map_err(|e| anyhow::anyhow!("--torch runs python3 {}: {e}", script.display()))?;
    anyhow::ensure!(out.status.success(), "{}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
    Ok((v["fwd_bwd"].as_f64().unwrap_or(f64::NAN), v["fwd"].as_f64().unwrap_or(f64::NAN)))
}
