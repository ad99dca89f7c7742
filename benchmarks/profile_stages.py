"""Where one frame's time goes: a model's stages timed on real frames; prints a Markdown table, slowest first.

(Not named ``profile.py``: a file of that name beside these scripts would shadow the standard library's
``profile``, which torch imports.)

    python benchmarks/profile_stages.py detpro_r50_fpn_lvis1 --size 480 640
    python benchmarks/profile_stages.py mamba_r101_dc5_vid --device cuda --frames 8

Stages are the model's sub-modules by top-level name (backbone, neck, RPN head, box and mask heads, attention,
prompt predictor) and the steps it calls (preprocessing, proposal selection, RoI pooling, box post-processing with
NMS, mask pasting, result packing with RLE encoding); "other" is the rest of ``forward``. Stages do not nest: a
call counts for the outermost timed stage only. Random weights (speed does not depend on the values); the input is
``--size`` frames resized by the model's own rule, after one warm-up frame.
"""
from __future__ import annotations

import argparse
import importlib
import time
from collections import defaultdict
from collections.abc import Callable

import torch

from vfe_hub import engine
from vfe_hub.layers.rpn import ProposalSelector
from vfe_hub.models.base import Detector
from vfe_hub.registry import get_spec

from speed import frames, runner

#: functions the model families call by name, timed where a family module imports them
STEPS = {"pool_rois": "RoI pooling", "detect": "box post-processing + NMS", "paste_masks": "mask pasting"}


class Timer:
    """Wall time per stage. Stages do not nest: time counts for the outermost timed call only (a head's layers
    count for the head, not again for themselves); on CUDA each boundary synchronises."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth = 0
        self._start = 0.0

    def enter(self) -> None:
        if self._depth == 0:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self._start = time.perf_counter()
        self._depth += 1

    def leave(self, stage: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.seconds[stage] += time.perf_counter() - self._start

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            self.enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave(stage)
        return timed

    def hook(self, stage: str, module: torch.nn.Module) -> None:
        module.register_forward_pre_hook(lambda *_: self.enter())
        module.register_forward_hook(lambda *_: self.leave(stage))


def instrument(model: Detector, timer: Timer) -> None:
    """Time every sub-module (under its top-level name: backbone, neck, rpn, box_head, ...), the family's
    post-processing steps, proposal selection, preprocessing and result packing."""
    for name, module in model.named_modules():
        if name:
            timer.hook(name.split(".")[0], module)
    family = importlib.import_module(type(model).__module__)
    for attribute, stage in STEPS.items():
        if hasattr(family, attribute):
            setattr(family, attribute, timer.wrap(stage, getattr(family, attribute)))
    ProposalSelector.__call__ = timer.wrap("proposal selection + NMS", ProposalSelector.__call__)
    engine.preprocess = timer.wrap("preprocess (upload, resize, normalise)", engine.preprocess)
    model.make_detections = timer.wrap("result packing (clip, RLE encode)", model.make_detections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(480, 640), metavar=("H", "W"))
    args = parser.parse_args()
    model = get_spec(args.model).build().to(args.device)
    model.dtype = getattr(torch, args.dtype)
    clip = frames(args.frames + 1, *args.size)
    run = runner(model, 1)
    run(clip[:1])  # warm-up, before any timing
    timer = Timer(model.device)
    instrument(model, timer)
    start = time.perf_counter()
    run(clip[1:])
    total = time.perf_counter() - start
    print(f"{args.model}: torch {torch.__version__}, {args.device}, {args.dtype}, {args.frames} frames of "
          f"{args.size[0]}x{args.size[1]}, {1000 * total / args.frames:.0f} ms per frame\n")
    print("| stage | ms per frame | share |\n|---|---|---|")
    rows = sorted(timer.seconds.items(), key=lambda item: -item[1])
    rest = max(total - sum(timer.seconds.values()), 0.0)
    for stage, seconds in rows + [("other (rest of forward, decoding)", rest)]:
        print(f"| {stage} | {1000 * seconds / args.frames:.1f} | {100 * seconds / total:.0f}% |")


if __name__ == "__main__":
    main()
