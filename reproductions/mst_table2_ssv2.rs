//! MST-Adapter Table 2 — Something-Something v2.
//! `cargo run --release --bin mst_table2_ssv2 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("mst_table2_ssv2");
}
