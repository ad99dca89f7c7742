"""vfe_hub: published video, long-tail and open-vocabulary detectors and trackers, one line away.

>>> import vfe_hub
>>> model = vfe_hub.load("mamba_r101_dc5_vid")          # doctest: +SKIP
>>> frames = model.predict("clip.mp4", batch_size=4)   # doctest: +SKIP

``import vfe_hub`` reads only the registry: the names that need PyTorch (``load``, ``Detector``, ``Detections``,
...) and the submodules (``vfe_hub.io``) are imported on first use, so that ``vfe-hub list`` or ``--help`` start in
a moment.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import VfeHubError
from .pipeline import pipeline
from .registry import list_models, model_info

__version__ = "0.1.0"

__all__ = ["Detections", "Detector", "VfeHubError", "VideoDetector", "list_models", "load", "model_info", "pipeline"]

#: public name -> the submodule that defines it, imported on first access
_LAZY = {"load": "api", "Detector": "models.base", "VideoDetector": "models.base", "Detections": "structures"}

if TYPE_CHECKING:
    from .api import load
    from .models.base import Detector, VideoDetector
    from .structures import Detections


def __getattr__(name: str) -> Any:
    """A name of :data:`_LAZY` or a submodule, imported now and kept (later accesses do not come here)."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
