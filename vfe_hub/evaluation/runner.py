"""Running a model over a benchmark and scoring it with the benchmark's official metric."""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DatasetError, close_matches, unknown_keyword_error
from ..hub import atomic_write
from . import imagenet_vid, imagenet_vid_data, lvis, lvis_data

if TYPE_CHECKING:
    from ..models.base import Detector


def _write_results(records: list[dict], results_file: str | os.PathLike | None) -> None:
    if results_file is not None:
        atomic_write(Path(results_file), lambda tmp: tmp.write_text(json.dumps(records)))


def _imagenet_vid(model: Detector, *, root: str | os.PathLike, ann_file: str | os.PathLike | None = None,
                  limit: int | None = None, protocol: str = "paper", batch_size: int = 1,
                  progress: bool | None = None, motion_iou: str = "fgfa",
                  results_file: str | os.PathLike | None = None) -> dict[str, float]:
    """ImageNet VID val: frames from ``<root>/Data/VID/<video>/``; ground truth from ``ann_file`` (COCO-VID JSON)
    or the XML annotations under ``root``; the first ``limit`` videos only if given (with the motion table sliced
    alike). Returns :func:`vfe_hub.evaluation.imagenet_vid.evaluate`'s metrics."""
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
    folders = [str(root / "Data" / "VID" / name) for name, _, _ in gt.videos]
    for folder in folders:
        if not os.path.isdir(folder):
            raise DatasetError(f"{folder} is missing: ImageNet VID frames are expected under <root>/Data/VID/.")
    first_id = {os.path.normpath(f): first for f, (_, first, _) in zip(folders, gt.videos)}
    results: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    records = []
    options = {"protocol": protocol} if "protocol" in model.predict_options else {}
    for det in model.predict(folders, batch_size=batch_size, progress=progress, stream=True, **options):
        image_id = first_id[os.path.normpath(det.frame.sequence)] + det.frame.index
        det = det.cpu()
        results[image_id] = (det.boxes.numpy(), det.scores.numpy(), det.labels.numpy() + 1)
        if results_file is not None:
            records.extend(det.to_json(image_id=image_id))
    _write_results(records, results_file)
    return imagenet_vid.evaluate(gt, results, motion_iou=table, progress=progress)


def _lvis_subset(ann_file: Path, limit: int | None) -> lvis_data.LvisGroundTruth:
    """The annotation file, restricted to its first ``limit`` images (by id) if given."""
    if limit is None:
        return lvis_data.LvisGroundTruth.load(ann_file)
    data = json.loads(ann_file.read_text())
    images = sorted(data["images"], key=lambda image: image["id"])[:limit]
    ids = {image["id"] for image in images}
    return lvis_data.LvisGroundTruth.load({**data, "images": images,
                                           "annotations": [a for a in data["annotations"] if a["image_id"] in ids]})


def _lvis_v1(model: Detector, *, root: str | os.PathLike, ann_file: str | os.PathLike | None = None,
             limit: int | None = None, batch_size: int = 1, progress: bool | None = None,
             results_file: str | os.PathLike | None = None) -> dict[str, float]:
    """LVIS v1 val: images under the COCO root ``root`` (``train2017/`` and ``val2017/``), ground truth from
    ``ann_file`` (default ``<root>/annotations/lvis_v1_val.json``); the first ``limit`` images (by id) if given.

    Returns the box metrics of :func:`vfe_hub.evaluation.lvis.evaluate` (300 detections per image) and, for
    models with masks, the mask metrics prefixed ``mask_``. The model's ``category_ids`` map its labels to LVIS
    category ids.
    """
    root = Path(root)
    ann_file = Path(ann_file) if ann_file else root / "annotations" / "lvis_v1_val.json"
    if not ann_file.is_file():
        raise DatasetError(f"{ann_file} is missing: pass ann_file=<lvis_v1_val.json> (from lvisdataset.org) or "
                           f"put it under <root>/annotations/.")
    category_ids = getattr(model, "category_ids", None)
    if category_ids is None:
        raise DatasetError(f"{model.spec.name} has no LVIS vocabulary (no category_ids); LVIS needs a model that "
                           f"predicts LVIS categories.")
    gt = _lvis_subset(ann_file, limit)
    paths = {int(i): gt.image_path(root, int(i)) for i in gt.image_ids}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} LVIS images are missing under {root}, e.g. {missing[0]}; LVIS v1 val "
                           f"needs COCO 2017 train2017/ and val2017/ under root.")
    image_id = {os.path.normpath(p): i for i, p in paths.items()}
    records: list[dict] = []
    for det in model.predict([str(p) for p in paths.values()], batch_size=batch_size, progress=progress,
                             stream=True):
        records.extend(det.cpu().to_json(image_id=image_id[os.path.normpath(det.frame.source)],
                                         category_ids=category_ids))
    _write_results(records, results_file)
    metrics = lvis.evaluate(gt, records, iou_type="bbox", max_dets=300, progress=progress)
    if records and "segmentation" in records[0]:
        segm = lvis.evaluate(gt, records, iou_type="segm", max_dets=300, progress=progress)
        metrics.update({f"mask_{k}": v for k, v in segm.items()})
    return metrics


DATASETS = {"imagenet_vid": _imagenet_vid, "lvis_v1": _lvis_v1}
#: what each dataset's ``root`` is
ROOTS = {"imagenet_vid": "the ILSVRC folder, with Data/VID/<video>/ frames (and Annotations/VID/ without ann_file)",
         "lvis_v1": "the COCO 2017 folder, with train2017/ and val2017/ (and annotations/lvis_v1_val.json)"}


def evaluate_model(model: Detector, dataset: str, **kwargs: Any) -> dict[str, float]:
    """Score ``model`` on ``dataset`` (``"imagenet_vid"``: :func:`_imagenet_vid`; ``"lvis_v1_val"``:
    :func:`_lvis_v1`; see them for the arguments)."""
    name = dataset.removesuffix("_val")
    if name not in DATASETS:
        hint = close_matches(dataset, [f"{d}_val" for d in DATASETS])
        raise DatasetError(f"Unknown dataset {dataset!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + f" Known: {', '.join(f'{d}_val' for d in DATASETS)}.")
    run = DATASETS[name]
    parameters = dict(list(inspect.signature(run).parameters.items())[1:])
    if set(kwargs) - set(parameters):
        raise unknown_keyword_error(f"evaluate({dataset!r})", sorted(set(kwargs) - set(parameters)), parameters)
    if kwargs.get("root") is None:
        raise DatasetError(f"evaluate({dataset!r}) needs root=<{ROOTS[name]}>.")
    return run(model, **kwargs)
