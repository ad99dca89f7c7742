"""When to show progress bars: only on a terminal, unless ``progress=`` or ``VFE_HUB_PROGRESS`` says otherwise."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def show_progress(progress: bool | None = None) -> bool:
    """``progress`` if given, else ``VFE_HUB_PROGRESS`` (``0``/``1``) if set, else whether stderr is a terminal."""
    if progress is not None:
        return bool(progress)
    env = os.environ.get("VFE_HUB_PROGRESS")
    if env is not None:
        return env.strip().lower() not in ("0", "false", "no", "off", "")
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[T] | None = None, *, progress: bool | None = None, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` that is disabled unless :func:`show_progress` allows it."""
    return tqdm(iterable, disable=not show_progress(progress), **kwargs)


class SilentTqdm(tqdm):
    """A tqdm that never draws; handed to libraries that take a ``tqdm_class``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)
