"""Time vfe_hub's LVIS evaluator against the official ``lvis`` 0.5.3 ``LVISEval`` on a generated LVIS-sized case.

    python benchmarks/lvis_eval_speed.py --images 2000

The case has LVIS v1's 1,203 categories (337 rare, 461 common, 405 frequent), ``--images`` images of 640 x 480
with about 12 polygon annotations each (LVIS v1 val: 12.3), negative and not-exhaustive categories per image, and
300 results per image: jittered copies of the annotations, false positives in positive and negative categories,
and results of unrelated categories (dropped by the federated rules). Results carry boxes and compressed-RLE
masks. Both evaluators start from the annotation file on disk and the list of results; the official one runs
with ``np.float`` restored for its duration (it was removed in numpy 1.24 and lvis 0.5.3 still uses it). The
table gives both times, vfe_hub's time with the ground truth loaded beforehand, and the largest absolute
difference over the 13 metrics (0 when the results are bit-equal).
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from vfe_hub.evaluation.lvis import evaluate
from vfe_hub.evaluation.lvis_data import LvisGroundTruth

FREQUENCY_COUNTS = {"r": 337, "c": 461, "f": 405}
HEIGHT, WIDTH = 480, 640


@contextmanager
def numpy_float_alias() -> Iterator[None]:
    """``np.float = float`` for the official code (``accumulate`` calls ``astype(np.float)``), removed after."""
    np.float = float
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        del np.float


def octagons(rng: np.random.Generator, boxes: np.ndarray) -> list[list[list[float]]]:
    """One octagon inside each ``[x, y, w, h]`` box, as COCO polygons."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, (len(boxes), 8)), axis=1)
    radius = rng.uniform(0.7, 1.0, (len(boxes), 8))
    cx, cy = boxes[:, :1] + boxes[:, 2:3] / 2, boxes[:, 1:2] + boxes[:, 3:4] / 2
    xs = cx + np.cos(angles) * radius * boxes[:, 2:3] / 2
    ys = cy + np.sin(angles) * radius * boxes[:, 3:4] / 2
    return [[row.tolist()] for row in np.stack([xs, ys], axis=2).reshape(len(boxes), 16)]


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    size = np.exp(rng.uniform(np.log(4), np.log(400), (n, 2)))
    size = np.minimum(size, [WIDTH - 1, HEIGHT - 1])
    corner = rng.uniform(0, 1, (n, 2)) * ([WIDTH, HEIGHT] - size)
    return np.round(np.concatenate([corner, size], axis=1), 2)


def make_case(num_images: int, dets_per_image: int, seed: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """LVIS-like ground truth and results (module docstring)."""
    rng = np.random.default_rng(seed)
    frequencies = rng.permutation(np.repeat(list(FREQUENCY_COUNTS), list(FREQUENCY_COUNTS.values())))
    categories = [{"id": i, "name": f"category_{i}", "frequency": str(f)} for i, f in enumerate(frequencies, 1)]
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        positives = rng.choice(np.arange(1, len(categories) + 1), rng.integers(1, 7), replace=False)
        labels = np.repeat(positives, rng.integers(1, 5, len(positives)))
        boxes = random_boxes(rng, len(labels))
        for label, box, polygon in zip(labels, boxes, octagons(rng, boxes)):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label),
                                "bbox": box.tolist(), "area": float(box[2] * box[3] * 0.8),
                                "segmentation": polygon})
        negatives = rng.choice(np.setdiff1d(np.arange(1, len(categories) + 1), positives), rng.integers(0, 10),
                               replace=False)
        images.append({"id": image_id, "height": HEIGHT, "width": WIDTH,
                       "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg",
                       "neg_category_ids": negatives.tolist(),
                       "not_exhaustive_category_ids": positives[rng.random(len(positives)) < 0.1].tolist()})
        results += image_results(rng, image_id, labels, boxes, np.concatenate([positives, negatives]),
                                 len(categories), dets_per_image)
    return {"images": images, "annotations": annotations, "categories": categories}, results


def image_results(rng: np.random.Generator, image_id: int, labels: np.ndarray, boxes: np.ndarray,
                  known: np.ndarray, num_categories: int, count: int) -> list[dict[str, Any]]:
    """Half near annotations, a fifth in the image's positive or negative categories, the rest anywhere."""
    near, inside = count // 2, count // 5
    which = rng.integers(0, len(labels), near)
    jittered = boxes[which] + rng.normal(0, 0.1, (near, 4)) * boxes[which][:, [2, 3, 2, 3]]
    jittered[:, 2:] = np.maximum(jittered[:, 2:], 1)
    dt_boxes = np.round(np.concatenate([jittered, random_boxes(rng, count - near)]), 2)
    dt_labels = np.concatenate([labels[which], rng.choice(known, inside),
                                rng.integers(1, num_categories + 1, count - near - inside)])
    rles = mask_utils.frPyObjects([poly[0] for poly in octagons(rng, dt_boxes)], HEIGHT, WIDTH)
    scores = np.round(rng.random(count), 4)
    return [{"image_id": image_id, "category_id": int(c), "bbox": b.tolist(), "score": float(s),
             "segmentation": {"size": r["size"], "counts": r["counts"].decode("ascii")}}
            for c, b, s, r in zip(dt_labels, dt_boxes, scores, rles)]


def official(path: Path, results: list[dict[str, Any]], iou_type: str) -> tuple[dict[str, float], float]:
    from lvis import LVIS, LVISEval, LVISResults

    results = copy.deepcopy(results)  # LVISResults writes into the dicts; not timed
    gc.collect()
    with numpy_float_alias():
        start = time.perf_counter()
        gt = LVIS(str(path))
        evaluator = LVISEval(gt, LVISResults(gt, results), iou_type)
        evaluator.run()
        elapsed = time.perf_counter() - start
    return {k: float(v) for k, v in evaluator.get_results().items()}, elapsed


def ours(path: Path, results: list[dict[str, Any]], iou_type: str) -> tuple[dict[str, float], float, float]:
    gc.collect()
    start = time.perf_counter()
    scores = evaluate(path, results, iou_type=iou_type)
    from_file = time.perf_counter() - start
    gt = LvisGroundTruth.load(path)
    gc.collect()
    start = time.perf_counter()
    evaluate(gt, results, iou_type=iou_type)
    return scores, from_file, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--dets-per-image", type=int, default=300)
    parser.add_argument("--iou-types", nargs="+", default=["bbox", "segm"], choices=["bbox", "segm"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-official", action="store_true", help="time vfe_hub only")
    args = parser.parse_args()

    start = time.perf_counter()
    ground_truth, results = make_case(args.images, args.dets_per_image, args.seed)
    print(f"{args.images} images, {len(ground_truth['categories'])} categories, {len(ground_truth['annotations'])} "
          f"annotations, {len(results)} results; generated in {time.perf_counter() - start:.1f} s on "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy "
          f"{np.__version__}\n")
    print("| iou_type | official LVISEval (s) | vfe_hub (s) | vfe_hub, gt loaded (s) | speed-up | max abs diff | AP |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lvis_generated.json"
        path.write_text(json.dumps(ground_truth))
        for iou_type in args.iou_types:
            scores, from_file, loaded = ours(path, results, iou_type)
            if args.skip_official:
                print(f"| {iou_type} | - | {from_file:.2f} | {loaded:.2f} | - | - | {scores['AP']:.4f} |")
                continue
            reference, reference_time = official(path, results, iou_type)
            diff = max(abs(scores[k] - reference[k]) for k in reference)
            print(f"| {iou_type} | {reference_time:.2f} | {from_file:.2f} | {loaded:.2f} | "
                  f"{reference_time / from_file:.1f}x | {diff:.3g} | {scores['AP']:.4f} |")


if __name__ == "__main__":
    main()
