"""Rename table of mmdetection v1 checkpoints (the BalancedGroupSoftmax fork: HTC with a ResNeXt DCN backbone).

mmcv strips the ``module.`` prefix when saving. The deformable convs' offset convs are siblings of the convs in
mmdetection v1 (``conv2_offset``) and children here (``conv2.offset``); mmcv's ``ConvModule`` wraps its conv as
``.conv``, kept where vfe_hub's module is a :class:`~vfe_hub.layers.conv.ConvNorm` and unwrapped elsewhere.
"""
from __future__ import annotations

from .mmdet_v2 import NECK_AND_RPN
from .rename import RenameTable

TABLE = RenameTable(
    name="mmdetection v1",
    rules=(
        (r"backbone\.(layer\d\.\d+)\.conv2_offset\.(weight|bias)", r"backbone.\1.conv2.offset.\2"),
        (r"backbone\.(.+)", r"backbone.\1"),
        *NECK_AND_RPN,
        (r"semantic_head\.((?:lateral_convs|convs)\.\d+\.conv|conv_embedding\.conv|conv_logits)\.(weight|bias)",
         r"semantic_head.\1.\2"),
        (r"bbox_head\.(\d+)\.shared_fcs\.(\d+)\.(weight|bias)", r"box_heads.stages.\1.fcs.\2.\3"),
        (r"bbox_head\.(\d+)\.fc_cls\.(weight|bias)", r"box_heads.stages.\1.cls_score.\2"),
        (r"bbox_head\.(\d+)\.fc_reg\.(weight|bias)", r"box_heads.stages.\1.bbox_pred.\2"),
        (r"mask_head\.(\d+)\.convs\.(\d+)\.conv\.(weight|bias)", r"mask_heads.\1.convs.\2.\3"),
        (r"mask_head\.(\d+)\.(upsample|conv_logits)\.(weight|bias)", r"mask_heads.\1.\2.\3"),
        (r"mask_head\.(\d+)\.conv_res\.conv\.(weight|bias)", r"mask_heads.\1.conv_res.conv.\2"),
    ),
    drop=(r"\.num_batches_tracked$",),
)
