#!/usr/bin/env python3
"""Make official-code parity fixtures (tiny configs, random weights) for the Rust port.

The official PyTorch files are NOT part of this repository: pass the paths of your own copies.

  ST-Adapter: models_adapter.py from linziyi96/st-adapter (class VisionTransformer)
  AIM:        mmaction/models/backbones/vit_clip.py from taoyang1122/adapt-image-models
              (class ViT_CLIP; an unmodified fork copy works the same)

Every folder gets weights.safetensors, input.safetensors, expected.safetensors and meta.json, made
exactly like the first three fixtures (see fixtures/parity/README.md): all parameters overwritten in
state_dict order from a torch.Generator seeded per model, one video from seed 20240607, fp32 eval
mode, one thread, intermediates captured with forward hooks (cloned: the ST adapter works in place).

Needs: torch, safetensors, numpy, einops, timm (AIM imports timm's DropPath / trunc_normal_).

Examples:
  # the four folders made with other flags (how fixtures/parity/{st_adapter_ssv2,...} were made)
  python scripts/make_parity_fixture.py --mkl-intel-path \
      --official-st /tmp/official/st-adapter/models_adapter.py \
      --official-aim /tmp/official/aim/mmaction/models/backbones/vit_clip.py --out fixtures/parity \
      --model st_adapter_ssv2 st_adapter_last1_k333 aim_ssv2 aim_scale025
  # regenerate the shipped ones elsewhere and compare them with the shipped folders
  python scripts/make_parity_fixture.py ... --out /tmp/regen --model clip_baseline st_adapter_k400 aim_k400 \
      --compare fixtures/parity
  # on a non-Intel CPU add --mkl-intel-path to get MKL's Intel sgemm path (bitwise equal to Intel-made folders)
  # a custom spec: JSON object {model_id, family: "st"|"aim", kwargs, seed, description?}
  python scripts/make_parity_fixture.py ... --out /tmp/x --spec my_spec.json
"""

import argparse
import copy
import hashlib
import importlib.util
import json
import math
import os
import platform
import sys
import types

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

VIDEO_SEED = 20240607
VIDEO_SHAPE = (2, 3, 4, 32, 32)  # (B, 3, T, H, W)
TINY = dict(input_resolution=32, patch_size=8, width=64, layers=2, heads=4)
SF_META = {"format": "pt"}

# ---------------------------------------------------------------------------------------------
# fixture specs
# ---------------------------------------------------------------------------------------------


def st_kwargs(num_classes, adapter_width, adapter_layers, kernel, pre_attn, pre_mlp):
    return dict(TINY, num_classes=num_classes, adapter_width=adapter_width, adapter_layers=adapter_layers,
                adapter_kernel_size=list(kernel), adapter_pre_attn=pre_attn, adapter_pre_mlp=pre_mlp)


def aim_kwargs(num_classes, num_tadapter, adapter_scale, drop_path_rate=0.2, num_frames=4):
    bb = dict(input_resolution=TINY["input_resolution"], num_frames=num_frames, patch_size=TINY["patch_size"],
              width=TINY["width"], layers=TINY["layers"], heads=TINY["heads"], drop_path_rate=drop_path_rate,
              num_tadapter=num_tadapter, adapter_scale=adapter_scale)
    return {"backbone": bb, "cls_head": {"num_classes": num_classes, "in_channels": TINY["width"], "dropout_ratio": 0.5}}


SPECS = {
    # the three shipped folders (for validating this script)
    "clip_baseline": dict(family="st", seed=1005, kwargs=st_kwargs(5, 16, 0, (3, 1, 1), False, False)),
    "st_adapter_k400": dict(family="st", seed=1001, kwargs=st_kwargs(5, 16, 2, (3, 1, 1), False, True)),
    "aim_k400": dict(family="aim", seed=1003, kwargs=aim_kwargs(5, 1, 0.5)),
    # other flags of the same constructors
    "st_adapter_ssv2": dict(family="st", seed=1011, kwargs=st_kwargs(7, 16, 2, (3, 1, 1), True, True)),
    "st_adapter_last1_k333": dict(family="st", seed=1012, kwargs=st_kwargs(3, 8, 1, (3, 3, 3), True, False)),
    "aim_ssv2": dict(family="aim", seed=1013, kwargs=aim_kwargs(6, 2, 1.0)),
    "aim_scale025": dict(family="aim", seed=1014, kwargs=aim_kwargs(4, 1, 0.25)),
}

# ---------------------------------------------------------------------------------------------
# loading the official files (with the stand-ins they import)
# ---------------------------------------------------------------------------------------------

ST_SHIMS = ("configs.py stand-in (CLIP_VIT_*_PATH=None, DWCONV3D_DISABLE_CUDNN=True); VisionTransformer(...) called "
            "directly instead of the clip_vit_base_patch16_adapter* factories (they torch.jit.load a CLIP checkpoint)")
AIM_SHIMS = ("stub modules mmaction.utils.get_root_logger and mmaction.models.builder.BACKBONES, and an empty stub "
             "module `clip` (OpenAI CLIP, only used by init_weights when pretrained is a str); timm installed from "
             "PyPI for DropPath/trunc_normal_; ViT_CLIP.init_weights() called with pretrained=None before the "
             "random overwrite; backbone code unmodified")


def load_official_st(path):
    cfg = types.ModuleType("configs")
    cfg.CLIP_VIT_B16_PATH = None
    cfg.CLIP_VIT_L14_PATH = None
    cfg.DWCONV3D_DISABLE_CUDNN = True
    sys.modules["configs"] = cfg
    spec = importlib.util.spec_from_file_location("official_st_models_adapter", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_official_aim(path):
    import logging

    def pkg(name):
        m = types.ModuleType(name)
        m.__path__ = []
        sys.modules[name] = m
        return m

    pkg("mmaction")
    utils = pkg("mmaction.utils")
    utils.get_root_logger = lambda *a, **k: logging.getLogger("mmaction")
    pkg("mmaction.models")
    builder = pkg("mmaction.models.builder")

    class _Registry:
        def register_module(self, *a, **k):
            return lambda cls: cls

    builder.BACKBONES = _Registry()
    pkg("mmaction.models.backbones")
    if "clip" not in sys.modules:
        sys.modules["clip"] = types.ModuleType("clip")
    name = "mmaction.models.backbones.vit_clip"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "mmaction.models.backbones"
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


# Transcription of the parts of mmaction2 that AIM's recognizer uses (the real ones need mmcv):
# Recognizer3D.forward_dummy and I3DHead(spatial_type='avg'). Attribute names give the official keys.
class I3DHead(nn.Module):
    def __init__(self, num_classes, in_channels, dropout_ratio=0.5, spatial_type="avg", init_std=0.01):
        super().__init__()
        self.num_classes, self.in_channels, self.init_std = num_classes, in_channels, init_std
        self.spatial_type, self.dropout_ratio = spatial_type, dropout_ratio
        self.dropout = nn.Dropout(p=dropout_ratio) if dropout_ratio != 0 else None
        self.fc_cls = nn.Linear(in_channels, num_classes)
        self.avg_pool = nn.AdaptiveAvgPool3d((1, 1, 1)) if spatial_type == "avg" else None

    def forward(self, x):
        if self.avg_pool is not None:
            x = self.avg_pool(x)
        if self.dropout is not None:
            x = self.dropout(x)
        x = x.view(x.shape[0], -1)
        return self.fc_cls(x)


class Recognizer3D(nn.Module):
    def __init__(self, backbone, cls_head):
        super().__init__()
        self.backbone = backbone
        self.cls_head = cls_head

    def forward(self, imgs):  # forward_dummy(imgs, softmax=False)
        imgs = imgs.reshape((-1,) + imgs.shape[2:])
        x = self.backbone(imgs)
        return self.cls_head(x)


# ---------------------------------------------------------------------------------------------
# building, random weights, running
# ---------------------------------------------------------------------------------------------


def build(family, kwargs, mods):
    if family == "st":
        kw = dict(kwargs)
        kw["adapter_kernel_size"] = tuple(kw["adapter_kernel_size"])
        return mods["st"].VisionTransformer(**kw).float().eval()
    bb = mods["aim"].ViT_CLIP(**kwargs["backbone"])
    bb.init_weights(pretrained=None)
    return Recognizer3D(bb, I3DHead(**kwargs["cls_head"])).float().eval()


EMBEDDINGS = ("class_embedding", "positional_embedding", "temporal_embedding")


def randomize(model, seed):
    """Overwrite every tensor of the state dict, in state_dict order, from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    sd = model.state_dict()
    with torch.no_grad():
        for name, t in sd.items():
            owner, _, leaf = name.rpartition(".")
            shape = tuple(t.shape)
            n = torch.randn(shape, generator=g, dtype=torch.float32)
            if isinstance(modules.get(owner), nn.LayerNorm):
                v = 1 + 0.05 * n if leaf == "weight" else 0.05 * n
            elif leaf in EMBEDDINGS:
                v = 0.5 * n
            elif t.dim() >= 2:
                v = n / math.sqrt(math.prod(shape[1:]))
            else:
                v = 0.05 * n
            t.copy_(v)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def make_video():
    g = torch.Generator().manual_seed(VIDEO_SEED)
    return torch.randn(VIDEO_SHAPE, generator=g, dtype=torch.float32)


def hook_points(family, model):
    """(name, module, kind) with kind 'in' (input of the module) or 'out' (its output)."""
    if family == "st":
        pts = [("embed_out", model.transformer, "in")]
        pts += [(f"block{i}_out", b, "out") for i, b in enumerate(model.transformer.resblocks)]
        pts += [("pre_logits", model.fc, "in")]
    else:
        bb = model.backbone
        pts = [("embed_out", bb.transformer, "in")]
        pts += [(f"block{i}_out", b, "out") for i, b in enumerate(bb.transformer.resblocks)]
        pts += [("backbone_out", bb, "out"), ("pre_logits", model.cls_head.fc_cls, "in")]
    return pts


def run(family, model, video):
    got, handles = {}, []
    for name, mod, kind in hook_points(family, model):
        if kind == "in":
            h = mod.register_forward_pre_hook(lambda m, args, name=name: got.__setitem__(name, args[0].detach().clone()))
        else:
            h = mod.register_forward_hook(lambda m, args, out, name=name: got.__setitem__(name, out.detach().clone()))
        handles.append(h)
    with torch.no_grad():
        x = video.clone()  # the model must never see (and mutate) the stored input
        logits = model(x.unsqueeze(1) if family == "aim" else x)
    for h in handles:
        h.remove()
    out = {"logits": logits.detach().clone()}
    out.update(got)
    return {k: v.contiguous() for k, v in out.items()}


def fp64_logits(family, model, video, mods):
    m = copy.deepcopy(model).double()
    ln_cls = mods["st"].LayerNorm if family == "st" else mods["aim"].LayerNorm
    for sub in m.modules():
        if isinstance(sub, ln_cls):
            sub.forward = types.MethodType(nn.LayerNorm.forward, sub)
    with torch.no_grad():
        x = video.double()
        return m(x.unsqueeze(1) if family == "aim" else x)


# ---------------------------------------------------------------------------------------------
# meta.json
# ---------------------------------------------------------------------------------------------

INIT_RECIPE = ("All parameters overwritten (after model.float()) in state_dict order with a torch.Generator seeded with "
               "the per-model seed: LayerNorm weight = 1 + 0.05*N(0,1); LayerNorm bias = 0.05*N(0,1); class_embedding, "
               "positional_embedding, temporal_embedding = 0.5*N(0,1); any other tensor with ndim>=2 (Linear, Conv2d "
               "patch embed, depthwise Conv3d, MHA in_proj) = N(0,1)/sqrt(fan_in) with fan_in = prod(shape[1:]); any "
               "other 1-D tensor (biases, incl. zero-initialised-officially conv/fc2/D_fc2 biases) = 0.05*N(0,1). "
               "Nothing is zero, nothing is an identity.")
MODE = "model.float().eval(); forward under torch.no_grad(); Dropout and DropPath inactive"
FP64_NOTE = "fp64 run had the official fp32-casting LayerNorm subclass replaced by nn.LayerNorm.forward"


def tiny_config(family, kwargs):
    k = kwargs if family == "st" else kwargs["backbone"]
    grid = k["input_resolution"] // k["patch_size"]
    return {"input_resolution": k["input_resolution"], "patch_size": k["patch_size"], "width": k["width"],
            "layers": k["layers"], "heads": k["heads"], "frames_T": VIDEO_SHAPE[2], "batch_B": VIDEO_SHAPE[0],
            "num_classes": kwargs["num_classes"] if family == "st" else kwargs["cls_head"]["num_classes"],
            "grid": f"{grid}x{grid}", "tokens_per_frame_L": grid * grid + 1, "head_dim": k["width"] // k["heads"]}


def st_description(k):
    if k["adapter_layers"] == 0 or not (k["adapter_pre_attn"] or k["adapter_pre_mlp"]):
        return ("Frame-wise CLIP baseline via the ST-Adapter VisionTransformer with adapter_layers=0 (no adapter modules "
                "are created): per-frame CLS averaged over T, ln_post, dropout, fc")
    pos = " and ".join(p for p, f in (("pre-attention", k["adapter_pre_attn"]), ("pre-MLP", k["adapter_pre_mlp"])) if f)
    n = min(k["adapter_layers"], k["layers"])
    blocks = "every block" if n == k["layers"] else f"the last {n} of {k['layers']} blocks"
    return (f"ST-Adapter: adapters {pos} in {blocks} (adapter_pre_attn={k['adapter_pre_attn']}, "
            f"adapter_pre_mlp={k['adapter_pre_mlp']}, adapter_layers={k['adapter_layers']}), width "
            f"{k['adapter_width']}, kernel {tuple(k['adapter_kernel_size'])}, {k['num_classes']} classes")


def aim_description(kw):
    b, h = kw["backbone"], kw["cls_head"]
    return (f"AIM ViT_CLIP: num_tadapter={b['num_tadapter']}, adapter_scale={b['adapter_scale']}, mlp_ratio 0.25 "
            f"(hidden {int(b['width'] * 0.25)}), num_frames={b['num_frames']}, drop_path_rate={b['drop_path_rate']}, "
            f"+ I3DHead (mean over T, dropout, fc_cls), {h['num_classes']} classes")


def st_notes(k):
    kt, kh, kw = k["adapter_kernel_size"]
    pad = (kt // 2, kh // 2, kw // 2)
    layers, al = k["layers"], k["adapter_layers"]
    on = [i for i in range(layers) if i >= layers - al]
    notes = [
        "Input (B,3,T,H,W); frames flattened b-major: row index b*T + t (x.permute(0,2,1,3,4).flatten(0,1)); T is read from the input.",
        "Embedding: conv1 (no bias, stride = patch) -> patches row-major -> prepend class_embedding -> + positional_embedding -> ln_pre. No temporal embedding.",
        "Transformer runs batch-first on (B*T, L, D). Attention does NOT call nn.MultiheadAttention.forward: F.linear(x, attn.in_proj_weight, attn.in_proj_bias) -> view(B*T, L, 3*heads, head_dim) -> q,k,v = heads [0:h], [h:2h], [2h:3h] (i.e. in_proj rows are q;k;v stacked) -> F.scaled_dot_product_attention (scale 1/sqrt(head_dim), no mask) -> attn.out_proj.",
        "Block: [x = adapter_pre_attn(x)]; x = x + attn(ln_1(x)); [x = adapter_pre_mlp(x)]; x = x + mlp(ln_2(x)); mlp = c_fc -> QuickGELU x*sigmoid(1.702x) -> c_proj.",
    ]
    if on and (k["adapter_pre_attn"] or k["adapter_pre_mlp"]):
        pos = [p for p, f in (("adapter_pre_attn", k["adapter_pre_attn"]), ("adapter_pre_mlp", k["adapter_pre_mlp"])) if f]
        notes.append(
            f"Adapters exist where `flag and i >= layers - adapter_layers` (layers={layers}, adapter_layers={al}): "
            f"block(s) {on} get {' and '.join(pos)}" + ("" if len(on) == layers else
            f"; block(s) {[i for i in range(layers) if i not in on]} are plain CLIP blocks (no adapter keys)") + ".")
        if (kt, kh, kw) == (3, 1, 1):
            conv = ("depthwise Conv3d kernel (3,1,1), padding (1,0,0) zeros, groups=Ca, with bias (PyTorch "
                    "cross-correlation: weight[c,0,0] multiplies frame t-1, weight[c,0,2] frame t+1)")
        else:
            conv = (f"depthwise Conv3d kernel ({kt},{kh},{kw}), padding {pad} = kernel//2 zeros in T, H and W, groups=Ca, "
                    f"with bias (PyTorch cross-correlation: weight[c,0,i,j,l] multiplies frame t+i-{pad[0]}, grid row "
                    f"h+j-{pad[1]}, grid column w+l-{pad[2]}; out-of-range positions are zero)")
        notes.append(
            f"Adapter: only patch tokens x[:, 1:] (CLS untouched) -> fc1 (D -> {k['adapter_width']}) -> view (B,T,H,W,Ca) "
            f"-> (B,Ca,T,H,W) -> {conv} -> back to (B*T, L-1, Ca) -> fc2 -> added to the patch tokens. NO activation "
            "anywhere in the adapter.")
        inplace = ("The adapter residual is IN PLACE (x_id[:, 1:, :] += x): the adapter mutates its input tensor.")
        if k["adapter_pre_attn"]:
            inplace += (" With adapter_pre_attn the previous block's output / the ln_pre output are overwritten in "
                        "place, so forward hooks must clone (ours do; embed_out and blockN_out are the values before "
                        "the next adapter touched them).")
        else:
            inplace += " Forward hooks clone their tensors."
        notes.append(inplace)
    notes += [
        "Head: per-frame CLS -> mean over T -> ln_post -> Dropout(0.5) (identity in eval) -> fc. CLIP proj is not used (no such key).",
        "LayerNorm subclass computes in float32 and casts back; eps 1e-5 everywhere.",
        "The constructor casts every non-adapter parameter created before fc (conv1, embeddings, ln_*, attn, mlp) to fp16 (p.data = p.data.half()); fc and adapters stay fp32. We called model.float() before writing random fp32 values, so the fixture is pure fp32 (official training/eval runs under torch.cuda.amp.autocast).",
        "configs.DWCONV3D_DISABLE_CUDNN has inverted semantics in the code (cudnn.enabled = enabled and DWCONV3D_DISABLE_CUDNN, so True keeps cuDNN on); no numerical effect on CPU.",
        "Official evaluation (main.py) averages softmax(logits) over views; the fixture is one view, raw logits.",
    ]
    if not on or not (k["adapter_pre_attn"] or k["adapter_pre_mlp"]):
        notes.append("adapter_layers=0: the condition i >= layers - adapter_layers is never true, so no adapter modules exist; the block is exactly a CLIP block.")
    return notes


def aim_notes(kw, source_note):
    b = kw["backbone"]
    nt, s, layers, dpr_max = b["num_tadapter"], b["adapter_scale"], b["layers"], b["drop_path_rate"]
    dpr = [x.item() for x in torch.linspace(0, dpr_max, layers)]
    dropped = [i for i, p in enumerate(dpr) if p > 0]
    if nt == 2:
        temporal = ("xt = T_Adapter(attn(T_Adapter_in(ln_1(xt)))) [num_tadapter=2: T_Adapter_in (WITH skip: "
                    "xt + D_fc2(GELU(D_fc1(xt)))) sits between ln_1 and the shared attention]")
    else:
        temporal = "xt = T_Adapter(attn(ln_1(xt))) [num_tadapter=1: no T_Adapter_in]"
    notes = [
        "Backbone input (B,3,T,H,W) with T == num_frames (rearranges use self.num_frames, not the input T). Recognizer3D.forward_dummy input (N, num_clips, 3, T, H, W) is reshaped to (N*num_clips, 3, T, H, W); we fed video.unsqueeze(1).",
        "Embedding: conv1 -> patches row-major -> prepend class_embedding -> + positional_embedding -> + temporal_embedding[0, t] (added to EVERY token of frame t, CLS included) -> ln_pre -> permute to LND (L, B*T, D), column index b*T + t.",
        f"Block (x is (L, B*T, D)): xt = rearrange(x, \"n (b t) d -> t (b n) d\") i.e. sequences of length T for every (b, token) incl. CLS; {temporal}; x = x + rearrange back; x = x + S_Adapter(attn(ln_1(x))); xn = ln_2(x); x = x + mlp(xn) + adapter_scale * MLP_Adapter(xn) with adapter_scale = {s}.",
        "Temporal and spatial attention SHARE the same ln_1 and attn weights. attn is nn.MultiheadAttention(batch_first=False) called with need_weights=False, no mask (standard math path; in_proj rows q;k;v).",
        "Adapter = D_fc1 -> nn.GELU() (exact erf) -> D_fc2, hidden = int(0.25*D) = %d. Skip connection: S_Adapter yes, T_Adapter_in yes (only exists with num_tadapter=2), T_Adapter NO, MLP_Adapter NO." % int(b["width"] * 0.25),
        "Output: ln_post on all tokens (per frame, before any temporal pooling) -> CLS of each frame -> (B, D, T, 1, 1); I3DHead: AdaptiveAvgPool3d -> mean over T -> Dropout(0.5) (identity in eval) -> fc_cls. CLIP proj deleted (no such key).",
        (f"drop_path_rate {dpr_max} -> linspace(0, {dpr_max}, {layers}) = {[round(p, 6) for p in dpr]}: "
         + (f"block(s) {dropped} have DropPath on the temporal and MLP-adapter branches; inactive in eval."
            if dropped else "no DropPath module (nn.Identity) anywhere.")),
        "No fp16 casts in AIM (LayerNorm subclass still computes in fp32; eps 1e-5).",
        "Logits are raw scores (forward_dummy, softmax=False). Official testing uses average_clips=\"prob\" (softmax, mean over views).",
    ]
    if source_note:
        notes.append(source_note)
    return notes


def expected_layouts(family, tc):
    g, L = tc["grid"], tc["tokens_per_frame_L"]
    if family == "st":
        return {
            "logits": "(B, num_classes): fc output",
            "embed_out": f"(B*T, L, D): transformer input = ln_pre output, batch-first; row index = b*T + t; token 0 = CLS, tokens 1..{L - 1} = patches in row-major (h*{g.split('x')[1]} + w) order",
            "block_out": "(B*T, L, D): output of transformer.resblocks[{i}] (same layout as embed_out)",
            "block_last": "(B*T, L, D): output of transformer.resblocks[{i}] = transformer output",
            "pre_logits": "(B, D): ln_post(mean over T of the per-frame CLS token) = input of fc (dropout is identity in eval)",
        }
    return {
        "logits": "(B, num_classes): cls_head.fc_cls output (raw scores; forward_dummy softmax=False)",
        "embed_out": f"(L, B*T, D): transformer input = ln_pre output after permute(1,0,2) (LND, SEQUENCE-FIRST); column index = b*T + t; token 0 = CLS, tokens 1..{L - 1} = patches row-major",
        "block_out": "(L, B*T, D): output of backbone.transformer.resblocks[{i}] (LND, same layout as embed_out)",
        "block_last": "(L, B*T, D): output of backbone.transformer.resblocks[{i}] = transformer output (LND)",
        "backbone_out": "(B, D, T, 1, 1): backbone output = ln_post over all tokens, CLS of each frame, rearranged to B D T 1 1",
        "pre_logits": "(B, D): AdaptiveAvgPool3d(backbone_out) flattened (= mean over T) = input of cls_head.fc_cls",
    }


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def expected_order(family, layers):
    names = ["logits", "embed_out"] + [f"block{i}_out" for i in range(layers)]
    return names + (["backbone_out", "pre_logits"] if family == "aim" else ["pre_logits"])


def make_fixture(model_id, spec, mods, out_root, sources):
    family, kwargs, seed = spec["family"], spec["kwargs"], spec["seed"]
    torch.set_num_threads(1)
    model = build(family, kwargs, mods)
    weights = randomize(model, seed)
    video = make_video()
    out = run(family, model, video)
    rerun = run(family, model, video)
    rerun_equal = all(torch.equal(out[k], rerun[k]) for k in out)
    torch.set_num_threads(2)
    two = run(family, model, video)["logits"]
    torch.set_num_threads(1)
    d64 = (fp64_logits(family, model, video, mods) - out["logits"].double()).abs().max().item()

    folder = os.path.join(out_root, model_id)
    os.makedirs(folder, exist_ok=True)
    layers = (kwargs if family == "st" else kwargs["backbone"])["layers"]
    order = expected_order(family, layers)
    assert sorted(order) == sorted(out), (order, list(out))
    save_file(weights, os.path.join(folder, "weights.safetensors"), metadata=SF_META)
    save_file({"video": video}, os.path.join(folder, "input.safetensors"), metadata=SF_META)
    save_file({k: out[k] for k in order}, os.path.join(folder, "expected.safetensors"), metadata=SF_META)

    tc = tiny_config(family, kwargs)
    lay = expected_layouts(family, tc)
    tensors = {}
    for k in order:
        if k.startswith("block"):
            i = int(k[5:-4])
            layout = (lay["block_last"] if i == layers - 1 else lay["block_out"]).format(i=i)
        else:
            layout = lay[k]
        tensors[k] = {"shape": list(out[k].shape), "dtype": "float32", "layout": layout,
                      "max_abs": out[k].abs().max().item()}
    src = sources[family]
    if family == "st":
        official_source = {"repo": src["repo"], "commit": src["commit"], "file": "models_adapter.py",
                           "class": "VisionTransformer", "wrapper": None, "shims": ST_SHIMS}
        input_layout = "(B, 3, T, H, W) float32, channel-first video, passed as-is to VisionTransformer.forward(x)"
        trainable = ("official constructor: requires_grad only for names containing \"adapter\", plus fc.* (created "
                     "after the freeze); utils.save_model stores only those keys")
        call = "model = VisionTransformer(**constructor_kwargs).float().eval(); logits = model(video)"
        notes = st_notes(kwargs) + ([src["note"]] if src.get("note") else [])
        description = spec.get("description") or st_description(kwargs)
    else:
        official_source = {
            "repo": src["repo"], "commit": src["commit"], "file": "mmaction/models/backbones/vit_clip.py",
            "class": "ViT_CLIP",
            "wrapper": ("Recognizer3D.forward_dummy (imgs.reshape((-1,)+imgs.shape[2:]) -> backbone -> cls_head) and "
                        "I3DHead (spatial_type=avg: AdaptiveAvgPool3d((1,1,1)) -> Dropout(0.5) -> view(N,-1) -> "
                        "fc_cls) transcribed from mmaction/models/recognizers/recognizer3d.py and "
                        "mmaction/models/heads/i3d_head.py (those need mmcv); backbone unmodified"),
            "shims": AIM_SHIMS}
        input_layout = ("(B, 3, T, H, W) float32 = backbone ViT_CLIP.forward layout; the (transcribed) "
                        "Recognizer3D.forward_dummy takes (N, num_clips, 3, T, H, W) and was fed video.unsqueeze(1) "
                        "(num_clips = 1)")
        trainable = "official tools/train.py: names containing temporal_embedding | ln_post | cls_head | Adapter"
        call = ("model = Recognizer3D(ViT_CLIP(**constructor_kwargs[\"backbone\"]), "
                "I3DHead(**constructor_kwargs[\"cls_head\"])).float().eval(); logits = model(video.unsqueeze(1))  "
                "# forward_dummy path")
        notes = aim_notes(kwargs, src.get("note"))
        description = spec.get("description") or aim_description(kwargs)

    logits = out["logits"]
    meta = {
        "model_id": model_id,
        "description": description,
        "official_source": official_source,
        "constructor_kwargs": kwargs,
        "tiny_config": tc,
        "mode": MODE,
        "input": {"file": "input.safetensors", "key": "video", "shape": list(VIDEO_SHAPE), "dtype": "float32",
                  "layout": input_layout,
                  "generation": f"g = torch.Generator().manual_seed({VIDEO_SEED}); torch.randn({VIDEO_SHAPE}, generator=g, dtype=torch.float32)",
                  "seed": VIDEO_SEED, "note": "identical video tensor in every parity fixture folder"},
        "weights": {"file": "weights.safetensors", "dtype": "float32", "n_tensors": len(weights),
                    "n_params": int(sum(v.numel() for v in weights.values())), "init_seed": seed,
                    "init_recipe": INIT_RECIPE, "trainable_rule_in_official_code": trainable,
                    "keys_note": "state_dict order (the .safetensors header lists keys sorted)",
                    "keys": {k: list(v.shape) for k, v in weights.items()}},
        "expected": {"file": "expected.safetensors", "tensors": tensors},
        "official_call": call,
        "code_path_notes": notes,
        "logits": logits.tolist(),
        "max_abs_logit": logits.abs().max().item(),
        "diagnostics": {"rerun_same_process_bitwise_equal": rerun_equal,
                        "max_abs_diff_logits_2_threads_vs_1": (two - logits).abs().max().item(),
                        "max_abs_diff_logits_fp32_vs_fp64": d64, "fp64_note": FP64_NOTE},
        "environment": _environment(),
        "sha256": {f: sha256(os.path.join(folder, f)) for f in
                   ("weights.safetensors", "input.safetensors", "expected.safetensors")},
    }
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return folder, meta


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _environment():
    env = {"torch": torch.__version__, "python": platform.python_version(), "numpy": np.__version__,
           "safetensors": _version("safetensors"), "device": "cpu", "torch_num_threads": 1,
           "machine": platform.machine()}
    if MKL_STUB_NAME in os.environ.get("LD_PRELOAD", ""):
        env["cpu"] = _cpu_model()
        env["blas_note"] = ("MKL sgemm forced onto its Intel code path (--mkl-intel-path: LD_PRELOAD stub "
                            "mkl_serv_intel_cpu_true() = 1), as on the Intel CPU the first fixtures were made on; "
                            "without it MKL on a non-Intel CPU picks another kernel and blocks differ by ~1e-6")
    return env


# MKL (inside PyPI's torch) chooses its sgemm kernel by CPU vendor: on a non-Intel CPU it takes another
# path, and block outputs then differ from an Intel-made fixture by a few ulps (~1e-6). A one-line stub
# preloaded over MKL's vendor check restores the Intel path, so fixtures are bitwise reproducible anywhere.
MKL_STUB_NAME = "libmkl_intel_path_stub.so"


def reexec_with_mkl_intel_path():
    if MKL_STUB_NAME in os.environ.get("LD_PRELOAD", ""):
        return
    import subprocess
    import tempfile
    d = tempfile.mkdtemp(prefix="mkl_stub_")
    src, lib = os.path.join(d, "stub.c"), os.path.join(d, MKL_STUB_NAME)
    with open(src, "w") as f:
        f.write("int mkl_serv_intel_cpu_true(void) { return 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", lib, src], check=True)
    env = dict(os.environ)
    env["LD_PRELOAD"] = (lib + " " + env.get("LD_PRELOAD", "")).strip()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def _version(pkg):
    from importlib.metadata import version
    return version(pkg)


def compare(new_dir, ref_dir):
    """Max |difference| per tensor between two fixture folders (and whether the files are byte-identical)."""
    rep = {}
    for f in ("weights.safetensors", "input.safetensors", "expected.safetensors"):
        a, b = os.path.join(new_dir, f), os.path.join(ref_dir, f)
        ta, tb = load_file(a), load_file(b)
        diffs = {}
        for k in sorted(set(ta) | set(tb)):
            if k not in ta or k not in tb or ta[k].shape != tb[k].shape:
                diffs[k] = "missing or shape mismatch"
            else:
                diffs[k] = (ta[k].double() - tb[k].double()).abs().max().item()
        rep[f] = {"bytes_identical": sha256(a) == sha256(b), "max_abs_diff": diffs}
    return rep


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-st", help="path to ST-Adapter's models_adapter.py")
    ap.add_argument("--official-st-repo", default="linziyi96/st-adapter")
    ap.add_argument("--official-st-commit", default="bded03c0d0287ca22aa46a62e0af73fba6aa984d",
                    help="commit the given models_adapter.py came from (recorded in meta.json)")
    ap.add_argument("--official-st-note", default=(
        "Source of models_adapter.py: the stored copy of linziyi96/st-adapter @ bded03c (the first fixtures used "
        "b914b38). Check: regenerating clip_baseline and st_adapter_k400 with this file and this script reproduces "
        "their weights and expected tensors bitwise."),
        help="provenance note appended to the ST code_path_notes ('' for none)")
    ap.add_argument("--official-aim", help="path to AIM's mmaction/models/backbones/vit_clip.py")
    ap.add_argument("--official-aim-repo", default="lhxxxmad/AIM")
    ap.add_argument("--official-aim-commit", default="4da311e4fbe51131190bde64d8f51c2105fc95fd",
                    help="commit the given vit_clip.py came from (recorded in meta.json)")
    ap.add_argument("--official-aim-note", default=(
        "Source of vit_clip.py: the upstream repo taoyang1122/adapt-image-models was not reachable; the file came from "
        "the fork lhxxxmad/AIM @ 4da311e, whose vit_clip.py has the upstream AIM code path (all stored versions of "
        "the fork bobochow/adapt-image-models change ResidualAttentionBlock.forward and were not used). Check: "
        "regenerating aim_k400 (made from upstream @ b3580d2) with this file and this script reproduces its "
        "weights and expected tensors bitwise."),
        help="provenance note appended to the AIM code_path_notes ('' for none)")
    ap.add_argument("--out", required=True, help="root folder; one sub-folder per model id")
    ap.add_argument("--model", nargs="*", default=[], help=f"built-in specs: {', '.join(SPECS)}")
    ap.add_argument("--spec", nargs="*", default=[],
                    help="JSON files, each {model_id, family: st|aim, kwargs, seed, description?}")
    ap.add_argument("--compare", help="folder holding reference fixtures with the same ids: print max differences")
    ap.add_argument("--mkl-intel-path", action="store_true",
                    help="re-run under an LD_PRELOAD stub that makes MKL take its Intel sgemm path (needs cc); "
                         "reproduces the Intel-made fixtures bitwise on AMD CPUs")
    args = ap.parse_args()
    if args.mkl_intel_path:
        reexec_with_mkl_intel_path()

    specs = {m: SPECS[m] for m in args.model}
    for p in args.spec:
        with open(p) as f:
            s = json.load(f)
        specs[s["model_id"]] = s
    if not specs:
        ap.error("nothing to do: give --model and/or --spec")
    mods = {}
    if any(s["family"] == "st" for s in specs.values()):
        if not args.official_st:
            ap.error("--official-st is required for ST-Adapter / baseline fixtures")
        mods["st"] = load_official_st(args.official_st)
    if any(s["family"] == "aim" for s in specs.values()):
        if not args.official_aim:
            ap.error("--official-aim is required for AIM fixtures")
        mods["aim"] = load_official_aim(args.official_aim)
    sources = {"st": {"repo": args.official_st_repo, "commit": args.official_st_commit, "note": args.official_st_note},
               "aim": {"repo": args.official_aim_repo, "commit": args.official_aim_commit,
                       "note": args.official_aim_note}}
    torch.set_num_threads(1)
    for mid, spec in specs.items():
        folder, meta = make_fixture(mid, spec, mods, args.out, sources)
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        print(f"{mid}: {folder} ({size / 1024:.0f} KiB), max |logit| {meta['max_abs_logit']:.6f}, "
              f"fp64 diff {meta['diagnostics']['max_abs_diff_logits_fp32_vs_fp64']:.2e}")
        if args.compare:
            ref = os.path.join(args.compare, mid)
            if not os.path.isdir(ref):
                print(f"  (no reference folder {ref})")
                continue
            for f, r in compare(folder, ref).items():
                worst = max((v for v in r["max_abs_diff"].values() if isinstance(v, float)), default=0.0)
                bad = [k for k, v in r["max_abs_diff"].items() if not isinstance(v, float)]
                print(f"  vs {ref}/{f}: bytes identical {r['bytes_identical']}, max |diff| {worst:.3e}"
                      + (f", MISMATCHED {bad}" if bad else ""))
                if f == "expected.safetensors":
                    for k, v in r["max_abs_diff"].items():
                        print(f"      {k:<13} {v if isinstance(v, str) else f'{v:.3e}'}")


if __name__ == "__main__":
    main()
