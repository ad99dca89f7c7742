"""Test media: real photographs from scikit-image's bundled sample data, and short videos made from them with PyAV.

Every image is ``(H, W, 3)`` uint8 RGB. Nothing is downloaded; files are written where the caller says (use
pytest's ``tmp_path``).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import skimage.data
from PIL import Image
from skimage.transform import resize

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")
"""Sample photographs bundled with scikit-image (``camera`` is grayscale, returned as 3 equal channels)."""

_CODECS = {".avi": "mpeg4", ".mpg": "mpeg2video", ".mpeg": "mpeg2video"}  # every other suffix: libx264


@functools.lru_cache(maxsize=None)
def _original(name: str) -> np.ndarray:
    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose one of {', '.join(PHOTOS)}")
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image.setflags(write=False)
    return image


def photo(name: str = "astronaut", size: tuple[int, int] | None = None) -> np.ndarray:
    """A sample photograph as a new ``(H, W, 3)`` uint8 RGB array; ``size=(h, w)`` centre-crops it to that
    aspect ratio and resizes it (anti-aliased), otherwise it keeps its original size."""
    image = _original(name)
    if size is None:
        return image.copy()
    h, w = size
    height, width = image.shape[:2]
    scale = min(height / h, width / w)
    ch, cw = round(h * scale), round(w * scale)
    top, left = (height - ch) // 2, (width - cw) // 2
    crop = image[top:top + ch, left:left + cw]
    return np.round(resize(crop, (h, w), anti_aliasing=True, preserve_range=True)).astype(np.uint8)


def panning_clip(n: int = 6, size: tuple[int, int] = (120, 160), name: str = "astronaut",
                 step: int = 4) -> list[np.ndarray]:
    """``n`` frames of ``size=(h, w)`` showing a photograph panned ``step`` pixels to the left per frame
    (the camera moves right): frame ``i`` is the window at column ``i * step`` of one wider image."""
    h, w = size
    wide = photo(name, (h, w + (n - 1) * step))
    return [np.ascontiguousarray(wide[:, i * step:i * step + w]) for i in range(n)]


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 RGB image; the format follows the suffix (PNG is lossless)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def write_video(path: str | os.PathLike[str], frames: Sequence[np.ndarray], fps: int = 10,
                codec: str | None = None, rotation: int = 0) -> Path:
    """Encode ``(H, W, 3)`` uint8 RGB frames (even H and W) as a yuv420p video; the container follows the suffix.

    The codec defaults to mpeg4 for ``.avi``, mpeg2video for ``.mpg``/``.mpeg`` and H.264 (libx264) otherwise.
    ``rotation`` stores a display matrix asking players to rotate the picture that many degrees
    counter-clockwise. An empty ``frames`` writes a container with a video stream and no frames (use ``.avi``:
    an mp4 without samples has no stream at all).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2] if len(frames) else (120, 160)
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {height} x {width}")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec or _CODECS.get(path.suffix.lower(), "libx264"), rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        container.start_encoding()
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path
