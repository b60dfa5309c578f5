//! ST-Adapter Table 3 — Something-Something v2.
//! `cargo run --release --bin st_table3_ssv2 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table3_ssv2");
}
