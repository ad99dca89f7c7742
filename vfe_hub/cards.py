"""Model cards: Hugging Face Hub front matter + usage, generated from the registry (the single source)."""
from __future__ import annotations

import functools
import json
from importlib import resources

import yaml

from .layers.precision import OPS
from .registry import ModelSpec
from .weights import conversion_command

_DATASET_NAMES = {"imagenet_vid": "ImageNet VID (val)", "lvis_v1_val": "LVIS v1 (val)",
                  "lvis_v05_val": "LVIS v0.5 (val)", "tao_val": "TAO (val)", "tao_amodal_val": "TAO-Amodal (val)"}
#: the tasks whose results carry track ids
TRACKING_TASKS = ("multi-object-tracking", "amodal-tracking")


def readme_table(specs: list[ModelSpec]) -> str:
    """The README's model table (Markdown)."""
    rows = ["| name | task | paper metric | weights |", "|---|---|---|---|"]
    for spec in specs:
        metric = "; ".join(f"{_DATASET_NAMES.get(d, d)} " + ", ".join(f"{k} {v}" for k, v in m.items())
                           for d, m in spec.metrics.items()) or "not published (see the card)"
        w = spec.weights
        revision = w.revision or "(to be published)"
        weights = ("none released: convert your own (see the card)" if w.unreleased
                   else f"`{w.repo_id}` `{w.filename}` @ `{revision}`")
        rows.append(f"| `{spec.name}` | {spec.task} | {metric} | {weights} |")
    return "\n".join(rows)


def front_matter(spec: ModelSpec) -> dict:
    """The card's YAML metadata, with a ``model-index`` of the paper's metrics."""
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
        "license": spec.licence,
        "library_name": "vfe_hub",
        "pipeline_tag": "object-detection",
        "tags": list(spec.tags),
        "datasets": list(spec.datasets),
        "model-index": [{"name": spec.name, "results": results}],
    }


def _usage(spec: ModelSpec) -> str:
    """The card's code example: tracks for trackers, a video clip for video models, images otherwise (and a
    vocabulary if open)."""
    if spec.task in TRACKING_TASKS:
        amodal = ("\n    det.amodal_boxes                                   # whole objects, may leave the frame"
                  if spec.task == "amodal-tracking" else "")
        return f"""```python
import vfe_hub

model = vfe_hub.load("{spec.name}", device="cuda")
results = model.predict("clip.mp4", stream=True)        # one Detections per frame, with track_ids
for det in results:
    records = det.to_json(video_id=1)                    # TAO results: track_id, video_id, ...{amodal}

session = model.session()                                 # a live camera: one frame at a time
for frame in camera:
    det, = session.update(frame)
```

Or `vfe-hub track {spec.name} clip.mp4 -o tracks.json --save-video drawn.mp4` (TAO JSON and the video with each
track in its own colour), `torch.hub.load("<repo>", "{spec.name}")`."""
    if spec.protocols:
        return f"""```python
import vfe_hub

model = vfe_hub.load("{spec.name}", device="cuda")
results = model.predict("clip.mp4", batch_size=8)       # one Detections per frame
results[0].plot().save("frame0.jpg")
```

Or `torch.hub.load("<repo>", "{spec.name}")`, `vfe_hub.pipeline("{spec.task}", model="{spec.name}")`,
`vfe-hub predict {spec.name} clip.mp4`."""
    vocabulary = ', vocabulary=["zebra", "teapot", "kite"]' if spec.task == "open-vocabulary-detection" else ""
    vocabulary += ', weights="<out_dir>"' if spec.weights.unreleased else ""  # a folder of converted own weights
    return f"""```python
import vfe_hub

model = vfe_hub.load("{spec.name}", device="cuda"{vocabulary})
results = model.predict(["street.jpg", "kitchen.jpg"], batch_size=2)   # one Detections per image
results[0].plot().save("street_drawn.jpg")
```

Or `torch.hub.load("<repo>", "{spec.name}")`, `vfe_hub.pipeline("{spec.task}", model="{spec.name}")`,
`vfe-hub predict {spec.name} street.jpg`."""


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
    originals = "\n".join(f"- {what}: {where}" for what, where in w.originals.items())
    if w.unreleased:
        return f"""**No weights are available.** {w.unreleased}

What converts your own:

{originals}

Convert a checkpoint with `{conversion_command(spec)}`, then `vfe_hub.load("{spec.name}", weights="<out_dir>")`;
without `weights=` a load fails with this explanation."""
    return f"""Converted weights: `{w.repo_id}` / `{w.filename}` {pinned}. {w.licence_note}

The original release:

{originals}

Until the converted weights are reachable, a load fails naming these files and the command that converts them,
`{conversion_command(spec)}`; then `vfe_hub.load(weights="<out_dir>")`."""


_POST_PROCESSING = """Two deliberate differences from the original test code, both for exactness:

- **Batching never changes results.** Every frame is padded exactly as it would be alone (frames of one batch are
  grouped by padded size), so any `batch_size` gives the detections of one frame at a time, as the released
  evaluations (one image per GPU) computed them.
- **Class-wise NMS is exact.** Each class is suppressed on its own (`vfe_hub.layers.nms.multiclass_nms`). The
  originals' `batched_nms` (mmcv's below 10,000 boxes, torchvision's below a device-dependent count) shifts the
  boxes of each class by an offset and runs one NMS; the shift rounds coordinates, so a pair of boxes whose IoU
  lies within float rounding of the threshold can be decided the other way there. This is rare: one detection of
  one frame in a full comparison run of MAMBA."""


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

{_POST_PROCESSING}

{_precision(spec)}

## Weights

{_weights(spec)}{_variants(spec)}

## Citation

```bibtex
{spec.paper.citation}
```
"""
