"""MAMBA: a ResNet-101 DC5 Faster R-CNN whose box head attends to memory banks of RoI features.

Architecture (mmdetection v2 conventions throughout): ResNet-101 with layer4 at stride 1 and every layer4 block
dilated by 2 (C5 at stride 16), a 3x3 channel mapper to 512 + ReLU, an RPN with 12 anchors per cell
(6000 before / 300 after NMS 0.7), RoIAlign 7x7 (sampling 2, aligned), two 1024-d fcs each followed by a
relation-attention aggregator over a memory bank (``x = fc(x); x = x + attend(x, memory); x = relu(x)``), a
31-way softmax (background last) and class-specific box deltas with stds 0.2; score > 1e-4, class-wise NMS 0.5,
100 detections per frame.

Memory, per video and per fc (pre-ReLU rows): at the first frame it is filled with the 75 best proposals of each
reference frame (the paper protocol's 14 references, then the frame itself) and the frame attends to all of them;
every later frame attends to at most 2000 sampled rows, then writes its own 75 best (enhanced) rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..layers.anchors import AnchorGenerator
from ..layers.attention import MemoryBank, RelationAttention
from ..layers.box_coder import DeltaXYWHCoder
from ..layers.box_head import ConvFCBoxHead, detect
from ..layers.necks import ChannelMapper
from ..layers.resnet import ResNet
from ..layers.roi import boxes_to_rois, pool_rois
from ..layers.rpn import ProposalSelector, RPNHead
from ..registry import ModelSpec
from ..structures import Detections, ImageBatch
from ..session import VideoState
from .base import VideoDetector

if TYPE_CHECKING:
    from ..io import Frame

STRIDE = 16


@dataclass
class MambaState(VideoState):
    """A video's two memory banks (one per fc), pre-ReLU rows."""

    memories: list[MemoryBank] = field(default_factory=list)


class Mamba(VideoDetector):
    paper_shuffle = True

    def __init__(self, spec: ModelSpec, depth: int = 101, num_classes: int = 30, seed: int = 0, topk: int = 75,
                 memory_length: int = 20000, memory_sample: int = 2000) -> None:
        super().__init__(spec)
        self.topk = topk
        self.backbone = ResNet(depth, strides=(1, 2, 2, 1), dilations=(1, 1, 1, 2), out_indices=(3,))
        self.neck = ChannelMapper([2048], 512, kernel_size=3)
        anchors = AnchorGenerator([STRIDE], ratios=(0.5, 1.0, 2.0), scales=(4, 8, 16, 32))
        self.rpn = RPNHead(512, 512, anchors.num_anchors)
        self.proposals = ProposalSelector(anchors, nms_pre=6000, iou=0.7, max_per_img=300)
        self.box_head = ConvFCBoxHead(512, 7, num_classes)
        self.aggregators = nn.ModuleList(RelationAttention(1024, heads=16) for _ in range(2))
        self.memory = {"max_length": memory_length, "key_length": memory_sample, "seed": seed}
        self.coder = DeltaXYWHCoder(stds=(0.2, 0.2, 0.2, 0.2))

    def new_state(self, protocol: str = "streaming", references: list[Frame] | None = None) -> MambaState:
        return MambaState(protocol, references, memories=[MemoryBank(**self.memory) for _ in range(2)])

    def _rois(self, batch: ImageBatch) -> tuple[list[torch.Tensor], torch.Tensor, list[int]]:
        """Proposals per image, their first-fc features ``(sum K_i, 1024)`` (pre-ReLU), and the counts ``K_i``."""
        feats = self.neck(self.backbone(batch.images))
        proposals = [boxes for boxes, _ in self.proposals(self.rpn(feats), batch.image_sizes)]
        # mmcv's RoIAlign(aligned=True), no minimum size: torchvision's aligned rule (see layers/roi.py)
        pooled = pool_rois(feats, boxes_to_rois(proposals), [STRIDE], output_size=7, sampling_ratio=2)
        return proposals, self.box_head.fcs[0](pooled.flatten(1)), [len(p) for p in proposals]

    def _reference_rows(self, refs: list[ImageBatch] | None) -> torch.Tensor | None:
        """First-fc features of the ``topk`` best proposals of each reference frame, frames in order."""
        if refs is None:
            return None
        rows = []
        for batch in refs:
            _, x, counts = self._rois(batch)
            rows.extend(r[: self.topk] for r in x.split(counts))
        return torch.cat(rows)

    def _first_frame(self, x: torch.Tensor, refs: torch.Tensor | None, memories: list[MemoryBank]) -> torch.Tensor:
        """Fill both memories from the references (+ this frame's best rows) and enhance ``x`` against all of them."""
        r = x[: self.topk] if refs is None else torch.cat([refs, x[: self.topk]])
        for i, (fc, attend, memory) in enumerate(zip(self.box_head.fcs, self.aggregators, memories)):
            if i > 0:
                x, r = fc(x), fc(r)
            memory.reset(r)
            x = torch.relu(x + attend(x, r))
            r = torch.relu(r)
        return x

    def _next_frame(self, x: torch.Tensor, memories: list[MemoryBank]) -> torch.Tensor:
        for i, (fc, attend, memory) in enumerate(zip(self.box_head.fcs, self.aggregators, memories)):
            if i > 0:
                x = fc(x)
            x = x + attend(x, memory.sample())
            memory.update(x[: self.topk])
            x = torch.relu(x)
        return x

    def forward(self, batch: ImageBatch, state: MambaState) -> list[Detections]:  # type: ignore[override]
        """Detections for the frames of ``batch``, processed in order (the memory makes the order matter)."""
        proposals, x, counts = self._rois(batch)
        results = []
        for frame, boxes, rows, size, scale in zip(batch.frames, proposals, x.split(counts), batch.image_sizes,
                                                   batch.scales):
            if state.seen == 0:
                rows = self._first_frame(rows, self._reference_rows(self.reference_batches(state)), state.memories)
            else:
                rows = self._next_frame(rows, state.memories)
            state.seen += 1
            probs = self.box_head.cls_score(rows).float().softmax(dim=1)[:, :-1]
            det = detect(boxes, probs, self.box_head.bbox_pred(rows), self.coder, size, scale, score_thr=1e-4,
                         iou=0.5, max_per_img=100)
            results.append(self.make_detections(frame, *det))
        return results


def build(spec: ModelSpec, **overrides: Any) -> Mamba:
    """A MAMBA network for ``spec`` (random weights, eval mode); ``overrides`` replace entries of ``spec.config``."""
    return Mamba(spec, **{**spec.config, **overrides}).eval()
