//! `clips` (feature `video`): see `--help`; the logic is in `video_adapters::tools::clips`.
use clap::Parser;

fn main() {
    video_adapters::device::tune_host_allocator();
    let args = video_adapters::tools::clips::Args::parse();
    match video_adapters::tools::clips::run(&args) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
