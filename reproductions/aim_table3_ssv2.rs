//! AIM Table 3 — Something-Something v2.
//! `cargo run --release --bin aim_table3_ssv2 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("aim_table3_ssv2");
}
