"""Writing frames (e.g. detections drawn with :meth:`vfe_hub.Detections.plot`) to a video file with PyAV."""
from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np

from .errors import InputError

#: the codec of each container suffix; any other suffix gets H.264
CODECS = {".avi": "mpeg4", ".webm": "libvpx-vp9"}


def frame_rate(path: str | os.PathLike[str], default: float = 30.0) -> Fraction:
    """The average frame rate of the first video stream of ``path``, or ``default`` where the container has none."""
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate if container.streams.video else None
    return Fraction(rate) if rate else Fraction(default).limit_denominator(1001)


class VideoWriter:
    """Encode RGB frames (``(H, W, 3)`` uint8 arrays or PIL images, all of one size) into ``path`` at ``fps``.

    H.264 (yuv420p; an odd width or height is padded by one black pixel) unless the suffix says otherwise
    (:data:`CODECS`). Frames go to a temporary file beside ``path``, renamed when the ``with`` block ends without
    an exception: a crash never leaves a truncated video under the final name.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float | Fraction = 30) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, self._tmp = tempfile.mkstemp(suffix=self.path.suffix, prefix=f".{self.path.name}.",
                                             dir=self.path.parent)
        os.close(handle)
        try:
            self._container = av.open(self._tmp, mode="w")
        except (av.error.FFmpegError, ValueError) as error:
            os.unlink(self._tmp)
            raise InputError(f"cannot write a video to {self.path}: {error}; use a .mp4, .mkv, .avi or .webm "
                             "name") from error
        self._stream: Any = None

    def write(self, image: Any) -> None:
        """Append one frame."""
        array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
        if self._stream is None:
            h, w = array.shape[:2]
            self._stream = self._container.add_stream(CODECS.get(self.path.suffix.lower(), "libx264"), rate=self.fps)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
        height, width = self._stream.height, self._stream.width
        if array.shape[:2] != (height, width):
            if array.shape[0] > height or array.shape[1] > width:
                raise InputError(f"frame {self.frames} of {self.path} is {array.shape[1]}x{array.shape[0]}, larger "
                                 f"than the first frame's {width}x{height}: every frame of a video has one size")
            array = np.pad(array, ((0, height - array.shape[0]), (0, width - array.shape[1]), (0, 0)))
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Flush the encoder and move the file into place (``keep``), or remove it."""
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
        if keep and self.frames:
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close(keep=kind is None)
