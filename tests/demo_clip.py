"""The demo clip shipped with vfe_hub, ``vfe_hub/assets/demo_clip.mp4``: a slow pan and zoom over scikit-image's
photograph of Chelsea the cat (CC0), 16 frames of 240 x 320 at 8 frames/s, H.264 (libx264, yuv420p).

Regenerate it from the repository root with ``python tests/demo_clip.py``; provenance and licence:
``vfe_hub/assets/README.md``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage.transform import resize

from media import photo, write_video

FRAMES, SIZE, FPS = 16, (240, 320), 8
ASSET = Path(__file__).resolve().parents[1] / "vfe_hub" / "assets" / "demo_clip.mp4"


def demo_frames() -> list[np.ndarray]:
    """The clip's ``(240, 320, 3)`` uint8 RGB frames: a 3:4 window that shrinks to 3/4 of the photograph's height
    (a zoom of 4/3) while it moves from the left edge to the right edge."""
    image = photo("chelsea")
    height, width = image.shape[:2]
    frames = []
    for i in range(FRAMES):
        t = i / (FRAMES - 1)
        h = round(height * (1 - t / 4))
        w = round(h * SIZE[1] / SIZE[0])
        top, left = (height - h) // 2, round((width - w) * t)
        window = image[top:top + h, left:left + w]
        frames.append(np.round(resize(window, SIZE, anti_aliasing=True, preserve_range=True)).astype(np.uint8))
    return frames


if __name__ == "__main__":
    print(write_video(ASSET, demo_frames(), fps=FPS), f"{ASSET.stat().st_size} bytes")
