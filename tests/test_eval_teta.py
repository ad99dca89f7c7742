"""vfe_hub.evaluation.teta against the official TETA code's numbers on generated cases, its quirks and its input checks.

tests/data/teta/cases.json holds the inputs ({name: {ground_truth, results}}), the runs (inputs, max_dets) and inputs
vfe_hub refuses; expected.json the official numbers of each run and what the official code does with each refused
input. Both are written by tests/data/teta/make_reference.py (README.md there).
"""
from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vfe_hub.errors import DatasetError
from vfe_hub.evaluation.tao_data import TaoGroundTruth
from vfe_hub.evaluation.teta import ALPHAS, KEYS, evaluate

DATA = Path(__file__).parent / "data" / "teta"
_GENERATED = json.loads((DATA / "cases.json").read_text())
INPUTS: dict[str, dict[str, Any]] = _GENERATED["inputs"]
RUNS = {run["name"]: run for run in _GENERATED["runs"]}
BAD: dict[str, dict[str, Any]] = _GENERATED["bad_inputs"]
EXPECTED = json.loads((DATA / "expected.json").read_text())


def same(scores: dict[str, float], expected: dict[str, float], tolerance: float = 1e-9) -> bool:
    assert set(scores) == set(expected) == set(KEYS)
    return all((math.isnan(scores[k]) and math.isnan(expected[k])) or abs(scores[k] - expected[k]) <= tolerance
               for k in KEYS)


def run(name: str) -> dict[str, float]:
    case = INPUTS[RUNS[name]["inputs"]]
    return evaluate(case["ground_truth"], case["results"], max_dets=RUNS[name]["max_dets"])


@pytest.mark.parametrize("name", sorted(RUNS))
def test_equal_to_official(name: str) -> None:
    assert same(run(name), EXPECTED[name])


def test_generated_cases_cover_the_rules() -> None:
    grounds = {name: case["ground_truth"] for name, case in INPUTS.items()}
    results = {name: case["results"] for name, case in INPUTS.items()}
    everything = [r for rs in results.values() for r in rs]
    # frames without ground truth, and results on them
    assert any({im["id"] for im in g["images"]} - {a["image_id"] for a in g["annotations"]} for g in grounds.values())
    assert any(r["image_id"] not in {a["image_id"] for a in grounds[n]["annotations"]}
               for n, rs in results.items() for r in rs)
    # annotation file order is not frame order; categories without ground truth; aliases used by results
    assert any(a["id"] > b["id"] for g in grounds.values() for a, b in zip(g["annotations"], g["annotations"][1:]))
    assert any({c["id"] for c in g["categories"]} - {a["category_id"] for a in g["annotations"]}
               for g in grounds.values())
    merged = {m["id"] for c in grounds["category_alias"]["categories"] for m in c.get("merged", ())}
    assert merged and any(r["category_id"] in merged for r in results["category_alias"])
    # tracks that switch categories, ids shared by videos, unknown categories, track id 0, zero-area boxes
    categories_of: dict[tuple[str, int, int], set[int]] = {}
    for name, rs in results.items():
        for r in rs:
            categories_of.setdefault((name, r.get("video_id", 0), r["track_id"]), set()).add(r["category_id"])
    assert any(len(c) > 1 for c in categories_of.values())
    video_of = {im["id"]: im["video_id"] for im in grounds["ids_shared_by_videos"]["images"]}
    videos_per_id: dict[int, set[int]] = {}
    for r in results["ids_shared_by_videos"]:
        videos_per_id.setdefault(r["track_id"], set()).add(video_of[r["image_id"]])
    assert any(len(v) > 1 for v in videos_per_id.values())
    assert any(r["category_id"] == 999 for r in results["unknown_categories"])
    assert any(r["bbox"][2] * r["bbox"][3] == 0 for r in everything)
    assert any(a["bbox"][2] * a["bbox"][3] == 0 for g in grounds.values() for a in g["annotations"])
    assert any("video_id" not in r for r in everything)
    # IoUs on the threshold grid: every width 1..20 of the 20 x 10 box
    widths = {r["bbox"][2] for r in results["alpha_grid"] if r["bbox"][:2] == [0.0, 0.0]}
    assert set(range(1, 21)) <= widths and any(a != round(a, 2) for a in ALPHAS)
    # score ties, capped and uncapped runs (a cap that removes results), empty results
    scores = [r["score"] for r in results["score_ties"]]
    assert len(set(scores)) < len(scores) / 10
    capped = [spec for spec in RUNS.values() if spec["max_dets"] and np.unique(
        [r["image_id"] for r in INPUTS[spec["inputs"]]["results"]], return_counts=True)[1].max() > spec["max_dets"]]
    assert len(capped) >= 5 and any(spec["max_dets"] == 0 for spec in RUNS.values())
    assert results["empty_results"] == [] and not grounds["no_annotations"]["annotations"]


def test_no_ground_truth_box_gives_nan_as_the_official_code() -> None:
    assert all(math.isnan(v) for v in run("no_annotations").values())


def test_ground_truth_and_results_forms(tmp_path: Path) -> None:
    case = INPUTS["category_alias"]
    untouched = copy.deepcopy(case)
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(case["ground_truth"]))
    results_path.write_text(json.dumps(case["results"]))
    expected = evaluate(case["ground_truth"], case["results"])
    assert case == untouched  # inputs are not modified (the official code rewrites category ids in place)
    assert same(expected, EXPECTED["category_alias"])
    for gt in (gt_path, str(gt_path), TaoGroundTruth.load(gt_path)):
        for results in (results_path, str(results_path), case["results"]):
            assert evaluate(gt, results) == expected
    assert evaluate(case["ground_truth"], case["results"], max_dets=0) == expected


def test_numbers_do_not_depend_on_the_size_of_track_ids() -> None:
    """Ids near 10**12 (the official code would allocate an array that long) and just below 2**63 give the same
    numbers (benchmarks/teta_eval_speed.py shows the same peak memory too)."""
    case = copy.deepcopy(INPUTS["ids_shared_by_videos"])
    expected = evaluate(case["ground_truth"], case["results"])
    for offset in (10 ** 12, 2 ** 63 - 10 ** 6):
        moved = copy.deepcopy(case)
        for track in moved["ground_truth"]["tracks"]:
            track["id"] += offset
        for item in moved["ground_truth"]["annotations"] + moved["results"]:
            item["track_id"] += offset
        assert evaluate(moved["ground_truth"], moved["results"]) == expected


def test_fields_teta_does_not_read() -> None:
    """The tracks' ignore flags, the annotations' areas and the videos' negative and not-exhaustive lists change
    nothing; results on frames without ground-truth boxes change nothing, even in their own track."""
    case = copy.deepcopy(INPUTS["basic"])
    expected = evaluate(case["ground_truth"], case["results"])
    gt = case["ground_truth"]
    for track in gt["tracks"]:
        track["ignore"] = 1 - track.get("ignore", 0)
    for a in gt["annotations"]:
        a["area"] = 0.0
    for video in gt["videos"]:
        video["neg_category_ids"], video["not_exhaustive_category_ids"] = [], [c["id"] for c in gt["categories"]]
    video_of = {im["id"]: im["video_id"] for im in gt["images"]}
    empty = sorted({im["id"] for im in gt["images"]} - {a["image_id"] for a in gt["annotations"]})
    track = next(r for r in case["results"] if any(video_of[i] == video_of[r["image_id"]] for i in empty))
    image = next(i for i in empty if video_of[i] == video_of[track["image_id"]])
    extra = {**track, "image_id": image, "bbox": [1.0, 1.0, 500.0, 500.0]}
    assert all(r["image_id"] != image or r["track_id"] != track["track_id"] for r in case["results"])
    assert evaluate(gt, case["results"] + [extra]) == expected


def test_unknown_categories_warn_or_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    case = INPUTS["unknown_categories"]
    unknown = [i for i, r in enumerate(case["results"]) if r["category_id"] == 999]
    with caplog.at_level(logging.WARNING, logger="vfe_hub.evaluation.teta"):
        assert same(evaluate(case["ground_truth"], case["results"]), EXPECTED["unknown_categories"])
    assert len(caplog.records) == 1
    assert (f"{len(unknown)} of {len(case['results'])} results have a category_id that is not a category of the "
            f"ground-truth dict (1 distinct ids), e.g. entry {unknown[0]}: category_id 999") in caplog.text
    with pytest.raises(DatasetError, match=rf"entry {unknown[0]} has category_id 999, which is not a category of the "
                                           r"ground truth: results need the TAO category ids"):
        evaluate(case["ground_truth"], case["results"], strict=True)


# ---------------------------------------------------------------------------------------------------------------
# Inputs the official code fails on or miscounts
# ---------------------------------------------------------------------------------------------------------------

def test_the_official_code_fails_or_miscounts_on_the_refused_inputs() -> None:
    """What expected.json records of the official code on the refused inputs."""
    outcome = EXPECTED["bad_inputs"]
    assert outcome["result_of_unknown_image"]["error"].startswith("KeyError")
    assert outcome["two_boxes_of_a_track_in_a_frame"]["error"].startswith("TrackEvalException: Tracker predicts the "
                                                                          "same ID more than once")
    # the negative id merges the two ids of one object (no id switch left), the shared name drops a video
    assert outcome["negative_track_id"]["metrics"]["AssocA"] > EXPECTED["switches"]["AssocA"]
    assert not same(outcome["two_videos_of_one_name"]["metrics"], EXPECTED["basic"])


@pytest.mark.parametrize("name, message", [
    ("negative_track_id", r"Results entry \d+ has the negative track_id -1 \(its track takes part in the "
                          r"evaluation.*Give tracks ids from 0"),
    ("result_of_unknown_image", r"has image_id 10000000, which is not an image of the ground truth"),
    ("two_boxes_of_a_track_in_a_frame", r"Results entries 0 and \d+ give track_id 1 two boxes in one image \(its "
                                        r"track takes part"),
    ("two_videos_of_one_name", r"2 videos are named 'val-source_1-video_001' \(with '/' read as '-'\); the official "
                               r"TETA code keys videos by name"),
])
def test_refused_inputs(name: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        evaluate(BAD[name]["ground_truth"], BAD[name]["results"])


def test_ids_of_tracks_out_of_every_cluster_are_ignored_as_the_official_code_does() -> None:
    """A negative id and two boxes of a track in a frame are looked at by the official code only for tracks that
    take part (a box with IoU >= 0.5): elsewhere they change nothing. strict=True refuses them everywhere."""
    case = copy.deepcopy(INPUTS["switches"])
    expected = evaluate(case["ground_truth"], case["results"])
    far = {"category_id": 1, "score": 0.9, "track_id": -5, "bbox": [900.0, 900.0, 5.0, 5.0]}
    extra = [dict(far, image_id=100 + k) for k in (0, 0, 1)]
    assert same(evaluate(case["ground_truth"], case["results"] + extra), expected, 0.0)
    with pytest.raises(DatasetError, match=r"entry \d+ has the negative track_id -5 \(strict=True refuses it"):
        evaluate(case["ground_truth"], case["results"] + extra, strict=True)
    with pytest.raises(DatasetError, match=r"give track_id 5 two boxes in one image \(strict=True refuses it\)"):
        evaluate(case["ground_truth"], case["results"] + [dict(r, track_id=5) for r in extra], strict=True)


@pytest.fixture
def case() -> dict[str, Any]:
    return copy.deepcopy(INPUTS["basic"])


@pytest.mark.parametrize("edit, message", [
    (lambda gt: gt["images"].append(dict(gt["images"][0], id=10 ** 7, video_id=99)),
     r"image 10000000 is a frame of video 99, which is not in 'videos'"),
    (lambda gt: gt["annotations"][0].update(bbox=[0, 0, float("nan"), 3]), r"has the non-finite bbox"),
    (lambda gt: ([a.update(track_id=-3) for a in gt["annotations"] if a["track_id"] == 1],
                 gt["tracks"][0].update(id=-3)), r"track -3 has a negative id"),
    (lambda gt: gt["categories"][1].update(name=gt["categories"][0]["name"]) or
     gt["categories"][2].update(name=gt["categories"][0]["name"]), r"3 categories are named 'category_1'"),
    (lambda gt: gt.pop("tracks"), r"not a TAO annotation file: it needs the lists"),
])
def test_ground_truth_checks(case: dict[str, Any], edit, message: str) -> None:
    gt = case["ground_truth"]
    edit(gt)
    with pytest.raises(DatasetError, match=message):
        evaluate(gt, case["results"])


def test_results_checks(case: dict[str, Any], tmp_path: Path) -> None:
    gt = case["ground_truth"]
    bad = copy.deepcopy(case["results"])
    bad[4]["video_id"] = 77
    with pytest.raises(DatasetError, match=r"entry 4 has video_id 77 but its image_id .* is a frame of video"):
        evaluate(gt, bad)
    for field in ("image_id", "category_id", "bbox", "score", "track_id"):
        bad = copy.deepcopy(case["results"])
        del bad[2][field]
        with pytest.raises(DatasetError, match=rf"entry 2 lacks \['{field}'\]"):
            evaluate(gt, bad)
    for key, value, message in (("score", float("nan"), "NaN score"), ("bbox", [0, 0, float("inf"), 3], "non-finite"),
                                ("track_id", 2 ** 64, "integer image_id, category_id and track_id \\(of 64 bits\\)"),
                                ("track_id", "seven", "integer image_id")):
        bad = copy.deepcopy(case["results"])
        bad[1][key] = value
        with pytest.raises(DatasetError, match=message):
            evaluate(gt, bad)
    with pytest.raises(DatasetError, match="list of TAO result dicts"):
        evaluate(gt, {"results": case["results"]})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="Cannot read .*bad.json as JSON"):
        evaluate(gt, tmp_path / "bad.json")
    with pytest.raises(DatasetError, match="TAO annotation file .* does not exist"):
        evaluate(tmp_path / "missing.json", case["results"])
    with pytest.raises(ValueError, match="max_dets=-1"):
        evaluate(gt, case["results"], max_dets=-1)
