#!/usr/bin/env bash
# Writes the contact sheets and index listings that book/src/video.md shows, one folder per line of
# book/src/figures/clips/cases.txt (`name clips-arguments…`), with the `clips` binary (feature `video`).
# tests/end_to_end.rs checks that the committed files are what `clips` writes now.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --features video --bin clips
out=book/src/figures/clips
while read -r name args; do
    [ -n "$name" ] || continue
    rm -rf "${out:?}/$name"
    # shellcheck disable=SC2086
    target/release/clips $args --sheets "$out/$name" | grep -v '^  wrote ' > "$out/$name.txt"
done < "$out/cases.txt"
