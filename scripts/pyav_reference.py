#!/usr/bin/env python3
"""What the official ST-Adapter loader sees in each fixture video, written for tests/video_decode.rs.

    python scripts/pyav_reference.py [--files fixtures/video/files] [--out FILE]

Decodes every good video listed in the manifest the way linziyi96/st-adapter's
`video_dataset/dataset.py` does (`container.decode(video=0)` with one decoder thread, frames keyed by
`frame.pts`, keys sorted, `frame.to_rgb().to_ndarray()`) and writes, per file:
- `frames`: len(frames) after the pts sort;
- `sources`: the source frame number each frame shows (the index bars of make_video_fixtures.sh);
- `rgb_sha256`: sha256 of all frames' RGB bytes, (T, H, W, 3) C order;
- `samples`: for every frame, [y, x, r, g, b] at a fixed set of positions (corners, centre, odd spots).

The committed `pyav_reference.json` was made with PyAV 10.0.0 (the version in the official
environment.yml), built from source against Debian 12's ffmpeg 5.1 libraries
(`pip install "cython<3" && pip install --no-build-isolation av==10.0.0`): the same libavcodec and
libswscale the kit links, so RGB bytes must match exactly. The file records the PyAV and library
versions it was made with. Needs only `av` and `numpy` (no torch).
"""
import argparse
import hashlib
import json
from pathlib import Path

import av
import numpy as np


def official_frames(path):
    """The official loader's decode: every frame of video stream 0, sorted by pts (dataset.py)."""
    container = av.open(str(path))
    container.streams.video[0].thread_count = 1
    frames = {}
    for frame in container.decode(video=0):
        frames[frame.pts] = frame
    container.close()
    return [frames[k].to_rgb().to_ndarray() for k in sorted(frames.keys())]


def bar_index(rgb):
    """The source frame number drawn by make_video_fixtures.sh: 8 bars in the top third, bit k = bar k."""
    h, w, _ = rgb.shape
    y = h // 6
    bits = [rgb[y, min(w - 1, int((k + 0.5) * w / 8))].astype(int).mean() > 127 for k in range(8)]
    return sum(1 << k for k, bit in enumerate(bits) if bit)


def positions(h, w):
    """Fixed sample positions: the four corners, the centre, and a few odd interior spots."""
    spots = [(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (h // 2, w // 2),
             (h // 3, w // 5), (2 * h // 3 + 1, 3 * w // 4), (h - 2, 1)]
    return [(min(y, h - 1), min(x, w - 1)) for y, x in spots]


def to_json(value, indent=0):
    """JSON with one list of numbers (or one frame's samples) per line: readable and diffable."""
    pad = " " * indent
    if isinstance(value, dict):
        items = [f'{pad} {json.dumps(k)}: {to_json(v, indent + 1).lstrip()}' for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" + ("\n" if indent == 0 else "")
    if isinstance(value, list) and value and isinstance(value[0], list) and isinstance(value[0][0], list):
        rows = [pad + " " + json.dumps(row, separators=(",", ":")) for row in value]
        return pad + "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    return pad + json.dumps(value, separators=(",", ":") if isinstance(value, list) else (", ", ": "))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", default="fixtures/video/files")
    parser.add_argument("--out", default=None, help="default: FILES/pyav_reference.json")
    args = parser.parse_args()
    files = Path(args.files)
    manifest = json.loads((files / "manifest.json").read_text())
    out = {
        "made_by": "scripts/pyav_reference.py",
        "pyav": av.__version__,
        "libraries": {name: ".".join(map(str, v)) for name, v in sorted(av.library_versions.items())},
        "files": {},
    }
    for entry in manifest["files"]:
        if entry["video"] is None:
            continue
        frames = official_frames(files / entry["file"])
        video = np.stack(frames)
        h, w = video.shape[1:3]
        out["files"][entry["file"]] = {
            "frames": len(frames),
            "width": int(w),
            "height": int(h),
            "sources": [bar_index(f) for f in frames],
            "rgb_sha256": hashlib.sha256(np.ascontiguousarray(video).tobytes()).hexdigest(),
            "samples": [[[y, x, *map(int, f[y, x])] for y, x in positions(h, w)] for f in frames],
        }
    target = Path(args.out) if args.out else files / "pyav_reference.json"
    target.write_text(to_json(out))
    print(f"wrote {target} ({len(out['files'])} videos, PyAV {av.__version__})")


if __name__ == "__main__":
    main()
