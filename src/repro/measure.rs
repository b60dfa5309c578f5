//! Measured cost columns: training-step time and peak memory, inference latency and throughput,
//! measured on this machine in one run, each model in its own child process (so its peak memory
//! is its own), and reported as ratios between the table's rows next to the published ratios.
//!
//! Absolute CPU seconds say nothing about the papers' GPUs; ratios between rows measured side by
//! side are what can be compared. Medians over repetitions; the machine is shared and noisy.
//!
//! Each row is built, timed and its memory read by the bench's [`Meter`] (`--device cpu|cuda|cuda:N`):
//! the same measurement code as `bench`, on the CPU or a GPU.

use std::process::Command;

use dfdx::prelude::*;
use serde::{Deserialize, Serialize};

use super::engine::{Column, Kind, Report, Spec, Value};
use super::published::Cell;
use crate::bench::Meter;
use crate::clip::vit::Video;
use crate::context::Ctx;
use crate::device::DeviceArg;
use crate::init::Init;
use crate::optim::{AdamW, AdamWCfg};

/// Which measurement a cost table adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Measure {
    /// One training step (forward, backward, AdamW) of one 8-frame clip: median time, peak memory.
    Training,
    /// Latency of one 8-frame clip, and throughput at batch 4 (the paper: 32).
    Inference,
}

/// What a child process reports for one row.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// Median seconds: training step, or inference latency (batch 1).
    pub seconds: f64,
    /// Videos per second at batch 4 (inference only).
    pub throughput: Option<f64>,
    /// Peak memory, MB: resident memory of the process (CPU), or the device memory in use, largest
    /// sample (CUDA; see [`Meter`]).
    pub peak_mb: f64,
    pub reps: usize,
    /// Where it ran (`cpu`, `cuda:N`).
    #[serde(default)]
    pub device: DeviceArg,
}

const ENV: &str = "VIDEO_ADAPTERS_MEASURE";
const INFER_BATCH: usize = 4;

// ANCHOR: training_state
/// The memory a training step keeps whatever the batch, counted from the model: 4 bytes (f32) per
/// weight, plus 12 per trainable weight (its gradient and AdamW's two moments), in MiB like the
/// peak. Frozen weights get no gradient and no moments ([`crate::param::Param::trainable`]).
///
/// For 1,000,000 weights of which 250,000 are trainable: 4·1,000,000 + 12·250,000 = 7,000,000 bytes
/// = 7,000,000 / 1,048,576 = 6.676 MiB.
pub fn training_state_mib(params: u64, trainable: u64) -> f64 {
    (4 * params + 12 * trainable) as f64 / (1u64 << 20) as f64
}
// ANCHOR_END: training_state

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// In a child process started by [`add_measurements`]: measure the row named in the environment
/// and print the result. Returns false when this process is not such a child.
pub fn child_entry() -> bool {
    let Ok(spec) = std::env::var(ENV) else { return false };
    let result = (|| -> anyhow::Result<Measured> {
        let (kind, binary, row, reps, device) = {
            let p: Vec<&str> = spec.split('|').collect();
            anyhow::ensure!(p.len() == 5, "bad {ENV}={spec}");
            (
                serde_json::from_str::<Measure>(&format!("\"{}\"", p[0]))?,
                p[1].to_string(),
                p[2].to_string(),
                p[3].parse::<usize>()?,
                DeviceArg::parse(p[4]).map_err(|e| anyhow::anyhow!("--device: {e}"))?,
            )
        };
        let runner = super::all()
            .into_iter()
            .find(|(n, _)| *n == binary)
            .map(|(_, r)| r)
            .ok_or_else(|| anyhow::anyhow!("no table {binary}"))?;
        let super::Runner::Spec(spec, _) = runner else { anyhow::bail!("{binary} has no rows to measure") };
        let spec = spec();
        let table = super::published::load(spec.paper, spec.file)?;
        let r = table.row(&row).ok_or_else(|| anyhow::anyhow!("no row {row}"))?;
        let ours = (spec.ours)(r).ok_or_else(|| anyhow::anyhow!("row {row} is a reference row"))?;
        measure_one(kind, &ours.model, reps, device)
    })();
    match result {
        Ok(m) => println!("VA_RESULT {}", serde_json::to_string(&m).unwrap()),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
    true
}

fn video(batch: usize, frames: usize, res: usize) -> Video<f32, Cpu> {
    let v: Vec<f32> =
        Init::seeded(5).normal(batch * 3 * frames * res * res, 1.0).into_iter().map(|x| x as f32).collect();
    Cpu::default().tensor_from_vec(v, (batch, Const::<3>, frames, res, res))
}

/// One row's model on `device`, built, timed and its memory read by [`Meter`] (as `bench` does).
fn measure_one(
    kind: Measure,
    cfg: &crate::registry::ModelCfg,
    reps: usize,
    device: DeviceArg,
) -> anyhow::Result<Measured> {
    let mut meter = Meter::open(device)?;
    let mut model = meter.build(cfg, &mut Init::seeded(1))?;
    let frames = cfg.breakdown().frames;
    let res = cfg.clip().input_resolution;
    let reps = reps.max(1);
    match kind {
        Measure::Training => {
            let v = video(1, frames, res);
            let mut opt = AdamW::new(AdamWCfg::default());
            let mut times = Vec::new();
            for i in 0..reps + 1 {
                let t = meter.time(|| {
                    model.train_step(&v, &[0], &mut opt, &mut Ctx::train(i as u64));
                })?;
                if i > 0 {
                    times.push(t);
                }
            }
            Ok(Measured { seconds: median(times), throughput: None, peak_mb: meter.peak_mb(), reps, device })
        }
        Measure::Inference => {
            let one = video(1, frames, res);
            let batch = video(INFER_BATCH, frames, res);
            meter.time(|| drop(model.logits(&one, &mut Ctx::eval())))?; // warm-up
            let mut lat = Vec::new();
            for _ in 0..reps {
                lat.push(meter.time(|| drop(model.logits(&one, &mut Ctx::eval())))?);
            }
            let mut thr = Vec::new();
            for _ in 0..reps {
                thr.push(INFER_BATCH as f64 / meter.time(|| drop(model.logits(&batch, &mut Ctx::eval())))?);
            }
            Ok(Measured { seconds: median(lat), throughput: Some(median(thr)), peak_mb: meter.peak_mb(), reps, device })
        }
    }
}

/// Measures every computed row of the table in child processes and appends the measured columns
/// and the published ratios (relative to the table's reference row).
pub fn add_measurements(
    kind: Measure,
    spec: &Spec,
    rep: &mut Report,
    reps: usize,
    device: DeviceArg,
) -> anyhow::Result<()> {
    let table = super::published::load(spec.paper, spec.file)?;
    let exe = std::env::current_exe()?;
    // rounds: every row once per round, so that a noisy minute hits all rows alike
    let mut samples: Vec<Vec<Measured>> = table.rows.iter().map(|_| Vec::new()).collect();
    for round in 0..reps.max(1) {
        for (i, row) in table.rows.iter().enumerate() {
            if (spec.ours)(row).is_none() {
                continue;
            }
            eprintln!("round {}/{}: {} ({kind:?})…", round + 1, reps.max(1), row.label);
            let out = Command::new(&exe)
                .env(
                    ENV,
                    format!(
                        "{}|{}|{}|1|{device}",
                        serde_json::to_string(&kind)?.trim_matches('"'),
                        spec.binary,
                        row.id
                    ),
                )
                .output()?;
            if !out.status.success() {
                anyhow::bail!("measuring row {}: {}", row.id, String::from_utf8_lossy(&out.stderr));
            }
            let line = String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("VA_RESULT ").map(str::to_string))
                .ok_or_else(|| anyhow::anyhow!("no result for row {}", row.id))?;
            samples[i].push(serde_json::from_str(&line)?);
        }
    }
    let measured: Vec<Option<Measured>> = samples
        .into_iter()
        .map(|v| {
            (!v.is_empty()).then(|| Measured {
                seconds: median(v.iter().map(|m| m.seconds).collect()),
                throughput: v[0].throughput.map(|_| median(v.iter().filter_map(|m| m.throughput).collect())),
                peak_mb: v.iter().map(|m| m.peak_mb).fold(0.0, f64::max),
                reps: v.len(),
                device,
            })
        })
        .collect();
    apply_measurements(kind, spec, rep, measured, reps)
}

/// Appends the measured columns (and the published ratios) to a report, from one measurement per
/// row (`None` for reference rows).
pub fn apply_measurements(
    kind: Measure,
    spec: &Spec,
    rep: &mut Report,
    measured: Vec<Option<Measured>>,
    reps: usize,
) -> anyhow::Result<()> {
    let table = super::published::load(spec.paper, spec.file)?;
    let device = measured.iter().flatten().next().map_or(DeviceArg::Cpu, |m| m.device);
    // the reference row for ratios: the last computed row (the papers' method row in every cost table)
    let Some(ref_i) = measured.iter().rposition(|m| m.is_some()) else { return Ok(()) };
    let reference = measured[ref_i].clone().unwrap();
    let pub_num = |row: usize, key: &str| match table.rows[row].cells.get(key) {
        Some(Cell::Num(v)) => Some(*v),
        _ => None,
    };
    let (time_key, mem_key) = match (spec.file, kind) {
        ("table6_training_cost", _) => ("gpu_hours", "peak_mem"),
        (_, Measure::Inference) => ("latency_ms", "throughput"),
        _ => ("time", "mem"),
    };
    let ratio = |v: Option<f64>, r: Option<f64>| match (v, r) {
        (Some(v), Some(r)) if r != 0.0 => Some(v / r),
        _ => None,
    };
    let label = &table.rows[ref_i].label;
    // training only: the counted weight and optimizer state of each row, and what the peak adds to it
    let state: Vec<Option<f64>> = table
        .rows
        .iter()
        .map(|r| (spec.ours)(r).map(|o| o.model.breakdown()).map(|b| training_state_mib(b.params(), b.trainable())))
        .collect();
    let rest = |i: usize| Some(measured[i].as_ref()?.peak_mb - state[i]?);
    let n = table.rows.len();
    // a measured column: blank for reference rows; `f` gives the number of a measured row
    let here = |f: &dyn Fn(usize, &Measured) -> Option<f64>, decimals: usize| -> Vec<Value> {
        (0..n)
            .map(|i| match &measured[i] {
                Some(m) => Value::Fixed { value: f(i, m), decimals },
                None => Value::Blank,
            })
            .collect()
    };
    // a published ratio: every row that prints both figures
    let published = |key: &str| -> Vec<Value> {
        (0..n).map(|i| Value::Fixed { value: ratio(pub_num(i, key), pub_num(ref_i, key)), decimals: 2 }).collect()
    };
    let col = |h: String| Column::new(None, Kind::Measured(h));
    let columns: Vec<(Column, Vec<Value>)> = match kind {
        Measure::Training => vec![
            (col("step s (here)".into()), here(&|_, m| Some(m.seconds), 2)),
            (col(format!("time ÷ {label} (here)")), here(&|_, m| ratio(Some(m.seconds), Some(reference.seconds)), 2)),
            (col(format!("time ÷ {label} (pub)")), published(time_key)),
            (col("peak MB (here)".into()), here(&|_, m| Some(m.peak_mb), 0)),
            (col(format!("mem ÷ {label} (here)")), here(&|_, m| ratio(Some(m.peak_mb), Some(reference.peak_mb)), 2)),
            (col(format!("mem ÷ {label} (pub)")), published(mem_key)),
            (col("weights + optimizer MB (counted)".into()), here(&|i, _| state[i], 0)),
            (col("peak − that MB (here)".into()), here(&|i, _| rest(i), 0)),
            (col(format!("peak − that ÷ {label} (here)")), here(&|i, _| ratio(rest(i), rest(ref_i)), 2)),
        ],
        Measure::Inference => vec![
            (col("latency ms (here)".into()), here(&|_, m| Some(m.seconds * 1e3), 0)),
            (
                col(format!("latency ÷ {label} (here)")),
                here(&|_, m| ratio(Some(m.seconds), Some(reference.seconds)), 2),
            ),
            (col(format!("latency ÷ {label} (pub)")), published(time_key)),
            (
                col(format!("videos/s batch {INFER_BATCH} (here)")),
                here(&|_, m| Some(m.throughput.unwrap_or(f64::NAN)), 3),
            ),
            (col(format!("throughput ÷ {label} (here)")), here(&|_, m| ratio(m.throughput, reference.throughput), 2)),
            (col(format!("throughput ÷ {label} (pub)")), published(mem_key)),
        ],
    };
    for (column, cells) in columns {
        rep.push_column(column, cells);
    }
    rep.notes.push((
        "measured".into(),
        format!(
            "Measured here, in this run, each model in its own process: {} (median over {reps} rounds, every row once per round, each after a warm-up step; {}), {}. Ratios are to the row `{label}`; published ratios are computed from the printed figures. Absolute numbers are this machine's, not the paper's GPUs'.",
            match kind {
                Measure::Training => "one training step (forward, backward, AdamW) on one 8-frame 224×224 clip",
                Measure::Inference => "latency of one clip at batch 1 and throughput at batch 4 (the paper: 32)",
            },
            match device {
                DeviceArg::Cpu => format!("CPU, {} threads", rayon::current_num_threads()),
                d => format!("{d}, wall-clock time after a device synchronisation"),
            },
            match device {
                DeviceArg::Cpu => "peak resident memory of that process".to_string(),
                d => Meter::peak_what(d),
            }
        ),
    ));
    if kind == Measure::Training {
        rep.notes.push((
            "state".into(),
            "Weights + optimizer is counted, not measured: 4 bytes per weight and 12 more per trainable weight (gradient, two AdamW moments). It does not grow with the batch. At one clip per step it is a large part of the peak here, while the papers' 8 to 16 clips per GPU make activations the larger part there; the last column, peak minus that state (activations, workspace and the process itself), is the part that grows with the batch.".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11: `--device cuda` where nothing would be measured is refused (a flag that would be
    /// ignored): a table without measured columns, or with `--counts-only` / `--no-measure`; `cpu`
    /// (the default) passes everywhere.
    #[test]
    fn device_is_refused_where_nothing_is_measured() {
        use crate::repro::{check_device, Args};
        let cpu = Args::default();
        check_device(&cpu, false).unwrap();
        check_device(&cpu, true).unwrap();
        let gpu = Args { device: DeviceArg::Cuda(0), ..Default::default() };
        check_device(&gpu, true).unwrap();
        let e = check_device(&gpu, false).unwrap_err().to_string();
        assert!(e.contains("--device") && e.contains("no measured columns"), "{e}");
        for a in [Args { counts_only: true, ..gpu.clone() }, Args { no_measure: true, ..gpu.clone() }] {
            let e = check_device(&a, true).unwrap_err().to_string();
            assert!(e.contains("nothing is measured"), "{e}");
        }
    }

    /// A measurement saved without its device (before `--device`) reads as the CPU's.
    #[test]
    fn a_measurement_without_a_device_was_on_the_cpu() {
        let m: Measured = serde_json::from_str(r#"{"seconds":1.0,"throughput":null,"peak_mb":2.0,"reps":1}"#).unwrap();
        assert_eq!(m.device, DeviceArg::Cpu);
    }

    /// The doc example of [`training_state_mib`], and ViT-B/16 fully fine-tuned with a 400-class
    /// head: 85,799,424 encoder weights (CLIP's `proj` unused) + 768·400 + 400 = 86,107,024, all
    /// trainable, 16 bytes each = 1,377,712,384 bytes = 1313.9 MiB.
    #[test]
    fn training_state_counts_four_bytes_per_weight_and_twelve_per_trainable_one() {
        assert!((training_state_mib(1_000_000, 250_000) - 6.676).abs() < 1e-3);
        assert!((training_state_mib(86_107_024, 86_107_024) - 1313.9).abs() < 0.05);
        assert_eq!(training_state_mib(5, 0), 20.0 / 1048576.0);
    }
}
