"""BAGS: Balanced Group Softmax (Li et al., CVPR 2020) on a Hybrid Task Cascade, ResNeXt-101 64x4d with DCN.

Architecture (BAGS's ``gs_htc_dconv_c3-c5_mstrain_400_1400_x101_64x4d_fpn_20e_lvis``, mmdetection v1 conventions,
pixel-inclusive boxes: widths ``x2 - x1 + 1`` everywhere): ResNeXt-101 64x4d (pytorch style, frozen BN) with a
DCNv1 3x3 conv in every block of c3-c5 -> FPN P2-P6 (P6 a stride-2 max pool) -> RPN (3 rounded legacy anchors per
cell; per level the 1000 best, NMS 0.7, 1000 kept) -> HTC:

- a fused semantic branch (:class:`~vfe_hub.layers.htc.FusedSemanticHead`) whose stride-8 embedding, pooled
  14x14 and averaged down to 7x7, is **added** to the 7x7 box RoI features (and, at 14x14, to the mask RoI
  features); RoIAlign is mmdetection v1's (sampling 2, not aligned, box end ``x2 + 1``, RoIs narrower than one
  feature pixel kept at their size: :func:`vfe_hub.layers.roi.roi_align_inclusive`);
- three box stages (two 1024-d fcs, 1236 classification logits, one class-agnostic box with stds
  0.1/0.2, 0.05/0.1, 0.033/0.067), stage ``k + 1`` pooling stage ``k``'s boxes clipped to the image;
- the **raw logits** of the three stages averaged, then the balanced group softmax
  (:mod:`vfe_hub.layers.group_softmax`: four groups by LVIS v0.5 training instance count, scores
  ``p_fg * p_in_group``, "others" dropped, not renormalised); the boxes are the last stage's;
- boxes divided by the resize factor, every (box, class) pair above the protocol's score threshold, class-wise
  NMS (IoU over ``+1`` widths), the protocol's top N;
- masks (``lvis`` protocol): the three HTC mask heads with information flow run on 14x14 RoIs of the final
  boxes; each head's mask of the detected class goes through a sigmoid and the three are averaged; pasted into
  the image as mmdetection v1 does (truncated box, bilinear resize, ``> 0.5``).

Protocols: ``lvis`` (the LVIS v0.5 evaluation: score > 1e-3, NMS 0.5, 300 detections, masks) and ``tao`` (the
detections the TAO 2020 challenge winner fed its trackers: score > 1e-5, NMS 0.95, 500 detections, boxes only;
masks are not computed).

The group tables (which logits hold which class) are not in the checkpoint: they come with the weights as
``groups.safetensors`` (``label2binlabel``, ``pred_slice``), written by ``vfe-hub convert --groups`` from BAGS's
``label2binlabel.pt`` / ``pred_slice_with0.pt`` or from the instance counts of ``lvis_v0.5_train.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import hub
from ..convert import convert_state_dict, table_for
from ..errors import ConversionError, InputError, WeightsNotFoundError
from ..layers.anchors import AnchorGenerator
from ..layers.box_coder import DeltaXYWHCoder, clip_boxes
from ..layers.cascade import CascadeBoxHeads
from ..layers.group_softmax import (GroupTableError, check_group_tables, group_softmax_scores, groups_from_counts,
                                    tables_from_groups)
from ..layers.htc import FusedSemanticHead, HTCMaskHead, info_flow_mask_probs
from ..layers.mask_head import paste_masks_inclusive
from ..layers.necks import FPN
from ..layers.nms import select_per_class
from ..layers.resnet import ResNet
from ..layers.roi import boxes_to_rois, pool_rois, unique_rois
from ..layers.rpn import ProposalSelector, RPNHead
from ..registry import ModelSpec
from ..structures import Detections, FrameInfo, ImageBatch
from ..weights import Converted, LoadedWeights, conversion_hint
from .base import Detector

STRIDES = (4, 8, 16, 32, 64)
SEMANTIC_STRIDE = 8
STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
#: the code base of the released checkpoint (the BalancedGroupSoftmax fork of mmdetection v1.0rc0)
ORIGINAL_FORMAT = "mmdet_v1"
GROUPS_FILE = "groups.safetensors"
MASK_THR = 0.5


@dataclass(frozen=True)
class Protocol:
    """Test-time post-processing: pairs with a score above ``score_thr``, class-wise NMS at ``iou``, the best
    ``max_per_img``; ``masks`` whether masks are computed."""

    score_thr: float
    iou: float
    max_per_img: int
    masks: bool


PROTOCOLS = {"lvis": Protocol(1e-3, 0.5, 300, True), "tao": Protocol(1e-5, 0.95, 500, False)}


class Bags(Detector):
    """BAGS GS-HTC; see the module docstring. ``group_sizes`` are the four groups' class counts (they fix the
    classifier's width, ``2 + sum(n + 1)``); ``max_per_img`` caps every protocol's number of detections (``None``:
    the protocol's own); ``depth`` is the ResNeXt's (101 released; 50 keeps tests of the code around it fast)."""

    predict_options = {"protocol": "lvis", "masks": True}

    def __init__(self, spec: ModelSpec, num_classes: int = 1230, group_sizes: tuple[int, ...] = (294, 453, 302, 181),
                 proposals: int = 1000, max_per_img: int | None = None, depth: int = 101) -> None:
        super().__init__(spec)
        self._category_ids = list(range(1, len(spec.classes) + 1))  # LVIS v0.5: ids 1..1230, the classes in id order
        if sum(group_sizes) != num_classes:
            raise ValueError(f"group sizes {group_sizes} do not add up to {num_classes} classes")
        self.num_classes = num_classes
        self.logit_width = 2 + sum(n + 1 for n in group_sizes)
        self.max_per_img = max_per_img
        self.backbone = ResNet(depth, groups=64, base_width=4, deform_stages=(False, True, True, True))
        self.neck = FPN([256, 512, 1024, 2048], 256, num_outs=5)
        anchors = AnchorGenerator(STRIDES, ratios=(0.5, 1.0, 2.0), scales=(8,), legacy=True)
        self.rpn = RPNHead(256, 256, anchors.num_anchors)
        self.proposals = ProposalSelector(anchors, nms_pre=1000, iou=0.7, max_per_img=proposals, legacy=True)
        self.semantic_head = FusedSemanticHead()
        self.box_heads = CascadeBoxHeads([DeltaXYWHCoder(stds, legacy=True) for stds in STAGE_STDS],
                                         self.logit_width - 1, pixel_inclusive=True)
        self.mask_heads = nn.ModuleList(HTCMaskHead(num_classes=num_classes + 1) for _ in STAGE_STDS)
        # stand-in tables for a randomly initialised network (groups of consecutive classes); weights bring theirs
        starts = [1 + sum(group_sizes[:g]) for g in range(len(group_sizes))]
        label2binlabel, pred_slice = tables_from_groups([range(s, s + n) for s, n in zip(starts, group_sizes)])
        self.register_buffer("label2binlabel", label2binlabel, persistent=False)
        self.register_buffer("pred_slice", pred_slice, persistent=False)

    # ------------------------------------------------------------------------------------------------ weights

    def load_weights(self, weights: LoadedWeights) -> None:
        """Load the weights and their group tables (``groups.safetensors`` beside them)."""
        if GROUPS_FILE not in weights.files:
            raise WeightsNotFoundError(
                f"{self.spec.name} needs the group tables ({GROUPS_FILE}) that come with its converted weights, and "
                f"{weights.provenance['weights']} has none: load the folder written by `vfe-hub convert`."
                + conversion_hint(self.spec))
        path = weights.files.path(GROUPS_FILE)
        tables = hub.read_safetensors(path)
        self.set_group_tables(tables.get("label2binlabel"), tables.get("pred_slice"), str(path))
        super().load_weights(weights)

    def set_group_tables(self, label2binlabel: torch.Tensor | None, pred_slice: torch.Tensor | None,
                         what: str = "the group tables") -> None:
        """Use these tables (checked against the classifier's width and the number of classes)."""
        if label2binlabel is None or pred_slice is None:
            raise GroupTableError(f"{what} must hold label2binlabel and pred_slice.")
        check_group_tables(label2binlabel, pred_slice, self.logit_width, what)
        if label2binlabel.shape[1] != self.num_classes + 1:
            raise GroupTableError(f"{what}: label2binlabel covers {label2binlabel.shape[1] - 1} classes; the model "
                                  f"has {self.num_classes}.")
        device = self.label2binlabel.device
        self.label2binlabel = label2binlabel.long().to(device)
        self.pred_slice = pred_slice.long().to(device)

    def companion_files(self) -> dict[str, dict[str, torch.Tensor]]:
        """The files that travel with the weights: ``groups.safetensors`` with the current group tables."""
        return {GROUPS_FILE: {"label2binlabel": self.label2binlabel.cpu(), "pred_slice": self.pred_slice.cpu()}}

    # ------------------------------------------------------------------------------------------------ inference

    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super()._check_options(options)
        self._check_protocol(options["protocol"], PROTOCOLS)
        return options

    def write_tao_detections(self, frame_list: str | Path, root: str | Path, out_dir: str | Path, *,
                             batch_size: int = 1, progress: bool | None = None) -> int:
        """Detections of the TAO frames named in ``frame_list`` (one path per line, relative to ``root``, e.g.
        ``val/YFCC100M/v_.../frame0001.jpg``: the TAO challenge winner's ``{split}_img_list.txt``) under the ``tao``
        protocol, one JSON file per frame at ``out_dir/<path>.json`` with the fields of that release's per-frame
        results: ``{"instances": {"pred_boxes": [[x1, y1, x2, y2], ...] (frame pixels), "scores": [...],
        "pred_classes": [...] (0-based LVIS v0.5 labels: category id - 1)}}``.

        Restartable: frames whose file exists are skipped, and each file is written whole (a temporary file
        renamed into place), so an interrupted run leaves only complete files. Returns the number of files written.
        """
        root, out_dir = Path(root), Path(out_dir)
        try:
            names = [line.strip() for line in Path(frame_list).read_text().splitlines() if line.strip()]
        except OSError as e:
            raise InputError(f"frame_list {frame_list} cannot be read ({e}): pass a text file of frame paths.") from e
        todo = [n for n in names if not (out_dir / f"{n}.json").is_file()]
        if not todo:
            return 0
        results = self.predict([str(root / n) for n in todo], batch_size=batch_size, progress=progress,
                               stream=True, protocol="tao")
        for name, det in zip(todo, results, strict=True):
            inclusive = det.boxes - det.boxes.new_tensor([0.0, 0.0, 1.0, 1.0])  # the original's x2, y2
            record = {"instances": {"pred_boxes": inclusive.tolist(), "scores": det.scores.tolist(),
                                    "pred_classes": det.labels.tolist()}}
            hub.atomic_write(out_dir / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(record)))
        return len(todo)

    def _pool(self, feats: list[torch.Tensor], semantic: torch.Tensor, rois: torch.Tensor, size: int) -> torch.Tensor:
        """RoI features ``(K, 256, size, size)`` of pixel-inclusive ``rois (K, 5)`` (see :func:`.roi.boxes_to_rois`):
        mmdetection v1's RoIAlign and level rule (``inclusive``: ends at ``(x2 + 1) * s``, RoIs narrower than a
        feature pixel keep their size) on P2-P5, plus the semantic embedding's 14x14 RoIs (averaged down to
        ``size``)."""
        pooled = pool_rois(feats[:4], rois, STRIDES[:4], output_size=size, sampling_ratio=2, inclusive=True)
        semantic = pool_rois([semantic], rois, (SEMANTIC_STRIDE,), output_size=14, sampling_ratio=2, inclusive=True)
        return pooled + (semantic if size == 14 else F.adaptive_avg_pool2d(semantic, size))

    def forward(self, batch: ImageBatch, protocol: str = "lvis", masks: bool = True) -> list[Detections]:
        """Detections (with masks under ``lvis`` unless ``masks=False``) for the images of ``batch``."""
        rules = PROTOCOLS[protocol]
        limit = rules.max_per_img if self.max_per_img is None else min(rules.max_per_img, self.max_per_img)
        feats = self.neck(self.backbone(batch.images))
        proposals = [boxes for boxes, _ in self.proposals(self.rpn(feats), batch.image_sizes)]
        semantic = self.semantic_head(feats)
        stages = self.box_heads(lambda b: self._pool(feats, semantic, boxes_to_rois(b), 7), proposals,
                                batch.image_sizes)
        logits = torch.stack([stage.logits.float() for stage in stages]).mean(0)
        scores = group_softmax_scores(logits, self.label2binlabel, self.pred_slice)[:, 1:]
        dets = []
        for i, s in enumerate(scores.split([len(p) for p in proposals])):
            h, w = batch.image_sizes[i]
            factor = _scale_factor(batch.frames[i], self.spec)
            boxes = clip_boxes(stages[-1].boxes[i], (h - 1, w - 1)) / factor
            rows, labels = select_per_class(boxes, s, rules.score_thr, rules.iou, limit, offset=1.0)
            dets.append((boxes[rows], s[rows, labels], labels, factor))
        binary = self._masks(feats, semantic, dets, batch) if rules.masks and masks else [None] * len(dets)
        # pixel-inclusive boxes reported by their pixel edges: x2 - x1 is the original's exported width (``+ 1``);
        # not clipped to the input image, as the original's export (spec.preprocess.clip_to_input)
        return [self.make_detections(frame, boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0]), s, labels, masks=m)
                for frame, (boxes, s, labels, _), m in zip(batch.frames, dets, binary)]

    def _masks(self, feats: list[torch.Tensor], semantic: torch.Tensor, dets: list, batch: ImageBatch) -> list:
        """Binary masks ``(N_i, H_i, W_i)`` in input pixels for each image's final boxes (HTC's mask ensemble)."""
        resized = [boxes * factor for boxes, _, _, factor in dets]
        labels = torch.cat([d[2] for d in dets]) + 1  # channel 0 of the mask logits is the background
        rois, rows = unique_rois(boxes_to_rois(resized))  # the classes kept for one proposal share its box
        probs = info_flow_mask_probs(self.mask_heads, self._pool(feats, semantic, rois, 14), labels, rows)
        return [paste_masks_inclusive(p, boxes, frame.size, MASK_THR)
                for p, (boxes, _, _, _), frame in zip(probs.split([len(d[0]) for d in dets]), dets, batch.frames)]


def _scale_factor(frame: FrameInfo, spec: ModelSpec) -> float:
    """mmdetection v1's single resize factor of a frame, ``min(max_size / long edge, min_size / short edge)``."""
    h, w = frame.size
    rule = spec.preprocess
    return min(rule.max_size / max(h, w), rule.min_size / min(h, w))


def build(spec: ModelSpec, **overrides: Any) -> Bags:
    """A BAGS network for ``spec`` (random weights, eval mode); ``overrides`` replace entries of ``spec.config``."""
    config = {**spec.config, **overrides}
    config["group_sizes"] = tuple(config.get("group_sizes", (294, 453, 302, 181)))
    return Bags(spec, **config).eval()


# ---------------------------------------------------------------------------------------------------- conversion


def _read_int_tensor(path: Path) -> torch.Tensor:
    tensor = hub.load_checkpoint(path)
    if not isinstance(tensor, torch.Tensor) or tensor.is_floating_point():
        raise ConversionError(f"--groups: {path} holds no integer tensor (BAGS's label2binlabel.pt and "
                              f"pred_slice_with0.pt are integer tensors).")
    return tensor.long()


def read_groups(path: Path, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(label2binlabel, pred_slice)`` from ``--groups``: a folder with BAGS's ``label2binlabel.pt`` and
    ``pred_slice_with0.pt``, or an LVIS v0.5 annotation file with ``instance_count`` per category (the train set's,
    ``lvis_v0.5_train.json``), whose categories, in the file's order, are grouped as BAGS's ``get_cate_gs``."""
    if path.is_dir():
        files = [path / "label2binlabel.pt", path / "pred_slice_with0.pt"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ConversionError(f"--groups {path}: missing {', '.join(missing)} (BAGS's intermediate files).")
        return _read_int_tensor(files[0]), _read_int_tensor(files[1])
    try:
        categories = json.loads(path.read_text())["categories"]
        ids = [int(c["id"]) for c in categories]
        counts = [int(c["instance_count"]) for c in categories]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConversionError(f"--groups {path}: neither a folder of BAGS's group files nor an LVIS v0.5 annotation "
                              f"file whose categories have instance_count ({type(e).__name__}: {e}).") from e
    if sorted(ids) != list(range(1, num_classes + 1)):
        raise ConversionError(f"--groups {path} has {len(ids)} categories, not LVIS v0.5's ids 1..{num_classes}: "
                              f"pass lvis_v0.5_train.json.")
    group_of = groups_from_counts(counts)
    return tables_from_groups([[i for i, g in zip(ids, group_of) if g == k] for k in range(1, 5)])


def convert(model: Bags, path: Path, *, groups: str | Path | None = None) -> Converted:
    """Convert BAGS's release: the mmcv checkpoint ``path`` (read without running code of the file,
    :func:`vfe_hub.hub.load_checkpoint`) and the group tables from ``groups`` (:func:`read_groups`),
    checked against the model's classifier and group sizes. ``num_batches_tracked`` and any optimizer state are
    dropped (and reported)."""
    if groups is None:
        raise ConversionError(f"{model.spec.name} is converted from its checkpoint and its group tables (--groups)."
                              + conversion_hint(model.spec))
    groups = Path(groups)
    label2binlabel, pred_slice = read_groups(groups, model.num_classes)
    expected_slices = model.pred_slice
    model.set_group_tables(label2binlabel, pred_slice, f"--groups {groups}")
    if not torch.equal(pred_slice.long(), expected_slices.cpu()):
        raise ConversionError(f"--groups {groups}: slices {pred_slice.tolist()} differ from the released model's "
                              f"{expected_slices.tolist()} (group sizes {model.spec.config.get('group_sizes')}).")
    checkpoint = hub.load_checkpoint(path)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state, dropped = convert_state_dict(hub.state_dict_of(checkpoint, path), table_for(ORIGINAL_FORMAT), expected)
    if isinstance(checkpoint, dict) and "optimizer" in checkpoint:
        dropped.append("optimizer")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    record = {"file": groups.name} if groups.is_dir() else {"file": groups.name, "sha256": hub.sha256_of(groups)}
    return Converted(state, ORIGINAL_FORMAT, {"classes": list(model.class_names), "inputs": {"groups": record}},
                     model.companion_files(), dropped)
