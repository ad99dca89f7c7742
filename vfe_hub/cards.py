"""Model cards: Hugging Face Hub front matter + usage, generated from the registry (the single source)."""
from __future__ import annotations

import functools
import json
from importlib import resources

import yaml

from .layers.precision import OPS
from .registry import CPU_SPEED_COMMAND, CPU_SPEED_MACHINE, TRACKING_TASKS, ModelSpec, WeightsSpec, conversion_command

_DATASET_NAMES = {"imagenet_vid": "ImageNet VID (val)", "lvis_v1_val": "LVIS v1 (val)",
                  "lvis_v05_val": "LVIS v0.5 (val)", "tao_val": "TAO (val)", "tao_amodal_val": "TAO-Amodal (val)"}


def weights_source(spec: ModelSpec) -> str:
    """Where a load takes the weights from and whether they are pinned, in a line (the README's model table)."""
    w = spec.weights
    if w.unreleased:
        return "none released: convert your own (see the card)"
    if w.from_drive:
        pin = "pinned" if w.drive.pinned else "unpinned: size and sha256 recorded at the first download"
        return f"the authors' release on Google Drive, converted on first load ({pin})"
    if w.revision is None:
        return f"`{w.repo_id}` `{w.filename}` (to be published)"
    pin = ("sha256 pinned" if w.sha256 else "sha256 from the Hub's LFS record" if w.format != "vfe_hub"
           else "sha256 from its config.json")
    return f"`{w.repo_id}` `{w.filename}` @ `{w.revision}` ({pin})"


def loads_by_name(weights: WeightsSpec) -> str:
    """Whether ``vfe_hub.load(name)`` alone gets a model's weights: ``"yes"`` (the registry pins a file it
    downloads, or names the original release on Google Drive, converted on first load), ``"convert first"`` (the
    converted repository is not published yet: ``vfe-hub convert`` the authors' release, then
    ``load(name, weights=<folder>)``) or ``"no weights released"`` (convert your own)."""
    if weights.unreleased:
        return "no weights released"
    if weights.format == "vfe_hub" and weights.revision is None and not weights.from_drive:
        return "convert first"
    return "yes"


def readme_table(specs: list[ModelSpec]) -> str:
    """The README's model table (Markdown)."""
    rows = ["| name | task | loads by name | paper metric | weights |", "|---|---|---|---|---|"]
    for spec in specs:
        metric = "; ".join(f"{_DATASET_NAMES.get(d, d)} " + ", ".join(f"{k} {v}" for k, v in m.items())
                           for d, m in spec.metrics.items()) or "not published (see the card)"
        weights = weights_source(spec)
        rows.append(f"| `{spec.name}` | {spec.task} | {loads_by_name(spec.weights)} | {metric} | {weights} |")
    return "\n".join(rows)


def _code_url(spec: ModelSpec) -> str:
    """The original code base's address (the first word of ``spec.original_code``)."""
    return spec.original_code.split()[0]


def front_matter(spec: ModelSpec) -> dict:
    """The card's YAML metadata, with a ``model-index`` of the paper's metrics.

    ``license`` is that of the weights: none of the registered releases states one licence for its weights (each
    ``WeightsSpec.licence_note`` says what is known), so it is ``other``, pointing at the original release; the
    card's Licence section gives the details and the original code's licence (``spec.licence``).
    """
    results = [
        {
            "task": {"type": "object-detection", "name": spec.task},
            "dataset": {"type": dataset, "name": _DATASET_NAMES.get(dataset, dataset)},
            "metrics": [{"type": metric, "name": metric, "value": value} for metric, value in metrics.items()],
            "source": {"name": spec.paper.title, "url": spec.paper.url},
        }
        for dataset, metrics in spec.metrics.items()
    ]
    return {
        "license": "other",
        "license_name": "original-release",
        "license_link": _code_url(spec),
        "library_name": "vfe_hub",
        "pipeline_tag": "object-detection",
        "tags": list(spec.tags),
        "datasets": list(spec.datasets),
        "model-index": [{"name": spec.name, "results": results}],
    }


_TORCH_HUB = 'through torch.hub from a clone of vfe_hub, `torch.hub.load(".", "{name}", source="local", trust_repo=True{weights})`'


def _usage(spec: ModelSpec) -> str:
    """The card's code example: tracks for trackers, a video clip for video models, images otherwise (and a
    vocabulary if open). Models that do not load by name take the folder ``vfe-hub convert`` wrote."""
    weights = "" if loads_by_name(spec.weights) == "yes" else ', weights="<out_dir>"'  # converted by the user
    torch_hub = _TORCH_HUB.format(name=spec.name, weights=weights)
    if spec.task in TRACKING_TASKS:
        amodal = ("\n    det.amodal_boxes                                   # whole objects, may leave the frame"
                  if spec.task == "amodal-tracking" else "")
        return f"""```python
import av
import vfe_hub

model = vfe_hub.load("{spec.name}"{weights})
results = model.predict("clip.mp4", stream=True)        # one Detections per frame, with track_ids
for det in results:
    records = det.to_json(video_id=1)                    # TAO results: track_id, video_id, ...{amodal}

session = model.session()                                 # live video: one frame at a time
with av.open("clip.mp4") as video:                        # or a camera, e.g. av.open("/dev/video0")
    for frame in video.decode(video=0):
        [det] = session.update(frame.to_ndarray(format="rgb24"))
```

Or from a shell, `vfe-hub track {spec.name} clip.mp4 -o tracks.json --save-video drawn.mp4` (TAO JSON and the
video with each track in its own colour); {torch_hub}."""
    if spec.task == "video-object-detection":
        return f"""```python
import vfe_hub

model = vfe_hub.load("{spec.name}"{weights})
results = model.predict("clip.mp4", batch_size=8)       # one Detections per frame
results[0].plot().save("frame0.jpg")
```

Or from a shell, `vfe-hub predict {spec.name} clip.mp4`; as a pipeline,
`vfe_hub.pipeline("{spec.task}", model="{spec.name}")`; {torch_hub}."""
    vocabulary = ', vocabulary=["zebra", "teapot", "kite"]' if spec.task == "open-vocabulary-detection" else ""
    return f"""```python
import vfe_hub

model = vfe_hub.load("{spec.name}"{weights}{vocabulary})
results = model.predict(["street.jpg", "kitchen.jpg"], batch_size=2)   # one Detections per image
results[0].plot().save("street_drawn.jpg")
```

Or from a shell, `vfe-hub predict {spec.name} street.jpg{' --weights <out_dir>' if weights else ''}`; as a pipeline,
`vfe_hub.pipeline("{spec.task}", model="{spec.name}"{weights})`; {torch_hub}."""


def _temporal(spec: ModelSpec) -> str:
    if not spec.protocols:
        return ""
    protocol_rows = "\n".join(f"- **{name}**: {text}" for name, text in spec.protocols.items())
    return f"""## Temporal behaviour

{spec.temporal}

Protocols (`model.predict(..., protocol=...)`):

{protocol_rows}

"""


def _weights(spec: ModelSpec) -> str:
    w = spec.weights
    if w.format != "vfe_hub":
        sha = w.sha256 or "not published with the release; checked against the Hub's LFS sha256 on download"
        return (f"`{w.repo_id}` / `{w.filename}` at revision `{w.revision}` (format `{w.format}`; converted strictly "
                f"to safetensors on first load and cached). sha256: {sha}. {w.licence_note}")
    pinned = (f"at revision `{w.revision}`, sha256 {w.sha256 or 'checked against config.json and the Hub'}"
              if w.revision else "(not published yet: the commit and sha256 are pinned at publication)")
    originals = "\n".join(f"- {what}: {where}" for what, where in w.sources().items())
    if w.unreleased:
        return f"""**No weights are available.** {w.unreleased}

What converts your own:

{originals}

Convert a checkpoint with `{conversion_command(spec)}`, then `vfe_hub.load("{spec.name}", weights="<out_dir>")`;
without `weights=` a load fails with this explanation."""
    if w.from_drive:
        check = ("Every file is pinned (size and sha256) and checked." if w.drive.pinned else
                 "**Unpinned**: no sha256 was published and the files could not be measured when this entry was "
                 "written, so the first download records each file's size and sha256 in the cache; later downloads "
                 "and `vfe-hub cache verify` must match that record, and every result's provenance carries the "
                 "checkpoint's (`pinned: false`).")
        return f"""**From the original release on Google Drive.** The first load downloads it (through gdown, the
large-file confirmation included), checks it, converts it strictly and caches the result; the next load reads only
the cache (also offline). {check}

{originals}

Converted weights: `{w.repo_id}` / `{w.filename}`, not published yet; once they are and their commit and sha256 are
pinned here, loads take them from the Hub instead. {w.licence_note}

To convert by hand (e.g. files downloaded in a browser): `{conversion_command(spec)}`, then
`vfe_hub.load(weights="<out_dir>")`."""
    return f"""Converted weights: `{w.repo_id}` / `{w.filename}` {pinned}. {w.licence_note}

The original release:

{originals}

Until the converted weights are reachable, a load fails naming these files and the command that converts them,
`{conversion_command(spec)}`; then `vfe_hub.load(weights="<out_dir>")`."""


_RESIZE = {
    "cv2": ("mmcv's `imresize` (`cv2.resize`, `INTER_LINEAR` on uint8)",
            "torch's bilinear on floats, on the device: the same sampling without cv2's 8-bit rounding; measured "
            "on the five scikit-image sample photographs at this model's test scale, 11 % of the values differ from "
            "cv2's by half a grey level or more, at most 0.78"),
    "pil": ("`PIL.Image.resize(BILINEAR)` on uint8 (antialiased when shrinking)",
            "torch's antialiased uint8 kernel (on a GPU, two float passes rounded to 8 bits), on the device; measured "
            "on the five scikit-image sample photographs at 800 x 1333, 0.16 % of the values (0 to 0.44 % per "
            "photograph) differ from PIL's by one grey level"),
}
_SIZE_RULE = {"mmcv": "mmcv's `rescale_size` (`int(x * s + 0.5)`)",
              "maskrcnn_benchmark": "maskrcnn-benchmark's `Resize.get_size` (long side truncated)",
              "detectron2": "detectron2's `ResizeShortestEdge`"}
_NMS = {
    "mmcv": ("mmcv's `batched_nms`: the boxes of each class shifted by `class * (max coordinate + 1)` in float32, one "
             "NMS testing `inter > t * union`. The shift rounds coordinates (to 1/16-1/8 pixel with LVIS's 1203 "
             "classes), so pairs near the IoU threshold are decided otherwise than by exact class-wise NMS: against "
             "the authors' DetPro on shared weights, 1-28 box pairs per image"),
    "torchvision": ("torchvision's `batched_nms` as GTR's environment (torchvision 0.9) ran it: the boxes of each "
                    "class shifted by `class * (max coordinate + 1)`, one NMS; the shift rounds coordinates, so pairs "
                    "near the IoU threshold can be decided otherwise than by exact class-wise NMS"),
    "per_class": ("a loop over classes with the legacy kernel, widths `x2 - x1 + 1`: the same decisions as exact "
                  "class-wise NMS up to the last bit of an IoU"),
}


def _pipeline(spec: ModelSpec) -> str:
    """The card's section on the two pipelines and what the default changes."""
    rule = spec.preprocess
    library, fast = _RESIZE[rule.library]
    normalise = "`(x - mean) * float32(1 / std)` (mmcv >= 1.0's `imnormalize`)" if rule.std_reciprocal else \
        "`(x - mean) / std`"
    clip = ("Boxes are clipped to the input image, as the original's." if rule.clip_to_input else
            "Boxes are reported by their pixel edges (`x2 - x1` is the original's exported width `w + 1`) and, as "
            "the original exports them, not clipped to the input image: clipped to the last resized pixel before "
            "they are scaled back, a box at the right or bottom edge of an upscaled image passes it by up to "
            "`1 - W / W'` pixel.")
    opencv = " The cv2 resize needs OpenCV (`pip install 'vfe_hub[original]'`)." if rule.library == "cv2" else ""
    if rule.style == "maskrcnn_benchmark":
        clip += (" Masks are pasted as maskrcnn-benchmark's `Masker` does: a box narrower than a pixel that "
                 "truncation to integers leaves inverted gets an empty mask.")
    return f"""## Pipeline

`vfe_hub.load("{spec.name}", pipeline="original")` (CLI `--pipeline original`; `benchmarks/reproduce.py` uses it)
reproduces the original's test pipeline bit for bit: the size rule of {_SIZE_RULE[rule.style]}, the resize of
{library} on the CPU before upload (the network's input tensor is the original's), normalisation {normalise}, and
the arithmetic of the original's class-wise NMS, {_NMS[rule.nms]}.{opencv}

The default pipeline (`"fast"`) keeps the size rule and normalisation and changes two things, for speed and
exactness: the resize is {fast}; class-wise NMS is exact (each class suppressed on its own), and results never
depend on the batch size (every frame is padded as it would be alone). Against the authors' code on shared random
weights, the resize difference alone moved 3-6 of 300 LST detections and left 209-235 of 300 DetPro detections
unchanged; fed the original's input, all 300 matched.

{clip}"""


def _speed(spec: ModelSpec) -> str:
    """The measured CPU time per frame, with the command and machine that measured it."""
    if spec.cpu_seconds_per_frame is None:
        return ""
    command = CPU_SPEED_COMMAND.format(name=spec.architecture or spec.name)
    return f"""
## Speed

On a CPU: {spec.cpu_seconds_per_frame:.1f} s per frame of 720 x 1280 pixels ({CPU_SPEED_MACHINE}), measured by
`{command}` with random weights (the same network; only the number of detections, and with it the
post-processing, can differ with trained ones). On a GPU, run the same script with `--device cuda`.
"""


def _licence(spec: ModelSpec) -> str:
    unreleased = "No weights were released; weights you train and convert are yours to license. " \
        if spec.weights.unreleased else "The weights state no single licence of their own (see Weights). "
    return (f"{unreleased}The original code, {_code_url(spec)}, is under the `{spec.licence}` licence; vfe_hub, "
            f"which converts and runs the weights, under `apache-2.0`.")


@functools.cache
def precision_figures() -> dict:
    """The half-precision figures recorded by ``benchmarks/precision.py`` (``vfe_hub/assets/precision.json``):
    ``{"setup": text, "bar": share, "results": {architecture: {"<dtype> <device>": agreement figures}}}``."""
    text = resources.files(__package__).joinpath("assets", "precision.json").read_text(encoding="utf-8")
    return json.loads(text)


def _verdict(rows: dict[str, dict], bar: float) -> str:
    """Which rows meet the bar (their shares of matched detections and unchanged tracks) and which do not."""
    lowest = {key: min(r[k] for k in ("matched", "tracks_unchanged") if r.get(k) is not None)
              for key, r in sorted(rows.items())}
    met = [key for key, share in lowest.items() if share >= bar]
    missed = [f"{key} (lowest share {share:.1%})" for key, share in lowest.items() if share < bar]
    text = f" Met by {', '.join(met)}." if met else ""
    if missed:
        text += (f" Not met by {', '.join(missed)}: docs/precision.md says where the difference comes from, and "
                 "why no further step is kept in float32 for it.")
    return text


def _precision(spec: ModelSpec) -> str:
    """The card's "Precision" section: what stays float32 and why, and the measured agreement with float32."""
    kept = "\n".join(f"- **{op}**: {why}" for op, why in OPS.items() if op in spec.float32_ops)
    data = precision_figures()
    rows = data["results"].get(spec.architecture or spec.name, {})
    tracks = spec.task in TRACKING_TASKS
    masks = any(r["mask_iou"] is not None for r in rows.values())
    header = ("| dtype, device | detections | matched | worst score drift | worst box drift (px) |"
              + (" tracks unchanged |" if tracks else "") + (" mask IoU |" if masks else ""))
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for key, r in sorted(rows.items()):
        lines.append(f"| {key} | {r['detections']} | {r['matched']:.1%} | {r['score_drift']:.3f} | "
                     f"{r['box_drift']:.2f} |" + (f" {r['tracks_unchanged']:.1%} ({r['tracks']}) |" if tracks else "")
                     + (f" {r['mask_iou']:.3f} |" if masks else ""))
    verdict = _verdict(rows, data["bar"])
    extra = ((", the share of float32 tracks unchanged (of how many)" if tracks else "")
             + (", the mean mask IoU of twins" if masks else ""))
    table = "\n".join(lines) if rows else "Not measured yet: run `python benchmarks/precision.py --write`."
    return f"""## Precision

`vfe_hub.load(..., dtype=torch.bfloat16)` (CPU or CUDA) or `dtype=torch.float16` (CUDA) runs the network under
autocast: convolutions and matrix products in the half dtype; boxes, scores and masks come back float32. These
computations stay float32 (`vfe_hub.layers.precision`):

{kept}

Agreement of half precision with float32 on the same frames: the share of the float32 detections that have a twin
(same label, box IoU >= 0.9), the largest score and box-corner differences between twins{extra}. float16 on the
CPU is autocast's CPU path: the same rounding and float32 steps as on a GPU, only slow; the GPU check
(`benchmarks/gpu_check.py`) measures CUDA.

{table}

{data["setup"]}

The bar of the half-precision contract is {data["bar"]:.0%} of the float32 detections matched{
" and of the tracks unchanged" if tracks else ""}.{verdict} Random weights are not trained ones: with yours, compare
the two runs with `vfe_hub.evaluation.agreement.agreement(float32_results, half_results)`."""


def _variants(spec: ModelSpec) -> str:
    """For a weight variant: the other variants of its architecture and the default."""
    if spec.architecture is None:
        return ""
    from .registry import ALIASES, MODELS

    others = ", ".join(f"`{name}`" for name, s in MODELS.items() if s.architecture == spec.architecture)
    return (f"\n\nOne of the weight variants of `{spec.architecture}` ({others}), same network and code; "
            f"`vfe_hub.load(\"{spec.architecture}\")` loads `{ALIASES[spec.architecture]}`.")


def render(spec: ModelSpec) -> str:
    """The whole model card as Markdown."""
    metric_rows = "\n".join(f"| {dataset} | {metric} | {value} |"
                            for dataset, metrics in spec.metrics.items() for metric, value in metrics.items())
    protocol = "paper" if "paper" in spec.protocols else next(iter(spec.protocols), None)
    note = f"\n\n{spec.metrics_note}" if spec.metrics_note else ""
    numbers = (f"""Paper{f" (protocol `{protocol}`)" if protocol else ""}:

| dataset | metric | paper |
|---|---|---|
{metric_rows}{note}""" if spec.metrics else spec.metrics_note)
    details = f"\n## Model\n\n{spec.details}\n" if spec.details else ""
    return f"""---
{yaml.safe_dump(front_matter(spec), sort_keys=False).strip()}
---

# {spec.name}

{spec.summary}

Paper: [{spec.paper.title}]({spec.paper.url}) ({spec.paper.venue}). Original code: {spec.original_code}.
{details}
## Usage

{_usage(spec)}

{_temporal(spec)}## Numbers

{numbers}

Reproduce with `python benchmarks/reproduce.py {spec.name} --root <data>`.

{_pipeline(spec)}
{_speed(spec)}

{_precision(spec)}

## Weights

{_weights(spec)}{_variants(spec)}

## Licence

{_licence(spec)}

## Citation

```bibtex
{spec.paper.citation}
```
"""
