"""The Amodal Expander (TAO-Amodal): a small head that turns a cascade stage's modal box deltas into amodal ones.

For every RoI of a stage it reads the stage's RoI embedding (the box head's last fc output, 1024-d) and a
sinusoidal code of the stage's four predicted deltas (the ``bbox_pred`` output, i.e. Box2BoxTransform deltas
before division by the stage's weights), and adds an MLP's output to those deltas::

    amodal_deltas = modal_deltas + expand_modal_box([features (1024), sinusoidal_code(modal_deltas) (256)])

The amodal box is then decoded by the stage's own coder from the box the stage pooled, and never clipped, so it may
leave the image. The released models share one expander among the three stages (``CASCADE_SHARE_WEIGHTS``);
:class:`.cascade.CascadeBoxHeads` applies it with ``expander=``, feeding the next stage the modal boxes as before.
"""
from __future__ import annotations

import torch
from torch import nn

from .association import MLP
from .precision import float32


@float32("amodal code")
def sinusoidal_code(deltas: torch.Tensor, dim_per_value: int = 64, base: float = 10.0) -> torch.Tensor:
    """The expander's code of ``deltas (N, 4)``: ``(N, 4 * dim_per_value)``, float32 (float64 for float64 deltas).

    With ``J = dim_per_value // 2`` frequencies ``f_j = base ** (2j / dim_per_value)`` (``10 ** (j / 32)`` for the
    defaults, ``j = 0..J-1``), the values are interleaved with period 8: column ``8j + 2v`` is
    ``sin(deltas[:, v] / f_j)`` and column ``8j + 2v + 1`` is ``cos(deltas[:, v] / f_j)``, ``v = 0..3``.
    """
    freqs = base ** (torch.arange(0, dim_per_value, 2, dtype=torch.float64) / dim_per_value)
    angles = deltas[:, None, :] / freqs.to(deltas.device, deltas.dtype)[None, :, None]  # (N, J, 4)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # column j * 8 + v * 2 + (0 sin, 1 cos)


class AmodalExpander(nn.Module):
    """``forward(features (N, feature_dim), modal_deltas (N, 4)) -> amodal_deltas (N, 4)``.

    ``expand_modal_box`` = Linear(feature_dim + 4 * code_dim_per_value -> hidden_dim), ReLU, Dropout(dropout),
    Linear(hidden_dim -> 4), on ``[features, sinusoidal_code(modal_deltas)]`` in that order; the code is computed in
    float32 (float64 for float64 input) and cast to the features' dtype. Parameter names:
    ``expand_modal_box.layers.{0,1}.{weight,bias}`` (the original's ``roi_heads.amodal_expander.{k}.`` prefix,
    whatever the stage ``k``: its three entries are one module).
    """

    def __init__(self, feature_dim: int = 1024, hidden_dim: int = 256, code_dim_per_value: int = 64,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.code_dim_per_value = code_dim_per_value
        self.expand_modal_box = MLP(hidden_dim, 2, dropout, in_dim=feature_dim + 4 * code_dim_per_value, out_dim=4)

    def forward(self, features: torch.Tensor, modal_deltas: torch.Tensor) -> torch.Tensor:
        code = sinusoidal_code(modal_deltas, self.code_dim_per_value)
        return modal_deltas + self.expand_modal_box(torch.cat([features, code.to(features.dtype)], dim=1))
