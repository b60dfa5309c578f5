//! The measurements of `scripts/gpu-check` on a CUDA device (feature `cuda`): one CLIP ViT-B/16 block
//! forward and forward+backward, one frozen-backbone training step of each paper's ViT-B/16 preset at
//! the paper's per-GPU batch, evaluation throughput, and the device memory in use. Written as
//! `gpu_check.json` and `gpu_check.md` in the output directory.
//!
//! Times are wall-clock after a device synchronisation, the median of 3 after one warm-up. Memory:
//! the device's used memory (total − free, from the driver) sampled after every timed call; that is
//! a lower bound of the true peak (an allocation freed before the sample is not seen).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use dfdx::prelude::*;
use dfdx::tensor::Cuda;
use serde::Serialize;

use crate::clip::vit::{clip_block, Block, ResidualAttentionBlock};
use crate::clip::ClipCfg;
use crate::context::Ctx;
use crate::init::Init;
use crate::ops::Grid;
use crate::optim::{AdamW, AdamWCfg};
use crate::param::set_trainable;
use crate::registry::presets;

/// Each paper's ViT-B/16 Kinetics-400 preset and its per-GPU batch (clips of 8 frames), with where the
/// batch comes from.
pub const STEPS: [(&str, usize, &str); 3] = [
    ("st_adapter_vit_b16_12x384", 16, "ST-Adapter §4.3: 16 samples per GPU on 8 V100"),
    ("aim_vitclip_base_k400", 8, "AIM vitclip_base_k400.py: 8 GPUs x 8"),
    ("mst_adapter_vit_b16_k400", 4, "MST-Adapter §4.1: 4 per GPU"),
];

/// Clips per evaluation forward pass.
pub const EVAL_BATCH: usize = 8;

const REPS: usize = 3;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub device: String,
    /// Median seconds by measurement.
    pub seconds: BTreeMap<String, f64>,
    /// Evaluation clips per second by preset.
    pub eval_clips_per_s: BTreeMap<String, f64>,
    /// Largest device memory in use seen (MiB), a lower bound of the peak.
    pub peak_used_mib: f64,
}

struct Meter {
    dev: Cuda,
    peak: usize,
}

impl Meter {
    fn sample(&mut self) {
        if let Ok((free, total)) = cudarc::driver::result::mem_get_info() {
            self.peak = self.peak.max(total - free);
        }
    }

    /// Median seconds of `f` over [`REPS`] runs after one warm-up, each ended by a synchronisation.
    fn time(&mut self, mut f: impl FnMut()) -> anyhow::Result<f64> {
        let mut ts = Vec::new();
        for i in 0..=REPS {
            let t = Instant::now();
            f();
            self.dev.try_synchronize().map_err(|e| anyhow::anyhow!("CUDA synchronize: {e:?}"))?;
            if i > 0 {
                ts.push(t.elapsed().as_secs_f64());
            }
            self.sample();
        }
        ts.sort_by(f64::total_cmp);
        Ok(ts[ts.len() / 2])
    }
}

fn video(batch: usize) -> Tensor<(usize, Const<3>, usize, usize, usize), f32, Cpu> {
    let v: Vec<f32> = Init::seeded(3).normal(batch * 3 * 8 * 224 * 224, 1.0).into_iter().map(|x| x as f32).collect();
    Cpu::default().tensor_from_vec(v, (batch, Const::<3>, 8, 224, 224))
}

/// Runs every measurement on CUDA device `ordinal`.
pub fn run(ordinal: usize) -> anyhow::Result<Report> {
    let dev = crate::device::open_cuda(ordinal)?;
    let mut r = Report { device: format!("cuda:{ordinal}"), ..Default::default() };
    let mut m = Meter { dev: dev.clone(), peak: 0 };

    // one ViT-B/16 block on 8 frames of 197 tokens
    const C: usize = 768;
    let s = ClipCfg::vit_b16().tokens();
    let frozen: ResidualAttentionBlock<C, f32, Cuda> = clip_block(&ClipCfg::vit_b16(), &dev, &mut Init::seeded(7));
    let mut trained = frozen.clone();
    set_trainable(&mut trained, |_| true);
    let xv: Vec<f32> = Init::seeded(8).normal(8 * s * C, 1.0).into_iter().map(|v| v as f32).collect();
    let x = dev.tensor_from_vec(xv, (8usize, s, Const::<C>));
    let grid = Grid { b: 1, t: 8, h: 14, w: 14 };
    r.seconds.insert("block_forward".into(), m.time(|| drop(frozen.forward(x.clone(), grid, &mut Ctx::eval())))?);
    r.seconds.insert(
        "block_fwd_bwd_trained".into(),
        m.time(|| drop(trained.forward(x.leaky_trace(), grid, &mut Ctx::eval()).sum::<Rank0, _>().backward()))?,
    );
    drop((frozen, trained, x));

    let all = presets();
    for (name, batch, _) in STEPS {
        let cfg = &all.iter().find(|(n, _)| n == name).expect("the preset exists").1;
        let mut model = cfg.build_on(&dev, &mut Init::seeded(1))?;
        let v = video(batch);
        let labels: Vec<usize> = (0..batch).map(|i| i % cfg.num_classes()).collect();
        let mut opt = AdamW::new(AdamWCfg::default());
        let mut seed = 0;
        let t = m.time(|| {
            seed += 1;
            model.train_step(&v, &labels, &mut opt, &mut Ctx::train(seed));
        })?;
        r.seconds.insert(format!("train_step_{name}_batch{batch}"), t);
        let v = video(EVAL_BATCH);
        let t = m.time(|| drop(model.logits(&v, &mut Ctx::eval())))?;
        r.eval_clips_per_s.insert(name.to_string(), EVAL_BATCH as f64 / t);
    }
    r.peak_used_mib = m.peak as f64 / (1024.0 * 1024.0);
    Ok(r)
}

impl Report {
    /// The report as a Markdown table (what `scripts/gpu-check` prints).
    pub fn markdown(&self) -> String {
        let mut s = format!("# gpu-check on {}\n\n| measurement | value |\n|---|---|\n", self.device);
        for (k, v) in &self.seconds {
            writeln!(s, "| {k} | {:.1} ms |", v * 1e3).unwrap();
        }
        for (k, v) in &self.eval_clips_per_s {
            writeln!(s, "| eval {k} (8x224², batch {EVAL_BATCH}) | {v:.1} clips/s |").unwrap();
        }
        writeln!(s, "| device memory in use, largest sample | {:.0} MiB |", self.peak_used_mib).unwrap();
        s + "\nPer-GPU batches: "
            + &STEPS.iter().map(|(n, b, src)| format!("{n} {b} ({src})")).collect::<Vec<_>>().join("; ")
            + ".\n"
    }
}
