"""The engine's contract: no model's results depend on how frames are batched (see vfe_hub/engine.py).

Every registered model runs on inputs that mix frame sizes with different padded sizes (two sequences of
different sizes for every model; a folder of interleaved sizes for the image models) at batch sizes 1 to 4, under
every protocol it has. Same labels, scores within 1e-5, boxes within 1e-3 px: batching changes only the float
summation order of batched kernels.
"""
from __future__ import annotations

import pytest
import torch

from media import panning_clip, photo, write_image, write_video
from small_models import SMALL, small_model
from vfe_hub.engine import padded_size
from vfe_hub.registry import MODELS

pytestmark = pytest.mark.slow


IMAGE_MODELS = sorted(name for name, spec in MODELS.items() if spec.temporal.startswith("none"))
#: weight variants of one architecture share its code: one of each
ARCHITECTURES = sorted({spec.architecture or name for name, spec in MODELS.items()})


@pytest.fixture(scope="module", params=ARCHITECTURES)
def model(request):
    net = small_model(request.param)
    if net.stateful:
        net.paper_references = 3  # fewer paper-protocol references than the release's 14 keep the test fast
    return net


def protocols(model) -> list[dict]:
    return [{"protocol": p} for p in model.spec.protocols] if "protocol" in model.predict_options else [{}]


def assert_same(expected, got) -> None:
    """Same frames; per frame the same number of detections, scores equal position by position within 1e-5, and
    each detection has a twin (same label, score within 1e-5, box within 1e-3 px): two detections whose scores
    tie within float noise may come out in either order."""
    assert [d.frame.name for d in got] == [d.frame.name for d in expected]
    for a, b in zip(expected, got):
        assert len(a) > 0 and len(a) == len(b), a.frame.name
        torch.testing.assert_close(b.scores, a.scores, rtol=0, atol=1e-5)
        rows_b = list(zip(b.labels.tolist(), b.scores.tolist(), b.boxes.tolist()))
        for label, score, box in zip(a.labels.tolist(), a.scores.tolist(), a.boxes.tolist()):
            twin = next((row for row in rows_b if row[0] == label and abs(row[1] - score) <= 1e-5
                         and max(abs(p - q) for p, q in zip(row[2], box)) <= 1e-3), None)
            assert twin is not None, f"{a.frame.name}: no twin for {label} {score} {box}"
            rows_b.remove(twin)


def test_two_sequences_of_different_sizes(model, tmp_path):
    """A folder of 120 x 160 frames, then a 90 x 160 video: padded to 192 x 256 and 192 x 320 (small rule), so
    every batch size from 2 to 4 puts both sizes in one batch."""
    folder = tmp_path / "frames"
    for i, frame in enumerate(panning_clip(n=2, size=(120, 160))):
        write_image(folder / f"{i:03d}.png", frame)
    video = write_video(tmp_path / "wide.mp4", panning_clip(n=3, size=(90, 160), name="coffee"))
    assert padded_size(120, 160, SMALL) != padded_size(90, 160, SMALL)
    for options in protocols(model):
        one = model.predict([folder, video], batch_size=1, **options)
        assert len(one) == 5
        for batch_size in (2, 3, 4):
            assert_same(one, model.predict([folder, video], batch_size=batch_size, **options))


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_folder_of_interleaved_sizes(name, tmp_path):
    """Image models batch every frame of one padded size together, out of order, and give results back in order."""
    model = small_model(name)
    sizes = [(120, 160), (90, 160), (120, 160), (100, 100)]
    for i, size in enumerate(sizes):
        write_image(tmp_path / f"{i}.png", photo(("chelsea", "coffee", "astronaut")[i % 3], size))
    one = model.predict(tmp_path, batch_size=1)
    for batch_size in (2, 3, 4):
        assert_same(one, model.predict(tmp_path, batch_size=batch_size))
