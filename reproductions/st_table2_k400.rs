//! ST-Adapter Table 2 — Kinetics-400.
//! `cargo run --release --bin st_table2_k400 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table2_k400");
}
