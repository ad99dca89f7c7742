"""model.evaluate("tao_val"): a TAO layout on disk (LVIS v0.5 category ids), annotated frames or denser ones."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from small_models import StandIn
from vfe_hub import cli, sharding
from vfe_hub.errors import DatasetError
from vfe_hub.evaluation import tao, tao_amodal, tao_data, teta
from vfe_hub.evaluation.runner import load_benchmark
from vfe_hub.registry import lvis_v1_categories

V1 = {c["id"]: c for c in lvis_v1_categories()}
#: made-up LVIS v0.5 ids -> the LVIS v1 category of the same synset (None: a synset LVIS v1 does not have)
V05 = {501: 3, 502: 12, 503: None}
FRAMES = 11
ANNOTATED = (1, 5, 9)  # positions in the video folder; frame 0 and 10 lie outside the annotated span


def _write_tao(root: Path) -> dict:
    """Two videos of 11 frames under root/frames/val/src/v{1,2}/, annotated at frames 1, 5, 9; one track per
    video of a mapped category and, in video 2, one track of a category without an LVIS v1 synset."""
    images, annotations, tracks, videos = [], [], [], []
    for v in (1, 2):
        name = f"val/src/v{v}"
        folder = root / "frames" / name
        folder.mkdir(parents=True)
        for i in range(FRAMES):
            Image.fromarray(np.full((48, 64, 3), 10 * i + v, np.uint8)).save(folder / f"frame{i:04d}.jpg")
        videos.append({"id": v, "name": name, "neg_category_ids": [502], "not_exhaustive_category_ids": []})
        for t, category in ((10 * v, 501 if v == 1 else 502), *(((10 * v + 1, 503),) if v == 2 else ())):
            tracks.append({"id": t, "video_id": v, "category_id": category})
        for k, position in enumerate(ANNOTATED):
            image_id = 100 * v + k
            images.append({"id": image_id, "video_id": v, "frame_index": position, "width": 64, "height": 48,
                           "file_name": f"{name}/frame{position:04d}.jpg"})
            for track in (t for t in tracks if t["video_id"] == v):
                box = [4.0 + 3 * k + track["id"] % 10, 6.0, 20.0, 16.0]
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "video_id": v,
                                    "track_id": track["id"], "category_id": track["category_id"], "bbox": box,
                                    "area": box[2] * box[3], "iscrowd": 0})
    categories = [{"id": i, "name": f"c{i}", "synset": V1[j]["synset"] if j else "nothing.n.01", "frequency": "f"}
                  for i, j in V05.items()]
    data = {"videos": videos, "images": images, "annotations": annotations, "tracks": tracks,
            "categories": categories}
    (root / "annotations").mkdir()
    (root / "annotations" / "validation.json").write_text(json.dumps(data))
    return data


class TrackOracle(StandIn):
    """Answers each annotated frame with its ground-truth tracks (LVIS v1 labels, the ground truth's track ids),
    other frames with nothing; records the frame files it ran. With ``amodal`` the boxes are also the amodal
    boxes (TAO-Amodal scores those). With ``shift``, boxes move right by ``shift * k`` pixels in the ``k``-th
    annotated frame of a video."""

    def __init__(self, data: dict, amodal: bool = False, shift: float = 0.0) -> None:
        super().__init__()
        self.amodal, self.shift = amodal, shift
        v1 = (tao_amodal.to_lvis_v1 if amodal else tao_data.to_lvis_v1)(data)
        self.truth: dict[str, list] = {}
        images = {im["id"]: im["file_name"] for im in v1["images"]}
        for a in v1["annotations"]:
            self.truth.setdefault(images[a["image_id"]], []).append(a)
        self.files: list[str] = []

    def forward(self, batch, state):
        out = []
        for frame in batch.frames:
            self.files.append(Path(frame.source).name)
            anns = self.truth.get("/".join(Path(frame.source).parts[-4:]), [])
            dx = self.shift * (int(Path(frame.source).stem[5:]) // 4)  # annotated frames 1, 5, 9: 0, 1, 2 shifts
            boxes = torch.tensor([[x + dx, y, x + w + dx, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
            boxes = boxes.reshape(-1, 4)
            labels = torch.tensor([a["category_id"] - 1 for a in anns], dtype=torch.long)
            tracks = torch.tensor([a["track_id"] for a in anns], dtype=torch.long)
            out.append(self.make_detections(frame, boxes, torch.ones(len(anns)), labels, track_ids=tracks,
                                            amodal_boxes=boxes if self.amodal else None))
        return out


@pytest.fixture(scope="module")
def tao_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tao")
    return root, _write_tao(root)


def test_v05_categories_map_to_lvis_v1_by_synset(tao_root):
    _, data = tao_root
    v1 = tao_data.to_lvis_v1(data)
    assert len(v1["categories"]) == 1203 and {a["category_id"] for a in v1["annotations"]} == {3, 12}
    assert {t["category_id"] for t in v1["tracks"]} == {3, 12}  # the track without a v1 synset is dropped
    assert all(v["neg_category_ids"] == [12] for v in v1["videos"])
    assert all(im["neg_category_ids"] == [12] for im in v1["images"])
    assert tao_data.to_lvis_v1(v1) == v1, "a file on LVIS v1 ids stays as it is"


def test_a_perfect_tracker_scores_one_on_the_annotated_frames(tao_root):
    root, data = tao_root
    oracle = TrackOracle(data)
    metrics = oracle.evaluate("tao_val", root=root, batch_size=2)
    # precision is tp / (tp + eps): 1 within rounding
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12) == metrics["AP50"] and metrics["AP75"] == -1.0
    assert {k: metrics[k] for k in teta.KEYS} == {k: 1.0 for k in teta.KEYS}  # TETA, LocA, ... beside track mAP
    assert oracle.files == [f"frame{p:04d}.jpg" for p in ANNOTATED] * 2


def test_track_map_and_teta_from_one_run(tao_root, tmp_path):
    """TETA beside track mAP, both from the one run's results (the converted ground truth); ``metrics`` selects."""
    root, data = tao_root
    oracle = TrackOracle(data, shift=4.0)
    out = tmp_path / "results.json"
    both = oracle.evaluate("tao_val", root=root, results_file=out)
    assert oracle.files == [f"frame{p:04d}.jpg" for p in ANNOTATED] * 2  # one run
    records, v1 = json.loads(out.read_text()), tao_data.to_lvis_v1(data)
    assert both == {**tao.evaluate(v1, records), **teta.evaluate(v1, records)}
    assert 0 < both["LocA"] < 1 and 0 < both["AssocA"] < 1 and 0 < both["TETA"] < 1
    only = TrackOracle(data, shift=4.0).evaluate("tao_val", root=root, metrics="teta")
    assert only == {k: both[k] for k in teta.KEYS}
    assert TrackOracle(data, shift=4.0).evaluate("tao_val", root=root, metrics=["TRACK_MAP"]) == {
        k: v for k, v in both.items() if k not in teta.KEYS}
    with pytest.raises(DatasetError, match=r"metrics='tetra': TAO val computes track_map and teta .*did you mean "
                                           r"'teta'"):
        oracle.evaluate("tao_val", root=root, metrics="tetra")


def test_sharded_tao_runs_merge_and_score_both_metrics(tao_root, tmp_path):
    root, data = tao_root
    once = TrackOracle(data, shift=4.0).evaluate("tao_val", root=root)
    for index in range(2):
        TrackOracle(data, shift=4.0).evaluate("tao_val", root=root, shard=(index, 2), out_dir=tmp_path / "both")
    assert sharding.merge_and_score(tmp_path / "both") == once
    for index in range(2):
        TrackOracle(data, shift=4.0).evaluate("tao_val", root=root, metrics=["teta"], shard=(index, 2),
                                              out_dir=tmp_path / "teta")
    assert sharding.merge_and_score(tmp_path / "teta") == {k: once[k] for k in teta.KEYS}


def test_metrics_on_the_command_line():
    args = cli.parser().parse_args(["evaluate", "gtr_dr2101_tao", "tao_val", "--root", ".", "--metrics", "teta"])
    assert cli._dataset_options(args) == {"metrics": ["teta"]}
    args = cli.parser().parse_args(["evaluate", "gtr_dr2101_tao", "tao_val", "--root", ".", "--fps", "2"])
    assert cli._dataset_options(args) == {"fps": 2}


def test_the_command_line_benchmark_refuses_unknown_categories_with_strict(tao_root, tmp_path):
    """vfe-hub evaluate ... --strict: the benchmark the command line reads (before any model) refuses results of a
    category the annotations lack; without --strict it scores them as the toolkit does."""
    root, data = tao_root
    out = tmp_path / "results.json"
    TrackOracle(data).evaluate("tao_val", root=root, results_file=out)
    records = json.loads(out.read_text())
    records += [dict(r, category_id=0, track_id=r["track_id"] + 1) for r in records if r["video_id"] == 1]
    args = ["evaluate", "gtr_dr2101_tao", "tao_val", "--root", str(root), "--metrics", "track_map"]
    assert cli._benchmark(cli.parser().parse_args(args)).score(records)["AP"] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(DatasetError, match="has category_id 0, which is not a category"):
        cli._benchmark(cli.parser().parse_args([*args, "--strict"])).score(records)


def test_fps_runs_denser_frames_and_scores_the_annotated_ones(tao_root, tmp_path):
    root, data = tao_root
    oracle = TrackOracle(data)
    out = tmp_path / "results.json"
    metrics = oracle.evaluate("tao", root=root, fps=2, results_file=out)
    # between annotated frames 1, 5, 9: every (4 // 2)-th frame; 0 and 10 lie outside the annotated span
    assert oracle.files == [f"frame{p:04d}.jpg" for p in (1, 3, 5, 7, 9)] * 2
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)
    records = json.loads(out.read_text())
    assert {r["image_id"] for r in records} == {im["id"] for im in data["images"]}
    assert {(r["video_id"], r["track_id"] // 10**8) for r in records} == {(1, 1), (2, 2)}
    oracle.files.clear()
    oracle.evaluate("tao", root=root, fps=1, limit=1)
    assert oracle.files == [f"frame{p:04d}.jpg" for p in ANNOTATED]


def test_bad_arguments_are_named(tao_root, tmp_path):
    root, data = tao_root
    oracle = TrackOracle(data)
    with pytest.raises(DatasetError, match="fps=0"):
        oracle.evaluate("tao_val", root=root, fps=0)
    with pytest.raises(DatasetError, match="validation.json does not exist; pass ann_file=<the tao annotation file>"):
        oracle.evaluate("tao_val", root=tmp_path)


def test_tao_amodal_val_scores_the_amodal_boxes(tao_root, tmp_path):
    """TAO-Amodal: the same frames, annotations with ``amodal_bbox`` and visibility under
    ``amodal_annotations/``; a tracker answering the amodal boxes scores 1."""
    root, data = tao_root
    amodal = json.loads(json.dumps(data))
    for a in amodal["annotations"]:
        a["amodal_bbox"], a["visibility"], a["out_of_frame"] = a["bbox"], 0.5, False
    (root / "amodal_annotations").mkdir(exist_ok=True)
    (root / "amodal_annotations" / "validation.json").write_text(json.dumps(amodal))
    oracle = TrackOracle(amodal, amodal=True)
    metrics = oracle.evaluate("tao_amodal_val", root=root)
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12) and metrics["track_AP"] == pytest.approx(1.0, abs=1e-12)
    assert metrics["AP_PO"] == pytest.approx(1.0, abs=1e-12) and metrics["AP_HV"] == -1.0  # every box half visible


def test_unknown_category_ids_are_left_out_or_refused_with_strict(tao_root, tmp_path, caplog):
    """Results of a category id the file lacks (0: a 0-based class index) are left out with a warning, as the
    official toolkit drops them; ``evaluate(..., strict=True)`` refuses them."""
    root, data = tao_root
    out = tmp_path / "results.json"
    TrackOracle(data).evaluate("tao_val", root=root, results_file=out)
    records = json.loads(out.read_text())
    records += [dict(r, category_id=0, track_id=r["track_id"] + 1) for r in records if r["video_id"] == 1]
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):
        metrics = load_benchmark("tao_val", root=root, metrics="track_map").score(records)
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "3 of 9 results" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vfe_hub"):  # one warning per metric, each saying what it does
        load_benchmark("tao_val", root=root).score(records)
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 2
    assert "left out" in caplog.records[0].message and "wrong classes" in caplog.records[1].message
    with pytest.raises(DatasetError, match="has category_id 0, which is not a category"):
        load_benchmark("tao_val", root=root, strict=True).score(records)
