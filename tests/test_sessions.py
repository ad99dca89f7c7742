"""Sessions: a video model's state lives in a session; predict on a video is one session per video."""
from __future__ import annotations

import pytest
import torch

from media import panning_clip, photo, write_video
from small_models import StandIn, video_model
from vfe_hub.errors import VfeHubError

@pytest.fixture(scope="module", params=["mamba_r101_dc5_vid", "stpn_swint_vid"])
def model(request):
    return video_model(request.param, seed=0)


def _same(a, b) -> bool:
    return torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)


@pytest.mark.slow
def test_a_session_fed_frame_by_frame_equals_predict(model):
    """The state is kept across update calls: one frame per call (a live camera) gives, bit for bit, what
    ``predict`` gives on the whole clip (streaming protocol); calls of several frames batch them as predict does."""
    frames = panning_clip(n=5, size=(120, 160))
    whole = model.predict(frames)
    session = model.session()
    live = [session.update(frame)[0] for frame in frames]
    assert all(_same(a, b) for a, b in zip(whole, live, strict=True))
    assert [d.frame.index for d in live] == list(range(5)) and [d.frame.image_id for d in live] == [1, 2, 3, 4, 5]
    assert {d.frame.sequence for d in live} == {"<session>"}
    grouped = model.session()
    chunks = grouped.update(frames[:2], batch_size=2) + grouped.update(frames[2:], batch_size=2)
    assert all(_same(a, b) for a, b in zip(model.predict(frames, batch_size=2), chunks, strict=True))
    assert not _same(live[3], model.predict(frames[3])[0]), "frame 3 alone has no past: the state matters"


@pytest.mark.slow
def test_two_sessions_are_independent_and_reset_starts_a_new_video(model):
    clip_a = panning_clip(n=3, size=(120, 160))
    clip_b = [photo(name, (120, 160)) for name in ("coffee", "chelsea", "astronaut")]
    alone_a, alone_b = model.predict(clip_a), model.predict(clip_b)
    a, b = model.session(), model.session()
    interleaved_a, interleaved_b = [], []
    for frame_a, frame_b in zip(clip_a, clip_b):  # two cameras, one model
        interleaved_a += a.update(frame_a)
        interleaved_b += b.update(frame_b)
    assert all(_same(x, y) for x, y in zip(alone_a, interleaved_a, strict=True))
    assert all(_same(x, y) for x, y in zip(alone_b, interleaved_b, strict=True))
    a.reset()
    again = a.update(clip_b)
    assert all(_same(x, y) for x, y in zip(alone_b, again, strict=True))
    assert again[0].frame.index == 0


@pytest.mark.slow
def test_session_rejects_bad_input(model, tmp_path):
    session = model.session()
    with pytest.raises(VfeHubError, match="batch_size must be a positive integer"):
        session.update(photo(), batch_size=0)
    with pytest.raises(VfeHubError, match="missing.png"):
        session.update(str(tmp_path / "missing.png"))


class Recorder(StandIn):
    def answer(self, frame):
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)


@pytest.mark.parametrize("protocol", ["streaming", "paper"])
def test_frame_stride_runs_every_kth_frame_of_each_video(tmp_path, protocol):
    video = write_video(tmp_path / "clip.mp4", panning_clip(n=7, size=(48, 64)))
    model = Recorder()
    model.paper_references = 2
    results = model.predict(video, frame_stride=3, protocol=protocol)
    assert [d.frame.index for d in results] == [0, 3, 6] and [d.frame.image_id for d in results] == [1, 4, 7]
    ran = [i for _, i in model.seen]  # the paper protocol also runs its references first
    assert set(ran) == {0, 3, 6} and (protocol == "paper" or ran == [0, 3, 6])
    assert len(model._frames([video], {"frame_stride": 3, "protocol": protocol})) == 3
    with pytest.raises(VfeHubError, match="frame_stride must be a positive integer"):
        model.predict(video, frame_stride=0)


def test_sessions_are_streaming_and_say_so():
    model = StandIn()
    with pytest.raises(VfeHubError, match=r"sessions are streaming.*predict\(<video>, protocol='paper'\)"):
        model.session(protocol="paper")
    with pytest.raises(VfeHubError, match="did you mean 'paper'"):
        model.session(protocol="papr")
    assert model.session(protocol="streaming").state.protocol == "streaming"
