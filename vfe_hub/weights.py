"""From a registry entry or a user-given path to checked weights with their provenance; explicit conversion."""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from . import drive, hub
from .convert import check_state_dict, convert_state_dict, table_for
from .errors import ConversionError, CorruptWeightsError, VfeHubError, WeightsNotFoundError
from .registry import Asset, DriveFile, ModelSpec, conversion_command

if TYPE_CHECKING:
    from .models.base import Detector

log = logging.getLogger(__name__)
Shapes = Mapping[str, torch.Size]
_ORIGINAL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")


@dataclass
class LoadedWeights:
    """Checked weights for a model: its ``state`` dict, where they came from (``provenance``: weights, revision,
    sha256), the ``config`` of a vfe_hub folder or repository (``config.json``; empty for other sources) and its
    companion ``files``, read on demand."""

    state: dict[str, torch.Tensor]
    provenance: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    files: hub.WeightFiles = field(default_factory=hub.WeightFiles)


@dataclass
class Converted:
    """An original release converted into vfe_hub's layout: the ``state`` of ``model.safetensors``, the original
    checkpoint ``format`` (``"mmdet_v2"``, ...), entries of ``config.json`` beyond name, family and config
    (``classes``, ...), companion safetensors ``files`` (name -> tensors) and the original keys dropped on
    purpose."""

    state: dict[str, torch.Tensor]
    format: str
    config: dict[str, Any]
    files: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def _family(spec: ModelSpec) -> ModuleType:
    return importlib.import_module(f"vfe_hub.models.{spec.family}")


_building = threading.local()
_register_parameter = nn.Module.register_parameter


def _register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
    if param is not None and getattr(_building, "active", False):
        param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
    _register_parameter(module, name, param)


@contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Build modules whose parameters live on the ``meta`` device: no memory and no random initialisation (which
    the weights replace anyway). Buffers and other tensors built in ``__init__`` (index tables, anchors) are made
    as usual, so they are correct without the weights. Only the calling thread is affected."""
    nn.Module.register_parameter = _register_on_meta  # type: ignore[method-assign]
    _building.active = True
    try:
        yield
    finally:
        _building.active = False
        # Another thread's build that loses the patch early just builds ordinary parameters, which load as well.
        nn.Module.register_parameter = _register_parameter  # type: ignore[method-assign]


def empty_model(spec: ModelSpec, **overrides: Any) -> Detector:
    """The network of ``spec`` (``overrides`` replace config entries) with its parameters on the ``meta`` device:
    its state dict gives the expected keys and shapes at no cost; loading the weights gives it memory
    (:meth:`~vfe_hub.Detector.load_weights`)."""
    with _parameters_on_meta():
        return spec.build(**overrides)


def conversion_hint(spec: ModelSpec) -> str:
    """How to convert ``spec``'s original release by hand: where to download it and the command to run."""
    sources = "; ".join(f"{name}: {where}" for name, where in spec.weights.sources().items())
    where = f" Download the original release ({sources}), then run" if sources else " Run"
    return f"{where} `{conversion_command(spec)}` and load the result with vfe_hub.load(weights=\"<out_dir>\")."


def _flags(names: list[str]) -> str:
    """Keyword names as the command line's options: ``sorted_ids`` -> ``--sorted-ids``."""
    return ", ".join("--" + name.replace("_", "-") for name in names)


def convert_checkpoint(spec: ModelSpec, path: Path, model: Detector | None = None, **inputs: Any) -> Converted:
    """Convert the original checkpoint ``path`` of ``spec`` strictly into vfe_hub's layout, for ``model`` (default:
    :func:`empty_model`; its state dict gives the expected keys and shapes).

    Families whose release has more than a checkpoint (class embeddings, vocabularies) take those files as
    ``inputs`` (their module's ``convert``); the others take none. Only the model's keys and shapes are used.
    Checkpoints are read without running code of the file (:func:`vfe_hub.hub.load_checkpoint`).
    """
    convert = getattr(_family(spec), "convert", None)
    takes = [] if convert is None else [p.name for p in inspect.signature(convert).parameters.values()
                                        if p.kind is p.KEYWORD_ONLY]
    unknown = [name for name in inputs if name not in takes]
    if unknown:
        what = f"takes {_flags(takes)} beyond the checkpoint" if takes else "is converted from its checkpoint alone"
        raise ConversionError(f"{spec.name} {what}; remove {_flags(unknown)}: `{conversion_command(spec)}`.")
    model = model if model is not None else empty_model(spec)
    if convert is not None:
        return convert(model, Path(path), **inputs)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state, dropped = convert_state_dict(hub.read_checkpoint(Path(path)), table_for(spec.weights.format), expected)
    return Converted(state, spec.weights.format, {"classes": list(spec.classes)}, dropped=dropped)


def convert_original(spec: ModelSpec, path: Path, expected: Shapes) -> dict[str, torch.Tensor]:
    """Read an original checkpoint of ``spec``'s code base and convert it strictly into vfe_hub's layout (the
    on-the-fly conversion of ``load``; releases that need more than the checkpoint are refused with the command
    that converts them)."""
    if hasattr(_family(spec), "convert"):
        raise ConversionError(f"{path} cannot be converted on the fly: {spec.name} needs more than its checkpoint."
                              + conversion_hint(spec))
    state, _ = convert_state_dict(hub.read_checkpoint(path), table_for(spec.weights.format), expected)
    return state


def _from_vfe_hub_repo(spec: ModelSpec, revision: str | None, progress: bool | None) -> LoadedWeights:
    """``config.json`` and the weights of a vfe_hub repository; the companion files come from the same commit."""
    w = spec.weights
    try:
        config_path, _ = hub.download(dataclasses.replace(w, filename=hub.CONFIG_NAME, sha256=None),
                                      revision=revision, progress=progress)
        path, sha = hub.download(w, revision=revision, progress=progress)
    except WeightsNotFoundError as e:
        if not w.sources():
            raise
        raise WeightsNotFoundError(f"{e}{conversion_hint(spec)}") from e
    config = hub.read_config(config_path)
    hub.check_sha256(path, config.get("sha256"), f"{config_path.name} of {w.repo_id}")
    commit = hub.snapshot_commit(config_path, hub.CONFIG_NAME)
    files = hub.WeightFiles(config.get("files", {}), dataclasses.replace(w, revision=commit))
    provenance = hub.Provenance(f"hf://{w.repo_id}/{w.filename}", revision or commit, sha)
    return LoadedWeights(hub.read_safetensors(path), provenance.as_dict(), config, files)


def _from_hub(spec: ModelSpec, expected: Shapes, revision: str | None, progress: bool | None) -> LoadedWeights:
    w = spec.weights
    if w.from_drive and revision is None:
        return _from_drive(spec, expected, progress)
    revision = revision or w.revision
    if w.format == "vfe_hub":
        return _from_vfe_hub_repo(spec, revision, progress)
    source = f"hf://{w.repo_id}/{w.filename}"
    cached = hub.converted_path(spec.name, w, revision)
    found = hub.read_converted(cached)  # None when absent or damaged: then converted again from the original
    if found is not None:
        state, record = found
        check_state_dict(state, expected, f"The cached conversion {cached}")
        return LoadedWeights(state, hub.Provenance(source, revision, record["sha256"]).as_dict())
    path, sha = hub.download(w, revision=revision, progress=progress)
    state = convert_original(spec, path, expected)
    provenance = hub.Provenance(source, revision, sha)
    hub.save_converted(state, cached, provenance)
    return LoadedWeights(state, provenance.as_dict())


def model_dir_config(spec: ModelSpec, checkpoint: Path, converted: Converted, sha256: str | None = None) -> dict:
    """The ``config.json`` of a vfe_hub folder converted from ``checkpoint`` (whose ``sha256`` is computed when not
    given): name, family, network config, the conversion's entries and the source file."""
    return {"name": spec.name, "family": spec.family, "config": spec.config, **converted.config,
            "source": {"file": checkpoint.name, "sha256": sha256 or hub.sha256_of(checkpoint),
                       "format": converted.format}}


def drive_conversion_dir(spec: ModelSpec) -> Path:
    """Where the conversion of ``spec``'s Google Drive release is cached: a vfe_hub folder (as `vfe-hub convert`
    writes it, ready for `vfe-hub publish`) with the record ``model.json`` (see :func:`vfe_hub.hub.read_converted`)."""
    return hub.cache_dir() / "converted" / spec.weights.repo_id / "gdrive" / spec.weights.drive.checkpoint.key


def _read_drive_conversion(spec: ModelSpec, folder: Path,
                           warn: bool = True) -> tuple[dict[str, torch.Tensor], dict, dict] | None:
    """The cached conversion's ``(state, record, config)``, or ``None`` when there is none, it is damaged, or it
    was converted from files other than the ones the registry pins now (said in a warning when ``warn``; the
    conversion that replaces it removes it)."""
    found = hub.read_converted(folder / hub.WEIGHTS_NAME)
    if found is None:
        return None
    state, record = found
    pins = {f.filename: f.sha256 for f in spec.weights.drive.files() if f.pinned}
    stale = sorted(name for name, sha in pins.items() if record.get("inputs", {}).get(name) != sha)
    try:
        config = hub.read_config(folder / hub.CONFIG_NAME, required=("name", "sha256"))
    except (CorruptWeightsError, OSError) as e:
        stale.append(f"config.json ({e})")
    if not stale:
        return state, record, config
    if warn:
        log.warning("The cached conversion %s does not match the registry (%s); converting the original release "
                    "again.", folder, ", ".join(stale))
    return None


def _convert_drive_release(spec: ModelSpec, folder: Path,
                           progress: bool | None) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Download and check ``spec``'s Google Drive release, convert it strictly and cache the result in ``folder``
    (written beside it, then moved into its place whole); returns ``(state, record, config)`` as
    :func:`_read_drive_conversion` does. Unpinned files whose conversion fails (unreadable, or not fitting the model)
    are removed from the cache with their records, so none is trusted before it converts."""
    release = spec.weights.drive
    originals = {f: drive.fetch(f, progress) for f in release.files()}
    unpinned = [o for o in originals.values() if not o.file.pinned]
    if unpinned:
        log.warning("%s: its original release on Google Drive is unpinned (%s): checked against the sizes and sha256 "
                    "recorded at the first download.", spec.name, ", ".join(f"{o.file.filename} {o.sha256[:12]}"
                                                                           for o in unpinned))
    checkpoint = originals[release.checkpoint]
    with ExitStack() as stack:
        inputs: dict[str, Any] = {}
        for keyword, source in release.inputs.items():
            if isinstance(source, Asset):
                inputs[keyword] = stack.enter_context(resources.as_file(
                    resources.files("vfe_hub").joinpath("assets", source.name)))
            elif isinstance(source, DriveFile):
                inputs[keyword] = originals[source].path
            else:  # files of one Drive folder, passed as the folder that holds them in the cache
                inputs[keyword] = originals[source[0]].path.parent
        try:
            converted = convert_checkpoint(spec, checkpoint.path, **inputs)
        except VfeHubError as e:
            for original in unpinned:
                original.path.unlink(missing_ok=True)
                drive.record_path(original.path).unlink(missing_ok=True)
            removed = ", ".join(str(o.path) for o in unpinned) or "none (every file is pinned)"
            raise ConversionError(
                f"{spec.name}: the original release downloaded from Google Drive does not convert strictly "
                f"({checkpoint.file.filename}, Google Drive id {checkpoint.id}, with {', '.join(inputs) or 'no'} "
                f"inputs): {e}\nRemoved from the cache, as unpinned files are only trusted once they convert: "
                f"{removed}." + conversion_hint(spec)) from e
    from .cards import render

    provenance = hub.Provenance(f"gdrive://{checkpoint.id}/{checkpoint.file.filename}", None, checkpoint.sha256,
                                checkpoint.size, checkpoint.file.pinned)
    config = model_dir_config(spec, checkpoint.path, converted, checkpoint.sha256)
    with hub.atomic_dir(folder) as tmp:  # a process reading the folder (lazily: companion files) never sees it half
        digest = hub.write_model_dir(tmp, converted.state, config, render(spec), converted.files)
        record = {**provenance.as_dict(), "converted_sha256": digest,
                  "inputs": {o.file.filename: o.sha256 for o in originals.values()}}
        hub.write_record(tmp / hub.WEIGHTS_NAME, record)
    return converted.state, record, hub.read_config(folder / hub.CONFIG_NAME)


def _from_drive(spec: ModelSpec, expected: Shapes, progress: bool | None) -> LoadedWeights:
    """The weights converted from ``spec``'s original release on Google Drive: from the cache, else downloaded,
    checked, converted strictly and cached first (the next load reads only the cache)."""
    folder = drive_conversion_dir(spec)
    found = _read_drive_conversion(spec, folder, warn=False)
    if found is None:
        with hub.cache_lock(folder):  # the processes of one job (torchrun ranks) download and convert it once
            found = _read_drive_conversion(spec, folder)  # converted by another while this one waited?
            if found is None:
                found = _convert_drive_release(spec, folder, progress)
    state, record, config = found
    check_state_dict(state, expected, f"The cached conversion {folder}")
    provenance = {key: record[key] for key in ("weights", "revision", "sha256", "size", "pinned") if key in record}
    return LoadedWeights(state, provenance, config, hub.WeightFiles(config.get("files", {}), folder))


def _from_path(spec: ModelSpec, path: Path, expected: Shapes) -> LoadedWeights:
    if not path.exists():
        raise WeightsNotFoundError(f"weights={str(path)!r} does not exist. Pass a vfe_hub folder (config.json + "
                                   f"model.safetensors), a .safetensors file or an original checkpoint.")
    if path.is_dir():
        config, state = hub.read_model_dir(path)
        if config.get("name") not in (None, spec.name):
            raise WeightsNotFoundError(f"{path} holds weights of {config['name']!r}, not of {spec.name!r}; "
                                       f"load it with vfe_hub.load(weights={str(path)!r}) and no name.")
        provenance = hub.Provenance(str(path), None, config["sha256"])
        return LoadedWeights(state, provenance.as_dict(), config, hub.WeightFiles(config.get("files", {}), path))
    sha = hub.sha256_of(path)
    provenance = hub.Provenance(str(path), None, sha).as_dict()
    if path.suffix == ".safetensors":
        return LoadedWeights(hub.read_safetensors(path), provenance)
    if path.suffix in _ORIGINAL_SUFFIXES:
        return LoadedWeights(convert_original(spec, path, expected), provenance)
    raise CorruptWeightsError(f"weights={str(path)!r}: unknown weights file type {path.suffix!r}; expected a "
                              f".safetensors file, a vfe_hub folder or an original checkpoint ({', '.join(_ORIGINAL_SUFFIXES)}).")


def resolve(spec: ModelSpec, expected: Shapes, *, weights: str | os.PathLike | None = None,
            revision: str | None = None, progress: bool | None = None) -> LoadedWeights:
    """The checked weights for a model of ``spec`` whose own state dict has the ``expected`` shapes.

    ``weights=None`` takes the registry's files from the Hub (an original checkpoint is converted once and
    cached as safetensors; the next load reads only that; a vfe_hub repository gives its ``config.json`` too), or,
    while the converted repository of a release published only on Google Drive is unpublished (no ``revision``
    pinned, none given), that release (:mod:`vfe_hub.drive`), converted once and cached the same way;
    otherwise ``weights`` is a vfe_hub folder, a ``.safetensors`` file or an original checkpoint converted on the
    fly.
    """
    if weights is None and spec.weights.unreleased:
        raise WeightsNotFoundError(f"{spec.name}: {spec.weights.unreleased} To use your own: "
                                   f"`{conversion_command(spec)}`, then vfe_hub.load({spec.name!r}, "
                                   f"weights=\"<out_dir>\").")
    if weights is None:
        loaded = _from_hub(spec, expected, revision, progress)
    else:
        loaded = _from_path(spec, Path(weights), expected)
    check_state_dict(loaded.state, expected, f"The weights {loaded.provenance['weights']}")
    return loaded
