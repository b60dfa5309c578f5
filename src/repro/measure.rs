//! Measured cost columns (training time and memory, inference latency and throughput), placeholder.

use super::engine::{Report, Spec};

/// Which measurement a cost table adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    Training,
    Inference,
}

/// Adds measured columns to a report.
pub fn add_measurements(_m: Measure, _spec: &Spec, _rep: &mut Report) -> anyhow::Result<()> {
    Ok(())
}
