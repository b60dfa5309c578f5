//! The papers' claims as checks on the embedded benchmark's results.

/// Mean and sample standard deviation (n − 1; 0 for one value); None for no values.
pub fn mean_std(v: &[f64]) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    Some((m, var.sqrt()))
}

use super::bench::RunResult;
use super::synth::Task;
use super::Method;

/// What a claim reads from the runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Top-1 accuracy (%).
    Top1,
    /// Motion task: direction in time right, given the kind right (%); order-blind models: 50.
    Direction,
}

impl Metric {
    fn of(self, r: &RunResult) -> Option<f64> {
        match self {
            Metric::Top1 => Some(r.top1),
            Metric::Direction => r.direction,
        }
    }
}

/// The runs' results by (method, task): mean, std and number of seeds of a metric.
pub struct Stats<'a>(&'a [RunResult]);

impl<'a> Stats<'a> {
    pub fn new(results: &'a [RunResult]) -> Self {
        Stats(results)
    }

    /// (mean, std, runs) of `metric` over the runs of `method` on `task`.
    pub fn get(&self, method: Method, task: Task, metric: Metric) -> Option<(f64, f64, usize)> {
        let v: Vec<f64> = self
            .0
            .iter()
            .filter(|r| r.key.method == method && r.key.task == task)
            .filter_map(|r| metric.of(r))
            .collect();
        mean_std(&v).map(|(m, s)| (m, s, v.len()))
    }
}

/// The result of checking a claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// None: a run the claim needs is missing.
    pub holds: Option<bool>,
    /// The numbers the verdict rests on.
    pub numbers: String,
    /// Why the proxy may differ from the paper's setting (printed when the claim does not hold).
    pub why: &'static str,
}

impl Outcome {
    /// "claim: <text> — reproduced: <numbers>" (or "not reproduced: … Why: …").
    pub fn line(&self, text: &str) -> String {
        match self.holds {
            Some(true) => format!("{text} — reproduced: {}", self.numbers),
            Some(false) => {
                format!("{text} — NOT reproduced: {}. Why the proxy may differ: {}.", self.numbers, self.why)
            }
            None => format!("{text} — not checked: {}", self.numbers),
        }
    }
}

/// A paper's claim, checked on the proxy's runs.
pub struct Claim {
    pub text: String,
    /// The (method, task) runs the check reads.
    pub runs: Vec<(Method, Task)>,
    pub check: Box<dyn Fn(&Stats) -> Outcome + Send + Sync>,
}

impl Claim {
    pub fn needs(&self) -> Vec<(Method, Task)> {
        self.runs.clone()
    }

    pub fn outcome(&self, s: &Stats) -> Outcome {
        (self.check)(s)
    }
}

fn fmt(name: &str, s: Option<(f64, f64, usize)>) -> String {
    match s {
        Some((m, sd, _)) => format!("{name} {m:.1} ± {sd:.1}"),
        None => format!("{name} —"),
    }
}

// ANCHOR: central_claim
/// "Frame-averaging methods are near chance on the motion task while the temporal methods are far
/// above" (ST-Adapter Table 1 and MST-Adapter Table 2, SSv2 columns), read on the motion task's
/// direction-given-kind accuracy, where chance (and every order-blind model) is 50 %. Holds when
/// every frame-averaging mean is within 5 points of 50, every temporal mean is at least 60, and
/// the lowest temporal mean − 2 std is above the highest frame-averaging mean + 2 std.
pub fn frame_averaging_blind(frame: &[Method], temporal: &[Method]) -> Claim {
    let names = |ms: &[Method]| ms.iter().map(Method::name).collect::<Vec<_>>().join(", ");
    let text = format!(
        "frame-averaging methods ({}) are near chance on the motion task (the SSv2 stand-in) while the temporal methods ({}) are far above",
        names(frame),
        names(temporal)
    );
    let (f, tm) = (frame.to_vec(), temporal.to_vec());
    let runs = frame.iter().chain(temporal).map(|&m| (m, Task::Motion)).collect();
    Claim {
        text,
        runs,
        check: Box::new(move |s: &Stats| {
            let dir = |m: Method| s.get(m, Task::Motion, Metric::Direction);
            let top = |m: Method| s.get(m, Task::Motion, Metric::Top1);
            let all: Vec<Method> = f.iter().chain(&tm).copied().collect();
            let numbers = format!(
                "direction given the right kind (chance 50 %): {}; top-1 (chance 8.3 %): {}",
                all.iter().map(|&m| fmt(&m.name(), dir(m))).collect::<Vec<_>>().join(", "),
                all.iter().map(|&m| fmt(&m.name(), top(m))).collect::<Vec<_>>().join(", ")
            );
            let why = "the proxy's temporal adapters have 300 steps on 2,400 clips of a 4-layer, width-64 backbone; \
                       a temporal method that has not yet learnt the order of frames sits at 50 % like a \
                       frame-averaging one";
            let (fs, ts): (Option<Vec<_>>, Option<Vec<_>>) =
                (f.iter().map(|&m| dir(m)).collect(), tm.iter().map(|&m| dir(m)).collect());
            let (Some(fs), Some(ts)) = (fs, ts) else { return Outcome { holds: None, numbers, why } };
            let near = fs.iter().all(|x| (x.0 - 50.0).abs() <= 5.0);
            let far = ts.iter().all(|x| x.0 >= 60.0);
            let hi_f = fs.iter().map(|x| x.0 + 2.0 * x.1).fold(f64::MIN, f64::max);
            let lo_t = ts.iter().map(|x| x.0 - 2.0 * x.1).fold(f64::MAX, f64::min);
            Outcome { holds: Some(near && far && lo_t > hi_f), numbers, why }
        }),
    }
}
// ANCHOR_END: central_claim

/// "Every method does well on Kinetics-400" read on the appearance task: every method's mean
/// top-1 is at least 90 % (chance 12.5 %).
pub fn appearance_solved(methods: &[Method]) -> Claim {
    let ms = methods.to_vec();
    Claim {
        text: "on the Kinetics-400 stand-in (the appearance task), where the frame content decides the class, every \
               method does well"
            .into(),
        runs: methods.iter().map(|&m| (m, Task::Appearance)).collect(),
        check: Box::new(move |s: &Stats| {
            let v: Vec<_> = ms.iter().map(|&m| (m, s.get(m, Task::Appearance, Metric::Top1))).collect();
            let numbers = format!(
                "top-1 (chance 12.5 %, threshold 90 %): {}",
                v.iter().map(|(m, x)| fmt(&m.name(), *x)).collect::<Vec<_>>().join(", ")
            );
            let why = "the appearance task needs only the colour the frozen backbone already encodes; a method \
                       below 90 % there did not train within the budget";
            let holds = v.iter().map(|(_, x)| x.map(|x| x.0 >= 90.0)).collect::<Option<Vec<bool>>>();
            Outcome { holds: holds.map(|h| h.iter().all(|&b| b)), numbers, why }
        }),
    }
}

/// "`a` is above `b`" on `task`'s top-1: holds when a's mean exceeds b's by more than the larger
/// of their standard deviations.
pub fn ranks_above(text: &str, task: Task, a: Method, b: Method, why: &'static str) -> Claim {
    pair(text, task, a, b, why, |x, y| x.0 - y.0 > x.1.max(y.1))
}

/// A method's (mean, std, runs) on one task and metric, as [`Stats::get`] gives it.
type MeanStd = (f64, f64, usize);

/// A claim on two methods' top-1 on `task`: `holds(a's stats, b's stats)`.
fn pair(text: &str, task: Task, a: Method, b: Method, why: &'static str, holds: fn(MeanStd, MeanStd) -> bool) -> Claim {
    Claim {
        text: text.into(),
        runs: vec![(a, task), (b, task)],
        check: Box::new(move |s: &Stats| {
            let (x, y) = (s.get(a, task, Metric::Top1), s.get(b, task, Metric::Top1));
            let numbers = format!("top-1 on the {} task: {}, {}", task.name(), fmt(&a.name(), x), fmt(&b.name(), y));
            Outcome { holds: x.zip(y).map(|(x, y)| holds(x, y)), numbers, why }
        }),
    }
}

/// "Top-1 on `task` rises along `methods`" (each a component added, or adapters moved deeper):
/// holds when every step raises the mean by more than the larger of the two standard deviations.
pub fn increasing(text: &str, task: Task, methods: &[Method], why: &'static str) -> Claim {
    let ms = methods.to_vec();
    Claim {
        text: text.into(),
        runs: methods.iter().map(|&m| (m, task)).collect(),
        check: Box::new(move |s: &Stats| {
            let v: Vec<_> = ms.iter().map(|&m| (m, s.get(m, task, Metric::Top1))).collect();
            let numbers = format!(
                "top-1 on the {} task, in the claim's order: {}",
                task.name(),
                v.iter().map(|(m, x)| fmt(&m.name(), *x)).collect::<Vec<_>>().join(" → ")
            );
            let xs: Option<Vec<(f64, f64, usize)>> = v.iter().map(|(_, x)| *x).collect();
            let holds = xs.map(|xs| xs.windows(2).all(|w| w[1].0 - w[0].0 > w[0].1.max(w[1].1)));
            Outcome { holds, numbers, why }
        }),
    }
}

/// "`a` is not below `b`" on `task`'s top-1 (a published tie or a small lead): holds when a's mean
/// is at least b's minus the larger of their standard deviations.
pub fn not_below(text: &str, task: Task, a: Method, b: Method, why: &'static str) -> Claim {
    pair(text, task, a, b, why, |x, y| x.0 >= y.0 - x.1.max(y.1))
}

/// "`best` is above every one of `others`" on `task`'s top-1: holds when its mean exceeds each
/// other mean by more than the larger of the two standard deviations.
pub fn best_of(text: &str, task: Task, best: Method, others: &[Method], why: &'static str) -> Claim {
    let os = others.to_vec();
    Claim {
        text: text.into(),
        runs: std::iter::once(best).chain(others.iter().copied()).map(|m| (m, task)).collect(),
        check: Box::new(move |s: &Stats| {
            let b = s.get(best, task, Metric::Top1);
            let v: Vec<_> = os.iter().map(|&m| (m, s.get(m, task, Metric::Top1))).collect();
            let numbers = format!(
                "top-1 on the {} task: {}; {}",
                task.name(),
                fmt(&best.name(), b),
                v.iter().map(|(m, x)| fmt(&m.name(), *x)).collect::<Vec<_>>().join(", ")
            );
            let holds = match (b, v.iter().map(|(_, x)| *x).collect::<Option<Vec<_>>>()) {
                (Some(b), Some(xs)) => Some(xs.iter().all(|x| b.0 - x.0 > b.1.max(x.1))),
                _ => None,
            };
            Outcome { holds, numbers, why }
        }),
    }
}
