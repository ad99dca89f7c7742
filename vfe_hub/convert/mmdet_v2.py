"""Rename table of mmdetection v2 checkpoints (the vfe.pytorch fork that released MAMBA and STPN, and the
mmdetection 2.7 fork that released DetPro).

Video wrappers prefix the detector's keys with ``detector.``; plain detectors do not, so the prefix is optional.
DetPro's RoI head holds the frozen CLIP ViT-B/32 it was trained with (``roi_head.clip_model.*``): its image tower
and ``logit_scale`` are dropped on purpose (not used at inference), its text tower is kept under ``text_encoder.``
(the DetPro converter stores it in a file of its own, read only to embed a new vocabulary).
"""
from __future__ import annotations

from .rename import RenameTable

_P = r"(?:detector\.)?"
_B = _P + r"backbone\."

#: mmdetection's FPN / channel mapper and RPN head, the same in v1 and v2 (v1 has no ``detector.`` prefix)
NECK_AND_RPN = (
    (_P + r"neck\.(lateral_convs|fpn_convs)\.(\d+)\.(conv|bn)\.(.+)", r"neck.\1.\2.\3.\4"),
    (_P + r"neck\.convs\.(\d+)\.conv\.(weight|bias)", r"neck.convs.\1.\2"),
    (_P + r"rpn_head\.rpn_conv\.(weight|bias)", r"rpn.conv.\1"),
    (_P + r"rpn_head\.rpn_cls\.(weight|bias)", r"rpn.cls_logits.\1"),
    (_P + r"rpn_head\.rpn_reg\.(weight|bias)", r"rpn.bbox_pred.\1"),
)

TABLE = RenameTable(
    name="mmdetection v2",
    rules=(
        # Swin (mmdet 2.19 names; prompt-free and prompted backbones share them)
        (_B + r"stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.(.+)", r"backbone.stages.\1.blocks.\2.attn.\3"),
        (_B + r"stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)", r"backbone.stages.\1.blocks.\2.mlp.fc1.\3"),
        (_B + r"stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.(weight|bias)", r"backbone.stages.\1.blocks.\2.mlp.fc2.\3"),
        (_B + r"norm(\d)\.(weight|bias)", r"backbone.norms.\1.\2"),
        (_P + r"backbone\.(.+)", r"backbone.\1"),
        *NECK_AND_RPN,
        (_P + r"roi_head\.bbox_head\.shared_convs\.(\d+)\.(conv|bn)\.(.+)", r"box_head.shared_convs.\1.\2.\3"),
        (_P + r"roi_head\.bbox_head\.shared_fcs\.(\d+)\.(weight|bias)", r"box_head.fcs.\1.\2"),
        (_P + r"roi_head\.bbox_head\.fc_cls\.(weight|bias)", r"box_head.cls_score.\1"),
        (_P + r"roi_head\.bbox_head\.fc_reg\.(weight|bias)", r"box_head.bbox_pred.\1"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.fc_embed\.(weight|bias)", r"aggregators.\1.query_proj.\2"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.ref_fc_embed\.(weight|bias)", r"aggregators.\1.key_proj.\2"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.ref_fc\.(weight|bias)", r"aggregators.\1.value_proj.\2"),
        (_P + r"roi_head\.bbox_head\.aggregator\.(\d+)\.fc\.(weight|bias)", r"aggregators.\1.out_proj.\2"),
        # DetPro: the image branch (ViLD ensemble), the projections to CLIP's space, the background embedding
        (r"roi_head\.bbox_head\.shared_convs_for_image\.(\d+)\.(conv|bn)\.(.+)", r"image_head.shared_convs.\1.\2.\3"),
        (r"roi_head\.bbox_head\.shared_fcs_for_image\.(\d+)\.(weight|bias)", r"image_head.fcs.\1.\2"),
        (r"roi_head\.(projection|projection_for_image|bg_embedding)\.(weight|bias)", r"\1.\2"),
        (r"roi_head\.mask_head\.convs\.(\d+)\.conv\.(weight|bias)", r"mask_head.convs.\1.\2"),
        (r"roi_head\.mask_head\.(upsample|conv_logits)\.(weight|bias)", r"mask_head.\1.\2"),
        (r"roi_head\.clip_model\.(token_embedding\.weight|positional_embedding|text_projection|ln_final\.(?:weight|bias)"
         r"|transformer\.resblocks\.\d+\..+)", r"text_encoder.\1"),
        (r"prompt_predictor\.(query|reduction\.weight|reduction\.bias)", r"prompt_predictor.\1"),
        (r"prompt_predictor\.fc_embed\.(weight|bias)", r"prompt_predictor.attention.query_proj.\1"),
        (r"prompt_predictor\.ref_fc_embed\.(weight|bias)", r"prompt_predictor.attention.key_proj.\1"),
        (r"prompt_predictor\.ref_fc\.(weight|bias)", r"prompt_predictor.attention.value_proj.\1"),
        (r"prompt_predictor\.fc\.(weight|bias)", r"prompt_predictor.attention.out_proj.\1"),
    ),
    drop=(r"\.num_batches_tracked$", r"^roi_head\.clip_model\.(visual\..+|logit_scale)$"),
)
