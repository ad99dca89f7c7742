"""Rename table of mmdetection v2 checkpoints (and the vfe.pytorch fork that released MAMBA and STPN).

Video wrappers prefix the detector's keys with ``detector.``; plain detectors do not, so the prefix is optional.
"""
from __future__ import annotations

from .rename import RenameTable

_P = r"(?:detector\.)?"

TABLE = RenameTable(
    name="mmdetection v2",
    rules=(
        (_P + r"backbone\.(.+)", r"backbone.\1"),
        (_P + r"neck\.convs\.(\d+)\.conv\.(weight|bias)", r"neck.convs.\1.\2"),
        (_P + r"rpn_head\.rpn_conv\.(weight|bias)", r"rpn.conv.\1"),
        (_P + r"rpn_head\.rpn_cls\.(weight|bias)", r"rpn.cls_logits.\1"),
        (_P + r"rpn_head\.rpn_reg\.(weight|bias)", r"rpn.bbox_pred.\1"),
        (_P + r"roi_head\.bbox_head\.shared_fcs\.(\d+)\.(weight|bias)", r"box_head.fcs.\1.\2"),
        (_P + r"roi_head\.bbox_head\.fc_cls\.(weight|bias)", r"box_head.cls_score.\1"),
        (_P + r"roi_head\.bbox_head\.fc_reg\.(weight|bias)", r"box_head.bbox_pred.\1"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.fc_embed\.(weight|bias)", r"aggregators.\1.query_proj.\2"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.ref_fc_embed\.(weight|bias)", r"aggregators.\1.key_proj.\2"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.ref_fc\.(weight|bias)", r"aggregators.\1.value_proj.\2"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.fc\.(weight|bias)", r"aggregators.\1.out_proj.\2"),
    ),
    drop=(r"\.num_batches_tracked$",),
)
