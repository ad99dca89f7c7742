"""STPN: a Swin-T Faster R-CNN (FPN) whose backbone is prompted with tokens predicted from reference frames.

Architecture (mmdetection v2 conventions throughout): Swin-T (:mod:`vfe_hub.layers.swin`) -> FPN (256 channels,
P2-P6) -> RPN with 3 anchors per cell (1000 best per level, NMS 0.7 per level, 300 overall) -> RoIAlign 7x7
(adaptive sampling, aligned, levels P2-P5) -> two shared 1024-d fcs -> 31-way softmax (background last) and
class-specific deltas with stds 0.2 -> score > 1e-4, class-wise NMS 0.5, 100 detections per frame.

Prompts: the reference frames run through the backbone **without** prompts; their last-stage tokens
``(R * h * w, 768)`` are reduced to 96 channels and 5 learned queries attend to them (SELSA-form attention,
16 heads): the result is a ``(5, 96)`` prompt, prepended to the patch tokens of every frame of the video.
With the paper protocol the references are 14 frames spread over the whole video and the prompt is fixed for
the video. In streaming mode the first frame is its own reference, and every ``prompt_interval`` frames the
current frame joins the references (the last ``paper_references`` sampled frames) and the prompt is recomputed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..layers.anchors import AnchorGenerator
from ..layers.attention import RelationAttention
from ..layers.box_coder import DeltaXYWHCoder
from ..layers.box_head import ConvFCBoxHead, detect
from ..layers.necks import FPN
from ..layers.roi import boxes_to_rois, pool_rois
from ..layers.rpn import ProposalSelector, RPNHead
from ..layers.swin import SwinTransformer
from ..registry import ModelSpec
from ..session import VideoState
from ..structures import Detections, ImageBatch
from .base import VideoDetector

if TYPE_CHECKING:
    from ..io import Frame

STRIDES = (4, 8, 16, 32, 64)


@dataclass
class StpnState(VideoState):
    """A video's prompt ``(P, 96)`` and, in streaming mode (``streams``), the reduced tokens of its sampled frames."""

    prompt: torch.Tensor | None = None
    tokens: list[torch.Tensor] = field(default_factory=list)
    streams: bool = True


class PromptPredictor(nn.Module):
    """Learned queries ``(P, dim)`` attending over reduced reference tokens; returns the prompt ``(P, dim)``."""

    def __init__(self, in_channels: int = 768, prompts: int = 5, dim: int = 96, heads: int = 16) -> None:
        super().__init__()
        self.reduction = nn.Linear(in_channels, dim)
        self.query = nn.Parameter(torch.zeros(prompts, dim))
        self.attention = RelationAttention(dim, heads)

    def tokens(self, feats: torch.Tensor) -> torch.Tensor:
        """Last-stage maps ``(R, C, h, w)`` of R references -> reduced tokens ``(R * h * w, dim)``."""
        return self.reduction(feats.flatten(2).transpose(1, 2).reshape(-1, feats.shape[1]))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.attention(self.query.to(tokens.dtype), tokens)


class Stpn(VideoDetector):
    def __init__(self, spec: ModelSpec, num_classes: int = 30, prompts: int = 5, prompt_interval: int = 10) -> None:
        super().__init__(spec)
        if prompt_interval < 1:
            raise ValueError(f"prompt_interval must be a positive number of frames, got {prompt_interval}")
        self.prompt_interval = prompt_interval
        self.backbone = SwinTransformer()
        self.neck = FPN([96, 192, 384, 768], 256, num_outs=5)
        anchors = AnchorGenerator(STRIDES, ratios=(0.5, 1.0, 2.0), scales=(8,))
        self.rpn = RPNHead(256, 256, anchors.num_anchors)
        self.proposals = ProposalSelector(anchors, nms_pre=1000, iou=0.7, max_per_img=300)
        self.box_head = ConvFCBoxHead(256, 7, num_classes)
        self.prompt_predictor = PromptPredictor(prompts=prompts)
        self.coder = DeltaXYWHCoder(stds=(0.2, 0.2, 0.2, 0.2))

    def new_state(self, protocol: str = "streaming", references: list[Frame] | None = None) -> StpnState:
        return StpnState(protocol, references)

    def _reference_tokens(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Reduced last-stage tokens ``(h * w, 96)`` of each image, run through the backbone without prompts."""
        return list(self.prompt_predictor.tokens(self.backbone(images)[-1]).chunk(len(images)))

    def _advance(self, state: StpnState) -> tuple[bool, list[ImageBatch] | None, bool]:
        """Count a frame in its video: (first frame?, the paper protocol's references, joins the references?)."""
        start = state.seen == 0
        refs = None
        if start:
            refs = self.reference_batches(state)
            state.streams = refs is None
        sample = state.streams and state.seen % self.prompt_interval == 0
        state.seen += 1
        return start, refs, sample

    def _prompts(self, batch: ImageBatch, state: StpnState) -> torch.Tensor:
        """``(B, P, 96)``: each frame's prompt, updating the per-video references frame by frame."""
        actions = [self._advance(state) for _ in batch.frames]
        sampled = [i for i, (_, _, sample) in enumerate(actions) if sample]
        own = dict(zip(sampled, self._reference_tokens(batch.images[sampled]))) if sampled else {}
        prompts = []
        for i, (start, refs, sample) in enumerate(actions):
            if start and refs is not None:
                tokens = [t for ref in refs for t in self._reference_tokens(ref.images)]
                state.prompt = self.prompt_predictor(torch.cat(tokens))
            if sample:
                state.tokens = [*state.tokens, own[i]][-self.paper_references:]
                state.prompt = self.prompt_predictor(torch.cat(state.tokens))
            prompts.append(state.prompt)
        return torch.stack(prompts)

    def forward(self, batch: ImageBatch, state: StpnState) -> list[Detections]:  # type: ignore[override]
        """Detections for the frames of ``batch``; the prompt state advances in frame order."""
        feats = self.neck(self.backbone(batch.images, self._prompts(batch, state)))
        proposals = [boxes for boxes, _ in self.proposals(self.rpn(feats), batch.image_sizes)]
        # mmcv's RoIAlign(aligned=True), no minimum size: torchvision's aligned rule (see layers/roi.py)
        pooled = pool_rois(feats[:4], boxes_to_rois(proposals), STRIDES[:4], output_size=7, sampling_ratio=0)
        counts = [len(p) for p in proposals]
        logits, deltas = self.box_head(pooled)
        results = []
        for frame, boxes, lg, dl, size, scale in zip(batch.frames, proposals, logits.split(counts),
                                                     deltas.split(counts), batch.image_sizes, batch.scales):
            probs = lg.float().softmax(dim=1)[:, :-1]
            det = detect(boxes, probs, dl, self.coder, size, scale, score_thr=1e-4, iou=0.5, max_per_img=100)
            results.append(self.make_detections(frame, *det))
        return results


def build(spec: ModelSpec, **overrides: Any) -> Stpn:
    """An STPN network for ``spec`` (random weights, eval mode); ``overrides`` replace entries of ``spec.config``."""
    return Stpn(spec, **{**spec.config, **overrides}).eval()
