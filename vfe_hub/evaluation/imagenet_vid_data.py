"""ImageNet VID ground truth and the motion-IoU table of the motion-speed buckets.

Ground truth (:class:`VidGroundTruth`) is read either from mmtracking's COCO-VID JSON (:func:`load_coco_vid`,
e.g. ``imagenet_vid_val.json``) or from the original ILSVRC2015 XML layout (:func:`load_vid_xml`); both readers
give identical results for the same data.

Conventions (those of mmtracking / vfe.pytorch V1, which produced the published numbers):

* **Order.** Frame ``i`` (0-based) is image id ``i + 1``: videos in ``VID_val_videos.txt`` order (FGFA's
  ``VID_val_frames`` order), frames in order inside each video. The evaluator and the motion table are aligned
  to frames by this position.
* **Classes.** Labels are 1..30 in :data:`~vfe_hub.registry.IMAGENET_VID_CLASSES` order (airplane ... zebra);
  the XML WordNet ids map through :data:`WORDNET_IDS`. Objects of other classes are dropped.
* **Boxes.** ``float32`` ``[x1, y1, x2, y2]`` with ``x2 = x1 + w``: the XML ``bndbox`` integers become the COCO
  box ``[xmin, ymin, xmax - xmin, ymax - ymin]`` (mmtracking's ``imagenet2coco_vid.py``) and that box becomes
  ``[x1, y1, x1 + w, y1 + h]`` (mmdet's ``_parse_ann_info``).
* **Filters** (``_parse_ann_info``, applied in this order, each drops the object): ``ignore`` set; no overlap
  with the image (``max(0, min(x1 + w, W) - max(x1, 0)) * max(0, min(y1 + h, H) - max(y1, 0)) == 0``);
  ``area <= 0`` or ``w < 1`` or ``h < 1``; unknown category; ``iscrowd`` (a crowd box is an ignore region of
  mmdet, never a ground-truth object here). The surviving objects keep their annotation (XML ``<object>``)
  order, which is the order of the motion-IoU values.
* **Track ids.** ``VidFrame.track_ids`` are COCO-VID ``instance_id`` values: one id per (video, XML
  ``trackid``), numbered from 1 in order of first appearance over the whole split, as mmtracking assigns them
  (objects removed by the filters still take a number). ``-1`` where a JSON annotation has no ``instance_id``.
* **File names** are relative to ``<root>/Data/VID`` (``val/ILSVRC2015_val_00000000/000000.JPEG``), video names
  are the first column of ``VID_val_videos.txt`` (``val/ILSVRC2015_val_00000000``).

Motion IoU (:func:`motion_iou_table`, :func:`compute_motion_iou`): one ``float64`` array per frame with one
value per ground-truth object, in object order. A frame without objects holds the single placeholder ``0.0``,
exactly as the original evaluator reads the empty cells of FGFA's ``.mat`` file; the placeholders take part in
the ``empty_weight`` of the evaluator.
"""
from __future__ import annotations

import json
import logging
import os
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from ..errors import DatasetError
from ..hub import fetch_url, github_url, sha256_of
from ..progress import progress_bar
from ..registry import IMAGENET_VID_CLASSES

log = logging.getLogger(__name__)

#: WordNet ids of the 30 classes, in :data:`IMAGENET_VID_CLASSES` order (mmtracking's ``CLASSES_ENCODES``).
WORDNET_IDS: tuple[str, ...] = (
    "n02691156", "n02419796", "n02131653", "n02834778", "n01503061", "n02924116", "n02958343", "n02402425",
    "n02084071", "n02121808", "n02503517", "n02118333", "n02510455", "n02342885", "n02374451", "n02129165",
    "n01674464", "n02484322", "n03790512", "n02324045", "n02509815", "n02411705", "n01726692", "n02355227",
    "n02129604", "n04468005", "n01662784", "n04530566", "n02062744", "n02391049",
)
_LABEL_OF_WORDNET = {wnid: i for i, wnid in enumerate(WORDNET_IDS, 1)}
_LABEL_OF_NAME = {name: i for i, name in enumerate(IMAGENET_VID_CLASSES, 1)}

#: FGFA's motion-IoU table, pinned to a commit of msracver/Flow-Guided-Feature-Aggregation (MIT licence).
FGFA_REPO = "msracver/Flow-Guided-Feature-Aggregation"
FGFA_COMMIT = "f01243e23a2e2be0a91d0a5a927433686305a054"
FGFA_MOTION_IOU_FILE = "lib/dataset/imagenet_vid_groundtruth_motion_iou.mat"
FGFA_MOTION_IOU_SHA256 = "7c6d27c2ab3becc9939306fc48b8fcdedf643b7f0764a61a4db793a126e44433"
#: Frames on each side whose boxes of the same object enter its motion IoU (FGFA's definition).
MOTION_WINDOW = 10


@dataclass(frozen=True, eq=False)
class VidFrame:
    """One frame: where it is, and its ground-truth objects in annotation order (see the module conventions)."""

    file_name: str
    video: str
    frame_id: int
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) float32 [x1, y1, x2, y2]
    labels: np.ndarray  # (n,) int64, 1..30
    track_ids: np.ndarray  # (n,) int64 COCO-VID instance ids, -1 if unknown


@dataclass(eq=False)
class VidGroundTruth:
    """The ground truth of a split: ``frames[i]`` is image id ``i + 1``; ``videos`` holds
    ``(name, first_image_id, num_frames)`` per video, in order."""

    frames: list[VidFrame]
    videos: list[tuple[str, int, int]]

    def __len__(self) -> int:
        return len(self.frames)


def _keeps(x1: float, y1: float, w: float, h: float, area: float, width: int, height: int) -> bool:
    """``_parse_ann_info``'s geometric filters: overlaps the image, positive area, at least 1 x 1."""
    inter_w = max(0, min(x1 + w, width) - max(x1, 0))
    inter_h = max(0, min(y1 + h, height) - max(y1, 0))
    return inter_w * inter_h != 0 and area > 0 and w >= 1 and h >= 1


def _frame(file_name: str, video: str, frame_id: int, width: int, height: int,
           objects: list[tuple[list[float], int, int]]) -> VidFrame:
    """A :class:`VidFrame` from kept objects ``([x1, y1, w, h], label, track_id)``."""
    boxes = np.array([[x1, y1, x1 + w, y1 + h] for (x1, y1, w, h), _, _ in objects], dtype=np.float32)
    return VidFrame(file_name, video, frame_id, width, height, boxes.reshape(-1, 4),
                    np.array([label for _, label, _ in objects], dtype=np.int64),
                    np.array([track for _, _, track in objects], dtype=np.int64))


# ---------------------------------------------------------------------------------------------------------------
# COCO-VID JSON
# ---------------------------------------------------------------------------------------------------------------

def load_coco_vid(json_path: str | os.PathLike) -> VidGroundTruth:
    """Read a COCO-VID annotation file (mmtracking's ``imagenet_vid_val.json``).

    Image ids must be ``1..N`` with each video's frames consecutive and in ``frame_id`` order, as mmtracking's
    converter writes them: the evaluator and the motion table address frames by ``image_id - 1``.
    Raises :class:`DatasetError` when the file cannot be read or breaks these rules.
    """
    path = Path(json_path)
    try:
        data = json.loads(path.read_text())
        videos = {v["id"]: v["name"] for v in data["videos"]}
        images = sorted(data["images"], key=lambda im: im["id"])
        labels = {c["id"]: _LABEL_OF_NAME.get(c["name"]) for c in data["categories"]}
        _check_coco_order(path, images)
        per_image = defaultdict(list)
        for ann in data["annotations"]:
            per_image[ann["image_id"]].append(ann)
        frames = [_coco_frame(im, videos, labels, per_image[im["id"]]) for im in images]
    except DatasetError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path} is not a readable COCO-VID annotation file ({type(e).__name__}: {e}).") from e
    return VidGroundTruth(frames, _video_runs(frames))


def _check_coco_order(path: Path, images: list[dict]) -> None:
    """Image ids ``1..N``; every video's frames consecutive, starting at ``frame_id`` 0, in order."""
    expected = "image ids 1..N in FGFA's VID_val_frames order (videos as in VID_val_videos.txt, frames in order)"
    seen_videos = set()
    for position, image in enumerate(images, 1):
        if image["id"] != position:
            raise DatasetError(f"{path}: image id {image['id']} sits at position {position}; the evaluation needs "
                               f"{expected}, as mmtracking's imagenet2coco_vid.py writes them.")
        previous = images[position - 2] if position > 1 else None
        same_video = previous is not None and previous["video_id"] == image["video_id"]
        expected_frame = previous["frame_id"] + 1 if same_video else 0
        if image["frame_id"] != expected_frame or (not same_video and image["video_id"] in seen_videos):
            raise DatasetError(f"{path}: image id {image['id']} ({image['file_name']}) is frame {image['frame_id']} "
                               f"of video {image['video_id']}, expected frame {expected_frame}"
                               f"{'' if same_video else ' of a new video'}; the evaluation needs {expected}.")
        seen_videos.add(image["video_id"])


def _coco_frame(image: dict, videos: dict[int, str], labels: dict[int, int | None], anns: list[dict]) -> VidFrame:
    """One image of a COCO-VID file, filtered like ``_parse_ann_info``."""
    width, height = image["width"], image["height"]
    kept = []
    for ann in anns:
        x1, y1, w, h = ann["bbox"]
        label = labels.get(ann["category_id"])
        if ann.get("ignore", False) or not _keeps(x1, y1, w, h, ann["area"], width, height):
            continue
        if label is None or ann.get("iscrowd", False):
            continue
        kept.append(([x1, y1, w, h], label, ann.get("instance_id", -1)))
    return _frame(image["file_name"], videos[image["video_id"]], image["frame_id"], width, height, kept)


def _video_runs(frames: Sequence[VidFrame]) -> list[tuple[str, int, int]]:
    """``(name, first_image_id, num_frames)`` of each run of frames of one video."""
    runs: list[tuple[str, int, int]] = []
    for image_id, frame in enumerate(frames, 1):
        if runs and runs[-1][0] == frame.video and frame.frame_id > 0:
            name, first, count = runs[-1]
            runs[-1] = (name, first, count + 1)
        else:
            runs.append((frame.video, image_id, 1))
    return runs


# ---------------------------------------------------------------------------------------------------------------
# ILSVRC2015 XML
# ---------------------------------------------------------------------------------------------------------------

def load_vid_xml(root: str | os.PathLike, split: str = "val", *, progress: bool | None = None) -> VidGroundTruth:
    """Read the ground truth of ``split`` from the ILSVRC2015 layout under ``root``.

    Videos and their frame counts come from ``root/ImageSets/VID/VID_<split>_videos.txt`` (FGFA's list: lines
    ``val/ILSVRC2015_val_00000000 1 0 464`` = video, first image id, 0, number of frames) when it exists, else
    from the folders of ``root/Annotations/VID/<split>`` holding ``.xml`` files, in sorted order. Frame ``k`` of a
    video is ``Annotations/VID/<video>/<k:06d>.xml``. Conversion and filters are those of the module docstring.
    """
    root = Path(root)
    videos = _video_list(root, split)
    frames: list[VidFrame] = []
    instance_ids: dict[tuple[str, str], int] = {}
    with progress_bar(total=sum(n for _, _, n in videos), desc=f"reading VID {split} XML", unit="frame",
                      progress=progress) as bar:
        for video, _, num_frames in videos:
            for frame_id in range(num_frames):
                frames.append(_xml_frame(root, video, frame_id, instance_ids))
                bar.update(1)
    return VidGroundTruth(frames, videos)


def _video_list(root: Path, split: str) -> list[tuple[str, int, int]]:
    """``(video, first_image_id, num_frames)`` from FGFA's list file, or from the annotation folders."""
    list_file = root / "ImageSets" / "VID" / f"VID_{split}_videos.txt"
    if list_file.is_file():
        return _read_video_list(list_file)
    ann_root = root / "Annotations" / "VID"
    folders = sorted({p.parent for p in (ann_root / split).rglob("*.xml")})
    if not folders:
        raise DatasetError(f"Neither {list_file} nor any .xml file under {ann_root / split} exists: {root} is not "
                           f"an ILSVRC2015 VID root (it should hold Annotations/VID/{split}/<video>/000000.xml).")
    videos, first = [], 1
    for folder in folders:
        count = len(list(folder.glob("*.xml")))
        videos.append((folder.relative_to(ann_root).as_posix(), first, count))
        first += count
    log.info("No %s: took %d videos of %s from %s in sorted order.", list_file, len(videos), split, ann_root)
    return videos


def _read_video_list(list_file: Path) -> list[tuple[str, int, int]]:
    videos, first = [], 1
    for number, line in enumerate(list_file.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            name, start, count = fields[0], int(fields[1]), int(fields[-1])
        except (IndexError, ValueError) as e:
            raise DatasetError(f"{list_file}:{number}: expected 'video first_index 0 num_frames', got {line!r}.") from e
        if start != first:
            raise DatasetError(f"{list_file}:{number}: {name} starts at frame {start}, but the videos before it end "
                               f"at {first - 1}; the list must be contiguous.")
        videos.append((name, first, count))
        first += count
    return videos


def _xml_frame(root: Path, video: str, frame_id: int, instance_ids: dict[tuple[str, str], int]) -> VidFrame:
    """Parse one annotation file; new track ids get the next global instance id (mmtracking numbering)."""
    xml_file = root / "Annotations" / "VID" / video / f"{frame_id:06d}.xml"
    try:
        annotation = ET.parse(xml_file).getroot()
        size = annotation.find("size")
        width, height = int(size.find("width").text), int(size.find("height").text)
        kept = []
        for obj in annotation.findall("object"):
            label = _LABEL_OF_WORDNET.get(obj.find("name").text)
            if label is None:
                continue
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (int(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            track = instance_ids.setdefault((video, obj.find("trackid").text), len(instance_ids) + 1)
            w, h = x2 - x1, y2 - y1
            if _keeps(x1, y1, w, h, w * h, width, height):
                kept.append(([x1, y1, w, h], label, track))
    except (OSError, ET.ParseError, AttributeError, ValueError) as e:
        raise DatasetError(f"Cannot read {xml_file} ({type(e).__name__}: {e}).") from e
    return _frame(f"{video}/{frame_id:06d}.JPEG", video, frame_id, width, height, kept)


# ---------------------------------------------------------------------------------------------------------------
# Motion IoU
# ---------------------------------------------------------------------------------------------------------------

def motion_iou_table(source: str | os.PathLike = "fgfa", *, progress: bool | None = None) -> list[np.ndarray]:
    """The motion IoU of every ground-truth object of ImageNet VID val, one array per frame (module docstring).

    ``source="fgfa"`` downloads FGFA's table once into the vfe_hub cache (``vfe_hub.hub.fetch_url``) and checks
    its sha256 (:class:`~vfe_hub.errors.ChecksumError` on mismatch). Any other value is a local ``.mat`` file in
    FGFA's layout (a ``motion_iou`` cell array, one cell per frame): it is read as given, without a checksum, so
    that other tables can be used; its sha256 is logged, and the evaluator still checks that it fits the ground
    truth.
    """
    if str(source) == "fgfa":
        path = fetch_url(github_url(FGFA_REPO, FGFA_COMMIT, FGFA_MOTION_IOU_FILE), sha256=FGFA_MOTION_IOU_SHA256,
                         filename=Path(FGFA_MOTION_IOU_FILE).name, progress=progress)
    else:
        path = Path(source)
        if not path.is_file():
            raise DatasetError(f"Motion-IoU table {path} does not exist; pass motion_iou='fgfa' to download "
                               f"FGFA's table, or 'compute' to derive one from the ground truth.")
        digest = sha256_of(path)
        log.info("Motion-IoU table %s has sha256 %s (%s FGFA's table).", path, digest,
                 "equal to" if digest == FGFA_MOTION_IOU_SHA256 else "not")
    return read_motion_iou_mat(path)


def read_motion_iou_mat(path: str | os.PathLike) -> list[np.ndarray]:
    """Read a ``.mat`` file in FGFA's layout as the original evaluator does.

    Cell ``i`` is a column of values; row ``j`` gives ``cell[j][0]``, or ``0`` where that row is empty. An empty
    MATLAB cell is ``1 x 0``, one empty row, hence the single ``0.0`` placeholder.
    """
    try:
        cells = loadmat(path)["motion_iou"]
        return [_cell_values(np.asarray(cell, dtype=np.float64)) for cell in cells[:, 0]]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise DatasetError(f"{path} is not a motion-IoU table in FGFA's layout (a 'motion_iou' cell array with one "
                           f"cell per frame): {type(e).__name__}: {e}.") from e


def _cell_values(cell: np.ndarray) -> np.ndarray:
    return cell[:, 0].copy() if cell.shape[1] else np.zeros(cell.shape[0])


def compute_motion_iou(gt: VidGroundTruth, *, window: int = MOTION_WINDOW) -> list[np.ndarray]:
    """A motion-IoU table computed from the ground truth, after FGFA's definition (an approximation).

    The motion IoU of an object is the mean IoU of its box with the boxes of the same object (same video and
    track id) in the other ground-truth objects at most ``window`` frames away, itself excluded. IoU uses the
    pixel-inclusive convention of the ILSVRC devkit, ``w = x2 - x1 + 1``, on the integer XML boxes (``x2 =
    xmax``), in float64. An object seen in no other frame of its window gets 1.0 (static). Frames without
    objects get the ``0.0`` placeholder. FGFA published the table but not the script that made it, so the exact
    rules (boxes removed by annotation filters, objects without neighbours) could not be pinned; use this for
    datasets other than ImageNet VID val, and ``"fgfa"`` to reproduce published numbers.
    """
    counts = np.array([len(f.labels) for f in gt.frames], dtype=np.int64)
    if counts.sum() == 0:
        return [np.zeros(1) for _ in gt.frames]
    tracks = np.concatenate([f.track_ids for f in gt.frames])
    if (tracks < 0).any():
        raise DatasetError("motion_iou='compute' needs a track id (COCO-VID instance_id) for every object; some "
                           "annotations have none.")
    boxes = np.concatenate([f.boxes for f in gt.frames]).astype(np.float64)
    image = np.repeat(np.arange(len(gt.frames)), counts)
    video_of_frame = np.repeat(np.arange(len(gt.videos)), [n for _, _, n in gt.videos])
    frame_ids = np.array([f.frame_id for f in gt.frames], dtype=np.int64)
    values = _mean_neighbour_iou(boxes, video_of_frame[image], tracks, frame_ids[image], window)
    splits = np.split(values, np.cumsum(counts)[:-1])
    return [v if len(v) else np.zeros(1) for v in splits]


def _mean_neighbour_iou(boxes: np.ndarray, video: np.ndarray, track: np.ndarray, frame: np.ndarray,
                        window: int) -> np.ndarray:
    """Mean IoU of each observation with the other observations of its (video, track) within ``window`` frames."""
    order = np.lexsort((frame, track, video))
    b, v, t, f = boxes[order], video[order], track[order], frame[order]
    total, count = np.zeros(len(b)), np.zeros(len(b))
    shift = 1
    while shift < len(b):
        same = (v[shift:] == v[:-shift]) & (t[shift:] == t[:-shift]) & (f[shift:] - f[:-shift] <= window)
        if not same.any():
            break
        first, second = np.flatnonzero(same), np.flatnonzero(same) + shift
        iou = _iou_inclusive(b[first], b[second])
        total += np.bincount(first, iou, len(b)) + np.bincount(second, iou, len(b))
        count += np.bincount(first, minlength=len(b)) + np.bincount(second, minlength=len(b))
        shift += 1
    mean = np.divide(total, count, out=np.ones(len(b)), where=count > 0)
    values = np.empty(len(b))
    values[order] = mean
    return values


def _iou_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of ``[x1, y1, x2, y2]`` boxes with pixel-inclusive sides (``x2 - x1 + 1``)."""
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1, 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1, 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    return inter / (area_a + area_b - inter)


def check_motion_table(gt: VidGroundTruth, table: Sequence[np.ndarray]) -> None:
    """Raise :class:`DatasetError` unless ``table`` has one row per frame and one value per object.

    A frame without objects must hold exactly the ``0.0`` placeholder. The first mismatching frame is named.
    """
    if len(table) != len(gt.frames):
        raise DatasetError(f"The motion-IoU table has {len(table)} frames, the ground truth {len(gt.frames)}: "
                           f"they are not the same split (ImageNet VID val has 176,126 frames).")
    counts = np.array([len(f.labels) for f in gt.frames])
    lengths = np.array([len(row) for row in table])
    expected = np.maximum(counts, 1)
    placeholder_ok = np.array([n > 0 or (len(row) == 1 and row[0] == 0.0) for n, row in zip(counts, table)])
    bad = np.flatnonzero((lengths != expected) | ~placeholder_ok)
    if len(bad):
        i = bad[0]
        frame = gt.frames[i]
        raise DatasetError(
            f"The motion-IoU table does not fit the ground truth at image id {i + 1} ({frame.file_name}): the frame "
            f"has {counts[i]} objects, the table row {np.round(table[i], 4).tolist()}. {len(bad)} frames differ. The "
            f"table is aligned by position and object order; a different annotation file, frame order or filter "
            f"shifts it.")
