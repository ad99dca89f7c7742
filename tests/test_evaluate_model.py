"""model.evaluate: frames read from an ImageNet VID layout, results mapped to image ids, scored officially."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vfe_hub.errors import DatasetError
from vfe_hub.evaluation import imagenet_vid_data
from small_models import StandIn, mamba


class Oracle(StandIn):
    """Answers each frame with its ground truth (found by the frame's file), so a correct run scores AP50 = 1."""

    def __init__(self, truth: dict[str, imagenet_vid_data.VidFrame]) -> None:
        super().__init__()
        self.truth = truth

    def answer(self, frame):
        gt = self.truth[Path(frame.source).relative_to(Path(frame.source).parents[2]).as_posix()]
        boxes = torch.from_numpy(gt.boxes)
        return boxes, torch.ones(len(boxes)), torch.from_numpy(gt.labels) - 1


def test_a_perfect_detector_scores_one(vid_root):
    gt = imagenet_vid_data.load_vid_xml(vid_root)
    oracle = Oracle({f.file_name: f for f in gt.frames})
    metrics = oracle.evaluate("imagenet_vid", root=vid_root, motion_iou="compute", batch_size=3)
    assert metrics["AP50"] == 1.0 and metrics["AP50/airplane"] == 1.0 and metrics["AP50/zebra"] == 1.0
    # the paper protocol ran each video's frames after the first in a shuffled order, and gave them back in order
    first_video = [i for s, i in oracle.seen if s.endswith("00000000")]
    assert sorted(first_video) == [0, 1, 2, 3] and first_video[0] == 0


def test_limit_scores_the_first_videos_only(vid_root, tmp_path):
    gt = imagenet_vid_data.load_vid_xml(vid_root)
    oracle = Oracle({f.file_name: f for f in gt.frames})
    out = tmp_path / "results.json"
    metrics = oracle.evaluate("imagenet_vid_val", root=vid_root, motion_iou="compute", limit=1, results_file=out)
    assert metrics["AP50"] == 1.0 and metrics["AP50/airplane"] == 1.0
    assert metrics["AP50/zebra"] != metrics["AP50/zebra"]  # NaN: no zebra in the first video
    assert len(out.read_text()) > 0 and {r["image_id"] for r in __import__("json").loads(out.read_text())} == {1, 2, 3, 4}


@pytest.mark.slow
def test_mamba_runs_on_the_benchmark_layout(vid_root):
    metrics = mamba().evaluate("imagenet_vid", root=vid_root, motion_iou="compute", batch_size=2)
    assert {"AP50", "AP50_fast", "AP50_medium", "AP50_slow", "AP50/zebra"} <= set(metrics)
    assert 0.0 <= metrics["AP50"] <= 1.0


def test_unknown_dataset_and_missing_frames(vid_root, tmp_path):
    gt = imagenet_vid_data.load_vid_xml(vid_root)
    oracle = Oracle({})
    with pytest.raises(DatasetError, match="imagenet_vid"):
        oracle.evaluate("imagenet_vdi", root=vid_root)
    (tmp_path / "Annotations").symlink_to(vid_root / "Annotations")
    (tmp_path / "ImageSets").symlink_to(vid_root / "ImageSets")
    with pytest.raises(DatasetError, match="Data/VID"):
        oracle.evaluate("imagenet_vid", root=tmp_path, motion_iou="compute")
    assert len(gt) == 7
