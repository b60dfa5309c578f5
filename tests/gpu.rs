//! Every op and every model preset on CUDA against the CPU (the reference): forward outputs, logits,
//! and the gradients of the inputs and of every trainable parameter, at stated f32 tolerances.
//!
//! Feature `cuda`. Each test skips with one line on stderr (`SKIPPED <test>: <why>`) when the machine
//! has no CUDA device (no GPU is lent to the project's CI: there the CUDA build is compiled and these
//! tests skip; `scripts/gpu-check` runs them on a GPU machine).
//!
//! Tolerances: the two devices sum in different orders (cuBLAS vs our GEMM, one thread per row vs
//! SIMD lanes), so f32 results differ by rounding. An op's outputs and gradients must agree within
//! `|gpu − cpu| ≤ 1e-4 · (1 + max |cpu|)`; a whole model (12 layers of ViT-B/16) within
//! `1e-3 · (1 + max |cpu|)` for logits and for each parameter's gradient. AdamW on CUDA, from the
//! same gradients as the CPU's: moments equal bit for bit, parameters within `1e-6 · (1 + max |cpu|)`.
#![cfg(all(feature = "cuda", not(feature = "ci-check")))]

use std::collections::BTreeMap;
use std::sync::Arc;

use dfdx::prelude::*;
use dfdx::tensor::Cuda;
use video_adapters::data::{Labelled, TrainSource};
use video_adapters::device::{cuda_devices, host, KitDevice};
use video_adapters::init::Init;
use video_adapters::ops::layer_norm::LayerNorm;
use video_adapters::ops::{self, Grid, Kernel3, SeqAxis};
use video_adapters::optim::{self, AdamW, AdamWCfg, GradSums};
use video_adapters::param::Param;
use video_adapters::registry::{presets, ModelCfg};
use video_adapters::train::checkpoint::Checkpoint;
use video_adapters::train::{train, Ended, Options};
use video_adapters::Ctx;

const OP_TOL: f32 = 1e-4;
const MODEL_TOL: f32 = 1e-3;

/// The CUDA device, or `None` after printing why the test is skipped.
fn gpu(test: &str) -> Option<Cuda> {
    match cuda_devices() {
        Ok(_) => Some(Cuda::try_build(0, 0).expect("a CUDA device the driver reports opens")),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// `|b − a| ≤ tol · (1 + max |a|)` elementwise; the message names what and where.
fn assert_close(what: &str, cpu: &[f32], gpu: &[f32], tol: f32) {
    assert_eq!(cpu.len(), gpu.len(), "{what}: {} values on the CPU, {} on the GPU", cpu.len(), gpu.len());
    let scale = 1.0 + cpu.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in cpu.iter().zip(gpu).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}[{i}]: cpu {a} vs gpu {b} (tolerance {} )", tol * scale);
    }
}

fn values(seed: u64, n: usize) -> Vec<f32> {
    Init::seeded(seed).normal(n, 1.0).into_iter().map(|x| x as f32).collect()
}

fn param<S: Shape, D: KitDevice<f32>>(dev: &D, seed: u64, shape: S, trainable: bool) -> Param<S, f32, D> {
    Param::new(dev.tensor_from_vec(values(seed, shape.num_elements()), shape), trainable)
}

/// What one op case gives on a device: the output and every gradient, by name.
type Run = Vec<(String, Vec<f32>)>;

/// Parameters whose gradients a case reads, by name.
type Named<'a, D> = &'a [(&'a str, &'a Tensor<(usize,), f32, D>)];

/// Runs `op` traced on an input of `shape` (seeded values), then `sum(y · r)` backward for fixed
/// weights r; returns the output, the input's gradient, and the gradients of `params` (by name).
fn run_op<S: Shape, S2: Shape, D: KitDevice<f32>>(
    dev: &D,
    shape: S,
    op: impl FnOnce(Tensor<S, f32, D, OwnedTape<f32, D>>) -> Tensor<S2, f32, D, OwnedTape<f32, D>>,
    params: Named<'_, D>,
) -> Run {
    let x = dev.tensor_from_vec(values(1, shape.num_elements()), shape);
    let y = op(x.clone().traced(Gradients::leaky()));
    let out = host(&y);
    let n = out.len();
    let r = dev.tensor_from_vec(values(2, n), (n,));
    let g = (y.reshape_like(&(n,)) * r).sum::<Rank0, _>().backward();
    let mut run = vec![("output".to_string(), out), ("input gradient".to_string(), g.get(&x).as_vec())];
    for (name, p) in params {
        run.push((format!("{name} gradient"), g.get(*p).as_vec()));
    }
    run
}

fn compare(test: &str, cpu: Run, gpu: Run, tol: f32) {
    for ((name, a), (_, b)) in cpu.iter().zip(&gpu) {
        assert_close(&format!("{test}: {name}"), a, b, tol);
    }
}

macro_rules! op_test {
    ($(#[$doc:meta])* $name:ident, |$dev:ident| $body:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            let Some(g) = gpu(stringify!($name)) else { return };
            fn case<D: KitDevice<f32>>($dev: &D) -> Run {
                $body
            }
            compare(stringify!($name), case(&Cpu::default()), case(&g), OP_TOL);
        }
    };
}

op_test!(
    /// QuickGELU and exact GELU (act_fwd / act_bwd).
    activations_match_the_cpu,
    |dev| {
        let mut r = run_op(dev, (5usize, 7usize), |x| ops::quick_gelu(x), &[]);
        r.extend(run_op(dev, (5usize, 7usize), |x| ops::gelu(x), &[]));
        r
    }
);

op_test!(
    /// LayerNorm with trainable γ, β (ln_stats, ln_apply, ln_bwd_x, ln_bwd_params).
    layer_norm_matches_the_cpu,
    |dev| {
        let ln = LayerNorm { weight: param(dev, 3, (Const::<8>,), true), bias: param(dev, 4, (Const::<8>,), true), eps: 1e-5 };
        let (w, b) = (ln.weight.value.clone(), ln.bias.value.clone());
        let x_shape = (3usize, 5usize, Const::<8>);
        let x = dev.tensor_from_vec(values(1, 120), x_shape);
        let y = ops::layer_norm(x.clone().traced(Gradients::leaky()), &ln);
        let out = host(&y);
        let r = dev.tensor_from_vec(values(2, 120), (120usize,));
        let g = (y.reshape_like(&(120usize,)) * r).sum::<Rank0, _>().backward();
        vec![("output".into(), out), ("x".into(), g.get(&x).as_vec()), ("γ".into(), g.get(&w).as_vec()), ("β".into(), g.get(&b).as_vec())]
    }
);

op_test!(
    /// The depthwise 3D conv with kernel 3x3x3 (all taps reach the padding) and trainable weight and bias.
    dwconv3d_matches_the_cpu,
    |dev| {
        let (b, t, h, w, c) = (2, 4, 3, 3, 5);
        let k = Kernel3::new(3, 3, 3);
        let weight = param(dev, 3, (c, k.taps()), true);
        let bias = param(dev, 4, (c,), true);
        let mut r = run_op(dev, (b * t, h * w, c), |x| ops::dwconv3d(x, &weight, &bias, k, Grid { b, t, h, w }), &[("bias", &bias.value)]);
        // the weight gradient, read through a flat view of the same tensor
        let x = dev.tensor_from_vec(values(1, b * t * h * w * c), (b * t, h * w, c));
        let y = ops::dwconv3d(x.traced(Gradients::leaky()), &weight, &bias, k, Grid { b, t, h, w });
        let g = y.reshape_like(&(b * t * h * w * c,)).sum::<Rank0, _>().backward();
        r.push(("weight gradient".into(), g.get(&weight.value).as_vec()));
        r
    }
);

op_test!(
    /// Residual add, dropout-style masks and the mean over frames.
    elementwise_ops_match_the_cpu,
    |dev| {
        let other = dev.tensor_from_vec(values(5, 24), (4usize, 6usize));
        let mut r = run_op(dev, (4usize, 6usize), |x| ops::add(x, other.clone()), &[]);
        let factors: Vec<f32> = (0..4).map(|i| if i % 2 == 0 { 0.0 } else { 2.0 }).collect();
        r.extend(run_op(dev, (4usize, 6usize), |x| ops::drop_rows(x, factors.clone()), &[]));
        r.extend(run_op(dev, (4usize, 6usize), |x| ops::scale(x, 0.5), &[]));
        r.extend(run_op(dev, (4usize, 6usize), |x| ops::mean_over_frames(x, 2), &[]));
        r
    }
);

op_test!(
    /// A trainable linear layer (cuBLAS y = x·Wᵀ + b, dW, db, dx) and a frozen one (dx only).
    linear_layers_match_the_cpu,
    |dev| {
        let w = param(dev, 3, (7usize, 5usize), true);
        let b = param(dev, 4, (7usize,), true);
        let mut r = run_op(dev, (2usize, 3usize, 5usize), |x| ops::linear(x, &w, Some(&b)), &[("bias", &b.value)]);
        let x = dev.tensor_from_vec(values(1, 30), (6usize, 5usize));
        let g = ops::linear(x.traced(Gradients::leaky()), &w, Some(&b)).sum::<Rank0, _>().backward();
        r.push(("weight gradient".into(), g.get(&w.value).as_vec()));
        r.extend(run_op(dev, (6usize, 5usize), |x| ops::frozen_linear(x, &w.value, Some(&b.value)), &[]));
        r
    }
);

op_test!(
    /// Attention over the tokens of a frame and over the frames of a token (AIM's T-MSA), 2 heads.
    attention_matches_the_cpu,
    |dev| {
        let (n, l, c) = (4usize, 5usize, 8usize);
        let mut r = run_op(dev, (n, l, 3 * c), |x| ops::self_attention(x, 2, SeqAxis::Tokens, c), &[]);
        r.extend(run_op(dev, (n, l, 3 * c), |x| ops::self_attention(x, 2, SeqAxis::Frames { frames: 2 }, c), &[]));
        r
    }
);

op_test!(
    /// Token ops: CLS / patch split and join, temporal shift, CLS averaging.
    token_ops_match_the_cpu,
    |dev| {
        let s = (4usize, 5usize, 6usize);
        let mut r = run_op(dev, s, |x| ops::cls_tokens(x), &[]);
        r.extend(run_op(dev, s, |x| ops::patch_tokens(x), &[]));
        let delta = dev.tensor_from_vec(values(7, 4 * 4 * 6), (4usize, 4usize, 6usize));
        r.extend(run_op(dev, s, |x| ops::add_to_patches(x, delta.clone().retaped::<OwnedTape<f32, D>>()), &[]));
        r.extend(run_op(dev, s, |x| ops::cls_shift(x, 2, 2, 2), &[]));
        r.extend(run_op(dev, s, |x| ops::average_cls(x, 2), &[]));
        r
    }
);

op_test!(
    /// Attention on cuBLAS at shapes where a softmax row spans several warp passes (50 tokens, more
    /// than a warp's 32 lanes), 4 heads of 16, and AIM's temporal attention over 8 frames of 2 videos
    /// (a batched GEMM per video and head, frames 7 token rows apart).
    attention_matches_the_cpu_at_longer_sequences,
    |dev| {
        let c = 64usize;
        let mut r = run_op(dev, (3usize, 50usize, 3 * c), |x| ops::self_attention(x, 4, SeqAxis::Tokens, c), &[]);
        r.extend(run_op(dev, (16usize, 7usize, 3 * c), |x| ops::self_attention(x, 4, SeqAxis::Frames { frames: 8 }, c), &[]));
        r
    }
);

/// Reads one gradient out of a backward pass.
type Reader<'a, D> = &'a dyn Fn(&Gradients<f32, D>) -> Vec<f32>;

/// `sum(y · r)` backward for fixed weights r: the gradients of `inputs`, by name.
fn grads_of<S: Shape, D: KitDevice<f32>>(
    y: Tensor<S, f32, D, OwnedTape<f32, D>>,
    inputs: &[(&str, Reader<'_, D>)],
) -> Run {
    let n = y.shape().num_elements();
    let mut run = vec![("output".to_string(), host(&y))];
    let r = y.device().tensor_from_vec(values(2, n), (n,));
    let g = (y.reshape_like(&(n,)) * r).sum::<Rank0, _>().backward();
    for (name, get) in inputs {
        run.push((format!("{name} gradient"), get(&g)));
    }
    run
}

op_test!(
    /// The token embedding (trainable class, positional and temporal embeddings; the temporal one
    /// on the patches only, on every token, and absent), VPT prompts (trainable) and patchify.
    embedding_prompts_and_patchify_match_the_cpu,
    |dev| {
        let (n, p, c, frames) = (4usize, 5usize, 6usize, 2usize);
        let cls = param(dev, 3, (c,), true);
        let pos = param(dev, 4, (p + 1, c), true);
        let tem = param(dev, 5, (frames, c), true);
        let x = dev.tensor_from_vec(values(1, n * p * c), (n, p, c));
        let mut r = Vec::new();
        for (on_cls, tem) in [(false, Some(&tem)), (true, Some(&tem)), (false, None)] {
            let y = ops::embed_tokens(x.clone().traced(Gradients::leaky()), &cls, &pos, tem, on_cls);
            r.extend(grads_of(
                y,
                &[
                    ("patches", &|g| g.get(&x).as_vec()),
                    ("class embedding", &|g| g.get(&cls.value).as_vec()),
                    ("positional embedding", &|g| g.get(&pos.value).as_vec()),
                ],
            ));
            if let Some(t) = tem {
                let y = ops::embed_tokens(x.clone().traced(Gradients::leaky()), &cls, &pos, Some(t), on_cls);
                r.extend(grads_of(y, &[("temporal embedding", &|g| g.get(&t.value).as_vec())]));
            }
        }
        let prompts = param(dev, 6, (3usize, c), true);
        let xp = dev.tensor_from_vec(values(7, n * 6 * c), (n, 6usize, c));
        let y = ops::set_prompts(xp.clone().traced(Gradients::leaky()), 2, &prompts);
        r.extend(grads_of(y, &[("x", &|g| g.get(&xp).as_vec()), ("prompts", &|g| g.get(&prompts.value).as_vec())]));
        let video = dev.tensor_from_vec(values(8, 2 * 3 * 2 * 8 * 8), (2usize, Const::<3>, 2usize, 8usize, 8usize));
        r.push(("patchify".into(), host(&video_adapters::clip::vit::patchify(&video, 4))));
        r
    }
);

/// The cross-entropy with label smoothing: loss and logit gradients.
#[test]
fn cross_entropy_matches_the_cpu() {
    let Some(g) = gpu("cross_entropy_matches_the_cpu") else { return };
    fn case<D: KitDevice<f32>>(dev: &D) -> Run {
        let z = dev.tensor_from_vec(values(1, 15), (3usize, 5usize));
        let loss = ops::cross_entropy(z.clone().traced(Gradients::leaky()), &[0, 4, 2], 0.1);
        let value = host(&loss);
        let grads = loss.backward();
        vec![("loss".into(), value), ("logit gradient".into(), grads.get(&z).as_vec())]
    }
    compare("cross_entropy", case(&Cpu::default()), case(&g), OP_TOL);
}

/// A model on a device: its logits (eval) and its trainable parameters' gradients for one batch.
fn model_run<D: KitDevice<f32>>(cfg: &ModelCfg, dev: &D, batch: usize) -> (Vec<f32>, BTreeMap<String, Vec<f32>>) {
    let m = cfg.build_on(dev, &mut Init::seeded(7)).expect("the preset builds");
    let (t, res) = (cfg.frames(), cfg.clip().input_resolution);
    let video = Cpu::default().tensor_from_vec(values(9, batch * 3 * t * res * res), (batch, Const::<3>, t, res, res));
    let logits = m.logits(&video, &mut Ctx::eval()).as_vec();
    let mut sums = GradSums::new();
    let labels: Vec<usize> = (0..batch).map(|i| i % cfg.num_classes()).collect();
    // eval context: no dropout, so both devices see the same function
    m.accumulate(&video, &labels, 0.1, 1.0, &mut sums, &mut Ctx::eval());
    (logits, sums.to_host())
}

fn compare_models(test: &str, filter: impl Fn(&str) -> bool, batch: usize) {
    let Some(g) = gpu(test) else { return };
    let chosen: Vec<(String, ModelCfg)> = presets().into_iter().filter(|(n, _)| filter(n)).collect();
    assert!(!chosen.is_empty(), "{test}: no preset chosen");
    for (name, cfg) in chosen {
        let (lc, gc) = model_run(&cfg, &Cpu::default(), batch);
        let (lg, gg) = model_run(&cfg, &g, batch);
        assert_close(&format!("{name}: logits"), &lc, &lg, MODEL_TOL);
        assert_eq!(gc.keys().collect::<Vec<_>>(), gg.keys().collect::<Vec<_>>(), "{name}: trainable sets differ");
        assert!(!gc.is_empty(), "{name}: no trainable parameter");
        for (key, a) in &gc {
            assert_close(&format!("{name}: gradient of {key}"), a, &gg[key], MODEL_TOL);
        }
    }
}

/// Every tiny preset (baseline, ST-Adapter, AIM, MST-Adapter): logits and every trainable
/// parameter's gradient on CUDA match the CPU.
#[test]
fn tiny_presets_match_the_cpu() {
    compare_models("tiny_presets_match_the_cpu", |n| n.starts_with("tiny_"), 2);
}

/// The ViT-B/16 presets of the three papers and the frame-wise baseline, batch 1: logits and every
/// trainable parameter's gradient on CUDA match the CPU.
#[test]
fn vit_b16_presets_match_the_cpu() {
    let b16 =
        ["clip_baseline_vit_b16", "st_adapter_vit_b16_12x384", "aim_vitclip_base_k400", "mst_adapter_vit_b16_k400"];
    compare_models("vit_b16_presets_match_the_cpu", |n| b16.contains(&n), 1);
}

/// Issue 11: `bench --device cuda` measures the kit on the GPU (the small preset's step and
/// evaluation here, one round) and says so in its header; a measured cost table (ST-Adapter
/// Table 11) measures its rows there too and says so in its note.
#[test]
fn bench_and_cost_tables_run_on_the_gpu() {
    let Some(_g) = gpu("bench_and_cost_tables_run_on_the_gpu") else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--device", "cuda", "--only", "step:small,eval:small", "--rounds", "1", "--reps", "1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("The kit on device cuda:0") && text.contains("GPU memory in use"), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_st_table11_inference_speed"))
        .args(["--device", "cuda", "--reps", "1", "--no-proxy", "--format", "markdown"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("cuda:0, wall-clock time after a device synchronisation"), "{text}");
}

/// `gpu_check` refuses the CPU, an unknown flag and (on a machine without a GPU) says there is no
/// device, without panicking.
#[test]
fn gpu_check_names_what_is_wrong() {
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_gpu_check")).args(args).output().unwrap();
    let out = run(&["--out", "/nonexistent-dir/x", "--device", "cpu"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("measures a CUDA device"), "{err}");
    let out = run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    if let Err(why) = cuda_devices() {
        let out = run(&["--out", "/tmp/gpu-check-test"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(&why) && !err.contains("panicked"), "{err}");
    }
}

/// Three parameters: `a` (trainable, decayed, lr × 0.5), `b` (trainable, no decay: its group's
/// weight-decay multiplier is 0), `f` (frozen).
struct Three<E: Dtype, D: Storage<E>> {
    a: Param<(usize,), E, D>,
    b: Param<(usize,), E, D>,
    f: Param<(usize,), E, D>,
}
video_adapters::impl_params!([E: video_adapters::device::Real, D: KitDevice<E>] Three<E, D> {
    param "a" => a, param "b" => b, param "f" => f
});

const A: usize = 300; // more than one block of 256 threads
const B: usize = 37;

fn three<D: KitDevice<f32>>(dev: &D) -> Three<f32, D> {
    Three { a: param(dev, 31, (A,), true), b: param(dev, 32, (B,), true), f: param(dev, 33, (10,), false) }
}

fn adamw() -> AdamW<f32> {
    let cfg = AdamWCfg { lr: 1e-2, betas: (0.9, 0.999), eps: 1e-8, weight_decay: 0.05 };
    AdamW::new(cfg).with_groups(Box::new(|k: &str| if k == "b" { (1.0, 0.0) } else { (0.5, 1.0) }))
}

/// Gradient sums of step `step` of `m`: two micro-batches at scale 1/2, each the gradient of
/// `sum(a · ca) + sum(b · cb)`, which is (ca, cb) exactly on both devices (seeded values, with
/// `nan` at b[3] in the second micro-batch when given).
fn sums_of<D: KitDevice<f32>>(m: &Three<f32, D>, step: u64, nan: Option<f32>) -> GradSums<f32> {
    let dev = m.a.value.device().clone();
    let mut sums = GradSums::new();
    for micro in 0..2 {
        let ca = dev.tensor_from_vec(values(100 + 2 * step + micro, A), (A,));
        let mut cb = values(200 + 2 * step + micro, B);
        if let (Some(x), 1) = (nan, micro) {
            cb[3] = x;
        }
        let cb = dev.tensor_from_vec(cb, (B,));
        let la = (m.a.value.leaky_trace() * ca).sum::<Rank0, _>();
        let lb = (m.b.value.leaky_trace() * cb).sum::<Rank0, _>();
        let mut grads = (la + lb).backward();
        optim::accumulate(m, &mut grads, 0.5, &mut sums);
    }
    sums
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Issue 11 (the optimizer on the GPU): four AdamW steps on CUDA (gradient sums accumulated over
/// two micro-batches in device buffers, moments held there, parameters updated in place) against
/// the CPU optimizer, from the same gradients. The gradient sums and the moments are equal bit for
/// bit (`optim.cu` rounds each operation as the host loop does, no FMA); the parameters within
/// `|gpu − cpu| ≤ 1e-6 · (1 + max |cpu|)` (the last two operations, w·(1 − lr·wd) − u, run in
/// dfdx's SGD kernel, which may round them together); the frozen parameter is untouched. The
/// device's check for non-finite sums names the key with a NaN (and an infinity), as the host's does.
#[test]
fn adamw_on_cuda_matches_the_cpu_optimizer() {
    let Some(g) = gpu("adamw_on_cuda_matches_the_cpu_optimizer") else { return };
    let (mut mc, mut mg) = (three(&Cpu::default()), three(&g));
    let (mut oc, mut og) = (adamw(), adamw());
    for step in 0..4 {
        let (mut sc, mut sg) = (sums_of(&mc, step, None), sums_of(&mg, step, None));
        assert_eq!(sg.first_nonfinite(), None);
        let (hc, hg) = (sc.to_host(), sg.to_host());
        for k in ["a", "b"] {
            assert_eq!(bits(&hc[k]), bits(&hg[k]), "step {step}: gradient sum of `{k}`");
        }
        oc.step(&mut mc, &mut sc);
        og.step(&mut mg, &mut sg);
        assert!(og.on_device() && og.moments.is_empty(), "the moments stay on the device");
        og.sync_moments();
        for k in ["a", "b"] {
            let ((m1, v1), (m2, v2)) = (&oc.moments[k], &og.moments[k]);
            assert_eq!((bits(m1), bits(v1)), (bits(m2), bits(v2)), "step {step}: moments of `{k}`");
        }
        assert!(!og.moments.contains_key("f"));
        assert_close(&format!("step {step}: a"), &host(&mc.a.value), &host(&mg.a.value), 1e-6);
        assert_close(&format!("step {step}: b"), &host(&mc.b.value), &host(&mg.b.value), 1e-6);
        assert_eq!(bits(&host(&mg.f.value)), bits(&host(&three(&Cpu::default()).f.value)), "frozen `f` moved");
    }
    for x in [f32::NAN, f32::INFINITY] {
        assert_eq!(sums_of(&mg, 9, Some(x)).first_nonfinite().as_deref(), Some("b"), "{x} in `b`");
        assert_eq!(sums_of(&mc, 9, Some(x)).first_nonfinite().as_deref(), Some("b"), "{x} in `b`");
    }
}

/// Issue 11: AdamW's state leaves the device and comes back exactly. After two steps on CUDA the
/// moments and parameters are downloaded (what a checkpoint stores), uploaded into a fresh model and
/// optimizer (what a resume does), and the third step of both is the same bit for bit.
#[test]
fn adamw_state_round_trips_through_the_host_on_cuda() {
    let Some(g) = gpu("adamw_state_round_trips_through_the_host_on_cuda") else { return };
    let (mut m, mut o) = (three(&g), adamw());
    for step in 0..2 {
        let mut s = sums_of(&m, step, None);
        o.step(&mut m, &mut s);
    }
    o.sync_moments();
    let (mut r, mut ro) = (three(&g), adamw());
    r.a.set(&host(&m.a.value));
    r.b.set(&host(&m.b.value));
    (ro.step, ro.moments) = (o.step, o.moments.clone());
    let (mut s, mut rs) = (sums_of(&m, 2, None), sums_of(&r, 2, None));
    o.step(&mut m, &mut s);
    ro.step(&mut r, &mut rs);
    o.sync_moments();
    ro.sync_moments();
    assert_eq!(o.moments, ro.moments);
    assert_eq!(bits(&host(&m.a.value)), bits(&host(&r.a.value)));
    assert_eq!(bits(&host(&m.b.value)), bits(&host(&r.b.value)));
}

/// A source of seeded random clips (4 frames, 32 px, 5 classes) for the trainer on CUDA.
struct Noise;

impl TrainSource for Noise {
    fn len(&self) -> usize {
        20
    }
    fn num_classes(&self) -> usize {
        5
    }
    fn clip_shape(&self) -> [usize; 3] {
        [4, 32, 32]
    }
    fn train_clip(&self, i: usize, rng: &mut rand::rngs::StdRng) -> Labelled {
        use rand::Rng;
        Ok(((0..3 * 4 * 32 * 32).map(|_| rng.gen::<f32>() - 0.5 + 0.3 * (i % 5) as f32).collect(), i % 5))
    }
}

/// Issue 11: on CUDA, as on the CPU (`tests/train.rs`), 4 training steps straight equal 2 steps, a
/// checkpoint, a resume in a fresh model and 2 more, bit for bit (parameters and AdamW moments): the
/// moments are downloaded at the checkpoint and uploaded at the resume, and the GPU's kernels are
/// deterministic (no atomics; cuBLAS is bitwise reproducible on one GPU).
#[test]
fn a_resumed_cuda_run_equals_a_straight_one_bit_for_bit() {
    let Some(g) = gpu("a_resumed_cuda_run_equals_a_straight_one_bit_for_bit") else { return };
    let cfg = presets().into_iter().find(|(n, _)| n == "tiny_st_adapter_k400").unwrap().1;
    let r = video_adapters::testing::tiny_recipe(4, 1);
    let src: Arc<dyn TrainSource> = Arc::new(Noise);
    let dir = |name: &str| {
        let d = std::env::temp_dir().join(format!("va_gpu_train_{name}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    };
    let opts = |out: &std::path::Path| Options {
        seed: 5,
        micro_batch: 2,
        out: Some(out.to_path_buf()),
        workers: 2,
        ..Default::default()
    };
    let model = || cfg.build_on(&g, &mut Init::seeded(3)).unwrap();

    let straight = dir("straight");
    let s = train(model().as_mut(), &cfg, &r, src.clone(), None, &opts(&straight), None).unwrap();
    assert_eq!((s.ended, s.step), (Ended::Finished, 4));
    let halves = dir("halves");
    let first = Options { stop_after: Some(2), ..opts(&halves) };
    let s = train(model().as_mut(), &cfg, &r, src.clone(), None, &first, None).unwrap();
    assert_eq!((s.ended, s.step), (Ended::Stopped, 2));
    let mid = Checkpoint::load(&halves.join("checkpoint.safetensors")).unwrap();
    assert!(!mid.moments.is_empty() && mid.moments.values().all(|(m, _)| m.iter().any(|x| *x != 0.0)));
    let s = train(model().as_mut(), &cfg, &r, src, None, &opts(&halves), Some(mid)).unwrap();
    assert_eq!((s.ended, s.step), (Ended::Finished, 4));

    let a = Checkpoint::load(&straight.join("checkpoint.safetensors")).unwrap();
    let b = Checkpoint::load(&halves.join("checkpoint.safetensors")).unwrap();
    assert_eq!(a.header, b.header);
    assert_eq!(a.params.len(), b.params.len());
    for ((ka, _, va), (kb, _, vb)) in a.params.iter().zip(&b.params) {
        assert_eq!(ka, kb);
        assert_eq!(bits(va), bits(vb), "`{ka}` differs after resume on CUDA");
    }
    assert_eq!(a.moments.keys().collect::<Vec<_>>(), b.moments.keys().collect::<Vec<_>>());
    for (k, (m1, v1)) in &a.moments {
        let (m2, v2) = &b.moments[k];
        assert_eq!((bits(m1), bits(v1)), (bits(m2), bits(v2)), "moments of `{k}` differ after resume on CUDA");
    }
    let _ = (std::fs::remove_dir_all(&straight), std::fs::remove_dir_all(&halves));
}
