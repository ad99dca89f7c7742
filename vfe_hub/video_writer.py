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
from PIL import Image

from .errors import InputError
from .hub import open_permissions

#: the codec of each container suffix; any other suffix gets H.264
CODECS = {".avi": "mpeg4", ".webm": "libvpx-vp9"}


def frame_rate(path: str | os.PathLike[str], default: float = 30.0) -> Fraction:
    """The average frame rate of the first video stream of ``path``, or ``default`` where the container has none."""
    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate if container.streams.video else None
    return Fraction(rate) if rate else Fraction(default).limit_denominator(1001)


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` ``(h, w, 3)`` scaled to fit ``size = (height, width)`` with its aspect ratio kept (bilinear) and
    centred on a black canvas of that size."""
    height, width = size
    h, w = image.shape[:2]
    scale = min(height / h, width / w)
    fit_w, fit_h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - fit_h) // 2, (width - fit_w) // 2
    canvas[top:top + fit_h, left:left + fit_w] = np.asarray(
        Image.fromarray(image).resize((fit_w, fit_h), Image.Resampling.BILINEAR))
    return canvas


class VideoWriter:
    """Encode RGB frames (``(H, W, 3)`` uint8 arrays or PIL images) into ``path`` at ``fps``.

    The first frame sets the video's size; a frame of another size is letterboxed onto it (scaled to fit with its
    aspect ratio kept, centred on black). H.264 (yuv420p; an odd width or height is padded by one black pixel)
    unless the suffix says otherwise (:data:`CODECS`). Frames go to a temporary file beside ``path``, renamed when
    the ``with`` block ends without an exception (with the permissions ``open()`` would give it): a crash never
    leaves a truncated video under the final name.
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
        self._size: tuple[int, int] | None = None  # (height, width) of the first frame

    def write(self, image: Any) -> None:
        """Append one frame."""
        array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image, dtype=np.uint8)
        if self._stream is None:
            h, w = self._size = array.shape[:2]
            self._stream = self._container.add_stream(CODECS.get(self.path.suffix.lower(), "libx264"), rate=self.fps)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
        if array.shape[:2] != self._size:
            array = letterbox(array, self._size)
        h, w = self._size
        array = np.pad(array, ((0, self._stream.height - h), (0, self._stream.width - w), (0, 0)))
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
            open_permissions(self._tmp)
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close(keep=kind is None)
