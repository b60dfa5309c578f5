//! Writes the book's generated assets: the SVG figures (book/src/figures/) and the page of every
//! published figure that does not reproduce (book/src/generated/discrepancies.md) and the list of the
//! proxy's claims read from the committed proxy pages (book/src/measured/proxy_claims.md), under the
//! working directory (the root of a checkout). tests/book.rs checks both are current.

use clap::Parser;

/// Write the book's generated figures and pages under book/src/ of the working directory (run it
/// from the root of a video-adapters checkout).
#[derive(Parser)]
#[command(version)]
struct Args {}

fn main() {
    video_adapters::device::tune_host_allocator();
    Args::parse();
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let root = video_adapters::repro::book_src_dir()?;
    std::fs::create_dir_all(root.join("figures"))?;
    for (name, svg) in video_adapters::figures::all()? {
        std::fs::write(root.join("figures").join(&name), svg)?;
        eprintln!("wrote figures/{name}");
    }
    std::fs::create_dir_all(root.join("generated"))?;
    std::fs::write(root.join("generated/discrepancies.md"), video_adapters::repro::discrepancies_markdown()?)?;
    eprintln!("wrote generated/discrepancies.md");
    std::fs::write(root.join("generated/tables_summary.md"), video_adapters::repro::tables_summary_markdown()?)?;
    eprintln!("wrote generated/tables_summary.md");
    std::fs::write(root.join("generated/measured_tables.md"), video_adapters::repro::measured_markdown()?)?;
    eprintln!("wrote generated/measured_tables.md");
    let claims = video_adapters::repro::proxy::claims_markdown(&root.join("measured"))?;
    std::fs::write(root.join("measured/proxy_claims.md"), claims)?;
    eprintln!("wrote measured/proxy_claims.md");
    Ok(())
}
