"""Full-size networks with random weights in the original layout, run at a small input size for fast CPU tests.

The builders put the models on the device named by the environment variable ``VFE_HUB_TEST_DEVICE`` (default
``cpu``; e.g. ``cuda``), so the model tests run on a GPU unchanged; where that device is absent they skip, saying
why (:func:`devices.device_under_test`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from devices import device_under_test
from original_layouts import (PickledConfig, bags_htc_layout, clip_text_layout, detpro_layout, detpro_state,
                              gtr_layout, lst_state, mamba_layout, random_state, share_expander, stpn_layout,
                              write_mmcv_checkpoint)
from vfe_hub import cli
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.models.detpro import ORIGINAL_FORMAT
from vfe_hub import VideoDetector
from vfe_hub.layers.box_head import CosineClassifier
from vfe_hub.registry import MODELS, Preprocess, get_spec

# The layers do not depend on the input size; 320 x 192 keeps a ResNet-101 forward under a second on a CPU core.
SMALL = Preprocess(max_size=320, min_size=192, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                   size_divisor=16)


def small_spec(name: str):
    return dataclasses.replace(get_spec(name), preprocess=SMALL)


LAYOUTS = {"mamba_r101_dc5_vid": mamba_layout, "stpn_swint_vid": stpn_layout}


def video_model(name: str, seed: int = 0, **overrides):
    """``name`` with a random checkpoint of the released layout, converted strictly, at the small input size."""
    model = small_spec(name).build(**overrides)
    state, _ = convert_state_dict(random_state(LAYOUTS[name](), seed), table_for(get_spec(name).weights.format),
                                  {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.eval().to(device_under_test())


class StandIn(VideoDetector):
    """A video model without a network, for tests of what runs around one: it records the frames it sees, in
    order (``seen``: (sequence, index)), and answers each with :meth:`answer`'s ``(boxes (N, 4), scores (N,),
    labels (N,))``. Its one parameter gives it a device."""

    def __init__(self) -> None:
        super().__init__(small_spec("mamba_r101_dc5_vid"))
        self.anchor = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[str, int]] = []

    def answer(self, frame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch, state):
        out = []
        for frame in batch.frames:
            out.append(self.make_detections(frame, *self.answer(frame)))
            self.seen.append((frame.sequence, frame.index))
        return out


def mamba(seed: int = 0):
    return video_model("mamba_r101_dc5_vid", seed)


# ------------------------------------------------------------------------------------------------ DetPro

DETPRO = "detpro_r50_fpn_lvis1"
#: DetPro at the small input size (its P6 needs a size divisor of 32)
DETPRO_SMALL = dataclasses.replace(SMALL, size_divisor=32)
#: fewer proposals and detections than the release's 1000 / 300: the 4conv heads and the mask head run on a CPU
FAST = {"proposals": 40, "max_per_img": 20}
#: a 2-layer, 64-wide CLIP text tower (ViT-B/32's is 12 x 512) keeps vocabulary tests fast
TINY_TEXT = {"width": 64, "layers": 2, "heads": 4}
LVIS_V1_SIZE = 1203
#: mmdetection's spelling of one LVIS v1 name vs. the annotation files' (same category id)
MMDET_SPEAKER, LVIS_SPEAKER = "speaker_(stereo_equipment)", "speaker_(stero_equipment)"


def lvis_like_categories() -> list[dict]:
    """1203 categories shaped like LVIS v1's (made-up names): ids 1..1203 listed in a shuffled order, frequency
    ``r`` for every fourth id (rare: novel), ``c`` or ``f`` otherwise; id 1000 has the annotation files' spelling
    of the stereo speaker."""
    order = torch.randperm(LVIS_V1_SIZE, generator=torch.Generator().manual_seed(0)).tolist()
    return [{"id": i + 1, "name": LVIS_SPEAKER if i + 1 == 1000 else f"thing_{i + 1:04d}", "synset": "x.n.01",
             "frequency": "r" if i % 4 == 0 else "cf"[i % 2]} for i in order]


def _lively_detpro_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random DetPro tensors whose RoI head's biases are scaled down (random unit biases would swamp the RoI
    features, so every RoI would get the same scores) and whose mask logits' bias is raised, so that detections
    and masks are not degenerate."""
    state = detpro_state(layout, seed)
    for key in state:
        if key.startswith("roi_head.") and key.endswith(".bias") and ".bn." not in key and "clip_model" not in key:
            state[key] = state[key] * 0.01
    state["roi_head.mask_head.conv_logits.bias"] = torch.full((1,), 1.0)
    return state


def detpro_model(seed: int = 0):
    """DetPro with random weights in the released layout (no CLIP), converted strictly, random L2-normalised class
    embeddings (every fourth class novel), at the small input size with :data:`FAST` proposal counts."""
    model = dataclasses.replace(get_spec(DETPRO), preprocess=DETPRO_SMALL).build(**FAST)
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in ("class_embeddings", "novel")}
    state, _ = convert_state_dict(_lively_detpro_state(detpro_layout(clip=False), seed),
                                  table_for(ORIGINAL_FORMAT), expected)
    g = torch.Generator().manual_seed(seed + 1)
    state["class_embeddings"] = torch.nn.functional.normalize(torch.randn(LVIS_V1_SIZE, 512, generator=g), dim=1)
    state["novel"] = torch.arange(LVIS_V1_SIZE) % 4 == 0
    model.load_state_dict(state, strict=True)
    return model.eval().to(device_under_test())


GTR = "gtr_dr2101_tao"
AMODAL = "amodal_expander_dr2101_tao_amodal"


def gtr_model(seed: int = 0, proposals: int = 20, name: str = GTR, **config):
    """GTR (or, ``name``, the Amodal Expander on it) with random weights in the Amodal Expander release's layout
    (for GTR the expander's tensors are dropped), converted strictly, at the small input size (size divisor 32)
    with ``proposals`` CenterNet proposals per frame and other ``config`` entries replaced."""
    model = dataclasses.replace(get_spec(name), preprocess=DETPRO_SMALL).build(proposals=proposals, **config)
    state, _ = convert_state_dict(share_expander(random_state(gtr_layout(expander=True), seed)),
                                  table_for("detectron2"),
                                  {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.eval().to(device_under_test())


def serve_amodal_release(hub, monkeypatch, tmp_path, name: str, seed: int) -> str:
    """An Amodal Expander release file (random tensors in its layout, shared expander stages, detectron2's
    ``{"model": ...}``) on the test Hub ``hub`` as ``name``'s registry file; the entry pinned to it (commit,
    sha256, size) at the small input size with 20 proposals, the cache in ``tmp_path``. Returns the commit."""
    buffer = io.BytesIO()
    torch.save({"model": share_expander(random_state(gtr_layout(expander=True), seed)), "iteration": 20000}, buffer)
    data = buffer.getvalue()
    spec = get_spec(name)
    commit = hub.add_file(spec.weights.repo_id, spec.weights.filename, data)
    weights = dataclasses.replace(spec.weights, revision=commit[:7], sha256=hashlib.sha256(data).hexdigest(),
                                  size=len(data))
    small = dataclasses.replace(spec, weights=weights, preprocess=DETPRO_SMALL, config={**spec.config, "proposals": 20})
    monkeypatch.setitem(MODELS, spec.name, small)
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    return commit


LST = "lst_r50_fpn_lvis05"
#: maskrcnn-benchmark's input pipeline at the small size
LST_SMALL = Preprocess(max_size=320, min_size=192, mean=(102.9801, 115.9465, 122.7717), std=(1.0, 1.0, 1.0),
                       size_divisor=32, style="maskrcnn_benchmark", library="pil", nms="per_class")


def lst_model(seed: int = 0, num_classes: int = 1231):
    """LST with random weights in a maskrcnn-benchmark checkpoint's layout (the real anchor buffers), converted
    strictly, at the small input size with :data:`FAST` proposal counts."""
    model = dataclasses.replace(get_spec(LST), preprocess=LST_SMALL).build(num_classes=num_classes, **FAST)
    state, _ = convert_state_dict(lst_state(num_classes, seed), table_for("maskrcnn_benchmark"),
                                  {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.eval().to(device_under_test())


BAGS = "bags_gs_htc_x101_dcn_lvis05"


def bags_state(seed: int = 0, depth: int = 101):
    """Random tensors in BAGS's released layout (:func:`original_layouts.bags_htc_layout`, of ``depth``), the RoI
    heads' biases scaled down so that the RoI features, not the biases, decide the scores."""
    state = random_state(bags_htc_layout(depth), seed)
    for key in state:
        if key.startswith(("bbox_head.", "mask_head.")) and key.endswith(".bias"):
            state[key] = state[key] * 0.01
    return state


def bags_model(seed: int = 0, proposals: int = 40, max_per_img: int = 20, depth: int = 101):
    """BAGS with random weights in the released layout (with a ResNeXt of ``depth``), converted strictly, at the
    small input size (size divisor 32), ``proposals`` RPN proposals and at most ``max_per_img`` detections; the
    stand-in group tables (consecutive classes)."""
    model = dataclasses.replace(get_spec(BAGS), preprocess=DETPRO_SMALL).build(proposals=proposals,
                                                                               max_per_img=max_per_img, depth=depth)
    state, _ = convert_state_dict(bags_state(seed, depth), table_for("mmdet_v1"),
                                  {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.eval().to(device_under_test())


def small_model(name: str, seed: int = 0):
    """Every registered model (or architecture), with random weights in its released layout, at a small input
    size."""
    name = get_spec(name).architecture or name
    if name in LAYOUTS:
        return video_model(name, seed)
    if name == DETPRO:
        return detpro_model(seed)
    if name == LST:
        return lst_model(seed)
    if name == BAGS:  # ResNeXt-50: the code around the backbone at a quarter of the DCN blocks' CPU time
        return bags_model(seed, depth=50)
    if name in (GTR, AMODAL):  # random weights track nothing: with tracks of one detection kept, the paper
        return gtr_model(seed, name=name, min_track_len=1)  # protocol reports them
    raise KeyError(f"{name} has no small test model yet: add one to tests/small_models.py")


def write_detpro_release(folder: Path, *, text_tower: tuple[int, int] | None = None, contexts: int = 0,
                         seed: int = 0, categories: list[dict] | None = None, pickled_config: bool = True) -> dict:
    """A synthetic DetPro release in ``folder``: the mmcv checkpoint (random tensors in the released layout, with
    the full CLIP ViT-B/32, or only a ``(width, layers)`` text tower; ``meta`` with mmdet's CLASSES and the config:
    a pickled object, or with ``pickled_config=False`` its text, as DetPro's ``tools/train.py`` stores it),
    ``iou_neg5_ens.pth`` (``[1, 1203, 512]``, not normalised), an LVIS-style categories file (``categories``,
    default :func:`lvis_like_categories`) and ``contexts`` prompt-context files. Returns the paths and the original
    tensors.

    The tensors are :func:`_lively_detpro_state`'s.
    """
    layout = detpro_layout(clip=text_tower is None)
    if text_tower is not None:
        layout.update(clip_text_layout("roi_head.clip_model.", *text_tower))
    state = _lively_detpro_state(layout, seed)
    categories = lvis_like_categories() if categories is None else categories
    names = [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": folder / "detpro_ens_20e.pth", "embeddings": folder / "iou_neg5_ens.pth",
             "categories": folder / "lvis_v1_val.json",
             "contexts": [folder / f"bin{i}_prompt.pth" for i in range(contexts)]}
    mmdet_names = tuple(MMDET_SPEAKER if n == LVIS_SPEAKER else n for n in names)
    config = "model = dict(type='MaskRCNN')"
    write_mmcv_checkpoint(paths["checkpoint"], state, CLASSES=mmdet_names,
                          config=PickledConfig(config) if pickled_config else config)
    g = torch.Generator().manual_seed(seed + 1)
    embeddings = torch.randn(1, LVIS_V1_SIZE, 512, generator=g) * 3
    torch.save(embeddings, paths["embeddings"])
    paths["categories"].write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    width = (text_tower or (512, 12))[0]
    context_tensors = [torch.randn(8, width, generator=g) * 0.1 for _ in range(contexts)]
    for path, tensor in zip(paths["contexts"], context_tensors):
        torch.save(tensor, path)
    return {**paths, "state": state, "embeddings_tensor": embeddings, "context_tensors": context_tensors,
            "names": names}


def convert_detpro(release: dict, out, *, contexts: bool = True) -> str:
    """``vfe-hub convert`` of a synthetic release (:func:`write_detpro_release`); returns what it printed."""
    args = ["convert", DETPRO, str(release["checkpoint"]), str(out), "--embeddings", str(release["embeddings"]),
            "--categories", str(release["categories"])]
    if contexts and release["contexts"]:
        args += ["--contexts", *map(str, release["contexts"])]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(args) == 0
    return printed.getvalue()


def tiny_detpro_spec():
    """DetPro's registry entry at the test size: the small input, :data:`FAST` and the :data:`TINY_TEXT` text tower
    (a release written with ``text_tower=(64, 2)`` converts and loads under it)."""
    spec = get_spec(DETPRO)
    return dataclasses.replace(spec, preprocess=DETPRO_SMALL, config={**spec.config, "text_encoder": TINY_TEXT, **FAST})


# ------------------------------------------------------------------------------------------------ decisive weights

#: mean and spread of each final predictor's output channels after :func:`decisive` (module name patterns per
#: family): objectness and sigmoid class logits mostly negative (few anchors or classes fire), softmax class logits
#: centred, box deltas of half a unit (before the coders' stds or weights), CenterNet distances of a few strides;
#: DetPro's projections into CLIP space centred (its cosine logits at temperature 0.007 then spread by about 6);
#: LST's cosine classifier (no bias: only the spread applies, through its scale)
DECISIVE = {
    "mamba": {"rpn.cls_logits": (-2.0, 2.0), "rpn.bbox_pred": (0.0, 0.5), "box_head.cls_score": (0.0, 2.0),
              "box_head.bbox_pred": (0.0, 0.5)},
    "detpro": {"rpn.cls_logits": (-2.0, 2.0), "rpn.bbox_pred": (0.0, 0.5), "box_head.bbox_pred": (0.0, 0.5),
               "projection": (0.0, 1.0), "projection_for_image": (0.0, 1.0)},
    "lst": {"rpn.cls_logits": (-2.0, 2.0), "rpn.bbox_pred": (0.0, 0.5), "bbox_pred": (0.0, 0.5),
            "classifier": (0.0, 2.0)},
    "bags": {"rpn.cls_logits": (-2.0, 2.0), "rpn.bbox_pred": (0.0, 0.5), "box_heads.stages.*.cls_score": (0.0, 2.0),
             "box_heads.stages.*.bbox_pred": (0.0, 0.5)},
    "gtr": {"proposal_head.agn_hm": (-2.0, 2.0), "proposal_head.bbox_pred": (4.0, 2.0),
            "box_heads.stages.*.cls_score": (-4.0, 2.0), "box_heads.stages.*.bbox_pred": (0.0, 0.5)},
}
DECISIVE["stpn"] = DECISIVE["mamba"]
#: modules whose random biases :func:`decisive` scales by 0.01 first, as the other families' test states do for
#: their RoI heads (unit biases would swamp the RoI features: every RoI would score alike)
QUIET_BIASES = {"mamba": ("box_head.*", "aggregators.*"), "stpn": ("box_head.*",)}
#: how many of their inputs' principal directions the decisive predictors read
PRINCIPAL = 32
#: GTR's association made to follow the re-ID features, as a trained one does: the transformer's layers add nothing
#: (their output projections zeroed, so encoder and decoder pass their input on), the key projection's last layer
#: is centred with a spread of 0.2 over all its input's directions (the logit of two equal features is about 40)
#: and the query projection is a copy of the key projection, so the logit of two detections is ``k(x) . k(y)``
ZEROED = {"gtr": ("transformer.*.out_proj", "transformer.*.linear2")}
TIED = {"gtr": {"transformer.q_proj": "transformer.k_proj"}}
ASSOCIATION = {"gtr": {"transformer.k_proj.layers.1": (0.0, 0.2)}}


def decisive(model, images, passes: int = 2):
    """``model`` (random weights) made to decide like a trained detector, in place: the biases of
    :data:`QUIET_BIASES` scaled by 0.01 and the layers of :data:`ZEROED` zeroed; then each final predictor (the
    layers of :data:`DECISIVE`; those of :data:`ASSOCIATION` are only rescaled) reads only the :data:`PRINCIPAL`
    directions in which its inputs vary most over ``images`` (float32, two frames of one video): its weights are
    projected onto them, as a trained layer reads the directions that separate what it predicts; and it is rescaled
    so that each output channel has the table's mean and spread over the frames' anchors, locations or RoIs
    (``w <- w * s / std``, ``b <- mean - mu * s / std`` with ``mu, std`` of ``w x``); the copies of :data:`TIED`
    follow.
    ``passes`` runs (RoIs move once the proposals change). Returns the model."""
    import fnmatch

    family = model.spec.family
    modules = dict(model.named_modules())
    patterns = {**DECISIVE[family], **ASSOCIATION.get(family, {})}
    targets = {name: target for name in modules for pattern, target in patterns.items()
               if fnmatch.fnmatchcase(name, pattern)}
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            module = name.rsplit(".", 1)[0]
            if any(fnmatch.fnmatchcase(module, pattern) for pattern in ZEROED.get(family, ())):
                parameter.zero_()
            elif name.endswith(".bias") and any(fnmatch.fnmatchcase(module, p) for p in QUIET_BIASES.get(family, ())):
                parameter.mul_(0.01)
    for _ in range(passes):
        inputs: dict[str, list[torch.Tensor]] = {name: [] for name in targets}
        hooks = [modules[name].register_forward_hook(lambda m, args, out, name=name: inputs[name].append(args[0]))
                 for name in targets]
        try:
            model.predict(images)
        finally:
            for hook in hooks:
                hook.remove()
        with torch.no_grad():
            for name, (mean, spread) in targets.items():
                layer = modules[name]
                if not inputs[name]:  # not reached yet (e.g. no proposal passed GTR's threshold)
                    continue
                if isinstance(layer, nn.Conv2d):  # rows: the input's values under the kernel at each location
                    rows = torch.cat([F.unfold(x.float(), layer.kernel_size, layer.dilation, layer.padding,
                                               layer.stride).transpose(1, 2).flatten(0, 1) for x in inputs[name]])
                else:
                    rows = torch.cat([x.float().flatten(0, -2) for x in inputs[name]])
                # the weights read only the directions in which the inputs vary most, as a trained layer reads the
                # directions that separate what it predicts (random ones read mostly noise-level differences)
                weight = layer.weight.flatten(1)
                if not any(fnmatch.fnmatchcase(name, pattern) for pattern in ASSOCIATION.get(family, {})):
                    directions = torch.linalg.svd(rows - rows.mean(0), full_matrices=False).Vh[:PRINCIPAL]
                    weight = weight @ directions.T @ directions
                    layer.weight.copy_(weight.view_as(layer.weight))
                if isinstance(layer, CosineClassifier):  # logits scale * cos(x, w): the scale sets their spread
                    out = F.normalize(rows, dim=1) @ F.normalize(weight, dim=1).T
                    layer.scale.fill_(spread / out.std(0).mean().item())
                    continue
                out = weight @ rows.T
                mu, std = out.mean(1), out.std(1).clamp(min=1e-6)
                shape = (-1,) + (1,) * (layer.weight.dim() - 1)
                layer.weight.mul_((spread / std).view(shape))
                layer.bias.copy_(mean - mu * spread / std)
            for copy, original in TIED.get(family, {}).items():
                modules[copy].load_state_dict(modules[original].state_dict())
    return model
