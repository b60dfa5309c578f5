//! One CLIP ViT-B/16 block, forward and backward: our ops vs dfdx's stock ops (vs PyTorch with
//! --torch), side by side in one run, medians and ratios.

use clap::Parser;

/// Benchmark one ViT-B/16 block: ours (trained and frozen) vs dfdx stock ops (and PyTorch).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Timed rounds (every variant once per round, after a warm-up round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Frames (the batch of 197-token sequences).
    #[arg(long, default_value_t = 8)]
    frames: usize,
    /// Also run scripts/bench_block.py (needs python3 and torch) once per round.
    #[arg(long)]
    torch: bool,
}

fn main() {
    let a = Args::parse();
    match video_adapters::bench::run(a.rounds, a.frames, a.torch) {
        Ok(s) => print!("{s}"),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
