"""Temporal gap filling of amodal tracks with a Kalman filter (TAO-Amodal's "Temporal Amodal Expander with Kalman
Filter"): an offline post-process of a video's tracking results, not part of any network.

Each track gets a constant-velocity filter on ``(cx, cy, s, r, d, vx, vy, vs, vd)``: box centre, area
``s = w * h``, aspect ratio ``r = w / h``, the mean depth ``d`` inside the box, and velocities. The transition adds
``vx, vy`` to the centre and ``vd`` to the depth and keeps ``s`` and ``r`` (``vs`` is carried but never applied);
the first five components are measured. Noise: ``R = 0.01 I``, initial ``P = diag(10 x 5, 10^4 x 4)``,
``Q = diag(1 x 5, 0.01, 0.01, 10^-4, 0.01)``; the update is the Joseph form. Since ``F``, ``H``, ``P0``, ``Q`` and
``R`` are block-diagonal over ``(cx, vx)``, ``(cy, vy)``, ``(s)``, ``(r)``, ``(vs)``, ``(d, vd)``, the depth never
changes the predicted boxes.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable

import numpy as np

from .errors import DatasetError

#: the state transition: cx += vx, cy += vy, d += vd; every other component kept
F = np.eye(9)
F[0, 5] = F[1, 6] = F[4, 8] = 1.0
#: the measurement: (cx, cy, s, r, d)
H = np.eye(5, 9)
R = 0.01 * np.eye(5)
P0 = np.diag([10.0] * 5 + [1e4] * 4)
Q = np.diag([1.0] * 5 + [0.01, 0.01, 1e-4, 0.01])


class DepthBoxKalman:
    """One track's filter, started at the measurement ``z = (cx, cy, s, r, d)`` with zero velocities; float64."""

    def __init__(self, z: np.ndarray) -> None:
        self.x = np.concatenate([np.asarray(z, dtype=np.float64), np.zeros(4)])
        self.P = P0.copy()

    def predict(self) -> np.ndarray:
        """Advance one frame and return the state ``(9,)``; ``vs`` is reset to 0 first when ``vs + s <= 0``."""
        if self.x[7] + self.x[2] <= 0:
            self.x[7] = 0.0
        self.x = F @ self.x
        self.P = F @ self.P @ F.T + Q
        return self.x

    def update(self, z: np.ndarray) -> None:
        """Correct the state with the measurement ``z (5,)``."""
        gain = self.P @ H.T @ np.linalg.inv(H @ self.P @ H.T + R)
        self.x = self.x + gain @ (np.asarray(z, dtype=np.float64) - H @ self.x)
        keep = np.eye(9) - gain @ H
        self.P = keep @ self.P @ keep.T + gain @ R @ gain.T


def box_to_z(xyxy: tuple[float, float, float, float], depth: float) -> np.ndarray:
    """``(x1, y1, x2, y2)`` and a depth -> the measurement ``(cx, cy, w * h, w / h, depth)``."""
    x1, y1, x2, y2 = xyxy
    w, h = x2 - x1, y2 - y1
    return np.array([x1 + w / 2, y1 + h / 2, w * h, w / h, depth])


def state_to_box(x: np.ndarray) -> tuple[float, float, float, float]:
    """A state's box ``(x1, y1, x2, y2)``: ``w = sqrt(s * r)``, ``h = s / w``."""
    w = math.sqrt(x[2] * x[3])
    h = x[2] / w
    return x[0] - w / 2, x[1] - h / 2, x[0] + w / 2, x[1] + h / 2


def _pixels(xyxy: tuple[float, float, float, float], height: int, width: int) -> tuple[int, int, int, int] | None:
    """The box clipped to the frame and truncated to whole pixels ``(x1, y1, x2, y2)``, or None when nothing is
    left (the box is outside the frame, or narrower than the pixel grid after truncation)."""
    x1, y1, x2, y2 = xyxy
    x1, x2 = (int(min(max(v, 0), width)) for v in (x1, x2))
    y1, y2 = (int(min(max(v, 0), height)) for v in (y1, y2))
    return (x1, y1, x2, y2) if x1 < x2 and y1 < y2 else None


def kalman_fill(records: list[dict], images: list[dict],
                depth: Callable[[Hashable], np.ndarray] | None = None, window: int = 3,
                min_hits: int = 3) -> list[dict]:
    """The results of one video plus the boxes the Kalman filter predicts where a track is missing.

    ``records``: TAO-style results (``track_id``, ``image_id``, ``bbox`` ``[x, y, w, h]`` with ``w, h > 0``,
    ``score``, ``category_id``, optionally ``video_id``); ``images``: the video's images in frame order (``id``,
    ``height``, ``width``); ``depth(image_id)``: the frame's depth map ``(height, width)``, larger = farther.
    Returns ``records`` (unchanged, same order) followed by the new records. (The original sorts a video's image
    ids as its frame order, and re-writes every record of a track with the first record's score and category, a
    no-op on GTR's ``paper`` results, whose output tracks have one score and one category.)

    Per track, in frame order from its first detection to ``window`` frames after its last one (or the video's end):
    the filter starts at the first detection; a frame where the track is detected is an update (one "hit"; the first
    detection is not counted); a frame where it is missing, at most ``window`` frames after its last detection, with
    at least ``min_hits`` hits so far, is a prediction (further frames of a longer gap are skipped, with no
    prediction). A predicted box is emitted iff it covers at least one whole pixel of the frame after clipping
    and truncating to integers, and the mean depth measured inside that part is smaller than the predicted depth
    (something in front: the object is occluded). Emitted records take the ``score``, ``category_id`` (and
    ``video_id``) of the track's first record in ``records`` and the predicted box as ``bbox``.

    Measured depth is the mean of the depth map inside the clipped, truncated box, or -1 when that is empty, as the
    original measures it (a detection entirely out of frame is updated with depth -1). As in the original,
    consecutive detections are updates without a prediction in between: no process noise enters, so the state is
    about the mean of the detections since the first (not the last detection), and a track's velocities stay 0
    until its first gap.

    Without ``depth`` the occlusion gate is off: every predicted box that passes the window, hit and in-frame
    rules is emitted, also where the object is visible but was missed; the depth component is measured as 0, and
    the predicted boxes are the same as with depth maps (the depth block of the filter is independent of the box).
    """
    for image in images:
        if not {"id", "height", "width"} <= image.keys():
            raise DatasetError(f"image {image} lacks 'id', 'height' or 'width'; pass the video's entries of the "
                               "annotation file's 'images'")
    frame_of = {image["id"]: i for i, image in enumerate(images)}
    tracks: dict[Hashable, dict[int, tuple[float, float, float, float]]] = {}
    first: dict[Hashable, dict] = {}
    for record in records:
        if record["image_id"] not in frame_of:
            raise DatasetError(f"result {record} names image {record['image_id']!r}, which is not in the video's "
                               "images; pass the images of the video the results belong to")
        x, y, w, h = record["bbox"]
        if not (w > 0 and h > 0):
            raise DatasetError(f"result {record} has a box without area; drop boxes with w <= 0 or h <= 0 first")
        boxes = tracks.setdefault(record["track_id"], {})
        if frame_of[record["image_id"]] in boxes:
            raise DatasetError(f"track {record['track_id']!r} has two results on image {record['image_id']!r}; "
                               "give each output track (track id per class) at most one box per frame")
        boxes[frame_of[record["image_id"]]] = (x, y, x + w, y + h)
        first.setdefault(record["track_id"], record)

    maps: dict[Hashable, np.ndarray] = {}

    def depth_map(frame: int) -> np.ndarray:
        image = images[frame]
        if image["id"] not in maps:
            found = np.asarray(depth(image["id"]))
            if found.shape != (image["height"], image["width"]):
                raise DatasetError(f"depth map of image {image['id']!r} has shape {found.shape}, not the image's "
                                   f"(height, width) = ({image['height']}, {image['width']}); resize it to the frame")
            maps[image["id"]] = found
        return maps[image["id"]]

    def measure(xyxy: tuple[float, float, float, float], frame: int) -> tuple[bool, float]:
        """Whether the box covers a pixel of the frame, and the mean depth there (-1 if not; 0 without depth)."""
        pixels = _pixels(xyxy, images[frame]["height"], images[frame]["width"])
        if depth is None or pixels is None:
            return pixels is not None, 0.0 if depth is None else -1.0
        x1, y1, x2, y2 = pixels
        return True, float(depth_map(frame)[y1:y2, x1:x2].mean())

    added = []
    for track_id, boxes in tracks.items():
        start, end = min(boxes), min(max(boxes) + window, len(images) - 1)
        kalman = DepthBoxKalman(box_to_z(boxes[start], measure(boxes[start], start)[1]))
        hits, last = 0, start
        for frame in range(start + 1, end + 1):
            if frame in boxes:
                kalman.update(box_to_z(boxes[frame], measure(boxes[frame], frame)[1]))
                hits, last = hits + 1, frame
            elif frame - last <= window and hits >= min_hits:
                state = kalman.predict()
                x1, y1, x2, y2 = state_to_box(state)
                inside, measured = measure((x1, y1, x2, y2), frame)
                if inside and (depth is None or measured < state[4]):
                    source = first[track_id]
                    record = {"image_id": images[frame]["id"], "category_id": source["category_id"],
                              "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                              "score": source["score"], "track_id": track_id}
                    if "video_id" in source:
                        record["video_id"] = source["video_id"]
                    added.append(record)
    return list(records) + added
