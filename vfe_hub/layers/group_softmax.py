"""Balanced group softmax (BAGS, Li et al., CVPR 2020): class scores from logits split into groups.

The classifier's logits are cut into ``G + 1`` slices: slice 0 has two columns (background, foreground), and
slice ``g >= 1`` has an "others" column followed by the classes of group ``g``. Two tables describe them, as
BAGS's ``label2binlabel.pt`` and ``pred_slice_with0.pt``:

- ``label2binlabel (G + 1, C + 1)`` int: row 0 maps background (label 0) to 0 and every class to 1; row ``g``
  maps a class of group ``g`` to its 1-based position in the group and every other label to 0 ("others");
- ``pred_slice (G + 1, 2)`` int: the ``(start, length)`` of each slice among the logits; lengths ``2`` and
  ``n_g + 1``, the slices contiguous from column 0.

Scores (BAGS's ``_merge_score``): a softmax inside each slice; the background score is ``P_0[:, 0]``; a class at
position ``j`` of group ``g`` scores ``P_0[:, 1] * P_g[:, j]``. The "others" columns are dropped and nothing is
renormalised, so the scores of a row need not sum to 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import VfeHubError
from .precision import float32

#: instance-count bounds of BAGS's four foreground groups: (0, 10), [10, 100), [100, 1000), [1000, inf)
COUNT_BOUNDS = (10, 100, 1000)


class GroupTableError(VfeHubError):
    """Group tables that do not describe a partition of the classes into slices of the classifier."""


def check_group_tables(label2binlabel: torch.Tensor, pred_slice: torch.Tensor, logit_width: int,
                       what: str = "the group tables") -> None:
    """Raise :class:`GroupTableError` unless the tables are consistent with each other and with a classifier of
    ``logit_width`` logits (see the module docstring for what consistent means)."""
    if label2binlabel.dim() != 2 or pred_slice.dim() != 2 or pred_slice.shape != (label2binlabel.shape[0], 2):
        raise GroupTableError(f"{what}: label2binlabel must be (G + 1, C + 1) and pred_slice (G + 1, 2); got "
                              f"{tuple(label2binlabel.shape)} and {tuple(pred_slice.shape)}.")
    table, slices = label2binlabel.long(), pred_slice.long()
    if table[0, 0] != 0 or not bool((table[0, 1:] == 1).all()) or bool((table[1:, 0] != 0).any()):
        raise GroupTableError(f"{what}: row 0 of label2binlabel must map background to 0 and every class to 1, "
                              f"and background must be 'others' (0) in every group.")
    member = table[1:, 1:] > 0
    if not bool((member.sum(0) == 1).all()):
        raise GroupTableError(f"{what}: every class must belong to exactly one group; "
                              f"{int((member.sum(0) != 1).sum())} do not.")
    sizes = member.sum(1)
    for g, row in enumerate(table[1:], start=1):
        if sorted(row[row > 0].tolist()) != list(range(1, int(sizes[g - 1]) + 1)):
            raise GroupTableError(f"{what}: the positions of group {g} are not 1..{int(sizes[g - 1])}.")
    lengths = torch.cat([slices.new_tensor([2]), sizes + 1])
    starts = torch.cumsum(lengths, 0) - lengths
    if not torch.equal(slices[:, 1], lengths) or not torch.equal(slices[:, 0], starts):
        raise GroupTableError(f"{what}: pred_slice {slices.tolist()} does not match the group sizes "
                              f"{sizes.tolist()} (expected {torch.stack([starts, lengths], 1).tolist()}).")
    if int(lengths.sum()) != logit_width:
        raise GroupTableError(f"{what}: the slices cover {int(lengths.sum())} logits but the classifier has "
                              f"{logit_width}; these tables belong to another model or class list.")


def tables_from_groups(members: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(label2binlabel, pred_slice)`` of groups ``1..G`` whose class labels (``1..C``, every class in one group)
    are ``members[g - 1]``, listed in the order of their positions in the group (BAGS's ``get_cate_gs`` lists
    them in the order of the annotation file's categories)."""
    num_classes = sum(len(m) for m in members)
    table = torch.zeros(len(members) + 1, num_classes + 1, dtype=torch.long)
    table[0, 1:] = 1
    for g, labels in enumerate(members, start=1):
        table[g, list(labels)] = torch.arange(1, len(labels) + 1)
    lengths = torch.tensor([2] + [len(m) + 1 for m in members])
    return table, torch.stack([torch.cumsum(lengths, 0) - lengths, lengths], 1)


def groups_from_counts(counts: Sequence[int], bounds: Sequence[int] = COUNT_BOUNDS) -> list[int]:
    """The group (1-based) of each class from its training instance count: group ``k + 1`` holds counts below
    ``bounds[k]`` not in an earlier group, the last group the rest."""
    return [1 + sum(count >= b for b in bounds) for count in counts]


def score_columns(label2binlabel: torch.Tensor, pred_slice: torch.Tensor) -> torch.Tensor:
    """For every class ``c = 1..C`` the column ``(C,)`` of its in-group probability among the logits."""
    table = label2binlabel.long()
    group = table[1:, 1:].argmax(0) + 1  # (C,) each class's group
    position = table[group, torch.arange(1, table.shape[1], device=table.device)]
    return pred_slice.long()[group, 0].to(table.device) + position


@float32("group softmax")
def group_softmax_scores(logits: torch.Tensor, label2binlabel: torch.Tensor, pred_slice: torch.Tensor) -> torch.Tensor:
    """Scores ``(N, C + 1)`` (background first) of ``logits (N, W)`` under the group tables (module docstring),
    computed in float32."""
    probs = torch.empty_like(logits, dtype=torch.float32)
    for start, length in pred_slice.tolist():
        probs[:, start:start + length] = logits[:, start:start + length].float().softmax(dim=1)
    start0 = int(pred_slice[0, 0])
    columns = score_columns(label2binlabel, pred_slice).to(logits.device)
    return torch.cat([probs[:, start0:start0 + 1], probs[:, start0 + 1:start0 + 2] * probs[:, columns]], dim=1)
