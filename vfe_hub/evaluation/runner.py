"""Running a model over a benchmark and scoring it with the benchmark's official metric."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DatasetError, close_matches
from ..hub import atomic_write
from . import imagenet_vid, imagenet_vid_data

if TYPE_CHECKING:
    from ..models.base import Detector

DATASETS = ("imagenet_vid",)


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
    if results_file is not None:
        atomic_write(Path(results_file), lambda tmp: tmp.write_text(json.dumps(records)))
    return imagenet_vid.evaluate(gt, results, motion_iou=table, progress=progress)


def evaluate_model(model: Detector, dataset: str, **kwargs: Any) -> dict[str, float]:
    """Score ``model`` on ``dataset`` (``"imagenet_vid"``: see :func:`_imagenet_vid` for the arguments)."""
    name = dataset.removesuffix("_val")
    if name not in DATASETS:
        hint = close_matches(dataset, DATASETS)
        raise DatasetError(f"Unknown dataset {dataset!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                           + f" Known: {', '.join(DATASETS)}.")
    return _imagenet_vid(model, **kwargs)
