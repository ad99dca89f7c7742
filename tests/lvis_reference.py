"""Test helpers for the LVIS evaluator: the official ``lvis`` 0.5.3 evaluation run under numpy 2, and generated
LVIS-like ground truth and results.

The official ``LVISEval.accumulate`` calls ``astype(dtype=np.float)``. ``np.float`` (an alias of the builtin
``float``) was deprecated in numpy 1.20 and removed in 1.24, so on numpy 2 the official code fails with an
``AttributeError``; lvis 0.5.3 is the last release. :func:`numpy_float_alias` puts the alias back for the
duration of a ``with`` block only (and removes it afterwards), so that nothing else in the test session can come
to depend on it. ``np.float`` is ``float``, which numpy maps to float64: the official code then computes exactly
what it computed on the numpy it was written for. The official classes only take a file path for the ground
truth, so :func:`official_lvis_eval` writes the dict to a temporary JSON first (JSON keeps Python floats exactly).

The generator (:func:`make_ground_truth`, :func:`make_results`) covers what the evaluation rules distinguish:
positive, negative, not-exhaustive and unrelated categories per image; categories without annotations; the three
frequencies (or only some); annotations on the area-range bounds, of zero area, ignored, crowd-flagged, on unknown
images or categories, duplicated boxes; polygons, compressed and uncompressed RLE; tied scores, degenerate boxes,
images with more results than ``max_dets``; results with boxes, with masks as RLE (counts str or bytes) or
polygons, or with masks only; results of category ids that are no category (:func:`with_unknown_categories`).
"""
from __future__ import annotations

import collections
import copy
import json
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

AREA_CHOICES = ("mask", "box", "small_bound", "medium_bound", "large", "zero")
#: category ids of no category of the generated ground truths: a 0-based class index, an id past them all
UNKNOWN_CATEGORY_IDS = (0, 10 ** 6 + 1)


@contextmanager
def numpy_float_alias() -> Iterator[None]:
    """``np.float = float`` inside the block, restored (removed) afterwards; see the module docstring."""
    had = "float" in vars(np)
    previous = vars(np).get("float")
    np.float = float
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # lvis calls Logger.warn
            yield
    finally:
        if had:
            np.float = previous
        else:
            del np.float


def official_lvis_eval(ground_truth: dict[str, Any], results: list[dict[str, Any]], iou_type: str,
                       max_dets: int = 300) -> dict[str, float]:
    """``get_results()`` of the official ``LVISEval`` on copies of the inputs (it writes into result dicts)."""
    from lvis import LVIS, LVISEval, LVISResults

    with tempfile.TemporaryDirectory() as tmp, numpy_float_alias():
        path = Path(tmp) / "ground_truth.json"
        path.write_text(json.dumps(ground_truth))
        gt = LVIS(str(path))
        evaluator = LVISEval(gt, LVISResults(gt, copy.deepcopy(results), max_dets=max_dets), iou_type)
        evaluator.params.max_dets = max_dets
        evaluator.run()
        return {key: float(value) for key, value in evaluator.get_results().items()}


# ---------------------------------------------------------------------------------------------------------------
# Ground truth
# ---------------------------------------------------------------------------------------------------------------

def make_ground_truth(seed: int, *, version: str = "v1", num_images: int = 14, num_categories: int = 20,
                      frequencies: str = "rcf", zero_id: bool = False) -> dict[str, Any]:
    """An LVIS-like annotation dict (``version`` ``"v1"``: ``coco_url``; ``"v0.5"``: COCO 2014 ``file_name``).

    Image and category ids are sparse and the annotations shuffled. ``zero_id`` gives one annotation the id 0.
    """
    rng = np.random.default_rng(seed)
    category_ids = np.sort(rng.choice(np.arange(1, 3 * num_categories), num_categories, replace=False)).tolist()
    letters = list(frequencies) + rng.choice(list(frequencies), num_categories - len(frequencies)).tolist()
    categories = [{"id": c, "name": f"category_{c}", "frequency": f}
                  for c, f in zip(category_ids, rng.permutation(letters))]
    without_annotations = set(category_ids[:3])
    usable = [c for c in category_ids if c not in without_annotations]
    images, annotations = [], []
    for image_id in rng.choice(np.arange(1, 10 ** 6), num_images, replace=False).tolist():
        image = _image(rng, image_id, version)
        positives = [] if rng.random() < 0.15 else rng.choice(usable, rng.integers(1, 5), replace=False).tolist()
        for category_id in positives:
            annotations.extend(_annotations(rng, image, category_id))
            if rng.random() < 0.3:
                annotations.extend(_twins(rng, image, category_id))
        others = [c for c in category_ids if c not in positives]
        image["neg_category_ids"] = rng.choice(others, rng.integers(0, 5), replace=False).tolist()
        image["not_exhaustive_category_ids"] = [c for c in positives if rng.random() < 0.3]
        if rng.random() < 0.3:
            image["neg_category_ids"].append(10 ** 6)  # not a category: the rules only test membership
        images.append(image)
    annotations += _stray_annotations(rng, images[0], category_ids)
    order = rng.permutation(len(annotations))
    annotations = [annotations[i] for i in order]
    for ann, ann_id in zip(annotations, rng.choice(np.arange(1, 10 ** 7), len(annotations), replace=False)):
        ann["id"] = int(ann_id)
    if zero_id:
        annotations[0]["id"] = 0
    return {"info": {"seed": seed}, "images": images, "annotations": annotations, "categories": categories,
            "licenses": []}


def _image(rng: np.random.Generator, image_id: int, version: str) -> dict[str, Any]:
    image = {"id": image_id, "height": int(rng.integers(64, 221)), "width": int(rng.integers(64, 221))}
    if version == "v1":
        split = "val2017" if rng.random() < 0.5 else "train2017"
        image["coco_url"] = f"http://images.cocodataset.org/{split}/{image_id:012d}.jpg"
    else:
        image["file_name"] = f"COCO_val2014_{image_id:012d}.jpg"
    return image


def _annotations(rng: np.random.Generator, image: dict[str, Any], category_id: int) -> list[dict[str, Any]]:
    anns: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(1, 6))):
        if anns and rng.random() < 0.15:
            box = list(anns[-1]["bbox"])  # the same box twice: equal IoUs
        else:
            box = random_box(rng, image["height"], image["width"])
        segmentation = _gt_segmentation(rng, box, image["height"], image["width"])
        ann = {"image_id": image["id"], "category_id": category_id, "bbox": box, "segmentation": segmentation,
               "area": _area(rng, box, segmentation, image), "iscrowd": int(rng.random() < 0.1)}
        if rng.random() < 0.05:
            ann["ignore"] = 1
        anns.append(ann)
    return anns


def _twins(rng: np.random.Generator, image: dict[str, Any], category_id: int) -> list[dict[str, Any]]:
    """Two boxes shifted left and right of a middle one by the same integer amount: a result on the middle box has
    exactly equal IoUs with both (:func:`make_results` adds it), and which one it takes decides whether a result on
    one of them matches."""
    w, h = float(rng.integers(20, image["width"] // 2)), float(rng.integers(20, image["height"] // 2))
    x, y, shift = float(rng.integers(8, image["width"] - w)), float(rng.integers(0, image["height"] - h)), 4.0
    return [{"image_id": image["id"], "category_id": category_id, "bbox": box, "segmentation": [rectangle(box)],
             "area": box[2] * box[3]} for box in ([x - shift, y, w, h], [x + shift, y, w, h])]


def _stray_annotations(rng: np.random.Generator, image: dict[str, Any], category_ids: list[int]
                       ) -> list[dict[str, Any]]:
    """Annotations the official evaluation leaves out: of an unknown image, of an unknown category."""
    box = random_box(rng, image["height"], image["width"])
    polygon = [rectangle(box)]
    return [{"image_id": 10 ** 7, "category_id": category_ids[0], "bbox": box, "segmentation": polygon,
             "area": 500.0},
            {"image_id": image["id"], "category_id": 10 ** 6, "bbox": box, "segmentation": polygon, "area": 500.0}]


def _area(rng: np.random.Generator, box: list[float], segmentation: Any, image: dict[str, Any]) -> float:
    choice = rng.choice(AREA_CHOICES, p=[0.45, 0.2, 0.08, 0.08, 0.14, 0.05])
    if choice == "mask":
        rle = segmentation
        if isinstance(segmentation, list) or isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, image["height"], image["width"])
            rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
        return float(mask_utils.area(rle))
    return {"box": box[2] * box[3], "small_bound": 32.0 ** 2, "medium_bound": 96.0 ** 2,
            "large": 9216.0 + float(rng.integers(1, 20000)), "zero": 0.0}[choice]


def _gt_segmentation(rng: np.random.Generator, box: list[float], height: int, width: int) -> Any:
    polygons = random_polygons(rng, box)
    kind = rng.random()
    if kind < 0.75:
        return polygons
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if kind < 0.88:
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools' decode on numpy 2
        return uncompressed_rle(mask_utils.decode(rle))


def random_box(rng: np.random.Generator, height: int, width: int) -> list[float]:
    """``[x, y, w, h]`` inside the image, sometimes of integer or round sizes (exact 32 or 96 sides)."""
    kind = rng.random()
    if kind < 0.1 and min(height, width) > 97:
        side = 32.0 if rng.random() < 0.5 else 96.0
        return [float(rng.integers(0, width - side)), float(rng.integers(0, height - side)), side, side]
    w = float(rng.uniform(2, width * 0.8))
    h = float(rng.uniform(2, height * 0.8))
    x = float(rng.uniform(0, width - w))
    y = float(rng.uniform(0, height - h))
    box = [x, y, w, h]
    return [float(round(v)) for v in box] if kind < 0.3 else box


def rectangle(box: list[float]) -> list[float]:
    x, y, w, h = box
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def random_polygons(rng: np.random.Generator, box: list[float]) -> list[list[float]]:
    """A rectangle, an octagon in the box, or two rectangles side by side."""
    x, y, w, h = box
    kind = rng.random()
    if kind < 0.4:
        return [rectangle(box)]
    if kind < 0.8:
        angles = np.sort(rng.uniform(0, 2 * np.pi, 8))
        radius = rng.uniform(0.6, 1.0, 8)
        xs = x + w / 2 + np.cos(angles) * radius * w / 2
        ys = y + h / 2 + np.sin(angles) * radius * h / 2
        return [np.stack([xs, ys], axis=1).ravel().tolist()]
    return [rectangle([x, y, w / 2, h]), rectangle([x + w * 0.6, y, w * 0.4, h])]


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """The uncompressed RLE (``counts`` a list of run lengths, column-major, zeros first) of a binary mask."""
    flat = mask.ravel(order="F")
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] + counts) if flat[0] else counts}


# ---------------------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------------------

def make_results(ground_truth: dict[str, Any], seed: int, *, masks: str | None = None, boxes: bool = True,
                 crowded_images: int = 2, crowd_size: int = 40) -> list[dict[str, Any]]:
    """Results near the annotations and elsewhere, in every kind of category of each image.

    ``masks``: ``None`` (boxes only), ``"rle"`` (compressed RLE, counts str or bytes) or ``"mixed"`` (RLE or
    polygons). ``boxes=False`` leaves out ``bbox`` (masks only). ``crowded_images`` images get ``crowd_size``
    more results, to go past ``max_dets``.
    """
    rng = np.random.default_rng(seed + 1000)
    category_ids = [c["id"] for c in ground_truth["categories"]]
    by_image: dict[int, list[dict[str, Any]]] = {im["id"]: [] for im in ground_truth["images"]}
    for ann in ground_truth["annotations"]:
        if ann["image_id"] in by_image and ann["category_id"] in category_ids:
            by_image[ann["image_id"]].append(ann)
    results = []
    for index, image in enumerate(ground_truth["images"]):
        anns = by_image[image["id"]]
        extra = crowd_size if index < crowded_images else 0
        for category_id, box in _result_boxes(rng, image, anns, category_ids, extra):
            result = {"image_id": image["id"], "category_id": category_id, "bbox": box, "score": _score(rng)}
            if masks is not None:
                result["segmentation"] = _result_mask(rng, box, image, masks)
            if not boxes:
                del result["bbox"]
            results.append(result)
    return [results[i] for i in rng.permutation(len(results))]


def _result_boxes(rng: np.random.Generator, image: dict[str, Any], anns: list[dict[str, Any]],
                  category_ids: list[int], extra: int) -> Iterator[tuple[int, list[float]]]:
    height, width = image["height"], image["width"]
    for i, first in enumerate(anns):
        for second in anns[i + 1:]:
            x1, x2 = first["bbox"][0], second["bbox"][0]
            if (first["bbox"][1:] == second["bbox"][1:] and abs(x1 - x2) == 8
                    and first["category_id"] == second["category_id"]):
                yield first["category_id"], [(x1 + x2) / 2, *first["bbox"][1:]]  # equal IoUs with both twins
                yield first["category_id"], list((first, second)[int(rng.integers(0, 2))]["bbox"])
    for ann in anns:
        for _ in range(int(rng.integers(0, 4))):
            category_id = ann["category_id"] if rng.random() < 0.85 else int(rng.choice(category_ids))
            yield category_id, jitter(rng, ann["bbox"])
    kinds = [image["neg_category_ids"], image["not_exhaustive_category_ids"], category_ids,
             [a["category_id"] for a in anns]]
    for _ in range(int(rng.integers(2, 8)) + extra):
        pool = [c for c in kinds[int(rng.integers(0, len(kinds)))] if c in category_ids] or category_ids
        yield int(rng.choice(pool)), _odd_box(rng, height, width)


def jitter(rng: np.random.Generator, box: list[float]) -> list[float]:
    """``box`` moved and resized by 0 to 30 % of its size (0: the same box)."""
    scale = rng.choice([0.0, 0.03, 0.1, 0.2, 0.3])
    x, y, w, h = box
    dx, dy, dw, dh = rng.normal(0, scale, 4) * [w, h, w, h]
    return [x + dx, y + dy, max(w + dw, 1.0), max(h + dh, 1.0)]


def _odd_box(rng: np.random.Generator, height: int, width: int) -> list[float]:
    """Mostly a random box; sometimes of zero width (area 0) or of negative width and height (area > 0)."""
    box = random_box(rng, height, width)
    kind = rng.random()
    if kind < 0.04:
        box[2] = 0.0
    elif kind < 0.07:
        box[2], box[3] = -box[2], -box[3]
    return box


def _score(rng: np.random.Generator) -> float:
    kind = rng.random()
    if kind < 0.4:
        return float(rng.choice([0.5, 0.25, 0.9]))  # ties inside and across images
    return round(float(rng.random()), 2 if kind < 0.7 else 8)


def _result_mask(rng: np.random.Generator, box: list[float], image: dict[str, Any], masks: str) -> Any:
    x, y, w, h = box
    inside = [min(x, x + w), min(y, y + h), max(abs(w), 1.0), max(abs(h), 1.0)]
    polygons = random_polygons(rng, inside)
    if masks == "mixed" and rng.random() < 0.3:
        return polygons
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, image["height"], image["width"]))
    if rng.random() < 0.5:
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


def with_unknown_categories(ground_truth: dict[str, Any], results: list[dict[str, Any]], seed: int, *,
                            max_dets: int, masks: str | None = None, boxes: bool = True) -> list[dict[str, Any]]:
    """``results`` and results of :data:`UNKNOWN_CATEGORY_IDS` (made like :func:`make_results`' with ``masks`` and
    ``boxes``): copies of about a fifth of the results (their box, their score or another), and ``max_dets`` at
    the best score of the image with the most results, listed in the middle: they push that image's known results
    past the cap, except those of that score listed before them (ties in input order)."""
    rng = np.random.default_rng(seed + 2000)
    images = {image["id"]: image for image in ground_truth["images"]}

    def unknown(image_id: int, box: list[float] | None, score: float) -> dict[str, Any]:
        image = images[image_id]
        box = list(box) if box is not None else random_box(rng, image["height"], image["width"])
        result = {"image_id": image_id, "category_id": int(rng.choice(UNKNOWN_CATEGORY_IDS)), "bbox": box,
                  "score": score}
        if masks is not None:
            result["segmentation"] = _result_mask(rng, box, image, masks)
        if not boxes:
            del result["bbox"]
        return result

    copies = [unknown(r["image_id"], r.get("bbox"), r["score"] if rng.random() < 0.5 else _score(rng))
              for r in results if rng.random() < 0.2]
    mixed = [(results + copies)[i] for i in rng.permutation(len(results) + len(copies))]
    counts = collections.Counter(r["image_id"] for r in results)
    crowded = max(sorted(counts), key=counts.get)
    best = max(r["score"] for r in results if r["image_id"] == crowded)
    middle = len(mixed) // 2
    return mixed[:middle] + [unknown(crowded, None, best) for _ in range(max_dets)] + mixed[middle:]
