"""Half precision against float32, model by model, on the same frames; records the figures the model cards show.

    python benchmarks/precision.py              # bfloat16 on the CPU, every architecture
    python benchmarks/precision.py --write      # ... and record them (vfe_hub/assets/precision.json)
    python benchmarks/precision.py --device cuda --dtype float16 --write

Per architecture (weight variants share their code): the model with random weights in its released layout
(tests/small_models.py), made decisive (:func:`small_models.decisive`, see :data:`SETUP`), runs :func:`frames` in
float32, then in the half dtype under autocast (``model.dtype``, as ``vfe_hub.load(dtype=...)`` sets it);
:func:`vfe_hub.evaluation.agreement.agreement` compares the two. Also listed: the float32 computations the half
precision run entered (:mod:`vfe_hub.layers.precision`). ``--parts`` adds, per part of the model (its top-level
modules: backbone, neck, RPN, heads), a row with only that part in the half dtype and the rest in float32, and a row
with that part in float32 and the rest in the half dtype (printed, not recorded): where the difference enters.
``tests/test_precision.py`` measures the recorded row again and holds it to the recorded figures.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from media import panning_clip  # noqa: E402
from small_models import DECISIVE, decisive, small_model  # noqa: E402

import vfe_hub  # noqa: E402
from vfe_hub.evaluation.agreement import agreement  # noqa: E402
from vfe_hub.hub import atomic_write  # noqa: E402
from vfe_hub.layers import precision  # noqa: E402

#: where the measured figures live (the model cards read them)
RESULTS = REPO / "vfe_hub" / "assets" / "precision.json"
#: the shares below this fail the bar of the half-precision contract
BAR = 0.98

SETUP = (
    "Measured by `python benchmarks/precision.py` with random weights in the released layout (the test suite's "
    "models: full networks, the test configuration of proposals and detections, input resized to a short side of "
    "192 px), made decisive as a trained detector is (`tests/small_models.py`, `decisive`): every final predictor "
    "(RPN objectness and deltas, CenterNet heatmap and distances, box classifiers and deltas, DetPro's projections "
    "into CLIP space) reads only the 32 directions in which its inputs vary most on two calibration frames "
    "(scikit-image's coffee, panning), as a trained layer reads the directions that separate what it predicts, "
    "and is rescaled so that each output channel has a set mean and spread there (objectness logits -2 +- 2, "
    "softmax class logits 0 +- 2, sigmoid class logits -4 +- 2, deltas 0 +- 0.5, CenterNet distances 4 +- 2 "
    "strides); MAMBA's and STPN's random RoI-head biases are scaled by 0.01, as the "
    "other test models' are, so that the RoI features decide; GTR's association follows the re-ID features (the "
    "tracking transformer's layers pass their input on, the query projection equals the key projection). Mask "
    "heads keep their random weights: their probabilities lie near the 0.5 threshold, so the mask IoU is a "
    "pessimistic figure. Frames: two 120 x 160 frames of a photograph panning 4 px (scikit-image's astronaut). "
    "A twin is a detection of the other run with the same label and box IoU >= 0.9; a track is "
    "unchanged when all its detections have twins, all in one track of the other run that holds nothing else.")


def frames() -> list[np.ndarray]:
    """The measured frames: two 120 x 160 frames of a photograph panning 4 px (a video for the video models and
    trackers; two images for the others)."""
    return panning_clip(n=2, size=(120, 160))


def architectures() -> list[str]:
    """One registered name per architecture (weight variants share their code)."""
    return sorted({vfe_hub.registry.get_spec(name).architecture or name for name in vfe_hub.list_models()})


def decisive_model(name: str, device: str | torch.device = "cpu"):
    """``name``'s test model (:func:`small_models.small_model`) made decisive on two calibration frames (another
    photograph panning), on ``device``."""
    model = small_model(name)
    assert model.spec.family in DECISIVE, f"{name}: add its final predictors to small_models.DECISIVE"
    return decisive(model, panning_clip(n=2, size=(120, 160), name="coffee")).to(device)


def measure(model, dtype: torch.dtype, images: list[np.ndarray] | None = None,
            float32_parts: tuple[str, ...] = ()) -> dict[str, Any]:
    """:func:`agreement` of ``model`` in ``dtype`` with ``model`` in float32 on ``images`` (default :func:`frames`),
    and ``ops``: the float32 computations the ``dtype`` run entered. ``float32_parts`` (names of top-level modules)
    run in float32 in the ``dtype`` run."""
    images = frames() if images is None else images
    kept = model.dtype
    try:
        model.dtype = torch.float32
        reference = model.predict(images)
        model.dtype = dtype
        with precision.trace() as ops, _in_float32(model, float32_parts):
            candidate = model.predict(images)
    finally:
        model.dtype = kept
    return {**agreement(reference, candidate), "ops": sorted(ops)}


@contextlib.contextmanager
def _in_float32(model, parts: tuple[str, ...]) -> Iterator[None]:
    """Inside the block, the top-level modules ``parts`` of ``model`` run with autocast off on float32 arguments:
    every module of them, as a model may call a part's submodules (a head's layers) rather than the part."""
    modules = [m for part in parts for m in getattr(model, part).modules()]
    for module in modules:
        module.forward = functools.partial(precision.call_in_float32, module.forward)
    try:
        yield
    finally:
        for module in modules:
            del module.forward


def parts(model) -> list[str]:
    """The top-level modules of ``model`` that hold parameters (backbone, neck, RPN, heads)."""
    return [name for name, module in model.named_children() if any(True for _ in module.parameters())]


def row_key(dtype: str, device: str) -> str:
    """The key of a row of figures: ``"<dtype> <device type>"``."""
    return f"{dtype} {torch.device(device).type}"


def recorded() -> dict[str, Any]:
    """The recorded figures: ``{"setup": text, "bar": share, "results": {architecture: {"<dtype> <device>":
    figures}}}``."""
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"setup": SETUP, "bar": BAR, "results": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=architectures())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=["float16", "bfloat16"])
    parser.add_argument("--write", action="store_true", help=f"record the figures in {RESULTS.relative_to(REPO)}")
    parser.add_argument("--parts", action="store_true",
                        help="also measure each part alone in the half dtype, and all but it (not recorded)")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    print(f"torch {torch.__version__}, {args.dtype} against float32 on {args.device}\n")
    print("| model | detections | matched | score drift | box drift px | tracks unchanged | mask IoU | float32 ops |\n"
          "|---|---|---|---|---|---|---|---|")
    data = recorded()
    data["setup"], data["bar"] = SETUP, BAR
    for name in args.models:
        model = decisive_model(name, args.device)
        names = parts(model)
        ablations = [("", ())]
        if args.parts:
            ablations += [(f" (only {p} in {args.dtype})", tuple(n for n in names if n != p)) for p in names]
            ablations += [(f" ({p} in float32)", (p,)) for p in names]
        for suffix, float32_parts in ablations:
            figures = measure(model, getattr(torch, args.dtype), float32_parts=float32_parts)
            label = name + suffix
            print(f"| {label} | {figures['detections']} | {figures['matched']:.3f} | {figures['score_drift']:.4f} | "
                  f"{figures['box_drift']:.2f} | {_optional(figures['tracks_unchanged'])} | "
                  f"{_optional(figures['mask_iou'])} | {', '.join(figures.pop('ops'))} |", flush=True)
            if not suffix:
                data["results"].setdefault(name, {})[row_key(args.dtype, args.device)] = figures
    if args.write:
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        atomic_write(RESULTS, lambda tmp: tmp.write_text(text))
        print(f"\nrecorded in {RESULTS.relative_to(REPO)}; regenerate the model cards (vfe_hub.cards.render)")


def _optional(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
