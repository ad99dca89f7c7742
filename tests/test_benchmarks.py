"""The benchmark scripts' shared pieces work on image and video models (the scripts print the timings; nothing here
is timed)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import speed  # noqa: E402

from small_models import small_model  # noqa: E402


@pytest.mark.parametrize("name", ["mamba_r101_dc5_vid", "detpro_r50_fpn_lvis1"])
def test_runner_continues_one_video_over_calls(name):
    """A video model run in pieces sees one video (its memory carries over), as ``predict`` on the whole clip."""
    model = small_model(name)
    clip = speed.frames(3, 48, 64)
    run = speed.runner(model, 2)
    pieces = run(clip[:1]) + run(clip[1:])
    whole = model.predict([f.image for f in clip], progress=False)
    assert len(pieces) == 3
    for ours, reference in zip(pieces, whole):
        assert torch.equal(ours.boxes, reference.boxes) and torch.equal(ours.scores, reference.scores)


def test_gflop_counts_two_per_multiply_add():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    frame = speed.frames(1, 10, 12)[0]
    work = speed.gflop(lambda frames: conv(torch.from_numpy(frames[0].image).permute(2, 0, 1).float()), frame)
    assert work == pytest.approx(2 * 8 * 10 * 12 * 3 * 9 / 1e9)
