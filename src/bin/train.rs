//! `train` (feature `video`): see `--help`; the logic is in `video_adapters::tools::train`.
use clap::Parser;

fn main() {
    video_adapters::device::tune_host_allocator();
    let args = video_adapters::tools::train::Args::parse();
    if let Err(e) = video_adapters::tools::train::run(&args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
