"""Regenerate cases.json and expected.json: generated TAO cases and the official TETA code's numbers on them.

    python tests/data/teta/make_reference.py PATH/TO/tet-checkout

PATH/TO/tet-checkout is a checkout of https://github.com/SysCV/tet (the folder holding ``teta/teta``); see README.md
in this folder for the commit. This script is the only code that imports the official code, and it needs nothing
but numpy and scipy (not vfe_hub): the official package is put on ``sys.path`` (its ``setup.py`` asks for a package
from a git URL that the code never imports). The tests read the two JSON files it writes.

Each run is the official evaluation as ``teta/scripts/run_tao.py`` sets it up: ``Evaluator`` with the default
evaluation config, the ``TAO`` dataset with the default dataset config (``GT_FOLDER`` the ground-truth JSON,
``TRACKER_SUB_FOLDER`` the results JSON, ``MAX_DETECTIONS`` the run's cap, 0 for none) and ``TETA(exhaustive=False)``.
Settings that only print or write files are turned off (but ``OUTPUT_SUMMARY``: without it the evaluator fails,
reading a loop variable of the summary), and ``USE_PARALLEL`` is off (the videos are then combined in
sorted name order; the generated names sort in video-id order, the order of the files). The numbers are the
class-averaged result over all videos ("COMBINED_SEQ", "average"), each field averaged over its thresholds, as the
official summary prints them but unrounded and as fractions (the summary prints ``100 * mean`` to 5 digits).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
KEYS = ("TETA", "LocA", "AssocA", "ClsA", "LocRe", "LocPr", "AssocRe", "AssocPr", "ClsRe", "ClsPr")


def import_official(checkout: Path) -> Any:
    """The official ``Evaluator``, ``TAO``, ``TETA`` and default configs, from ``checkout/teta``."""
    sys.path.insert(0, str(checkout / "teta"))
    from teta.config import get_default_dataset_config, get_default_eval_config
    from teta.datasets import TAO
    from teta.eval import Evaluator
    from teta.metrics import TETA

    class RecordedTETA(TETA):
        """The official metric, keeping the last class average it computes (the evaluator's COMBINED_SEQ one)."""

        @classmethod
        def get_name(cls) -> str:
            return "TETA"

        def combine_classes_class_averaged(self, all_res: Any, ignore_empty: bool = False) -> Any:
            self.average = super().combine_classes_class_averaged(all_res, ignore_empty=ignore_empty)
            return self.average

    return Evaluator, TAO, RecordedTETA, get_default_eval_config, get_default_dataset_config


def official(toolkit: Any, case: dict[str, Any], max_dets: int) -> dict[str, float]:
    """The official class-averaged TETA numbers of ``case`` (module docstring)."""
    Evaluator, TAO, RecordedTETA, eval_defaults, dataset_defaults = toolkit
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, results_path = Path(tmp) / "gt.json", Path(tmp) / "results.json"
        gt_path.write_text(json.dumps(case["ground_truth"]))
        results_path.write_text(json.dumps(case["results"]))
        eval_config = dict(eval_defaults(), USE_PARALLEL=False, PRINT_CONFIG=False, TIME_PROGRESS=False,
                           OUTPUT_TEM_RAW_DATA=False, LOG_ON_ERROR=None)
        dataset_config = dict(dataset_defaults(), GT_FOLDER=str(gt_path), TRACKERS_FOLDER=tmp, OUTPUT_FOLDER=tmp,
                              TRACKER_SUB_FOLDER=str(results_path), MAX_DETECTIONS=max_dets, PRINT_CONFIG=False)
        metric = RecordedTETA(exhaustive=False)
        with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
            Evaluator(eval_config).evaluate([TAO(dataset_config)], [metric])
    return {key: float(np.mean(metric.average[50][key])) for key in KEYS}


def outcome(toolkit: Any, case: dict[str, Any], max_dets: int = 0) -> dict[str, Any]:
    """What the official code does with ``case``: its numbers, or the exception it raises."""
    try:
        return {"metrics": official(toolkit, case, max_dets)}
    except Exception as e:  # noqa: BLE001 - recorded, whatever it is
        return {"error": f"{type(e).__name__}: {e}"}


# ---------------------------------------------------------------------------------------------------------------
# Generated cases
# ---------------------------------------------------------------------------------------------------------------

def on_grid(values: np.ndarray, grid: float) -> np.ndarray:
    """Multiples of 0.25 (exact in binary) or numbers of 2 decimals."""
    return np.round(values / grid) * grid if grid == 0.25 else np.round(values, 2)


def walk(rng: np.random.Generator, n: int, grid: float, size: float) -> np.ndarray:
    """``n`` boxes ``[x, y, w, h]`` of one moving object."""
    wh = np.exp(rng.uniform(np.log(size / 2), np.log(size * 2), 2))
    steps = np.cumsum(rng.normal(0, size / 8, (n, 4)), axis=0) * [1, 1, 0.2, 0.2]
    boxes = np.concatenate([np.broadcast_to(rng.uniform(0, 400, 2), (n, 2)), np.broadcast_to(wh, (n, 2))], 1) + steps
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 1)
    return on_grid(boxes, grid)


def make_case(seed: int, *, videos: int = 3, frames: tuple[int, int] = (3, 10), tracks: int = 4,
              categories: int = 8, grid: float = 0.25, score_levels: int = 0, alias: bool = False,
              omit_video_id: bool = False, switch_ids: float = 0.0, switch_categories: float = 0.0,
              unknown_categories: bool = False, shared_ids: bool = False, crowd: int = 0) -> dict[str, Any]:
    """A TAO case ({"ground_truth", "results"}) as TETA reads it; README.md lists what the options exercise."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"category_{c}", "frequency": "rcf"[c % 3]} for c in range(1, categories + 1)]
    if alias:
        cats[0]["merged"] = [{"id": 1001, "name": "alias_of_1"}]
    gt: dict[str, Any] = {"videos": [], "images": [], "tracks": [], "annotations": [], "categories": cats}
    results: list[dict[str, Any]] = []
    used_image_ids: set[int] = set()
    next_result_track = 0

    def score() -> float:
        return float(rng.integers(1, score_levels + 1)) / score_levels if score_levels else float(
            np.round(rng.random(), 3))

    for v in range(1, videos + 1):
        first_of_video, borrowed_ids = next_result_track + 1, {0}
        n = int(rng.integers(*frames))
        ids = []
        while len(ids) < n:  # ids whose order is not the frame order
            i = int(rng.integers(1, 10 ** 6))
            if i not in used_image_ids:
                used_image_ids.add(i)
                ids.append(i)
        images = [{"id": i, "video_id": v, "frame_index": 30 * k, "file_name": f"video_{v:03d}/{k:04d}.jpg"}
                  for k, i in enumerate(ids)]
        gt["images"] += [images[k] for k in rng.permutation(n)]  # file order is not frame order
        empty = {k for k in range(n) if rng.random() < 0.2}  # frames without ground truth
        positives = [int(c) for c in rng.choice(np.arange(1, categories), size=3, replace=False)]  # never the last
        others = [c for c in range(1, categories + 1) if c not in positives]
        video_tracks = []
        for _ in range(tracks):
            track_id = len(gt["tracks"]) + 1
            category = int(rng.choice(positives))
            length = int(rng.choice([1, 2, 3, 5, n]))
            start = int(rng.integers(0, max(1, n - length + 1)))
            span = [k for k in range(start, min(n, start + length)) if k not in empty]
            if not span:
                continue
            boxes = walk(rng, len(span), grid, float(rng.choice([12, 30, 60, 120])))
            copies = 2 if rng.random() < 0.15 else 1  # an identical copy: equal IoUs with every result
            for _ in range(copies):
                track_id = len(gt["tracks"]) + 1
                entry = {"id": track_id, "video_id": v, "category_id": category}
                if rng.random() < 0.1:
                    entry["ignore"] = 1  # TETA does not read it
                gt["tracks"].append(entry)
                for k, box in zip(span, boxes):
                    area = round(float(box[2] * box[3]), 2) if rng.random() > 0.1 else 0.0  # TETA does not read it
                    gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": ids[k], "video_id": v,
                                              "track_id": track_id, "category_id": category, "bbox": box.tolist(),
                                              "area": area})
                video_tracks.append((category, span, boxes))
        if rng.random() < 0.2 and gt["annotations"]:  # a zero-width ground-truth box
            last = gt["annotations"][-1]
            last["bbox"] = last["bbox"][:2] + [0.0, last["bbox"][3]]
        gt["videos"].append({"id": v, "name": f"val/source_{v % 2}/video_{v:03d}",
                             "neg_category_ids": [int(c) for c in rng.choice(others, 2, replace=False)],
                             "not_exhaustive_category_ids": [c for c in positives if rng.random() < 0.3]})

        def add_track(category: int, frame_list: list[int], boxes: np.ndarray) -> None:
            nonlocal next_result_track
            next_result_track += 1
            track_id = next_result_track
            borrowed = int(rng.integers(1, first_of_video)) if first_of_video > 1 else 0
            if shared_ids and borrowed not in borrowed_ids and rng.random() < 0.3:
                borrowed_ids.add(borrowed)
                track_id = borrowed  # an id also used in an earlier video
            common, constant = score(), rng.random() < (0.8 if score_levels else 0.3)
            for j, (k, box) in enumerate(zip(frame_list, boxes)):
                if switch_ids and j and rng.random() < switch_ids:  # the track continues under a new id
                    next_result_track += 1
                    track_id = next_result_track
                label = category
                if alias and category == 1 and rng.random() < 0.5:
                    label = 1001
                if rng.random() < switch_categories:  # this frame is given another category
                    label = int(rng.choice(positives + others + ([999] if unknown_categories else [])))
                r = {"image_id": ids[k], "category_id": label, "bbox": box.tolist(), "track_id": track_id,
                     "score": common if constant or rng.random() < 0.5 else score()}
                if not omit_video_id or rng.random() < 0.5:
                    r["video_id"] = v
                results.append(r)

        for category, span, boxes in video_tracks:
            for _ in range(int(rng.integers(0, 3))):
                keep = [j for j in range(len(span)) if rng.random() < 0.85]
                more = [k for k in range(span[-1] + 1, min(n, span[-1] + 1 + int(rng.integers(0, 3))))]
                jitter = rng.normal(0, 0.15, (len(keep), 4)) * boxes[keep][:, [2, 3, 2, 3]]
                moved = on_grid(boxes[keep] + jitter, grid)
                moved[:, 2:] = np.maximum(moved[:, 2:], grid)
                tail = walk(rng, len(more), grid, 40)
                add_track(category, [span[j] for j in keep] + more, np.concatenate([moved, tail]))
            if grid == 0.25 and rng.random() < 0.3:  # an exact copy: IoU 1, and ties with ground-truth copies
                add_track(category, span, boxes)
        for _ in range(int(rng.integers(1, 4))):  # false positives, some on frames without ground truth
            start = int(rng.integers(0, n))
            frame_list = list(range(start, min(n, start + int(rng.integers(1, 5)))))
            add_track(int(rng.choice(positives + others)), frame_list,
                      walk(rng, len(frame_list), grid, float(rng.choice([20, 80]))))
        for _ in range(crowd):  # many results in one frame: the per-frame cap
            k = min(set(range(n)) - empty, default=0)
            add_track(int(rng.choice(positives)), [k], walk(rng, 1, grid, 50))
    if rng.random() < 0.3 and results:  # a zero-area result
        results[0] = dict(results[0], bbox=results[0]["bbox"][:2] + [0.0, 5.0])
    order = rng.permutation(len(gt["annotations"]))
    gt["annotations"] = [gt["annotations"][i] for i in order]  # file order within an image is the row order
    return {"ground_truth": gt, "results": [results[i] for i in rng.permutation(len(results))]}


def base_ground_truth(videos: int, frames: int, categories: int = 2) -> dict[str, Any]:
    """Ground truth without tracks: ``videos`` videos of ``frames`` frames (image ids ``100 * video + frame``)."""
    return {"categories": [{"id": c, "name": f"category_{c}", "frequency": "f"} for c in range(1, categories + 1)],
            "videos": [{"id": v, "name": f"video_{v:03d}", "neg_category_ids": [], "not_exhaustive_category_ids": []}
                       for v in range(1, videos + 1)],
            "images": [{"id": 100 * v + k, "video_id": v, "frame_index": k} for v in range(1, videos + 1)
                       for k in range(frames)],
            "tracks": [], "annotations": []}


def add_gt_track(gt: dict[str, Any], video: int, category: int, boxes: dict[int, list[float]]) -> int:
    """A ground-truth track of ``video`` with ``boxes`` ``{frame: [x, y, w, h]}``; returns its id."""
    track_id = len(gt["tracks"]) + 1
    gt["tracks"].append({"id": track_id, "video_id": video, "category_id": category})
    gt["annotations"] += [{"id": len(gt["annotations"]) + j + 1, "image_id": 100 * video + k, "video_id": video,
                           "track_id": track_id, "category_id": category, "bbox": box, "area": box[2] * box[3]}
                          for j, (k, box) in enumerate(boxes.items())]
    return track_id


def results_of(video: int, track_id: int, category: int, boxes: dict[int, list[float]], score: float = 0.5
               ) -> list[dict[str, Any]]:
    return [{"image_id": 100 * video + k, "video_id": video, "category_id": category, "bbox": box,
             "track_id": track_id, "score": score} for k, box in boxes.items()]


def alpha_grid_case() -> dict[str, Any]:
    """IoUs exactly on the threshold grid: a 20 x 10 ground-truth box and results [0, 0, w, 10], IoU w / 20 for
    w = 1..20 (the float ``w / 20``; several thresholds, ``np.arange(0, 0.99, 0.05)``, are a bit above it and
    count it only through their ``- eps``). Video 1: one result track with every width in turn; video 2: tracks of
    one width each, among them 10 (IoU exactly 0.5, the overlap threshold) and 9 (IoU 0.45: never evaluated)."""
    gt, results = base_ground_truth(2, 20), []
    add_gt_track(gt, 1, 1, {k: [0.0, 0.0, 20.0, 10.0] for k in range(20)})
    results += results_of(1, 1, 1, {k: [0.0, 0.0, float(k + 1), 10.0] for k in range(20)})
    add_gt_track(gt, 2, 1, {k: [0.0, 0.0, 20.0, 10.0] for k in range(10)})
    add_gt_track(gt, 2, 2, {k: [100.0, 0.0, 20.0, 10.0] for k in range(10, 20)})
    results += results_of(2, 2, 1, {k: [0.0, 0.0, 10.0, 10.0] for k in range(0, 5)})
    results += results_of(2, 3, 2, {k: [0.0, 0.0, 9.0, 10.0] for k in range(5, 10)})
    widths = (3, 6, 7, 11, 13, 14, 17, 19, 12, 15)
    results += results_of(2, 4, 1, {k: [100.0, 0.0, float(w), 10.0] for k, w in zip(range(10, 20), widths)})
    return {"ground_truth": gt, "results": results}


def hungarian_ties_case() -> dict[str, Any]:
    """Equal scores in the per-frame assignment. Video 1: two ground-truth tracks mirrored about one result track
    (equal IoUs in every frame, equal alignment scores). Video 2: two identical result tracks on one ground-truth
    track. Video 3: two identical ground-truth tracks and two identical result tracks on them, with different
    categories. Video 4: boxes that touch without overlapping (IoU 0: assigned at threshold 0 only)."""
    gt, results = base_ground_truth(4, 4), []
    add_gt_track(gt, 1, 1, {k: [8.0, 2.0 * k, 10.0, 10.0] for k in range(4)})
    add_gt_track(gt, 1, 1, {k: [12.0, 2.0 * k, 10.0, 10.0] for k in range(4)})
    results += results_of(1, 1, 1, {k: [10.0, 2.0 * k, 10.0, 10.0] for k in range(4)})
    add_gt_track(gt, 2, 2, {k: [0.0, 0.0, 30.0, 30.0] for k in range(4)})
    for track_id in (2, 3):
        results += results_of(2, track_id, 2, {k: [1.0, 1.0, 30.0, 30.0] for k in range(4)})
    for category in (1, 2):
        add_gt_track(gt, 3, category, {k: [50.0, 50.0, 40.0, 20.0] for k in range(4)})
    for track_id, category in ((4, 2), (5, 1)):
        results += results_of(3, track_id, category, {k: [52.0, 50.0, 40.0, 20.0] for k in range(4)})
    add_gt_track(gt, 4, 1, {k: [0.0, 0.0, 10.0, 10.0] for k in range(4)})
    add_gt_track(gt, 4, 1, {k: [20.0, 0.0, 10.0, 10.0] for k in range(2)})
    results += results_of(4, 6, 1, {k: [0.0, 0.0, 10.0, 10.0] for k in range(2)})
    results += results_of(4, 7, 1, {k: [10.0, 0.0, 10.0, 10.0] for k in range(4)})
    return {"ground_truth": gt, "results": results}


def switches_case() -> dict[str, Any]:
    """One object, one video of 8 frames: a result track that changes its id after frame 3 and its category in
    frames 5 and 6 (to a category with ground truth elsewhere, then to one that is not a ground-truth category)."""
    gt, results = base_ground_truth(2, 8, categories=3), []
    add_gt_track(gt, 1, 1, {k: [10.0 + 3 * k, 20.0, 40.0, 30.0] for k in range(8)})
    add_gt_track(gt, 2, 2, {k: [5.0, 5.0, 20.0, 20.0] for k in range(3)})
    boxes = {k: [11.0 + 3 * k, 21.0, 40.0, 30.0] for k in range(8)}
    for k, box in boxes.items():
        results += results_of(1, 1 if k < 4 else 2, {5: 2, 6: 3}.get(k, 1), {k: box})
    results += results_of(2, 3, 2, {k: [5.0, 5.0, 20.0, 20.0] for k in range(3)})
    return {"ground_truth": gt, "results": results}


def no_annotations_case() -> dict[str, Any]:
    """Ground truth without a single box (nothing to evaluate: the official code averages no class, NaN)."""
    gt = base_ground_truth(1, 3)
    return {"ground_truth": gt, "results": results_of(1, 1, 1, {0: [0.0, 0.0, 5.0, 5.0]})}


def bad_inputs(inputs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Inputs vfe_hub refuses, with what the official code does with them (recorded in expected.json)."""
    bad: dict[str, dict[str, Any]] = {}

    def variant(name: str, base: str, edit: Any) -> None:
        case = copy.deepcopy(inputs[base])
        edit(case)
        bad[name] = case

    def negative(case: dict[str, Any]) -> None:  # the result track before the id switch becomes -1: it merges
        for r in case["results"]:  # with the largest id of the video, the one after the switch
            r["track_id"] = -1 if r["track_id"] == 1 else r["track_id"]
    variant("negative_track_id", "switches", negative)
    variant("result_of_unknown_image", "basic", lambda case: case["results"].append(
        dict(case["results"][0], image_id=10 ** 7)))
    variant("two_boxes_of_a_track_in_a_frame", "switches", lambda case: case["results"].append(
        dict(case["results"][0], bbox=[0.0, 0.0, 3.0, 3.0])))
    variant("two_videos_of_one_name", "basic", lambda case: case["ground_truth"]["videos"][1].update(
        name=case["ground_truth"]["videos"][0]["name"]))
    return bad


def cases() -> dict[str, Any]:
    """``{"inputs": {name: {ground_truth, results}}, "runs": [{name, inputs, max_dets}], "bad_inputs": {...}}``."""
    specs = {
        "basic": {},
        "decimal_boxes": {"grid": 0.01},
        "many_videos": {"videos": 7, "frames": (2, 6)},
        "long_videos": {"videos": 2, "frames": (12, 20), "tracks": 6},
        "score_ties": {"score_levels": 3, "crowd": 4},
        "category_alias": {"alias": True},
        "video_id_omitted": {"omit_video_id": True},
        "id_switches": {"switch_ids": 0.25},
        "category_switches": {"switch_categories": 0.3},
        "unknown_categories": {"switch_categories": 0.3, "unknown_categories": True},
        "ids_shared_by_videos": {"shared_ids": True, "videos": 4},
        "crowded_frames": {"videos": 2, "crowd": 12, "score_levels": 5},
        "many_categories": {"categories": 14, "tracks": 7},
        "single_frame_videos": {"frames": (1, 2), "videos": 6},
        "random_0": {"videos": 4, "score_levels": 4, "switch_ids": 0.1, "switch_categories": 0.1},
        "random_1": {"videos": 4, "grid": 0.01, "shared_ids": True, "switch_categories": 0.2, "alias": True},
    }
    inputs = {name: make_case(seed, **kw) for seed, (name, kw) in enumerate(specs.items())}
    inputs["alpha_grid"] = alpha_grid_case()
    inputs["hungarian_ties"] = hungarian_ties_case()
    inputs["switches"] = switches_case()
    inputs["empty_results"] = {"ground_truth": copy.deepcopy(inputs["basic"]["ground_truth"]), "results": []}
    inputs["no_annotations"] = no_annotations_case()
    runs = [{"name": name, "inputs": name, "max_dets": 0} for name in inputs]
    for name, max_dets in [("basic", 300), ("basic", 2), ("score_ties", 3), ("score_ties", 1),
                           ("crowded_frames", 5), ("crowded_frames", 300), ("category_alias", 2),
                           ("random_1", 4), ("ids_shared_by_videos", 2), ("decimal_boxes", 3)]:
        runs.append({"name": f"{name}@max_dets_{max_dets}", "inputs": name, "max_dets": max_dets})
    return {"inputs": inputs, "runs": runs, "bad_inputs": bad_inputs(inputs)}


def write(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file and a rename (no half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="checkout of SysCV/tet (the folder holding teta/teta)")
    args = parser.parse_args()
    toolkit = import_official(args.checkout)
    generated = cases()
    expected = {run["name"]: official(toolkit, generated["inputs"][run["inputs"]], run["max_dets"])
                for run in generated["runs"]}
    expected["bad_inputs"] = {name: outcome(toolkit, case) for name, case in generated["bad_inputs"].items()}
    write(HERE / "cases.json", json.dumps(generated, separators=(",", ":")) + "\n")
    write(HERE / "expected.json", json.dumps(expected, indent=1) + "\n")
    print(f"{len(generated['inputs'])} inputs, {len(generated['runs'])} runs, {len(generated['bad_inputs'])} bad "
          f"inputs written to {HERE}")


if __name__ == "__main__":
    main()
