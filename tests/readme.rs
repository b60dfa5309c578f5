//! The README shows the front door's real output.

use video_adapters::repro::{all, counts_report, Format};

#[test]
fn readme_shows_the_current_table1_k400_output() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- table1_k400 output").expect("marker");
    let block = &readme[start..];
    let body = &block[block.find("```text\n").unwrap() + 8..block.find("```\n<!-- end").unwrap()];
    let (_, runner) = all().into_iter().find(|(n, _)| *n == "table1_k400").unwrap();
    assert_eq!(
        body,
        counts_report(runner).unwrap().render(Format::Text),
        "README.md: paste the output of `cargo run --release --bin table1_k400`"
    );
}
