"""Renaming and checking state dicts: the mechanism behind every converter.

Each source code base has one :class:`RenameTable` (``convert/mmdet_v2.py``, ...). :func:`convert_state_dict`
maps every original key through it and fails, listing the offenders, on any key that no rule maps, any model key
left without a tensor, and any shape that differs. Keys a table drops on purpose (``num_batches_tracked``) are
reported, never silently lost.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from ..errors import ConversionError


@dataclass(frozen=True)
class RenameTable:
    """Ordered ``(pattern, replacement)`` regex rules (first full match wins) and patterns of keys dropped on purpose.

    ``aliases``: ``(pattern, replacement)`` rules naming the original key that a matching key must equal (a module
    the original shares between places, saved once per place): checked equal, then dropped. ``optional``: patterns
    of converted keys that belong to a head only some models of the code base have; dropped (and reported) for a
    model that lacks them.
    """

    name: str
    rules: tuple[tuple[str, str], ...]
    drop: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    optional: tuple[str, ...] = ()
    _compiled: list = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._compiled.extend((re.compile(p), r) for p, r in self.rules)

    def dropped(self, key: str) -> bool:
        return any(re.search(p, key) for p in self.drop)

    def alias_of(self, key: str) -> str | None:
        """The original key that ``key`` repeats, if an alias rule matches it."""
        for pattern, replacement in self.aliases:
            if re.fullmatch(pattern, key):
                return re.sub(pattern, replacement, key)
        return None

    def rename(self, key: str) -> str | None:
        for pattern, replacement in self._compiled:
            if pattern.fullmatch(key):
                return pattern.sub(replacement, key)
        return None


def _listing(title: str, items: list[str], limit: int = 20) -> str:
    shown = "\n    ".join(items[:limit])
    more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"  {title} ({len(items)}):\n    {shown}{more}"


def check_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size], what: str) -> None:
    """Raise :class:`ConversionError` unless ``state`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k])}"
                  for k in sorted(set(state) & set(expected)) if tuple(state[k].shape) != tuple(expected[k])]
    problems = [_listing(t, items) for t, items in (("model keys without a tensor", missing),
                                                    ("tensors the model does not have", unexpected),
                                                    ("shape mismatches", mismatched)) if items]
    if problems:
        raise ConversionError(f"{what} does not fit the model:\n" + "\n".join(problems)
                              + "\nIs it the checkpoint of this model (and not of another variant)?")


def convert_state_dict(original: Mapping[str, torch.Tensor], table: RenameTable,
                       expected: Mapping[str, torch.Size]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename ``original`` with ``table`` and check it against the model's ``expected`` shapes.

    Returns ``(state_dict, dropped_keys)``. Raises :class:`ConversionError` listing unmapped original keys,
    two keys mapped to one name, aliases that differ from the tensor they repeat, missing model keys and shape
    mismatches.
    """
    converted: dict[str, torch.Tensor] = {}
    dropped, unmapped, collisions, unequal = [], [], [], []
    for key, tensor in original.items():
        if table.dropped(key):
            dropped.append(key)
            continue
        alias = table.alias_of(key)
        if alias is not None:
            same = alias in original and original[alias].shape == tensor.shape and torch.equal(original[alias], tensor)
            (dropped if same else unequal).append(key if same else f"{key} differs from {alias}")
            continue
        new = table.rename(key)
        if new is None:
            unmapped.append(key)
        elif new in converted:
            collisions.append(f"{key} -> {new}")
        elif new not in expected and any(re.search(p, new) for p in table.optional):
            dropped.append(key)
        else:
            converted[new] = tensor
    problems = [_listing(t, items) for t, items in (("original keys no rule maps", unmapped),
                                                    ("keys mapped twice", collisions),
                                                    ("shared tensors saved with different values", unequal)) if items]
    if problems:
        raise ConversionError(f"The checkpoint does not follow the {table.name} layout:\n" + "\n".join(problems))
    check_state_dict(converted, expected, f"The converted {table.name} checkpoint")
    return converted, dropped
