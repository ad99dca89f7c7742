"""LVIS box and mask AP (vfe_hub.evaluation.lvis) against the official lvis 0.5.3 ``LVISEval``, its input errors,
and the LVIS reader (vfe_hub.evaluation.lvis_data).

Equality is bit equality, checked through ``float.hex``: every IoU, cumulative count, recall and precision value
is computed with the same float64 operations as the official code (the vectorised matching and the searches
reorder work, never arithmetic), and the summary means call ``np.mean`` on arrays holding the same values in the
same order, so no tolerance is needed.
"""
from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from lvis_reference import (UNKNOWN_CATEGORY_IDS, make_ground_truth, make_results, numpy_float_alias,
                            official_lvis_eval, rectangle, with_unknown_categories)

from vfe_hub.errors import DatasetError
from vfe_hub.evaluation.lvis import box_iou, evaluate
from vfe_hub.evaluation.lvis_data import LvisGroundTruth

KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf", "AR@{n}", "ARs@{n}", "ARm@{n}", "ARl@{n}"]


def bits(scores: dict[str, float]) -> dict[str, str]:
    return {key: float(value).hex() for key, value in scores.items()}


def assert_official(ground_truth: dict, results: list[dict], iou_type: str, max_dets: int = 300,
                    **kwargs) -> dict[str, float]:
    """Our scores, after checking them bit for bit against LVISEval's."""
    ours = evaluate(ground_truth, results, iou_type=iou_type, max_dets=max_dets, **kwargs)
    assert list(ours) == [key.format(n=max_dets) for key in KEYS]
    assert bits(ours) == bits(official_lvis_eval(ground_truth, results, iou_type, max_dets))
    return ours


# ---------------------------------------------------------------------------------------------------------------
# Equality with LVISEval
# ---------------------------------------------------------------------------------------------------------------

# seed, annotation version, iou_type, result masks, results with boxes, max_dets, results added to two images
CASES = [
    (0, "v1", "bbox", None, True, 300, 300),
    (1, "v0.5", "bbox", None, True, 300, 40),
    (2, "v1", "bbox", None, True, 5, 40),
    (3, "v0.5", "bbox", None, True, 1, 40),
    (4, "v1", "segm", "mixed", True, 300, 300),
    (5, "v0.5", "segm", "mixed", True, 300, 40),
    (6, "v1", "segm", "rle", True, 4, 40),
    (7, "v1", "segm", "rle", False, 300, 40),  # masks only: areas and boxes come from the masks
    (8, "v0.5", "bbox", "rle", False, 7, 40),  # boxes from masks
    (9, "v1", "bbox", None, True, 300, 40),
    (10, "v0.5", "segm", "mixed", True, 2, 40),
    (11, "v1", "bbox", None, True, 30, 40),
]


def varied_case(seed: int) -> tuple:
    """One more case of :data:`CASES`, its options taken in turn from the seed."""
    iou_type, boxes = ("bbox", "segm")[seed // 2 % 2], seed % 5 != 0
    masks = ("mixed" if iou_type == "segm" else None) if boxes else "rle"
    return seed, ("v1", "v0.5")[seed % 2], iou_type, masks, boxes, (300, 10, 3)[seed % 3], 40


CASES += [varied_case(seed) for seed in range(20, 32)]


@pytest.mark.parametrize("seed, version, iou_type, masks, boxes, max_dets, crowd", CASES)
def test_equal_to_official(seed: int, version: str, iou_type: str, masks: str | None, boxes: bool, max_dets: int,
                           crowd: int) -> None:
    gt = make_ground_truth(seed, version=version, zero_id=seed % 3 == 0)
    results = make_results(gt, seed, masks=masks, boxes=boxes, crowd_size=crowd)
    ours = assert_official(gt, results, iou_type, max_dets, progress=seed in (0, 4))
    assert 0 < ours["AP"] < 1 and ours["AR@" + str(max_dets)] > 0


@pytest.mark.parametrize("seed, version, iou_type, masks, boxes, max_dets", [
    (40, "v1", "bbox", None, True, 300),
    (41, "v0.5", "bbox", None, True, 300),
    (42, "v1", "segm", "mixed", True, 300),
    (43, "v0.5", "segm", "rle", True, 5),
    (44, "v1", "bbox", "rle", False, 7),  # masks only: boxes and areas from the masks, of unknown results too
    (45, "v0.5", "bbox", None, True, 2),
])
def test_unknown_categories_equal_to_official(seed: int, version: str, iou_type: str, masks: str | None, boxes: bool,
                                              max_dets: int) -> None:
    """LVISResults neither asserts nor filters results of categories the ground truth lacks: they count toward
    the cap per image (and push known results past it), then LVISEval leaves them out. vfe_hub: the same bits."""
    gt = make_ground_truth(seed, version=version)
    known = make_results(gt, seed, masks=masks, boxes=boxes)
    results = with_unknown_categories(gt, known, seed, max_dets=max_dets, masks=masks, boxes=boxes)
    ours = assert_official(gt, results, iou_type, max_dets)
    assert bits(ours) != bits(evaluate(gt, known, iou_type=iou_type, max_dets=max_dets))  # they changed numbers


def test_unknown_category_ids_warn_once_or_are_refused_with_strict(caplog: pytest.LogCaptureFixture) -> None:
    gt = make_ground_truth(46)
    results = with_unknown_categories(gt, make_results(gt, 46), 46, max_dets=300)
    unknown = [i for i, r in enumerate(results) if r["category_id"] in UNKNOWN_CATEGORY_IDS]
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        evaluate(gt, results)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert (f"{len(unknown)} of {len(results)} results have a category_id that is not a category" in message
            and f"entry {unknown[0]}: category_id {results[unknown[0]]['category_id']}" in message
            and "0-based class indices instead of LVIS category ids" in message)
    with pytest.raises(DatasetError, match=rf"entry {unknown[0]} has category_id \d+, which is not a category of the "
                                           r"ground truth: results need LVIS category ids \(not 0-based class "
                                           rf"indices\).*{len(unknown)} entries have unknown category_ids"):
        evaluate(gt, results, strict=True)


@pytest.mark.parametrize("seed", [0, 4, 9])
def test_generated_cases_cover_the_rules(seed: int) -> None:
    """The generated data hold every situation the official rules distinguish."""
    gt = make_ground_truth(seed)
    results = make_results(gt, seed, crowd_size=300)
    images = {im["id"]: im for im in gt["images"]}
    positive = {(a["image_id"], a["category_id"]) for a in gt["annotations"]}
    kinds = set()
    for r in results:
        key, image = (r["image_id"], r["category_id"]), images[r["image_id"]]
        kinds.add("positive" if key in positive else "negative" if key[1] in image["neg_category_ids"] else "neither")
        kinds.add("not exhaustive" if key[1] in image["not_exhaustive_category_ids"] else "exhaustive")
        kinds.add({0.0: "zero area", 32.0 ** 2: "small bound", 96.0 ** 2: "medium bound"}.get(
            r["bbox"][2] * r["bbox"][3], "area"))
    assert kinds >= {"positive", "negative", "neither", "not exhaustive", "zero area", "small bound",
                     "medium bound"}
    counts = np.bincount([r["image_id"] for r in results])
    assert counts.max() > 300
    scores = [r["score"] for r in results]
    assert len(set(scores)) < len(scores) / 2  # ties
    areas = [a["area"] for a in gt["annotations"]]
    assert {0.0, 32.0 ** 2, 96.0 ** 2} <= set(areas) and max(areas) > 96 ** 2 and min(a for a in areas if a) < 32 ** 2
    assert any(a.get("ignore") for a in gt["annotations"]) and any(a["iscrowd"] for a in gt["annotations"])
    boxes = [tuple(a["bbox"]) for a in gt["annotations"]]
    assert len(set(boxes)) < len(boxes)  # duplicated boxes: equal IoUs
    assert any((x + 8, y, w, h) in boxes for x, y, w, h in boxes)  # twins: equal IoUs with a result between them
    segmentations = [a["segmentation"] for a in gt["annotations"]]
    assert {type(s).__name__ if isinstance(s, list) else type(s["counts"]).__name__ for s in segmentations} == {
        "list", "str"}
    assert any(isinstance(s, dict) and isinstance(s["counts"], list) for s in segmentations)
    used = {a["category_id"] for a in gt["annotations"]}
    assert any(c["id"] not in used for c in gt["categories"])
    assert {c["frequency"] for c in gt["categories"]} == {"r", "c", "f"}


def test_categories_without_annotations_are_minus_one() -> None:
    """Only 'c' and 'f' categories: APr is -1 (no category), as are the areas without annotations."""
    gt = make_ground_truth(12, frequencies="cf")
    for ann in gt["annotations"]:
        ann["area"] = min(ann["area"], 500.0) or 1.0  # all small: no medium or large annotation
    ours = assert_official(gt, make_results(gt, 12), "bbox")
    assert ours["APr"] == -1 and ours["APm"] == -1 and ours["APl"] == -1 and ours["ARl@300"] == -1
    assert ours["APc"] > 0 and ours["APf"] > 0


def test_annotation_id_zero_counts_as_unmatched() -> None:
    """LVISEval keeps the id of the matched annotation; an id of 0 reads as no match (a false positive)."""
    gt = make_ground_truth(13, num_images=1, num_categories=10)
    image = gt["images"][0]
    category = gt["categories"][-1]["id"]
    box = [10.0, 10.0, 40.0, 30.0]
    gt["annotations"] = [{"id": 0, "image_id": image["id"], "category_id": category, "bbox": box,
                          "segmentation": [rectangle(box)], "area": 1200.0}]
    image["neg_category_ids"], image["not_exhaustive_category_ids"] = [], []
    results = [{"image_id": image["id"], "category_id": category, "bbox": box, "score": 0.9}]
    assert assert_official(gt, results, "bbox")["AP"] == 0
    gt["annotations"][0]["id"] = 1
    assert assert_official(gt, results, "bbox")["AP"] > 0.99


def test_empty_results() -> None:
    """The official code fails on []; we give what it gives when every result is dropped: 0 with ground truth."""
    gt = make_ground_truth(14, frequencies="cf")
    with numpy_float_alias(), pytest.raises(IndexError):
        official_lvis_eval(gt, [], "bbox")
    image = next(im for im in gt["images"] if im["not_exhaustive_category_ids"])
    positive = {a["category_id"] for a in gt["annotations"] if a["image_id"] == image["id"]}
    neither = next(c["id"] for c in gt["categories"]
                   if c["id"] not in positive and c["id"] not in image["neg_category_ids"])
    dropped = [{"image_id": image["id"], "category_id": neither, "bbox": [1.0, 1.0, 20.0, 20.0], "score": 0.5}]
    for iou_type in ("bbox", "segm"):
        empty = evaluate(gt, [], iou_type=iou_type)
        assert bits(empty) == bits(official_lvis_eval(gt, dropped, iou_type))
        assert empty["AP"] == 0 and empty["AR@300"] == 0 and empty["APr"] == -1


def test_ground_truth_and_results_forms(tmp_path: Path) -> None:
    """Path, dict and loaded ground truth, list and file results: the same numbers; inputs are not modified."""
    gt = make_ground_truth(15, version="v0.5")
    results = make_results(gt, 15, masks="rle")
    for r in results:
        if isinstance(r["segmentation"]["counts"], bytes):
            r["segmentation"]["counts"] = r["segmentation"]["counts"].decode("ascii")  # JSON needs str
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    before = copy.deepcopy((gt, results))
    loaded = LvisGroundTruth.load(gt)
    for iou_type in ("bbox", "segm"):
        expected = assert_official(gt, results, iou_type)
        for source in (tmp_path / "gt.json", str(tmp_path / "gt.json"), loaded):
            for given in (results, tmp_path / "results.json"):
                assert bits(evaluate(source, given, iou_type=iou_type)) == bits(expected)
    assert (gt, results) == before


def test_box_iou_is_pycocotools_bbiou() -> None:
    rng = np.random.default_rng(16)
    dt = np.concatenate([rng.uniform(-5, 50, (300, 2)), rng.uniform(-3, 40, (300, 2))], axis=1)
    gt = np.concatenate([rng.uniform(-5, 50, (40, 2)), rng.uniform(0, 40, (40, 2))], axis=1)
    dt[:20] = np.round(dt[:20])
    dt[20:30] = gt[:10]
    dt[30:35, 2] = 0
    expected = mask_utils.iou(dt.tolist(), gt.tolist(), [0] * len(gt))
    d, g = np.meshgrid(np.arange(len(dt)), np.arange(len(gt)), indexing="ij")
    ours = box_iou(dt[d.ravel()], gt[g.ravel()]).reshape(len(dt), len(gt))
    assert (ours > 0.5).sum() > 20 and (ours == 0).sum() > 100
    assert ours.tobytes() == np.asarray(expected, dtype=np.float64).tobytes()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # pycocotools' decode
def test_masks_are_those_of_ann_to_rle(tmp_path: Path) -> None:
    from lvis import LVIS

    gt = make_ground_truth(17)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    official, ours = LVIS(str(path)), LvisGroundTruth.load(path)
    known = [i for i, a in enumerate(gt["annotations"]) if a["image_id"] in ours.images]
    for i in known:
        expected = official.ann_to_rle(official.anns[gt["annotations"][i]["id"]])
        mask = ours.mask(i)
        assert mask_utils.decode(mask).tobytes() == mask_utils.decode(expected).tobytes()
        assert mask_utils.area(mask) == mask_utils.area(expected)
    groups = ours.by_image_category
    ann = gt["annotations"][known[0]]
    assert ann in groups[ann["image_id"], ann["category_id"]]


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def case() -> tuple[dict, list[dict]]:
    gt = make_ground_truth(18)
    return gt, make_results(gt, 18, masks="rle")


def test_unknown_image_id(case: tuple[dict, list[dict]]) -> None:
    gt, results = case
    bad = copy.deepcopy(results)
    bad[3]["image_id"] = 10 ** 8
    with pytest.raises(DatasetError, match=r"entry 3 has image_id 100000000, which is not an image"):
        evaluate(gt, bad)


def test_missing_segmentation(case: tuple[dict, list[dict]]) -> None:
    gt, results = case
    bad = copy.deepcopy(results)
    del bad[2]["segmentation"]
    with pytest.raises(DatasetError, match=r"entry 2 .* has no 'segmentation'.*iou_type='bbox'"):
        evaluate(gt, bad, iou_type="segm")
    assert evaluate(gt, bad, iou_type="bbox")["AP"] > 0


def test_unknown_iou_type(case: tuple[dict, list[dict]]) -> None:
    gt, results = case
    with pytest.raises(DatasetError, match=r"iou_type='keypoints'.*'bbox'.*'segm'"):
        evaluate(gt, results, iou_type="keypoints")


@pytest.mark.parametrize("edit, message", [
    (lambda gt: gt.pop("categories"), r"not an LVIS annotation file: it needs 'images', 'annotations' and "
                                      r"'categories'"),
    (lambda gt: gt["categories"][1].pop("frequency"), r"category \d+ has no 'frequency': this is not an LVIS file"),
    (lambda gt: gt["categories"][0].update(frequency="x"), r"frequency 'x'"),
    (lambda gt: gt["images"][2].pop("neg_category_ids"), r"image \d+ has no neg_category_ids"),
    (lambda gt: gt["annotations"].append(dict(gt["annotations"][0])), r"1 annotation ids are repeated"),
    (lambda gt: gt["annotations"][4].pop("area"), r"every annotation needs id, image_id, category_id, bbox"),
])
def test_not_lvis_ground_truth(case: tuple[dict, list[dict]], edit, message: str) -> None:
    gt = copy.deepcopy(case[0])
    edit(gt)
    with pytest.raises(DatasetError, match=message):
        evaluate(gt, case[1])


def test_unreadable_inputs(case: tuple[dict, list[dict]], tmp_path: Path) -> None:
    gt, results = case
    with pytest.raises(DatasetError, match="does not exist"):
        evaluate(tmp_path / "missing.json", results)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="Cannot read .*bad.json as JSON"):
        evaluate(gt, tmp_path / "bad.json")
    with pytest.raises(DatasetError, match="list of LVIS result dicts"):
        evaluate(gt, {"image_id": 1})


def test_invalid_results(case: tuple[dict, list[dict]]) -> None:
    gt, results = case
    bad = copy.deepcopy(results)
    bad[1]["score"] = math.nan
    with pytest.raises(DatasetError, match="entry 1 .* NaN score"):
        evaluate(gt, bad)
    bad = copy.deepcopy(results)
    bad[0]["bbox"] = [1.0, math.inf, 3.0, 4.0]
    with pytest.raises(DatasetError, match="non-finite bbox"):
        evaluate(gt, bad)
    bad = copy.deepcopy(results)
    del bad[6]["bbox"]
    with pytest.raises(DatasetError, match="has no 'bbox' while others have one"):
        evaluate(gt, bad)
    with pytest.raises(DatasetError, match="image_id, category_id and score"):
        evaluate(gt, [{"image_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="max_dets=0"):
        evaluate(gt, results, max_dets=0)


# ---------------------------------------------------------------------------------------------------------------
# Image paths
# ---------------------------------------------------------------------------------------------------------------

def test_image_path_v1() -> None:
    gt = LvisGroundTruth.load(make_ground_truth(19, version="v1"))
    image = gt.images[int(gt.image_ids[0])]
    image["coco_url"] = "http://images.cocodataset.org/val2017/000000397133.jpg"
    assert gt.image_path("/data/coco", image["id"]) == Path("/data/coco/val2017/000000397133.jpg")
    image = {"coco_url": "http://images.cocodataset.org/train2017/000000155379.jpg"}
    assert gt.image_path(Path("/data/coco"), image) == Path("/data/coco/train2017/000000155379.jpg")


def test_image_path_v05(tmp_path: Path) -> None:
    gt = LvisGroundTruth.load(make_ground_truth(19, version="v0.5"))
    val = {"file_name": "COCO_val2014_000000397133.jpg"}
    assert gt.image_path(tmp_path, val) == tmp_path / "val2017" / "000000397133.jpg"
    assert gt.image_path(tmp_path, {"file_name": "COCO_train2014_000000000009.jpg"}) == (
        tmp_path / "train2017" / "000000000009.jpg")
    (tmp_path / "train2017").mkdir()
    (tmp_path / "train2017" / "000000397133.jpg").write_bytes(b"")
    assert gt.image_path(tmp_path, val) == tmp_path / "train2017" / "000000397133.jpg"  # only there
    (tmp_path / "val2017").mkdir()
    (tmp_path / "val2017" / "000000397133.jpg").write_bytes(b"")
    assert gt.image_path(tmp_path, val) == tmp_path / "val2017" / "000000397133.jpg"
    image_id = int(gt.image_ids[0])
    assert gt.image_path(tmp_path, image_id) == tmp_path / "val2017" / f"{image_id:012d}.jpg"
    assert gt.image_path(tmp_path, {"file_name": "images/a.jpg"}) == tmp_path / "images" / "a.jpg"

