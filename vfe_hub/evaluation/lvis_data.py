"""LVIS ground truth (v0.5 and v1 annotation files), read once for :func:`vfe_hub.evaluation.lvis.evaluate`.

An LVIS file is a COCO-style JSON whose categories carry a ``frequency`` (``r``, ``c`` or ``f``) and whose images
carry ``neg_category_ids`` and ``not_exhaustive_category_ids``; :meth:`LvisGroundTruth.load` checks for them,
so a COCO instances file is refused with a clear message.

Image files (:meth:`LvisGroundTruth.image_path`), under a COCO root holding ``train2017/`` and ``val2017/``:

* **v1** images have a ``coco_url``; its last two parts are the folder and the file:
  ``http://images.cocodataset.org/val2017/000000397133.jpg`` is ``<root>/val2017/000000397133.jpg``. LVIS v1 val
  takes images from both COCO 2017 train and val, so both folders are needed.
* **v0.5** images without a ``coco_url`` have a COCO 2014 ``file_name`` (``COCO_val2014_000000397133.jpg``).
  Its last 16 characters are the COCO 2017 name (detectron2's and mmdetection's rule). A ``COCO_train2014_``
  image is in ``train2017`` (COCO 2017 train holds all of COCO 2014 train). A ``COCO_val2014_`` image is in
  ``val2017`` (all of LVIS v0.5 val is; detectron2 reads lvis_v0.5_val from ``coco/val2017``) unless only
  ``<root>/train2017`` holds the file (COCO 2014 val images that moved to 2017 train, in LVIS v0.5 train).
  Any other ``file_name`` is taken as a path relative to ``root``.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Union

import numpy as np
import pycocotools.mask as mask_utils

from ..errors import DatasetError

#: Frequency groups of LVIS categories, in the order of APr, APc, APf.
FREQUENCIES: tuple[str, ...] = ("r", "c", "f")

Source = Union[str, os.PathLike, Mapping[str, Any]]


@dataclass(eq=False)
class LvisGroundTruth:
    """An LVIS annotation file, indexed; build it with :meth:`load`.

    ``images``, ``categories`` map ids to the file's dicts; ``annotations`` keep the file's order and the
    ``ann_*`` arrays hold their fields in that order (``ann_ignore``: the optional ``ignore`` flag, which the
    official evaluator honours; ``iscrowd`` is not used by LVIS). ``image_ids`` and ``category_ids`` are sorted.
    ``ann_ids`` are the annotation ids as numbers, the way the official evaluator reads them into its float array
    of matches (Python's ``float``: the string id ``"3_12_7"`` of a TAO-Amodal file reads 3127.0, ``"0_0_0"`` 0.0).
    """

    source: str
    images: dict[int, dict[str, Any]]
    categories: dict[int, dict[str, Any]]
    annotations: list[dict[str, Any]]
    neg_category_ids: dict[int, frozenset[int]]
    not_exhaustive_category_ids: dict[int, frozenset[int]]
    image_ids: np.ndarray
    category_ids: np.ndarray
    ann_ids: np.ndarray
    ann_image_ids: np.ndarray
    ann_category_ids: np.ndarray
    ann_boxes: np.ndarray
    ann_areas: np.ndarray
    ann_ignore: np.ndarray
    _masks: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, source: Source) -> LvisGroundTruth:
        """Read ``source``, the path of an LVIS JSON or its parsed content; :class:`DatasetError` if it is not one."""
        name = "the ground-truth dict" if isinstance(source, Mapping) else str(source)
        data = source if isinstance(source, Mapping) else read_json(Path(source), "LVIS annotation file",
                                                                     "download lvis_v1_val.json from lvisdataset.org")
        if not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
            raise DatasetError(f"{name} is not an LVIS annotation file: it needs 'images', 'annotations' and "
                               f"'categories' lists (use lvis_v1_val.json or lvis_v0.5_val.json from "
                               f"lvisdataset.org).")
        images = unique_ids(data["images"], "image", name)
        categories = unique_ids(data["categories"], "category", name)
        _check_categories(categories, name)
        neg, not_exhaustive = _image_label_sets(images, name)
        annotations = data["annotations"]
        unique_ids(annotations, "annotation", name)
        return cls(name, images, categories, annotations, neg, not_exhaustive,
                   np.array(sorted(images), dtype=np.int64), np.array(sorted(categories), dtype=np.int64),
                   **_annotation_arrays(annotations, name))

    @cached_property
    def by_image_category(self) -> dict[tuple[int, int], list[dict[str, Any]]]:
        """The annotations of each ``(image_id, category_id)``, in file order."""
        groups: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for ann in self.annotations:
            groups[ann["image_id"], ann["category_id"]].append(ann)
        return dict(groups)

    def mask(self, index: int) -> dict[str, Any]:
        """The compressed RLE of annotation ``index`` (position in :attr:`annotations`), computed once.

        Polygons are encoded with ``frPyObjects`` at the image size and their parts merged, uncompressed RLE is
        compressed, compressed RLE is returned as it is: the conversion of the official ``LVIS.ann_to_rle``.
        """
        if index not in self._masks:
            ann = self.annotations[index]
            if "segmentation" not in ann:
                raise DatasetError(f"Annotation id {ann['id']} of {self.source} has no 'segmentation'; segm "
                                   f"evaluation needs the masks of the ground truth.")
            image = self.images[ann["image_id"]]
            self._masks[index] = to_rle(ann["segmentation"], image["height"], image["width"],
                                        f"annotation id {ann['id']} of {self.source}")
        return self._masks[index]

    def image_path(self, root: str | os.PathLike, image: int | Mapping[str, Any]) -> Path:
        """The file of ``image`` (an image id or dict) under the COCO root ``root`` (module docstring for the rule)."""
        info = image if isinstance(image, Mapping) else self.images[image]
        root = Path(root)
        if info.get("coco_url"):
            folder, name = info["coco_url"].rstrip("/").split("/")[-2:]
            return root / folder / name
        name = info["file_name"]
        if not name.startswith("COCO_"):
            return root / name
        name2017 = name[-16:]
        if "_train2014_" in name:
            return root / "train2017" / name2017
        in_val, in_train = root / "val2017" / name2017, root / "train2017" / name2017
        return in_train if not in_val.is_file() and in_train.is_file() else in_val


def to_rle(segmentation: Any, height: int, width: int, what: str) -> dict[str, Any]:
    """A compressed RLE from polygons, uncompressed or compressed RLE, as ``LVIS.ann_to_rle`` converts them."""
    try:
        if isinstance(segmentation, list):
            return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        return segmentation
    except Exception as e:  # pycocotools raises a bare Exception for unsupported inputs
        raise DatasetError(f"The segmentation of {what} is neither polygons nor an RLE dict with 'size' and "
                           f"'counts' ({type(e).__name__}: {e}).") from e


def read_json(path: Path, kind: str, fix: str) -> Any:
    """The parsed JSON file ``path``; :class:`DatasetError` naming the ``kind`` of file and the ``fix`` if absent."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise DatasetError(f"{kind} {path} does not exist; {fix}.") from e
    except (OSError, ValueError) as e:
        raise DatasetError(f"Cannot read {path} as JSON ({type(e).__name__}: {e}).") from e


def unique_ids(items: list[Any], what: str, name: str) -> dict[int, dict[str, Any]]:
    """``items`` by their ``id``; :class:`DatasetError` if one has none or ids repeat."""
    try:
        by_id = {item["id"]: item for item in items}
    except (KeyError, TypeError) as e:
        raise DatasetError(f"{name}: every {what} must be a dict with an 'id' ({type(e).__name__}: {e}).") from e
    if len(by_id) != len(items):
        raise DatasetError(f"{name}: {len(items) - len(by_id)} {what} ids are repeated; ids must be unique.")
    return by_id


def _check_categories(categories: dict[int, dict[str, Any]], name: str) -> None:
    for category in categories.values():
        if "frequency" not in category:
            raise DatasetError(f"{name}: category {category['id']} has no 'frequency': this is not an LVIS file "
                               f"(a COCO instances file?). Use lvis_v1_val.json or lvis_v0.5_val.json.")
        if category["frequency"] not in FREQUENCIES:
            raise DatasetError(f"{name}: category {category['id']} has frequency {category['frequency']!r}; LVIS "
                               f"frequencies are 'r', 'c' and 'f'.")


def _image_label_sets(images: dict[int, dict[str, Any]], name: str
                      ) -> tuple[dict[int, frozenset[int]], dict[int, frozenset[int]]]:
    neg, not_exhaustive = {}, {}
    for image_id, image in images.items():
        missing = [k for k in ("neg_category_ids", "not_exhaustive_category_ids", "height", "width")
                   if k not in image]
        if missing:
            raise DatasetError(f"{name}: image {image_id} has no {', '.join(missing)}: this is not an LVIS file "
                               f"(LVIS images list their negative and not-exhaustive categories).")
        neg[image_id] = frozenset(image["neg_category_ids"])
        not_exhaustive[image_id] = frozenset(image["not_exhaustive_category_ids"])
    return neg, not_exhaustive


def _annotation_arrays(annotations: list[dict[str, Any]], name: str) -> dict[str, np.ndarray]:
    try:
        arrays = {
            "ann_ids": np.array([float(a["id"]) for a in annotations], dtype=np.float64),
            "ann_image_ids": np.array([a["image_id"] for a in annotations], dtype=np.int64),
            "ann_category_ids": np.array([a["category_id"] for a in annotations], dtype=np.int64),
            "ann_boxes": np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4),
            "ann_areas": np.array([a["area"] for a in annotations], dtype=np.float64),
            "ann_ignore": np.array([bool(a.get("ignore", 0)) for a in annotations], dtype=bool),
        }
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{name}: every annotation needs id, image_id, category_id, bbox [x, y, w, h] and area, "
                           f"the id a number or a string that reads as one ({type(e).__name__}: {e}).") from e
    if len(arrays["ann_boxes"]) != len(annotations):
        raise DatasetError(f"{name}: every annotation bbox must be [x, y, w, h].")
    return arrays
