"""Time vfe_hub's TAO track AP evaluator, and the official TAO toolkit's ``TaoEval`` with ``--toolkit``, on a
generated TAO-sized case.

    python benchmarks/tao_eval_speed.py --videos 100 --frames 30 --tracks 50 [--toolkit PATH/TO/TAO-checkout]

The case has ``--categories`` categories (a third each rare, common, frequent), ``--videos`` videos of ``--frames``
annotated frames with ``--tracks`` ground-truth tracks each (of 8 positive categories per video, over a random span
of frames, boxes moving in a random walk, two decimals), 5 negative categories per video and about a tenth of the
positive ones not exhaustively annotated. The results hold a jittered copy of nine tracks in ten (a tenth of its
frames dropped, a few frames added), and as many false-positive tracks again in positive, negative and unrelated
categories, each frame with its own score. Both evaluators start from the annotation file on disk and the list of
results. The official one (``PATH/TO/TAO-checkout`` holds ``tao/toolkit``) runs with the shims of
``tests/data/tao/make_reference.py`` (no numba, ``np.float``). The table gives both times, vfe_hub's time with the
ground truth loaded beforehand, and the largest absolute difference over the toolkit's 16 metrics (0 when equal).
"""
from __future__ import annotations

import argparse
import copy
import gc
import importlib.util
import itertools
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vfe_hub.evaluation.tao import evaluate
from vfe_hub.evaluation.tao_data import TaoGroundTruth

REFERENCE_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "data" / "tao" / "make_reference.py"


def random_walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` boxes ``[x, y, w, h]`` of one moving object."""
    size = np.exp(rng.uniform(np.log(8), np.log(300), 2))
    start = np.concatenate([rng.uniform(0, 640 - size[0]), rng.uniform(0, 480 - size[1]), size], axis=None)
    steps = np.cumsum(rng.normal(0, 1, (n, 4)) * [size[0] / 10, size[1] / 10, size[0] / 40, size[1] / 40], axis=0)
    boxes = start + steps
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 2)
    return np.round(boxes, 2)


def make_case(num_videos: int, num_frames: int, num_tracks: int, num_categories: int, seed: int
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """TAO-like ground truth and results (module docstring)."""
    rng = np.random.default_rng(seed)
    categories = [{"id": c, "name": f"category_{c}", "frequency": "rcf"[c % 3]} for c in range(1, num_categories + 1)]
    gt: dict[str, Any] = {"info": {}, "licenses": [], "categories": categories, "videos": [], "images": [],
                          "tracks": [], "annotations": []}
    results: list[dict[str, Any]] = []
    result_ids = itertools.count(1)

    def add_result_track(video: int, images: list[int], category: int, frames: np.ndarray, boxes: np.ndarray) -> None:
        track_id = next(result_ids)
        scores = np.round(rng.random(len(frames)), 4)
        results.extend({"image_id": images[f], "video_id": video, "category_id": category, "bbox": b.tolist(),
                        "score": float(s), "track_id": track_id} for f, b, s in zip(frames.tolist(), boxes, scores))

    for video in range(1, num_videos + 1):
        images = [len(gt["images"]) + k + 1 for k in range(num_frames)]
        gt["images"] += [{"id": i, "video_id": video, "frame_index": 30 * k, "width": 640, "height": 480}
                         for k, i in enumerate(images)]
        positives = rng.choice(np.arange(1, num_categories + 1), 8, replace=False)
        others = np.setdiff1d(np.arange(1, num_categories + 1), positives)
        negatives = rng.choice(others, 5, replace=False)
        gt["videos"].append({"id": video, "neg_category_ids": negatives.tolist(),
                             "not_exhaustive_category_ids": positives[rng.random(8) < 0.1].tolist()})
        for _ in range(num_tracks):
            track_id = len(gt["tracks"]) + 1
            category = int(rng.choice(positives))
            length = int(rng.integers(1, num_frames + 1))
            frames = np.arange(length) + int(rng.integers(0, num_frames - length + 1))
            boxes = random_walk(rng, length)
            gt["tracks"].append({"id": track_id, "video_id": video, "category_id": category})
            gt["annotations"] += [{"id": len(gt["annotations"]) + k + 1, "image_id": images[f], "track_id": track_id,
                                   "category_id": category, "bbox": b.tolist(), "area": float(b[2] * b[3])}
                                  for k, (f, b) in enumerate(zip(frames.tolist(), boxes))]
            if rng.random() < 0.9:
                kept = rng.random(length) > 0.1
                jitter = rng.normal(0, 0.08, (int(kept.sum()), 4)) * boxes[kept][:, [2, 3, 2, 3]]
                moved = np.round(boxes[kept] + jitter, 2)
                moved[:, 2:] = np.maximum(moved[:, 2:], 1)
                add_result_track(video, images, category, frames[kept], moved)
        for _ in range(num_tracks):
            category = int(rng.choice(np.concatenate([positives, negatives, others[:3]])))
            length = int(rng.integers(1, num_frames + 1))
            frames = np.arange(length) + int(rng.integers(0, num_frames - length + 1))
            add_result_track(video, images, category, frames, random_walk(rng, length))
    return gt, results


def official(toolkit_path: Path, path: Path, results: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    spec = importlib.util.spec_from_file_location("make_reference", REFERENCE_SCRIPT)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    _, TaoEval, _ = reference.import_toolkit(toolkit_path)
    results = copy.deepcopy(results)  # TaoResults writes into the dicts; not timed
    gc.collect()
    start = time.perf_counter()
    evaluator = TaoEval(str(path), results)
    evaluator.params.iou_thrs = np.array([0.5])
    evaluator.run()
    elapsed = time.perf_counter() - start
    return {reference.plain_name(k): float(v) for k, v in evaluator.get_results().items()}, elapsed


def ours(score: Callable[..., dict[str, float]], path: Path, results: list[dict[str, Any]]
         ) -> tuple[dict[str, float], float, float]:
    """``score(ground_truth, results)``'s metrics and seconds, from the annotation file and from the ground truth
    loaded beforehand."""
    gc.collect()
    start = time.perf_counter()
    scores = score(path, results)
    from_file = time.perf_counter() - start
    gt = TaoGroundTruth.load(path)
    gc.collect()
    start = time.perf_counter()
    score(gt, results)
    return scores, from_file, time.perf_counter() - start


def case_arguments(description: str, toolkit: str) -> argparse.Namespace:
    """The command line of a benchmark on :func:`make_case`'s case; ``toolkit`` describes ``--toolkit``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--tracks", type=int, default=50)
    parser.add_argument("--categories", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--toolkit", type=Path, help=toolkit)
    return parser.parse_args()


def generated_case(args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`make_case` for the command line ``args``, described in one printed line."""
    start = time.perf_counter()
    ground_truth, results = make_case(args.videos, args.frames, args.tracks, args.categories, args.seed)
    print(f"{args.videos} videos x {args.frames} frames, {len(ground_truth['tracks'])} tracks "
          f"({len(ground_truth['annotations'])} boxes), {len({r['track_id'] for r in results})} result tracks "
          f"({len(results)} boxes), {args.categories} categories; generated in {time.perf_counter() - start:.1f} s "
          f"on {platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy "
          f"{np.__version__}\n")
    return ground_truth, results


def main() -> None:
    args = case_arguments(__doc__, "checkout of TAO-Dataset/tao, to time the official TaoEval")
    ground_truth, results = generated_case(args)
    print("| official TaoEval (s) | vfe_hub (s) | vfe_hub, gt loaded (s) | speed-up | max abs diff | AP |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tao_generated.json"
        path.write_text(json.dumps(ground_truth))
        scores, from_file, loaded = ours(evaluate, path, results)
        if args.toolkit is None:
            print(f"| - | {from_file:.2f} | {loaded:.2f} | - | - | {scores['AP']:.4f} |")
            return
        reference, reference_time = official(args.toolkit, path, results)
        diff = max(abs(scores[k] - reference[k]) for k in reference)
        print(f"| {reference_time:.2f} | {from_file:.2f} | {loaded:.2f} | {reference_time / from_file:.1f}x | "
              f"{diff:.3g} | {scores['AP']:.4f} |")


if __name__ == "__main__":
    main()
