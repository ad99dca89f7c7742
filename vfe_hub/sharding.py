"""Sharded, restartable prediction and evaluation, with exactly the results of one process.

A run is cut into *units* (:meth:`vfe_hub.evaluation.runner.Benchmark.units`: a whole video for a video model,
``batch_size`` consecutive images for an image model; one input each for ``vfe-hub predict``) and the units into
``n`` shards by :func:`plan`. Shard ``i`` writes, into a folder shared by all shards:

- ``manifest.json``: what runs (dataset, root, annotation file, model, options, shard count); every shard checks
  that it matches, so shards of different runs never mix, and :func:`merge_and_score` needs no model;
- ``shard-0000i-of-0000n.jsonl``: one line per frame, ``{"id": ..., "unit": u, "image": {name, sequence, index,
  size}, "detections": [COCO records]}``, built in ``.part`` (appended unit by unit, so a rerun continues after the
  last complete unit) and renamed;
- ``shard-0000i-of-0000n.done``: the completion marker (with the device the shard ran on), written last
  (atomically); a rerun skips the shard.

:func:`merge_and_score` checks every shard is complete and every item present once, writes ``results.json`` and,
for an evaluation, ``metrics.json``. An evaluation's ``results.json`` is the list of records sorted by image id;
a prediction's is the document ``vfe-hub predict -o results.json`` writes (:mod:`vfe_hub.results_writer`:
provenance, images, results), its frames numbered over the inputs in order, its provenance naming the devices of
the shards.

Launchers: ``shard=(i, n)`` in :meth:`vfe_hub.Detector.evaluate`; ``--shard I/N --out-dir DIR`` on the command line
(a job array: no communication between shards); ``torchrun``, whose ``RANK`` / ``WORLD_SIZE`` give the shard
(:func:`env_shard`) and ``LOCAL_RANK`` the GPU (:func:`rank_device`). Under torchrun no process group is
needed: rank 0 runs its shard, then waits for the other shards' completion markers in the (shared) output folder
and merges; torchrun stops every rank when one fails.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import VfeHubError
from .hub import atomic_write

if TYPE_CHECKING:
    from .evaluation.runner import Benchmark, Unit
    from .models.base import Detector

log = logging.getLogger(__name__)

MANIFEST, RESULTS, METRICS = "manifest.json", "results.json", "metrics.json"
FORMAT = 1


class ShardError(VfeHubError):
    """An output folder whose shards are missing, incomplete, duplicated or of another run."""


@dataclass(frozen=True)
class ShardRun:
    """What :func:`run_shard` did: shard ``name``'s results ``file``, with ``items`` frames; ``skipped`` when the
    shard was complete before (nothing ran)."""

    name: str
    file: Path
    items: int
    skipped: bool


@dataclass(frozen=True)
class Merged:
    """A merged folder: ``results.json`` (and ``metrics.json`` for an evaluation) with ``frames`` frames and
    ``detections`` records; the ``metrics`` of an evaluation (empty for a prediction)."""

    frames: int
    detections: int
    metrics: dict[str, float]


# ----------------------------------------------------------------------------------------------------- the plan

def plan(sizes: Sequence[int], num_shards: int) -> list[list[int]]:
    """The units (indices into ``sizes``, their frame counts) of each of ``num_shards`` shards.

    Longest first, each to the least-loaded shard: units by decreasing size (ties: lower index first), shards by
    load (ties: lower shard first). Each shard runs its units in dataset order. Equal sizes (images) deal the
    units round robin. The plan depends only on the sizes and the shard count.
    """
    if num_shards < 1:
        raise ShardError(f"the number of shards must be at least 1, got {num_shards}")
    loads = [(0, shard) for shard in range(num_shards)]
    shards: list[list[int]] = [[] for _ in range(num_shards)]
    for unit in sorted(range(len(sizes)), key=lambda u: (-sizes[u], u)):
        load, shard = heapq.heappop(loads)
        shards[shard].append(unit)
        heapq.heappush(loads, (load + sizes[unit], shard))
    return [sorted(units) for units in shards]


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` (0 <= I < N; I counts from 0, like ``RANK`` and ``SLURM_ARRAY_TASK_ID`` of ``--array=0-N-1``)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ShardError(f"--shard {text!r} is not I/N; write e.g. --shard 0/4 for the first of four shards.") from None
    return check_shard((index, count))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    index, count = shard
    if not 0 <= index < count:
        raise ShardError(f"shard {index}/{count} does not exist: shards count from 0, so I/N needs 0 <= I < N.")
    return index, count


def env_shard() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` under torchrun (``WORLD_SIZE`` > 1), else ``None``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return check_shard((int(os.environ.get("RANK", "0")), world)) if world > 1 else None


def rank_device(device: str | None) -> str | None:
    """``cuda:LOCAL_RANK`` for ``device="cuda"`` or the default device (None) under torchrun with several GPUs;
    ``device`` otherwise."""
    import torch

    local = os.environ.get("LOCAL_RANK")
    if device in (None, "cuda") and local is not None and torch.cuda.device_count() > 1:
        return f"cuda:{int(local) % torch.cuda.device_count()}"
    return device


# ----------------------------------------------------------------------------------------------- the folder

def _name(shard: tuple[int, int]) -> str:
    return f"shard-{shard[0]:05d}-of-{shard[1]:05d}"


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``manifest.json`` of ``out_dir``; :class:`ShardError` if there is none."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise ShardError(f"{out_dir} holds no {MANIFEST}: it is not the output folder of a sharded run "
                         f"(--out-dir of vfe-hub evaluate / predict).")
    return json.loads(path.read_text())


def _claim(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` into ``out_dir``, or check that the one there is the same run."""
    path = out_dir / MANIFEST
    manifest = json.loads(json.dumps(manifest))  # as read back: lists for tuples
    if not path.is_file():
        _write_json(path, manifest)
    found = read_manifest(out_dir)
    if found != manifest:
        diff = sorted(k for k in {**found, **manifest} if found.get(k) != manifest.get(k))
        raise ShardError(f"{out_dir} holds shards of another run (it differs in {', '.join(diff)}); use a new "
                         f"--out-dir, or remove that folder to start over.")


def _resume(part: Path, units: list[Unit], order: list[int]) -> list[int]:
    """Keep the complete units at the start of ``part`` (a run killed halfway); return those units."""
    if not part.is_file():
        return []
    lines: dict[int, list[str]] = {}
    for line in part.read_text().splitlines():
        try:
            lines.setdefault(json.loads(line)["unit"], []).append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            break  # the last line of a killed write
    done = []
    for u in order:
        if len(lines.get(u, ())) != units[u].scored:
            break
        done.append(u)
    atomic_write(part, lambda tmp: tmp.write_text("".join(line + "\n" for u in done for line in lines[u])))
    return done


def run_shard(units: list[Unit], shard: tuple[int, int], out_dir: str | os.PathLike, manifest: dict[str, Any],
              run: Callable[[list[int]], Any], device: str | None = None) -> ShardRun:
    """Write shard ``shard = (i, n)`` of ``units`` into ``out_dir`` (module docstring for the files), run on
    ``device`` (recorded in the marker).

    ``run(indices)`` yields ``(unit, [(id, records, image)])`` for those units
    (:func:`~.evaluation.runner.predict_units`). A complete shard is skipped; an interrupted one continues after
    its last complete unit.
    """
    index, count = check_shard(shard)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _claim(out_dir, {**manifest, "format": FORMAT, "shards": count, "units": len(units)})
    name = _name(shard)
    marker, final, part = out_dir / f"{name}.done", out_dir / f"{name}.jsonl", out_dir / f"{name}.jsonl.part"
    if marker.is_file():
        return ShardRun(name, final, json.loads(marker.read_text())["items"], skipped=True)
    order = plan([len(unit.ids) for unit in units], count)[index]
    done = _resume(part, units, order)
    if done:
        log.info("%s: %d of %d units were done; continuing", name, len(done), len(order))
    with part.open("a") as f:
        for u, items in run(order[len(done):]):
            f.write("".join(json.dumps({"id": i, "unit": u, "image": image, "detections": records}) + "\n"
                            for i, records, image in items))
            f.flush()
            os.fsync(f.fileno())
    os.replace(part, final)
    items = sum(units[u].scored for u in order)
    _write_json(marker, {"units": order, "items": items, "sha256": hashlib.sha256(final.read_bytes()).hexdigest(),
                         "device": device})
    return ShardRun(name, final, items, skipped=False)


def wait_for_shards(out_dir: str | os.PathLike, poll_s: float = 5.0) -> None:
    """Block until every shard of ``out_dir`` has its completion marker (torchrun's rank 0 before merging)."""
    out_dir = Path(out_dir)
    count = read_manifest(out_dir)["shards"]
    reported = None
    while missing := [i for i in range(count) if not (out_dir / f"{_name((i, count))}.done").is_file()]:
        if missing != reported:
            log.info("waiting for shard(s) %s of %d", ", ".join(map(str, missing)), count)
            reported = missing
        time.sleep(poll_s)


# --------------------------------------------------------------------------------------------- the merge

def _key(item_id: Any) -> Any:
    return tuple(item_id) if isinstance(item_id, list) else item_id


def merge(out_dir: str | os.PathLike) -> tuple[dict[str, Any], list[tuple[Any, dict[str, Any]]]]:
    """The manifest and the ``(id, line)`` of every frame of ``out_dir``'s shards, sorted by id (``line``: the
    frame's line of its shard file, with its ``image`` and ``detections``).

    Raises :class:`ShardError` naming a shard that is missing or incomplete, a shard file that does not match
    its marker, and a unit or frame that is missing or given twice.
    """
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    count = manifest["shards"]
    missing = [_name((i, count)) for i in range(count) if not (out_dir / f"{_name((i, count))}.done").is_file()]
    if missing:
        raise ShardError(f"{out_dir}: {len(missing)} of {count} shards are missing or incomplete: "
                         f"{', '.join(missing)}. Run them (--shard I/{count} --out-dir {out_dir}), then merge.")
    items: dict[Any, dict[str, Any]] = {}
    units: set[int] = set()
    for i in range(count):
        name = _name((i, count))
        marker = json.loads((out_dir / f"{name}.done").read_text())
        data = (out_dir / f"{name}.jsonl").read_bytes()
        if hashlib.sha256(data).hexdigest() != marker["sha256"]:
            raise ShardError(f"{out_dir / name}.jsonl does not match its marker {name}.done (changed after it was "
                             f"written); delete both and run shard {i}/{count} again.")
        twice = units.intersection(marker["units"])
        if twice:
            raise ShardError(f"{name} repeats unit(s) {sorted(twice)[:5]} of another shard; the folder mixes runs.")
        units.update(marker["units"])
        for line in data.decode().splitlines():
            item = json.loads(line)
            key = _key(item["id"])
            if key in items:
                raise ShardError(f"{name} gives frame {item['id']} a second time; the folder mixes runs.")
            items[key] = item
    if units != set(range(manifest["units"])):
        absent = sorted(set(range(manifest["units"])) - units)
        raise ShardError(f"{out_dir}: unit(s) {absent[:5]} of {manifest['units']} are in no shard.")
    return manifest, sorted(items.items(), key=lambda item: item[0])


def merge_and_score(out_dir: str | os.PathLike, *, progress: bool | None = None) -> dict[str, float]:
    """Merge ``out_dir`` (:func:`merge`) into ``results.json`` and, for an evaluation, score it once with the
    benchmark's evaluator (the dataset named in the manifest; no model needed) into ``metrics.json``.
    Returns the metrics (empty for a ``predict`` run)."""
    return merge_folder(out_dir, progress=progress).metrics


def merge_folder(out_dir: str | os.PathLike, *, progress: bool | None = None) -> Merged:
    """:func:`merge_and_score`, saying how many frames and detections were merged."""
    from .evaluation.runner import load_benchmark
    from .results_writer import ResultsWriter

    out_dir = Path(out_dir)
    manifest, items = merge(out_dir)
    records = [record for _, line in items for record in line["detections"]]
    if manifest["task"] != "evaluate":
        devices = {json.loads((out_dir / f"{_name((i, manifest['shards']))}.done").read_text()).get("device")
                   for i in range(manifest["shards"])}
        provenance = {**manifest["provenance"], "device": ", ".join(sorted(d for d in devices if d))}
        with ResultsWriter(out_dir / RESULTS, provenance) as writer:
            for _, line in items:
                writer.write_records(line["image"], line["detections"])
        return Merged(len(items), len(records), {})
    atomic_write(out_dir / RESULTS, lambda tmp: tmp.write_text(json.dumps(records)))
    bench = load_benchmark(manifest["dataset"], progress=progress, **manifest["dataset_args"])
    expected, found = bench.image_ids, [key for key, _ in items]
    if found != sorted(expected):
        absent = sorted(set(expected) - set(found))
        raise ShardError(f"{out_dir}: the shards miss image id(s) {absent[:5]} ({len(absent)} in all) or give "
                         f"ids the dataset lacks; the annotations changed since the run: start over in a new folder.")
    metrics = bench.score(records)
    _write_json(out_dir / METRICS, metrics)
    return Merged(len(items), len(records), metrics)


# ------------------------------------------------------------------------------------------------ launchers

def merges(shard: tuple[int, int], wait: bool) -> bool:
    """Whether this shard's process merges the run: a single shard, or shard 0 told to wait for the others."""
    return shard[1] == 1 or (wait and shard[0] == 0)


#: the dataset arguments that name files or folders, recorded absolute (``motion_iou`` unless a keyword)
_PATH_ARGS = ("root", "ann_file", "motion_iou")
_KEYWORDS = ("fgfa", "compute")


def evaluate(model: Detector, dataset: str | Benchmark, *, shard: tuple[int, int], out_dir: str | os.PathLike,
             batch_size: int = 1, progress: bool | None = None, wait: bool = False,
             **dataset_args: Any) -> dict[str, float]:
    """Run shard ``shard = (i, n)`` of ``model`` on ``dataset`` into ``out_dir``; returns the metrics when the run
    is a single shard, or with ``wait=True`` on shard 0 (which waits for the others, then merges); else ``{}``.

    ``dataset_args`` are those of the dataset (:func:`vfe_hub.evaluation.runner.load_benchmark`), or ``dataset``
    is a benchmark read with them (:func:`vfe_hub.evaluation.runner.benchmark`); paths (root, annotation file, a
    motion table file) are recorded absolute in the manifest.
    """
    evaluate_shard(model, dataset, shard=shard, out_dir=out_dir, batch_size=batch_size, progress=progress,
                   **dataset_args)
    if merges(shard, wait):
        wait_for_shards(out_dir)
        return merge_and_score(out_dir, progress=progress)
    return {}


def evaluate_shard(model: Detector, dataset: str | Benchmark, *, shard: tuple[int, int],
                   out_dir: str | os.PathLike, batch_size: int = 1, progress: bool | None = None,
                   **dataset_args: Any) -> ShardRun:
    """The shard of :func:`evaluate`, without the merge."""
    from .evaluation.runner import benchmark, predict_units

    bench = benchmark(dataset, progress=progress, **dataset_args)
    dataset_args = {k: os.path.abspath(v) if k in _PATH_ARGS and isinstance(v, (str, os.PathLike))
                    and str(v) not in _KEYWORDS and os.path.exists(v) else v for k, v in bench.args.items()}
    units = bench.units(model, batch_size)
    options, category_ids = bench.options_for(model), bench.category_ids(model)
    manifest = {"task": "evaluate", "dataset": bench.name, "dataset_args": dataset_args,
                "model": model.spec.name, "weights": model.weights_provenance, "dtype": str(model.dtype),
                "pipeline": model.pipeline, "options": options, "batch_size": batch_size}
    return run_shard(units, shard, out_dir, manifest,
                     lambda indices: predict_units(model, units, indices, batch_size=batch_size, options=options,
                                                   progress=progress, category_ids=category_ids),
                     device=str(model.device))


def predict(model: Detector, inputs: Sequence[str], *, shard: tuple[int, int], out_dir: str | os.PathLike,
            batch_size: int = 1, progress: bool | None = None, wait: bool = False, **options: Any) -> None:
    """Run shard ``shard`` of ``model.predict(inputs, **options)`` (each input is a unit: an image, a folder or
    a video, weighted by its frame count) into ``out_dir``; with a single shard, or ``wait=True`` on shard 0, also
    merge into ``results.json``: the document of ``vfe-hub predict -o results.json``, ``image_id`` numbering the
    frames 1, 2, ... over all inputs, as one ``predict`` call does. ``options`` are ``predict``'s (protocol,
    masks, ...): every shard runs them, and the manifest records them."""
    predict_shard(model, inputs, shard=shard, out_dir=out_dir, batch_size=batch_size, progress=progress, **options)
    if merges(shard, wait):
        wait_for_shards(out_dir)
        merge_and_score(out_dir)


def predict_shard(model: Detector, inputs: Sequence[str], *, shard: tuple[int, int], out_dir: str | os.PathLike,
                  batch_size: int = 1, progress: bool | None = None, **options: Any) -> ShardRun:
    """The shard of :func:`predict`, without the merge."""
    from .evaluation.runner import Unit, predict_units
    from .io import open_frames
    from .results_writer import provenance

    options = model._check_options(options)
    units, start = [], 1
    for item in inputs:
        frames = open_frames([item])
        try:
            count = len(frames)
        except TypeError:  # a container without a frame count: decode once to count
            count = sum(1 for _ in frames)
        units.append(Unit((os.path.abspath(item),), tuple(range(start, start + count))))
        start += count
    manifest = {"task": "predict", "inputs": [unit.inputs[0] for unit in units], "model": model.spec.name,
                "weights": model.weights_provenance, "dtype": str(model.dtype), "pipeline": model.pipeline,
                "options": options, "batch_size": batch_size,
                # the results' provenance; each shard's device is in its marker (torchrun ranks differ)
                "provenance": {**provenance(model, options), "device": None}}
    return run_shard(units, shard, out_dir, manifest,
                     lambda indices: predict_units(model, units, indices, batch_size=batch_size, options=options,
                                                   progress=progress),
                     device=str(model.device))
