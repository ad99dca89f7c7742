"""Regenerate cases.json and expected.json: generated TAO-Amodal cases and the official script's numbers on them.

    python tests/data/tao_amodal/make_reference.py PATH/TO/TAO-Amodal-checkout

PATH/TO/TAO-Amodal-checkout is a checkout of https://github.com/WesleyHsieh0806/TAO-Amodal (the folder holding
``tools/eval_on_tao_amodal.py`` and ``tao_amodal/``); README.md in this folder names the commit. This script is the
only code that imports the toolkit; the tests read the two JSON files it writes.

For each case the unmodified ``tools/eval_on_tao_amodal.py`` runs as a script (``runpy``, its own argument parser:
``--annotation``, ``--track_result``, ``--output_log``) on the case's files. What it needs and the project's Python
lacks is stood in for, without changing a number:

* ``detectron2`` (imported for ``create_small_table``, ``inference_on_dataset``, ``print_csv_format``, used for
  logging only): a module whose functions return empty strings;
* ``numba`` (``jit`` on the float64 scalar ``bb_intersect_union``): ``jit`` returns the function unchanged;
* ``np.float`` (removed in numpy 1.24, used by both ``accumulate``): set to ``float``.

The script logs its numbers as percent with 4 decimals; the exact values are those its evaluators return from
``get_results()``, which a wrapper records as the script calls it (the wrapper returns the same dict). Results
without ``video_id`` get their image's video for the script, which needs one. Where the script fails (empty
results), the exception is recorded instead of numbers.
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import logging
import runpy
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np

from vfe_hub.hub import atomic_write

HERE = Path(__file__).resolve().parent
FREQUENCIES = ("r", "c", "f")
DETECTION_KEYS = {"AP": "AP", "AP50": "AP50", "AP-HO": "AP_HO", "AP-PO": "AP_PO", "AP-HV": "AP_HV", "AP-HP": "AP_HP",
                  "AP-OOF": "AP_OOF", "APr": "APr", "APc": "APc", "APf": "APf"}
TRACKING_KEYS = {"AP50": "track_AP50", "AP": "track_AP", "AP50-HP": "track_AP50_HP", "AP-HP": "track_AP_HP"}


def import_toolkit(checkout: Path) -> dict[str, list[dict[str, Any]]]:
    """Put the stand-ins and the checkout on the path; returns where the ``get_results()`` dicts are recorded."""
    np.float = float
    sys.modules.setdefault("numba", types.SimpleNamespace(jit=lambda function: function))
    detectron2 = types.ModuleType("detectron2")
    utils, logger, evaluation = (types.ModuleType(f"detectron2.{n}") for n in ("utils", "utils.logger", "evaluation"))
    logger.create_small_table = lambda *args, **kwargs: ""
    evaluation.inference_on_dataset = evaluation.print_csv_format = lambda *args, **kwargs: ""
    sys.modules.update({"detectron2": detectron2, "detectron2.utils": utils, "detectron2.utils.logger": logger,
                        "detectron2.evaluation": evaluation})
    sys.path.insert(0, str(checkout))
    from tao_amodal.evaluation.lvis_amodal import LVISEval
    from tao_amodal.evaluation.tao_amodal import TaoEval
    for handler in logging.getLogger().handlers:  # the toolkit's logging.basicConfig; the script logs at INFO
        handler.setLevel(logging.CRITICAL)
    recorded: dict[str, list[dict[str, Any]]] = {"detection": [], "tracking": []}
    for cls, key in ((LVISEval, "detection"), (TaoEval, "tracking")):
        def get_results(self, _original=cls.get_results, _key=key):
            results = _original(self)
            recorded[_key].append(dict(results))
            return results
        cls.get_results = get_results
    return recorded


def official(checkout: Path, recorded: dict[str, list[dict[str, Any]]], case: dict[str, Any]) -> dict[str, Any]:
    gt = case["ground_truth"]
    video_of = {image["id"]: image["video_id"] for image in gt["images"]}
    results = copy.deepcopy(case["results"])
    for r in results:
        r.setdefault("video_id", video_of[r["image_id"]])
    for found in recorded.values():
        found.clear()
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: Path(tmp) / f"{name}.json" for name in ("gt", "results")}
        paths["gt"].write_text(json.dumps(gt))
        paths["results"].write_text(json.dumps(results))
        argv = sys.argv
        sys.argv = ["eval_on_tao_amodal.py", "--annotation", str(paths["gt"]), "--track_result",
                    str(paths["results"]), "--output_log", str(Path(tmp) / "log.txt")]
        try:
            runpy.run_path(str(checkout / "tools" / "eval_on_tao_amodal.py"), run_name="__main__")
        except Exception as e:  # the script fails on some inputs; that is recorded
            return {"error": f"{type(e).__name__}: {e}"}
        finally:
            sys.argv = argv
    detection, tracking = recorded["detection"][-1], recorded["tracking"][-1]
    metrics = {ours: float(detection[key]) for key, ours in DETECTION_KEYS.items()}
    metrics.update({ours: float(tracking[key]) for key, ours in TRACKING_KEYS.items()})
    return {"metrics": metrics}


# ---------------------------------------------------------------------------------------------------------------
# Generated cases
# ---------------------------------------------------------------------------------------------------------------

VISIBILITIES = (0.0, 0.05, 0.1, 0.1, 0.3, 0.5, 0.79, 0.8, 0.8, 0.9, 1.0, 1.0)
WIDTH, HEIGHT = 320, 240


def annotation_id(video: int, image: int, track: int) -> str:
    """The id ``tools/create_tao_amodal_v1.py`` gives an annotation."""
    return f"{video}_{image}_{track}"


def make_case(seed: int, *, videos: int = 3, frames: tuple[int, int] = (4, 12), tracks: int = 3,
              categories: int = 7, grid: float = 0.25, score_levels: int = 0, shared_track_ids: bool = False,
              alias: bool = False, omit_video_id: bool = False, crowd: int = 0) -> dict[str, Any]:
    """A TAO-Amodal-like case ({"ground_truth", "results"}); README.md lists what the options exercise."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 10 * c + 3, "name": f"category_{c}", "synset": f"category_{c}.n.01",
             "frequency": FREQUENCIES[c % 3]} for c in range(categories)]
    if alias:
        cats[0]["merged"] = [{"id": 5000, "name": "alias_of_first"}]
    gt: dict[str, Any] = {"info": {}, "licenses": [], "videos": [], "images": [], "tracks": [], "annotations": [],
                          "categories": cats}
    results: list[dict[str, Any]] = []
    track_id = 0
    result_track = 0
    for v in range(1, videos + 1):
        local_track = 0
        n_frames = int(rng.integers(*frames))
        images = [int(i) for i in 1000 * v + rng.choice(np.arange(1, 900), n_frames, replace=False)]
        positives = [int(c) for c in rng.choice([c["id"] for c in cats[1:]], 2, replace=False)]
        if alias:  # the aliased category has tracks in every video
            positives[0] = cats[0]["id"]
        others = [c["id"] for c in cats if c["id"] not in positives]
        neg, not_exhaustive = [others[0], others[1]], [positives[1], others[2]]
        gt["videos"].append({"id": v, "name": f"video_{v}", "width": WIDTH, "height": HEIGHT,
                             "neg_category_ids": neg, "not_exhaustive_category_ids": not_exhaustive})
        for k, i in enumerate(images):
            # the detection part reads the images' lists, the tracking part the video's: they differ in a frame
            image_neg = neg if k else neg[:1]
            image_not_exhaustive = not_exhaustive if k % 3 else not_exhaustive[:1] + [others[3]]
            gt["images"].append({"id": i, "video_id": v, "frame_index": k, "width": WIDTH, "height": HEIGHT,
                                 "neg_category_ids": image_neg, "not_exhaustive_category_ids": image_not_exhaustive})

        def add_result_track(category: int, span: list[int], boxes: np.ndarray, score: float | None) -> None:
            nonlocal result_track, local_track
            result_track += 1
            local_track += 1
            tid = local_track if shared_track_ids else result_track  # shared: every video numbers from 1
            base = score if score is not None else float(rng.random())
            for k, box in zip(span, boxes):
                s = base if score_levels else round(float(np.clip(base + rng.normal(0, 0.05), 0.01, 1)), 4)
                r = {"image_id": images[k], "category_id": category, "bbox": box.tolist(), "score": s,
                     "track_id": tid, "video_id": v}
                if omit_video_id:
                    r.pop("video_id")
                results.append(r)

        for _ in range(tracks):
            category = int(rng.choice(positives))
            if alias and category == cats[0]["id"] and rng.random() < 0.7:
                category_of_results = 5000
            else:
                category_of_results = category
            track_id += 1
            start = int(rng.integers(0, max(1, n_frames - 3)))
            span = list(range(start, n_frames))
            boxes = boxes_along(rng, len(span), grid)
            gt["tracks"].append({"id": track_id, "video_id": v, "category_id": category})
            occluded = int(rng.integers(0, len(span) + 1))
            for j, (k, box) in enumerate(zip(span, boxes)):
                visibility = float(rng.choice(VISIBILITIES)) if j >= occluded else float(rng.choice([0.1, 0.5, 0.79]))
                leaves = box[0] < 0 or box[1] < 0 or box[0] + box[2] > WIDTH or box[1] + box[3] > HEIGHT
                gt["annotations"].append({
                    "id": annotation_id(v, images[k], track_id), "image_id": images[k], "video_id": v,
                    "track_id": track_id, "category_id": category, "bbox": box.tolist(),
                    "area": int(box[2] * box[3]), "iscrowd": 0, "visibility": visibility,
                    # mostly the geometry, sometimes not: the evaluation reads the flag
                    "out_of_frame": bool(leaves) != (rng.random() < 0.15)})
            level = float(rng.integers(1, score_levels + 1)) / (score_levels + 1) if score_levels else None
            if rng.random() < 0.85:  # found, with noise, over part of the track
                noisy = on_grid(boxes + rng.normal(0, 3, boxes.shape), grid)
                noisy[:, 2:] = np.maximum(noisy[:, 2:], 1)
                cut = int(rng.integers(0, max(1, len(span) // 3)))
                add_result_track(category_of_results, span[cut:], noisy[cut:], level)
            # a clipped copy (amodal results must not be clipped to score well); with decimals, a copy equal to its
            # ground truth can make the toolkit's sums of intersections exceed those of unions (it asserts)
            if grid == 0.25 and rng.random() < 0.3:
                clipped = boxes.copy()
                x2 = np.minimum(clipped[:, 0] + clipped[:, 2], WIDTH)
                y2 = np.minimum(clipped[:, 1] + clipped[:, 3], HEIGHT)
                clipped[:, :2] = np.maximum(clipped[:, :2], 0)
                clipped[:, 2:] = np.maximum(np.stack([x2, y2], 1) - clipped[:, :2], 1)
                add_result_track(category, span, clipped, level)
        for _ in range(int(rng.integers(1, 4))):  # false positives, some in negative or unrelated categories
            category = int(rng.choice(positives + neg + [others[3], others[-1]]))
            start = int(rng.integers(0, n_frames))
            span = list(range(start, min(n_frames, start + int(rng.integers(1, 8)))))
            level = 1.0 / (score_levels + 1) if score_levels else None
            add_result_track(category, span, boxes_along(rng, len(span), grid), level)
        for _ in range(crowd):  # many results in the first frame: the cap of 300 per image
            add_result_track(int(rng.choice(positives)), [0], boxes_along(rng, 1, grid), None)
    order = rng.permutation(len(results))
    return {"ground_truth": gt, "results": [results[i] for i in order]}


def boxes_along(rng: np.random.Generator, n: int, grid: float) -> np.ndarray:
    """``n`` boxes of one moving object, often partly or wholly outside the 320 x 240 frame."""
    wh = np.exp(rng.uniform(np.log(15), np.log(150), 2))
    xy = rng.uniform([-60, -60], [WIDTH, HEIGHT], 2)
    steps = np.cumsum(rng.normal(0, 10, (n, 4)), axis=0) * [1, 1, 0.2, 0.2]
    boxes = np.concatenate([np.broadcast_to(xy, (n, 2)), np.broadcast_to(wh, (n, 2))], axis=1) + steps
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 2)
    return on_grid(boxes, grid)


def on_grid(values: np.ndarray, grid: float) -> np.ndarray:
    """Multiples of 0.25 (exact in binary) or numbers of 2 decimals."""
    return np.round(values / grid) * grid if grid == 0.25 else np.round(values, 2)


def occlusion_case() -> dict[str, Any]:
    """The heavily-occluded (HP) track subset and the visibility bounds. One category, one video of 8 frames:
    track 1 has exactly 5 frames of visibility < 0.8 (not HP), track 2 exactly 6 (HP), track 3 has 6 such frames
    of which one has zero area (not evaluated: 5, not HP), track 4 none. Every GT box is found exactly except
    track 2's, found by a worse result; visibilities 0.1 and 0.8 sit on the bin bounds, one of 1.5 is outside
    every bin (even "all"); frames flagged out_of_frame with boxes inside the image and the reverse."""
    cat = {"id": 7, "name": "object", "synset": "object.n.01", "frequency": "c"}
    gt: dict[str, Any] = {"info": {}, "licenses": [], "categories": [cat], "tracks": [], "annotations": [],
                          "videos": [{"id": 1, "neg_category_ids": [], "not_exhaustive_category_ids": []}],
                          "images": [{"id": 10 + k, "video_id": 1, "frame_index": k, "width": WIDTH,
                                      "height": HEIGHT, "neg_category_ids": [], "not_exhaustive_category_ids": []}
                                     for k in range(8)]}
    visibilities = {1: [0.1, 0.79, 0.0, 0.5, 0.1, 0.8, 0.8, 1.0],
                    2: [0.1, 0.79, 0.0, 0.5, 0.1, 0.3, 0.8, 0.9],
                    3: [0.1, 0.79, 0.0, 0.5, 0.1, 0.3, 0.8, 1.0],
                    4: [0.8, 0.8, 0.9, 1.0, 1.0, 0.85, 0.8, 1.5]}
    results = []
    for t, vis in visibilities.items():
        gt["tracks"].append({"id": t, "video_id": 1, "category_id": 7})
        for k, v in enumerate(vis):
            box = [-20.0 + 90 * (t - 1) + 2 * k, 30.0 * k - 40, 60.0, 50.0]
            area = 0.0 if (t == 3 and k == 5) else box[2] * box[3]
            gt["annotations"].append({"id": annotation_id(1, 10 + k, t), "image_id": 10 + k, "video_id": 1,
                                      "track_id": t, "category_id": 7, "bbox": box, "area": area, "visibility": v,
                                      "out_of_frame": (k % 3 == 0)})
            found = [box[0] + (6.0 if t == 2 else 0.0), box[1], box[2], box[3]]
            results.append({"image_id": 10 + k, "category_id": 7, "bbox": found, "score": 0.9 - 0.1 * t,
                            "track_id": 100 + t, "video_id": 1})
    results += [{"image_id": 10 + k, "category_id": 7, "bbox": [200.0, 200.0, 30.0, 30.0], "score": 0.75,
                 "track_id": 200, "video_id": 1} for k in range(4)]
    return {"ground_truth": gt, "results": results}


def zero_id_case() -> dict[str, Any]:
    """Annotation ids that read as numbers: video 0, image 0, track 0 gives the id "0_0_0", which reads as 0 (its
    match counts as a false positive in detection); others read with the underscores dropped. Track id 0 of the
    results and a shared id 0 in two videos (renumbered by the script)."""
    cat = {"id": 3, "name": "object", "synset": "object.n.01", "frequency": "f"}
    gt: dict[str, Any] = {"info": {}, "licenses": [], "categories": [cat], "tracks": [], "annotations": [],
                          "videos": [], "images": []}
    results = []
    for v in (0, 1):
        gt["videos"].append({"id": v, "neg_category_ids": [], "not_exhaustive_category_ids": []})
        for k in range(3):
            gt["images"].append({"id": 10 * v + k, "video_id": v, "frame_index": k, "width": WIDTH,
                                 "height": HEIGHT, "neg_category_ids": [], "not_exhaustive_category_ids": []})
        for t in (0, 1):
            track = 10 * v + t
            gt["tracks"].append({"id": track, "video_id": v, "category_id": 3})
            for k in range(3):
                box = [40.0 * t + 5 * k, 20.0, 30.0, 30.0]
                gt["annotations"].append({"id": annotation_id(v, 10 * v + k, track), "image_id": 10 * v + k,
                                          "video_id": v, "track_id": track, "category_id": 3, "bbox": box,
                                          "area": 900.0, "visibility": 0.5 if t else 1.0, "out_of_frame": False})
                results.append({"image_id": 10 * v + k, "category_id": 3, "bbox": box, "score": 0.9 - 0.2 * t,
                                "track_id": t - v, "video_id": v})
    return {"ground_truth": gt, "results": results}


def nothing_evaluated_case() -> dict[str, Any]:
    """Results only in a category neither positive nor negative anywhere: nothing is evaluated."""
    case = make_case(98, videos=2)
    gt = case["ground_truth"]
    listed = {c for x in gt["videos"] + gt["images"] for key in ("neg_category_ids", "not_exhaustive_category_ids")
              for c in x[key]} | {t["category_id"] for t in gt["tracks"]}
    free = next(c["id"] for c in gt["categories"] if c["id"] not in listed)
    image = gt["images"][0]
    case["results"] = [{"image_id": image["id"], "category_id": free, "bbox": [10.0, 10.0, 20.0, 20.0],
                        "score": 0.5, "track_id": 1, "video_id": image["video_id"]}]
    return case


def tao_generator() -> Any:
    """``tests/data/tao/make_reference.py`` as a module, for its :func:`with_unknown_categories`."""
    spec = importlib.util.spec_from_file_location("tao_make_reference", HERE.parent / "tao" / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cases() -> dict[str, dict[str, Any]]:
    specs = {
        "basic": {},
        "decimal_boxes": {"grid": 0.01, "videos": 4},
        "shared_track_ids": {"shared_track_ids": True, "videos": 4},
        "score_ties": {"score_levels": 2},
        "category_alias": {"alias": True},
        "video_id_omitted": {"omit_video_id": True},
        "long_tracks": {"videos": 2, "frames": (12, 20), "tracks": 5},
        "cap_300": {"videos": 1, "frames": (3, 5), "crowd": 305},
        "random": {"videos": 5, "tracks": 4, "categories": 9},
    }
    generated = {name: make_case(seed, **kw) for seed, (name, kw) in enumerate(specs.items())}
    generated["occlusion"] = occlusion_case()
    generated["zero_annotation_id"] = zero_id_case()
    generated["nothing_evaluated"] = nothing_evaluated_case()
    # results of category ids that are no category (0, 9999): counted in the caps of both parts, then left out
    unknown = tao_generator().with_unknown_categories
    generated["unknown_categories"] = unknown(make_case(101, shared_track_ids=True, videos=4), 201, 300,
                                              shared_ids=True)
    generated["unknown_categories_alias"] = unknown(make_case(102, alias=True), 202, 300)
    generated["unknown_categories_mixed_track"] = unknown(make_case(103), 203, 300, mixed_survives=True)
    return generated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("toolkit", type=Path, help="checkout of WesleyHsieh0806/TAO-Amodal")
    args = parser.parse_args()
    checkout = args.toolkit.resolve()
    recorded = import_toolkit(checkout)
    generated = cases()
    expected = {name: official(checkout, recorded, case) for name, case in generated.items()}
    # the script fails on empty results (it reads results[0]); the tests use "basic"'s ground truth for them
    expected["empty_results"] = official(checkout, recorded, {"ground_truth": generated["basic"]["ground_truth"],
                                                              "results": []})
    cases_text = json.dumps(generated, separators=(",", ":")) + "\n"
    atomic_write(HERE / "cases.json", lambda tmp: tmp.write_text(cases_text))
    expected_text = json.dumps(expected, indent=1) + "\n"
    atomic_write(HERE / "expected.json", lambda tmp: tmp.write_text(expected_text))
    print(f"{len(generated)} cases written to {HERE}")


if __name__ == "__main__":
    main()
