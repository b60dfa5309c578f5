#!/usr/bin/env python3
"""Reference fixtures for src/video/{sample,transform,augment}.rs, made by the OFFICIAL pipeline code.

The official files are NOT part of this repository: pass the roots of your own checkouts.

  --st   linziyi96/st-adapter            (video_dataset/dataset.py, transform.py, rand_augment.py)
  --aim  taoyang1122/adapt-image-models  (mmaction/datasets/pipelines/{loading,augmentations,formating}.py)

What runs unmodified: ST-Adapter's `VideoDataset.__getitem__` (test mode: decode with PyAV, normalise, bicubic
resize, spatial then temporal crops), `_random_sample_frame_idx`, `random_short_side_scale_jitter`,
`random_crop`, `random_resized_crop`, `_get_param_spatial_crop` and the RandAugment ops of `rand_augment.py`;
AIM's `SampleFrames`, `Resize`, `CenterCrop`, `ThreeCrop`, `Flip`, `Normalize`, `FormatShape`,
`RandomResizedCrop.get_crop_bbox`.

Stand-ins (only what importing needs): `mmaction` parent packages with a PIPELINES registry stub and
`mmaction.utils` helpers (never called); `np.int = int` (AIM's numpy predates its removal in 1.24);
AIM's `DecordInit/DecordDecode` are replaced by indexing the generated frames with `frame_inds` exactly as
`DecordDecode` does (`imgs = [frames[i] for i in frame_inds]`). ST-Adapter reads real files: the script writes
lossless rawvideo (rgb24) .nut files with PyAV and checks that they decode to the generated frames.

Random draws are made deterministic by patching `random.*`, `np.random.*` and `torch.rand` around the official
call with scripted values (lower/upper bounds or recorded values); the Rust port takes the same draws.

Environment used for the committed fixtures (fixtures/video/README.md): Python 3.11, numpy 1.24.3,
Pillow 9.4.0, opencv-python-headless 4.6.0.66, mmcv 1.4.0 (MMCV_WITH_OPS=0), timm 0.5.4, torchvision
0.29.2 (--no-deps), torch 2.15 CPU (AVX512 kernels; AVX2 gives identical bicubic results), PyAV 18.1.

  python scripts/official_pipelines.py --st /tmp/official/st-adapter --aim /tmp/official/aim \
      --out fixtures/video
"""

import argparse
import hashlib
import importlib
import importlib.util
import io
import json
import math
import os
import random
import sys
import tempfile
import types
from contextlib import contextmanager

import numpy as np

# ---------------------------------------------------------------------------------------------
# deterministic test videos (the same generator is in tests/video_pipelines.rs)
# ---------------------------------------------------------------------------------------------

M32 = 0xFFFFFFFF


def gen_frame(w, h, t, seed):
    """RGB u8 (h, w, 3): a smooth gradient mixed with hashed noise, different per frame and channel."""
    y, x, c = np.meshgrid(np.arange(h, dtype=np.uint64), np.arange(w, dtype=np.uint64),
                          np.arange(3, dtype=np.uint64), indexing="ij")
    u = np.uint64
    hsh = (x * u(2654435761) + y * u(2246822519) + u(t) * u(3266489917) + c * u(668265263)
           + u(seed) * u(374761393)) & u(M32)
    hsh ^= hsh >> u(15)
    hsh = (hsh * u(2246822519)) & u(M32)
    hsh ^= hsh >> u(13)
    noise = hsh >> u(24)
    grad = (x * u(255) // u(max(w - 1, 1)) + y * u(5) + u(t) * u(11) + c * u(60)) % u(256)
    return ((grad * u(3) + noise) // u(4)).astype(np.uint8)


def gen_video(w, h, n, seed):
    return [gen_frame(w, h, t, seed) for t in range(n)]


# ---------------------------------------------------------------------------------------------
# loading the official code
# ---------------------------------------------------------------------------------------------


def load_st(root):
    sys.path.insert(0, root)
    import video_dataset  # noqa: F401  (official package: dataset.py, transform.py, rand_augment.py)
    from video_dataset import dataset, rand_augment, transform
    return dataset, transform, rand_augment


def load_aim(root):
    if not hasattr(np, "int"):
        np.int = int  # AIM's numpy still had the alias (removed in numpy 1.24); same value
    pipes = os.path.join(root, "mmaction", "datasets", "pipelines")

    class Registry:
        def register_module(self, *a, **k):
            if a and callable(a[0]):
                return a[0]
            return lambda cls: cls

    def package(name, path=None):
        m = types.ModuleType(name)
        m.__path__ = [path] if path else []
        sys.modules[name] = m
        return m

    package("mmaction")
    utils = package("mmaction.utils")
    utils.get_random_string = utils.get_shm_dir = utils.get_thread_id = lambda *a, **k: None
    package("mmaction.datasets")
    builder = package("mmaction.datasets.builder")
    builder.PIPELINES = Registry()
    package("mmaction.datasets.pipelines", pipes)
    loading = importlib.import_module("mmaction.datasets.pipelines.loading")
    aug = importlib.import_module("mmaction.datasets.pipelines.augmentations")
    fmt = importlib.import_module("mmaction.datasets.pipelines.formating")
    return loading, aug, fmt


# ---------------------------------------------------------------------------------------------
# scripted randomness
# ---------------------------------------------------------------------------------------------


@contextmanager
def patched(obj, name, fn):
    old = getattr(obj, name)
    setattr(obj, name, fn)
    try:
        yield
    finally:
        setattr(obj, name, old)


def np_randint_bound(which):
    """np.random.randint(low[, high][, size]) returning its lowest or highest value."""
    def f(low, high=None, size=None):
        lo, hi = (0, low) if high is None else (low, high)
        v = lo if which == "lo" else hi - 1
        return np.full(size, v, dtype=np.int64) if size is not None else v
    return f


def py_randint_bound(which):
    return lambda a, b: a if which == "lo" else b


# ---------------------------------------------------------------------------------------------
# (a) frame indices, lengths 1..400
# ---------------------------------------------------------------------------------------------

MAX_LEN = 400


def encode(seq):
    """One view's indices as a short exact string: comma-separated items, each `v` or `start+step*count`
    (an arithmetic run); the greedy run split is used when it is shorter than the plain list."""
    seq = [int(v) for v in seq]
    items, i = [], 0
    while i < len(seq):
        j = i + 1
        if j < len(seq):
            step = seq[j] - seq[i]
            while j + 1 < len(seq) and seq[j + 1] - seq[j] == step:
                j += 1
            if j - i + 1 >= 3:
                items.append(f"{seq[i]}+{step}*{j - i + 1}")
                i = j + 1
                continue
        items.append(str(seq[i]))
        i += 1
    runs = ",".join(items)
    plain = ",".join(str(v) for v in seq)
    return runs if len(runs) < len(plain) else plain


def views(vs):
    """The views of one length; a view equal to the one before it is written as "="."""
    enc = [encode(v) for v in vs]
    return [e if i == 0 or e != enc[i - 1] else "=" for i, e in enumerate(enc)]


def st_dataset_stub(dataset, **kw):
    """A VideoDataset without a list file (only the index helpers are called on it)."""
    ds = dataset.VideoDataset.__new__(dataset.VideoDataset)
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


class FakeFrames:
    """Stands for the (C, T, H, W) tensor in `_generate_temporal_crops`: records which frames are taken."""

    def __init__(self, n):
        import torch
        self.t = torch.arange(n).reshape(1, n, 1, 1)


def st_test_indices(dataset, n, num_frames, sampling_rate, temporal_views):
    import torch
    ds = st_dataset_stub(dataset, num_frames=num_frames, sampling_rate=sampling_rate,
                         num_temporal_views=temporal_views)
    frames = torch.arange(n).reshape(1, n, 1, 1)
    return [c.flatten().tolist() for c in ds._generate_temporal_crops(frames)]


def aim_sample(loading, n, **kw):
    sf = loading.SampleFrames(**kw)
    r = sf({"total_frames": n, "start_index": 0})
    inds = r["frame_inds"].tolist()
    clip = kw["clip_len"]
    return [inds[i:i + clip] for i in range(0, len(inds), clip)]


def make_indices(st, aim):
    dataset, _, _ = st
    loading, _, _ = aim
    out = {"max_len": MAX_LEN, "pipelines": {}}

    def put(name, source, fn):
        out["pipelines"][name] = {"source": source, "by_len": [views(fn(n)) for n in range(1, MAX_LEN + 1)]}

    # test time
    put("st_k400_test", "st-adapter video_dataset/dataset.py VideoDataset._generate_temporal_crops "
        "(num_frames 8, sampling_rate 16, num_temporal_views 3; scripts/train_k400_clip_vit_b16_adapter12x384.sh)",
        lambda n: st_test_indices(dataset, n, 8, 16, 3))
    put("st_ssv2_test", "st-adapter video_dataset/dataset.py VideoDataset._generate_temporal_crops "
        "(num_frames 8, sampling_rate 0; scripts/train_ssv2_clip_vit_b16_adapter24x384.sh)",
        lambda n: st_test_indices(dataset, n, 8, 0, 1))
    put("aim_k400_test", "AIM mmaction/datasets/pipelines/loading.py SampleFrames(clip_len=32, frame_interval=4, "
        "num_clips=3, test_mode=True) (configs/recognition/vit/vitclip_base_k400.py test_pipeline)",
        lambda n: aim_sample(loading, n, clip_len=32, frame_interval=4, num_clips=3, test_mode=True))
    put("aim_ssv2_test", "AIM SampleFrames(clip_len=8, frame_interval=2, num_clips=1, frame_uniform=True, "
        "test_mode=True) (configs/recognition/vit/vitclip_base_sthv2.py test_pipeline)",
        lambda n: aim_sample(loading, n, clip_len=8, frame_interval=2, num_clips=1, frame_uniform=True,
                             test_mode=True))
    # training time: the lowest and the highest draw of every random choice
    def st_train(n, nf, sr, which):
        ds = st_dataset_stub(dataset, num_frames=nf, sampling_rate=sr)
        with patched(np.random, "randint", np_randint_bound(which)):
            return [ds._random_sample_frame_idx(n)]

    def aim_train(n, which, **kw):
        with patched(np.random, "randint", np_randint_bound(which)), \
                patched(random, "randint", py_randint_bound(which)):
            return aim_sample(loading, n, **kw)

    for which in ("lo", "hi"):
        put(f"st_k400_train_{which}", "st-adapter VideoDataset._random_sample_frame_idx (num_frames 8, "
            f"sampling_rate 16), every np.random.randint at its {which} end",
            lambda n, w=which: st_train(n, 8, 16, w))
        put(f"st_ssv2_train_{which}", "st-adapter VideoDataset._random_sample_frame_idx (num_frames 8, "
            f"sampling_rate 0), every np.random.randint at its {which} end",
            lambda n, w=which: st_train(n, 8, 0, w))
        put(f"aim_k400_train_{which}", "AIM SampleFrames(clip_len=32, frame_interval=4, num_clips=1) train mode, "
            f"every draw at its {which} end (vitclip_base_k400.py train_pipeline)",
            lambda n, w=which: aim_train(n, w, clip_len=32, frame_interval=4, num_clips=1))
        put(f"aim_ssv2_train_{which}", "AIM SampleFrames(clip_len=8, frame_interval=2, num_clips=1, "
            f"frame_uniform=True) train mode, every random.randint at its {which} end (vitclip_base_sthv2.py)",
            lambda n, w=which: aim_train(n, w, clip_len=8, frame_interval=2, num_clips=1, frame_uniform=True))
    return out


# ---------------------------------------------------------------------------------------------
# (b) test-pipeline tensors
# ---------------------------------------------------------------------------------------------

N_SAMPLES = 150


def summarize(arr, n_samples=N_SAMPLES):
    """arr: (V, C, T, H, W) float32. Plane sums (f64), samples at fixed flat positions, sha256 of the bytes."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    flat = arr.reshape(-1)
    rng = np.random.default_rng(12345)
    pos = np.unique(rng.integers(0, flat.size, n_samples)).tolist()
    v, c, t = arr.shape[:3]
    out = {
        "shape": list(arr.shape),
        # f64 sums written with 12 significant digits; samples as the shortest text that parses back to the f32
        "plane_sums": [float("%.12g" % v) for v in arr.astype(np.float64).sum(axis=(3, 4)).reshape(-1)],
        "sample_pos": pos,
        "sample_val": [float(repr(np.float32(flat[p]))) for p in pos],
        "sha256": hashlib.sha256(arr.astype("<f4").tobytes()).hexdigest(),
    }
    return out


def write_mkv(path, frames, fps=25):
    import av
    h, w = frames[0].shape[:2]
    with av.open(path, "w") as out:
        s = out.add_stream("rawvideo", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "rgb24"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def st_test_tensor(dataset, tmp, video, spatial_size, num_frames, sampling_rate, s_views, t_views):
    w, h, n, seed = video
    frames = gen_video(w, h, n, seed)
    path = os.path.join(tmp, f"v_{w}x{h}x{n}_{seed}.nut")
    write_mkv(path, frames)
    # the file decodes to exactly the generated frames (so the Rust side can regenerate them)
    import av
    with av.open(path) as c:
        dec = [f.to_rgb().to_ndarray() for f in c.decode(video=0)]
    assert len(dec) == n and all((a == b).all() for a, b in zip(dec, frames)), "lossless round trip failed"
    lst = os.path.join(tmp, "list.txt")
    with open(lst, "w") as f:
        f.write(os.path.basename(path) + " 0\n")
    ds = dataset.VideoDataset(list_path=lst, data_root=tmp, num_frames=num_frames, sampling_rate=sampling_rate,
                              spatial_size=spatial_size, num_spatial_views=s_views, num_temporal_views=t_views,
                              random_sample=False)
    x, _ = ds[0]
    x = x.numpy()
    if x.ndim == 4:
        x = x[None]
    return x


def aim_test_tensor(aim, video, sample_kw, scale, crop, three_crop):
    loading, aug, fmt = aim
    w, h, n, seed = video
    frames = gen_video(w, h, n, seed)
    r = {"total_frames": n, "start_index": 0, "modality": "RGB", "filename": "generated"}
    r = loading.SampleFrames(**sample_kw)(r)
    # DecordDecode, without decord: imgs = [frame_dict[idx] for idx in frame_inds]
    r["imgs"] = [frames[i] for i in r["frame_inds"]]
    r["original_shape"] = r["img_shape"] = r["imgs"][0].shape[:2]
    r = aug.Resize(scale=(-1, scale))(r)
    r = (aug.ThreeCrop(crop_size=crop) if three_crop else aug.CenterCrop(crop_size=crop))(r)
    r = aug.Flip(flip_ratio=0)(r)
    r = aug.Normalize(mean=[122.769, 116.74, 104.04], std=[68.493, 66.63, 70.321], to_bgr=False)(r)
    r = fmt.FormatShape(input_format="NCTHW")(r)
    return r["imgs"]


def make_tensors(st, aim):
    dataset, _, _ = st
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        # (name, video (w, h, frames, seed), pipeline parameters); reduced sizes keep the full tensors small
        st_cases = [
            ("st_dense_landscape_s32", (45, 37, 40, 1), dict(spatial_size=32, num_frames=4, sampling_rate=3, s_views=1, t_views=3)),
            ("st_dense_portrait_upscale_s32", (30, 52, 9, 2), dict(spatial_size=32, num_frames=4, sampling_rate=4, s_views=1, t_views=3)),
            ("st_dense_short_video_s24", (41, 29, 3, 3), dict(spatial_size=24, num_frames=5, sampling_rate=2, s_views=1, t_views=2)),
            ("st_uniform_3crop_landscape_s32", (57, 33, 23, 4), dict(spatial_size=32, num_frames=4, sampling_rate=0, s_views=3, t_views=1)),
            ("st_uniform_3crop_portrait_s28", (29, 47, 2, 5), dict(spatial_size=28, num_frames=4, sampling_rate=0, s_views=3, t_views=1)),
            ("st_uniform_3crop_square_s32", (40, 40, 7, 6), dict(spatial_size=32, num_frames=3, sampling_rate=0, s_views=3, t_views=1)),
        ]
        for name, video, p in st_cases:
            x = st_test_tensor(dataset, tmp, video, **p)
            cases.append({"name": name, "family": "st", "video": list(video), "params": p, "expected": summarize(x)})
        # the real setting (224) on two small videos: sums + samples only
        for name, video, p in [
            ("st_k400_test_224", (320, 240, 150, 7), dict(spatial_size=224, num_frames=8, sampling_rate=16, s_views=1, t_views=3)),
            ("st_ssv2_test_224", (240, 300, 30, 8), dict(spatial_size=224, num_frames=8, sampling_rate=0, s_views=3, t_views=1)),
        ]:
            x = st_test_tensor(dataset, tmp, video, **p)
            cases.append({"name": name, "family": "st", "video": list(video), "params": p, "expected": summarize(x, n_samples=600)})

    aim_cases = [
        ("aim_center_landscape_s32", (45, 37, 40, 11), dict(clip_len=4, frame_interval=3, num_clips=3, test_mode=True), 32, 32, False),
        ("aim_center_portrait_upscale_s32", (30, 52, 9, 12), dict(clip_len=4, frame_interval=4, num_clips=2, test_mode=True), 32, 32, False),
        ("aim_center_short_loop_s24", (41, 29, 3, 13), dict(clip_len=5, frame_interval=2, num_clips=2, test_mode=True), 24, 24, False),
        ("aim_threecrop_landscape_s32", (57, 33, 23, 14), dict(clip_len=4, frame_interval=2, num_clips=1, frame_uniform=True, test_mode=True), 32, 32, True),
        ("aim_threecrop_portrait_odd_s28", (29, 47, 2, 15), dict(clip_len=4, frame_interval=2, num_clips=1, frame_uniform=True, test_mode=True), 28, 28, True),
        ("aim_area2x_s20", (40, 64, 5, 16), dict(clip_len=2, frame_interval=1, num_clips=1, test_mode=True), 20, 20, False),
    ]
    for name, video, skw, scale, crop, three in aim_cases:
        x = aim_test_tensor(aim, video, skw, scale, crop, three)
        cases.append({"name": name, "family": "aim", "video": list(video),
                      "params": dict(sample=skw, scale=scale, crop=crop, three_crop=three),
                      "expected": summarize(x)})
    for name, video, skw, three in [
        ("aim_k400_test_224", (320, 240, 150, 17), dict(clip_len=32, frame_interval=4, num_clips=3, test_mode=True), False),
        ("aim_ssv2_test_224", (240, 300, 30, 18), dict(clip_len=8, frame_interval=2, num_clips=1, frame_uniform=True, test_mode=True), True),
    ]:
        x = aim_test_tensor(aim, video, skw, 224, 224, three)
        cases.append({"name": name, "family": "aim", "video": list(video),
                      "params": dict(sample=skw, scale=224, crop=224, three_crop=three),
                      "expected": summarize(x, n_samples=600)})
    return cases


# ---------------------------------------------------------------------------------------------
# (c) kernels: torch bicubic and cv2 bilinear on many sizes (exact outputs, small)
# ---------------------------------------------------------------------------------------------


def make_kernels():
    import cv2
    import torch
    out = {"bicubic": [], "cv2_linear": []}
    for i, (h, w, oh, ow) in enumerate([(7, 9, 5, 4), (5, 3, 11, 8), (1, 1, 3, 2), (13, 6, 6, 13), (2, 17, 9, 5),
                                        (9, 9, 9, 4), (16, 12, 8, 6)]):
        x = torch.from_numpy(np.stack([gen_frame(w, h, t, 100 + i)[..., 0] for t in range(2)]).astype(np.float32)
                             / np.float32(255) - np.float32(0.5))
        y = torch.nn.functional.interpolate(x[None], size=(oh, ow), mode="bicubic", align_corners=False)[0]
        out["bicubic"].append({"in_hw": [h, w], "out_hw": [oh, ow], "seed": 100 + i,
                               "values": [float(repr(v)) for v in y.numpy().reshape(-1)]})
    for i, (h, w, oh, ow) in enumerate([(7, 9, 5, 4), (5, 3, 11, 8), (1, 1, 3, 2), (13, 6, 6, 13), (2, 17, 9, 5),
                                        (16, 12, 8, 6), (9, 9, 9, 9), (33, 21, 4, 3)]):
        img = gen_frame(w, h, 0, 200 + i)
        y = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_LINEAR)
        out["cv2_linear"].append({"in_hw": [h, w], "out_hw": [oh, ow], "seed": 200 + i, "hex": y.tobytes().hex()})
    return out


# ---------------------------------------------------------------------------------------------
# (d) training-time transforms with scripted draws
# ---------------------------------------------------------------------------------------------


def make_train(st, aim):
    import torch
    dataset, transform, rand_augment = st
    loading, aug, fmt = aim
    mean = torch.Tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.Tensor([0.26862954, 0.26130258, 0.27577711])
    out = {}

    def st_frames(w, h, n, seed):
        f = torch.as_tensor(np.stack(gen_video(w, h, n, seed))).float() / 255.
        return ((f - mean) / std).permute(3, 0, 1, 2)  # C, T, H, W (dataset.py, random_sample branch)

    # ST K400: short-side jitter (np.random.uniform scripted) then random crop (np.random.randint scripted)
    jit = []
    for (w, h, n, seed, size_draw, y_draw, x_draw, min_s, max_s, crop) in [
            (45, 37, 2, 21, 41.7, 3, 5, 32, 37, 32), (30, 52, 2, 22, 32.2, 10, 0, 32, 37, 32),
            (40, 40, 1, 23, 35.5, 2, 1, 32, 37, 32), (36, 50, 1, 24, 36.5, 0, 2, 32, 37, 32)]:
        frames = st_frames(w, h, n, seed)
        draws = iter([y_draw, x_draw])
        with patched(np.random, "uniform", lambda a, b: size_draw):
            y, _ = transform.random_short_side_scale_jitter(frames, min_size=min_s, max_size=max_s,
                                                             interpolation="bicubic")
        with patched(np.random, "randint", lambda lo, hi: next(draws)):
            y, _ = transform.random_crop(y, crop)
        jit.append({"video": [w, h, n, seed], "size_draw": size_draw, "crop_draws": [y_draw, x_draw],
                    "min_size": min_s, "max_size": max_s, "crop": crop,
                    "expected": summarize(y.numpy()[None])})
    out["st_jitter_crop"] = jit

    # ST SSv2: random_resized_crop with scripted random.uniform / random.randint draws
    rrc = []
    for (w, h, n, seed, uni, ints, size) in [
            (45, 37, 2, 31, [0.5, math.log(1.2)], [3, 4], 32),
            (30, 52, 1, 32, [0.9, math.log(0.76), 0.95, math.log(1.3), 0.3, 0.0], [10, 2], 32),
            (40, 40, 1, 33, [0.99, math.log(4 / 3)] * 10, [], 24)]:
        frames = st_frames(w, h, n, seed)
        u, r = iter(uni), iter(ints)
        with patched(random, "uniform", lambda a, b: next(u)), patched(random, "randint", lambda a, b: next(r)):
            params = transform._get_param_spatial_crop((0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), h, w)
        u, r = iter(uni), iter(ints)
        with patched(random, "uniform", lambda a, b: next(u)), patched(random, "randint", lambda a, b: next(r)):
            y = transform.random_resized_crop(frames, size, size, scale=(0.08, 1.0), interpolation="bicubic")
        rrc.append({"video": [w, h, n, seed], "uniform_draws": uni, "randint_draws": ints, "size": size,
                    "params": list(params), "expected": summarize(y.numpy()[None])})
    out["st_random_resized_crop"] = rrc

    # AIM train: Resize(-1, s) -> RandomResizedCrop (scripted draws) -> Resize((c, c), keep_ratio=False) -> Flip -> Normalize
    aim_rrc = []
    for (w, h, n, seed, ars, areas, ints, short, crop, flip) in [
            (45, 37, 2, 41, [1.1] * 10, [0.6] * 10, [2, 3], 40, 32, True),
            (30, 52, 1, 42, [0.8] * 10, [0.3] * 10, [0, 7], 36, 24, False),
            (40, 40, 1, 43, [1.3] * 10, [0.999] * 10, [], 40, 32, True)]:
        frames = gen_video(w, h, n, seed)
        # get_crop_bbox draws np.random.uniform twice (arrays of 10), then random.randint twice
        ud = iter([np.log(np.array(ars)), np.array(areas)])
        r = iter(ints)
        res = {"imgs": [f.copy() for f in frames], "modality": "RGB", "img_shape": (h, w), "num_clips": 1, "clip_len": n}
        res = aug.Resize(scale=(-1, short))(res)

        def uni(a, b, size=None):
            return next(ud)
        # uniform(log(min_ar), log(max_ar), size) -> we hand back log(aspect ratios); uniform(*area_range) -> areas
        with patched(np.random, "uniform", uni), patched(random, "randint", lambda a, b: next(r)):
            res = aug.RandomResizedCrop()(res)
        bbox = res["crop_bbox"].tolist()
        res = aug.Resize(scale=(crop, crop), keep_ratio=False)(res)
        with patched(np.random, "rand", lambda: 0.0 if flip else 1.0):
            res = aug.Flip(flip_ratio=0.5)(res)
        res = aug.Normalize(mean=[122.769, 116.74, 104.04], std=[68.493, 66.63, 70.321], to_bgr=False)(res)
        res = fmt.FormatShape(input_format="NCTHW")(res)
        aim_rrc.append({"video": [w, h, n, seed], "aspect_ratios": ars, "area_fracs": areas, "randint_draws": ints,
                        "short_side": short, "crop": crop, "flip": flip, "crop_bbox": bbox,
                        "expected": summarize(res["imgs"])})
    out["aim_resize_rrc_flip"] = aim_rrc

    # AIM SSv2: RandomErasing(probability=0.25) after Normalize (AIM's subclass of timm 0.5.4's, mode 'const');
    # AIM restores Python's random state before every frame, so every frame gets the same box: the patched
    # random.setstate restarts the scripted draws.
    erase = []
    for (w, h, n, seed, rnd, unis, ints) in [
            (30, 24, 2, 61, [0.1], [0.2, math.log(1.5)], [3, 5]),
            (30, 24, 1, 62, [0.9], [], []),
            (20, 20, 2, 63, [0.0], [0.33, math.log(3.0), 0.05, math.log(0.5)], [1, 2])]:
        res = {"imgs": gen_video(w, h, n, seed), "modality": "RGB", "img_shape": (h, w), "num_clips": 1, "clip_len": n}
        res = aug.Normalize(mean=[122.769, 116.74, 104.04], std=[68.493, 66.63, 70.321], to_bgr=False)(res)
        st_ = {}

        def restart(*_a):
            st_["r"], st_["u"], st_["i"] = iter(rnd), iter(unis), iter(ints)
        restart()
        with patched(random, "setstate", restart), patched(random, "random", lambda: next(st_["r"])), \
                patched(random, "uniform", lambda a, b: next(st_["u"])), \
                patched(random, "randint", lambda a, b: next(st_["i"])):
            res = aug.RandomErasing(probability=0.25)(res)
        res = fmt.FormatShape(input_format="NCTHW")(res)
        erase.append({"video": [w, h, n, seed], "random_draws": rnd, "uniform_draws": unis, "randint_draws": ints,
                      "expected": summarize(res["imgs"])})
    out["aim_random_erasing"] = erase
    return out


# ---------------------------------------------------------------------------------------------
# (e) RandAugment ops (ST-Adapter's rand_augment.py, SlowFast/timm flavour, on PIL images)
# ---------------------------------------------------------------------------------------------


def make_randaugment(st):
    from PIL import Image
    _, transform, ra = st
    img_np = gen_frame(11, 8, 0, 51)
    img = Image.fromarray(img_np)
    hp = {"translate_const": int(min(8, 11) * 0.45), "interpolation": Image.BICUBIC}
    out = {"image": {"w": 11, "h": 8, "seed": 51}, "ops": []}
    signed = {"Rotate", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
              "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
    for name in ra._RAND_INCREASING_TRANSFORMS:
        has_level = ra.LEVEL_TO_ARG[name] is not None
        for mag in ((0.0, 6.3, 10.0) if has_level else (7.0,)):
            for neg in ((False, True) if name in signed else (False,)):
                op = ra.AugmentOp(name, prob=1.0, magnitude=mag, hparams=dict(hp))
                with patched(random, "random", lambda n=neg: 1.0 if n else 0.0):
                    level = list(op.level_fn(mag, op.hparams)) if has_level else []
                    res = op([img])[0]
                out["ops"].append({"name": name, "magnitude": mag, "negate": neg, "level_args": level,
                                   "hex": np.asarray(res).tobytes().hex()})
    # the whole RandAugment call with scripted choices: np.random.choice -> op indices, random.* scripted
    rand = ra.rand_augment_transform("rand-m7-n4-mstd0.5-inc1", dict(hp))
    frames = [Image.fromarray(gen_frame(11, 8, t, 52)) for t in range(2)]
    choice = [4, 11, 7, 3]
    # prob gates and sign draws in call order: Posterize (gate), ShearX (gate, sign), Color (gate, sign),
    # Rotate (gate, sign) -- all four ops run
    rnd_list = [0.2, 0.3, 0.7, 0.1, 0.2, 0.4, 0.9]
    gauss_list = [7.3, 6.1, 7.9, 6.6]
    randoms, gauss = iter(rnd_list), iter(gauss_list)
    with patched(np.random, "choice", lambda ops, n, replace=True, p=None: [ops[i] for i in choice]), \
            patched(random, "random", lambda: next(randoms)), patched(random, "gauss", lambda mu, s: next(gauss)):
        res = rand(frames)
    out["full"] = {"config": "rand-m7-n4-mstd0.5-inc1", "frames_seed": 52, "n_frames": 2, "choice": choice,
                   "random": rnd_list, "gauss": gauss_list,
                   "hex": [np.asarray(f).tobytes().hex() for f in res]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--st", required=True, help="root of a linziyi96/st-adapter checkout")
    ap.add_argument("--aim", required=True, help="root of a taoyang1122/adapt-image-models checkout")
    ap.add_argument("--out", default="fixtures/video")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    st, aim = load_st(a.st), load_aim(a.aim)
    os.makedirs(a.out, exist_ok=True)
    parts = {
        "indices.json": make_indices(st, aim),
        "test_tensors.json": make_tensors(st, aim),
        "kernels.json": make_kernels(),
        "train_transforms.json": make_train(st, aim),
        "randaugment.json": make_randaugment(st),
    }
    for name, obj in parts.items():
        with open(os.path.join(a.out, name), "w") as f:
            json.dump(obj, f, separators=(",", ":"))
            f.write("\n")
        print(name, os.path.getsize(os.path.join(a.out, name)), "bytes")


if __name__ == "__main__":
    main()
