"""TAO ground truth (the annotation files of the TAO benchmark), read once for :func:`vfe_hub.evaluation.tao.evaluate`.

A TAO file is a COCO-style JSON with ``videos`` (each with ``neg_category_ids`` and
``not_exhaustive_category_ids``), ``images`` (frames: ``video_id``, ``frame_index``), ``tracks`` (``id``,
``video_id``, ``category_id``, optional ``ignore``), ``annotations`` (``image_id``, ``track_id``,
``category_id``, ``bbox`` ``[x, y, w, h]``, ``area``) and ``categories`` (optional LVIS ``frequency`` and
``merged``: the categories folded into this one, ``[{"id": ...}, ...]``). :meth:`TaoGroundTruth.load` checks
this shape, resolves merged category ids to the category they were merged into (in annotations and tracks, as
the official ``Tao._create_index`` does) and refuses what the official code would trip over with an assertion
(an annotation of an unknown track, or of another category than its track; two annotations of one track in one
frame) or silently misread (repeated ids: it looks annotations up by id, so a repeated annotation id counts one
box twice and drops the other).
"""
from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from .lvis_data import Source, read_json, unique_ids

_FIX = "use a TAO annotation file such as annotations/validation.json of the TAO dataset"


@dataclass(eq=False)
class TaoGroundTruth:
    """A TAO annotation file, indexed; build it with :meth:`load`.

    Ids are sorted in ``category_ids``, ``video_ids``, ``image_ids`` and ``track_ids``; the ``image_*``,
    ``track_*`` and ``ann_*`` arrays hold the fields in those orders (annotations: file order). Category ids are
    already resolved through :attr:`aliases`. ``image_visit`` is the position of each image in the order the
    official ``Tao.get_ann_ids`` visits images (module :mod:`.tao`), -1 for images of no listed video.
    ``category_names`` and ``video_names`` hold the files' ``name`` fields ('' where there is none).
    """

    source: str
    category_ids: np.ndarray
    frequencies: np.ndarray  # (K,) str: 'r', 'c', 'f', or '' for a category without one
    aliases: dict[int, int]
    video_ids: np.ndarray
    neg_category_ids: dict[int, frozenset[int]]
    not_exhaustive_category_ids: dict[int, frozenset[int]]
    image_ids: np.ndarray
    image_videos: np.ndarray
    image_frames: np.ndarray
    image_visit: np.ndarray
    track_ids: np.ndarray
    track_videos: np.ndarray
    track_categories: np.ndarray
    track_ignore: np.ndarray
    ann_images: np.ndarray  # (N,) index into image_ids
    ann_tracks: np.ndarray  # (N,) index into track_ids
    ann_boxes: np.ndarray  # (N, 4) float64
    ann_areas: np.ndarray  # (N,) float64, the file's ``area``
    category_names: np.ndarray  # (K,) str
    video_names: np.ndarray  # (V,) str

    @classmethod
    def load(cls, source: Source) -> TaoGroundTruth:
        """Read ``source``, the path of a TAO JSON or its parsed content; :class:`DatasetError` if it is not one."""
        name = "the ground-truth dict" if isinstance(source, Mapping) else str(source)
        data = source if isinstance(source, Mapping) else read_json(Path(source), "TAO annotation file", _FIX)
        keys = ("videos", "images", "tracks", "annotations", "categories")
        if not isinstance(data, Mapping) or not all(isinstance(data.get(k), list) for k in keys):
            raise DatasetError(f"{name} is not a TAO annotation file: it needs the lists {', '.join(keys)} ({_FIX}).")
        categories = unique_ids(data["categories"], "category", name)
        aliases = {int(m["id"]): int(c["id"]) for c in categories.values() for m in c.get("merged", ())}
        videos = unique_ids(data["videos"], "video", name)
        images = unique_ids(data["images"], "image", name)
        tracks = unique_ids(data["tracks"], "track", name)
        unique_ids(data["annotations"], "annotation", name)
        neg, not_exhaustive = _video_label_sets(videos, name)
        category_ids = np.array(sorted(categories), dtype=np.int64)
        video_ids = np.array(sorted(videos), dtype=np.int64)
        image_ids = np.array(sorted(images), dtype=np.int64)
        track_ids = np.array(sorted(tracks), dtype=np.int64)
        image_videos, image_frames = _fields(images, image_ids, ("video_id", "frame_index"), "image", name)
        track_videos, track_categories = _fields(tracks, track_ids, ("video_id", "category_id"), "track", name)
        track_categories = np.array([aliases.get(int(c), int(c)) for c in track_categories], dtype=np.int64)
        track_ignore = np.array([bool(tracks[int(t)].get("ignore", 0)) for t in track_ids], dtype=bool)
        return cls(name, category_ids, np.array([str(categories[int(c)].get("frequency", "")) for c in category_ids]),
                   aliases, video_ids, neg, not_exhaustive, image_ids, image_videos, image_frames,
                   _visit_ranks(data["images"], video_ids, image_ids), track_ids, track_videos, track_categories,
                   track_ignore, **_annotation_arrays(data["annotations"], image_ids, track_ids, track_categories,
                                                      aliases, name),
                   category_names=np.array([str(categories[int(c)].get("name", "")) for c in category_ids], dtype=str),
                   video_names=np.array([str(videos[int(v)].get("name", "")) for v in video_ids], dtype=str))


def set_visit(image_ids_by_video: list[int]) -> list[int]:
    """The order in which the official ``Tao.get_ann_ids`` visits ``image_ids_by_video`` (the images of the videos
    in sorted video order, file order within a video): ``list(set(ids) & set(ids))``, a CPython set's order."""
    return list(set(image_ids_by_video) & set(image_ids_by_video))


def _visit_ranks(images: list[dict[str, Any]], video_ids: np.ndarray, image_ids: np.ndarray) -> np.ndarray:
    by_video: dict[int, list[int]] = {int(v): [] for v in video_ids}
    for image in images:  # file order within a video (``Tao.vid_img_map``)
        if int(image["video_id"]) in by_video:
            by_video[int(image["video_id"])].append(int(image["id"]))
    visit = set_visit([i for v in video_ids for i in by_video[int(v)]])
    rank = np.full(len(image_ids), -1, dtype=np.int64)
    rank[np.searchsorted(image_ids, np.array(visit, dtype=np.int64))] = np.arange(len(visit))
    return rank


def _video_label_sets(videos: dict[int, dict[str, Any]], name: str
                      ) -> tuple[dict[int, frozenset[int]], dict[int, frozenset[int]]]:
    neg, not_exhaustive = {}, {}
    for video_id, video in videos.items():
        missing = [k for k in ("neg_category_ids", "not_exhaustive_category_ids") if k not in video]
        if missing:
            raise DatasetError(f"{name}: video {video_id} has no {' or '.join(missing)}: TAO videos list their "
                               f"negative and not-exhaustively annotated categories ({_FIX}).")
        neg[video_id] = frozenset(int(c) for c in video["neg_category_ids"])
        not_exhaustive[video_id] = frozenset(int(c) for c in video["not_exhaustive_category_ids"])
    return neg, not_exhaustive


def _fields(items: dict[int, dict[str, Any]], ids: np.ndarray, keys: tuple[str, str], what: str, name: str
            ) -> tuple[np.ndarray, np.ndarray]:
    try:
        return tuple(np.array([items[int(i)][k] for i in ids], dtype=np.int64) for k in keys)
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{name}: every {what} needs integer {' and '.join(keys)} ({type(e).__name__}: {e}; "
                           f"{_FIX}).") from e


def _annotation_arrays(annotations: list[dict[str, Any]], image_ids: np.ndarray, track_ids: np.ndarray,
                       track_categories: np.ndarray, aliases: dict[int, int], name: str) -> dict[str, np.ndarray]:
    try:
        image = np.array([a["image_id"] for a in annotations], dtype=np.int64)
        track = np.array([a["track_id"] for a in annotations], dtype=np.int64)
        category = np.array([aliases.get(int(a["category_id"]), int(a["category_id"])) for a in annotations],
                            dtype=np.int64)
        boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(len(annotations), 4)
        areas = np.array([a["area"] for a in annotations], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{name}: every annotation needs image_id, track_id, category_id, bbox [x, y, w, h] and "
                           f"area ({type(e).__name__}: {e}).") from e
    image_index = np.searchsorted(image_ids, image)
    track_index = np.searchsorted(track_ids, track)
    for index, ids, values, what in ((image_index, image_ids, image, "image"),
                                     (track_index, track_ids, track, "track")):
        unknown = np.flatnonzero(ids[np.minimum(index, len(ids) - 1)] != values) if len(ids) else \
            np.arange(len(values))
        if len(unknown):
            raise DatasetError(f"{name}: annotation {annotations[unknown[0]]['id']} has {what}_id "
                               f"{values[unknown[0]]}, which is not in '{what}s'; {len(unknown)} annotations refer "
                               f"to unknown {what}s.")
    wrong = np.flatnonzero(track_categories[track_index] != category)
    if len(wrong):
        a = annotations[wrong[0]]
        raise DatasetError(f"{name}: annotation {a['id']} has category_id {a['category_id']} but its track "
                           f"{a['track_id']} has category_id {track_categories[track_index[wrong[0]]]}; an annotation "
                           f"takes the category of its track.")
    key = track_index * len(image_ids) + image_index
    unique, counts = np.unique(key, return_counts=True)
    if len(unique) < len(key):
        k = unique[np.argmax(counts > 1)]
        raise DatasetError(f"{name}: track {track_ids[k // len(image_ids)]} has {counts.max()} annotations in image "
                           f"{image_ids[k % len(image_ids)]}; a track has at most one box per frame.")
    return {"ann_images": image_index, "ann_tracks": track_index, "ann_boxes": boxes, "ann_areas": areas}


def to_lvis_v1(data: Mapping[str, Any],
               annotation: Callable[[dict[str, Any], int], dict[str, Any]] | None = None) -> dict[str, Any]:
    """A TAO annotation file with LVIS v0.5 categories turned into LVIS v1 ids, as GTR's ``tools/create_tao_v1.py``
    does (and TAO-Amodal's ``create_tao_amodal_v1.py``, whose annotation rules ``annotation`` adds).

    Each category that has annotations is mapped by its ``synset`` to the LVIS v1 category of that synset;
    annotations and tracks of categories without one are dropped; ``categories`` becomes LVIS v1's 1203 (their
    ``id``, ``name``, ``synset``, ``frequency`` from ``vfe_hub/assets/lvis_v1_categories.json``) with
    ``image_count`` and ``instance_count`` counted over the converted annotations; each video's
    ``neg_category_ids`` and ``not_exhaustive_category_ids`` keep the mapped ids only, and every image gets its
    video's lists. ``annotation(kept, v1_id)`` returns a kept annotation as converted (default: ``category_id``
    replaced). A file whose categories are LVIS v1's (same ids and synsets) or carry no synsets is returned as it is.
    Raises :class:`DatasetError` when a field the conversion reads is missing.
    """
    from ..registry import lvis_v1_categories

    v1 = lvis_v1_categories()
    annotation = annotation or (lambda a, v1_id: {**a, "category_id": v1_id})
    try:
        pairs = {(c["id"], c.get("synset")) for c in data["categories"]}
        if all(synset is None for _, synset in pairs) or pairs <= {(c["id"], c["synset"]) for c in v1}:
            return dict(data)  # LVIS v1 ids already (or no synsets to map by)
        by_synset = {c["synset"]: c["id"] for c in v1}
        categories = {c["id"]: c for c in data["categories"]}
        used = {a["category_id"] for a in data["annotations"]}
        idmap = {i: by_synset[categories[i]["synset"]] for i in used if categories[i].get("synset") in by_synset}
        annotations = [annotation(dict(a), idmap[a["category_id"]]) for a in data["annotations"]
                       if a["category_id"] in idmap]
        tracks = [{**t, "category_id": idmap[t["category_id"]]} for t in data["tracks"] if t["category_id"] in idmap]
        lists = ("neg_category_ids", "not_exhaustive_category_ids")
        videos = [{**v, **{key: [idmap[i] for i in v[key] if i in idmap] for key in lists}} for v in data["videos"]]
        by_video = {v["id"]: v for v in videos}
        images = [{**im, **{key: list(by_video[im["video_id"]][key]) for key in lists}} for im in data["images"]]
    except (KeyError, TypeError, IndexError) as e:
        raise DatasetError(f"Cannot convert the TAO annotations to LVIS v1 ids: {type(e).__name__} {e} (a TAO file "
                           "has categories with 'synset', videos with 'neg_category_ids' and "
                           "'not_exhaustive_category_ids', images with 'video_id', annotations and tracks with "
                           "'category_id').") from e
    image_sets: dict[int, set[Any]] = {}
    for a in annotations:
        image_sets.setdefault(a["category_id"], set()).add(a["image_id"])
    counts = collections.Counter(a["category_id"] for a in annotations)
    return {**data, "annotations": annotations, "tracks": tracks, "videos": videos, "images": images,
            "categories": [{**c, "image_count": len(image_sets.get(c["id"], ())), "instance_count": counts[c["id"]]}
                           for c in v1]}
