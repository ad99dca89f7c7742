"""The text tower of OpenAI CLIP (ViT-B/32 by default), with CoOp-style learned context for DetPro prompts.

Parameter names equal OpenAI's (``token_embedding.weight``, ``positional_embedding``,
``transformer.resblocks.{i}.{ln_1,attn,ln_2,mlp.c_fc,mlp.c_proj}.*``, ``ln_final.*``, ``text_projection``),
so the text entries of a CLIP checkpoint load with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the activation OpenAI CLIP was trained with (not ``nn.GELU``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class MLP(nn.Module):
    """``c_proj(QuickGELU(c_fc(x)))`` with a 4x wider hidden layer; ``(..., W) -> (..., W)``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.act = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))`` with a causal mask, then ``x + mlp(ln_2(x))``; ``(N, L, W) -> (N, L, W)``."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of :class:`ResidualAttentionBlock` under the name ``resblocks``."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class CLIPTextEncoder(nn.Module):
    """CLIP's text transformer: token ids ``(N, L)`` -> unnormalised text features ``(N, embed_dim)``.

    Token embedding + positional embedding, ``layers`` causal pre-LN blocks with QuickGELU, ``ln_final``, the
    feature at the end-of-text position (the argmax of the token ids, as EOT has the largest id) times
    ``text_projection``. Defaults are ViT-B/32's text tower (about 63M parameters).
    """

    def __init__(self, width: int = 512, layers: int = 12, heads: int = 8, context_length: int = 77,
                 vocab_size: int = 49408, embed_dim: int = 512) -> None:
        super().__init__()
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Text features ``(N, embed_dim)`` of token ids ``(N, L)``, ``L <= context_length``, zero-padded after EOT.

        ``context`` ``(K, width)``: learned context vectors that replace the token embeddings at positions
        ``1..K`` of every row (DetPro / CoOp; the prompt text holds K placeholder words there). Positions after
        the last EOT of the batch are dropped before the transformer: with the causal mask they cannot change
        the EOT features.
        """
        if tokens.dim() != 2 or tokens.shape[1] > self.context_length:
            raise InputError(f"tokens must have shape (N, L), L <= {self.context_length}; got {tuple(tokens.shape)}.")
        eot = tokens.argmax(dim=1)
        keep = int(eot.max()) + 1 if len(tokens) else 1
        x = self.token_embedding(tokens[:, :keep])
        if context is not None:
            k = context.shape[0]
            if context.shape != (k, x.shape[2]) or k + 1 >= keep:
                raise InputError(f"context must have shape (K, {x.shape[2]}) with room for the start token, K "
                                 f"placeholders and EOT; got {tuple(context.shape)} for token rows ending at {keep}.")
            x = torch.cat([x[:, :1], context.to(x).expand(len(x), -1, -1), x[:, k + 1:]], dim=1)
        x = x + self.positional_embedding[:keep]
        mask = torch.ones(keep, keep, dtype=torch.bool, device=x.device).triu(1)
        x = self.ln_final(self.transformer(x, mask))
        return x[torch.arange(len(x), device=x.device), eot] @ self.text_projection
