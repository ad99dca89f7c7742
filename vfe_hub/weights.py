"""From a registry entry or a user-given path to a checked state dict with its provenance."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from . import hub
from .convert import check_state_dict, convert_state_dict, table_for
from .errors import CorruptWeightsError, WeightsNotFoundError
from .registry import ModelSpec

Shapes = Mapping[str, torch.Size]
_ORIGINAL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")


def convert_original(spec: ModelSpec, path: Path, expected: Shapes) -> dict[str, torch.Tensor]:
    """Read an original checkpoint of ``spec``'s code base and convert it strictly into vfe_hub's layout."""
    state, _ = convert_state_dict(hub.read_checkpoint(path), table_for(spec.weights.format), expected)
    return state


def _from_hub(spec: ModelSpec, expected: Shapes, revision: str | None,
              progress: bool | None) -> tuple[dict[str, torch.Tensor], hub.Provenance]:
    w = spec.weights
    revision = revision or w.revision
    source = f"hf://{w.repo_id}/{w.filename}"
    if w.format == "vfe_hub":
        path, sha = hub.download(w, revision=revision, progress=progress)
        return hub.read_safetensors(path), hub.Provenance(source, revision, sha)
    cached = hub.converted_path(w, revision)
    record = cached.with_suffix(".json")
    if cached.is_file() and record.is_file():
        state = hub.read_safetensors(cached)
        check_state_dict(state, expected, f"The cached conversion {cached}")
        return state, hub.Provenance(source, revision, json.loads(record.read_text())["sha256"])
    path, sha = hub.download(w, revision=revision, progress=progress)
    state = convert_original(spec, path, expected)
    provenance = hub.Provenance(source, revision, sha)
    hub.save_converted(state, cached, provenance)
    return state, provenance


def _from_path(spec: ModelSpec, path: Path, expected: Shapes) -> tuple[dict[str, torch.Tensor], hub.Provenance]:
    if not path.exists():
        raise WeightsNotFoundError(f"weights={str(path)!r} does not exist. Pass a vfe_hub folder (config.json + "
                                   f"model.safetensors), a .safetensors file or an original checkpoint.")
    if path.is_dir():
        config, state = hub.read_model_dir(path)
        if config.get("name") not in (None, spec.name):
            raise WeightsNotFoundError(f"{path} holds weights of {config['name']!r}, not of {spec.name!r}; "
                                       f"load it with vfe_hub.load(weights={str(path)!r}) and no name.")
        return state, hub.Provenance(str(path), None, config["sha256"])
    sha = hub.sha256_of(path)
    if path.suffix == ".safetensors":
        return hub.read_safetensors(path), hub.Provenance(str(path), None, sha)
    if path.suffix in _ORIGINAL_SUFFIXES:
        return convert_original(spec, path, expected), hub.Provenance(str(path), None, sha)
    raise CorruptWeightsError(f"weights={str(path)!r}: unknown weights file type {path.suffix!r}; expected a "
                              f".safetensors file, a vfe_hub folder or an original checkpoint ({', '.join(_ORIGINAL_SUFFIXES)}).")


def resolve(spec: ModelSpec, expected: Shapes, *, weights: str | os.PathLike | None = None,
            revision: str | None = None, progress: bool | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The checked state dict for a model of ``spec`` whose own state dict has the ``expected`` shapes.

    ``weights=None`` takes the registry's file from the Hub (an original checkpoint is converted once and
    cached as safetensors; the next load reads only that); otherwise ``weights`` is a vfe_hub folder, a
    ``.safetensors`` file or an original checkpoint converted on the fly. Returns ``(state, provenance)``.
    """
    if weights is None:
        state, provenance = _from_hub(spec, expected, revision, progress)
    else:
        state, provenance = _from_path(spec, Path(weights), expected)
    check_state_dict(state, expected, f"The weights {provenance.source}")
    return state, provenance.as_dict()
