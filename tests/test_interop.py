"""Detections handed to other tools: supervision, flat records and pandas, and the errors when an extra is missing."""
from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import supervision as sv
import torch

from vfe_hub.errors import VfeHubError
from vfe_hub.structures import Detections, FrameInfo

CLASSES = ("car", "dog", "bird")
FRAME = FrameInfo("cam/clip.mp4#3", 3, "cam/clip.mp4", "/abs/cam/clip.mp4#3", (20, 30), image_id=8)


def example(*, masks: bool = False, tracks: bool = False, n: int = 3) -> Detections:
    boxes = torch.tensor([[1.0, 2.0, 11.5, 12.0], [0.0, 0.0, 30.0, 20.0], [5.25, 6.0, 9.0, 19.0]])[:n]
    rles = None
    if masks:
        m = torch.zeros(n, 20, 30, dtype=torch.bool)
        for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            m[i, y1:y2, x1:x2] = True
        m[:1, 0, 29] = True  # a corner pixel: a transposed mask would move it
        rles = Detections.encode_masks(m)
    return Detections(boxes, torch.tensor([0.9, 0.75, 0.5])[:n], torch.tensor([1, 0, 1])[:n], CLASSES, FRAME,
                      track_ids=torch.tensor([7, 2, 4])[:n] if tracks else None, masks=rles)


# ---------------------------------------------------------------------------------------------------- supervision


def test_to_supervision_carries_boxes_scores_classes_masks_and_tracks():
    det = example(masks=True, tracks=True)
    out = det.to_supervision()
    assert isinstance(out, sv.Detections) and len(out) == 3
    assert out.xyxy.dtype == np.float32 and out.xyxy.shape == (3, 4)
    np.testing.assert_array_equal(out.xyxy, det.boxes.numpy())
    np.testing.assert_array_equal(out.confidence, np.array([0.9, 0.75, 0.5], dtype=np.float32))
    np.testing.assert_array_equal(out.class_id, [1, 0, 1])
    assert isinstance(out.data["class_name"], np.ndarray) and out.data["class_name"].tolist() == ["dog", "car", "dog"]
    assert out.mask.dtype == bool and out.mask.shape == (3, 20, 30)
    np.testing.assert_array_equal(out.mask, det.mask_tensor().numpy())
    assert out.mask[0, 0, 29] and out.mask[0].sum() == 10 * 10 + 1
    np.testing.assert_array_equal(out.tracker_id, [7, 2, 4])
    kept = out[out.confidence > 0.6]  # supervision's own filtering keeps the fields aligned
    assert kept.data["class_name"].tolist() == ["dog", "car"] and kept.tracker_id.tolist() == [7, 2]


def test_to_supervision_without_masks_tracks_or_detections():
    out = example().to_supervision()
    assert out.mask is None and out.tracker_id is None and len(out) == 3
    empty = example(n=0, masks=True).to_supervision()
    assert len(empty) == 0 and empty.xyxy.shape == (0, 4) and empty.mask.shape == (0, 20, 30)
    assert empty.data["class_name"].shape == (0,)


def test_missing_supervision_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "supervision", None)  # makes `import supervision` fail
    with pytest.raises(VfeHubError, match=r"supervision is not installed.*pip install 'vfe_hub\[supervision\]'"):
        example().to_supervision()
    with pytest.raises(ImportError):
        example().to_supervision()


# ---------------------------------------------------------------------------------------------------- tables


def test_to_records_are_flat_rows():
    records = example().to_records()
    assert records[0] == {"frame": "cam/clip.mp4#3", "sequence": "cam/clip.mp4", "index": 3, "image_id": 8,
                          "x1": 1.0, "y1": 2.0, "x2": 11.5, "y2": 12.0, "score": pytest.approx(0.9), "label": 1,
                          "class_name": "dog"}
    assert [r["class_name"] for r in records] == ["dog", "car", "dog"] and records[2]["x1"] == 5.25
    tracked = example(tracks=True).to_records()
    assert [r["track_id"] for r in tracked] == [7, 2, 4] and list(tracked[0])[-1] == "track_id"
    assert example(n=0).to_records() == []


def test_to_df_has_one_row_per_detection_and_columns_when_empty():
    df = example(tracks=True).to_df()
    assert isinstance(df, pd.DataFrame) and len(df) == 3
    assert list(df.columns) == ["frame", "sequence", "index", "image_id", "x1", "y1", "x2", "y2", "score", "label",
                                "class_name", "track_id"]
    assert df["class_name"].tolist() == ["dog", "car", "dog"] and df["track_id"].tolist() == [7, 2, 4]
    assert df["x2"].tolist() == [11.5, 30.0, 9.0] and (df["image_id"] == 8).all()
    empty = example(n=0).to_df()
    assert len(empty) == 0 and "class_name" in empty.columns and "track_id" not in empty.columns
    both = pd.concat([example().to_df(), empty, example(n=1).to_df()], ignore_index=True)
    assert len(both) == 4


def test_missing_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(VfeHubError, match=r"pandas is not installed.*pip install 'vfe_hub\[pandas\]'"):
        example().to_df()
    assert len(example().to_records()) == 3  # records need no extra
