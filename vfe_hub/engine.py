"""Running a model over frames: batching, device-side preprocessing, autocast, decode/compute overlap, progress.

The batching contract, for every model: **results never depend on how frames are batched.** A model's ``forward``
only ever receives frames that share one padded size (resized, then rounded up to the size divisor), so each
frame is padded exactly as it would be alone: no frame sees another's padding, no anchors cover it, no window
of a transformer straddles it. Batching changes only the float summation order inside batched kernels. Stateful
(video) models receive runs of consecutive frames in order, so their state advances frame by frame; image models
receive all the frames of one padded size together. :func:`batches` is the one place that forms such groups
(also for a video model's reference frames).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .io import Frame
from .registry import Preprocess
from .structures import FrameInfo, ImageBatch


def resized_size(height: int, width: int, rule: Preprocess) -> tuple[int, int]:
    """``(h, w)`` after mmcv's keep-ratio rescale: ``s = min(max_size / long, min_size / short)``, ``int(x * s + 0.5)``;
    or, for ``rule.style == "maskrcnn_benchmark"``, after that code base's ``Resize.get_size`` (see
    :class:`~vfe_hub.registry.Preprocess`)."""
    if rule.style == "maskrcnn_benchmark":
        return _maskrcnn_benchmark_size(height, width, rule.min_size, rule.max_size)
    s = min(rule.max_size / max(height, width), rule.min_size / min(height, width))
    return int(height * s + 0.5), int(width * s + 0.5)


def _maskrcnn_benchmark_size(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > max_size:
        size = int(round(max_size * short / long))
    if min(height, width) == size:
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def padded_size(height: int, width: int, rule: Preprocess) -> tuple[int, int]:
    """``(h, w)`` of an ``(height, width)`` input once resized and rounded up to ``rule.size_divisor``."""
    d = rule.size_divisor
    h, w = resized_size(height, width, rule)
    return -(-h // d) * d, -(-w // d) * d


def same_padding(frames: Sequence[Frame], rule: Preprocess, *, keep_order: bool) -> list[list[int]]:
    """Positions of ``frames`` grouped so that every group shares one padded size.

    With ``keep_order`` the groups are runs of consecutive frames (a stateful model sees the frames in order);
    otherwise all frames of one padded size form one group, in order of first appearance.
    """
    groups: list[tuple[tuple[int, int], list[int]]] = []
    for i, frame in enumerate(frames):
        key = padded_size(*frame.image.shape[:2], rule)
        match = groups[-1:] if keep_order else [g for g in groups if g[0] == key]
        if match and match[0][0] == key:
            match[0][1].append(i)
        else:
            groups.append((key, [i]))
    return [index for _, index in groups]


def preprocess(frames: Sequence[Frame], rule: Preprocess, device: torch.device) -> ImageBatch:
    """Upload the frames' ``(H, W, 3)`` uint8 RGB images, resize (bilinear), normalise and pad them on ``device``.

    The frames must share one padded size (:func:`padded_size`; split a list with :func:`same_padding`): each is
    then padded exactly as it would be alone, so no frame's result depends on the others in the batch.
    The resize is torch's bilinear (half-pixel centres, no antialiasing), the sampling of the original's
    ``cv2.INTER_LINEAR``; cv2's fixed-point uint8 arithmetic can differ by about one grey level. For
    ``rule.style == "maskrcnn_benchmark"`` it is PIL's ``Image.resize(BILINEAR)`` (:func:`pil_bilinear`), then the
    channels are reversed to BGR before the mean and std (given in BGR order) apply.
    Images of equal size are resized together; the result is zero-padded (after normalisation) at the bottom and
    right.
    """
    pin = device.type == "cuda"
    images = [f.image for f in frames]
    padded = {padded_size(*im.shape[:2], rule) for im in images}
    if len(padded) != 1:
        raise ValueError(f"preprocess takes frames of one padded size, got {sorted(padded)}: split them with "
                         "engine.same_padding")
    infos = [FrameInfo(f.name, f.index, f.sequence, f.source, f.image.shape[:2], f.image_id) for f in frames]
    sizes = [resized_size(*im.shape[:2], rule) for im in images]
    [(pad_h, pad_w)] = padded
    batch = torch.zeros(len(images), 3, pad_h, pad_w, device=device)
    mean = torch.tensor(rule.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(rule.std, device=device).view(1, 3, 1, 1)
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault((im.shape[:2], sizes[i]), []).append(i)
    for ((_, (h, w)), index) in groups.items():
        host = torch.from_numpy(np.stack([images[i] for i in index]))
        if pin:
            host = host.pin_memory()
        x = host.to(device, non_blocking=True).permute(0, 3, 1, 2)
        if rule.style == "maskrcnn_benchmark":
            x = pil_bilinear(x, (h, w)).float().flip(1)  # BGR
        else:
            x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False)
        batch[index, :, :h, :w] = (x - mean) / std
    scales = [(w / im.shape[1], h / im.shape[0]) for (h, w), im in zip(sizes, images)]
    return ImageBatch(batch, sizes, scales, infos)


def pil_bilinear(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images (B, C, H, W)`` uint8 resized to ``size = (h, w)`` as PIL's ``Image.resize(BILINEAR)``: triangle
    filter widened by the scale when downscaling (antialiasing), 8-bit results.

    On the CPU this is torch's uint8 antialiased kernel, which follows PIL's fixed-point arithmetic (measured: one
    pixel in 10,000 differs by one grey level). Other devices have no such kernel: there the two separable passes
    run in float, horizontal first, each rounded to 8 bits as PIL's are (about one pixel in 1,000 differs by one
    grey level, a few in 100 for strongly anisotropic scales).
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if images.device.type == "cpu":
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    x = images.float()
    for step in ((x.shape[-2], size[1]), size):
        x = F.interpolate(x, size=step, mode="bilinear", align_corners=False, antialias=True).round().clamp(0, 255)
    return x.to(torch.uint8)


def batches(frames: Sequence[Frame], rule: Preprocess, device: torch.device, *,
            keep_order: bool) -> Iterator[tuple[list[int], ImageBatch]]:
    """``(positions, batch)`` for the groups of :func:`same_padding`, each preprocessed on ``device``."""
    for index in same_padding(frames, rule, keep_order=keep_order):
        yield index, preprocess([frames[i] for i in index], rule, device)


def _prefetch(items: Iterable, size: int = 2) -> Iterator:
    """Iterate ``items`` in a background thread (decoding overlaps compute), re-raising its errors here."""
    q: queue.Queue = queue.Queue(maxsize=size)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as e:  # handed to the consumer
            q.put(e)
        q.put(done)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.01)


def _batches(frames: Iterable, batch_size: int) -> Iterator[list]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class Runnable(Protocol):
    """What :func:`run` needs of a model (a :class:`vfe_hub.Detector`)."""

    spec: Any
    dtype: torch.dtype
    device: torch.device
    stateful: bool

    def __call__(self, batch: ImageBatch) -> list: ...


def run(model: Runnable, frames: Iterable[Frame], batch_size: int, bar,
        forward: Callable[[ImageBatch], list] | None = None) -> Iterator:
    """Yield ``model``'s results frame by frame for ``frames`` (:class:`vfe_hub.io.Frame`), in order.

    The contract: results never depend on ``batch_size``. Up to ``batch_size`` frames are decoded (in a background
    thread, overlapping compute) and split into groups of one padded size (:func:`same_padding`), so every frame is
    padded exactly as it would be alone. A stateful model (``model.stateful``: video state, updated frame by frame)
    gets runs of consecutive frames, in order; an image model gets every frame of one padded size in one batch.
    Each group runs under ``torch.inference_mode`` and, for half precision, ``torch.autocast``, through
    ``forward`` (default: the model itself; a video session binds its state).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device, dtype, rule = model.device, model.dtype, model.spec.preprocess
    forward = forward or model
    autocast = dtype in (torch.float16, torch.bfloat16)
    for group in _prefetch(_batches(frames, batch_size)):
        results: list = [None] * len(group)
        for index, batch in batches(group, rule, device, keep_order=model.stateful):
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
                for i, result in zip(index, forward(batch)):
                    results[i] = result
        for result in results:
            bar.update(1)
            yield result
