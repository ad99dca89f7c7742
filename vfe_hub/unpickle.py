"""Reading a PyTorch checkpoint whose non-tensor entries pickle objects of other code bases, without running them.

``torch.load(weights_only=True)`` rebuilds tensors and plain containers only, and refuses a whole file as soon as
it meets another class, e.g. the ``Config`` object that mmcv's ``save_checkpoint`` may keep in ``meta`` beside the
``state_dict``. :func:`load_with_placeholders` reads such a file with the classes that ``weights_only`` allows and
an inert :class:`Placeholder` in the place of every other one: the tensors come out as ``torch.load`` gives them,
and no code of the file's classes (constructors, ``__setstate__``, ``__reduce__`` callables) runs, since the
unpickler never looks a disallowed name up (the restricted ``find_class`` of the ``pickle`` documentation).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


class Placeholder:
    """An object of a class that was not rebuilt: ``name`` (``module.qualname``) says which, ``args`` and ``state``
    hold what the file gave to build it (plain data, tensors or other placeholders)."""

    name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.name}, not rebuilt>"


def _allowed() -> set[str]:
    """The ``module.name`` globals that ``torch.load(weights_only=True)`` rebuilds."""
    from torch import _weights_only_unpickler, serialization

    custom = {f"{g.__module__}.{g.__qualname__}" for g in serialization.get_safe_globals() if hasattr(g, "__module__")}
    return set(_weights_only_unpickler._get_allowed_globals()) | custom


class _Unpickler(pickle.Unpickler):
    """A pickle reader that looks up only the globals ``weights_only`` allows; any other name becomes a subclass of
    :class:`Placeholder` named after it (collected in ``replaced``)."""

    allowed: set[str] = set()
    replaced: set[str] = set()

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full in self.allowed:
            return super().find_class(module, name)
        self.replaced.add(full)
        return type(name, (Placeholder,), {"name": full, "__module__": __name__})


def load_with_placeholders(path: Path) -> tuple[Any, list[str]]:
    """The object saved in the PyTorch file ``path`` (on the CPU), with a :class:`Placeholder` for each object of a
    class that ``torch.load(weights_only=True)`` does not rebuild; and those classes' names, sorted."""
    import torch

    reader = type("Unpickler", (_Unpickler,), {"allowed": _allowed(), "replaced": set()})
    module = type("placeholder_pickle", (), {"Unpickler": reader, "load": staticmethod(pickle.load),
                                             "__name__": "placeholder_pickle"})
    loaded = torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)
    return loaded, sorted(reader.replaced)
