//! MST-Adapter Table 3 — components: the 1×1×1 conv and the branch fusion.
//! `cargo run --release --bin mst_table3_components -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("mst_table3_components");
}
