"""Running a model over a benchmark and scoring it with the benchmark's official metric.

A benchmark is read into a :class:`Benchmark`: its frames grouped in sequences (a video, or a single image),
each frame with its image id, and the scorer of COCO-style results. The model runs by *units*
(:meth:`Benchmark.units`): a video model one whole video per ``predict`` call (its state never crosses videos),
an image model ``batch_size`` consecutive images per call, so that every batch holds the same images however the
run is split (:mod:`vfe_hub.sharding`). Results are ordered by image id, which for ImageNet VID is the
(video, frame) order.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DatasetError, close_matches, unknown_keyword_error
from ..hub import atomic_write
from ..progress import progress_bar
from ..registry import DATASET_ROOTS
from . import imagenet_vid, imagenet_vid_data, lvis, lvis_data, tao, tao_amodal, tao_data, teta

if TYPE_CHECKING:
    from ..models.base import Detector


@dataclass(frozen=True)
class FrameSequence:
    """Frames that a video model must see together: ``source`` (a folder of frames, or one image file) and the
    ``(image id, image file)`` of each of its frames, in frame order. ``listed``: run exactly the listed files
    (the folder holds other frames too); an image id of ``None`` marks a frame that runs but is not scored.
    ``video_id``: the dataset's id of the video, written into tracked results."""

    source: str
    frames: tuple[tuple[int | None, str], ...]
    listed: bool = False
    video_id: int | None = None


@dataclass(frozen=True)
class Unit:
    """What one ``predict`` call runs: its ``inputs``, the id of each frame they yield, in order (``None``: not
    scored), and the video id of tracked results."""

    inputs: tuple[str, ...]
    ids: tuple[Any, ...]
    video_id: int | None = None

    @property
    def scored(self) -> int:
        """How many of the unit's frames are scored (give results)."""
        return sum(i is not None for i in self.ids)


@dataclass
class Benchmark:
    """A dataset ready to run: ``sequences`` in dataset order, the scorer of COCO-style ``records`` (sorted by
    image id), the ``predict`` options it asks of models that have them, ``vocabulary``: the name of the
    category set that the model must map its labels to (``model.category_ids``), if any, and ``args``: the
    arguments it was read with (:func:`load_benchmark`; root, annotation file, limit, ...)."""

    name: str
    sequences: list[FrameSequence]
    score: Callable[[list[dict]], dict[str, float]]
    check_files: Callable[[], None]
    predict_options: dict[str, Any] = field(default_factory=dict)
    vocabulary: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def image_ids(self) -> list[int]:
        """The ids of the scored frames, in dataset order."""
        return [image_id for seq in self.sequences for image_id, _ in seq.frames if image_id is not None]

    def units(self, model: Detector, batch_size: int) -> list[Unit]:
        """Whole sequences for a :class:`~vfe_hub.VideoDetector`; blocks of ``batch_size`` images otherwise."""
        from ..models.base import VideoDetector

        if isinstance(model, VideoDetector):
            return [Unit(tuple(path for _, path in seq.frames) if seq.listed else (seq.source,),
                         tuple(i for i, _ in seq.frames), seq.video_id) for seq in self.sequences]
        frames = [frame for seq in self.sequences for frame in seq.frames]
        blocks = [frames[k:k + batch_size] for k in range(0, len(frames), max(batch_size, 1))]
        return [Unit(tuple(path for _, path in block), tuple(i for i, _ in block)) for block in blocks]

    def options_for(self, model: Detector) -> dict[str, Any]:
        """The benchmark's ``predict`` options that ``model`` takes."""
        return {k: v for k, v in self.predict_options.items() if k in model.predict_options}

    def category_ids(self, model: Detector) -> list[int] | None:
        """The model's label -> dataset category id map where the benchmark needs one (else label + 1)."""
        if self.vocabulary is None:
            return None
        ids = model.category_ids
        if ids is None:
            raise DatasetError(f"{model.spec.name} has no {self.vocabulary} vocabulary (no category_ids); "
                               f"{self.vocabulary} needs a model that predicts {self.vocabulary} categories.")
        return ids


def predict_units(model: Detector, units: Sequence[Unit], indices: Sequence[int], *, batch_size: int,
                  options: dict[str, Any], progress: bool | None = None,
                  category_ids: list[int] | None = None) -> Iterator[tuple[int, list[tuple[Any, list[dict], dict]]]]:
    """Run ``units[u]`` for ``u`` in ``indices``, one ``predict`` call each; yield ``(u, [(id, records, image)])``
    with the COCO-style records (:meth:`~vfe_hub.Detections.to_json`, with the unit's video id) and the frame's
    :func:`~vfe_hub.results_writer.frame_entry` of each scored frame of the unit (frames of id ``None`` run but
    are left out).

    Records carry the frame's id as ``image_id``. Under the paper
    protocol a video model's shuffle continues as if every unit before ``u`` had run in the same process
    (:meth:`~vfe_hub.VideoDetector.paper_rng_states`).
    """
    from ..models.base import VideoDetector
    from ..results_writer import frame_entry

    states = (VideoDetector.paper_rng_states([len(unit.ids) for unit in units])
              if isinstance(model, VideoDetector) and model.paper_shuffle else None)
    missing = object()
    with progress_bar(total=sum(len(units[u].ids) for u in indices), unit="frame", desc=model.spec.name,
                      progress=progress) as bar:
        for u in indices:
            unit = units[u]
            if states is not None:
                model.paper_rng_state = states[u]
            try:
                items = []
                detections = model.predict(list(unit.inputs), batch_size=batch_size, progress=False, stream=True,
                                           **options)
                for item_id, det in zip_longest(unit.ids, detections, fillvalue=missing):
                    if item_id is missing or det is missing:
                        raise DatasetError(f"{', '.join(unit.inputs)} gave a different number of frames than the "
                                           f"{len(unit.ids)} listed for it; check that the folder holds exactly "
                                           f"the frames of the annotations.")
                    if item_id is not None:
                        records = det.cpu().to_json(image_id=item_id, category_ids=category_ids,
                                                    video_id=unit.video_id)
                        items.append((item_id, records, frame_entry(det.frame)))
                    bar.update(1)
            finally:
                if states is not None:
                    model.paper_rng_state = None
            yield u, items


def _imagenet_vid(*, root: str | os.PathLike, ann_file: str | os.PathLike | None = None, limit: int | None = None,
                  protocol: str = "paper", motion_iou: str = "fgfa", progress: bool | None = None) -> Benchmark:
    """ImageNet VID val: frames from ``<root>/Data/VID/<video>/``; ground truth from ``ann_file`` (COCO-VID JSON)
    or the XML annotations under ``root``; the first ``limit`` videos only if given (with the motion table sliced
    alike). Scored by :func:`vfe_hub.evaluation.imagenet_vid.evaluate`; video models run ``protocol``."""
    root = Path(root)
    gt = (imagenet_vid_data.load_coco_vid(ann_file) if ann_file
          else imagenet_vid_data.load_vid_xml(root, progress=progress))
    table = imagenet_vid_data.motion_iou_table(motion_iou, progress=progress) if motion_iou != "compute" \
        else imagenet_vid_data.compute_motion_iou(gt)
    imagenet_vid_data.check_motion_table(gt, table)
    if limit is not None:
        videos = gt.videos[:limit]
        count = sum(n for _, _, n in videos)
        gt, table = imagenet_vid_data.VidGroundTruth(gt.frames[:count], videos), table[:count]
    data = root / "Data" / "VID"
    sequences = [FrameSequence(str(data / name), tuple((first + k, str(data / gt.frames[first + k - 1].file_name))
                                                       for k in range(count)))
                 for name, first, count in gt.videos]

    def check_files() -> None:
        for seq in sequences:
            if not os.path.isdir(seq.source):
                raise DatasetError(f"{seq.source} is missing: ImageNet VID frames are expected under "
                                   f"<root>/Data/VID/.")

    def score(records: list[dict]) -> dict[str, float]:
        return imagenet_vid.evaluate(gt, records, motion_iou=table, progress=progress)

    return Benchmark("imagenet_vid", sequences, score, check_files, {"protocol": protocol})


def _lvis_subset(ann_file: Path, limit: int | None) -> lvis_data.LvisGroundTruth:
    """The annotation file, restricted to its first ``limit`` images (by id) if given."""
    if limit is None:
        return lvis_data.LvisGroundTruth.load(ann_file)
    data = json.loads(ann_file.read_text())
    images = sorted(data["images"], key=lambda image: image["id"])[:limit]
    ids = {image["id"] for image in images}
    return lvis_data.LvisGroundTruth.load({**data, "images": images,
                                           "annotations": [a for a in data["annotations"] if a["image_id"] in ids]})


def _lvis_v1(*, root: str | os.PathLike, ann_file: str | os.PathLike | None = None, limit: int | None = None,
             strict: bool = False, progress: bool | None = None) -> Benchmark:
    """LVIS v1 val: images under the COCO root ``root`` (``train2017/`` and ``val2017/``), ground truth from
    ``ann_file`` (default ``<root>/annotations/lvis_v1_val.json``); the first ``limit`` images (by id) if given.

    Scored by the box metrics of :func:`vfe_hub.evaluation.lvis.evaluate` (300 detections per image) and, for
    models with masks, the mask metrics prefixed ``mask_``. The model's ``category_ids`` map its labels to LVIS
    category ids. Results of categories the file lacks count toward the 300 and are then left out, with a warning,
    as the official evaluator does; ``strict=True`` refuses them.
    """
    return _lvis("lvis_v1", "lvis_v1_val.json", Path(root), ann_file, limit, strict, progress)


def _lvis_v05(*, root: str | os.PathLike, ann_file: str | os.PathLike | None = None, limit: int | None = None,
              strict: bool = False, progress: bool | None = None) -> Benchmark:
    """LVIS v0.5 val, as :func:`_lvis_v1` with ``ann_file`` defaulting to ``<root>/annotations/lvis_v0.5_val.json``
    (5000 COCO 2017 val images; the evaluation rules of LVIS v0.5 and v1 are the same: 300 detections per image,
    APr/APc/APf by the categories' frequency in the file). The model's ``category_ids`` are LVIS v0.5 ids."""
    return _lvis("lvis_v05", "lvis_v0.5_val.json", Path(root), ann_file, limit, strict, progress)


def _lvis(name: str, default_file: str, root: Path, ann_file: str | os.PathLike | None, limit: int | None,
          strict: bool, progress: bool | None) -> Benchmark:
    ann_file = Path(ann_file) if ann_file else root / "annotations" / default_file
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file} is missing: pass ann_file=<{default_file}> (from lvisdataset.org) or "
                           f"put it under <root>/annotations/.")
    gt = _lvis_subset(ann_file, limit)
    sequences = [FrameSequence(str(path), ((int(i), str(path)),))
                 for i, path in ((i, gt.image_path(root, int(i))) for i in gt.image_ids)]

    def check_files() -> None:
        missing = [seq.source for seq in sequences if not os.path.isfile(seq.source)]
        if missing:
            raise DatasetError(f"{len(missing)} LVIS images are missing under {root}, e.g. {missing[0]}; "
                               f"{default_file} needs the COCO images (train2017/ and val2017/) under root.")

    def score(records: list[dict]) -> dict[str, float]:
        metrics = lvis.evaluate(gt, records, iou_type="bbox", max_dets=300, progress=progress, strict=strict)
        if records and "segmentation" in records[0]:
            segm = lvis.evaluate(gt, records, iou_type="segm", max_dets=300, progress=progress, strict=strict)
            metrics.update({f"mask_{k}": v for k, v in segm.items()})
        return metrics

    return Benchmark(name, sequences, score, check_files, vocabulary="LVIS")


#: The metrics of TAO val, by name: track mAP (the TAO toolkit's) and TETA (the official TETA code's).
TAO_METRICS = ("track_map", "teta")


def _tao(*, root: str | os.PathLike, ann_file: str | os.PathLike | None = None, limit: int | None = None,
         fps: int | None = None, protocol: str = "paper", metrics: str | Sequence[str] = TAO_METRICS,
         strict: bool = False, progress: bool | None = None) -> Benchmark:
    """TAO val: frames under ``<root>/frames/`` (the images' ``file_name``), ground truth from ``ann_file`` (default
    ``<root>/annotations/validation.json``) turned into LVIS v1 category ids (:func:`.tao_data.to_lvis_v1`), scored
    from one run of the model with each of ``metrics`` (names of :data:`TAO_METRICS`, a list or comma-separated):
    ``"track_map"`` by :func:`vfe_hub.evaluation.tao.evaluate` (keys ``AP``, ``AP50``, ...), ``"teta"`` by
    :func:`vfe_hub.evaluation.teta.evaluate` (keys ``TETA``, ``LocA``, ...; every result kept, the official
    default); ``strict``: refuse results of categories the file lacks. See :func:`_tao_layout` for ``limit``,
    ``fps`` and ``protocol``."""
    chosen = _tao_metrics(metrics)
    default = Path(root) / "annotations" / "validation.json"

    def score(data: dict, records: list[dict]) -> dict[str, float]:
        gt = tao_data.TaoGroundTruth.load(data)
        scores = tao.evaluate(gt, records, progress=progress, strict=strict) if "track_map" in chosen else {}
        return {**scores, **(teta.evaluate(gt, records, strict=strict) if "teta" in chosen else {})}

    return _tao_layout("tao", Path(root), Path(ann_file) if ann_file else default, tao_data.to_lvis_v1, score,
                       limit=limit, fps=fps, protocol=protocol)


def _tao_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """``metrics`` (names of :data:`TAO_METRICS`, a sequence or a comma-separated string) checked, in that order."""
    names = [m.strip().lower() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    unknown = [m for m in names if m not in TAO_METRICS]
    if unknown or not names:
        hint = close_matches(unknown[0], TAO_METRICS) if unknown else []
        raise DatasetError(f"metrics={metrics!r}: TAO val computes {' and '.join(TAO_METRICS)} (one or both)"
                           + (f"; did you mean {hint[0]!r}?" if hint else "."))
    return tuple(m for m in TAO_METRICS if m in names)


def _tao_amodal(*, root: str | os.PathLike, ann_file: str | os.PathLike | None = None, limit: int | None = None,
                fps: int | None = None, protocol: str = "paper", strict: bool = False, progress: bool | None = None
                ) -> Benchmark:
    """TAO-Amodal val: TAO's frames under ``<root>/frames/``, ground truth from ``ann_file`` (default
    ``<root>/amodal_annotations/validation.json``) converted as TAO-Amodal's ``create_tao_amodal_v1.py`` does
    (:func:`.tao_amodal.to_lvis_v1`: amodal boxes, LVIS v1 ids), scored by
    :func:`vfe_hub.evaluation.tao_amodal.evaluate` (``strict``: refuse results of categories the file lacks). See
    :func:`_tao_layout` for ``limit``, ``fps`` and ``protocol``."""
    default = Path(root) / "amodal_annotations" / "validation.json"
    return _tao_layout("tao_amodal", Path(root), Path(ann_file) if ann_file else default, tao_amodal.to_lvis_v1,
                       lambda data, records: tao_amodal.evaluate(data, records, progress=progress, strict=strict),
                       limit=limit, fps=fps, protocol=protocol)


def _tao_layout(name: str, root: Path, ann_file: Path, convert: Callable[[dict], dict],
                score: Callable[[dict, list[dict]], dict[str, float]], *, limit: int | None, fps: int | None,
                protocol: str) -> Benchmark:
    """A benchmark on TAO's frames: each of the first ``limit`` videos (all if ``None``) runs as one sequence of
    its annotated frames in frame order (``protocol`` for trackers: ``"paper"``, GTR's evaluation); ``convert``
    turns the annotation file into the scorer's ground truth.

    ``fps=N`` runs denser frames, as Amodal-Expander's ``create_30fps_json.py`` selects them: the video folder's
    images in natural order, trimmed to the annotated span; between two annotated frames ``start`` and ``end``
    (positions) every ``max((end - start) // N, 1)``-th frame from ``start``; only the annotated frames are
    scored (``rm_30fps_dt_to_1fps.py``), under their ids of ``ann_file``.
    """
    from ..io import IMAGE_EXTENSIONS, natural_key

    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int) or fps < 1):
        raise DatasetError(f"fps={fps!r}: pass a positive number of frames per second to run (e.g. 5), or None "
                           "for the annotated frames only.")
    data = convert(lvis_data.read_json(ann_file, f"The {name} annotation file",
                                       f"pass ann_file=<the {name} annotation file> or put it at {ann_file}"))
    videos = data["videos"][:limit]
    if limit is not None:
        keep = {v["id"] for v in videos}
        data = {**data, "videos": videos, "images": [im for im in data["images"] if im["video_id"] in keep],
                "annotations": [a for a in data["annotations"] if a["video_id"] in keep],
                "tracks": [t for t in data["tracks"] if t["video_id"] in keep]}
    frames_dir = root / "frames"
    by_video: dict[int, list[dict]] = {}
    for image in data["images"]:
        by_video.setdefault(image["video_id"], []).append(image)

    def annotated(video: dict) -> list[tuple[int | None, str]]:
        images = sorted(by_video.get(video["id"], []), key=lambda im: im["frame_index"])
        return [(im["id"], str(frames_dir / im["file_name"])) for im in images]

    def denser(video: dict) -> list[tuple[int | None, str]]:
        listed = {Path(path).name: image_id for image_id, path in annotated(video)}
        folder = frames_dir / video["name"]
        if not folder.is_dir():
            raise DatasetError(f"{folder} is missing: fps={fps} needs every frame of the TAO videos under "
                               f"<root>/frames/<video name>/ (TAO's frames release).")
        names = sorted((e.name for e in os.scandir(folder) if Path(e.name).suffix.lower() in IMAGE_EXTENSIONS),
                       key=natural_key)
        marks = [i for i, name in enumerate(names) if name in listed]
        if not marks:
            return []
        names = names[marks[0]:marks[-1] + 1]
        marks = [m - marks[0] for m in marks] + [marks[-1] - marks[0] + 1]
        chosen = [name for start, end in zip(marks, marks[1:])
                  for name in names[start:end:max((end - start) // fps, 1)]]
        return [(listed.get(name), str(folder / name)) for name in chosen]

    sequences = [FrameSequence(str(frames_dir / v["name"]), tuple((denser if fps else annotated)(v)), listed=True,
                               video_id=v["id"]) for v in videos]

    def check_files() -> None:
        missing = [path for seq in sequences for _, path in seq.frames if not os.path.isfile(path)]
        if missing:
            raise DatasetError(f"{len(missing)} TAO frames are missing under {frames_dir}, e.g. {missing[0]}; TAO "
                               f"frames are expected at <root>/frames/<file_name of the annotation file>.")

    return Benchmark(name, sequences, lambda records: score(data, records), check_files, {"protocol": protocol})


DATASETS = {"imagenet_vid": _imagenet_vid, "lvis_v1": _lvis_v1, "lvis_v05": _lvis_v05, "tao": _tao,
            "tao_amodal": _tao_amodal}


def dataset_parameters() -> dict[str, set[str]]:
    """The keyword arguments each dataset of :data:`DATASETS` takes (besides ``root``)."""
    return {name: set(inspect.signature(read).parameters) for name, read in DATASETS.items()}


def dataset_name(dataset: str) -> str:
    """The canonical name of ``dataset`` (``"lvis_v1_val"`` -> ``"lvis_v1"``); :class:`DatasetError` if unknown."""
    name = dataset.removesuffix("_val")
    if name not in DATASETS:
        hint = close_matches(dataset, [f"{d}_val" for d in DATASETS])
        raise DatasetError(f"Unknown dataset {dataset!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + f" Known: {', '.join(f'{d}_val' for d in DATASETS)}.")
    return name


def load_benchmark(dataset: str, **kwargs: Any) -> Benchmark:
    """Read ``dataset``'s annotations (see :func:`_imagenet_vid` and :func:`_lvis_v1` for the arguments).

    Unknown arguments raise with the closest valid names; a missing ``root`` says what the folder holds."""
    name = dataset_name(dataset)
    read = DATASETS[name]
    parameters = inspect.signature(read).parameters
    if set(kwargs) - set(parameters):
        raise unknown_keyword_error(f"evaluate({dataset!r})", sorted(set(kwargs) - set(parameters)), parameters)
    if kwargs.get("root") is None:
        raise DatasetError(f"evaluate({dataset!r}) needs root=<{DATASET_ROOTS[name]}>.")
    return dataclasses.replace(read(**kwargs), args={k: v for k, v in kwargs.items() if k != "progress"})


def benchmark(dataset: str | Benchmark, *, progress: bool | None = None, **kwargs: Any) -> Benchmark:
    """Everything an evaluation of ``dataset`` needs before a model runs: its annotations read and the files
    scoring needs fetched (:func:`load_benchmark`, e.g. ImageNet VID's motion-IoU table), its frames checked.
    Loading a model takes far longer than this, so the command line calls it first: a missing file or an
    unreachable data host fails at once. A :class:`Benchmark` already read is returned as it is (``kwargs`` must
    then be empty: they were given when it was read)."""
    if isinstance(dataset, Benchmark):
        if kwargs:
            raise DatasetError(f"The {dataset.name} benchmark was read with its arguments already; leave out "
                               f"{', '.join(sorted(kwargs))}, or pass the dataset's name instead.")
        return dataset
    bench = load_benchmark(dataset, progress=progress, **kwargs)
    bench.check_files()
    return bench


def evaluate_model(model: Detector, dataset: str | Benchmark, *, batch_size: int = 1, progress: bool | None = None,
                   results_file: str | os.PathLike | None = None, shard: tuple[int, int] | None = None,
                   out_dir: str | os.PathLike | None = None, **kwargs: Any) -> dict[str, float]:
    """Score ``model`` on ``dataset`` (``"imagenet_vid"``: :func:`_imagenet_vid`; ``"lvis_v1_val"``:
    :func:`_lvis_v1`; ``"lvis_v05_val"``: :func:`_lvis_v05`; ``"tao_val"``: :func:`_tao` (track mAP and TETA,
    ``metrics=`` selects); ``"tao_amodal_val"``: :func:`_tao_amodal`; see them for the other arguments), or a
    :class:`Benchmark` read beforehand (:func:`benchmark`).

    ``results_file`` receives the COCO-style results (sorted by image id). ``shard=(i, n)`` with ``out_dir`` runs
    only shard ``i`` of ``n`` into ``out_dir`` (:func:`vfe_hub.sharding.evaluate`): the metrics come back only
    when ``n == 1``; otherwise score the complete folder with :func:`vfe_hub.sharding.merge_and_score`.
    """
    if shard is not None or out_dir is not None:
        from .. import sharding

        if out_dir is None or results_file is not None:
            raise DatasetError("shard=(i, n) needs out_dir=<a folder shared by the shards> (and no results_file: "
                               "the merged results are written to out_dir).")
        return sharding.evaluate(model, dataset, shard=shard or (0, 1), out_dir=out_dir, batch_size=batch_size,
                                 progress=progress, **kwargs)
    bench = benchmark(dataset, progress=progress, **kwargs)
    units = bench.units(model, batch_size)
    results = predict_units(model, units, range(len(units)), batch_size=batch_size, options=bench.options_for(model),
                            progress=progress, category_ids=bench.category_ids(model))
    items = sorted((item for _, unit_items in results for item in unit_items), key=lambda item: item[0])
    records = [record for _, item_records, _ in items for record in item_records]
    if results_file is not None:
        atomic_write(Path(results_file), lambda tmp: tmp.write_text(json.dumps(records)))
    return bench.score(records)
