"""Behaviour every video model shares (MAMBA, STPN): predict on photographs and video, batching, protocols."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from media import panning_clip, photo, write_video
from small_models import video_model
from vfe_hub.errors import VfeHubError
from vfe_hub.io import open_frames
from vfe_hub.registry import get_spec

NAMES = ["mamba_r101_dc5_vid", "stpn_swint_vid"]


@pytest.fixture(scope="module", params=NAMES)
def model(request):
    return video_model(request.param, seed=0)


def _check(det, size, num_classes=30):
    h, w = size
    assert det.boxes.dtype == torch.float32 and det.boxes.shape == (len(det), 4)
    assert det.scores.dtype == torch.float32 and det.labels.dtype == torch.int64
    assert 0 < len(det) <= 100
    assert (det.boxes[:, 0] >= 0).all() and (det.boxes[:, 2] <= w).all()
    assert (det.boxes[:, 1] >= 0).all() and (det.boxes[:, 3] <= h).all()
    assert (det.boxes[:, 2] >= det.boxes[:, 0]).all() and (det.boxes[:, 3] >= det.boxes[:, 1]).all()
    assert ((det.scores > 1e-4) & (det.scores <= 1)).all()
    assert torch.all(det.scores[:-1] >= det.scores[1:])
    assert ((det.labels >= 0) & (det.labels < num_classes)).all()


@pytest.mark.slow
def test_predict_on_a_photograph(model):
    image = photo("chelsea")  # 300 x 451, resized up to 192 x 289 -> padded 192 x 304
    [det] = model.predict(image)
    _check(det, image.shape[:2])
    assert det.class_names == get_spec(model.spec.name).classes
    assert det.provenance["model"] == model.spec.name and det.provenance["dtype"] == "float32"
    records = det.to_json(image_id=7)
    assert len(records) == len(det) and records[0]["image_id"] == 7 and 1 <= records[0]["category_id"] <= 30
    x, y, w, h = records[0]["bbox"]
    assert torch.allclose(torch.tensor([x, y, x + w, y + h]), det.boxes[0].double().float(), atol=1e-3)
    drawn = det.plot(image, score_thr=0.0)
    assert drawn.size == (image.shape[1], image.shape[0])


@pytest.mark.slow
def test_video_batch_of_four_equals_one_at_a_time(model, tmp_path):
    """Networks run batched; the video state (memory, prompt) is updated frame by frame in order either way.

    Same-size frames are padded alike, so batching changes only float summation order in the convolutions:
    boxes agree within 1e-3 px and scores within 1e-5 (float32 on CPU).
    """
    video = write_video(tmp_path / "clip.mp4", panning_clip(n=5, size=(120, 160)))
    one = model.predict(video, batch_size=1)
    four = model.predict(video, batch_size=4)
    assert len(one) == len(four) == 5
    assert [d.frame.index for d in four] == list(range(5))
    assert four[2].plot().size == (160, 120)  # re-reads frame 2 from the video
    for a, b in zip(one, four):
        _check(a, (120, 160))
        assert torch.equal(a.labels, b.labels)
        assert torch.allclose(a.boxes, b.boxes, atol=1e-3) and torch.allclose(a.scores, b.scores, atol=1e-5)


@pytest.mark.slow
def test_state_makes_later_frames_depend_on_earlier_ones(model):
    frames = panning_clip(n=3, size=(120, 160))
    alone = model.predict(frames[2])[0]
    in_sequence = model.predict(frames)[2]
    assert not torch.equal(alone.scores[:5], in_sequence.scores[:5])
    again = model.predict(frames)[2]
    assert torch.equal(in_sequence.scores, again.scores), "a run must be repeatable"


@pytest.mark.slow
def test_paper_protocol_is_deterministic_and_returns_frame_order(model, monkeypatch):
    monkeypatch.setattr(model, "paper_references", 4)  # 14 in use (test_stpn checks it); 4 keeps this test short
    frames = panning_clip(n=6, size=(120, 160))
    first = model.predict(frames, protocol="paper", batch_size=2)
    second = model.predict(frames, protocol="paper", batch_size=3)
    assert [d.frame.index for d in first] == list(range(6))
    for a, b in zip(first, second):
        assert torch.equal(a.labels, b.labels) and torch.allclose(a.scores, b.scores, atol=1e-5)
    streaming = model.predict(frames)
    assert not torch.equal(streaming[0].scores[:5], first[0].scores[:5]), "paper frame 0 sees the references"


@pytest.mark.slow
def test_paper_protocol_on_a_video_file_reads_frames_back_from_disk(model, monkeypatch, tmp_path):
    """The paper protocol holds a video's decoded frames in a temporary file, not in memory: the results equal
    those on the same frames given as arrays."""
    monkeypatch.setattr(model, "paper_references", 3)
    video = write_video(tmp_path / "clip.mp4", panning_clip(n=4, size=(120, 160)))
    decoded = np.stack([f.image for f in open_frames(video)])
    from_file = model.predict(video, protocol="paper", stream=True)
    for a, b in zip(model.predict(decoded, protocol="paper"), from_file, strict=True):
        assert torch.equal(a.labels, b.labels) and torch.equal(a.scores, b.scores) and torch.equal(a.boxes, b.boxes)


def test_unknown_predict_option_suggests_the_closest(model):
    with pytest.raises(TypeError, match="did you mean 'protocol'"):
        model.predict(photo(), protcol="paper")
    with pytest.raises(VfeHubError, match="'streaming', 'paper'"):
        model.predict(photo(), protocol="offline")
    with pytest.raises(VfeHubError, match="did you mean 'paper'"):
        model.predict(photo(), protocol="papr")
    for bad in (0, -1, "4", 2.0, True):
        with pytest.raises(VfeHubError, match="batch_size must be a positive integer"):
            model.predict(photo(), batch_size=bad)


def test_pipeline_runs_the_model(model):
    import vfe_hub

    det = vfe_hub.pipeline("video-object-detection", model=model)
    [result] = det(photo("coffee"))
    _check(result, photo("coffee").shape[:2])
    assert "video-object-detection" in repr(det)


@pytest.mark.slow
def test_half_precision_runs_under_autocast(model):
    """bfloat16 autocast (on CPU here; float16 is the same code path on CUDA): valid results, tagged with the dtype."""
    model.dtype = torch.bfloat16
    try:
        [det] = model.predict(photo("coffee", (120, 160)))
    finally:
        model.dtype = torch.float32
    _check(det, (120, 160))
    assert det.provenance["dtype"] == "bfloat16" and det.boxes.dtype == torch.float32
