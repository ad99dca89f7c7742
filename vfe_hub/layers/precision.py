"""Half precision: the computations that stay float32 when a model runs in float16 or bfloat16.

A model loaded with ``dtype=torch.float16`` or ``torch.bfloat16`` runs under ``torch.autocast``
(:func:`vfe_hub.engine.run`): convolutions and matrix products compute in the half dtype, which is where the speed
is. What turns network outputs into decisions runs in float32: a half dtype keeps 11 (float16) or 8 (bfloat16)
significant bits, so in bfloat16 a box corner at x = 700 px is a multiple of 4 px and thousands of scores tie
exactly. Each such computation is a function or layer marked with :func:`float32` under one of the names of
:data:`OPS`, which says why; autocast is off inside it and its floating-point tensor arguments arrive as float32.

Each registry entry lists the names its model's path enters (``ModelSpec.float32_ops``, shown in the model card);
:func:`trace` records the names a run enters, which the test suite compares with that list.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

#: name -> why it stays float32 (the model cards' wording)
OPS: dict[str, str] = {
    "predictor outputs": (
        "the last layer of every scoring or regressing head (RPN objectness and deltas, box classifiers and "
        "deltas, CenterNet heatmap and distances): rounded to a half dtype, their outputs tie and order at random "
        "in the top-k and NMS that follow (one 1x1 conv or linear layer per head, a negligible cost)"),
    "proposal selection": (
        "sigmoid scores, top-k per level, decoding against the anchors and NMS of the proposals"),
    "box decoding": "box deltas applied to their reference boxes: a bfloat16 corner at 700 px is a multiple of 4 px",
    "RoIAlign": (
        "RoI boxes and the bilinear sampling of RoIAlign (the features are cast up for it; torchvision does the "
        "same under autocast, and its result returns to the half dtype)"),
    "deformable convolution": (
        "the conv that predicts a deformable convolution's offsets (sampling positions, a few channels) and the "
        "bilinear sampling at them (torchvision samples in float32 under CUDA autocast; here on every device): "
        "with bfloat16 offsets, GTR's proposal tower alone moved 1.5 % of the detections"),
    "score threshold and NMS": "score thresholds, class-wise NMS IoUs and the top-N cut of the detections",
    "group softmax": "BAGS's per-group softmax and the merge of the group probabilities into class scores",
    "open-vocabulary classifier": (
        "DetPro's projection into CLIP space, cosine similarities at temperature 0.007 (logits up to 143) and the "
        "fusion of the two branches' probabilities"),
    "mask logits": "LST's class filters and MLP_mask applied to the mask features",
    "mask pasting": "mask probabilities resampled into the image and thresholded",
    "CLIP text tower": (
        "the class embeddings of a vocabulary (once per vocabulary, cached on disk: the cache must not depend on "
        "the dtype a model runs in)"),
    "track association": (
        "the tracking transformer's association logits, per-frame softmax, class gating and the Hungarian "
        "assignment (track ids are decisions; the transformer runs on a few hundred rows per frame)"),
    "amodal code": "the Amodal Expander's sinusoidal code of the modal deltas (frequencies up to 10^2)",
}

_entered: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar("float32_ops", default=None)

Fn = TypeVar("Fn", bound=Callable[..., Any])


def _to_float32(value: Any) -> Any:
    """``value`` with every floating-point tensor of less than 32 bits cast to float32 (also inside lists and
    tuples); anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() and value.element_size() < 4 else value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_to_float32(v) for v in value)
    return value


@contextlib.contextmanager
def _autocast_off() -> Iterator[None]:
    """Autocast disabled on the device types where it is on (entering a CUDA context on a machine without CUDA
    would warn)."""
    with contextlib.ExitStack() as stack:
        for device_type in ("cpu", "cuda"):
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def float32(op: str) -> Callable[[Fn], Fn]:
    """Mark a function as the float32 computation ``op`` (a name of :data:`OPS`): it runs with autocast off, its
    floating-point tensor arguments (also in lists and tuples) cast to float32."""
    if op not in OPS:
        raise ValueError(f"{op!r} is not a float32 op name; add it to vfe_hub.layers.precision.OPS with its reason")

    def decorate(fn: Fn) -> Fn:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            entered = _entered.get()
            if entered is not None:
                entered.add(op)
            return call_in_float32(fn, *args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def call_in_float32(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with autocast off, its floating-point tensor arguments (also in lists and tuples)
    cast to float32."""
    with _autocast_off():
        return fn(*_to_float32(args), **{k: _to_float32(v) for k, v in kwargs.items()})


@contextlib.contextmanager
def trace() -> Iterator[set[str]]:
    """Collect the names of the :func:`float32` computations entered inside the block (into the yielded set)."""
    entered: set[str] = set()
    token = _entered.set(entered)
    try:
        yield entered
    finally:
        _entered.reset(token)


class Float32Linear(nn.Linear):
    """``nn.Linear`` computed in float32 under autocast ("predictor outputs"); same parameters and names."""

    @float32("predictor outputs")
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class Float32Conv2d(nn.Conv2d):
    """``nn.Conv2d`` computed in float32 under autocast ("predictor outputs"); same parameters and names."""

    @float32("predictor outputs")
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias)
