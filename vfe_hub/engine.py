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
from PIL import Image

from .errors import MissingDependencyError
from .io import Frame
from .layers import nms
from .registry import Preprocess
from .structures import FrameInfo, ImageBatch


def resized_size(height: int, width: int, rule: Preprocess) -> tuple[int, int]:
    """``(h, w)`` after the original's size rule (:class:`~vfe_hub.registry.Preprocess`): mmcv's keep-ratio rescale
    ``s = min(max_size / long, min_size / short)``, ``int(x * s + 0.5)``; maskrcnn-benchmark's ``Resize.get_size``;
    or detectron2's ``ResizeShortestEdge.get_output_shape``."""
    if rule.style == "maskrcnn_benchmark":
        return _maskrcnn_benchmark_size(height, width, rule.min_size, rule.max_size)
    if rule.style == "detectron2":
        return _detectron2_size(height, width, rule.min_size, rule.max_size)
    s = min(rule.max_size / max(height, width), rule.min_size / min(height, width))
    return int(height * s + 0.5), int(width * s + 0.5)


def _detectron2_size(height: int, width: int, size: int, max_size: int) -> tuple[int, int]:
    scale = size * 1.0 / min(height, width)
    new_h, new_w = (size * 1.0, scale * width) if height < width else (scale * height, size * 1.0)
    if max(new_h, new_w) > max_size:
        scale = max_size * 1.0 / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


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


def preprocess(frames: Sequence[Frame], rule: Preprocess, device: torch.device, *,
               original: bool = False) -> ImageBatch:
    """Upload the frames' ``(H, W, 3)`` uint8 RGB images, resize (bilinear), normalise and pad them on ``device``.

    The frames must share one padded size (:func:`padded_size`; split a list with :func:`same_padding`): each is
    then padded exactly as it would be alone, so no frame's result depends on the others in the batch.

    ``original=True`` resizes each image on the CPU with the original's own library (``rule.library``:
    :func:`original_resize`), so the network sees the original's input bit for bit. Otherwise images of equal size
    are resized together on ``device``: for ``"cv2"`` torch's bilinear on floats (half-pixel centres, no
    antialiasing: the sampling of ``cv2.INTER_LINEAR`` without its 8-bit rounding; within one grey level of it),
    for ``"pil"`` :func:`pil_bilinear`. Then the channels are reversed to BGR for ``style="maskrcnn_benchmark"``,
    the mean subtracted and the result divided by the std (or multiplied by ``float32(1 / std)``,
    ``rule.std_reciprocal``), and the batch zero-padded (after normalisation) at the bottom and right.
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
    std = torch.tensor(rule.std, dtype=torch.float64).view(1, 3, 1, 1)
    scale = (1 / std).float().to(device) if rule.std_reciprocal else None
    std = std.float().to(device)
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault((im.shape[:2], sizes[i]), []).append(i)
    for ((_, (h, w)), index) in groups.items():
        if original:
            host = torch.from_numpy(np.stack([original_resize(images[i], (h, w), rule.library) for i in index]))
        else:
            host = torch.from_numpy(np.stack([images[i] for i in index]))
        if pin:
            host = host.pin_memory()
        x = host.to(device, non_blocking=True).permute(0, 3, 1, 2)
        if original:
            x = x.float()
        elif rule.library == "pil":
            x = pil_bilinear(x, (h, w)).float()
        else:
            x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False)
        if rule.style == "maskrcnn_benchmark":
            x = x.flip(1)  # BGR
        batch[index, :, :h, :w] = (x - mean) * scale if scale is not None else (x - mean) / std
    scales = [(w / im.shape[1], h / im.shape[0]) for (h, w), im in zip(sizes, images)]
    return ImageBatch(batch, sizes, scales, infos)


def original_resize(image: np.ndarray, size: tuple[int, int], library: str) -> np.ndarray:
    """``image (H, W, 3)`` uint8 resized to ``size = (h, w)`` by the original's library: ``"pil"``
    (``PIL.Image.resize(BILINEAR)``, as maskrcnn-benchmark's ``Resize`` and detectron2's ``ResizeTransform`` call it)
    or ``"cv2"`` (``cv2.resize(INTER_LINEAR)``, as mmcv's ``imresize``; needs OpenCV: ``pip install
    'vfe_hub[original]'``). Images already of that size are returned as they are (maskrcnn-benchmark and mmcv
    resize them to the same size, which changes nothing)."""
    if tuple(image.shape[:2]) == tuple(size):
        return image
    if library == "pil":
        return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
    return opencv().resize(image, (size[1], size[0]), interpolation=opencv().INTER_LINEAR)


def opencv() -> Any:
    """The ``cv2`` module; :class:`~vfe_hub.errors.MissingDependencyError` naming the extra when it is missing."""
    try:
        import cv2
    except ImportError as e:
        raise MissingDependencyError(
            "pipeline='original' resizes as the original's mmcv.imresize does, with OpenCV (cv2), which is not "
            "installed: pip install 'vfe_hub[original]' (opencv-python-headless; any one OpenCV wheel will do), or "
            "use the default pipeline.") from e
    return cv2


def pil_bilinear(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images (B, C, H, W)`` uint8 resized to ``size = (h, w)`` like PIL's ``Image.resize(BILINEAR)``: triangle
    filter widened by the scale when downscaling (antialiasing), 8-bit results.

    On the CPU this is torch's uint8 antialiased kernel, which follows PIL's fixed-point arithmetic closely but not
    exactly: measured on the five scikit-image sample photographs at LST's and GTR's test size, 800 x 1333
    (``python benchmarks/resize_fidelity.py``), 0.16 % of the values (0 to 0.44 % per photograph) differ from PIL
    by one grey level. Other devices have no such kernel: there the two separable passes run in float, horizontal first, each
    rounded to 8 bits as PIL's are (a few values in 1,000 differ by one grey level). ``pipeline="original"``
    resizes with PIL itself (:func:`original_resize`).
    """
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    if images.device.type == "cpu":
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    x = images.float()
    for step in ((x.shape[-2], size[1]), size):
        x = F.interpolate(x, size=step, mode="bilinear", align_corners=False, antialias=True).round().clamp(0, 255)
    return x.to(torch.uint8)


def batches(frames: Sequence[Frame], rule: Preprocess, device: torch.device, *, keep_order: bool,
            original: bool = False) -> Iterator[tuple[list[int], ImageBatch]]:
    """``(positions, batch)`` for the groups of :func:`same_padding`, each preprocessed on ``device`` (``original``:
    resized by the original's library, see :func:`preprocess`)."""
    for index in same_padding(frames, rule, keep_order=keep_order):
        yield index, preprocess([frames[i] for i in index], rule, device, original=original)


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
    pipeline: str

    def __call__(self, batch: ImageBatch) -> list: ...


def arithmetic(model: Runnable) -> Any:
    """The context in which ``model``'s forward (and any post-processing after it) runs: its original's NMS
    arithmetic under ``pipeline="original"`` (:func:`vfe_hub.layers.nms.arithmetic`), exact class-wise NMS
    otherwise."""
    return nms.arithmetic(model.spec.preprocess.nms if model.pipeline == "original" else "exact")


def run(model: Runnable, frames: Iterable[Frame], batch_size: int, bar,
        forward: Callable[[ImageBatch], list] | None = None) -> Iterator:
    """Yield ``model``'s results frame by frame for ``frames`` (:class:`vfe_hub.io.Frame`), in order.

    The contract: results never depend on ``batch_size``. Up to ``batch_size`` frames are decoded (in a background
    thread, overlapping compute) and split into groups of one padded size (:func:`same_padding`), so every frame is
    padded exactly as it would be alone. A stateful model (``model.stateful``: video state, updated frame by frame)
    gets runs of consecutive frames, in order; an image model gets every frame of one padded size in one batch.
    Each group runs under ``torch.inference_mode`` and, for half precision, ``torch.autocast``, through
    ``forward`` (default: the model itself; a video session binds its state). ``model.pipeline == "original"``
    resizes with the original's library and runs its NMS arithmetic (:func:`preprocess`, :func:`arithmetic`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device, dtype, rule = model.device, model.dtype, model.spec.preprocess
    original = model.pipeline == "original"
    forward = forward or model
    autocast = dtype in (torch.float16, torch.bfloat16)
    for group in _prefetch(_batches(frames, batch_size)):
        results: list = [None] * len(group)
        for index, batch in batches(group, rule, device, keep_order=model.stateful, original=original):
            with (torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast),
                  arithmetic(model)):
                for i, result in zip(index, forward(batch)):
                    results[i] = result
        for result in results:
            bar.update(1)
            yield result
