"""Regenerate cases.json and expected.json: generated TAO cases and the official TAO toolkit's numbers on them.

    python tests/data/tao/make_reference.py PATH/TO/TAO-checkout

PATH/TO/TAO-checkout is a checkout of https://github.com/TAO-Dataset/tao (the folder holding ``tao/toolkit``); see
README.md in this folder for the commit. This script is the only code that imports the toolkit; the tests read the
two JSON files it writes. Two shims let the toolkit run on the project's Python, both without changing a number:

* ``numba``: the toolkit decorates ``bb_intersect_union`` (float64 scalar arithmetic) with ``numba.jit``; without
  numba installed a stand-in module whose ``jit`` returns the function unchanged is used, so the function runs as
  plain Python (the same IEEE float64 operations).
* ``np.float``: ``TaoEval.accumulate`` calls ``astype(dtype=np.float)``; the alias of ``float`` (float64), removed
  in numpy 1.24, is put back.

The evaluation is the toolkit's: ``TaoEval(gt_path, TaoResults(gt, results, max_dets))`` with
``params.iou_thrs = np.array(iou_thresholds)`` (as the toolkit's ``tao/utils/evaluation.py`` sets it) and
``params.max_dets = max_dets``, then ``run()`` and ``get_results()``. Results get their ``video_id`` filled in for
the toolkit (it requires one) where a case leaves it out. Besides the metrics, each case stores the mean of the
toolkit's precision array over thresholds and recall thresholds per category (area and length "all"; null where
the category is -1), from which the tests recompute APr, APc and APf. Where the toolkit fails (an assertion, an
exception), the exception is stored instead of numbers.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import itertools
import json
import logging
import sys
import tempfile
import types
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from vfe_hub.hub import atomic_write

HERE = Path(__file__).resolve().parent
FREQUENCIES = ("r", "c", "f")


def import_toolkit(checkout: Path) -> Any:
    if importlib.util.find_spec("numba") is None:
        sys.modules["numba"] = types.SimpleNamespace(jit=lambda function: function)
    np.float = float
    sys.path.insert(0, str(checkout))
    from tao.toolkit.tao import Tao, TaoEval, TaoResults
    logging.getLogger().setLevel(logging.CRITICAL)
    return Tao, TaoEval, TaoResults


def plain_name(key: Any) -> str:
    if isinstance(key, str):
        return key
    kind, subset, name, _ = key
    return f"{kind}{name[0]}" if subset == "area" else f"{kind}_{name}"


def official(toolkit: Any, case: dict[str, Any]) -> dict[str, Any]:
    Tao, TaoEval, TaoResults = toolkit
    gt = case["ground_truth"]
    video_of = {image["id"]: image["video_id"] for image in gt["images"]}
    results = copy.deepcopy(case["results"])
    for r in results:
        r.setdefault("video_id", video_of[r["image_id"]])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gt.json"
        path.write_text(json.dumps(gt))
        tao = Tao(str(path))
        try:
            evaluator = TaoEval(tao, TaoResults(tao, results, max_dets=case["max_dets"]))
            evaluator.params.iou_thrs = np.array(case["iou_thresholds"])
            evaluator.params.max_dets = case["max_dets"]
            evaluator.run()
        except Exception as e:  # the toolkit fails on some inputs; that is recorded
            return {"error": f"{type(e).__name__}: {e}"}
    precision = evaluator.eval["precision"][:, :, :, 0, 0]
    category_ap = [float(np.mean(precision[:, :, k])) if (precision[:, :, k] > -1).any() else None
                   for k in range(precision.shape[2])]
    return {"metrics": {plain_name(k): float(v) for k, v in evaluator.get_results().items()},
            "category_ids": [int(c) for c in evaluator.params.cat_ids], "category_ap": category_ap}


# ---------------------------------------------------------------------------------------------------------------
# Generated cases
# ---------------------------------------------------------------------------------------------------------------

def boxes_along(rng: np.random.Generator, n: int, grid: float, size: float) -> np.ndarray:
    """``n`` boxes of one moving object, coordinates on a ``grid`` (0.25: dyadic, exact sums; 0.01: decimals)."""
    wh = np.exp(rng.uniform(np.log(size / 2), np.log(size * 2), 2))
    xy = rng.uniform(0, 400, 2)
    steps = np.cumsum(rng.normal(0, size / 8, (n, 4)), axis=0) * [1, 1, 0.2, 0.2]
    boxes = np.concatenate([np.broadcast_to(xy, (n, 2)), np.broadcast_to(wh, (n, 2))], axis=1) + steps
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 1)
    return on_grid(boxes, grid)


def on_grid(values: np.ndarray, grid: float) -> np.ndarray:
    """Multiples of 0.25 (exact in binary) or numbers of 2 decimals (short in JSON)."""
    return np.round(values / grid) * grid if grid == 0.25 else np.round(values, 2)


def make_case(seed: int, *, videos: int = 3, frames: tuple[int, int] = (3, 11), tracks: int = 3,
              categories: int = 8, grid: float = 0.25,
              score_levels: int = 0, nonpositive_ids: bool = False, alias: bool = False, omit_video_id: bool = False,
              crowd: int = 0, big_image_ids: bool = True, gt_special_ids: bool = False) -> dict[str, Any]:
    """A TAO-like case ({"ground_truth", "results"}); README.md lists what the options exercise."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"category_{c}", "frequency": FREQUENCIES[c % 3]}
            for c in range(1, categories + 1)]
    cats[-1].pop("frequency")  # a category without a frequency belongs to no group
    if alias:
        cats[0]["merged"] = [{"id": 1000 + 1, "name": "alias_of_1"}]
    out: dict[str, Any] = {"videos": [], "images": [], "tracks": [], "annotations": [],
                           "categories": cats}
    results: list[dict[str, Any]] = []
    used_ids = set()
    track_id = 0
    result_track = 0
    for v in range(1, videos + 1):
        n_frames = int(rng.integers(*frames))
        if big_image_ids:  # ids whose set order is not their frame order
            ids = []
            while len(ids) < n_frames:
                i = int(rng.integers(1, 200000))
                if i not in used_ids:
                    used_ids.add(i)
                    ids.append(i)
        else:
            ids = [len(out["images"]) + k + 1 for k in range(n_frames)]
        for k, image_id in enumerate(ids):
            out["images"].append({"id": image_id, "video_id": v, "frame_index": k * 30})
        positives = rng.choice(np.arange(1, categories), size=min(3, categories - 1), replace=False)
        video_tracks = []
        for _ in range(tracks):
            track_id += 1
            category = int(rng.choice(positives))
            length = int(rng.choice([1, 2, 3, 3, 4, 9, 10, 10, 11, n_frames]))
            start = int(rng.integers(0, max(1, n_frames - length + 1)))
            span = list(range(start, min(n_frames, start + length)))
            size = float(rng.choice([12, 30, 60, 120]))
            boxes = boxes_along(rng, len(span), grid, size)
            gid = track_id
            if gt_special_ids and len(video_tracks) < 2 and v == 1:
                gid = [0, -1][len(video_tracks)]
            entry = {"id": gid, "video_id": v, "category_id": category}
            if rng.random() < 0.1:
                entry["ignore"] = 1
            out["tracks"].append(entry)
            area_scale = float(rng.choice([1.0, 0.8, 1.5]))
            for f, box in zip(span, boxes):
                area = round(float(box[2] * box[3] * area_scale), 2) if rng.random() > 0.05 else 0.0
                out["annotations"].append({"id": len(out["annotations"]) + 1, "image_id": ids[f], "track_id": gid,
                                           "category_id": category, "bbox": box.tolist(), "area": area})
            video_tracks.append((gid, category, span, boxes))
            if rng.random() < 0.15:  # an identical copy with another area: equal IoUs
                track_id += 1
                out["tracks"].append({"id": track_id, "video_id": v, "category_id": category})
                for f, box in zip(span, boxes):
                    out["annotations"].append({"id": len(out["annotations"]) + 1, "image_id": ids[f],
                                               "track_id": track_id, "category_id": category,
                                               "bbox": box.tolist(), "area": round(float(box[2] * box[3] * 3), 2)})
        others = [c for c in range(1, categories + 1) if c not in positives]
        neg = [int(c) for c in rng.choice(others, size=min(2, len(others)), replace=False)]
        not_exhaustive = [int(c) for c in positives if rng.random() < 0.3] + ([int(others[-1])] if rng.random() < 0.3
                                                                             else [])
        out["videos"].append({"id": v, "neg_category_ids": neg, "not_exhaustive_category_ids": not_exhaustive})

        def score() -> float:
            if score_levels:
                return float(rng.integers(1, score_levels + 1)) / score_levels
            return float(np.round(rng.random(), 3))

        def add_track(category: int, span: list[int], boxes: np.ndarray) -> None:
            nonlocal result_track
            result_track += 1
            tid = result_track
            if nonpositive_ids and rng.random() < 0.3:
                tid = 1 - tid  # 0 for the first track, then negative ids
            out_category = 1001 if (alias and category == 1 and rng.random() < 0.5) else category
            common = score()
            constant = rng.random() < (0.8 if score_levels else 0.3)  # equal frame scores: ties between tracks
            for f, box in zip(span, boxes):
                r = {"image_id": ids[f], "category_id": out_category, "bbox": box.tolist(), "track_id": tid,
                     "score": common if constant or rng.random() < 0.5 else score()}
                if not omit_video_id or rng.random() < 0.5:
                    r["video_id"] = v
                results.append(r)

        for gid, category, span, boxes in video_tracks:
            for _ in range(int(rng.integers(0, 3))):
                keep = [i for i in range(len(span)) if rng.random() < 0.85]
                extra = int(rng.integers(0, 3))
                more = list(range(span[-1] + 1, min(n_frames, span[-1] + 1 + extra)))
                jitter = rng.normal(0, 0.08, (len(keep), 4)) * boxes[keep][:, [2, 3, 2, 3]]
                moved = on_grid(boxes[keep] + jitter, grid)
                moved[:, 2:] = np.maximum(moved[:, 2:], grid)
                tail = boxes_along(rng, len(more), grid, 40)
                add_track(category, [span[i] for i in keep] + more,
                          np.concatenate([moved, tail]) if len(more) else moved)
            if grid == 0.25 and rng.random() < 0.2:  # an exact copy: IoU 1, and ties with the ground-truth copies
                add_track(category, span, boxes)  # (not with decimals: the toolkit's ``assert i <= u`` can fail)
        for _ in range(int(rng.integers(1, 4))):  # false positives: positive, negative or unrelated categories
            category = int(rng.choice(list(positives) + neg + [others[0]]))
            start = int(rng.integers(0, n_frames))
            span = list(range(start, min(n_frames, start + int(rng.integers(1, 6)))))
            add_track(category, span, boxes_along(rng, len(span), grid, float(rng.choice([20, 80]))))
        for _ in range(crowd):  # many results in the first frame: the per-frame cap
            add_track(int(rng.choice(positives)), [0], boxes_along(rng, 1, grid, 50))
    if rng.random() < 0.3:  # a zero-area result
        results[0] = dict(results[0], bbox=results[0]["bbox"][:2] + [0.0, 5.0])
    order = rng.permutation(len(results))
    return {"ground_truth": out, "results": [results[i] for i in order]}


def summation_order_case(toolkit_module: Any, seed: int) -> tuple[dict[str, Any], float]:
    """One ground-truth and one result track whose 3D IoU, added in the toolkit's set order, differs in the last bit
    from the frame-order sum; the threshold is set between the two, so only the toolkit's order gives its AP."""
    rng = np.random.default_rng(seed)
    while True:
        n = 7
        ids = [int(i) for i in rng.choice(np.arange(1, 100000), n, replace=False)]
        g = boxes_along(rng, n, 0.01, 50)
        d = np.round(g + rng.normal(0, 6, g.shape), 2)
        d[:, 2:] = np.maximum(d[:, 2:], 1)
        gd = {i: b.tolist() for i, b in zip(ids, g)}
        dd = {i: b.tolist() for i, b in zip(ids[1:], d[1:])}
        toolkit_iou = toolkit_module.compute_track_box_iou(dd, gd)
        inter = union = 0.0
        for i in ids:  # frame order
            if i in dd:
                a, b = toolkit_module.bb_intersect_union(dd[i], gd[i])
                inter += a
                union += b
            else:
                union += gd[i][2] * gd[i][3]
        frame_iou = inter / union
        if frame_iou != toolkit_iou and 0.3 < toolkit_iou < 0.95:
            break
    gt = {"categories": [{"id": 1, "name": "a", "frequency": "f"}],
          "videos": [{"id": 1, "neg_category_ids": [], "not_exhaustive_category_ids": []}],
          "images": [{"id": i, "video_id": 1, "frame_index": k} for k, i in enumerate(ids)],
          "tracks": [{"id": 1, "video_id": 1, "category_id": 1}],
          "annotations": [{"id": k + 1, "image_id": i, "track_id": 1, "category_id": 1, "bbox": gd[i],
                           "area": gd[i][2] * gd[i][3]} for k, i in enumerate(ids)]}
    results = [{"image_id": i, "category_id": 1, "bbox": dd[i], "score": 0.9, "track_id": 7} for i in ids[1:]]
    return {"ground_truth": gt, "results": results}, max(toolkit_iou, frame_iou)


def iou_ties_case() -> dict[str, Any]:
    """Equal IoUs: the first result is as close to ground-truth tracks 1 and 2 (both of 3 frames, mirrored about
    it), the second overlaps track 1 only. The toolkit gives the first to the later track (2), so both match; giving
    it track 1 leaves the second unmatched. In video 2 the first result has track id 0, which leaves its match
    (track 2) free, and the second equals track 2: the toolkit matches both to track 2. In video 3 ground-truth
    track 2 is ignored (a regular match is preferred to an ignored one whatever the IoU)."""
    gt: dict[str, Any] = {"categories": [{"id": 1, "name": "a", "frequency": "c"}], "videos": [], "images": [],
                          "tracks": [], "annotations": []}
    results = []
    for v in (1, 2, 3):
        gt["videos"].append({"id": v, "neg_category_ids": [], "not_exhaustive_category_ids": []})
        images = [10 * v + k for k in range(3)]
        gt["images"] += [{"id": i, "video_id": v, "frame_index": k} for k, i in enumerate(images)]
        for t, x in ((1, 8.0), (2, 12.0)):
            track = {"id": 10 * v + t, "video_id": v, "category_id": 1}
            if v == 3 and t == 2:
                track["ignore"] = 1
            gt["tracks"].append(track)
            gt["annotations"] += [{"id": len(gt["annotations"]) + k + 1, "image_id": i, "track_id": 10 * v + t,
                                   "category_id": 1, "bbox": [x, 2.0 * k, 10.0, 10.0], "area": 100.0}
                                  for k, i in enumerate(images)]
        second_x = 12.0 if v == 2 else 6.0
        for tid, x, score in ((0 if v == 2 else 100 * v + 1, 10.0, 0.9), (100 * v + 2, second_x, 0.8)):
            results += [{"image_id": i, "category_id": 1, "bbox": [x, 2.0 * k, 10.0, 10.0], "score": score,
                         "track_id": tid} for k, i in enumerate(images)]
    return {"ground_truth": gt, "results": results}


def boundaries_case() -> dict[str, Any]:
    """Range bounds and track ids 0 and -1. Video 1: a 3-frame track of mean area exactly 32**2 (short and medium,
    small and medium) and a 10-frame track of area 96**2 (medium and long, medium and large), each found exactly;
    a 2-frame false positive with a 3rd frame of zero width. Video 2: ground-truth tracks of ids 0 and -1, each found exactly (the toolkit marks a
    match by the ground-truth id, so a match to -1 counts as a false positive)."""
    gt: dict[str, Any] = {"categories": [{"id": 1, "name": "a", "frequency": "r"}], "videos": [], "images": [],
                          "tracks": [], "annotations": []}
    results: list[dict[str, Any]] = []
    specs = {1: [(7, [1000.0, 1048.0, 1024.0], 32.0, 0.7), (8, [9216.0] * 10, 96.0, 0.6)],
             2: [(0, [400.0] * 4, 20.0, 0.8), (-1, [400.0] * 4, 20.0, 0.9)]}
    for v, tracks in specs.items():
        gt["videos"].append({"id": v, "neg_category_ids": [], "not_exhaustive_category_ids": []})
        images = [100 * v + k for k in range(10)]
        gt["images"] += [{"id": i, "video_id": v, "frame_index": k} for k, i in enumerate(images)]
        for n, (tid, areas, size, score) in enumerate(tracks):
            gt["tracks"].append({"id": tid, "video_id": v, "category_id": 1})
            for k, area in enumerate(areas):
                box = [150.0 * n, 3.0 * k, size, size]
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": images[k], "track_id": tid,
                                          "category_id": 1, "bbox": box, "area": area})
                results.append({"image_id": images[k], "category_id": 1, "bbox": box, "score": score,
                                "track_id": 10 * v + n + 1})
    results += [{"image_id": i, "category_id": 1, "bbox": [300.0, 300.0, 40.0, 40.0], "score": 0.65, "track_id": 99}
                for i in (100, 101)]
    # a zero-width 3rd frame of the false positive: not evaluated, so the track stays 2 frames long (not "medium")
    results.append({"image_id": 102, "category_id": 1, "bbox": [300.0, 300.0, 0.0, 40.0], "score": 0.65,
                    "track_id": 99})
    return {"ground_truth": gt, "results": results}


def filtered_out_case() -> dict[str, Any]:
    """Results only in a category that is neither positive nor negative for the video: no result is evaluated."""
    case = make_case(99, videos=2)
    gt = case["ground_truth"]
    video = gt["videos"][0]
    used = {t["category_id"] for t in gt["tracks"] if t["video_id"] == video["id"]}
    free = next(c["id"] for c in gt["categories"] if c["id"] not in used and c["id"] not in video["neg_category_ids"])
    image = next(i["id"] for i in gt["images"] if i["video_id"] == video["id"])
    case["results"] = [{"image_id": image, "category_id": free, "bbox": [10.0, 10.0, 20.0, 20.0], "score": 0.5,
                        "track_id": 1}]
    return case


#: category ids of no category of the generated ground truths: a 0-based class index and an id past them all
UNKNOWN_IDS = (0, 9999)
CROWD_SCORE = 0.95


def kept_by_cap(results: list[dict[str, Any]], max_dets: int) -> set[int]:
    """The positions of the results that ``limit_dets_per_image`` keeps (``TaoResults``'s and ``LVISResults``'):
    per image the ``max_dets`` of highest score, ties in input order (Python's sort is stable)."""
    by_image: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        by_image[r["image_id"]].append(i)
    return {i for positions in by_image.values()
            for i in sorted(positions, key=lambda i: results[i]["score"], reverse=True)[:max_dets]}


def with_unknown_categories(case: dict[str, Any], seed: int, max_dets: int, *, mixed_survives: bool = False,
                            shared_ids: bool = False) -> dict[str, Any]:
    """``case`` with results of category ids that are no category of its ground truth (:data:`UNKNOWN_IDS`) added:

    * three tracks of unknown categories over the frames of ground-truth tracks (their boxes, as a model with
      0-based class indices would give them) and scores like the others; with ``shared_ids`` they are of three
      videos and share one track id (the TAO-Amodal script renumbers such ids, counting these tracks too);
    * in the frame with the most annotations ("crowded"), ``max_dets`` results of unknown categories of score
      ``CROWD_SCORE``, so that the cap leaves room for the known results of higher score only and for those of the
      same score listed before them (two known results of the frame get that score, one listed before the crowd
      and one after);
    * a track whose results have a known category (ground-truth boxes shifted by 1 px, score 1, listed first)
      except one of an unknown category in the crowded frame, listed last: the cap drops that one, so the toolkit
      evaluates the track on its known frames;
    * a track with one result of a known category in the crowded frame (a ground-truth box there), listed last,
      and results of an unknown category in other frames: the cap drops the known one, the track drops out;
    * with ``mixed_survives``, a track with results of a known and of an unknown category that the cap keeps
      both (listed first, score 1): the toolkit asserts.

    The cap's effects are checked here (:func:`kept_by_cap`): the case fails loudly if a seed does not give them.
    """
    rng = np.random.default_rng(seed)
    gt = case["ground_truth"]
    results = copy.deepcopy(case["results"])
    video_of = {im["id"]: im["video_id"] for im in gt["images"]}
    annotations = defaultdict(list)  # track id -> its annotations in frame order
    frame_index = {im["id"]: im["frame_index"] for im in gt["images"]}
    for a in sorted(gt["annotations"], key=lambda a: frame_index[a["image_id"]]):
        annotations[a["track_id"]].append(a)
    new_id = itertools.count(max(abs(r["track_id"]) for r in results) + 1)
    counts = Counter(a["image_id"] for a in gt["annotations"])
    crowded = max(sorted(counts), key=counts.get)
    video = video_of[crowded]

    def result(a: dict[str, Any], category: int, score: float, track: int, shift: float = 0.0) -> dict[str, Any]:
        x, y, w, h = a["bbox"]
        return {"image_id": a["image_id"], "category_id": category, "bbox": [x + shift, y, w, h], "score": score,
                "track_id": track, "video_id": video_of[a["image_id"]]}

    first, last = [], []
    picks = rng.choice(sorted(annotations), 3, replace=False).tolist()
    if shared_ids:  # a track of each of three videos, under one id
        last_of_video = {video_of[anns[0]["image_id"]]: t for t, anns in sorted(annotations.items())}
        picks = [last_of_video[v] for v in sorted(last_of_video)[:3]]
    shared = next(new_id)
    for k, t in enumerate(picks):
        track = shared if shared_ids else next(new_id)
        results += [result(a, UNKNOWN_IDS[k % 2], float(np.round(rng.random(), 3)), track) for a in annotations[t]]
    here = [i for i, r in enumerate(results) if r["image_id"] == crowded and r["category_id"] not in UNKNOWN_IDS]
    assert len(here) >= 2, "the crowded frame needs two known results to tie with the crowd"
    for i in here[:2]:
        results[i]["score"] = CROWD_SCORE
    crowd = [{"image_id": crowded, "category_id": UNKNOWN_IDS[k % 2], "bbox": boxes_along(rng, 1, 0.25, 40)[0].tolist(),
              "score": CROWD_SCORE, "track_id": next(new_id), "video_id": video} for k in range(max_dets)]
    results = results[:here[0] + 1] + crowd + results[here[0] + 1:]
    tracks_here = [t for t, anns in annotations.items() if video_of[anns[0]["image_id"]] == video]
    known_frames = next(t for t in tracks_here if sum(a["image_id"] != crowded for a in annotations[t]) >= 2)
    m1 = next(new_id)
    first += [result(a, a["category_id"], 1.0, m1, shift=1.0) for a in annotations[known_frames]
              if a["image_id"] != crowded]
    last.append(dict(result(annotations[known_frames][0], UNKNOWN_IDS[0], 0.01, m1), image_id=crowded))
    if any(a["image_id"] == crowded for a in annotations[known_frames]):
        last[-1]["bbox"] = next(a["bbox"] for a in annotations[known_frames] if a["image_id"] == crowded)
    in_crowded = next(a for t in tracks_here for a in annotations[t] if a["image_id"] == crowded)
    m2 = next(new_id)
    last.append(result(in_crowded, in_crowded["category_id"], 0.01, m2))
    others = [t for t in tracks_here if t != in_crowded["track_id"]] or [in_crowded["track_id"]]
    results += [result(a, UNKNOWN_IDS[1], float(np.round(rng.random(), 3)), m2) for a in annotations[others[0]]
                if a["image_id"] != crowded]
    m3 = next(new_id)
    if mixed_survives:
        anns = [a for a in annotations[known_frames] if a["image_id"] != crowded][:2]
        first += [result(anns[0], anns[0]["category_id"], 1.0, m3, shift=2.0),
                  result(anns[1], UNKNOWN_IDS[0], 1.0, m3, shift=2.0)]
    results = first + results + last
    # the cap does what the docstring says
    kept = kept_by_cap(results, max_dets)
    known = [i for i, r in enumerate(results) if r["category_id"] not in UNKNOWN_IDS]
    kept_without = {known[j] for j in kept_by_cap([results[i] for i in known], max_dets)}

    def of(track: int) -> list[tuple[bool, bool]]:
        return [(results[i]["category_id"] in UNKNOWN_IDS, i in kept) for i, r in enumerate(results)
                if r["track_id"] == track]

    assert all(kept != unknown for unknown, kept in of(m1)), "track m1: known frames kept, the unknown one dropped"
    assert (False, False) in of(m2), "track m2: its known result dropped"
    assert not mixed_survives or {(False, True), (True, True)} <= set(of(m3)), "track m3: both kept"
    assert any(i in kept_without and i not in kept for i in known), "unknown results push known ones out"
    return {"ground_truth": gt, "results": results}


def unknown_only_case(case: dict[str, Any]) -> dict[str, Any]:
    """The results of ``case`` whose category is unknown (nothing evaluated: the toolkit raises)."""
    return {"ground_truth": case["ground_truth"],
            "results": [r for r in case["results"] if r["category_id"] in UNKNOWN_IDS]}


COCO_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()  # 0.75 is not among them: 0.7500000000000001


def cases(toolkit_module: Any) -> dict[str, Any]:
    """``{"inputs": {name: {ground_truth, results}}, "runs": [{name, inputs, iou_thresholds, max_dets}]}``."""
    specs = {
        "basic": {},
        "decimal_boxes": {"grid": 0.01},
        "small_image_ids": {"big_image_ids": False},
        "many_videos": {"videos": 6, "frames": (2, 7)},
        "long_tracks": {"videos": 2, "frames": (12, 18), "tracks": 4},
        "score_ties": {"score_levels": 3},
        "score_ties_decimal": {"score_levels": 2, "grid": 0.01},
        "nonpositive_track_ids": {"nonpositive_ids": True},
        "nonpositive_track_ids_ties": {"nonpositive_ids": True, "score_levels": 2},
        "gt_track_ids_0_and_minus_1": {"gt_special_ids": True},
        "category_alias": {"alias": True},
        "video_id_omitted": {"omit_video_id": True},
        "cap_300": {"videos": 1, "frames": (3, 5), "crowd": 305},
        "many_categories": {"categories": 14, "tracks": 5},
        "single_frame_videos": {"frames": (1, 2), "videos": 5},
        "random_0": {"videos": 3, "score_levels": 4},
        "random_1": {"videos": 4, "grid": 0.01, "nonpositive_ids": True},
    }
    inputs = {name: make_case(seed, **kw) for seed, (name, kw) in enumerate(specs.items())}
    inputs["summation_order"], summation_threshold = summation_order_case(toolkit_module, 7)
    inputs["iou_ties"] = iou_ties_case()
    inputs["range_bounds_and_gt_ids"] = boundaries_case()
    inputs["no_evaluated_results"] = filtered_out_case()
    inputs["unknown_categories"] = with_unknown_categories(make_case(101, alias=True), 201, 300)
    inputs["unknown_categories_cap_3"] = with_unknown_categories(make_case(102, grid=0.01, score_levels=4), 202, 3)
    inputs["unknown_categories_mixed_track"] = with_unknown_categories(make_case(103), 203, 300, mixed_survives=True)
    inputs["unknown_categories_only"] = unknown_only_case(inputs["unknown_categories"])
    runs = [{"name": name, "inputs": name, "iou_thresholds": [0.5], "max_dets": 300} for name in inputs]
    runs[[r["name"] for r in runs].index("summation_order")]["iou_thresholds"] = [summation_threshold]
    for name, thresholds, max_dets in [
            ("basic", [0.5, 0.75], 300), ("basic", COCO_THRESHOLDS, 300), ("basic", [0.75], 300),
            ("basic", [0.5], 2), ("decimal_boxes", [0.5], 3), ("score_ties", [0.5], 2),
            ("nonpositive_track_ids", [0.5, 0.75], 300), ("category_alias", [0.5], 2), ("random_1", [0.5], 4),
            ("many_videos", COCO_THRESHOLDS, 3), ("unknown_categories", COCO_THRESHOLDS, 300),
            ("unknown_categories_cap_3", [0.5], 3), ("unknown_categories_cap_3", [0.5, 0.75], 2)]:
        label = "coco" if thresholds == COCO_THRESHOLDS else "_".join(f"{t:g}" for t in thresholds)
        runs.append({"name": f"{name}@iou_{label}@max_dets_{max_dets}", "inputs": name,
                     "iou_thresholds": thresholds, "max_dets": max_dets})
    return {"inputs": inputs, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("toolkit", type=Path, help="checkout of TAO-Dataset/tao (the folder holding tao/toolkit)")
    args = parser.parse_args()
    toolkit = import_toolkit(args.toolkit)
    from tao.toolkit.tao import eval as toolkit_eval

    generated = cases(toolkit_eval)
    expected = {run["name"]: official(toolkit, dict(run, **generated["inputs"][run["inputs"]]))
                for run in generated["runs"]}
    cases_text = json.dumps(generated, separators=(",", ":")) + "\n"
    atomic_write(HERE / "cases.json", lambda tmp: tmp.write_text(cases_text))
    expected_text = json.dumps(expected, indent=1) + "\n"
    atomic_write(HERE / "expected.json", lambda tmp: tmp.write_text(expected_text))
    print(f"{len(generated['inputs'])} inputs, {len(generated['runs'])} runs written to {HERE}")


if __name__ == "__main__":
    main()
