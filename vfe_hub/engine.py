"""Running a model over frames: batching, device-side preprocessing, autocast, decode/compute overlap, progress."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .io import Frame
from .registry import Preprocess
from .structures import FrameInfo, ImageBatch


def resized_size(height: int, width: int, rule: Preprocess) -> tuple[int, int]:
    """``(h, w)`` after mmcv's keep-ratio rescale: ``s = min(max_size / long, min_size / short)``, ``int(x * s + 0.5)``."""
    s = min(rule.max_size / max(height, width), rule.min_size / min(height, width))
    return int(height * s + 0.5), int(width * s + 0.5)


def preprocess(frames: Sequence[Frame], rule: Preprocess, device: torch.device) -> ImageBatch:
    """Upload the frames' ``(H, W, 3)`` uint8 RGB images, resize (bilinear), normalise and pad them on ``device``.

    The resize is torch's bilinear (half-pixel centres, no antialiasing), the sampling of the original's
    ``cv2.INTER_LINEAR``; cv2's fixed-point uint8 arithmetic can differ by about one grey level.
    Images of equal size are resized together; the batch is zero-padded (after normalisation) at the bottom and
    right to the largest size rounded up to ``rule.size_divisor``.
    """
    pin = device.type == "cuda"
    images = [f.image for f in frames]
    infos = [FrameInfo(f.name, f.index, f.sequence, f.source, f.image.shape[:2], f.image_id) for f in frames]
    sizes = [resized_size(*im.shape[:2], rule) for im in images]
    pad_h = -(-max(h for h, _ in sizes) // rule.size_divisor) * rule.size_divisor
    pad_w = -(-max(w for _, w in sizes) // rule.size_divisor) * rule.size_divisor
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
        x = host.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        batch[index, :, :h, :w] = (x - mean) / std
    scales = [(w / im.shape[1], h / im.shape[0]) for (h, w), im in zip(sizes, images)]
    return ImageBatch(batch, sizes, scales, infos)


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


def run(model: Callable[[ImageBatch], list], frames: Iterable, rule: Preprocess, device: torch.device,
        dtype: torch.dtype, batch_size: int, bar) -> Iterator:
    """Yield ``model``'s results frame by frame for ``frames`` (:class:`vfe_hub.io.Frame`), in order.

    ``batch_size`` frames are preprocessed and run together under ``torch.inference_mode`` and, for half
    precision, ``torch.autocast``; decoding of the next batch runs in a background thread meanwhile.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    autocast = dtype in (torch.float16, torch.bfloat16)
    for group in _prefetch(_batches(frames, batch_size)):
        batch = preprocess(group, rule, device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
            results = model(batch)
        for result in results:
            bar.update(1)
            yield result
