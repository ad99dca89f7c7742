"""Rename table of detectron2 checkpoints (CenterNet2 and the GTR tracker built on it).

detectron2 names a module by its place in the original model: the backbone's bottom-up network sits at
``backbone.bottom_up`` (stages ``res2``-``res5``), the FPN's convs at ``backbone.fpn_lateral{s}`` /
``backbone.fpn_output{s}`` (``s`` = log2 of the input's stride; the inputs here are res3-res5) and its extra levels
at ``backbone.top_block.p6`` / ``p7``, CenterNet's head at ``proposal_generator.centernet_head``, and GTR's
cascade, re-ID head and tracking transformer at ``roi_heads`` (``box_head.{k}.fc{1,2}``, ``box_predictor.{k}``,
``asso_head``, ``asso_predictor``, ``transformer``). vfe_hub's models hold them as ``backbone``
(:class:`~vfe_hub.layers.res2net.Res2Net`), ``neck`` (:class:`~vfe_hub.layers.necks.FPN` with ``extra="p6p7"``),
``proposal_head`` (:class:`~vfe_hub.layers.centernet.CenterNetHead`), ``box_heads``
(:class:`~vfe_hub.layers.cascade.CascadeBoxHeads`), ``asso_head`` and ``transformer``
(:class:`~vfe_hub.layers.association.TrackingTransformer`). A detectron2 ``Conv2d`` keeps its norm at
``<conv>.norm``; FrozenBN has no ``num_batches_tracked``.
"""
from __future__ import annotations

from .rename import RenameTable

_BN = r"(weight|bias|running_mean|running_var)"

_BACKBONE = (
    (r"backbone\.bottom_up\.stem\.conv1\.([01346])\." + _BN, r"backbone.stem.\1.\2"),
    (r"backbone\.bottom_up\.stem\.bn1\." + _BN, r"backbone.stem.7.\1"),
    # stage res{s} is layer{s - 1}; block parts: conv1 / conv1.norm -> conv1 / bn1, conv2_offsets.j -> convs.j.offset,
    # shortcut.1 / shortcut.1.norm -> downsample.1 / downsample.2
    *((rf"backbone\.bottom_up\.res{s}\.(\d+)\.{part}", rf"backbone.layer{s - 1}.\1.{new}")
      for s in range(2, 6)
      for part, new in ((r"conv([13])\.weight", r"conv\2.weight"),
                        (r"conv([13])\.norm\." + _BN, r"bn\2.\3"),
                        (r"convs\.(\d+)\.weight", r"convs.\2.weight"),
                        (r"conv2_offsets\.(\d+)\.weight", r"convs.\2.offset.weight"),
                        (r"bns\.(\d+)\." + _BN, r"bns.\2.\3"),
                        (r"shortcut\.1\.weight", r"downsample.1.weight"),
                        (r"shortcut\.1\.norm\." + _BN, r"downsample.2.\2"))),
)

_NECK = (
    *((rf"backbone\.fpn_lateral{s}\.(weight|bias)", rf"neck.lateral_convs.{i}.conv.\1")
      for i, s in enumerate((3, 4, 5))),
    *((rf"backbone\.fpn_output{s}\.(weight|bias)", rf"neck.fpn_convs.{i}.conv.\1")
      for i, s in enumerate((3, 4, 5))),
    *((rf"backbone\.top_block\.p{s}\.(weight|bias)", rf"neck.extra_convs.{i}.\1")
      for i, s in enumerate((6, 7))),
)

_PROPOSAL_HEAD = (
    (r"proposal_generator\.centernet_head\.bbox_tower\.(\d+)\.conv\.(weight|bias)", r"proposal_head.tower.\1.\2"),
    (r"proposal_generator\.centernet_head\.bbox_tower\.(\d+)\.(offset\.weight|offset\.bias|weight|bias)",
     r"proposal_head.tower.\1.\2"),
    (r"proposal_generator\.centernet_head\.(agn_hm|bbox_pred)\.(weight|bias)", r"proposal_head.\1.\2"),
    (r"proposal_generator\.centernet_head\.scales\.(\d+)\.scale", r"proposal_head.scales.\1.scale"),
)

_ROI_HEADS = (
    *((rf"roi_heads\.box_head\.(\d+)\.fc{i + 1}\.(weight|bias)", rf"box_heads.stages.\1.fcs.{i}.\2") for i in (0, 1)),
    (r"roi_heads\.box_predictor\.(\d+)\.(cls_score|bbox_pred)\.(weight|bias)", r"box_heads.stages.\1.\2.\3"),
    *((rf"roi_heads\.asso_head\.fc{i + 1}\.(weight|bias)", rf"asso_head.fcs.{i}.\1") for i in (0, 1)),
    (r"roi_heads\.asso_predictor\.((?:q|k)_proj\.layers\.\d+\.(?:weight|bias))", r"transformer.\1"),
    (r"roi_heads\.transformer\.((?:en|de)coder\.layers\.\d+\..+)", r"transformer.\1"),
    # the Amodal Expander: one module shared by the three stages (CASCADE_SHARE_WEIGHTS), saved once per stage
    (r"roi_heads\.amodal_expander\.0\.(expand_modal_box\.layers\.\d\.(?:weight|bias))", r"amodal_expander.\1"),
)

TABLE = RenameTable(
    name="detectron2",
    rules=_BACKBONE + _NECK + _PROPOSAL_HEAD + _ROI_HEADS,
    # Training-only buffers: GTR's federated-loss class weights (and newer detectron2's).
    drop=(r"^roi_heads\.box_predictor\.\d+\.(freq_weight|fed_loss_cls_weights)$",),
    aliases=((r"roi_heads\.amodal_expander\.[12]\.(.+)", r"roi_heads.amodal_expander.0.\1"),),
    # GTR itself has no expander: loaded from an Amodal Expander file (whose other tensors are GTR's, frozen while
    # the expander trained; see its card), the expander's tensors are dropped.
    optional=(r"^amodal_expander\.",),
)
