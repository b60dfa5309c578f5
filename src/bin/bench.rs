//! The kit against PyTorch on this CPU, side by side in one run: a ViT-B/16 block, training steps
//! and evaluation of ST-Adapter, AIM and MST-Adapter, full fine-tuning, the small preset, peak
//! memory and the GEMM peak. `cargo run --release --bin bench -- --torch python3`; `--help`.

use clap::Parser;

/// Benchmark the kit against PyTorch (scripts/bench_pytorch.py) on this machine.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    opts: video_adapters::bench::Opts,
    /// Also write the report to book/src/measured/bench.{json,md} and its bar chart to
    /// book/src/figures/bench_ratios.svg.
    #[arg(long)]
    save: bool,
    /// Render a saved report (bench.json) again instead of measuring.
    #[arg(long)]
    render: Option<std::path::PathBuf>,
}

fn main() {
    video_adapters::device::tune_host_allocator();
    if video_adapters::bench::child_entry() {
        return;
    }
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        let report = match &cli.render {
            Some(path) => video_adapters::bench::Report::load(path)?,
            None => video_adapters::bench::run(&cli.opts)?,
        };
        print!("{}", report.markdown());
        if cli.save {
            report.save()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
