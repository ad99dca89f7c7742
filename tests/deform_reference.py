"""Deformable convolution written out by hand (float64 references for the deformable layers' tests)."""
from __future__ import annotations

import torch


def bilinear_zero_padded(image: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``image (C, H, W)`` sampled at real positions ``y, x (...)``: the four neighbours weighted bilinearly, a
    neighbour outside the map counting as zero. Returns ``(C, ...)``."""
    _, h, w = image.shape
    y0, x0 = y.floor(), x.floor()
    out = 0
    for cy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for cx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            inside = (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
            values = image[:, cy.clamp(0, h - 1).long(), cx.clamp(0, w - 1).long()]
            out = out + values * (wy * wx * inside)
    return out


def deform_conv_reference(x, offset, weight, bias, stride, padding, dilation, mask=None):
    """Output pixel ``p``, tap ``(i, j)`` (``t = i * k + j``): the input at ``p * stride - padding + dilation * (i, j)
    + (offset[2t], offset[2t + 1])``, times ``mask[t]``, times ``weight[:, :, i, j]``, summed, plus ``bias``."""
    b, _, h_out, w_out = offset.shape
    k = weight.shape[-1]
    oy = torch.arange(h_out, dtype=x.dtype)[:, None] * stride - padding
    ox = torch.arange(w_out, dtype=x.dtype)[None, :] * stride - padding
    out = torch.zeros(b, weight.shape[0], h_out, w_out, dtype=x.dtype)
    for n in range(b):
        for i in range(k):
            for j in range(k):
                t = i * k + j
                sampled = bilinear_zero_padded(x[n], oy + dilation * i + offset[n, 2 * t],
                                               ox + dilation * j + offset[n, 2 * t + 1])
                if mask is not None:
                    sampled = sampled * mask[n, t]
                out[n] += torch.einsum("oc,chw->ohw", weight[:, :, i, j], sampled)
    return out if bias is None else out + bias[:, None, None]
