//! MST-Adapter Table 6 — which layers get adapters.
//! `cargo run --release --bin mst_table6_layers -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("mst_table6_layers");
}
