"""The data that flows through vfe_hub: a preprocessed batch in, :class:`Detections` out."""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .errors import MissingDependencyError, VfeHubError


@dataclass
class FrameInfo:
    """Where a frame came from: ``name`` for people, ``source`` for re-reading it, ``sequence``/``index`` for video
    state, ``size`` ``(H, W)`` of the input as given.

    ``image_id`` is the frame's 1-based position over all the frames of one ``predict`` call (or one
    :func:`vfe_hub.io.open_frames`), counted across sequences in input order: the first image or frame is 1, the
    third frame of a second video after a 10-frame first one is 13. It is unique within a call; ``None`` for a
    ``FrameInfo`` built by hand.
    """

    name: str
    index: int
    sequence: str
    source: str | None
    size: tuple[int, int]
    image_id: int | None = None


_RECORD_COLUMNS = ("frame", "sequence", "index", "image_id", "x1", "y1", "x2", "y2", "score", "label", "class_name")
"""The columns of :meth:`Detections.to_records`, followed by ``track_id`` for tracked detections."""


@dataclass
class ImageBatch:
    """A padded, normalised batch on the model's device.

    ``images (B, 3, Hp, Wp)``, every image padded to the one size it has alone (see :mod:`vfe_hub.engine`);
    ``image_sizes[i] = (h, w)`` is the resized, unpadded size of image ``i``;
    ``scales[i] = (sx, sy) = (w / W, h / H)`` maps input pixels to resized pixels.
    """

    images: torch.Tensor
    image_sizes: list[tuple[int, int]]
    scales: list[tuple[float, float]]
    frames: list[FrameInfo]

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class Detections:
    """Detections of one image or frame.

    ``boxes (N, 4)`` float32 ``xyxy`` in pixels of the input as given, inside the image, except for the models
    whose original exports pixel-inclusive boxes unclipped (LST, BAGS: ``Preprocess.clip_to_input`` is false), whose
    right and bottom edges can pass the image's by up to ``1 - W / W'`` pixel on upscaled inputs; ``scores (N,)``
    float32; ``labels (N,)``
    int64 indices into ``class_names``; optional ``track_ids (N,)``; optional ``amodal_boxes (N, 4)`` float32
    ``xyxy`` covering each whole object, hidden parts included, which may leave the image (``boxes`` are then the
    visible, clipped ones); optional ``masks``, one pycocotools RLE
    (``{"size": [H, W], "counts": bytes}``) per detection in pixels of the input as given (build them with
    :meth:`encode_masks`, read them with :meth:`mask_tensor`). ``provenance`` names the model, its weights
    (source, revision, sha256), dtype and device.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    frame: FrameInfo
    provenance: dict[str, Any] = field(default_factory=dict)
    track_ids: torch.Tensor | None = None
    masks: list[dict] | None = None
    amodal_boxes: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.masks is not None:
            size = list(self.frame.size)
            if len(self.masks) != len(self) or any(list(m["size"]) != size for m in self.masks):
                raise ValueError(f"masks must be {len(self)} RLEs of size {size} (the input image), got "
                                 f"{[list(m['size']) for m in self.masks]}")

    def __len__(self) -> int:
        return self.boxes.shape[0]

    def __repr__(self) -> str:
        """One short line: the frame, the counts and the three best (class, score) pairs."""
        name = self.frame.name if len(self.frame.name) <= 60 else "..." + self.frame.name[-57:]
        order = self.scores.detach().cpu().argsort(descending=True)[:3].tolist()
        top = [(self.class_names[int(self.labels[i])][:24], round(float(self.scores[i]), 2)) for i in order]
        return (f"Detections(frame={name!r}, n={len(self)}, classes={len(self.class_names)}, "
                f"masks={'no' if self.masks is None else 'yes'}, tracks={'no' if self.track_ids is None else 'yes'}, "
                f"top={top})")

    @staticmethod
    def encode_masks(masks: torch.Tensor) -> list[dict]:
        """Run-length encode binary masks ``(N, H, W)`` (any device) into ``N`` pycocotools RLEs of size ``[H, W]``."""
        from pycocotools import mask as mask_utils

        # (N, W, H) C-contiguous is (H, W, N) Fortran-contiguous, the layout pycocotools reads.
        columns = masks.detach().to(device="cpu", dtype=torch.uint8).transpose(1, 2).contiguous().numpy()
        return mask_utils.encode(columns.transpose(2, 1, 0))

    def mask_tensor(self) -> torch.Tensor:
        """The masks decoded to ``(N, H, W)`` bool on the boxes' device (``H, W`` of the input as given)."""
        if self.masks is None:
            raise ValueError(f"these detections of {self.frame.name} have no masks")
        return _decode_masks(self.masks, self.frame.size).to(self.boxes.device)

    def cpu(self) -> Detections:
        moved = {k: getattr(self, k).cpu() for k in ("boxes", "scores", "labels")}
        for name in ("track_ids", "amodal_boxes"):
            if getattr(self, name) is not None:
                moved[name] = getattr(self, name).cpu()
        return replace(self, **moved)

    def to_json(self, image_id: int | str | None = None, category_ids: list[int] | None = None,
                video_id: int | None = None) -> list[dict]:
        """COCO-style results: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` per detection.

        Tracked detections also get ``"track_id"`` (and, with ``video_id``, ``"video_id"``): the TAO results format.
        With amodal boxes, ``"bbox"`` is the amodal box (what the TAO-Amodal toolkit scores, possibly beyond the
        image) and ``"modal_bbox"`` the visible one.
        With ``video_id`` the track id is ``track_id + video_id * 10**8``, unique over the videos of a results file
        as TAO's toolkit needs (GTR's encoding; tracks of one video stay under ``10**8``).

        With masks, each record also has ``"segmentation": {"size": [H, W], "counts": str}`` (the COCO / LVIS
        results format). ``image_id`` defaults to ``frame.image_id``, the frame's 1-based position over all the
        frames of its ``predict`` call (see :class:`FrameInfo`), so the results of one call concatenated have
        distinct integer ids, as ``pycocotools`` ``COCO.loadRes`` needs; pass ``image_id`` to use a dataset's own
        ids. Category ids default to ``label + 1`` (1-based, in ``class_names`` order, as the ImageNet VID and
        COCO-VID annotation files number them).
        """
        if image_id is None:
            image_id = self.frame.image_id
            if image_id is None:
                raise VfeHubError(f"the detections of {self.frame.name} have no image id (their FrameInfo was built "
                                  "without one): pass to_json(image_id=...)")
        boxes = self.boxes.detach().cpu().double().numpy()
        if self.amodal_boxes is not None:
            modal, boxes = boxes, self.amodal_boxes.detach().cpu().double().numpy()
        tracks = self.track_ids.tolist() if self.track_ids is not None else None
        offset = 0 if video_id is None else int(video_id) * 10**8
        out = []
        for i, ((x1, y1, x2, y2), score, label) in enumerate(zip(boxes, self.scores.tolist(), self.labels.tolist())):
            category = category_ids[label] if category_ids is not None else label + 1
            out.append({"image_id": image_id, "category_id": int(category),
                        "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)})
            if self.amodal_boxes is not None:
                mx1, my1, mx2, my2 = modal[i]
                out[-1]["modal_bbox"] = [float(mx1), float(my1), float(mx2 - mx1), float(my2 - my1)]
            if tracks is not None:
                out[-1]["track_id"] = tracks[i] + offset
                if video_id is not None:
                    out[-1]["video_id"] = int(video_id)
            if self.masks is not None:
                size, counts = self.masks[i]["size"], self.masks[i]["counts"]
                out[-1]["segmentation"] = {"size": [int(n) for n in size], "counts": counts.decode("ascii")}
        return out

    def to_records(self) -> list[dict[str, Any]]:
        """One flat dict per detection, for tables: ``frame`` (the frame's name), ``sequence``, ``index``,
        ``image_id`` (as in :meth:`to_json`), the box ``x1, y1, x2, y2`` in input pixels, ``score``, ``label``
        (index into ``class_names``), ``class_name``, and ``track_id`` when the detections are tracked."""
        f = self.frame
        tracks = [[int(t)] for t in self.track_ids.tolist()] if self.track_ids is not None else [[]] * len(self)
        rows = zip(self.boxes.detach().cpu().double().tolist(), self.scores.tolist(), self.labels.tolist(), tracks)
        return [dict(zip(self._record_columns(), (f.name, f.sequence, f.index, f.image_id, *box, score, label,
                                                  self.class_names[label], *track)))
                for box, score, label, track in rows]

    def to_df(self):
        """:meth:`to_records` as a ``pandas.DataFrame``, one row per detection, with its columns even when there
        is none (``pandas.concat`` the frames of a video). Needs pandas: ``pip install 'vfe_hub[pandas]'``."""
        pandas = _optional("pandas", "pandas")
        return pandas.DataFrame(self.to_records(), columns=self._record_columns())

    def _record_columns(self) -> list[str]:
        return [*_RECORD_COLUMNS, *(["track_id"] if self.track_ids is not None else [])]

    def to_supervision(self):
        """These detections as a ``supervision.Detections``: ``xyxy (N, 4)`` float32, ``confidence (N,)`` float32,
        ``class_id (N,)`` int64 (the label), ``data["class_name"]`` the names as a numpy array, ``mask (N, H, W)``
        bool when there are masks, ``tracker_id (N,)`` int64 when there are track ids, all on the CPU. Needs
        supervision: ``pip install 'vfe_hub[supervision]'``."""
        sv = _optional("supervision", "supervision")
        labels = self.labels.detach().cpu().numpy().astype(np.int64)
        return sv.Detections(
            xyxy=self.boxes.detach().cpu().float().numpy().reshape(-1, 4),
            mask=self.mask_tensor().cpu().numpy() if self.masks is not None else None,
            confidence=self.scores.detach().cpu().float().numpy(),
            class_id=labels,
            tracker_id=self.track_ids.detach().cpu().numpy().astype(np.int64) if self.track_ids is not None else None,
            data={"class_name": np.array([self.class_names[i] for i in labels], dtype=str)},
        )

    def plot(self, image: Any = None, score_thr: float = 0.3, line_width: int = 2, margin: int | None = None):
        """The frame with its detections drawn (a ``PIL.Image``), masks as translucent fills under the boxes.

        ``image`` defaults to the frame re-read from ``frame.source``; pass it for in-memory inputs. Colours follow
        the class, or the track for tracked detections (labelled ``#id``), the same in every frame. With amodal
        boxes, those are drawn labelled and the visible boxes thin; where amodal boxes leave the frame the image
        sits on a grey canvas large enough to show them (at most one image size more on each side).
        """
        from PIL import Image
        from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

        from .io import read_frame

        if image is None:
            if self.frame.source is None:
                raise ValueError(f"{self.frame.name} was given in memory; pass it again: plot(image).")
            image = read_frame(self.frame.source)
        array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
        keep = self.scores >= score_thr
        labels = [f"{self.class_names[int(l)]} {s:.2f}" for l, s in zip(self.labels[keep], self.scores[keep])]
        if self.track_ids is not None:
            labels = [f"#{int(t)} {text}" for t, text in zip(self.track_ids[keep], labels)]
        keys = self.labels[keep] if self.track_ids is None else self.track_ids[keep]
        colours = [_colour(int(k)) for k in keys]
        canvas = torch.from_numpy(array.copy()).permute(2, 0, 1)
        boxes = self.boxes[keep].detach().cpu().float()
        if self.amodal_boxes is not None and (colours or margin is not None):
            amodal = self.amodal_boxes[keep].detach().cpu().float()
            canvas, (left, top) = _padded_canvas(canvas, amodal, margin)
            shift = torch.tensor([left, top, left, top], dtype=torch.float32)
            if colours:
                canvas = draw_bounding_boxes(canvas, boxes + shift, colors=colours, width=1)
            boxes = amodal + shift
        if colours:  # with nothing kept the image comes back as it is (torchvision warns on drawing no box)
            if self.masks is not None:
                masks = _decode_masks([m for m, k in zip(self.masks, keep.tolist()) if k], self.frame.size)
                canvas = draw_segmentation_masks(canvas, masks, alpha=0.5, colors=colours)
            canvas = draw_bounding_boxes(canvas, boxes, labels=labels, colors=colours, width=line_width)
        return Image.fromarray(canvas.permute(1, 2, 0).numpy())


def _padded_canvas(image: torch.Tensor, boxes: torch.Tensor,
                   margin: int | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """``image (3, H, W)`` uint8 on a grey canvas reaching every box of ``boxes (K, 4)`` (xyxy, image pixels), at
    most one image size beyond each side, or ``margin`` pixels beyond every side; returns the canvas and the
    image's ``(left, top)`` offset in it."""
    _, h, w = image.shape
    if margin is not None:
        left = top = right = bottom = margin
    else:
        x1, y1 = boxes[:, 0].min().item(), boxes[:, 1].min().item()
        x2, y2 = boxes[:, 2].max().item(), boxes[:, 3].max().item()
        left, top = min(max(0, math.ceil(-x1)), w), min(max(0, math.ceil(-y1)), h)
        right, bottom = min(max(0, math.ceil(x2 - w)), w), min(max(0, math.ceil(y2 - h)), h)
    canvas = torch.full((3, top + h + bottom, left + w + right), 128, dtype=torch.uint8)
    canvas[:, top:top + h, left:left + w] = image
    return canvas, (left, top)


def _optional(module: str, extra: str) -> Any:
    """Import an optional dependency, or say which extra of vfe_hub installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(f"{module} is not installed; install it with pip install 'vfe_hub[{extra}]' "
                                     f"(or pip install {module})") from error


def _decode_masks(rles: list[dict], size: tuple[int, int]) -> torch.Tensor:
    """pycocotools RLEs of ``size = (H, W)`` to ``(N, H, W)`` bool on the CPU."""
    from pycocotools import mask as mask_utils

    if not rles:
        return torch.zeros(0, *size, dtype=torch.bool)
    return torch.from_numpy(mask_utils.decode(rles)).permute(2, 0, 1).bool()  # decode gives (H, W, N) uint8


def _colour(key: int) -> tuple[int, int, int]:
    """A stable, distinct colour per class index or track id (golden-ratio hue steps)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((key * 0.618034) % 1.0, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)
