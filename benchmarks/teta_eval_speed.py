"""Time vfe_hub's TETA evaluator, and the official TETA code with ``--toolkit``, on a generated TAO-sized case.

    python benchmarks/teta_eval_speed.py --videos 100 --frames 30 --tracks 50 [--toolkit PATH/TO/tet-checkout]

The case is ``benchmarks/tao_eval_speed.py``'s (same generator and options), with the two fields that the official
code also reads: each annotation's ``video_id`` and each video's ``name``. Both evaluators start from the
annotation file on disk and the list of results; the official one (the ``teta`` package of a SysCV/tet checkout)
runs as ``tests/data/teta/make_reference.py`` runs it (``Evaluator``, ``TAO``, ``TETA(exhaustive=False)``, no
cap, one process). The table gives both times, vfe_hub's time with the ground truth loaded beforehand, vfe_hub's
peak traced memory with the track ids as generated and with every track id moved up by 10**12 (the official code
allocates an array as long as the largest id), and the largest absolute difference over the 10 numbers (0 when
equal).
"""
from __future__ import annotations

import copy
import gc
import importlib.util
import json
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from tao_eval_speed import case_arguments, generated_case, ours
from vfe_hub.evaluation.teta import evaluate

REFERENCE_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "data" / "teta" / "make_reference.py"


def with_names(ground_truth: dict[str, Any]) -> dict[str, Any]:
    """The generated ground truth with annotation ``video_id`` and video ``name`` (the official code needs both)."""
    video_of = {image["id"]: image["video_id"] for image in ground_truth["images"]}
    return {**ground_truth, "videos": [{**v, "name": f"val/generated/video_{v['id']:04d}"}
                                       for v in ground_truth["videos"]],
            "annotations": [{**a, "video_id": video_of[a["image_id"]]} for a in ground_truth["annotations"]]}


def official(checkout: Path, ground_truth: dict[str, Any], results: list[dict[str, Any]]
             ) -> tuple[dict[str, float], float]:
    spec = importlib.util.spec_from_file_location("make_reference", REFERENCE_SCRIPT)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    toolkit = reference.import_official(checkout)
    gc.collect()
    start = time.perf_counter()  # includes writing the two JSON files, a small part of it
    scores = reference.official(toolkit, {"ground_truth": ground_truth, "results": results}, 0)
    return scores, time.perf_counter() - start


def peak_memory(ground_truth: dict[str, Any], results: list[dict[str, Any]]) -> tuple[dict[str, float], float]:
    """vfe_hub's scores and peak traced memory (MB) from the parsed ground truth."""
    gc.collect()
    tracemalloc.start()
    scores = evaluate(ground_truth, results)
    peak = tracemalloc.get_traced_memory()[1] / 2 ** 20
    tracemalloc.stop()
    return scores, peak


def moved_ids(ground_truth: dict[str, Any], results: list[dict[str, Any]], offset: int
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Both sides with every track id moved up by ``offset``."""
    gt = copy.deepcopy(ground_truth)
    for item in gt["tracks"]:
        item["id"] += offset
    for item in gt["annotations"]:
        item["track_id"] += offset
    return gt, [{**r, "track_id": r["track_id"] + offset} for r in results]


def main() -> None:
    args = case_arguments(__doc__, "checkout of SysCV/tet, to time the official TETA code")
    generated, results = generated_case(args)
    ground_truth = with_names(generated)
    print("| official (s) | vfe_hub (s) | vfe_hub, gt loaded (s) | speed-up | vfe_hub peak memory (MB) | "
          "same, ids + 10**12 (MB) | max abs diff | TETA |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tao_generated.json"
        path.write_text(json.dumps(ground_truth))
        scores, from_file, loaded = ours(evaluate, path, results)
        _, peak = peak_memory(ground_truth, results)
        moved, moved_peak = peak_memory(*moved_ids(ground_truth, results, 10 ** 12))
        assert moved == scores, "the numbers depend on the size of the track ids"
        memory = f"{peak:.0f} | {moved_peak:.0f}"
        if args.toolkit is None:
            print(f"| - | {from_file:.2f} | {loaded:.2f} | - | {memory} | - | {scores['TETA']:.4f} |")
            return
        reference, reference_time = official(args.toolkit, ground_truth, results)
        diff = max(abs(scores[k] - reference[k]) for k in reference)
        print(f"| {reference_time:.1f} | {from_file:.2f} | {loaded:.2f} | {reference_time / from_file:.0f}x | "
              f"{memory} | {diff:.3g} | {scores['TETA']:.4f} |")


if __name__ == "__main__":
    main()
