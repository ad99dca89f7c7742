"""The public entry points: :func:`load`, :func:`model_info` and :func:`list_models`."""
from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import engine
from . import weights as weights_mod
from .errors import VfeHubError, WeightsNotFoundError, unknown_keyword_error
from .hub import CONFIG_NAME, read_config
from .models.base import Detector
from .registry import PIPELINES, ModelSpec, get_spec, list_models, model_info

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

__all__ = ["list_models", "load", "model_info", "resolve_device", "set_dtype"]


def _dtype(dtype: torch.dtype | str, supported: tuple[str, ...]) -> torch.dtype:
    key = str(dtype).removeprefix("torch.")
    if key not in _DTYPES or key not in supported:
        raise VfeHubError(f"dtype={dtype!r} is not supported; use one of {', '.join(supported)} "
                          f"(half precision runs under autocast, weights stay float32).")
    return _DTYPES[key]


def _devices() -> list[str]:
    """The devices this machine offers: ``cpu``, ``cuda`` and ``cuda:<i>`` when CUDA is available, ``mps`` when
    Apple's Metal is."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` checked against this machine (:class:`VfeHubError` naming the valid choices); ``None`` is the
    first CUDA GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    valid = _devices()
    choices = f"valid here: {', '.join(repr(d) for d in valid)}, or None for the best available"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise VfeHubError(f"device={device!r} is not a device name; {choices}.") from e
    if str(parsed) not in valid:
        if parsed.type == "cuda" and not torch.cuda.is_available():
            why = "CUDA is not available here (no GPU, or a CPU-only build of PyTorch)"
        elif parsed.type == "cuda":
            why = f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        elif parsed.type == "mps":
            why = "Apple's Metal (MPS) is not available here"
        else:
            why = f"vfe_hub runs on cpu, cuda or mps, not {parsed.type}"
        raise VfeHubError(f"device={device!r} cannot be used: {why}; {choices}.")
    return parsed


def _name_from_folder(weights: str | os.PathLike | None) -> str:
    config = Path(weights) / CONFIG_NAME if weights is not None else None
    if config is None or not config.is_file():
        raise WeightsNotFoundError("load() needs a model name, or weights=<a vfe_hub folder with config.json>.")
    return read_config(config, required=("name",))["name"]


def _folder_config(weights: str | os.PathLike | None) -> dict[str, Any]:
    """The network config recorded in a vfe_hub folder's ``config.json`` (e.g. the number of classes of a converted
    checkpoint), or ``{}``; explicit overrides take precedence."""
    config = Path(weights) / CONFIG_NAME if weights is not None else None
    if config is None or not config.is_file():
        return {}
    return dict(read_config(config).get("config", {}))


def _check_overrides(spec: ModelSpec, overrides: dict[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(spec.config))
    if unknown:
        own = [n for n, p in inspect.signature(load).parameters.items() if p.kind is p.KEYWORD_ONLY]
        raise unknown_keyword_error(f"load({spec.name!r})", unknown, [*own, *spec.config])


def load(name: str | None = None, *, device: torch.device | str | None = None, dtype: torch.dtype | str = torch.float32,
         weights: str | os.PathLike | None = None, revision: str | None = None, progress: bool | None = None,
         vocabulary: Sequence[str] | None = None, pipeline: str = "fast", **overrides: Any) -> Detector:
    """Build the model ``name`` with its weights, on ``device`` (default: the GPU when CUDA is available, else
    the CPU), in eval mode.

    The weights are found and checked before the network gets memory: a missing file or an unreachable Hub fails
    in moments, and no random initialisation is computed only to be overwritten.

    ``weights`` replaces the registry's Hub file with a local vfe_hub folder, ``.safetensors`` file or original
    checkpoint (converted on the fly); with a folder the name may be omitted. ``revision`` loads another commit
    of the registry's Hub repository. ``dtype`` float16/bfloat16 runs inference under autocast. ``vocabulary``
    (open-vocabulary models only) replaces the default classes with these names (see ``set_vocabulary``).
    ``pipeline="original"`` runs the original's pre- and post-processing bit for bit: its resize library on the CPU
    (PIL, or OpenCV through the extra ``vfe_hub[original]``) and its class-wise NMS arithmetic (see the model
    card); the default ``"fast"`` resizes batched on the device and runs exact class-wise NMS.
    ``overrides`` replace entries of the model's config (``model_info(name)["config"]``, e.g. ``seed``); a
    misspelt keyword raises :class:`~vfe_hub.errors.UnknownArgumentError` with the closest name.
    """
    spec = get_spec(name if name is not None else _name_from_folder(weights))
    _check_overrides(spec, overrides)
    overrides = {**{k: v for k, v in _folder_config(weights).items() if k in spec.config}, **overrides}
    device, dtype = resolve_device(device), _dtype(dtype, spec.dtypes)
    _check_pipeline(spec, pipeline)
    model = weights_mod.empty_model(spec, **overrides)
    if vocabulary is not None and not model.open_vocabulary:
        model.set_vocabulary(vocabulary)  # raises before anything is downloaded: the classes of this model are fixed
    expected = {k: v.shape for k, v in model.state_dict().items()}
    loaded = weights_mod.resolve(spec, expected, weights=weights, revision=revision, progress=progress)
    model.load_weights(loaded)
    model = set_dtype(model.to(device).eval(), dtype)
    model.pipeline = pipeline
    if vocabulary is not None:
        model.set_vocabulary(vocabulary, progress=progress)
    return model


def _check_pipeline(spec: ModelSpec, pipeline: str) -> None:
    """Raise unless ``pipeline`` is ``"fast"`` or ``"original"``, and, for the latter, the original's resize library
    can be imported."""
    if pipeline not in PIPELINES:
        raise VfeHubError(f"pipeline={pipeline!r} is not a pipeline; use 'fast' (the default: batched on the device) "
                          f"or 'original' (the original's resize and NMS arithmetic, bit for bit).")
    if pipeline == "original" and spec.preprocess.library == "cv2":
        engine.opencv()


def set_dtype(model: Detector, dtype: torch.dtype | str) -> Detector:
    """Run ``model``'s inference in ``dtype`` (float16/bfloat16 under autocast; the weights stay float32)."""
    model.dtype = _dtype(dtype, model.spec.dtypes)
    return model
