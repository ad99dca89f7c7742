"""Relation attention between RoI features (SELSA's aggregator), and the memory bank MAMBA reads it from."""
from __future__ import annotations

import torch
from torch import nn


class RelationAttention(nn.Module):
    """Multi-head attention of queries ``(N, C)`` over references ``(M, C)``, returning ``(N, C)``.

    Per head (``C / heads`` dims): ``softmax_M(q k^T / sqrt(d)) v`` with ``q = query_proj(x)``,
    ``k = key_proj(refs)``, ``v = value_proj(refs)``; heads are concatenated and passed through ``out_proj``.
    No residual, no normalisation, no positional term.
    """

    def __init__(self, channels: int, heads: int = 16) -> None:
        super().__init__()
        self.heads = heads
        self.query_proj = nn.Linear(channels, channels)
        self.key_proj = nn.Linear(channels, channels)
        self.value_proj = nn.Linear(channels, channels)
        self.out_proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
        n, m = x.shape[0], refs.shape[0]
        q = self.query_proj(x).view(n, self.heads, -1).transpose(0, 1)
        k = self.key_proj(refs).view(m, self.heads, -1).permute(1, 2, 0)
        v = self.value_proj(refs).view(m, self.heads, -1).transpose(0, 1)
        weights = (torch.bmm(q, k) / q.shape[-1] ** 0.5).softmax(dim=2)
        return self.out_proj(torch.bmm(weights, v).transpose(0, 1).reshape(n, -1))


class MemoryBank:
    """A bounded store of feature rows with random reads and random replacement (runtime state, not weights).

    ``sample()`` returns every row while fewer than ``key_length`` are stored, else ``key_length`` rows drawn
    without replacement. ``update(rows)`` appends while fewer than ``max_length`` rows are stored (so it may
    overshoot by one update); after that it keeps a random ``len - len(rows)`` of the old rows and appends the
    new ones. Randomness comes from a private generator reseeded by :meth:`reset`, so runs are repeatable.
    """

    def __init__(self, max_length: int = 20000, key_length: int = 2000, seed: int = 0) -> None:
        self.max_length = max_length
        self.key_length = key_length
        self.seed = seed
        self.generator = torch.Generator()
        self.rows: torch.Tensor | None = None
        self.reset()

    def reset(self, rows: torch.Tensor | None = None) -> None:
        """Empty the bank (or fill it with ``rows``) and reseed its generator."""
        self.rows = rows
        self.generator.manual_seed(self.seed)

    def __len__(self) -> int:
        return 0 if self.rows is None else self.rows.shape[0]

    def sample(self) -> torch.Tensor:
        if self.rows is None:
            raise RuntimeError("MemoryBank.sample() before the bank was filled; call reset(rows) first.")
        if len(self) < self.key_length:
            return self.rows
        index = torch.randperm(len(self), generator=self.generator)[: self.key_length]
        return self.rows[index.to(self.rows.device)]

    def update(self, rows: torch.Tensor) -> None:
        if self.rows is None:
            self.rows = rows
        elif len(self) < self.max_length:
            self.rows = torch.cat([self.rows, rows])
        else:
            keep = torch.randperm(len(self), generator=self.generator)[: len(self) - len(rows)]
            self.rows = torch.cat([self.rows[keep.to(self.rows.device)], rows])
