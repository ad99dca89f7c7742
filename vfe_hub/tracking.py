"""GTR's online global tracker (``GTRRCNN.sliding_inference``) and the classification of its tracks.

Tracking needs no image and no network: per frame the tracker gets each detection's re-ID feature and class
scores, and an ``associate`` callable (GTR's :class:`vfe_hub.layers.association.TrackingTransformer`) scores the
frame's detections against every detection of a sliding window. Memory is bounded: features and class scores
are kept for the window only, per-track class-score sums (C numbers per track) for the whole video.

Association, per frame ``f`` (frame 0 gives its detections ids ``1..n0``; the id counter then stands at
``n0 + 1``, which is never handed out, as in the original; later new ids count on from it):

1. The window is frames ``max(0, f - window + 1) .. f``; ``associate(window_features (N, D), query (n_f, D))``
   gives logits ``(n_f, N)``, the window's detections in frame order, frame ``f``'s last (the query rows are
   those last rows of ``window_features``). :func:`~vfe_hub.layers.association.per_frame_softmax` turns the
   columns of the earlier frames into per-frame probabilities.
2. Class gating: a probability is zeroed where the dot product of the two detections' class-score vectors
   (background column already dropped by the caller) is below ``class_gate``.
3. Trajectory score of detection ``i`` and track ``j`` = the sum of ``i``'s probabilities over ``j``'s
   detections in the window (tracks without a detection in the window cannot be continued), tracks by
   increasing id.
4. Hungarian matching on the negated scores (``scipy.optimize.linear_sum_assignment``); a pair is accepted iff
   its score > ``accept`` x (the number of ``j``'s detections in the window), i.e. a mean probability above
   ``accept``; the other detections get new ids in detection order. Ids are never revised.

A frame without detections, or a window without earlier detections, skips the network (nothing to match; the
original's result is the same).

Classification (GTR's ``DELAY_CLS``): a detection's class scores become the mean class-score vector of its
track; then per frame every (detection, class) pair with a score > ``score_thr`` is a candidate, class-wise NMS
at ``nms_iou`` keeps the best ``max_per_frame`` (:func:`vfe_hub.layers.nms.select_per_class`), and each kept
pair's output track id is ``track_id + class * class_offset`` (a track yields one output track per class that
passes; GTR's export adds ``video_id * 10**8``, which the caller applies). Two protocols:

- ``paper`` (GTR's evaluation): after the video (:meth:`GlobalTracker.finish`), tracks with fewer than
  ``min_track_len`` detections in the whole video are dropped and each detection takes its track's mean over
  the whole video, so all scores of an output track are equal. Memory: the boxes and track ids of every frame.
- ``streaming``: :meth:`GlobalTracker.step` returns each frame's results at once, each detection taking its
  track's mean over the frames so far (this one included); short tracks are kept, since a track's final length
  is unknown while it runs. Scores along an output track can therefore change, a track's early frames may
  miss classes its later mean passes (and the reverse), and tracks the paper protocol drops appear.

Numerics: class sums are float64, so a track mean can differ from the original's float32 matrix product in the
last bit (it only matters for a score within that of ``score_thr``). Class-wise NMS is exact, equal scores
ordered by (detection, class); the original's ``batched_nms`` (torchvision's) shifts boxes by a per-class
offset when the candidates are few (a version- and device-dependent limit of a few thousand boxes), which can
decide an IoU within float rounding of ``nms_iou`` differently, and orders equal scores by an unstable sort.
Boxes are not clipped here: pass them as the original clips them (GTR clips to the image before this NMS unless
``NOT_CLAMP_BOX``); dropping empty boxes after the rescale to the input frame is also the caller's.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .errors import VfeHubError
from .layers.association import per_frame_softmax
from .layers.nms import select_per_class
from .layers.precision import float32

#: ``paper``: classification after the whole video (short tracks dropped); ``streaming``: each frame at once
PROTOCOLS = ("paper", "streaming")


@dataclass(frozen=True)
class TrackerConfig:
    """GTR's TAO test settings (``TEST_LEN``, ``OVERLAP_THRESH``, ``MIN_TRACK_LEN``, ``SCORE_THRESH_TEST``,
    ``NMS_THRESH_TEST``, ``DETECTIONS_PER_IMAGE``); the module docstring says where each one acts."""

    window: int = 16
    class_gate: float = 0.01
    accept: float = 0.1
    min_track_len: int = 5
    score_thr: float = 0.05
    nms_iou: float = 0.7
    max_per_frame: int = 300
    class_offset: int = 10000


@dataclass
class TrackedFrame:
    """One frame's classified tracks: ``boxes (K, 4)`` as given to the tracker, ``scores (K,)``, ``labels (K,)``
    int64 class indices (no background), ``track_ids (K,)`` int64 ``track_id + label * class_offset``; by
    decreasing score. ``rows (K,)``: the position of each in the frame's detections as given to the tracker (to
    carry anything else the caller has per detection)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    track_ids: torch.Tensor
    rows: torch.Tensor


@dataclass
class _Frame:
    features: torch.Tensor
    cls_scores: torch.Tensor
    track_ids: torch.Tensor


class GlobalTracker:
    """GTR's tracker for one video at a time (see the module docstring); :meth:`reset` starts the next video.

    ``associate(window_features (N, D), query_features (M, D)) -> logits (M, N)`` (the tracker applies the
    per-frame softmax). :meth:`step` tracks and classifies a frame; :meth:`update` only tracks.
    """

    def __init__(self, associate: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 config: TrackerConfig = TrackerConfig(), protocol: str = "paper") -> None:
        if protocol not in PROTOCOLS:
            raise VfeHubError(f"protocol={protocol!r} is not a tracking protocol; use 'paper' or 'streaming'.")
        if config.window < 1:
            raise VfeHubError(f"TrackerConfig(window={config.window}): the window must hold at least 1 frame.")
        self.associate = associate
        self.config = config
        self.protocol = protocol
        self.reset()

    def reset(self) -> None:
        """Forget the video: the next frame is a first frame."""
        self._window: deque[_Frame] = deque(maxlen=self.config.window - 1)  # the earlier frames of the window
        self._last_id: int | None = None
        self._class_sums: torch.Tensor | None = None  # (rows > largest id, C) float64, row = track id
        self._lengths: torch.Tensor | None = None  # (rows,) int64 detections per track
        self._history: list[tuple[torch.Tensor, torch.Tensor]] = []  # paper: (boxes, track ids) per frame

    @torch.no_grad()
    def update(self, features: torch.Tensor, cls_scores: torch.Tensor) -> torch.Tensor:
        """Track ids ``(N,)`` int64 (on the CPU) of the frame's detections, from their re-ID ``features (N, D)``
        and class scores ``cls_scores (N, C)`` (background column dropped)."""
        if len(features) != len(cls_scores):
            raise VfeHubError(f"GlobalTracker.update got {len(features)} feature rows but {len(cls_scores)} rows "
                              "of class scores; pass one row of each per detection.")
        cls_scores = cls_scores.float()
        if self._last_id is None:
            ids = torch.arange(1, len(features) + 1)
            self._last_id = len(features) + 1
        else:
            ids = self._match(features, cls_scores)
            new = ids < 0
            ids[new] = torch.arange(self._last_id + 1, self._last_id + 1 + int(new.sum()))
            self._last_id += int(new.sum())
        self._window.append(_Frame(features, cls_scores, ids))
        return ids

    @float32("track association")
    def _match(self, features: torch.Tensor, cls_scores: torch.Tensor) -> torch.Tensor:
        """Existing track ids of the accepted matches, -1 elsewhere ``(N,)``; float32 throughout (the association
        network included) under autocast."""
        ids = torch.full((len(features),), -1, dtype=torch.long)
        past = list(self._window)
        past_ids = torch.cat([f.track_ids for f in past]) if past else ids[:0]
        if not len(features) or not len(past_ids):
            return ids
        logits = self.associate(torch.cat([f.features for f in past] + [features]), features)
        probs = per_frame_softmax(logits[:, :len(past_ids)], [len(f.track_ids) for f in past])
        similarity = cls_scores @ torch.cat([f.cls_scores for f in past]).T
        probs = probs.masked_fill(similarity < self.config.class_gate, 0.0)
        tracks, member_of = torch.unique(past_ids, return_inverse=True)
        members = F.one_hot(member_of, len(tracks)).float()  # (Np, M)
        score = (probs @ members.to(probs.device)).cpu()
        threshold = self.config.accept * members.sum(dim=0)
        for i, j in zip(*linear_sum_assignment(-score.numpy())):
            if score[i, j] > threshold[j]:
                ids[i] = tracks[j]
        return ids

    @torch.no_grad()
    def step(self, boxes: torch.Tensor, features: torch.Tensor, cls_scores: torch.Tensor) -> TrackedFrame | None:
        """Track a frame of detections (``boxes (N, 4)``, ``features (N, D)``, ``cls_scores (N, C)`` without the
        background column). ``streaming``: the frame's :class:`TrackedFrame`; ``paper``: None (see
        :meth:`finish`)."""
        if len(boxes) != len(features):
            raise VfeHubError(f"GlobalTracker.step got {len(boxes)} boxes but {len(features)} feature rows; pass "
                              "one of each per detection.")
        ids = self.update(features, cls_scores)
        self._add_class_scores(ids, cls_scores)
        if self.protocol == "paper":
            self._history.append((boxes, ids))
            return None
        return self._classify(boxes, ids, self._class_sums, self._lengths)

    def finish(self) -> Iterator[TrackedFrame]:
        """``paper``: the video's frames, in order, classified by whole-video track means, tracks shorter than
        ``min_track_len`` dropped; ``streaming``: nothing more. The tracker is reset for the next video."""
        history, sums, lengths = self._history, self._class_sums, self._lengths
        self.reset()
        return self._paper_frames(history, sums, lengths)

    def _paper_frames(self, history: list[tuple[torch.Tensor, torch.Tensor]], sums: torch.Tensor | None,
                      lengths: torch.Tensor | None) -> Iterator[TrackedFrame]:
        if sums is None:
            return
        long_enough = (lengths >= self.config.min_track_len).cpu()
        for boxes, ids in history:
            keep = long_enough[ids].to(boxes.device)
            tracked = self._classify(boxes[keep], ids[keep.cpu()], sums, lengths)
            tracked.rows = keep.nonzero().squeeze(1)[tracked.rows]
            yield tracked

    def _add_class_scores(self, ids: torch.Tensor, cls_scores: torch.Tensor) -> None:
        if self._class_sums is None:
            self._class_sums = cls_scores.new_zeros((0, cls_scores.shape[1]), dtype=torch.float64)
            self._lengths = torch.zeros(0, dtype=torch.long, device=cls_scores.device)
        rows = len(self._class_sums)
        if rows <= self._last_id:
            extra = max(self._last_id + 1, 2 * rows) - rows
            self._class_sums = torch.cat([self._class_sums, self._class_sums.new_zeros(extra, cls_scores.shape[1])])
            self._lengths = torch.cat([self._lengths, self._lengths.new_zeros(extra)])
        index = ids.to(cls_scores.device)
        self._class_sums.index_add_(0, index, cls_scores.double())
        self._lengths.index_add_(0, index, torch.ones_like(index))

    def _classify(self, boxes: torch.Tensor, ids: torch.Tensor, sums: torch.Tensor,
                  lengths: torch.Tensor) -> TrackedFrame:
        """The frame's detections with their tracks' mean class scores, thresholded, NMSed, with per-class ids."""
        index = ids.to(sums.device)
        means = (sums[index] / lengths[index, None]).float().to(boxes.device)
        cfg = self.config
        rows, labels = select_per_class(boxes, means, cfg.score_thr, cfg.nms_iou, cfg.max_per_frame)
        track_ids = ids.to(boxes.device)[rows] + labels * cfg.class_offset
        return TrackedFrame(boxes[rows], means[rows, labels], labels, track_ids, rows)
