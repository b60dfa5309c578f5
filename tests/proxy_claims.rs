//! The embedded benchmark's central claims at a reduced budget (seconds, not minutes), through the
//! kit's trainer and evaluator, without the cache. The full-budget numbers, 3 seeds and the other
//! seeds (`--seeds 101,102,103`) are in `fixtures/proxy/STUDY.md`; the commands that re-check
//! them are in the book chapter "The embedded CPU benchmark".

use video_adapters::proxy::bench::{run, Budget, RunKey, RunResult};
use video_adapters::proxy::claims::{appearance_solved, frame_averaging_blind, Metric, Stats};
use video_adapters::proxy::synth::Task;
use video_adapters::proxy::Method;

fn runs(methods: &[Method], task: Task, budget: Budget, seeds: &[u64]) -> Vec<RunResult> {
    methods
        .iter()
        .flat_map(|&method| seeds.iter().map(move |&seed| RunKey { method, task, budget, seed }))
        .map(|k| run(&k, false).unwrap_or_else(|e| panic!("{k:?}: {e:#}")))
        .collect()
}

/// Issue 10's central claim (ST-Adapter Table 1, SSv2 columns: frame-averaging CLIP is weak on
/// Something-Something v2, ST-Adapter strong): on the motion task, whose classes come in time-reversed
/// pairs, the linear probe on the frozen backbone is at chance (50 %) on the direction given the
/// right kind, while ST-Adapter is far above it, by more than 2 seed standard deviations on each
/// side (the claim's own rule, `claims::frame_averaging_blind`). Reduced budget: REDUCED_STEPS
/// steps at lr 2e-2, 3 seeds (measured: linear probe 50.0 ± 0.0 %, ST-Adapter 79.3 ± 7.5 %).
#[test]
fn frame_averaging_is_at_chance_on_motion_direction_while_st_adapter_is_far_above() {
    let budget = Budget { steps: REDUCED_STEPS, batch: 16, train_clips: 2400, test_clips: 480, lr: 2e-2 };
    let results = runs(&[Method::LinearProbe, Method::ST_ADAPTER], Task::Motion, budget, &[1, 2, 3]);
    let stats = Stats::new(&results);
    for m in [Method::LinearProbe, Method::ST_ADAPTER] {
        eprintln!(
            "{}: direction {:?}, top-1 {:?}",
            m.name(),
            stats.get(m, Task::Motion, Metric::Direction),
            stats.get(m, Task::Motion, Metric::Top1)
        );
    }
    let claim = frame_averaging_blind(&[Method::LinearProbe], &[Method::ST_ADAPTER]);
    let outcome = claim.outcome(&stats);
    assert_eq!(outcome.holds, Some(true), "{}", outcome.line(&claim.text));
}

const REDUCED_STEPS: usize = 150;

/// The appearance task (the Kinetics-400 stand-in) is solved by every method the tables run, even
/// at a reduced budget (24 steps, one seed): each is at least 90 % top-1 (chance 12.5 %).
#[test]
fn appearance_task_is_solved_by_every_method() {
    let methods = [
        Method::LinearProbe,
        Method::FullFinetune,
        Method::Houlsby,
        Method::ST_ADAPTER,
        Method::Aim,
        Method::MstAdapter,
    ];
    let budget = Budget { steps: 24, batch: 16, train_clips: 480, test_clips: 240, lr: 1e-2 };
    let results = runs(&methods, Task::Appearance, budget, &[1]);
    let claim = appearance_solved(&methods);
    let outcome = claim.outcome(&Stats::new(&results));
    assert_eq!(outcome.holds, Some(true), "{}", outcome.line(&claim.text));
}
