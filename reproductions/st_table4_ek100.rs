//! ST-Adapter Table 4 — Epic-Kitchens-100.
//! `cargo run --release --bin st_table4_ek100 -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table4_ek100");
}
