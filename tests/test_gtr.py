"""GTR: strict conversion of both released layouts, load by name through the test Hub, tracking on video, the CLI."""
from __future__ import annotations

import json
import math

import av
import numpy as np
import pytest
import torch
from torch import nn

import vfe_hub
from media import panning_clip, photo, write_image, write_video
from original_layouts import gtr_layout, random_state, share_expander
from small_models import GTR, gtr_model, serve_amodal_release
from vfe_hub import cli, registry
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.errors import ConversionError, VfeHubError
from vfe_hub.weights import empty_model

SPEC = registry.get_spec(GTR)


def test_both_released_layouts_convert_strictly():
    """GTR_TAO_DR2101.pth (1,036 tensors, 127,894,106 numbers) and the Amodal Expander files (12 more tensors: the
    expander's three aliased stages) convert with every key mapped; the training buffers and the expander are the
    declared drops, and nothing else."""
    expected = {k: v.shape for k, v in empty_model(SPEC).state_dict().items()}
    for expander, (tensors, numbers) in ((False, (1036, 127_894_106)), (True, (1048, 128_880_998))):
        layout = gtr_layout(expander=expander)
        assert (len(layout), sum(math.prod(s) for s in layout.values())) == (tensors, numbers)
        state, dropped = convert_state_dict(share_expander(random_state(layout)), table_for("detectron2"), expected)
        assert len(state) == len(expected) == 1033
        assert sorted(dropped) == sorted(k for k in layout if "freq_weight" in k or "amodal_expander" in k)
        assert len(dropped) == (15 if expander else 3)


def test_expander_stages_must_be_one_shared_module():
    """The expander is saved once per stage; a file whose stages differ is not the released model."""
    state = share_expander(random_state(gtr_layout(expander=True)))
    state["roi_heads.amodal_expander.2.expand_modal_box.layers.1.bias"] = torch.ones(4)
    expected = {k: v.shape for k, v in empty_model(SPEC).state_dict().items()}
    with pytest.raises(ConversionError, match="(?s)shared tensors saved with different values.*amodal_expander.2"):
        convert_state_dict(state, table_for("detectron2"), expected)


class CosineAssociation(nn.Module):
    """Association logits ``1000 * cos(query, window)``: a stand-in for the trained transformer, so that the same
    object in two frames (equal re-ID features) is certain to match."""

    def forward(self, features: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        return 1000 * nn.functional.normalize(query, dim=1) @ nn.functional.normalize(features, dim=1).T


@pytest.fixture(scope="module")
def model():
    return gtr_model(seed=0)


@pytest.fixture
def cosine():
    model = gtr_model(seed=0)
    model.transformer = CosineAssociation()
    return model


def _check_tracks(dets: list) -> None:
    for det in dets:
        assert det.track_ids.dtype == torch.int64 and len(det.track_ids) == len(det)
        assert len(set(det.track_ids.tolist())) == len(det), "a (frame, track id) pair repeats"
        assert torch.equal(det.track_ids // 10000, det.labels), "one class per output track: track + 10000 * class"


@pytest.mark.slow
def test_tracks_persist_on_a_still_video_and_paper_classifies_whole_tracks(cosine):
    """On a still video the detections continue their tracks: no track starts after the first frame.
    The paper protocol keeps only tracks of at least 5 detections and gives every box of an output track the
    same score (its track's mean over the whole video); streaming reports from the first frame on."""
    frames = [photo("coffee", (120, 160))] * 6
    streaming = cosine.predict(frames)
    paper = cosine.predict(frames, protocol="paper", batch_size=4)
    _check_tracks(streaming)
    _check_tracks(paper)
    first = set((streaming[0].track_ids % 10000).tolist())
    assert min(first) >= 1 and max(first) <= cosine.num_proposals
    assert all(set((d.track_ids % 10000).tolist()) <= set(range(1, cosine.num_proposals + 1)) for d in streaming)
    frames_of: dict[int, set[int]] = {}
    score_of: dict[int, set[float]] = {}
    for index, det in enumerate(paper):
        for track, score in zip(det.track_ids.tolist(), det.scores.tolist()):
            frames_of.setdefault(track % 10000, set()).add(index)
            score_of.setdefault(track, set()).add(score)
    assert frames_of and all(len(f) >= 5 for f in frames_of.values())
    assert all(len(scores) == 1 for scores in score_of.values())
    records = paper[2].to_json(video_id=3)
    assert {r["video_id"] for r in records} == {3}
    assert [r["track_id"] for r in records] == (paper[2].track_ids + 3 * 10**8).tolist()


@pytest.mark.slow
def test_random_weights_track_nothing_for_long_under_paper(model):
    """With untrained weights the association matches nothing, so every track is one detection long: the paper
    protocol drops them all (fewer than 5 detections), streaming reports them with new ids in every frame."""
    frames = panning_clip(n=3, size=(120, 160))
    streaming = model.predict(frames)
    assert all(len(d) for d in streaming)
    _check_tracks(streaming)
    ids = [set((d.track_ids % 10000).tolist()) for d in streaming]
    assert not ids[0] & ids[1] and not ids[1] & ids[2]
    assert all(len(d) == 0 for d in model.predict(frames, protocol="paper"))


@pytest.mark.slow
def test_session_equals_predict(model):
    frames = panning_clip(n=3, size=(120, 160))
    session = model.session()
    live = [session.update(frame)[0] for frame in frames]
    for a, b in zip(model.predict(frames), live, strict=True):
        assert torch.equal(a.track_ids, b.track_ids) and torch.equal(a.scores, b.scores)


@pytest.fixture
def served(fake_hub, tmp_path, monkeypatch):
    return serve_amodal_release(fake_hub, monkeypatch, tmp_path, GTR, seed=2)


@pytest.mark.slow
def test_load_by_name_and_track_a_video_file_from_the_command_line(served, tmp_path, capsys):
    model = vfe_hub.load(GTR, device="cpu")
    assert model.provenance()["revision"] == served[:7]
    assert isinstance(model, vfe_hub.VideoDetector) and len(model.class_names) == 1203
    video = write_video(tmp_path / "clip.mp4", panning_clip(n=3, size=(120, 160)), fps=5)
    out, drawn = tmp_path / "tracks.json", tmp_path / "drawn.mp4"
    assert cli.main(["track", GTR, str(video), "-o", str(out), "--save-video", str(drawn), "--video-id", "7",
                     "--device", "cpu"]) == 0
    records = json.loads(out.read_text())
    assert records and {r["video_id"] for r in records} == {7} and {r["image_id"] for r in records} == {1, 2, 3}
    assert all(r["track_id"] // 10**8 == 7 and 1 <= r["category_id"] <= 1203 for r in records)
    pairs = [(r["image_id"], r["track_id"]) for r in records]
    assert len(set(pairs)) == len(pairs)
    with av.open(str(drawn)) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 3 and decoded[0].shape == (120, 160, 3)
    assert np.abs(decoded[0].astype(int) - panning_clip(n=1, size=(120, 160))[0]).mean() > 1, "tracks are drawn"
    assert "tracks" in capsys.readouterr().err
    # --fps 2 on a 5 frames/s video: every round(5 / 2) = 2nd frame; image ids stay the frame numbers
    assert cli.main(["track", GTR, str(video), "-o", str(out), "--fps", "2", "--device", "cpu"]) == 0
    assert {r["image_id"] for r in json.loads(out.read_text())} == {1, 3}


@pytest.mark.slow
def test_track_draws_frames_of_other_sizes_and_writes_the_tracks_whatever_happens_to_the_drawing(
        served, tmp_path, monkeypatch, capsys):
    """A folder of frames of two sizes, at 4 frames/s run at 2: the drawn video keeps the first frame's size (the
    others letterboxed); when the drawing fails the tracks are still written, and the error says so."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(panning_clip(n=4, size=(60, 80))):
        write_image(folder / f"{i:04d}.png", image if i < 2 else np.ascontiguousarray(image.transpose(1, 0, 2)))
    out, drawn = tmp_path / "tracks.json", tmp_path / "drawn.mp4"
    args = ["track", GTR, str(folder), "-o", str(out), "--fps", "2", "--source-fps", "4", "--device", "cpu"]
    assert cli.main([*args, "--save-video", str(drawn)]) == 0
    assert {r["image_id"] for r in json.loads(out.read_text())} == {1, 3}
    with av.open(str(drawn)) as container:
        assert float(container.streams.video[0].average_rate) == 2
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert [f.shape for f in decoded] == [(60, 80, 3)] * 2
    assert decoded[1][:, :10].mean() < 8, "the portrait frame is letterboxed: black bars left and right"

    out.unlink()
    plot = vfe_hub.Detections.plot

    def fails_on_the_second_frame(self, *a, **k):
        if self.frame.index > 0:
            raise OSError("No space left on device")
        return plot(self, *a, **k)

    monkeypatch.setattr(vfe_hub.Detections, "plot", fails_on_the_second_frame)
    assert cli.main([*args, "--save-video", str(tmp_path / "failed.mp4")]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"-> {out}; the drawn video {tmp_path / 'failed.mp4'} was not written: No space left" in line
    assert {r["image_id"] for r in json.loads(out.read_text())} == {1, 3}
    assert not [p for p in tmp_path.iterdir() if "failed" in p.name], "no video, not even a partial one"


def test_track_fps_on_a_folder_needs_its_frame_rate(tmp_path, capsys):
    """A folder of frames has no frame rate: --fps alone is refused before the model is loaded."""
    for i, image in enumerate(panning_clip(n=2, size=(60, 80))):
        write_image(tmp_path / f"{i:04d}.png", image)
    missing = str(tmp_path / "no_such_weights.safetensors")
    assert cli.main(["track", GTR, str(tmp_path), "-o", str(tmp_path / "t.json"), "--fps", "2", "--weights",
                     missing]) == 1
    err = capsys.readouterr().err
    assert "--source-fps" in err and "no_such_weights" not in err and not (tmp_path / "t.json").exists()


def test_track_refuses_a_detector(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", panning_clip(n=2, size=(120, 160)))
    assert cli.main(["track", "mamba_r101_dc5_vid", str(video), "-o", str(tmp_path / "t.json")]) == 1
    assert "does not track" in capsys.readouterr().err and not (tmp_path / "t.json").exists()


def test_unknown_protocol_names_the_choices(model):
    with pytest.raises(VfeHubError, match="'streaming', 'paper'"):
        model.predict(photo(), protocol="offline")
