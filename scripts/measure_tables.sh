#!/usr/bin/env bash
# Runs the measured cost tables (ST-Adapter 6 and 11, AIM 6, 9 and 10) and keeps their output in
# book/src/measured/ for the book's Performance chapter. Takes about half an hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins
for t in st_table6_training_cost st_table11_inference_speed aim_table6_backbones aim_table10_evl aim_table9_memory; do
    echo "== $t" >&2
    ./target/release/$t --reps "${REPS:-2}" --format markdown > "book/src/measured/$t.md.tmp"
    mv "book/src/measured/$t.md.tmp" "book/src/measured/$t.md"
done
