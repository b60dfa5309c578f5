//! The measurements of `scripts/gpu-check` (feature `cuda`): see `video_adapters::gpu_check`.
//!
//!     gpu_check --out DIR [--device cuda:N]
use clap::Parser;

/// Measure the kit on a GPU (what `scripts/gpu-check` runs after the GPU tests): a ViT-B/16 block,
/// one training step of each paper's preset, evaluation throughput and device memory, written to
/// --out as gpu_check.md and gpu_check.json.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory for gpu_check.json and gpu_check.md (created).
    #[arg(long)]
    out: std::path::PathBuf,
    /// The CUDA device.
    #[arg(long, default_value = "cuda", value_parser = video_adapters::device::DeviceArg::parse)]
    device: video_adapters::device::DeviceArg,
}

#[cfg(feature = "ci-check")]
fn main() {
    let _ = Args::parse();
    eprintln!("error: this build only type-checks CUDA (feature `ci-check`): rebuild with `--features cuda` alone");
    std::process::exit(1);
}

#[cfg(not(feature = "ci-check"))]
fn main() {
    video_adapters::device::tune_host_allocator();
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(not(feature = "ci-check"))]
fn run(a: Args) -> anyhow::Result<()> {
    let video_adapters::device::DeviceArg::Cuda(ordinal) = a.device else {
        anyhow::bail!("--device cpu: gpu_check measures a CUDA device (give `cuda` or `cuda:N`)")
    };
    std::fs::create_dir_all(&a.out)?;
    let r = video_adapters::gpu_check::run(ordinal)?;
    std::fs::write(a.out.join("gpu_check.json"), serde_json::to_string_pretty(&r)? + "\n")?;
    std::fs::write(a.out.join("gpu_check.md"), r.markdown())?;
    print!("{}", r.markdown());
    Ok(())
}
