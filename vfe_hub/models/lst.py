"""LST, Learning to Segment the Tail (Hu et al., CVPR 2020): a Mask R-CNN R50-FPN on maskrcnn-benchmark
conventions, trained on LVIS v0.5 in seven phases (the 270 most frequent classes, then six steps of 160 rarer ones).

Architecture (inference is the last phase's training graph): ResNet-50 with the stride on each block's first 1x1
conv and frozen BN **without eps**; FPN P2-P5 plus P6 by max-pooling; an RPN with 3 anchors per cell whose base
anchors are buffers of the checkpoint (Detectron's rounded ``generate_anchors``), per level the 1000 best by
sigmoid score, NMS 0.7, then the 1000 best per image; RoIAlign 7x7 (sampling 2, not aligned) on P2-P5. The box
head is fc6 + ReLU, fc7 **without** ReLU; a cosine classifier (``scale_cls`` times the cosine of fc7 and each
class's weight row, no bias) gives the softmax over background + C classes, and the class-specific regressor
(``bbox_pred`` on ReLU(fc7), weights 10/10/5/5, ``dw, dh`` clamped at log(1000/16)) one box per class. Every
(box, class) with a score above 0 enters class-wise NMS 0.5; 300 detections per image. The mask branch pools
14x14 RoIs of the final boxes, runs 4 conv3x3 + ReLU and a 2x2 deconv + ReLU (28x28), and predicts a class's
logits as the 1x1 conv with that class's filter plus ``MLP_mask`` (a linear layer from the flattened 256x28x28
features to one 28x28 map shared by all classes). The filters come from the box classifier by the weight
transfer ``bbox2mask`` (Linear 1024-1024, LeakyReLU 0.01, Linear 1024-256, LeakyReLU 0.01) applied to the raw
classifier rows; they are constant at inference, so they are computed once when the weights load. Masks are
pasted by maskrcnn-benchmark's ``Masker`` (one cell of padding, threshold 0.5).

Boxes are pixel-inclusive inside the model (maskrcnn-benchmark's "+1" widths); detections report the pixel edges
(``x2 + 1``), so a box's ``x2 - x1`` is the original's exported width. As the original, boxes are clipped to the
last resized pixel (``W' - 1``) before they are scaled back, and not to the input image afterwards: on upscaled
images a box at the right or bottom edge passes it by up to ``1 - W / W'`` pixel, as in the original's export.

Class order: label ``k`` is the ``k``-th entry of LST's frequency-sorted list of LVIS v0.5 category ids
(``lvis_sorted_id_all.json``); the list comes with the weights (``config.json``), and a phase's checkpoint has
its first ``num_classes - 1`` classes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import hub
from ..convert import convert_state_dict, table_for
from ..errors import ConversionError, WeightsNotFoundError
from ..layers.anchors import AnchorGenerator, detectron_cell_anchors
from ..layers.box_coder import Box2BoxCoder
from ..layers.box_head import ConvFCBoxHead, CosineClassifier, detect
from ..layers.mask_head import FCNMaskHead, paste_masks_padded
from ..layers.necks import FPN
from ..layers.precision import Float32Linear, float32
from ..layers.resnet import ResNet
from ..layers.roi import boxes_to_rois, pool_rois
from ..layers.rpn import ProposalSelector, RPNHead
from ..registry import ModelSpec, lvis_v05_categories
from ..structures import Detections, ImageBatch
from ..weights import Converted, LoadedWeights, conversion_hint, empty_model
from .base import Detector

STRIDES = (4, 8, 16, 32, 64)
ANCHOR_SIZES = (32, 64, 128, 256, 512)
RATIOS = (0.5, 1.0, 2.0)
MASK_SIZE = 28
SCORE_THR, NMS_IOU, MASK_THR = 0.0, 0.5, 0.5
#: background + the 1230 LVIS v0.5 classes (the final phase)
FINAL_CLASSES = 1231
ORIGINAL_FORMAT = "maskrcnn_benchmark"
_CLS_KEY = "roi_heads.box.predictor.cls_score.weight"


class CellAnchors(nn.Module):
    """The RPN's base anchors, one ``(A, 4)`` pixel-inclusive buffer per level (``0`` ... ``4``), as the checkpoint
    stores them; initialised with Detectron's ``generate_anchors``."""

    def __init__(self) -> None:
        super().__init__()
        for level, (stride, size) in enumerate(zip(STRIDES, ANCHOR_SIZES)):
            self.register_buffer(str(level), detectron_cell_anchors(stride, size, RATIOS))

    def generator(self) -> AnchorGenerator:
        return AnchorGenerator.from_base(STRIDES, list(self.buffers()))


class LST(Detector):
    """LST Mask R-CNN R50-FPN with ``num_classes`` outputs (background first); see the module docstring."""

    predict_options = {"masks": True}

    def __init__(self, spec: ModelSpec, num_classes: int = FINAL_CLASSES, proposals: int = 1000,
                 max_per_img: int = 300) -> None:
        super().__init__(spec)
        self.backbone = ResNet(50, style="caffe", bn_eps=0.0)
        self.neck = FPN([256, 512, 1024, 2048], 256, num_outs=5, extra="maxpool")
        self.rpn = RPNHead(256, 256, len(RATIOS))
        self.cell_anchors = CellAnchors()
        self.box_head = ConvFCBoxHead(256, 7, None, num_fcs=2, with_reg=False, last_relu=False)
        self.classifier = CosineClassifier(1024, num_classes)
        self.bbox_pred = Float32Linear(1024, 4 * num_classes)
        self.mask_head = FCNMaskHead(num_classes=None)
        self.bbox2mask = nn.Sequential(nn.Linear(1024, 1024), nn.LeakyReLU(0.01), nn.Linear(1024, 256),
                                       nn.LeakyReLU(0.01))
        self.mlp_mask = nn.Linear(256 * MASK_SIZE * MASK_SIZE, MASK_SIZE * MASK_SIZE)
        self.register_buffer("mask_filters", torch.zeros(num_classes, 256), persistent=False)
        self.coder = Box2BoxCoder((10.0, 10.0, 5.0, 5.0), legacy=True)
        self.proposals, self.max_per_img = proposals, max_per_img
        # LVIS v0.5 ids in the weights' frequency-sorted order; placeholders until the weights load
        self._category_ids = list(range(1, num_classes))
        self._class_names = tuple(f"class_{i}" for i in self._category_ids)
        self.update_mask_filters()
        self.register_load_state_dict_post_hook(lambda module, incompatible: module.update_mask_filters())

    def update_mask_filters(self) -> None:
        """Compute the class mask filters ``(C, 256)`` = ``bbox2mask(classifier.weight)`` (the raw, unnormalised
        classifier rows), in float32; done at construction and after every ``load_state_dict``."""
        if self.classifier.weight.is_meta:
            return
        with torch.no_grad():
            self.mask_filters = self.bbox2mask(self.classifier.weight.float()).to(self.mask_filters.device)

    def load_weights(self, weights: LoadedWeights) -> None:
        """Load the weights and the class order that comes with them (``config.json``: ``category_ids``)."""
        ids = weights.config.get("category_ids")
        if ids is None:
            raise WeightsNotFoundError(
                f"{self.spec.name} takes its class order (LVIS v0.5 ids sorted by frequency) from the config.json "
                f"that comes with its weights, and {weights.provenance['weights']} has none: load the folder written "
                f"by `vfe-hub convert` (weights=<folder>)." + conversion_hint(self.spec))
        if len(ids) != self.classifier.weight.shape[0] - 1:
            raise WeightsNotFoundError(f"{weights.provenance['weights']}: config.json lists {len(ids)} category ids "
                                       f"for {self.classifier.weight.shape[0] - 1} classes.")
        super().load_weights(weights)
        names = {c["id"]: c["name"] for c in lvis_v05_categories()}
        self._category_ids, self._class_names = list(ids), tuple(names[i] for i in ids)

    # ------------------------------------------------------------------------------------------------ inference

    def forward(self, batch: ImageBatch, masks: bool = True) -> list[Detections]:
        """Detections with masks (``masks=False``: without) for the images of ``batch``."""
        feats = self.neck(self.backbone(batch.images))
        selector = ProposalSelector(self.cell_anchors.generator(), nms_pre=1000, iou=0.7,
                                    max_per_img=self.proposals, legacy=True, coder=Box2BoxCoder(legacy=True))
        proposals = [boxes for boxes, _ in selector(self.rpn(feats), batch.image_sizes)]
        # maskrcnn-benchmark's ROIAlign: ends at x2 * s, sizes at least one feature pixel (torchvision's unaligned rule)
        pooled = pool_rois(feats[:4], boxes_to_rois(proposals), STRIDES[:4], output_size=7, sampling_ratio=2,
                           aligned=False, legacy=True)
        fc7 = self.box_head.embed(pooled)
        scores = self.classifier(fc7).float().softmax(dim=1)[:, 1:]
        deltas = self.bbox_pred(torch.relu(fc7))[:, 4:]
        counts = [len(p) for p in proposals]
        dets = [detect(boxes, s, d, self.coder, size, (1.0, 1.0), SCORE_THR, NMS_IOU, self.max_per_img, legacy=True)
                for boxes, s, d, size in zip(proposals, scores.split(counts), deltas.split(counts),
                                             batch.image_sizes)]
        binary = (self._masks(feats, [boxes for boxes, _, _ in dets], [labels for _, _, labels in dets], batch)
                  if masks else [None] * len(dets))
        out = []
        for frame, (boxes, s, labels), m, (sx, sy) in zip(batch.frames, dets, binary, batch.scales):
            edges = boxes / boxes.new_tensor([sx, sy, sx, sy]) + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
            out.append(self.make_detections(frame, edges, s, labels, masks=m))
        return out

    @float32("mask logits")
    def mask_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mask logits ``(K, 28, 28)`` of the class ``labels (K,)`` (0-based, no background) from the upsampled
        mask features ``(K, 256, 28, 28)``: that class's filter as a 1x1 conv plus ``MLP_mask`` of the flattened
        features (C, H, W order), in float32."""
        filters = self.mask_filters[labels + 1].to(features.device)
        transfer = torch.einsum("kchw,kc->khw", features, filters)
        shared = F.linear(features.flatten(1), self.mlp_mask.weight.float(), self.mlp_mask.bias.float())
        return transfer + shared.view(-1, MASK_SIZE, MASK_SIZE)

    def _masks(self, feats: list[torch.Tensor], boxes: list[torch.Tensor], labels: list[torch.Tensor],
               batch: ImageBatch) -> list[torch.Tensor]:
        """Binary masks ``(N_i, H_i, W_i)`` in input pixels for the final pixel-inclusive ``boxes`` (resized-image
        pixels) of each image."""
        pooled = pool_rois(feats[:4], boxes_to_rois(boxes), STRIDES[:4], output_size=14, sampling_ratio=2,
                           aligned=False, legacy=True)
        probs = self.mask_logits(self.mask_head.features(pooled), torch.cat(labels)).sigmoid()
        return [paste_masks_padded(p, b / b.new_tensor([sx, sy, sx, sy]), frame.size, MASK_THR)
                for p, b, (sx, sy), frame in zip(probs.split([len(b) for b in boxes]), boxes, batch.scales,
                                                 batch.frames)]


def build(spec: ModelSpec, **overrides: Any) -> LST:
    """An LST network for ``spec`` (random weights, eval mode); ``overrides`` replace entries of ``spec.config``."""
    return LST(spec, **{**spec.config, **overrides}).eval()


# ---------------------------------------------------------------------------------------------------- conversion


def read_sorted_ids(path: Path) -> list[int]:
    """LST's ``lvis_sorted_id_all.json``: the 1230 LVIS v0.5 category ids, each once, by decreasing frequency."""
    try:
        ids = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConversionError(f"--sorted-ids {path} cannot be read as JSON ({type(e).__name__}: {e}).") from e
    valid = {c["id"] for c in lvis_v05_categories()}
    if (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) != len(valid)
            or set(ids) != valid):
        raise ConversionError(f"--sorted-ids {path} must be a list of the {len(valid)} LVIS v0.5 category ids, each "
                              f"once (LST's jupyter_notebook/lvis_sorted_id_all.json).")
    return ids


def convert(model: LST, path: Path, *, sorted_ids: str | Path | None = None, fp16_mask: bool = False) -> Converted:
    """Convert a maskrcnn-benchmark checkpoint of any LST phase (``{"model": ...}``, keys with ``module.``; the
    number of classes is read from ``cls_score``) into vfe_hub's layout, with the class order ``sorted_ids``.

    The checkpoint is read without running code of the file (:func:`vfe_hub.hub.load_checkpoint`); its
    ``optimizer``, ``scheduler`` and ``iteration`` are dropped (reported). ``fp16_mask`` stores ``MLP_mask``'s
    weight in float16 (it is cast back to float32 when loaded; see the model card for the effect on the outputs).
    """
    spec = model.spec
    if sorted_ids is None:
        raise ConversionError(f"{spec.name} is converted from a checkpoint and LST's class order "
                              f"(--sorted-ids lvis_sorted_id_all.json)." + conversion_hint(spec))
    sorted_path = Path(sorted_ids)
    ids = read_sorted_ids(sorted_path)
    checkpoint = hub.load_checkpoint(path)
    original = hub.state_dict_of(checkpoint, path)
    if _CLS_KEY not in original:
        raise ConversionError(f"{path} has no {_CLS_KEY}: not a checkpoint of LST's cosine-classifier Mask R-CNN.")
    num_classes = original[_CLS_KEY].shape[0]
    if not 2 <= num_classes <= len(ids) + 1:
        raise ConversionError(f"{path}: {_CLS_KEY} has {num_classes} rows; LST has 2 to {len(ids) + 1} classes "
                              f"(background first).")
    if num_classes != model.classifier.weight.shape[0]:
        model = empty_model(spec, num_classes=num_classes)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state, dropped = convert_state_dict(original, table_for(ORIGINAL_FORMAT), expected)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if fp16_mask:
        state["mlp_mask.weight"] = state["mlp_mask.weight"].half()
    if isinstance(checkpoint, dict) and "model" in checkpoint:
        dropped += [f"{k} (checkpoint entry)" for k in checkpoint if k != "model"]
    config = {"config": {**spec.config, "num_classes": num_classes}, "category_ids": ids[:num_classes - 1],
              "mlp_mask_dtype": "float16" if fp16_mask else "float32",
              "inputs": {"sorted_ids": {"file": sorted_path.name, "sha256": hub.sha256_of(sorted_path)}}}
    return Converted(state, ORIGINAL_FORMAT, config, dropped=dropped)
