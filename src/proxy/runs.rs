//! The benchmark's runs behind the book's proxy figures: every charted method on the motion task,
//! seeds 1–3, default budget, kept in one JSON file that our code wrote
//! (`book/src/measured/proxy_runs.json`, `cargo run --release --bin proxy -- runs`). The figures
//! ([`crate::figures::proxy`]) are drawn from that file only, and `tests/book.rs` checks that the
//! committed SVGs are that file rendered.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::bench::{self, Budget, RunKey, RunResult};
use super::synth::Task;
use super::Method;
use crate::ops::Kernel3;

// ANCHOR: chart_methods
/// The methods of the accuracy-against-tunable-parameters chart, in legend order. One list: extend
/// it when a method is added, then rerun `proxy -- runs`.
pub fn chart_methods() -> Vec<Method> {
    use crate::baselines::{Arch, Tuning};
    let st = |t, h, w| Method::StAdapter(Kernel3::new(t, h, w));
    let b = Method::baseline;
    vec![
        Method::LinearProbe,
        Method::FullFinetune,
        Method::Houlsby,
        st(1, 1, 1),
        st(1, 3, 3),
        Method::ST_ADAPTER,
        st(3, 3, 3),
        Method::Aim,
        Method::MstAdapter,
        Method::MstAdapterNoShift,
        // the other protocols of ST-Adapter Table 1
        b(Arch::Sa, Tuning::Partial),
        b(Arch::Sa, Tuning::Prompt { tokens: crate::proxy::PROMPT_TOKENS }),
        b(Arch::Sa, Tuning::AttentionalPooling),
        b(Arch::SaTa, Tuning::Full),
        b(Arch::SaTa, Tuning::Partial),
        b(Arch::SaTa, Tuning::Temporal),
        b(Arch::SaTs, Tuning::Full),
    ]
}
// ANCHOR_END: chart_methods

/// The methods whose training-loss curves are drawn (the main method of each kind).
pub fn curve_methods() -> Vec<Method> {
    vec![
        Method::LinearProbe,
        Method::FullFinetune,
        Method::Houlsby,
        Method::ST_ADAPTER,
        Method::Aim,
        Method::MstAdapter,
    ]
}

/// The seeds of the committed runs.
pub const SEEDS: [u64; 3] = [1, 2, 3];

/// The task of the figures: the motion task (the SSv2 stand-in), where the methods differ.
pub const TASK: Task = Task::Motion;

/// The runs file: what made it and every run's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runs {
    /// The command that wrote the file.
    pub made_by: String,
    /// [`bench::BENCH_VERSION`] of the code that ran them.
    pub bench_version: u32,
    pub runs: Vec<RunResult>,
}

/// The keys of the committed file: [`chart_methods`] × [`SEEDS`] on [`TASK`] at the default budget.
pub fn keys() -> Vec<RunKey> {
    let budget = Budget::default_for(TASK);
    chart_methods()
        .into_iter()
        .flat_map(|method| SEEDS.iter().map(move |&seed| RunKey { method, task: TASK, budget, seed }))
        .collect()
}

/// Runs (or reads from `cache`) every key. A cached result without a loss curve (written before
/// [`RunResult::curve`] existed) is run again and its cache file replaced; the rerun's accuracies
/// should equal the cached ones (the curve records a run, it does not change it): a difference is
/// reported on stderr with both numbers.
pub fn collect(keys: &[RunKey], cache: Option<&Path>) -> anyhow::Result<Vec<RunResult>> {
    let mut out = Vec::with_capacity(keys.len());
    for (i, r) in bench::run_all(keys, cache, true)?.into_iter().enumerate() {
        if !r.curve.is_empty() {
            out.push(r);
            continue;
        }
        let key = keys[i];
        eprintln!("proxy: {} seed {} was cached without a loss curve: running it again", key.method.name(), key.seed);
        let fresh = bench::run(&key, true)?;
        if (fresh.top1, fresh.kind, fresh.direction) != (r.top1, r.kind, r.direction) {
            eprintln!(
                "proxy: WARNING {} seed {}: the rerun gives top-1 {} (kind {:?}, direction {:?}), the cache held {} \
                 ({:?}, {:?}): the code changed its numbers without a new BENCH_VERSION; keeping the rerun",
                key.method.name(),
                key.seed,
                fresh.top1,
                fresh.kind,
                fresh.direction,
                r.top1,
                r.kind,
                r.direction
            );
        }
        if let Some(dir) = cache {
            crate::io::write_atomic(&bench::cache_file(&key, dir)?, serde_json::to_string_pretty(&fresh)?.as_bytes())?;
        }
        out.push(fresh);
    }
    Ok(out)
}

impl Runs {
    /// Reads a runs file; errors name the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not a proxy runs file: {e}", path.display()))
    }

    /// The committed file, `book/src/measured/proxy_runs.json` under the working directory's checkout.
    pub fn load_committed() -> anyhow::Result<Self> {
        Self::load(&crate::repro::book_src_dir()?.join("measured/proxy_runs.json"))
    }

    /// The runs of `method`, in seed order.
    pub fn of(&self, method: Method) -> Vec<&RunResult> {
        let mut v: Vec<&RunResult> = self.runs.iter().filter(|r| r.key.method == method).collect();
        v.sort_by_key(|r| r.key.seed);
        v
    }
}

#[cfg(test)]
mod tests {
    use crate::proxy::bench::loss_curve;

    /// The curve's points are the means of consecutive groups of steps, the last group shorter when
    /// the steps do not divide (arithmetic).
    #[test]
    fn loss_curve_averages_every_group_of_steps_and_the_rest() {
        let losses: Vec<f64> = (1..=25).map(f64::from).collect();
        assert_eq!(loss_curve(&losses, 10), vec![5.5, 15.5, 23.0]);
        assert_eq!(loss_curve(&[], 10), Vec::<f64>::new());
    }
}
