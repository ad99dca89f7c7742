"""vfe_hub.evaluation.tao against the official TAO toolkit's numbers on generated cases, and its input checks.

tests/data/tao/cases.json holds the inputs (ground truth and results) and the runs (inputs, thresholds, max_dets);
expected.json the toolkit's get_results() and per-category AP of each run, or the error it stops with. Both are
written by tests/data/tao/make_reference.py (README.md there).
"""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vfe_hub.errors import DatasetError, VfeHubError
from vfe_hub.evaluation.lvis_data import FREQUENCIES
from vfe_hub.evaluation.tao import _track_scores, evaluate
from vfe_hub.evaluation.tao_data import TaoGroundTruth

DATA = Path(__file__).parent / "data" / "tao"
_GENERATED = json.loads((DATA / "cases.json").read_text())
INPUTS: dict[str, dict[str, Any]] = _GENERATED["inputs"]
RUNS = {run["name"]: run for run in _GENERATED["runs"]}
EXPECTED = json.loads((DATA / "expected.json").read_text())
SCORED = sorted(name for name in RUNS if "metrics" in EXPECTED[name])
#: category ids of no category in the generated ground truths (make_reference.py's UNKNOWN_IDS)
UNKNOWN_IDS = (0, 9999)


def run(name: str, **kwargs: Any) -> dict[str, float]:
    spec = RUNS[name]
    case = INPUTS[spec["inputs"]]
    return evaluate(case["ground_truth"], case["results"], iou_thresholds=spec["iou_thresholds"],
                    max_dets=spec["max_dets"], **kwargs)


@pytest.mark.parametrize("name", SCORED)
def test_equal_to_official(name: str) -> None:
    scores = run(name)
    expected = EXPECTED[name]["metrics"]
    assert set(scores) == set(expected) | {"APr", "APc", "APf"}
    assert {k: scores[k] for k in expected} == expected  # exact: the same float64 operations in the same order


@pytest.mark.parametrize("name", SCORED)
def test_frequency_groups_from_the_official_precision(name: str) -> None:
    """APr, APc, APf (not in the toolkit's summary): the mean over the categories of a frequency of the toolkit's
    per-category AP (each category has as many precision entries), -1 without any."""
    scores = run(name)
    frequency = {c["id"]: c.get("frequency") for c in INPUTS[RUNS[name]["inputs"]]["ground_truth"]["categories"]}
    reference = EXPECTED[name]
    for f in FREQUENCIES:
        aps = [ap for c, ap in zip(reference["category_ids"], reference["category_ap"])
               if frequency[c] == f and ap is not None]
        assert scores[f"AP{f}"] == pytest.approx(float(np.mean(aps)) if aps else -1.0, abs=1e-12)


def test_generated_cases_cover_the_rules() -> None:
    everything = [r for case in INPUTS.values() for r in case["results"]]
    assert any(r["track_id"] == 0 for r in everything) and any(r["track_id"] < 0 for r in everything)
    assert any("video_id" not in r for r in everything) and any("video_id" in r for r in everything)
    assert any(r["bbox"][2] * r["bbox"][3] == 0 for r in everything)
    capped = [spec for spec in RUNS.values()
              if np.unique([r["image_id"] for r in INPUTS[spec["inputs"]]["results"]], return_counts=True)[1].max()
              > spec["max_dets"]]
    assert len(capped) >= 5 and any(spec["max_dets"] == 300 for spec in capped)
    alias = INPUTS["category_alias"]
    merged = {m["id"] for c in alias["ground_truth"]["categories"] for m in c.get("merged", ())}
    assert merged and any(r["category_id"] in merged for r in alias["results"])
    grounds = [c["ground_truth"] for c in INPUTS.values()]
    assert any(t.get("ignore") for g in grounds for t in g["tracks"])
    assert any(t["id"] == -1 for g in grounds for t in g["tracks"])
    assert any(a["area"] == 0 for g in grounds for a in g["annotations"])
    assert any(v["neg_category_ids"] and v["not_exhaustive_category_ids"] for g in grounds for v in g["videos"])
    lengths = {n for g in grounds for n in np.unique([a["track_id"] for a in g["annotations"]],
                                                     return_counts=True)[1].tolist()}
    assert {1, 3, 10} <= lengths and max(lengths) > 10
    scores = [r["score"] for r in INPUTS["score_ties"]["results"]]
    assert len(set(scores)) < len(scores) / 10
    assert EXPECTED["basic@iou_0.75@max_dets_300"]["metrics"]["AP50"] == -1
    assert EXPECTED["basic"]["metrics"]["AP75"] == -1 and EXPECTED["basic"]["metrics"]["AP50"] >= 0
    assert EXPECTED["basic@iou_0.5_0.75@max_dets_300"]["metrics"]["AP75"] >= 0


def kept_by_cap(results: list[dict[str, Any]], max_dets: int) -> set[int]:
    """The positions of the results ``limit_dets_per_image`` keeps: per image the best, ties in input order."""
    by_image: dict[int, list[int]] = {}
    for i, r in enumerate(results):
        by_image.setdefault(r["image_id"], []).append(i)
    return {i for found in by_image.values() for i in sorted(found, key=lambda i: -results[i]["score"])[:max_dets]}


def test_unknown_category_cases_cover_the_rules() -> None:
    """Scored runs whose unknown-category results push known ones past the cap, at 300 and below, tracks that mix
    known and unknown categories of which the cap keeps one category (scored) or both (the toolkit asserts)."""
    pushed = set()
    for name in SCORED:
        results, max_dets = INPUTS[RUNS[name]["inputs"]]["results"], RUNS[name]["max_dets"]
        known = [i for i, r in enumerate(results) if r["category_id"] not in UNKNOWN_IDS]
        kept_without = {known[j] for j in kept_by_cap([results[i] for i in known], max_dets)}
        if any(i in kept_without and i not in kept_by_cap(results, max_dets) for i in known):
            pushed.add(max_dets)
    assert 300 in pushed and min(pushed) < 300

    def mixed_tracks(name: str) -> list[set[bool]]:
        """Per track mixing categories: whether the cap keeps its unknown results, its known ones (a set of both)."""
        results, max_dets = INPUTS[RUNS[name]["inputs"]]["results"], RUNS[name]["max_dets"]
        categories: dict[int, set[int]] = {}
        for r in results:
            categories.setdefault(r["track_id"], set()).add(r["category_id"] in UNKNOWN_IDS)
        kept = kept_by_cap(results, max_dets)
        mixed = [t for t, c in categories.items() if len(c) == 2]
        return [{results[i]["category_id"] in UNKNOWN_IDS for i in kept if results[i]["track_id"] == t}
                for t in mixed]

    resolved = [kinds for name in SCORED for kinds in mixed_tracks(name)]
    assert {False} in resolved and {True} in resolved  # the cap keeps the known part / the unknown part only
    for name in ("unknown_categories_cap_3", "unknown_categories_mixed_track"):
        assert "multiple categories" in EXPECTED[name]["error"] and {False, True} in mixed_tracks(name)


def test_empty_results_score_as_no_evaluated_result() -> None:
    """The toolkit fails on empty results; they give what it gives when no result is evaluated."""
    scores = evaluate(INPUTS["no_evaluated_results"]["ground_truth"], [])
    expected = EXPECTED["no_evaluated_results"]["metrics"]
    assert {k: scores[k] for k in expected} == expected
    assert scores["AP"] == 0 and set(scores.values()) <= {0.0, -1.0}


def test_ground_truth_and_results_forms(tmp_path: Path) -> None:
    case = INPUTS["category_alias"]
    untouched = copy.deepcopy(case)
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(case["ground_truth"]))
    results_path.write_text(json.dumps(case["results"]))
    expected = evaluate(case["ground_truth"], case["results"])
    assert case == untouched  # inputs are not modified (the toolkit rewrites category ids in place)
    assert {k: expected[k] for k in EXPECTED["category_alias"]["metrics"]} == EXPECTED["category_alias"]["metrics"]
    for gt in (gt_path, str(gt_path), TaoGroundTruth.load(gt_path)):
        for results in (results_path, str(results_path), case["results"]):
            assert evaluate(gt, results) == expected


def test_track_scores_are_numpy_means() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, 200)
    starts = np.cumsum(lengths) - lengths
    scores = rng.random(int(lengths.sum()))
    constant = rng.random(len(lengths)) < 0.3
    for s, n, c in zip(starts, lengths, constant):
        if c:
            scores[s:s + n] = 0.1
    expected = [0.1 if c else np.mean(scores[s:s + n].tolist()) for s, n, c in zip(starts, lengths, constant)]
    assert _track_scores(scores, starts, lengths).tolist() == expected


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def case() -> dict[str, Any]:
    return copy.deepcopy(INPUTS["basic"])


def first_of_track(results: list[dict[str, Any]], index: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two results of one track (in different images)."""
    by_track: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_track.setdefault(r["track_id"], []).append(r)
    pairs = [rs for rs in by_track.values() if len(rs) > 1]
    return pairs[index][0], pairs[index][1]


def test_repeated_image_and_track(case: dict[str, Any]) -> None:
    a, b = first_of_track(case["results"])
    b["image_id"] = a["image_id"]
    with pytest.raises(DatasetError, match=rf"of track_id {a['track_id']} both give image_id {a['image_id']}; a track "
                                           r"has one box per frame"):
        evaluate(case["ground_truth"], case["results"])


def test_track_with_two_categories(case: dict[str, Any]) -> None:
    a, b = first_of_track(case["results"])
    b["category_id"] = next(c["id"] for c in case["ground_truth"]["categories"] if c["id"] != a["category_id"])
    with pytest.raises(DatasetError, match=rf"of track_id {a['track_id']} give category_id .*a track has one category"):
        evaluate(case["ground_truth"], case["results"])


def test_track_in_two_videos(case: dict[str, Any]) -> None:
    a, b = first_of_track(case["results"])
    video_of = {i["id"]: i["video_id"] for i in case["ground_truth"]["images"]}
    b["image_id"] = next(i for i, v in video_of.items() if v != video_of[a["image_id"]])
    b.pop("video_id", None)
    with pytest.raises(DatasetError, match=r"give video .*renumber the tracks"):
        evaluate(case["ground_truth"], case["results"])


def test_video_id_not_the_images(case: dict[str, Any]) -> None:
    case["results"][4]["video_id"] = 77
    with pytest.raises(DatasetError, match=r"entry 4 has video_id 77 but its image_id .* is a frame of video"):
        evaluate(case["ground_truth"], case["results"])


def test_unknown_image_id(case: dict[str, Any]) -> None:
    case["results"][3]["image_id"] = 10 ** 9
    with pytest.raises(DatasetError, match=r"entry 3 has image_id 1000000000, which is not an image"):
        evaluate(case["ground_truth"], case["results"])


@pytest.mark.parametrize("name", ["unknown_categories_cap_3", "unknown_categories_mixed_track"])
def test_track_mixing_categories_after_the_cap(name: str) -> None:
    """Where the cap keeps results of a known and an unknown category in one track, the toolkit asserts."""
    assert "AssertionError: Annotations for track" in EXPECTED[name]["error"]
    with pytest.raises(DatasetError, match=r"give category_id \d+ and \d+; a track has one category"):
        run(name)


def test_only_unknown_categories_score_as_no_evaluated_result(caplog: pytest.LogCaptureFixture) -> None:
    """No result of a known category: the toolkit fails (as on empty results); here they give what empty results
    give, and one warning."""
    case = INPUTS["unknown_categories_only"]
    assert "ValueError: Found no predicted annotations" in EXPECTED["unknown_categories_only"]["error"]
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        scores = evaluate(case["ground_truth"], case["results"])
    assert scores == evaluate(case["ground_truth"], []) and scores["AP"] == 0
    assert len(caplog.records) == 1 and f"{len(case['results'])} of {len(case['results'])} results" in caplog.text


def test_unknown_category_ids_warn_once_or_are_refused_with_strict(caplog: pytest.LogCaptureFixture) -> None:
    case = INPUTS["unknown_categories"]
    unknown = [i for i, r in enumerate(case["results"]) if r["category_id"] in UNKNOWN_IDS]
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        run("unknown_categories")
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    message = caplog.records[0].getMessage()
    assert (f"{len(unknown)} of {len(case['results'])} results have a category_id that is not a category" in message
            and f"entry {unknown[0]}: category_id {case['results'][unknown[0]]['category_id']}" in message
            and "0-based class indices" in message and "strict=True" in message)
    with pytest.raises(DatasetError, match=rf"entry {unknown[0]} has category_id \d+, which is not a category of the "
                                           rf"ground truth: results need the TAO category ids \(not 0-based class "
                                           rf"indices\).*{len(unknown)} entries have unknown category_ids"):
        run("unknown_categories", strict=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        assert run("basic", strict=True) == run("basic")
    assert not caplog.records


def test_mixed_track_with_a_capped_part(case: dict[str, Any]) -> None:
    """A track whose unknown-category frame falls to the cap is scored on its known frames; kept, it is refused."""
    a, b = first_of_track(case["results"])
    b["category_id"] = 0
    with pytest.raises(DatasetError, match="a track has one category"):
        evaluate(case["ground_truth"], case["results"])
    crowd = [dict(b, track_id=10 ** 6 + k, score=1.0, category_id=1) for k in range(3)]
    capped = evaluate(case["ground_truth"], crowd + case["results"], max_dets=3)
    without = [r for r in case["results"] if r is not b]
    assert capped == evaluate(case["ground_truth"], crowd + without, max_dets=3)


@pytest.mark.parametrize("field", ["image_id", "category_id", "bbox", "score", "track_id"])
def test_missing_field(case: dict[str, Any], field: str) -> None:
    del case["results"][2][field]
    with pytest.raises(DatasetError, match=rf"entry 2 lacks \['{field}'\].*need image_id, category_id, bbox"):
        evaluate(case["ground_truth"], case["results"])


def test_invalid_results(case: dict[str, Any]) -> None:
    bad = copy.deepcopy(case["results"])
    bad[1]["score"] = float("nan")
    with pytest.raises(DatasetError, match="entry 1 .* NaN score"):
        evaluate(case["ground_truth"], bad)
    bad = copy.deepcopy(case["results"])
    bad[1]["bbox"] = [0, 0, float("inf"), 3]
    with pytest.raises(DatasetError, match="non-finite bbox"):
        evaluate(case["ground_truth"], bad)
    bad = copy.deepcopy(case["results"])
    bad[1]["track_id"] = "seven"
    with pytest.raises(DatasetError, match="integer image_id, category_id and track_id"):
        evaluate(case["ground_truth"], bad)
    with pytest.raises(DatasetError, match="list of TAO result dicts"):
        evaluate(case["ground_truth"], {"results": case["results"]})
    with pytest.raises(ValueError, match="max_dets=0"):
        evaluate(case["ground_truth"], case["results"], max_dets=0)
    with pytest.raises(ValueError, match=r"iou_thresholds=\(\)"):
        evaluate(case["ground_truth"], case["results"], iou_thresholds=())
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        evaluate(case["ground_truth"], case["results"], iou_thresholds=(0.0, 0.5))


@pytest.mark.parametrize("edit, message", [
    (lambda gt: gt.pop("tracks"), r"not a TAO annotation file: it needs the lists"),
    (lambda gt: gt["videos"][0].pop("neg_category_ids"), r"video 1 has no neg_category_ids"),
    (lambda gt: gt["images"][0].pop("frame_index"), r"every image needs integer video_id and frame_index"),
    (lambda gt: gt["annotations"][0].update(track_id=12345), r"has track_id 12345, which is not in 'tracks'"),
    (lambda gt: gt["annotations"][0].update(category_id=99), r"has category_id 99 but its track"),
    (lambda gt: gt["annotations"].append(dict(gt["annotations"][0], id=10 ** 6)), r"has 2 annotations in image"),
    (lambda gt: gt["tracks"].append(dict(gt["tracks"][0])), r"1 track ids are repeated"),
])
def test_not_tao_ground_truth(case: dict[str, Any], edit, message: str) -> None:
    edit(case["ground_truth"])
    with pytest.raises(DatasetError, match=message):
        evaluate(case["ground_truth"], case["results"])


def test_unreadable_inputs(case: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="TAO annotation file .* does not exist"):
        evaluate(tmp_path / "missing.json", case["results"])
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(DatasetError, match="Cannot read .*bad.json as JSON"):
        evaluate(case["ground_truth"], tmp_path / "bad.json")
    assert issubclass(DatasetError, VfeHubError)
