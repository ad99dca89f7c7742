"""Rename table of maskrcnn-benchmark checkpoints (LST, whose fork keeps maskrcnn-benchmark's module names).

maskrcnn-benchmark's ``GeneralizedRCNN`` holds the ResNet at ``backbone.body`` (stem ``stem.conv1`` / ``stem.bn1``,
stages ``layer1``-``layer4`` with torchvision's block names), the FPN at ``backbone.fpn`` (``fpn_inner{k}`` lateral
and ``fpn_layer{k}`` output convs of stage ``k``), the RPN at ``rpn.head`` with its base anchors as buffers
``rpn.anchor_generator.cell_anchors.{level}``, and the RoI heads at ``roi_heads.box`` / ``roi_heads.mask``
(``feature_extractor`` and ``predictor``); LST adds ``roi_heads.bbox2mask`` (the box-to-mask weight transfer).
vfe_hub's models hold them as ``backbone`` (:class:`~vfe_hub.layers.resnet.ResNet`), ``neck``
(:class:`~vfe_hub.layers.necks.FPN`), ``rpn``, ``cell_anchors``, ``box_head``, ``classifier``, ``bbox_pred``,
``mask_head`` (:class:`~vfe_hub.layers.mask_head.FCNMaskHead` without logits), ``bbox2mask`` and ``mlp_mask``.
The ``module.`` prefix of distributed training is stripped before renaming; FrozenBN has no
``num_batches_tracked``.
"""
from __future__ import annotations

from .rename import RenameTable

_BN = r"(weight|bias|running_mean|running_var)"

TABLE = RenameTable(
    name="maskrcnn-benchmark",
    rules=(
        (r"backbone\.body\.stem\.conv1\.weight", r"backbone.conv1.weight"),
        (r"backbone\.body\.stem\.bn1\." + _BN, r"backbone.bn1.\1"),
        (r"backbone\.body\.(layer[1-4]\.\d+\.(?:conv[123]\.weight|bn[123]\." + _BN + r"|downsample\.0\.weight"
         r"|downsample\.1\." + _BN + "))", r"backbone.\1"),
        *((rf"backbone\.fpn\.fpn_inner{k}\.(weight|bias)", rf"neck.lateral_convs.{k - 1}.conv.\1")
          for k in range(1, 5)),
        *((rf"backbone\.fpn\.fpn_layer{k}\.(weight|bias)", rf"neck.fpn_convs.{k - 1}.conv.\1") for k in range(1, 5)),
        (r"rpn\.head\.(conv|cls_logits|bbox_pred)\.(weight|bias)", r"rpn.\1.\2"),
        (r"rpn\.anchor_generator\.cell_anchors\.(\d+)", r"cell_anchors.\1"),
        (r"roi_heads\.box\.feature_extractor\.fc6\.(weight|bias)", r"box_head.fcs.0.\1"),
        (r"roi_heads\.box\.feature_extractor\.fc7\.(weight|bias)", r"box_head.fcs.1.\1"),
        (r"roi_heads\.box\.predictor\.cls_score\.weight", r"classifier.weight"),
        (r"roi_heads\.box\.predictor\.scale_cls", r"classifier.scale"),
        (r"roi_heads\.box\.predictor\.bbox_pred\.(weight|bias)", r"bbox_pred.\1"),
        *((rf"roi_heads\.mask\.feature_extractor\.mask_fcn{k}\.(weight|bias)", rf"mask_head.convs.{k - 1}.\1")
          for k in range(1, 5)),
        (r"roi_heads\.mask\.predictor\.conv5_mask\.(weight|bias)", r"mask_head.upsample.\1"),
        (r"roi_heads\.mask\.predictor\.MLP_mask\.(weight|bias)", r"mlp_mask.\1"),
        (r"roi_heads\.bbox2mask\.([02])\.(weight|bias)", r"bbox2mask.\1.\2"),
    ),
)
