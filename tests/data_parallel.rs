//! The book's data-parallel section (book/src/multi_gpu.md): what an 8-GPU data-parallel run of each
//! paper's recipe all-reduces per step and what that costs, computed from the kit's parameter counts.

use video_adapters::data_parallel::{ring_bytes, table};

/// A ring all-reduce over 8 GPUs sends 2·7/8 of the gradient bytes per GPU: 1.75 × 4 bytes per
/// parameter (NCCL's bus-bandwidth convention), and nothing on one GPU.
#[test]
fn ring_all_reduce_sends_seven_bytes_per_parameter_on_8_gpus() {
    assert_eq!(ring_bytes(1_000_000, 8), 7_000_000.0);
    assert_eq!(ring_bytes(1_000_000, 1), 0.0);
}

/// Per preset: the trainable parameters (the frozen encoder is never exchanged), the bytes per GPU
/// and the time at the assumed bandwidths; the baselines fully fine-tuned for contrast.
#[test]
fn data_parallel_cost_per_step_on_8_gpus() {
    insta::assert_snapshot!(table(8));
}
