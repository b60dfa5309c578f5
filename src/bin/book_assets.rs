//! Writes the book's generated assets: the SVG figures (book/src/figures/) and the page of every
//! published figure that does not reproduce (book/src/generated/discrepancies.md). tests/book.rs
//! checks both are current.

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src");
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
    Ok(())
}
