"""GTR's association: a transformer over the detections of a window of frames and the per-frame activation.

The re-ID features it reads come from the RoI features by :class:`.box_head.ConvFCBoxHead` with
``num_classes=None, with_reg=False`` (``fcs.0``, ``fcs.1``: 2 x [fc 1024 + ReLU]); no other module is needed.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class _FeedForwardLayer(nn.Module):
    """The feed-forward half of a post-norm transformer layer without norms: ``x + linear2(relu(linear1(x)))``,
    dropout after the ReLU and on the residual branch (training only)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x)))))


class EncoderLayer(_FeedForwardLayer):
    """``x + self_attn(x, x, x)``, then the feed-forward block; ``x (N, D)`` one sequence."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__(dim, ffn_dim, dropout)
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(x + self.dropout(self.self_attn(x, x, x, need_weights=False)[0]))


class DecoderLayer(_FeedForwardLayer):
    """No self-attention: ``x + multihead_attn(x, memory, memory)``, then the feed-forward block."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__(dim, ffn_dim, dropout)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, dropout=dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(x + self.dropout(self.multihead_attn(x, memory, memory, need_weights=False)[0]))


class MLP(nn.Module):
    """``layers.{i}`` Linear layers, ReLU (then dropout) between them, none after the last; ``in_dim -> dim -> ...
    -> out_dim`` (both ``dim`` unless given)."""

    def __init__(self, dim: int, num_layers: int, dropout: float, in_dim: int | None = None,
                 out_dim: int | None = None) -> None:
        super().__init__()
        sizes = [in_dim or dim] + [dim] * (num_layers - 1) + [out_dim or dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = self.dropout(F.relu(layer(x)))
        return self.layers[-1](x)


class TrackingTransformer(nn.Module):
    """GTR's Global Tracking Transformer and association head (``ATTWeightHead``), for inference.

    DETR's post-norm layers with every LayerNorm an identity (GTR's ``NORM False``), no positional or time
    embedding: the encoder (``num_encoder_layers`` x [self-attention, FFN]) runs over the features of all
    detections of the window as one sequence; the decoder (``num_decoder_layers`` x [cross-attention to the
    encoder output, FFN], no self-attention) starts from the query detections' input features. Then
    ``logits = q_proj(decoder output) @ k_proj(encoder output)^T``, unscaled. Attention has ``heads`` heads; FFNs
    are ``dim -> dim -> dim`` with ReLU; the MLPs are Linear-ReLU-Linear; dropout acts only in training.

    Parameter names (the original's ``roi_heads.transformer.*`` and ``roi_heads.asso_predictor.*`` 1:1):
    ``encoder.layers.{i}.self_attn.{in_proj_weight,in_proj_bias,out_proj.weight,out_proj.bias}``,
    ``encoder.layers.{i}.linear{1,2}``, ``decoder.layers.{i}.multihead_attn.*``, ``decoder.layers.{i}.linear{1,2}``,
    ``q_proj.layers.{0,1}``, ``k_proj.layers.{0,1}``.
    """

    def __init__(self, dim: int = 1024, heads: int = 8, num_encoder_layers: int = 1, num_decoder_layers: int = 1,
                 num_mlp_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = nn.ModuleDict({"layers": nn.ModuleList(
            EncoderLayer(dim, heads, dim, dropout) for _ in range(num_encoder_layers))})
        self.decoder = nn.ModuleDict({"layers": nn.ModuleList(
            DecoderLayer(dim, heads, dim, dropout) for _ in range(num_decoder_layers))})
        self.q_proj = MLP(dim, num_mlp_layers, dropout)
        self.k_proj = MLP(dim, num_mlp_layers, dropout)

    def forward(self, features: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Association logits ``(M, N)`` of ``query (M, D)`` (the query frame's detections, which are also rows
        of ``features``) against ``features (N, D)`` (every detection of the window, frames in order); N >= 1."""
        memory = features
        for layer in self.encoder["layers"]:
            memory = layer(memory)
        x = query
        for layer in self.decoder["layers"]:
            x = layer(x, memory)
        return self.q_proj(x) @ self.k_proj(memory).T


def per_frame_softmax(logits: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
    """Association probabilities ``(M, N)`` from ``logits (M, N)`` whose columns are frames of ``counts`` detections
    (in order, summing to N): per row and frame, a softmax over that frame's logits and one more fixed 0.0 logit
    (no match in that frame), whose probability is dropped. Each row of a frame block sums to less than 1."""
    blocks = [torch.cat([block, block.new_zeros(len(block), 1)], dim=1).softmax(dim=1)[:, :-1]
              for block in logits.split(list(counts), dim=1)]
    return torch.cat(blocks, dim=1) if blocks else logits
