"""vfe_hub.evaluation.tao_amodal against the official TAO-Amodal script's numbers on generated cases; its input
checks, the annotation conversion and the out-of-frame statistics.

tests/data/tao_amodal/cases.json holds the inputs ({name: {ground_truth, results}}), expected.json the script's
numbers on each (or the error it stops with). Both are written by tests/data/tao_amodal/make_reference.py
(README.md there).
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vfe_hub.errors import DatasetError
from vfe_hub.evaluation.tao import renumber_shared_tracks
from vfe_hub.evaluation.tao_amodal import evaluate, out_of_frame_stats, to_lvis_v1

DATA = Path(__file__).parent / "data" / "tao_amodal"
CASES: dict[str, dict[str, Any]] = json.loads((DATA / "cases.json").read_text())
EXPECTED: dict[str, dict[str, Any]] = json.loads((DATA / "expected.json").read_text())
KEYS = {"AP", "AP50", "AP_HO", "AP_PO", "AP_HV", "AP_HP", "AP_OOF", "APr", "APc", "APf", "track_AP50", "track_AP",
        "track_AP50_HP", "track_AP_HP"}
#: category ids of no category in the generated ground truths (tests/data/tao/make_reference.py's UNKNOWN_IDS)
UNKNOWN_IDS = (0, 9999)


@pytest.mark.parametrize("name", sorted(name for name in CASES if "metrics" in EXPECTED[name]))
def test_equal_to_official(name: str) -> None:
    case = CASES[name]
    scores = evaluate(case["ground_truth"], case["results"])
    assert set(scores) == KEYS
    assert scores == EXPECTED[name]["metrics"]  # exact: the same float64 operations in the same order


def test_generated_cases_cover_the_rules() -> None:
    annotations = [a for c in CASES.values() for a in c["ground_truth"]["annotations"]]
    visibility = {a["visibility"] for a in annotations}
    assert {0.0, 0.1, 0.8, 1.0, 1.5} <= visibility and any(0.1 < v < 0.8 for v in visibility)

    def leaves(a: dict[str, Any]) -> bool:
        x, y, w, h = a["bbox"]
        return x < 0 or y < 0 or x + w > 320 or y + h > 240

    assert any(a["out_of_frame"] and leaves(a) for a in annotations)
    assert any(a["out_of_frame"] and not leaves(a) for a in annotations)  # the flag counts, not the geometry
    assert any(not a["out_of_frame"] and leaves(a) for a in annotations)
    assert any(float(a["id"]) == 0 for a in annotations) and all(isinstance(a["id"], str) for a in annotations)
    # heavily-occluded tracks: exactly 5 (not HP) and exactly 6 (HP) evaluated frames of visibility < 0.8
    occlusion = CASES["occlusion"]["ground_truth"]["annotations"]
    occluded = {t: sum(a["visibility"] < 0.8 and a["area"] > 0 for a in occlusion if a["track_id"] == t)
                for t in (1, 2, 3)}
    assert occluded == {1: 5, 2: 6, 3: 5}
    results = {name: c["results"] for name, c in CASES.items()}
    videos_of: dict[tuple[str, int], set[int]] = {}
    for name, rs in results.items():
        for r in rs:
            if "video_id" in r:
                videos_of.setdefault((name, r["track_id"]), set()).add(r["video_id"])
    shared = {key for key, videos in videos_of.items() if len(videos) > 1}
    assert any(track > 0 for _, track in shared) and any(track <= 0 for _, track in shared)
    assert any("video_id" not in r for r in results["video_id_omitted"])
    assert any(r["category_id"] == 5000 for r in results["category_alias"])
    images = np.unique([r["image_id"] for r in results["cap_300"]], return_counts=True)[1]
    assert images.max() > 300
    ground_truths = [c["ground_truth"] for c in CASES.values()]
    videos = {(id(g), v["id"]): v for g in ground_truths for v in g["videos"]}
    assert any(i["neg_category_ids"] != videos[id(g), i["video_id"]]["neg_category_ids"]
               for g in ground_truths for i in g["images"])
    assert "IndexError" in EXPECTED["empty_results"]["error"]  # the script fails on empty results
    # results of unknown categories, in both parts' cap of 300 per frame; tracks of them share ids across videos
    unknown = [r for name, rs in results.items() if "metrics" in EXPECTED[name] for r in rs
               if r["category_id"] in UNKNOWN_IDS]
    per_image = np.unique([r["image_id"] for r in unknown], return_counts=True)[1]
    assert per_image.max() >= 300
    shared_unknown = {r["track_id"] for r in results["unknown_categories"] if r["category_id"] in UNKNOWN_IDS}
    assert any(len({r["video_id"] for r in results["unknown_categories"] if r["track_id"] == t}) > 1
               for t in shared_unknown)


def test_tracks_mixing_known_and_unknown_categories() -> None:
    """The script's tracking part asserts where the cap keeps both categories of a track; so does vfe_hub."""
    case = CASES["unknown_categories_mixed_track"]
    assert "AssertionError: Annotations for track" in EXPECTED["unknown_categories_mixed_track"]["error"]
    with pytest.raises(DatasetError, match=r"give category_id \d+ and 0; a track has one category"):
        evaluate(case["ground_truth"], case["results"])


def test_unknown_category_ids_warn_once_or_are_refused_with_strict(caplog: pytest.LogCaptureFixture) -> None:
    case = CASES["unknown_categories"]
    unknown = [i for i, r in enumerate(case["results"]) if r["category_id"] in UNKNOWN_IDS]
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        assert evaluate(case["ground_truth"], case["results"]) == EXPECTED["unknown_categories"]["metrics"]
    assert len(caplog.records) == 1  # the detection and tracking parts warn once together
    assert f"{len(unknown)} of {len(case['results'])} results have a category_id that is not" in caplog.text
    with pytest.raises(DatasetError, match=rf"entry {unknown[0]} has category_id \d+, which is not a category"):
        evaluate(case["ground_truth"], case["results"], strict=True)


def test_empty_results() -> None:
    """The script fails on empty results; they give what it gives when no result is evaluated."""
    scores = evaluate(CASES["nothing_evaluated"]["ground_truth"], [])
    assert scores == EXPECTED["nothing_evaluated"]["metrics"]
    assert set(evaluate(CASES["basic"]["ground_truth"], []).values()) == {0.0}


def test_ground_truth_and_results_forms(tmp_path: Path) -> None:
    case = CASES["zero_annotation_id"]
    untouched = copy.deepcopy(case)
    (tmp_path / "gt.json").write_text(json.dumps(case["ground_truth"]))
    (tmp_path / "results.json").write_text(json.dumps(case["results"]))
    assert evaluate(tmp_path / "gt.json", str(tmp_path / "results.json")) == EXPECTED["zero_annotation_id"]["metrics"]
    assert evaluate(case["ground_truth"], case["results"]) == EXPECTED["zero_annotation_id"]["metrics"]
    assert case == untouched


def test_visibility_and_out_of_frame_defaults() -> None:
    """Annotations without ``visibility`` or ``out_of_frame`` read as 1.0 and false, the values to_lvis_v1 writes."""
    case = copy.deepcopy(CASES["basic"])
    explicit = copy.deepcopy(case["ground_truth"])
    for a, b in zip(case["ground_truth"]["annotations"], explicit["annotations"]):
        if a["visibility"] == 1.0:
            del a["visibility"]
        del a["out_of_frame"]
        b["out_of_frame"] = False
    scores = evaluate(case["ground_truth"], case["results"])
    assert scores == evaluate(explicit, case["results"])
    assert scores["AP_OOF"] == -1.0 and scores["AP"] == EXPECTED["basic"]["metrics"]["AP"]


def test_shared_track_ids_are_renumbered() -> None:
    tracks = np.array([4, 0, 4, 7, 0, 4, 2])
    videos = np.array([1, 1, 2, 2, 3, 1, 2])
    # ids 4 and 0 are in several videos: (4, 1) -> 8, (0, 1) -> 9, (4, 2) -> 10, (0, 3) -> 11, in order of appearance
    assert renumber_shared_tracks(tracks, videos).tolist() == [8, 9, 10, 7, 11, 8, 2]
    assert renumber_shared_tracks(np.array([-3, -3]), np.array([1, 2])).tolist() == [1, 2]
    assert renumber_shared_tracks(tracks[3:], videos[3:]).tolist() == [7, 0, 4, 2]  # no id in two videos


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def case() -> dict[str, Any]:
    return copy.deepcopy(CASES["basic"])


@pytest.mark.parametrize("edit, message", [
    (lambda r: r[3].update(image_id=10 ** 9), r"entry 3 has image_id 1000000000, which is not an image"),
    (lambda r: r[2].pop("track_id"), r"entry 2 lacks \['track_id'\]"),
    (lambda r: r[1].update(score=float("nan")), r"entry 1 .* NaN score"),
    (lambda r: r[1].update(bbox=[0, 0, float("inf"), 3]), r"non-finite bbox"),
    (lambda r: r[4].update(video_id=77), r"entry 4 has video_id 77 but its image_id"),
])
def test_invalid_results(case: dict[str, Any], edit, message: str) -> None:
    edit(case["results"])
    with pytest.raises(DatasetError, match=message):
        evaluate(case["ground_truth"], case["results"])


def test_track_with_two_categories(case: dict[str, Any]) -> None:
    by_track: dict[int, list[dict[str, Any]]] = {}
    for r in case["results"]:
        by_track.setdefault(r["track_id"], []).append(r)
    a, b = next(rs for rs in by_track.values() if len(rs) > 1)[:2]
    b["category_id"] = next(c["id"] for c in case["ground_truth"]["categories"] if c["id"] != a["category_id"])
    with pytest.raises(DatasetError, match="a track has one category"):
        evaluate(case["ground_truth"], case["results"])


@pytest.mark.parametrize("edit, message", [
    (lambda gt: gt["annotations"][0].update(visibility="high"), r"has visibility 'high'"),
    (lambda gt: gt["annotations"][0].update(id="first"), r"the id a number or a string that reads as one"),
    (lambda gt: gt["images"][0].pop("neg_category_ids"), r"image .* has no neg_category_ids"),
    (lambda gt: gt["videos"][0].pop("not_exhaustive_category_ids"), r"video 1 has no not_exhaustive_category_ids"),
    (lambda gt: gt["categories"][0].pop("frequency"), r"has no 'frequency'"),
])
def test_invalid_ground_truth(case: dict[str, Any], edit, message: str) -> None:
    edit(case["ground_truth"])
    with pytest.raises(DatasetError, match=message):
        evaluate(case["ground_truth"], case["results"])


def test_unreadable_inputs(case: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="TAO-Amodal annotation file .* does not exist; convert"):
        evaluate(tmp_path / "missing.json", case["results"])
    with pytest.raises(DatasetError, match="list of TAO-Amodal result dicts"):
        evaluate(case["ground_truth"], {"results": case["results"]})


# ---------------------------------------------------------------------------------------------------------------
# Conversion to LVIS v1 categories (tools/create_tao_amodal_v1.py)
# ---------------------------------------------------------------------------------------------------------------

def v05_file() -> dict[str, Any]:
    """A made-up TAO-Amodal file with LVIS v0.5-style ids: category 11 (airplane) and 12 (aerosol can) have
    annotations, 13 is free-form (its synset is not in LVIS v1), 14 (alarm clock) has no annotation."""
    cats = [{"id": 11, "name": "airplane", "synset": "airplane.n.01"},
            {"id": 12, "name": "aerosol_can", "synset": "aerosol.n.02"},
            {"id": 13, "name": "my toy", "synset": "unknown"},
            {"id": 14, "name": "alarm_clock", "synset": "alarm_clock.n.01"}]
    box = {"bbox": [5, 5, 10, 10], "area": 100}
    return {
        "info": {"note": "kept"}, "categories": cats,
        "videos": [{"id": 2, "name": "v", "neg_category_ids": [12, 13, 14], "not_exhaustive_category_ids": [11, 14]}],
        "images": [{"id": 20, "video_id": 2, "frame_index": 0, "width": 64, "height": 48},
                   {"id": 21, "video_id": 2, "frame_index": 1, "width": 64, "height": 48}],
        "tracks": [{"id": 7, "video_id": 2, "category_id": 11}, {"id": 8, "video_id": 2, "category_id": 13},
                   {"id": 9, "video_id": 2, "category_id": 12}, {"id": 10, "video_id": 2, "category_id": 14}],
        "annotations": [
            dict(box, id=1, image_id=20, video_id=2, track_id=7, category_id=11, amodal_bbox=[-4.0, 1.0, 20.5, 9.9],
                 visibility=0.4, out_of_frame=True),
            dict(box, id=2, image_id=21, video_id=2, track_id=7, category_id=11, amodal_bbox=[1, 2, 3, 4]),
            dict(box, id=3, image_id=20, video_id=2, track_id=8, category_id=13, amodal_bbox=[1, 2, 3, 4]),
            dict(box, id=4, image_id=21, video_id=2, track_id=9, category_id=12, amodal_bbox=[0, 0, 0.5, 1.5],
                 visibility=0.0)]}


def test_to_lvis_v1(caplog: pytest.LogCaptureFixture) -> None:
    original = v05_file()
    converted = to_lvis_v1(original)
    assert "2 TAO-Amodal annotations lack 'visibility' or 'out_of_frame'" in caplog.text
    assert original == v05_file()  # not modified
    assert converted["info"] == {"note": "kept"}
    categories = {c["id"]: c for c in converted["categories"]}
    assert len(categories) == 1203 and categories[3]["name"] == "airplane"
    assert (categories[3]["image_count"], categories[3]["instance_count"]) == (2, 2)
    assert (categories[1]["image_count"], categories[1]["instance_count"]) == (1, 1)
    assert (categories[4]["image_count"], categories[4]["instance_count"]) == (0, 0)
    anns = converted["annotations"]
    assert [a["id"] for a in anns] == ["2_20_7", "2_21_7", "2_21_9"]  # the free-form annotation is dropped
    assert [a["category_id"] for a in anns] == [3, 3, 1]
    assert anns[0]["bbox"] == [-4.0, 1.0, 20.5, 9.9] and anns[0]["area"] == 202  # int(20.5 * 9.9 = 202.95)
    assert anns[2]["area"] == 0  # int(0.75): such an annotation is then not evaluated
    assert [(a["visibility"], a["out_of_frame"]) for a in anns] == [(0.4, True), (1.0, False), (0.0, False)]
    assert [(t["id"], t["category_id"]) for t in converted["tracks"]] == [(7, 3), (9, 1)]
    # alarm clock (14) is in LVIS v1 but has no annotation: the script maps only annotated categories
    video = converted["videos"][0]
    assert video["neg_category_ids"] == [1] and video["not_exhaustive_category_ids"] == [3]
    for image in converted["images"]:
        assert (image["neg_category_ids"], image["not_exhaustive_category_ids"]) == ([1], [3])
    scores = evaluate(converted, [{"image_id": 20, "category_id": 3, "bbox": [-4.0, 1.0, 20.5, 9.9], "score": 0.9,
                                   "track_id": 1}])
    assert scores["AP_OOF"] == scores["AP_PO"] == pytest.approx(1.0)  # annotation 1 (visibility 0.4, out of frame)
    assert scores["AP_HV"] == 0.0  # annotation 2 (visibility 1.0) is not found
    # 3D IoU 202.95 / (202.95 + 12): a match at the thresholds 0.5 to 0.9, not at 0.95
    assert scores["track_AP50"] == pytest.approx(1.0) and scores["track_AP"] == pytest.approx(0.9)


def test_to_lvis_v1_missing_fields() -> None:
    data = v05_file()
    del data["annotations"][1]["amodal_bbox"]
    with pytest.raises(DatasetError, match="amodal_bbox"):
        to_lvis_v1(data)
    data = v05_file()
    data["annotations"][0]["category_id"] = 99
    with pytest.raises(DatasetError, match="Cannot convert the TAO annotations to LVIS v1 ids: KeyError 99"):
        to_lvis_v1(data)


# ---------------------------------------------------------------------------------------------------------------
# Out-of-frame statistics
# ---------------------------------------------------------------------------------------------------------------

def test_out_of_frame_stats() -> None:
    images = [{"id": 1, "width": 101, "height": 51}, {"id": 2, "width": 11, "height": 11}]
    boxes = [
        {"image_id": 1, "bbox": [0, 0, 100, 50]},  # touches x = W - 1 and y = H - 1: inside
        {"image_id": 1, "bbox": [-10, 0, 20, 10]},  # half outside
        {"image_id": 1, "bbox": [90, 40, 20, 20]},  # 10 x 10 of 20 x 20 inside: 3/4 outside
        {"image_id": 2, "bbox": [20, 20, 5, 5]},  # wholly outside
        {"image_id": 2, "bbox": [2, 2, 3, 3]},
    ]
    assert out_of_frame_stats(boxes, images) == {"boxes": 5.0, "out_of_frame": 3.0, "out_of_frame_fraction": 0.6,
                                                 "mean_outside": pytest.approx((0.5 + 0.75 + 1.0) / 3),
                                                 "max_outside": 1.0}
    assert out_of_frame_stats(boxes[:1] + boxes[4:], images)["mean_outside"] == -1.0
    assert out_of_frame_stats([], images) == {"boxes": 0.0, "out_of_frame": 0.0, "out_of_frame_fraction": -1.0,
                                              "mean_outside": -1.0, "max_outside": -1.0}
    with pytest.raises(DatasetError, match="Box 0 has image_id 3, which is not among the 2 images"):
        out_of_frame_stats([{"image_id": 3, "bbox": [0, 0, 1, 1]}], images)
