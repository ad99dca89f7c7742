"""GTR: a CenterNet2 detector (Res2Net-101 DCN, "DR2101") with the Global Tracking Transformer, on TAO.

Per frame (detectron2 conventions throughout): Res2Net-101 v1b 26w x 4s with modulated deformable 3x3 convs in
res4/res5 -> FPN P3-P7 (P6/P7 convs from P5) -> class-agnostic CenterNet proposals (score sqrt(sigmoid(heatmap)),
1000 per level, NMS 0.7, 300 kept) -> proposals with score > 0.4 only -> RoIAlignV2 7x7 on P3 ->
3 cascade stages (two 1024-d fcs, 1204 sigmoid logits with an untrained background column, class-agnostic deltas
with weights (10, 10, 5, 5) x stage) whose sigmoid scores are averaged and fused with the proposal score
(``sqrt(mean * proposal)``), the boxes of the last stage; and, for tracking, a 1024-d re-ID feature of each
proposal box (a second RoIAlign on P3 and two fcs).

Tracking: :class:`vfe_hub.tracking.GlobalTracker` associates each frame's detections with a 16-frame window
through the transformer, then classifies each track by its mean class scores (see that module). Under the
``paper`` protocol (GTR's evaluation) results come after the last frame of the video; under ``streaming`` with
every frame. Memory is bounded by the window on any video length (plus per-track class sums and, for ``paper``,
each frame's kept boxes).

Input: detectron2's ResizeShortestEdge(800, max 1333) size rule, RGB normalised with ImageNet's mean and std,
padded to a multiple of 32. The original resizes the uint8 image with PIL's bilinear filter and rounds to uint8;
here the resize is torch's bilinear on floats (:func:`vfe_hub.engine.preprocess`), the same interpolation for
TAO's upscaled frames without the rounding (at most half a grey level apart; PIL's filter also antialiases
when it shrinks an image, which this does not).

Amodal Expander (``amodal=True``, TAO-Amodal): the same network and tracker plus
:class:`vfe_hub.layers.amodal_expander.AmodalExpander`, one head shared by the three cascade stages that turns
each stage's modal deltas into amodal ones; the next stage is still fed the clipped modal boxes. The last stage's
amodal boxes, never clipped (the original's ``NOT_CLAMP_BOX``), enter the post-tracking NMS and become
``Detections.amodal_boxes``; ``Detections.boxes`` are the last stage's modal boxes, clipped.

Track ids of a result are ``track + class * 10000`` (one output track per class a track passes 0.05 for, as
GTR does); :meth:`vfe_hub.Detections.to_json` adds ``video_id * 10**8`` when given a video id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..layers.amodal_expander import AmodalExpander
from ..layers.association import TrackingTransformer
from ..layers.box_coder import Box2BoxCoder, clip_boxes
from ..layers.box_head import ConvFCBoxHead
from ..layers.cascade import CascadeBoxHeads
from ..layers.centernet import CenterNetHead, centernet_proposals
from ..layers.necks import FPN
from ..layers.res2net import Res2Net
from ..layers.roi import boxes_to_rois, pool_rois
from ..registry import ModelSpec
from ..session import VideoState
from ..structures import Detections, FrameInfo, ImageBatch
from ..tracking import GlobalTracker, TrackedFrame, TrackerConfig
from .base import VideoDetector

if TYPE_CHECKING:
    from ..io import Frame

STRIDES = (8, 16, 32, 64, 128)
#: detectron2's default cascade: the deltas of stage k are divided by these weights
STAGE_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))


@dataclass
class FrameDetections:
    """One frame's detector output before tracking, in resized pixels: ``boxes (N, 4)`` (last cascade stage,
    clipped to the image), ``cls_scores (N, C)`` fused class scores (background column dropped),
    ``features (N, D)``, and for the Amodal Expander ``amodal_boxes (N, 4)`` (never clipped)."""

    boxes: torch.Tensor
    cls_scores: torch.Tensor
    features: torch.Tensor
    amodal_boxes: torch.Tensor | None = None


@dataclass
class GtrState(VideoState):
    """A video's tracker, and (``paper``) each frame's :class:`FrameInfo`, scale and modal boxes, to place the
    results that come after the last frame."""

    tracker: GlobalTracker | None = None
    frames: list[tuple[FrameInfo, tuple[float, float], torch.Tensor]] = field(default_factory=list)


class Gtr(VideoDetector):
    paper_references = 0  # GTR's evaluation reads frames in order, with no reference frames

    def __init__(self, spec: ModelSpec, num_classes: int = 1203, proposals: int = 300, asso_thresh: float = 0.4,
                 window: int = 16, min_track_len: int = 5, amodal: bool = False) -> None:
        super().__init__(spec)
        self.num_proposals = proposals
        self.asso_thresh = asso_thresh
        self.tracker_config = TrackerConfig(window=window, min_track_len=min_track_len)
        self.backbone = Res2Net(101, base_width=26, scale=4, deform_stages=(False, False, True, True))
        self.neck = FPN(self.backbone.out_channels, 256, num_outs=5, extra="p6p7")
        self.proposal_head = CenterNetHead(256, num_levels=len(STRIDES))
        self.box_heads = CascadeBoxHeads([Box2BoxCoder(w) for w in STAGE_WEIGHTS], num_classes)
        self.asso_head = ConvFCBoxHead(256, 7, None, with_reg=False)
        self.transformer = TrackingTransformer(1024)
        self.amodal_expander = AmodalExpander() if amodal else None

    def new_state(self, protocol: str = "streaming", references: list[Frame] | None = None) -> GtrState:
        tracker = GlobalTracker(self.transformer, self.tracker_config, protocol=protocol)
        return GtrState(protocol, references, tracker=tracker)

    def _pool(self, p3: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """RoIAlignV2 7x7 (aligned, adaptive sampling) of per-image boxes on P3: detectron2 calls torchvision's
        ``roi_align(aligned=True)``, no minimum size."""
        return pool_rois([p3], boxes_to_rois(boxes), STRIDES[:1], output_size=7, sampling_ratio=0, aligned=True)

    def detect(self, batch: ImageBatch) -> list[FrameDetections]:
        """The detector and re-ID features of each frame of ``batch``, before tracking."""
        feats = self.neck(self.backbone(batch.images))
        proposals = centernet_proposals(*self.proposal_head(feats), STRIDES, post_nms=self.num_proposals)
        kept = [(boxes[scores > self.asso_thresh], scores[scores > self.asso_thresh]) for boxes, scores in proposals]
        boxes = [b for b, _ in kept]
        features = self.asso_head.embed(self._pool(feats[0], boxes)).float()
        stages = self.box_heads(lambda b: self._pool(feats[0], b), boxes, batch.image_sizes,
                                expander=self.amodal_expander)
        probs = torch.stack([stage.logits.float().sigmoid() for stage in stages]).mean(dim=0)
        counts = [len(b) for b in boxes]
        out = []
        for i, (prob, feature, (_, score)) in enumerate(zip(probs.split(counts), features.split(counts), kept)):
            fused = (prob * score.float()[:, None]).sqrt()[:, :-1]
            final = clip_boxes(stages[-1].boxes[i], batch.image_sizes[i])
            amodal = None if self.amodal_expander is None else stages[-1].amodal_boxes[i]
            out.append(FrameDetections(final, fused, feature, amodal))
        return out

    def forward(self, batch: ImageBatch, state: GtrState) -> list[Detections | None]:  # type: ignore[override]
        """Track the frames of ``batch`` in order: their results (``streaming``) or ``None`` (``paper``)."""
        results: list[Detections | None] = []
        for frame, scale, found in zip(batch.frames, batch.scales, self.detect(batch)):
            boxes = found.boxes if found.amodal_boxes is None else found.amodal_boxes  # the boxes of the output
            tracked = state.tracker.step(boxes, found.features, found.cls_scores)
            state.seen += 1
            if tracked is None:
                state.frames.append((frame, scale, found.boxes))
            results.append(None if tracked is None else self._detections(frame, scale, tracked, found.boxes))
        return results

    def finish(self, state: GtrState) -> list[Detections]:
        return [self._detections(frame, scale, tracked, boxes)
                for (frame, scale, boxes), tracked in zip(state.frames, state.tracker.finish(), strict=True)]

    def _detections(self, frame: FrameInfo, scale: tuple[float, float], tracked: TrackedFrame,
                    modal: torch.Tensor) -> Detections:
        """Results in input pixels from the tracker's output (amodal boxes for the Amodal Expander) and the frame's
        ``modal`` boxes (resized pixels); boxes that are empty once rescaled (and, for modal boxes, clipped) are
        dropped (detectron2's postprocess). Amodal boxes are not clipped."""
        factor = tracked.boxes.new_tensor([scale[0], scale[1], scale[0], scale[1]])
        boxes = clip_boxes(modal[tracked.rows].float() / factor, frame.size)
        amodal = None if self.amodal_expander is None else tracked.boxes.float() / factor
        kept = boxes if amodal is None else amodal
        keep = (kept[:, 2] > kept[:, 0]) & (kept[:, 3] > kept[:, 1])
        return self.make_detections(frame, boxes[keep], tracked.scores[keep], tracked.labels[keep],
                                    track_ids=tracked.track_ids[keep],
                                    amodal_boxes=None if amodal is None else amodal[keep])


def build(spec: ModelSpec, **overrides: Any) -> Gtr:
    """A GTR network for ``spec`` (random weights, eval mode); ``overrides`` replace entries of ``spec.config``."""
    return Gtr(spec, **{**spec.config, **overrides}).eval()
