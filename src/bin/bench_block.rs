//! One CLIP ViT-B/16 block, forward and backward: our ops vs dfdx's stock ops (vs PyTorch with
//! --torch), side by side in one run, medians and ratios.

use clap::Parser;
use video_adapters::input::count;

/// Benchmark one ViT-B/16 block: ours (trained and frozen) vs dfdx stock ops (and PyTorch).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Timed rounds (every variant once per round, after a warm-up round): 1 to 1000.
    #[arg(long, default_value_t = 5, value_parser = count(1..=1000))]
    rounds: usize,
    /// Frames (the batch of 197-token sequences): 1 to 256.
    #[arg(long, default_value_t = 8, value_parser = count(1..=256))]
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
