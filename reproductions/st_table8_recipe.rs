//! ST-Adapter Table 8 — the default recipe, field by field.
//! `cargo run --release --bin st_table8_recipe -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("st_table8_recipe");
}
