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
from vfe_hub.errors import DatasetError
from vfe_hub.evaluation import tao_amodal, tao_data
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
    boxes (TAO-Amodal scores those)."""

    def __init__(self, data: dict, amodal: bool = False) -> None:
        super().__init__()
        self.amodal = amodal
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
            boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]).reshape(-1, 4)
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
    assert oracle.files == [f"frame{p:04d}.jpg" for p in ANNOTATED] * 2


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
        metrics = load_benchmark("tao_val", root=root).score(records)
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-12)
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "3 of 9 results" in caplog.text
    with pytest.raises(DatasetError, match="has category_id 0, which is not a category"):
        load_benchmark("tao_val", root=root, strict=True).score(records)
