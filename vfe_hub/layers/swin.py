"""Swin Transformer backbone (mmdetection v2 layout) with optional prompt tokens (STPN's spatio-temporal prompts).

A plain Swin and a prompted Swin are the same module: ``forward(images)`` runs plain Swin and
``forward(images, prompts)`` prepends ``P`` prompt tokens of ``embed_dim`` channels per image. With prompts:

* every window attends over ``P + window**2`` tokens (the image's prompts prepended to each of its windows), the
  relative position bias and the shift mask are padded with **zeros** for prompt rows and columns, and a prompt's new
  value is the **mean over the image's windows** of its per-window outputs;
* layer norms and MLPs apply to prompt tokens as to patch tokens;
* patch merging concatenates each prompt 4 times along channels (``[p, p, p, p]``) before the shared norm and
  reduction, while patches are merged in the channel order of ``nn.Unfold(2, stride=2)`` (``c * 4 + 2 * dy + dx``),
  the order the released weights were trained with (upstream Swin concatenates the four positions block-wise);
* stage outputs drop the prompt tokens.

Tensors are channels-last token sequences inside the network: ``(B, P + H * W, C)`` with prompts first, patches in
row-major order. Windows never straddle images, so prompts are handled per image and any batch size is exact.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, H, W, C)`` with ``H, W`` multiples of ``window`` -> ``(B, nW, window**2, C)``, windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, -1, window * window, c)


def _window_reverse(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_window_partition`: ``(B, nW, window**2, C)`` -> ``(B, H, W, C)``."""
    b, c = windows.shape[0], windows.shape[-1]
    x = windows.view(b, h // window, w // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def _shift_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """``(nW, window**2, window**2)``: 0 between tokens of the same region of the shifted map, -100 otherwise."""
    regions = torch.zeros(1, h, w, 1, device=device)
    bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (hs, ws) in enumerate((hs, ws) for hs in bounds for ws in bounds):
        regions[:, hs, ws, :] = i
    ids = _window_partition(regions, window)[0, ..., 0]
    return (ids[:, None, :] != ids[:, :, None]).float() * -100.0


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows, with a learned relative position bias.

    ``relative_position_bias_table`` is ``((2 * window - 1)**2, heads)``; the persistent buffer
    ``relative_position_index (window**2, window**2)`` indexes it with ``(dy + window - 1) * (2 * window - 1) +
    dx + window - 1``. Scale ``head_dim ** -0.5``.
    """

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = coords[:, :, None] - coords[:, None, :] + window - 1
        self.register_buffer("relative_position_index", rel[0] * (2 * window - 1) + rel[1])
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def bias(self, prompts: int) -> torch.Tensor:
        """``(heads, P + N, P + N)``: the relative position bias, zero in the rows and columns of ``P`` prompts."""
        n = self.relative_position_index.shape[0]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        return F.pad(bias.permute(2, 0, 1), (prompts, 0, prompts, 0))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``x (..., L, C)`` token groups attended to independently; ``bias`` broadcasts to ``(..., heads, L, L)``."""
        *lead, length, dim = x.shape
        qkv = self.qkv(x).view(*lead, length, 3, self.heads, dim // self.heads).movedim(-3, 0).transpose(-2, -3)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=bias.to(qkv.dtype))
        return self.proj(out.transpose(-2, -3).reshape(*lead, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm block: ``x = x + (S)W-MSA(LN(x)); x = x + MLP(LN(x))``; odd blocks shift windows by ``window // 2``."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _attend(self, x: torch.Tensor, size: tuple[int, int], prompts: int) -> torch.Tensor:
        b, _, c = x.shape
        h, w = size
        p, patches = x[:, :prompts], x[:, prompts:].view(b, h, w, c)
        win = self.window
        patches = F.pad(patches, (0, 0, 0, -w % win, 0, -h % win))  # after the norm, and not masked as keys
        hp, wp = patches.shape[1:3]
        bias = self.attn.bias(prompts)
        if self.shift:
            patches = torch.roll(patches, (-self.shift, -self.shift), dims=(1, 2))
            mask = _shift_mask(hp, wp, win, self.shift, x.device)
            bias = bias + F.pad(mask, (prompts, 0, prompts, 0))[:, None]
        windows = _window_partition(patches, win)  # (B, nW, win*win, C)
        nw = windows.shape[1]
        windows = torch.cat([p[:, None].expand(-1, nw, -1, -1), windows], dim=2)
        out = self.attn(windows, bias)
        patches = _window_reverse(out[:, :, prompts:], win, hp, wp)
        if self.shift:
            patches = torch.roll(patches, (self.shift, self.shift), dims=(1, 2))
        patches = patches[:, :h, :w].reshape(b, h * w, c)
        return torch.cat([out[:, :, :prompts].mean(dim=1), patches], dim=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int], prompts: int) -> torch.Tensor:
        """``x (B, P + H * W, C)`` -> same shape; ``size = (H, W)``, ``prompts = P``."""
        x = x + self._attend(self.norm1(x), size, prompts)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 patch merging: ``(B, P + H * W, C)`` -> ``(B, P + ceil(H/2) * ceil(W/2), 2C)`` (module docstring)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, size: tuple[int, int], prompts: int) -> tuple[torch.Tensor, tuple[int, int]]:
        b, _, c = x.shape
        h, w = size
        patches = F.pad(x[:, prompts:].view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        h2, w2 = patches.shape[1] // 2, patches.shape[2] // 2
        patches = patches.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h2 * w2, 4 * c)
        x = torch.cat([x[:, :prompts].repeat(1, 1, 4), patches], dim=1)
        return self.reduction(self.norm(x)), (h2, w2)


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, heads, window, shift=window // 2 if i % 2 else 0)
                                    for i in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None


class PatchEmbed(nn.Module):
    """``patch x patch`` conv (stride ``patch``, inputs zero-padded bottom/right to a multiple) + LayerNorm."""

    def __init__(self, dim: int, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.projection = nn.Conv2d(3, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        h, w = images.shape[-2:]
        x = self.projection(F.pad(images, (0, -w % self.patch, 0, -h % self.patch)))
        return self.norm(x.flatten(2).transpose(1, 2)), tuple(x.shape[-2:])


class SwinTransformer(nn.Module):
    """Swin backbone returning the normalised output of every stage: ``[(B, dim * 2**i, H / 2**(i+2), W / 2**(i+2))]``.

    Input ``(B, 3, H, W)`` normalised RGB. Defaults are Swin-T (96, depths 2-2-6-2, heads 3-6-12-24, window 7).
    ``prompts (B, P, dim)`` (or ``(P, dim)`` shared by the batch) switch on the prompt path (module docstring).
    """

    def __init__(self, dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2), heads: Sequence[int] = (3, 6, 12, 24),
                 window: int = 7) -> None:
        super().__init__()
        self.dim = dim
        self.patch_embed = PatchEmbed(dim)
        self.stages = nn.ModuleList(SwinStage(dim * 2**i, d, h, window, downsample=i < len(depths) - 1)
                                    for i, (d, h) in enumerate(zip(depths, heads)))
        self.norms = nn.ModuleList(nn.LayerNorm(dim * 2**i) for i in range(len(depths)))

    def forward(self, images: torch.Tensor, prompts: torch.Tensor | None = None) -> list[torch.Tensor]:
        x, size = self.patch_embed(images)
        p = 0
        if prompts is not None:
            if prompts.shape[-1] != self.dim or prompts.dim() not in (2, 3):
                raise ValueError(f"prompts must be (P, {self.dim}) or (B, P, {self.dim}), got {tuple(prompts.shape)}")
            p = prompts.shape[-2]
            x = torch.cat([prompts.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        outs = []
        for stage, norm in zip(self.stages, self.norms):
            for block in stage.blocks:
                x = block(x, size, p)
            y = norm(x[:, p:])  # the norm is per token: dropping the prompts first is the same
            outs.append(y.transpose(1, 2).reshape(x.shape[0], -1, *size))
            if stage.downsample is not None:
                x, size = stage.downsample(x, size, p)
        return outs
