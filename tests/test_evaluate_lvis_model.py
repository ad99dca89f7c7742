"""model.evaluate("lvis_v1_val"): images found from the annotation file, results mapped to LVIS ids, scored officially."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from torch import nn

from benchmark_layouts import CATEGORIES, write_lvis
from small_models import small_spec
from vfe_hub import Detector
from vfe_hub.errors import DatasetError


class Oracle(Detector):
    """Answers each image with its ground truth boxes and masks (found by file name): AP = mask AP = 1."""

    def __init__(self, annotations: Path) -> None:
        super().__init__(small_spec("mamba_r101_dc5_vid"))
        self.anchor = nn.Parameter(torch.zeros(1))
        data = json.loads(annotations.read_text())
        self._category_ids = [c["id"] for c in CATEGORIES]
        self.label_of = list(self._category_ids)  # the label of each category id (category_ids may change)
        self.truth = {f"{i['id']:012d}.jpg": [a for a in data["annotations"] if a["image_id"] == i["id"]]
                      for i in data["images"]}

    def forward(self, batch):
        out = []
        for frame in batch.frames:
            anns = self.truth[Path(frame.source).name]
            boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
            labels = torch.tensor([self.label_of.index(a["category_id"]) for a in anns])
            masks = np.stack([mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], *frame.size)))
                              for a in anns])
            out.append(self.make_detections(frame, boxes, torch.ones(len(anns)), labels,
                                            masks=torch.from_numpy(masks).bool()))
        return out


@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_lvis(root)
    return root


def test_a_perfect_detector_scores_one_on_boxes_and_masks(coco_root, tmp_path):
    oracle = Oracle(coco_root / "annotations" / "lvis_v1_val.json")
    out = tmp_path / "results.json"
    metrics = oracle.evaluate("lvis_v1_val", root=coco_root, batch_size=2, results_file=out)
    one = pytest.approx(1.0, abs=1e-12)  # a mean over 10 IoU thresholds x 101 recall points
    assert metrics["AP"] == one and metrics["APr"] == one and metrics["APc"] == one and metrics["APf"] == one
    assert metrics["mask_AP"] == one and metrics["mask_APr"] == one
    records = json.loads(out.read_text())
    assert {r["image_id"] for r in records} == {11, 4} and {r["category_id"] for r in records} == {3, 7, 9}
    assert all("segmentation" in r for r in records)


def test_limit_scores_the_first_images_by_id(coco_root):
    oracle = Oracle(coco_root / "annotations" / "lvis_v1_val.json")
    metrics = oracle.evaluate("lvis_v1", root=coco_root, limit=1)  # image 4 only: one "rocket"
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12) and metrics["APr"] == -1.0


def test_missing_files_and_models_without_lvis_ids(coco_root, tmp_path):
    oracle = Oracle(coco_root / "annotations" / "lvis_v1_val.json")
    with pytest.raises(DatasetError, match="annotations"):
        oracle.evaluate("lvis_v1_val", root=tmp_path)
    (tmp_path / "annotations").symlink_to(coco_root / "annotations")
    with pytest.raises(DatasetError, match="train2017"):
        oracle.evaluate("lvis_v1_val", root=tmp_path)
    oracle._category_ids = None  # a model whose labels are no dataset's categories
    with pytest.raises(DatasetError, match="no LVIS vocabulary"):
        oracle.evaluate("lvis_v1_val", root=coco_root)
    with pytest.raises(DatasetError, match="lvis_v1_val"):
        oracle.evaluate("lvis_v2_val", root=coco_root)


def test_unknown_category_ids_are_left_out_or_refused_with_strict(coco_root, caplog):
    """A label map giving a category id the file lacks (here 0, as 0-based class indices do): its results are left
    out with a warning, as LVISEval drops them; ``strict=True`` refuses them."""
    oracle = Oracle(coco_root / "annotations" / "lvis_v1_val.json")
    oracle._category_ids = [0, 7, 9]  # "cat" (3) -> 0
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        metrics = oracle.evaluate("lvis_v1_val", root=coco_root)
    assert metrics["APr"] == 0.0 and metrics["APc"] == pytest.approx(1.0, abs=1e-12) == metrics["APf"]
    assert metrics["AP"] == pytest.approx(2 / 3, abs=1e-12) and metrics["mask_APr"] == 0.0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and all("1 of 3 results have a category_id that is not a category" in m for m in warned)
    with pytest.raises(DatasetError, match=r"has category_id 0, which is not a category .*LVIS category ids"):
        oracle.evaluate("lvis_v1_val", root=coco_root, strict=True)
