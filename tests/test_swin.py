"""Swin backbone: the plain path equals torchvision's Swin; the prompted path equals a float64 reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision

from vfe_hub.layers.swin import SwinTransformer

WINDOW = 7


def _random_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere (also biases, norms and position tables), so no term is silently zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 if p.dim() < 2 or "relative_position" in name else p.shape[-1] ** -0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if name.endswith("norm.weight") else 0.0))
    return model.eval()


# -- prompts off: torchvision's swin_t is an independent plain Swin ------------------------------------------------

def _torchvision_swin_t_from(ours: SwinTransformer) -> torch.nn.Module:
    """torchvision's swin_t carrying our weights; patch merging is permuted from unfold order (c*4 + 2*dy + dx)
    to torchvision's block order [(0,0), (1,0), (0,1), (1,1)] of C channels each."""
    tv = torchvision.models.swin_t().eval()
    sd = {}
    sd["features.0.0.weight"] = ours.patch_embed.projection.weight
    sd["features.0.0.bias"] = ours.patch_embed.projection.bias
    sd["features.0.2.weight"], sd["features.0.2.bias"] = ours.patch_embed.norm.weight, ours.patch_embed.norm.bias
    for s, stage in enumerate(ours.stages):
        for b, block in enumerate(stage.blocks):
            p = f"features.{2 * s + 1}.{b}."
            sd[p + "norm1.weight"], sd[p + "norm1.bias"] = block.norm1.weight, block.norm1.bias
            sd[p + "norm2.weight"], sd[p + "norm2.bias"] = block.norm2.weight, block.norm2.bias
            sd[p + "attn.relative_position_bias_table"] = block.attn.relative_position_bias_table
            for name in ("qkv", "proj"):
                sd[f"{p}attn.{name}.weight"] = getattr(block.attn, name).weight
                sd[f"{p}attn.{name}.bias"] = getattr(block.attn, name).bias
            sd[p + "mlp.0.weight"], sd[p + "mlp.0.bias"] = block.mlp.fc1.weight, block.mlp.fc1.bias
            sd[p + "mlp.3.weight"], sd[p + "mlp.3.bias"] = block.mlp.fc2.weight, block.mlp.fc2.bias
        if stage.downsample is not None:
            c = stage.downsample.reduction.weight.shape[1] // 4
            order = torch.tensor([ch * 4 + k for k in (0, 2, 1, 3) for ch in range(c)])  # tv block k=(dy,dx) -> ours
            p = f"features.{2 * s + 2}."
            sd[p + "reduction.weight"] = stage.downsample.reduction.weight[:, order]
            sd[p + "norm.weight"] = stage.downsample.norm.weight[order]
            sd[p + "norm.bias"] = stage.downsample.norm.bias[order]
    sd = {k.removeprefix("features."): v for k, v in sd.items()}
    own = tv.features.state_dict()
    assert {k for k in own if k not in sd} == {k for k in own if k.endswith("relative_position_index")}
    tv.features.load_state_dict({**own, **sd}, strict=True)
    return tv


@pytest.mark.slow
def test_plain_path_equals_torchvision_swin_t():
    ours = _random_(SwinTransformer(), seed=0)
    tv = _torchvision_swin_t_from(ours)
    images = torch.randn(2, 3, 256, 288, generator=torch.Generator().manual_seed(1))  # every stage >= 8 x 8 tokens
    with torch.no_grad():
        mine = ours(images)
        x = images
        theirs = []
        for s in range(4):
            x = tv.features[2 * s + 1](tv.features[2 * s](x))  # patch embedding or merging, then the blocks
            theirs.append(ours.norms[s](x).permute(0, 3, 1, 2))
    for a, b in zip(mine, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4)


# -- prompts on: a float64 reference written from the published algorithm -----------------------------------------

def _ln(x, norm):
    return F.layer_norm(x, x.shape[-1:], norm.weight.double(), norm.bias.double(), norm.eps)


def _lin(x, layer):
    return F.linear(x, layer.weight.double(), None if layer.bias is None else layer.bias.double())


def _region_ids(hp: int, wp: int, shift: int) -> torch.Tensor:
    ids = torch.zeros(hp, wp, dtype=torch.long)
    cuts = lambda n: (range(0, n - WINDOW), range(n - WINDOW, n - shift), range(n - shift, n))  # noqa: E731
    for i, (ys, xs) in enumerate((ys, xs) for ys in cuts(hp) for xs in cuts(wp)):
        for y in ys:
            ids[y, list(xs)] = i
    return ids


def _window_attention_ref(x, hw, prompts, block):
    """One image: ``x (P + H*W, C)`` after norm1 -> attention output, window by window."""
    h, w = hw
    c = x.shape[1]
    attn = block.attn
    heads = attn.heads
    p, grid = x[:prompts], x[prompts:].view(h, w, c)
    hp, wp = -(-h // WINDOW) * WINDOW, -(-w // WINDOW) * WINDOW
    grid = F.pad(grid, (0, 0, 0, wp - w, 0, hp - h))
    shift = block.shift
    ids = _region_ids(hp, wp, shift) if shift else torch.zeros(hp, wp, dtype=torch.long)
    grid = torch.roll(grid, (-shift, -shift), (0, 1))
    table = attn.relative_position_bias_table.double()
    out_grid = torch.zeros_like(grid)
    prompt_outs = []
    for wy in range(0, hp, WINDOW):
        for wx in range(0, wp, WINDOW):
            cells = [(wy + i, wx + j) for i in range(WINDOW) for j in range(WINDOW)]
            seq = torch.cat([p, torch.stack([grid[y, xx] for y, xx in cells])])
            n = seq.shape[0]
            bias = torch.zeros(heads, n, n, dtype=torch.float64)
            for a, (ya, xa) in enumerate(cells):
                for b, (yb, xb) in enumerate(cells):
                    index = (ya - yb + WINDOW - 1) * (2 * WINDOW - 1) + (xa - xb + WINDOW - 1)
                    bias[:, prompts + a, prompts + b] = table[index]
                    if ids[ya, xa] != ids[yb, xb]:
                        bias[:, prompts + a, prompts + b] -= 100.0
            q, k, v = _lin(seq, attn.qkv).view(n, 3, heads, -1).permute(1, 2, 0, 3)
            weights = ((q * q.shape[-1] ** -0.5) @ k.transpose(1, 2) + bias).softmax(-1)
            out = _lin((weights @ v).transpose(0, 1).reshape(n, c), attn.proj)
            prompt_outs.append(out[:prompts])
            for (y, xx), row in zip(cells, out[prompts:]):
                out_grid[y, xx] = row
    out_grid = torch.roll(out_grid, (shift, shift), (0, 1))[:h, :w].reshape(h * w, c)
    return torch.cat([torch.stack(prompt_outs).mean(0), out_grid])


def _swin_ref(model: SwinTransformer, image: torch.Tensor, prompts: torch.Tensor) -> list[torch.Tensor]:
    """One image ``(3, H, W)`` and prompts ``(P, C)``, in float64."""
    pe = model.patch_embed
    h, w = image.shape[-2:]
    x = F.conv2d(F.pad(image.double(), (0, -w % 4, 0, -h % 4))[None], pe.projection.weight.double(),
                 pe.projection.bias.double(), stride=4)[0]
    hw = tuple(x.shape[-2:])
    x = torch.cat([prompts.double(), _ln(x.flatten(1).T, pe.norm)])
    n_p = prompts.shape[0]
    outs = []
    for stage, norm in zip(model.stages, model.norms):
        for block in stage.blocks:
            x = x + _window_attention_ref(_ln(x, block.norm1), hw, n_p, block)
            y = _ln(x, block.norm2)
            x = x + _lin(F.gelu(_lin(y, block.mlp.fc1)), block.mlp.fc2)
        outs.append(_ln(x, norm)[n_p:].T.reshape(-1, *hw))
        if stage.downsample is not None:
            c = x.shape[1]
            grid = x[n_p:].T.reshape(1, c, *hw)
            grid = F.pad(grid, (0, hw[1] % 2, 0, hw[0] % 2))
            merged = F.unfold(grid, 2, stride=2)[0].T  # channel order c * 4 + 2 * dy + dx
            hw = (grid.shape[2] // 2, grid.shape[3] // 2)
            p4 = torch.cat([x[:n_p]] * 4, dim=1)
            x = _lin(_ln(torch.cat([p4, merged]), stage.downsample.norm), stage.downsample.reduction)
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("size", [(60, 76), (45, 64)])
def test_prompted_swin_equals_float64_reference(size):
    """Two stages of small width keep the loop-by-loop reference fast; sizes force window padding, odd merges
    and (for 45 x 64) input padding to a multiple of 4. Two images with different prompts check per-image prompts."""
    model = _random_(SwinTransformer(dim=24, depths=(2, 2), heads=(2, 4)), seed=3)
    g = torch.Generator().manual_seed(4)
    images = torch.randn(2, 3, *size, generator=g)
    prompts = torch.randn(2, 5, 24, generator=g)
    with torch.no_grad():
        ours = model(images, prompts)
    for i in range(2):
        ref = _swin_ref(model, images[i], prompts[i])
        for a, b in zip(ours, ref):
            assert a[i].shape == b.shape
            torch.testing.assert_close(a[i].double(), b, atol=2e-4, rtol=1e-4)
    with torch.no_grad():
        plain = model(images)
    assert not torch.allclose(plain[-1], ours[-1], atol=1e-3), "prompts must change the features"


def test_prompts_are_per_image_and_batch_independent():
    model = _random_(SwinTransformer(dim=24, depths=(2, 2), heads=(2, 4)), seed=5)
    g = torch.Generator().manual_seed(6)
    images, prompts = torch.randn(3, 3, 56, 84, generator=g), torch.randn(3, 5, 24, generator=g)
    with torch.no_grad():
        batched = model(images, prompts)
        single = [model(images[i: i + 1], prompts[i]) for i in range(3)]
    for level, out in enumerate(batched):
        torch.testing.assert_close(out, torch.cat([s[level] for s in single]), atol=1e-5, rtol=1e-5)


def test_bad_prompt_shape_is_named():
    model = SwinTransformer(dim=24, depths=(2,), heads=(2,))
    with pytest.raises(ValueError, match=r"\(P, 24\)"):
        model(torch.zeros(1, 3, 28, 28), torch.zeros(5, 96))
