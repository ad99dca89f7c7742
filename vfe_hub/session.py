"""A video model's live state for one video: :class:`Session`.

A :class:`~vfe_hub.VideoDetector` keeps nothing about the video it runs on; everything it remembers (memory
banks, prompts, track windows) lives in a :class:`VideoState` that a session owns. Several sessions of one model
therefore run side by side without sharing anything (two cameras), and ``predict`` on a video is exactly one
session fed the video's frames.

    session = model.session()
    for frame in camera:                      # one frame (or a list of frames) at a time
        [det] = session.update(frame)
    session.reset()                           # the next frame starts a new video
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import engine
from .errors import VfeHubError
from .io import Frame, open_frames
from .progress import progress_bar
from .structures import Detections

if TYPE_CHECKING:
    from .models.base import VideoDetector

#: the sequence name of the frames a public session is fed
SESSION = "<session>"


@dataclass
class VideoState:
    """What a video model remembers of the video so far; model families extend it with their own fields.

    ``protocol``: ``"streaming"`` or ``"paper"`` (see :class:`~vfe_hub.VideoDetector`); ``references``: the paper
    protocol's reference frames, taken (and forgotten) by the first frame; ``seen``: frames processed so far
    (each model counts its own frames in ``forward``).
    """

    protocol: str = "streaming"
    references: list[Frame] | None = None
    seen: int = 0

    def take_references(self) -> list[Frame] | None:
        """The reference frames, once: later calls return ``None``."""
        references, self.references = self.references, None
        return references


class Session:
    """One video's state for ``model``: :meth:`update` feeds frames in order, :meth:`reset` starts a new video.

    Results of a session are the model's streaming results: each frame is answered from itself and the frames
    before it. Frames are numbered over the session (``frame.index`` 0, 1, ... and ``frame.image_id`` 1, 2, ...
    across :meth:`update` calls, ``frame.sequence`` ``"<session>"``).
    """

    def __init__(self, model: VideoDetector, *, protocol: str = "streaming",
                 references: list[Frame] | None = None) -> None:
        self.model = model
        self._protocol = protocol
        self._references = references
        self.reset()

    def reset(self) -> None:
        """Forget the video: the next frame starts a new one."""
        self.state = self.model.new_state(self._protocol, self._references)
        self._count = 0

    def update(self, frames: Any, *, batch_size: int = 1, progress: bool | None = False) -> list[Detections]:
        """Run the next frame(s) of the video: anything :func:`vfe_hub.io.open_frames` reads (an ``(H, W, 3)``
        uint8 array, a PIL image, an image path, a list of them, a video file). Returns one
        :class:`~vfe_hub.Detections` per frame, in order; the state advances frame by frame whatever
        ``batch_size``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise VfeHubError(f"batch_size must be a positive integer (frames run together), got {batch_size!r}")
        self.model.eval()
        with progress_bar(unit="frame", desc=self.model.spec.name, progress=progress) as bar:
            return list(self.run(self._numbered(open_frames(frames)), batch_size, bar))

    def run(self, frames: Iterable[Frame], batch_size: int, bar: Any) -> Iterator[Detections]:
        """The results of ``frames`` (:class:`vfe_hub.io.Frame`, the next of this video) that are ready as each
        frame is processed (all of them, except under a protocol that answers at the video's end: :meth:`finish`)."""
        forward = lambda batch: self.model(batch, self.state)  # noqa: E731 (reads the state current at each call)
        for det in engine.run(self.model, frames, batch_size, bar, forward=forward):
            if det is not None:
                yield det

    def finish(self) -> list[Detections]:
        """The results the model held back until the end of the video (a tracker's paper protocol), in frame order."""
        with engine.arithmetic(self.model):
            return self.model.finish(self.state)

    def _numbered(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        for frame in frames:
            frame.sequence, frame.index, frame.image_id = SESSION, self._count, self._count + 1
            self._count += 1
            yield frame
