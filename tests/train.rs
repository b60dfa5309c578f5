//! The trainer on a tiny ST-Adapter and an in-memory source: exact resume, accumulation, the NaN
//! stop, unreadable items.

use std::path::PathBuf;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::Rng;
use video_adapters::data::{ItemError, Labelled, TrainSource};
use video_adapters::init::Init;
use video_adapters::recipe::Recipe;
use video_adapters::registry::{presets, ModelCfg, VideoModel};
use video_adapters::train::checkpoint::Checkpoint;
use video_adapters::train::{train, Ended, Options};

/// 20 clips of 4 frames of 32×32 whose label (0..5) shifts their mean, with noise from the
/// sample's generator. `bad` items fail to load; the `nan_call`-th clip handed out (0-based) holds
/// a NaN (with one loader thread, calls come in sample order).
struct Toy {
    bad: Vec<usize>,
    nan_call: Option<usize>,
    calls: std::sync::atomic::AtomicUsize,
}

fn toy(bad: Vec<usize>, nan_call: Option<usize>) -> Arc<dyn TrainSource> {
    Arc::new(Toy { bad, nan_call, calls: Default::default() })
}

impl TrainSource for Toy {
    fn len(&self) -> usize {
        20
    }
    fn num_classes(&self) -> usize {
        5
    }
    fn clip_shape(&self) -> [usize; 3] {
        [4, 32, 32]
    }
    fn train_clip(&self, i: usize, rng: &mut StdRng) -> Labelled {
        if self.bad.contains(&i) {
            return Err(ItemError::new(format!("toy/{i}.mp4"), "cannot decode"));
        }
        let label = i % 5;
        let mut clip: Vec<f32> = (0..3 * 4 * 32 * 32).map(|_| rng.gen::<f32>() - 0.5 + 0.3 * label as f32).collect();
        if self.nan_call == Some(self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) {
            clip[7] = f32::NAN;
        }
        Ok((clip, label))
    }
}

fn tiny() -> ModelCfg {
    presets().into_iter().find(|(n, _)| n == "tiny_st_adapter_k400").unwrap().1
}

/// ST-Adapter's recipe at the tiny model's size: 4 frames, 32 px, batch 4, 6 steps, 2 warm-up.
fn recipe() -> Recipe {
    video_adapters::testing::tiny_recipe(6, 2)
}

fn model(cfg: &ModelCfg) -> Box<dyn VideoModel> {
    cfg.build(&dfdx::prelude::Cpu::default(), &mut Init::seeded(3)).unwrap()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("va_train_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn opts(out: &std::path::Path) -> Options {
    Options { seed: 11, micro_batch: 2, out: Some(out.to_path_buf()), workers: 2, ..Default::default() }
}

/// N steps straight equal N/2 steps, a stop, a resume from the checkpoint and N/2 more, bit for
/// bit: parameters, AdamW moments, step and sample counters. Everything random derives from the
/// seed, the step and the sample number, and the kernels' reductions are ordered.
#[test]
fn a_resumed_run_equals_a_straight_run_bit_for_bit() {
    let (cfg, r) = (tiny(), recipe());
    let src = toy(vec![], None);

    let straight = dir("straight");
    let mut m = model(&cfg);
    let s = train(m.as_mut(), &cfg, &r, src.clone(), None, &opts(&straight), None).unwrap();
    assert_eq!((s.ended, s.step), (Ended::Finished, 6));

    let halves = dir("halves");
    let mut m = model(&cfg);
    let first = Options { stop_after: Some(3), ..opts(&halves) };
    let s = train(m.as_mut(), &cfg, &r, src.clone(), None, &first, None).unwrap();
    assert_eq!((s.ended, s.step), (Ended::Stopped, 3));
    let mid = Checkpoint::load(&halves.join("checkpoint.safetensors")).unwrap();
    assert_eq!((mid.header.step, mid.header.samples), (3, 12));
    let mut m = model(&cfg); // a fresh process: nothing but the checkpoint carries over
    let s = train(m.as_mut(), &cfg, &r, src, None, &opts(&halves), Some(mid)).unwrap();
    assert_eq!((s.ended, s.step), (Ended::Finished, 6));

    let a = Checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();
    let b = Checkpoint::load(&halves.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.header, b.header);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(a.params.len(), b.params.len());
    for ((ka, _, va), (kb, _, vb)) in a.params.iter().zip(&b.params) {
        assert_eq!(ka, kb);
        assert_eq!(bits(va), bits(vb), "`{ka}` differs after resume");
    }
    for (k, (m1, v1)) in &a.moments {
        let (m2, v2) = &b.moments[k];
        assert!(bits(m1) == bits(m2) && bits(v1) == bits(v2), "moments of `{k}` differ after resume");
    }
    // training moved the adapters (a test that cannot fail would be no test)
    let fresh = model(&cfg).values(&|k| k.contains("adapter"));
    assert!(fresh
        .iter()
        .zip(a.params.iter().filter(|p| p.0.contains("adapter")))
        .any(|(f, p)| bits(&f.2) != bits(&p.2)));
    let _ = std::fs::remove_dir_all(straight);
    let _ = std::fs::remove_dir_all(halves);
}

/// Gradients summed over 2 micro-batches of 2, each scaled by its share of the batch (2/4, as the
/// trainer scales them), equal the gradient of one batch of 4 (the loss is a mean over the batch),
/// up to summation order.
#[test]
fn accumulated_micro_batches_equal_one_batch() {
    use dfdx::prelude::*;
    use video_adapters::optim::GradSums;
    use video_adapters::Ctx;
    let cfg = tiny();
    let mut m = model(&cfg);
    // no zero-initialised adapter: every trainable parameter random
    let mut init = Init::seeded(4);
    for p in m.params().into_iter().filter(|p| p.trainable) {
        let v: Vec<f32> = init.normal(p.numel, 0.2).into_iter().map(|x| x as f32).collect();
        m.set_values(&p.key, &v).unwrap();
    }
    let src = toy(vec![], None);
    let clips: Vec<(Vec<f32>, usize)> =
        (0..4).map(|i| src.train_clip(i, &mut video_adapters::data::rng_for(1, 2, i as u64)).unwrap()).collect();
    let batch = |range: std::ops::Range<usize>| {
        let data: Vec<f32> = clips[range.clone()].iter().flat_map(|c| c.0.clone()).collect();
        let labels: Vec<usize> = clips[range.clone()].iter().map(|c| c.1).collect();
        (Cpu::default().tensor_from_vec(data, (range.len(), Const::<3>, 4, 32, 32)), labels)
    };
    let mut one = GradSums::new();
    let (v, l) = batch(0..4);
    m.accumulate(&v, &l, 0.1, 1.0, &mut one, &mut Ctx::eval());
    let mut two = GradSums::new();
    for r in [0..2, 2..4] {
        let (v, l) = batch(r);
        m.accumulate(&v, &l, 0.1, 0.5, &mut two, &mut Ctx::eval());
    }
    let (one, two) = (one.to_host(), two.to_host());
    assert_eq!(one.len(), two.len());
    for (k, g1) in &one {
        let g2 = &two[k];
        let scale = g1.iter().fold(0.0f32, |a, x| a.max(x.abs())).max(1e-6);
        let worst = g1.iter().zip(g2).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale;
        assert!(worst < 1e-5, "`{k}`: relative difference {worst}");
    }
}

/// A NaN in a clip makes the loss NaN: the run stops before the update with a message naming the
/// step, and the last checkpoint (the step before) is kept, with finite values. The 10th clip
/// (sample 9) is in step 3 (samples 8–11 at batch 4).
#[test]
fn a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint() {
    let (cfg, r) = (tiny(), recipe());
    let out = dir("nan");
    let mut m = model(&cfg);
    let o = Options { checkpoint_every: 1, workers: 1, ..opts(&out) };
    let err = train(m.as_mut(), &cfg, &r, toy(vec![], Some(9)), None, &o, None).unwrap_err().to_string();
    let kept = out.join("checkpoint.safetensors");
    assert!(err.starts_with("step 3: the loss is NaN; training stopped before the update"), "{err}");
    assert!(err.contains(&format!("the last checkpoint, {}, is kept", kept.display())), "{err}");
    let ck = Checkpoint::load(&kept).unwrap();
    assert_eq!(ck.header.step, 2);
    assert!(ck.params.iter().all(|(_, _, v)| v.iter().all(|x| x.is_finite())));
    let _ = std::fs::remove_dir_all(out);
}

/// An unreadable item stops the run with its name, unless `skip_bad`, which skips and counts it.
#[test]
fn unreadable_items_stop_the_run_or_are_skipped_and_counted() {
    let (cfg, r) = (tiny(), Recipe { steps: 5, ..recipe() });
    let src = toy(vec![2, 9], None);
    let mut m = model(&cfg);
    let o = Options { seed: 1, micro_batch: 4, workers: 1, ..Default::default() };
    let err = train(m.as_mut(), &cfg, &r, src.clone(), None, &o, None).unwrap_err().to_string();
    assert!(err.contains("cannot decode") && (err.contains("toy/2.mp4") || err.contains("toy/9.mp4")), "{err}");
    assert!(err.contains("--skip-bad"), "{err}");
    let o = Options { skip_bad: true, ..o };
    let s = train(m.as_mut(), &cfg, &r, src, None, &o, None).unwrap();
    // 5 steps × 4 clips = 20 good samples, so the first epoch (20 items) is drawn whole: both bad
    // items are skipped at least once (again if the second epoch starts with one), nothing else
    let names: std::collections::BTreeSet<&str> = s.skipped.iter().map(|e| e.item.as_str()).collect();
    assert_eq!(names, ["toy/2.mp4", "toy/9.mp4"].into(), "{:?}", s.skipped);
    assert_eq!(s.step, 5);
}
