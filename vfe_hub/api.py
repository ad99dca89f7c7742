"""The public entry points: :func:`load`, :func:`model_info` and :func:`list_models`."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import weights as weights_mod
from .errors import VfeHubError, WeightsNotFoundError
from .models.base import Detector
from .registry import get_spec, list_models

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

__all__ = ["list_models", "load", "model_info"]


def model_info(name: str) -> dict[str, Any]:
    """The registry's facts about ``name``: task, classes, paper, metrics, weights, licence, protocols."""
    return get_spec(name).info()


def _dtype(dtype: torch.dtype | str, supported: tuple[str, ...]) -> torch.dtype:
    key = str(dtype).removeprefix("torch.")
    if key not in _DTYPES or key not in supported:
        raise VfeHubError(f"dtype={dtype!r} is not supported; use one of {', '.join(supported)} "
                          f"(half precision runs under autocast, weights stay float32).")
    return _DTYPES[key]


def _device(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VfeHubError(f"device={str(device)!r} was requested but CUDA is not available here; use device='cpu'.")
    return device


def _name_from_folder(weights: str | os.PathLike | None) -> str:
    config = Path(weights) / "config.json" if weights is not None else None
    if config is None or not config.is_file():
        raise WeightsNotFoundError("load() needs a model name, or weights=<a vfe_hub folder with config.json>.")
    return json.loads(config.read_text())["name"]


def load(name: str | None = None, *, device: torch.device | str = "cpu", dtype: torch.dtype | str = torch.float32,
         weights: str | os.PathLike | None = None, revision: str | None = None, progress: bool | None = None,
         vocabulary: Sequence[str] | None = None, **overrides: Any) -> Detector:
    """Build the model ``name`` with its weights, on ``device``, in eval mode.

    ``weights`` replaces the registry's Hub file with a local vfe_hub folder, ``.safetensors`` file or original
    checkpoint (converted on the fly); with a folder the name may be omitted. ``revision`` loads another commit
    of the registry's Hub repository. ``dtype`` float16/bfloat16 runs inference under autocast. ``vocabulary``
    (open-vocabulary models only) replaces the default classes with these names (see ``set_vocabulary``).
    ``overrides`` replace entries of the model's config (e.g. ``seed``).
    """
    spec = get_spec(name if name is not None else _name_from_folder(weights))
    device, dtype = _device(device), _dtype(dtype, spec.dtypes)
    model = spec.build(**overrides)
    if vocabulary is not None and not model.open_vocabulary:
        model.set_vocabulary(vocabulary)  # raises before anything is downloaded: the classes of this model are fixed
    expected = {k: v.shape for k, v in model.state_dict().items()}
    model.load_weights(weights_mod.resolve(spec, expected, weights=weights, revision=revision, progress=progress))
    model.dtype = dtype
    model = model.to(device).eval()
    if vocabulary is not None:
        model.set_vocabulary(vocabulary, progress=progress)
    return model
