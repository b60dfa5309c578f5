//! MST-Adapter Table 4 — the [CLS] token shift.
//! `cargo run --release --bin mst_table4_cls_shift -- --help` explains the columns.

fn main() {
    video_adapters::repro::run("mst_table4_cls_shift");
}
