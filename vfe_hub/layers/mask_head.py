"""Mask R-CNN's FCN mask head and the pasting of its RoI masks into the image (mmdetection v2 conventions)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .precision import float32

PASTE_PIXELS = 1 << 26  # default bound on instances x pixels sampled at once by paste_masks (~0.8 GB working set)


class FCNMaskHead(nn.Module):
    """``num_convs`` x [conv3x3 + ReLU], a stride-2 2x2 transposed conv + ReLU, then 1x1 mask logits.

    Maps RoI features ``(K, in_channels, S, S)`` (mmdetection pools ``S = 14``) to logits
    ``(K, num_classes, 2S, 2S)``; ``num_classes = 1`` is the class-agnostic head. The logits cover the RoI box
    exactly: mask pixel ``(i, j)`` of ``M = 2S`` is centred at ``x0 + (j + 0.5) * (x1 - x0) / M`` (see
    :func:`paste_masks`). ``num_classes=None`` builds no ``conv_logits``: the head then ends at :meth:`features`
    (the logits come from elsewhere, e.g. class filters made by a weight transfer).
    """

    def __init__(self, in_channels: int = 256, conv_channels: int = 256, num_convs: int = 4,
                 num_classes: int | None = 1) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(in_channels if i == 0 else conv_channels, conv_channels, 3, padding=1)
                                   for i in range(num_convs))
        self.upsample = nn.ConvTranspose2d(conv_channels if num_convs else in_channels, conv_channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(conv_channels, num_classes, 1) if num_classes is not None else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """RoI features ``(K, in_channels, S, S)`` -> upsampled features ``(K, conv_channels, 2S, 2S)`` (after ReLU)."""
        for conv in self.convs:
            x = torch.relu(conv(x))
        return torch.relu(self.upsample(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_logits(self.features(x))


@float32("mask pasting")
def paste_masks(probs: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], threshold: float = 0.5,
                max_pixels: int = PASTE_PIXELS) -> torch.Tensor:
    """Binary image masks ``(K, h, w)`` from RoI mask probabilities ``probs (K, M, M)`` and their ``boxes (K, 4)``.

    ``boxes`` are ``xyxy`` in pixels of the output image of ``image_size = (h, w)``, where pixel ``(y, x)`` is the
    unit square with centre ``(x + 0.5, y + 0.5)``. The ``M x M`` grid is stretched over the box (its cells' edges
    on the box's edges) and bilinearly sampled at the pixel centres, zero outside the grid (``grid_sample`` with
    ``align_corners=False``); a pixel is set where the sample is ``>= threshold``. As mmdetection's
    ``_do_paste_mask``, the arithmetic runs in float32, a box edge of zero extent samples the grid's centre line,
    and each mask is sampled only within its box widened to whole pixels plus one pixel on each side (mmdetection's
    ``skip_empty`` window); beyond that window a sample of probabilities in ``[0, 1]`` is below 0.5, so for
    ``threshold >= 0.5`` the masks equal a paste over the whole image. Instances are sampled in chunks of at most
    ``max(1, max_pixels // (h * w))`` on the device of ``probs``.
    """
    h, w = image_size
    num = probs.shape[0]
    out = torch.zeros(num, h, w, dtype=torch.bool, device=probs.device)
    if num == 0 or h == 0 or w == 0:
        return out
    probs = probs.float()[:, None]
    boxes = boxes.to(device=probs.device, dtype=torch.float32)
    lows = (boxes[:, :2].floor() - 1).clamp(min=0).long()  # (K, 2) first x, y of each window
    highs = torch.minimum(boxes[:, 2:].ceil() + 1, boxes.new_tensor([w, h])).long()  # (K, 2) end x, y
    chunk = max(1, max_pixels // (h * w))
    for start in range(0, num, chunk):
        part = slice(start, start + chunk)
        (x_lo, y_lo), (x_hi, y_hi) = lows[part].min(0).values.tolist(), highs[part].max(0).values.tolist()
        if x_hi <= x_lo or y_hi <= y_lo:
            continue
        xs = torch.arange(x_lo, x_hi, device=probs.device)
        ys = torch.arange(y_lo, y_hi, device=probs.device)
        gx = _grid_coordinates(xs, boxes[part, 0:1], boxes[part, 2:3])  # (k, wc)
        gy = _grid_coordinates(ys, boxes[part, 1:2], boxes[part, 3:4])  # (k, hc)
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=3)
        sampled = F.grid_sample(probs[part], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
        in_x = (xs >= lows[part, 0:1]) & (xs < highs[part, 0:1])
        in_y = (ys >= lows[part, 1:2]) & (ys < highs[part, 1:2])
        out[part, y_lo:y_hi, x_lo:x_hi] = (sampled >= threshold) & in_y[:, :, None] & in_x[:, None, :]
    return out


def _grid_coordinates(pixels: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``grid_sample`` coordinates ``(k, n)`` of the centres of integer ``pixels (n,)``, ``[low, high]`` -> ``[-1, 1]``.

    ``low, high (k, 1)``; a zero-extent box divides by zero, and the resulting infinities are set to 0 (the grid's
    centre line).
    """
    coords = ((pixels.float() + 0.5) - low) / (high - low) * 2 - 1
    return coords.masked_fill(coords.isinf(), 0.0)


@float32("mask pasting")
def paste_masks_padded(probs: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                       threshold: float = 0.5, padding: int = 1) -> torch.Tensor:
    """maskrcnn-benchmark's ``Masker``: binary image masks ``(K, h, w)`` from ``probs (K, M, M)`` and
    pixel-inclusive ``boxes (K, 4)`` in pixels of the output image.

    Each ``M x M`` map is zero-padded by ``padding`` cells, its box widened about the centre by ``(M + 2p) / M``
    and truncated to integers; the padded map is bilinearly resized (``align_corners=False``) onto the
    ``x2 - x1 + 1`` by ``y2 - y1 + 1`` pixels of that box and thresholded (``> threshold``). That resize samples
    the map at the pixel centres of the integer box, which is :func:`paste_masks` over the box's pixel edges
    ``[x1, x2 + 1]`` (the samples differ only in float rounding of their positions). As in ``paste_mask_in_image``,
    a box that truncation leaves inverted (``x2 + 1 <= x1`` or ``y2 + 1 <= y1``: narrower than a pixel) pastes
    nothing: its mask is empty.
    """
    if probs.shape[0] == 0:
        return paste_masks(probs, boxes, image_size, threshold)
    m = probs.shape[-1]
    padded = F.pad(probs.float(), (padding,) * 4)
    scale = (m + 2 * padding) / m
    boxes = boxes.float()
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    centre = (boxes[:, 2:] + boxes[:, :2]) * 0.5
    wide = torch.cat([centre - half, centre + half], dim=1).to(torch.int32).float()
    empty = (wide[:, 2:] + 1 <= wide[:, :2]).any(1)  # the original's paste slice [x1, x2 + 1) is empty
    wide[:, 2:] = torch.maximum(wide[:, 2:] + 1, wide[:, :2] + 1)  # pixel edges; the resize takes at least one
    above = torch.nextafter(torch.tensor(threshold, dtype=torch.float32), torch.tensor(2.0)).item()  # ">" in float32
    return paste_masks(padded, wide, image_size, above) & ~empty[:, None, None].to(padded.device)


@float32("mask pasting")
def paste_masks_inclusive(probs: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int],
                          threshold: float = 0.5) -> torch.Tensor:
    """mmdetection v1's mask pasting: binary image masks ``(K, h, w)`` from ``probs (K, M, M)`` and
    pixel-inclusive ``boxes (K, 4)`` in pixels of the output image of ``image_size = (h, w)``.

    Each box is truncated to integers; its ``x2 - x1 + 1`` by ``y2 - y1 + 1`` pixels (at least one) receive the
    ``M x M`` map resized bilinearly (``align_corners=False``, edge values repeated: OpenCV's ``INTER_LINEAR``,
    which the original calls through ``mmcv.imresize``) and thresholded with ``> threshold``; the parts outside
    the image are cut off.
    """
    h, w = image_size
    out = torch.zeros(probs.shape[0], h, w, dtype=torch.bool, device=probs.device)
    for k, (x1, y1, x2, y2) in enumerate(boxes.float().trunc().long().tolist()):
        bw, bh = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        crop = F.interpolate(probs[k].float()[None, None], size=(bh, bw), mode="bilinear", align_corners=False)[0, 0]
        top, left = max(y1, 0), max(x1, 0)
        bottom, right = min(y1 + bh, h), min(x1 + bw, w)
        if bottom > top and right > left:
            out[k, top:bottom, left:right] = crop[top - y1:bottom - y1, left - x1:right - x1] > threshold
    return out
