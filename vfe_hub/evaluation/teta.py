"""TETA (Track Every Thing Accuracy) of TAO tracking results, computed exactly as the official implementation.

TETA (Li et al., "Tracking Every Thing in the Wild", ECCV 2022) splits tracking quality into localisation (LocA),
association (AssocA) and classification (ClsA) accuracy and averages the three. The reference is ``teta/`` of
SysCV/tet (commit ``a62a9c0``; its successor siyuanliii/TETA, ``b498aa8``, computes the same), run as its
``scripts/run_tao.py`` runs it: ``Evaluator`` + ``datasets.TAO`` + ``metrics.TETA(exhaustive=False)``.
:func:`evaluate` returns the numbers of the official summary (the class average over all videos, each field
averaged over its thresholds), as fractions and unrounded where the summary prints ``100 x`` to five digits; equal
to the official code to 1e-9 on generated cases (tests): the per-timestep assignments are the same calls to
scipy's ``linear_sum_assignment`` on bit-identical matrices, only sums over videos, classes and track pairs may add
in another order. The rules, each with the official code's quirk where it has one:

* **Timesteps** are, per video, the images with at least one ground-truth box, in ``frame_index`` order (ties: the
  image of the earlier annotation first). Results on any other image of the video, annotated frames whose ground
  truth is empty included, are dropped: they count nowhere, not even in their track's length.
* **Ground truth read**: the annotations' ``image_id``, ``track_id``, ``category_id`` and ``bbox``, the images'
  ``video_id`` and ``frame_index``, the categories' ``merged`` aliases (resolved first, in ground truth and
  results). Not read: ``area``, ``iscrowd``, the tracks' ``ignore`` and the videos' ``neg_category_ids`` and
  ``not_exhaustive_category_ids`` (``exhaustive=False``). Zero-area boxes count, with IoU 0.
* **Box IoU** (``_calculate_box_ious``), float64: corners ``x + w``, ``y + h``; the intersection over the areas of
  the corner boxes; 0 where either area or the union is at most machine epsilon (``eps``).
* **Results per image** (``_limit_dets_per_image``, with ``max_dets`` ``M``): an image with more than ``M``
  results keeps its ``M`` best scores, ties in input order, listed by descending score; otherwise its results keep
  the input order (the column order of the assignment). Scores serve nothing else. Then track ids found in several
  videos are renumbered per video (:func:`~.tao.renumber_shared_tracks`, as the official code does) and category
  aliases resolved. A track may change its category from box to box: classification is counted per box.
* **Classes** are the categories that have ground-truth boxes. Each class is evaluated in every video; its
  counts are added over the videos, its association scores averaged over them weighted by LocTP.
* **Global assignment**, per video and over all classes: a result track takes part if one of its boxes has IoU
  ``>= 0.5`` (no tolerance) with a ground-truth box of its timestep. Between these tracks and the ground-truth
  tracks, the alignment score ``A = M / (n_g + n_t - M)``, where ``M`` adds over the timesteps each IoU divided by
  (its column's sum + its row's sum - itself) (0 where that is at most ``eps``), and ``n_g``, ``n_t`` count the
  tracks' boxes. Each timestep is assigned by ``linear_sum_assignment(-A * IoU)`` (rows: ground truth in file
  order; columns: results in the order above; scipy's tie order); a pair with IoU ``>= 0.5 - eps`` is a match.
* **Per class** ``c`` and video: a timestep's *cluster* is the result boxes with IoU ``>= 0.5`` with a box of
  class ``c``, less those globally matched to a ground-truth box of another class (or of a category that is not
  a class). Result tracks with a box in a cluster take part with all their boxes (their ``n_t`` counts every
  timestep), and the alignment scores and the per-timestep assignment are computed again on class ``c``'s boxes
  and these tracks. At each threshold ``alpha`` of ``np.arange(0, 0.99, 0.05)`` (20 values, several a bit above
  their decimal: 0.15000000000000002), an assigned pair with IoU ``>= alpha - eps`` is a match, counted in LocTP;
  ground-truth boxes left without one in LocFN; cluster boxes left without one in LocFP. At alpha 0 every assigned
  pair matches, IoU 0 included. Association, per pair of ground-truth and result tracks with ``m`` matches:
  ``AssocA = sum m * m / max(1, n_g + n_t - m) / max(1, LocTP)``, ``AssocRe`` and ``AssocPr`` with ``n_g`` and
  ``n_t`` alone. Classification, at the 10 thresholds ``>= 0.5``: a match whose result box has category ``c`` is
  a ClsTP, otherwise a ClsFN and a ClsFP of the box's category if that is a class (a category without ground
  truth, or not in the file, is counted nowhere else).
* **Summary** (``_compute_final_fields``): ``LocA = TP / max(1, TP + FN + FP)``, ``LocRe = TP / max(1, TP + FN)``,
  ``LocPr = TP / max(1, TP + FP)`` per threshold; ``ClsA``, ``ClsRe``, ``ClsPr`` the mean over their 10
  thresholds of the same ratios; ``TETA = (LocA + AssocA + ClsA) / 3``. Each field is averaged over the classes,
  then over its thresholds. Without any ground-truth box there is no class to average: every value is NaN, as
  in the official code.

Returned keys, fractions: ``TETA``, ``LocA``, ``AssocA``, ``ClsA``, ``LocRe``, ``LocPr``, ``AssocRe``, ``AssocPr``,
``ClsRe``, ``ClsPr``.

Track ids are renumbered internally, so memory does not depend on their size (the official code allocates, per
video and class, an array as long as the largest id). Results whose category is not in the ground truth are
evaluated as the official code evaluates them (wrong in every match), with one warning. Where the official code
fails or silently miscounts, :class:`~vfe_hub.errors.DatasetError` is raised instead, naming the input and the fix:
a result of an image that is not in the ground truth (it fails), a ``video_id`` that is not the image's (it drops
the result), a track id that is not an integer of 64 bits; in a track that takes part in the evaluation (a box in
a cluster), a negative id left after the renumbering (it reads ids as positions, so ``-1`` takes the place of
the largest id: the two tracks merge) or two boxes in one image (it fails); a missing field, a NaN score, a
non-finite box; ground truth that is not TAO (:mod:`.tao_data`), with an image of an unlisted video (it fails), a
non-finite box, a negative track id, or two videos or two classes of one name (it keys them by name, so one of the
two is evaluated in place of both). ``strict=True`` also refuses what the official code accepts: results of an
unknown category, and negative ids and two boxes of a track in an image in tracks that take no part.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import DatasetError
from .lvis import Results, category_positions, positions, result_list, top_per_image
from .lvis_data import Source
from .tao import read_results, renumber_shared_tracks
from .tao_data import TaoGroundTruth

log = logging.getLogger(__name__)

#: The localisation thresholds, built as the official code builds them (``TETA.array_labels``).
ALPHAS = np.arange(0.0, 0.99, 0.05)
#: Returned keys.
KEYS = ("TETA", "LocA", "AssocA", "ClsA", "LocRe", "LocPr", "AssocRe", "AssocPr", "ClsRe", "ClsPr")
_EPS = np.finfo(float).eps
_LIMITS = ALPHAS - _EPS  # an assigned pair matches at alpha if its IoU >= alpha - eps
_CLS = int(np.flatnonzero(ALPHAS >= 0.5)[0])  # classification is counted from alpha 0.5 on (10 thresholds)
_OVERLAP = 0.5  # IoU with a ground-truth box of the class that puts a result box in a cluster
_UNASSIGNED = -2  # class mark of a result box that the global assignment left free (-1: a category not a class)
_CHUNK_PAIRS = 1 << 20  # (ground-truth box, result box) pairs of the timesteps, at most, evaluated at once
_KIND = "TAO result dicts (image_id, category_id, bbox [x, y, w, h], score, track_id, optional video_id)"
_FIX = "use a TAO annotation file such as annotations/validation.json of the TAO dataset"


def evaluate(ground_truth: TaoGroundTruth | Source, results: Results, *, max_dets: int | None = None,
             strict: bool = False) -> dict[str, float]:
    """TETA of ``results`` as the official code computes it (module docstring for the rules).

    ``ground_truth`` is a :class:`~.tao_data.TaoGroundTruth`, the path of a TAO annotation JSON or its parsed
    dict; ``results`` are TAO result dicts (``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score``,
    ``track_id``, optionally ``video_id``; the files ``vfe-hub track`` writes), or the path of a JSON list of them.
    ``max_dets``: ``None`` or 0 keeps every result (the official default), ``M`` the ``M`` best of each image.
    ``strict``: also refuse results whose category is not in the ground truth, and negative track ids and two boxes
    of a track in an image where they change nothing. Returns :data:`KEYS` as fractions.
    Raises :class:`~vfe_hub.errors.DatasetError` for the inputs listed in the module docstring, ``ValueError``
    for a negative ``max_dets``.
    """
    if max_dets is not None and (isinstance(max_dets, bool) or not isinstance(max_dets, (int, np.integer))
                                 or max_dets < 0):
        raise ValueError(f"max_dets={max_dets!r}: expected None or 0 (every result, TETA's default) or a positive "
                         f"number of results kept per image.")
    start = time.perf_counter()
    gt = ground_truth if isinstance(ground_truth, TaoGroundTruth) else TaoGroundTruth.load(ground_truth)
    truth = _Truth.of(gt)
    records = result_list(results, _KIND)
    dets = _result_boxes(records, gt, truth, int(max_dets or 0), strict)
    counts = [_evaluate_videos(truth, dets, frames) for frames in _chunks(truth, dets)]
    scores = _summary(counts, len(truth.class_ids), truth.num_videos)
    log.info("TETA %.4f (LocA %.4f, AssocA %.4f, ClsA %.4f): %d results, %.1f s", scores["TETA"], scores["LocA"],
             scores["AssocA"], scores["ClsA"], len(records), time.perf_counter() - start)
    return scores


# ---------------------------------------------------------------------------------------------------------------
# Boxes at the timesteps
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Boxes:
    """The boxes of one side, sorted by timestep (then in their row or column order): timestep, track (0-based;
    ``ids``: the file's id of each), class (position in the class list, -1 for a category that is not one),
    corners ``[x, y, x + w, y + h]`` and ``entry``, the position of each in its file (annotation or result)."""

    frame: np.ndarray
    track: np.ndarray
    label: np.ndarray
    corners: np.ndarray
    entry: np.ndarray
    ids: np.ndarray

    @classmethod
    def sorted_by_frame(cls, frame: np.ndarray, track: np.ndarray, label: np.ndarray, boxes: np.ndarray,
                        entry: np.ndarray, ids: np.ndarray) -> _Boxes:
        """The boxes ``[x, y, w, h]`` of each timestep together, in the given order within one."""
        order = np.argsort(frame, kind="stable")
        corners = boxes[order].copy()
        corners[:, 2:] += corners[:, :2]
        return cls(frame[order], track[order], label[order], corners, entry[order], ids)

    def slice(self, lo: int, hi: int, shift: int) -> _Boxes:
        """Boxes ``lo:hi``, their timesteps moved by ``shift``."""
        return _Boxes(self.frame[lo:hi] + shift, self.track[lo:hi], self.label[lo:hi], self.corners[lo:hi],
                      self.entry[lo:hi], self.ids)

    @property
    def track_lengths(self) -> np.ndarray:
        """Boxes per track (``n_g``, ``n_t``), float64 as the official counts are."""
        return np.bincount(self.track, minlength=int(self.track.max(initial=-1)) + 1).astype(np.float64)


@dataclass
class _Truth:
    """The ground truth as TETA reads it: the timesteps (``frame_video``: the video position of each;
    ``frame_of_image``: the timestep of each image of ``gt``, -1 if none), the class ids and the boxes."""

    frame_of_image: np.ndarray
    frame_video: np.ndarray
    num_videos: int
    class_ids: np.ndarray
    boxes: _Boxes

    @classmethod
    def of(cls, gt: TaoGroundTruth) -> _Truth:
        """:class:`DatasetError` for ground truth that the official code fails on or misreads."""
        outside = np.flatnonzero(gt.image_visit < 0)
        if len(outside):
            raise DatasetError(f"{gt.source}: image {gt.image_ids[outside[0]]} is a frame of video "
                               f"{gt.image_videos[outside[0]]}, which is not in 'videos' ({len(outside)} images "
                               f"are); list every video of the images ({_FIX}).")
        bad = np.flatnonzero(~np.isfinite(gt.ann_boxes).all(axis=1))
        if len(bad):
            raise DatasetError(f"{gt.source}: annotation {bad[0]} (in file order) has the non-finite bbox "
                               f"{gt.ann_boxes[bad[0]].tolist()}; boxes are 4 finite numbers [x, y, w, h].")
        tracks = gt.track_ids[np.unique(gt.ann_tracks)]
        if len(tracks) and tracks[0] < 0:
            raise DatasetError(f"{gt.source}: track {tracks[0]} has a negative id, which the official TETA code "
                               f"reads as the position of another track; renumber the tracks from 0.")
        _refuse_shared_names(np.char.replace(gt.video_names, "/", "-"), gt.video_names != "", "videos", gt.source)
        category = positions(gt.category_ids, gt.track_categories[gt.ann_tracks])
        is_class = np.zeros(len(gt.category_ids), dtype=bool)
        is_class[category[category >= 0]] = True
        _refuse_shared_names(gt.category_names, is_class & (gt.category_names != ""), "categories", gt.source)

        image = gt.ann_images
        first = np.full(len(gt.image_ids), len(image))
        np.minimum.at(first, image, np.arange(len(image)))
        annotated = np.flatnonzero(first < len(image))
        video = positions(gt.video_ids, gt.image_videos[annotated])
        order = annotated[np.lexsort((first[annotated], gt.image_frames[annotated], video))]
        frame_of_image = np.full(len(gt.image_ids), -1, dtype=np.int64)
        frame_of_image[order] = np.arange(len(order))
        label = np.where(category >= 0, np.cumsum(is_class)[category] - 1, -1)
        return cls(frame_of_image, positions(gt.video_ids, gt.image_videos[order]), len(gt.video_ids),
                   gt.category_ids[is_class],
                   _Boxes.sorted_by_frame(frame_of_image[image], gt.ann_tracks, label, gt.ann_boxes,
                                          np.arange(len(image)), gt.track_ids))


def _refuse_shared_names(names: np.ndarray, checked: np.ndarray, what: str, source: str) -> None:
    """:class:`DatasetError` if one of the ``checked`` names is found twice in ``names``: the official code keys
    videos and classes by name (it would evaluate one of the two in place of both)."""
    unique, counts = np.unique(names, return_counts=True)
    shared = np.isin(names, unique[counts > 1]) & checked
    if shared.any():
        name = str(names[np.argmax(shared)])
        raise DatasetError(f"{source}: {int(np.sum(names == name))} {what} are named {name!r}"
                           + (" (with '/' read as '-')" if what == "videos" else "")
                           + f"; the official TETA code keys {what} by name, so it would evaluate one of them in "
                           f"place of all. Give each a name of its own.")


def _result_boxes(records: Sequence[Mapping], gt: TaoGroundTruth, truth: _Truth, max_dets: int, strict: bool
                  ) -> _Boxes:
    """The results at the timesteps, read and checked, capped to ``max_dets`` per image (0: all), renumbered,
    with their tracks numbered from 0 and their categories as class positions."""
    image, image_ids, category_ids, score, track_ids, videos, boxes = read_results(records, gt)
    category_positions(gt.category_ids, category_ids, gt.source, "the TAO category ids", strict,
                       fate="As in the official TETA code, their matches count as wrong classes (their boxes are "
                            "localised and associated as any other).")
    kept = top_per_image(image, score, max_dets) if max_dets else np.arange(len(image))
    track_ids = renumber_shared_tracks(track_ids[kept], videos[kept])
    if strict:
        _check_track_ids(track_ids, image[kept], kept, "strict=True refuses it")
    # within an image: descending score where the cap removed results (a stable sort), else the input order
    capped = np.bincount(image, minlength=len(gt.image_ids)) > max_dets if max_dets else np.zeros(0, dtype=bool)
    within = np.where(capped[image[kept]], -score[kept], 0.0) if max_dets else np.zeros(len(kept))
    order = np.lexsort((kept, within))
    frame = truth.frame_of_image[image[kept]]
    on = order[frame[order] >= 0]
    ids, track = np.unique(track_ids[on], return_inverse=True)
    return _Boxes.sorted_by_frame(frame[on], track, positions(truth.class_ids, category_ids[kept][on]),
                                  boxes[kept][on], kept[on], ids)


def _check_track_ids(track_ids: np.ndarray, image: np.ndarray, entries: np.ndarray, why: str) -> None:
    """:class:`DatasetError` naming the first of the results ``entries`` with a negative track id or the second box of
    a track in an image; ``why`` that matters."""
    negative = np.flatnonzero(track_ids < 0)
    if len(negative):
        raise DatasetError(f"Results entry {entries[negative[0]]} has the negative track_id "
                           f"{track_ids[negative[0]]} ({why}: the official TETA code reads an id as a position, so "
                           f"a negative id takes another track's place). Give tracks ids from 0.")
    order = np.lexsort((image, track_ids))
    twice = np.flatnonzero((track_ids[order][1:] == track_ids[order][:-1]) & (image[order][1:] == image[order][:-1]))
    if len(twice):
        a, b = sorted((int(entries[order[twice[0]]]), int(entries[order[twice[0] + 1]])))
        raise DatasetError(f"Results entries {a} and {b} give track_id {track_ids[order[twice[0]]]} two boxes in one "
                           f"image ({why}); a track has one box per frame: give each object its own track_id.")


# ---------------------------------------------------------------------------------------------------------------
# Evaluation of a range of videos
# ---------------------------------------------------------------------------------------------------------------

@dataclass
class _Counts:
    """Per (class, video) group ``class * videos + video`` of a range of videos: LocTP, LocFN, LocFP ``(G, 20)``,
    ClsTP, ClsFN ``(G, 10)``, the video's AssocA, AssocRe, AssocPr ``(G, 20)``; ClsFP ``(K, 10)`` of the range."""

    group: np.ndarray
    loc_tp: np.ndarray
    loc_fn: np.ndarray
    loc_fp: np.ndarray
    cls_tp: np.ndarray
    cls_fn: np.ndarray
    assoc: np.ndarray  # (3, G, 20): AssocA, AssocRe, AssocPr
    cls_fp: np.ndarray


def _chunks(truth: _Truth, dets: _Boxes) -> list[tuple[int, int]]:
    """Timestep ranges of whole videos, each with at most :data:`_CHUNK_PAIRS` box pairs (or a single video)."""
    num_frames = len(truth.frame_video)
    if not num_frames:
        return []
    pairs = np.bincount(truth.boxes.frame, minlength=num_frames) * np.bincount(dets.frame, minlength=num_frames)
    starts = np.flatnonzero(np.diff(truth.frame_video, prepend=-1) != 0)
    bounds, total = [0], 0
    for start, count in zip(starts.tolist(), np.add.reduceat(pairs, starts).tolist()):
        if total and total + count > _CHUNK_PAIRS:
            bounds.append(start)
            total = 0
        total += count
    return list(zip(bounds, bounds[1:] + [num_frames]))


def _evaluate_videos(truth: _Truth, dets: _Boxes, frames: tuple[int, int]) -> _Counts:
    """The official per-video evaluation (module docstring) of the videos of the timesteps ``frames``."""
    lo, hi = frames
    gt = truth.boxes.slice(*np.searchsorted(truth.boxes.frame, frames), -lo)
    rs = dets.slice(*np.searchsorted(dets.frame, frames), -lo)
    lengths = gt.track_lengths, rs.track_lengths
    # (ground-truth box, result box) pairs of a timestep with IoU >= 0.5
    gi, di = _pairs(gt.frame, rs.frame)
    near = _ious(gt.corners[gi], rs.corners[di]) >= _OVERLAP
    gi, di = gi[near], di[near]
    assigned = _global_classes(gt, rs, np.flatnonzero(np.isin(rs.track, rs.track[di])), lengths)
    # the clusters (class, result box): less the boxes assigned to another class
    label = gt.label[gi]
    keep = (label >= 0) & ((assigned[di] == _UNASSIGNED) | (assigned[di] == label))
    cluster = np.divmod(np.unique(label[keep] * len(rs.frame) + di[keep]), max(len(rs.frame), 1))
    return _class_counts(gt, rs, cluster, lengths, truth.frame_video[lo:hi], truth.num_videos,
                         len(truth.class_ids))


def _global_classes(gt: _Boxes, rs: _Boxes, cols: np.ndarray, lengths: tuple[np.ndarray, np.ndarray]
                    ) -> np.ndarray:
    """``compute_global_assignment``: the class of the ground-truth box that each result box is matched to over
    all classes (-1: a category that is not a class), :data:`_UNASSIGNED` for none. ``cols``: the boxes of the
    tracks that take part."""
    _check_track_ids(rs.ids[rs.track[cols]], rs.frame[cols], rs.entry[cols], "its track takes part in the "
                     "evaluation, where the official code fails or miscounts on it")
    r, c = _pairs(gt.frame, rs.frame[cols])
    c = cols[c]
    sim = _ious(gt.corners[r], rs.corners[c])
    m, passed = _assign(gt.frame[r], r, gt.track[r], rs.track[c], sim, *lengths)
    matched = m[passed > _CLS]  # IoU >= 0.5 - eps
    assigned = np.full(len(rs.frame), _UNASSIGNED)
    assigned[c[matched]] = gt.label[r[matched]]
    return assigned


def _class_counts(gt: _Boxes, rs: _Boxes, cluster: tuple[np.ndarray, np.ndarray],
                  lengths: tuple[np.ndarray, np.ndarray], video: np.ndarray, num_videos: int, num_classes: int
                  ) -> _Counts:
    """Every class's assignment and counts in each video (``eval_sequence``): rows are the class's ground-truth
    boxes, columns every box of the tracks with a box in one of the class's ``cluster`` (class, result box)."""
    cluster_class, cluster_box = cluster
    g_len, t_len = lengths
    num_frames, num_boxes, num_tracks = len(video), len(rs.frame), max(len(t_len), 1)
    col_class, col_box = _boxes_of_tracks(rs.track, *np.divmod(np.unique(cluster_class * num_tracks
                                                                          + rs.track[cluster_box]), num_tracks))
    rows = np.flatnonzero(gt.label >= 0)
    rows = rows[np.argsort(gt.label[rows], kind="stable")]
    row_key = gt.label[rows] * num_frames + gt.frame[rows]
    r, c = _pairs(row_key, col_class * num_frames + rs.frame[col_box])
    sim = _ious(gt.corners[rows[r]], rs.corners[col_box[c]])
    m, passed = _assign(row_key[r], r, gt.track[rows[r]], rs.track[col_box[c]], sim, g_len, t_len)
    g_box, r_box = rows[r[m]], col_box[c[m]]  # the matched pairs

    groups, row_group = np.unique(gt.label[rows] * num_videos + video[gt.frame[rows]], return_inverse=True)
    num_groups = len(groups)
    matched_group = row_group[r[m]]
    loc_tp = _passing(matched_group, passed, num_groups)
    loc_fn = np.bincount(row_group, minlength=num_groups)[:, None] - loc_tp
    col_passed = np.zeros(len(col_box), dtype=np.int64)
    col_passed[c[m]] = passed
    cluster_passed = col_passed[np.searchsorted(col_class * num_boxes + col_box, cluster_class * num_boxes
                                                + cluster_box)]
    cluster_group = positions(groups, cluster_class * num_videos + video[rs.frame[cluster_box]])
    loc_fp = (np.bincount(cluster_group, minlength=num_groups)[:, None]
              - _passing(cluster_group, cluster_passed, num_groups))
    predicted = rs.label[r_box]
    right = predicted == gt.label[g_box]
    wrong = ~right & (predicted >= 0)
    pair_codes, pair = np.unique(gt.track[g_box] * num_tracks + rs.track[r_box], return_inverse=True)
    matches = _passing(pair, passed, len(pair_codes))
    n_g, n_t = g_len[pair_codes // num_tracks][:, None], t_len[pair_codes % num_tracks][:, None]
    pair_group = np.zeros(len(pair_codes), dtype=np.int64)
    pair_group[pair] = matched_group
    assoc = np.zeros((3, num_groups, len(ALPHAS)))
    for k, denominator in enumerate((n_g + n_t - matches, n_g, n_t)):
        np.add.at(assoc[k], pair_group, matches * (matches / np.maximum(1, denominator)))
    return _Counts(groups, loc_tp, loc_fn, loc_fp, _passing(matched_group[right], passed[right], num_groups)[:, _CLS:],
                   _passing(matched_group[~right], passed[~right], num_groups)[:, _CLS:], assoc / np.maximum(1, loc_tp),
                   _passing(predicted[wrong], passed[wrong], num_classes)[:, _CLS:])


def _assign(block: np.ndarray, row: np.ndarray, g_track: np.ndarray, d_track: np.ndarray, sim: np.ndarray,
            g_len: np.ndarray, t_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-timestep assignment of one pass (``compute_global_alignment_score`` and ``compute_matches``).

    The entries are the IoUs ``sim`` of the pass's matrices, one matrix per ``block`` (sorted), row-major
    (``row``: the row of each entry, nondecreasing in a block); ``g_track``, ``d_track`` the tracks of its row and
    column, ``g_len``, ``t_len`` the tracks' box counts. Returns the entries that ``linear_sum_assignment`` pairs,
    sorted, and how many thresholds ``alpha - eps`` of :data:`ALPHAS` each one's IoU reaches.
    """
    if not len(sim):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.diff(block, prepend=block[0] - 1) != 0)
    num_cols = np.searchsorted(row, row[starts], "right") - starts
    num_rows = np.diff(np.append(starts, len(block))) // num_cols
    shapes = _by_shape(num_rows, num_cols)
    # sums over a matrix's columns and rows as numpy adds them: the same calls on stacks of equal-shape matrices
    denominator = np.empty_like(sim)
    for (nr, nc), which in shapes:
        entries = starts[which, None] + np.arange(nr * nc)
        stack = sim[entries].reshape(-1, nr, nc)
        denominator[entries] = (stack.sum(1)[:, None, :] + stack.sum(2)[:, :, None] - stack).reshape(len(which), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(denominator > _EPS, sim / denominator, 0.0)
    num_d = int(d_track.max()) + 1
    codes, pair = np.unique(g_track * num_d + d_track, return_inverse=True)
    matched = np.bincount(pair, share)  # over the timesteps in order, from 0, as the official code adds
    alignment = matched / (g_len[codes // num_d] + t_len[codes % num_d] - matched)
    score = alignment[pair] * sim
    chosen = []
    for (nr, nc), which in shapes:
        if nr == nc == 1:
            chosen.append(starts[which])
            continue
        entries = starts[which, None] + np.arange(nr * nc)
        for first, cost in zip(starts[which].tolist(), -score[entries].reshape(-1, nr, nc)):
            i, j = linear_sum_assignment(cost)
            chosen.append(first + i * nc + j)
    pairs = np.sort(np.concatenate(chosen))
    return pairs, np.searchsorted(_LIMITS, sim[pairs], side="right")


def _by_shape(num_rows: np.ndarray, num_cols: np.ndarray) -> list[tuple[tuple[int, int], np.ndarray]]:
    """The matrices (positions) of each shape ``(rows, columns)``."""
    shapes, label = np.unique(np.stack([num_rows, num_cols], axis=1), axis=0, return_inverse=True)
    label = label.reshape(-1)
    order = np.argsort(label, kind="stable")
    bounds = np.searchsorted(label[order], np.arange(len(shapes) + 1))
    return [((int(nr), int(nc)), order[bounds[k]:bounds[k + 1]]) for k, (nr, nc) in enumerate(shapes)]


def _pairs(row_key: np.ndarray, col_key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(row, column)`` positions of equal keys (both sorted): key by key, row-major."""
    lo = np.searchsorted(col_key, row_key, "left")
    count = np.searchsorted(col_key, row_key, "right") - lo
    rows = np.repeat(np.arange(len(row_key)), count)
    return rows, np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))


def _ious(g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Row-wise IoU of corner boxes ``g`` and ``d`` ``(N, 4)``: the float64 operations of ``_calculate_box_ious``."""
    inter = (np.maximum(np.minimum(g[:, 2], d[:, 2]) - np.maximum(g[:, 0], d[:, 0]), 0)
             * np.maximum(np.minimum(g[:, 3], d[:, 3]) - np.maximum(g[:, 1], d[:, 1]), 0))
    g_area = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    d_area = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    union = g_area + d_area - inter
    inter = np.where((g_area <= _EPS) | (d_area <= _EPS) | (union <= _EPS), 0.0, inter)
    return inter / np.where(union <= _EPS, 1.0, union)


def _boxes_of_tracks(track: np.ndarray, owner: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, box)`` for every box of each of ``tracks`` (``track``: the track of each box), sorted."""
    by_track = np.argsort(track, kind="stable")
    bounds = np.searchsorted(track[by_track], np.arange(int(track.max(initial=-1)) + 2))
    count = bounds[tracks + 1] - bounds[tracks]
    boxes = by_track[np.repeat(bounds[tracks] - (np.cumsum(count) - count), count) + np.arange(int(count.sum()))]
    owners = np.repeat(owner, count)
    order = np.lexsort((boxes, owners))
    return owners[order], boxes[order]


def _passing(index: np.ndarray, passed: np.ndarray, n: int) -> np.ndarray:
    """``(n, 20)`` float64: how many items of each ``index`` reach each threshold (``passed``: how many each
    reaches, from the first)."""
    levels = len(ALPHAS) + 1
    counts = np.bincount(index * levels + passed, minlength=n * levels).reshape(n, levels)
    return np.cumsum(counts[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)


def _summary(counts: list[_Counts], num_classes: int, num_videos: int) -> dict[str, float]:
    """``combine_sequences``, ``_compute_final_fields`` and the class average of the official summary."""
    if not num_classes:  # no class to average: numpy's mean of nothing
        return {key: float("nan") for key in KEYS}
    group = np.concatenate([c.group for c in counts])
    order = np.argsort(group, kind="stable")  # by class, then video
    owner = group[order] // num_videos

    def by_class(values: np.ndarray) -> np.ndarray:
        total = np.zeros((num_classes, values.shape[1]))
        np.add.at(total, owner, values[order])
        return total

    def stacked(field: str) -> np.ndarray:
        return np.concatenate([getattr(c, field) for c in counts])

    video_tp = stacked("loc_tp")
    tp, fn, fp = by_class(video_tp), by_class(stacked("loc_fn")), by_class(stacked("loc_fp"))
    assoc_a, assoc_re, assoc_pr = (by_class(np.concatenate([c.assoc[k] for c in counts]) * video_tp)
                                   / np.maximum(1.0, tp) for k in range(3))
    ctp, cfn, cfp = by_class(stacked("cls_tp")), by_class(stacked("cls_fn")), sum(c.cls_fp for c in counts)
    loc_a = tp / np.maximum(1, tp + fn + fp)
    cls_a = np.mean(ctp / np.maximum(1, ctp + cfn + cfp), axis=1)
    fields = {"TETA": (loc_a + assoc_a + cls_a[:, None]) / 3, "LocA": loc_a, "AssocA": assoc_a, "ClsA": cls_a,
              "LocRe": tp / np.maximum(1, tp + fn), "LocPr": tp / np.maximum(1, tp + fp), "AssocRe": assoc_re,
              "AssocPr": assoc_pr, "ClsRe": np.mean(ctp / np.maximum(1, ctp + cfn), axis=1),
              "ClsPr": np.mean(ctp / np.maximum(1, ctp + cfp), axis=1)}
    return {key: float(np.mean(np.mean(fields[key], axis=0))) for key in KEYS}
