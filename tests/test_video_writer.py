"""Drawn videos: every frame lands on the first frame's canvas (letterboxed when its size differs), and the file gets
the permissions of every other output."""
from __future__ import annotations

import os

import av
import numpy as np
import pytest

from vfe_hub.video_writer import VideoWriter, letterbox


def decode(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_letterbox_scales_to_fit_and_centres():
    tall = letterbox(np.full((80, 40, 3), 100, np.uint8), (60, 80))  # scale 0.75: 30 x 60, columns 25-54
    assert tall.shape == (60, 80, 3) and (tall[:, 25:55] == 100).all()
    assert not tall[:, :25].any() and not tall[:, 55:].any()
    wide = letterbox(np.full((30, 160, 3), 50, np.uint8), (60, 80))  # scale 0.5: 80 x 15, rows 22-36
    assert (wide[22:37] == 50).all() and not wide[:22].any() and not wide[37:].any()
    small = letterbox(np.full((6, 8, 3), 7, np.uint8), (60, 80))  # scaled up
    assert (small == 7).all()


def test_frames_of_another_size_are_letterboxed_onto_the_first_frame(tmp_path):
    first, tall, wide = (np.full((60, 80, 3), 200, np.uint8), np.full((80, 40, 3), 100, np.uint8),
                         np.full((30, 160, 3), 50, np.uint8))
    with VideoWriter(tmp_path / "drawn.mp4", fps=5) as writer:
        for frame in (first, tall, wide):
            writer.write(frame)
    decoded = decode(tmp_path / "drawn.mp4")
    assert [f.shape for f in decoded] == [(60, 80, 3)] * 3
    close = lambda a, value: abs(a.astype(float).mean() - value) < 8  # noqa: E731 (H.264 at its default quality)
    assert close(decoded[0], 200)
    assert close(decoded[1][:, 30:50], 100) and close(decoded[1][:, :20], 0) and close(decoded[1][:, 60:], 0)
    assert close(decoded[2][25:35], 50) and close(decoded[2][:18], 0) and close(decoded[2][42:], 0)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_the_video_gets_the_permissions_of_other_outputs(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with VideoWriter(tmp_path / "drawn.mp4", fps=5) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
    finally:
        os.umask(previous)
    assert (tmp_path / "drawn.mp4").stat().st_mode & 0o777 == 0o666 & ~umask
    assert os.listdir(tmp_path) == ["drawn.mp4"]
