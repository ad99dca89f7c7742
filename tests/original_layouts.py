"""Synthetic checkpoints in the original code bases' key layouts (random tensors, the released shapes).

The layouts are written out from the published module definitions (the original code bases), independently
of vfe_hub's own modules, so that a conversion test checks vfe_hub against the original and not against itself.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _bn(keys: dict, name: str, channels: int) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{name}.{p}"] = (channels,)
    keys[f"{name}.num_batches_tracked"] = ()


def _frozen_bn(keys: dict, name: str, channels: int) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        keys[f"{name}.{p}"] = (channels,)


def mmdet_resnet(prefix: str, depth: int, bn=_bn, stem: str = "") -> dict[str, tuple[int, ...]]:
    """mmdetection ``ResNet`` (bottleneck, torchvision-compatible names) keys and shapes; ``bn`` adds a norm's keys
    (with ``num_batches_tracked``; maskrcnn-benchmark's frozen ones have none); ``stem`` prefixes the first conv
    and its norm (maskrcnn-benchmark's ``stem.``)."""
    keys: dict[str, tuple[int, ...]] = {f"{prefix}{stem}conv1.weight": (64, 3, 7, 7)}
    bn(keys, f"{prefix}{stem}bn1", 64)
    in_c = 64
    for i, n in enumerate(RESNET_BLOCKS[depth]):
        width, out = 64 * 2**i, 256 * 2**i
        for b in range(n):
            p = f"{prefix}layer{i + 1}.{b}."
            keys[p + "conv1.weight"] = (width, in_c, 1, 1)
            bn(keys, p + "bn1", width)
            keys[p + "conv2.weight"] = (width, width, 3, 3)
            bn(keys, p + "bn2", width)
            keys[p + "conv3.weight"] = (out, width, 1, 1)
            bn(keys, p + "bn3", out)
            if b == 0:
                keys[p + "downsample.0.weight"] = (out, in_c, 1, 1)
                bn(keys, p + "downsample.1", out)
            in_c = out
    return keys


def mamba_layout() -> dict[str, tuple[int, ...]]:
    """The 656 tensors of ``work_dirs/mamba_r101_dc5_6x/epoch_6_model.pth`` (mmdet 2.19 + vfe.pytorch)."""
    d = "detector."
    keys = mmdet_resnet(d + "backbone.", 101)
    keys.update({
        d + "neck.convs.0.conv.weight": (512, 2048, 3, 3), d + "neck.convs.0.conv.bias": (512,),
        d + "rpn_head.rpn_conv.weight": (512, 512, 3, 3), d + "rpn_head.rpn_conv.bias": (512,),
        d + "rpn_head.rpn_cls.weight": (12, 512, 1, 1), d + "rpn_head.rpn_cls.bias": (12,),
        d + "rpn_head.rpn_reg.weight": (48, 512, 1, 1), d + "rpn_head.rpn_reg.bias": (48,),
    })
    head = d + "roi_head.bbox_head."
    for name, shape in (("shared_fcs.0", (1024, 25088)), ("shared_fcs.1", (1024, 1024)), ("fc_cls", (31, 1024)),
                        ("fc_reg", (120, 1024))):
        keys[f"{head}{name}.weight"], keys[f"{head}{name}.bias"] = shape, shape[:1]
    for i in range(2):
        for name in ("fc_embed", "ref_fc_embed", "fc", "ref_fc"):
            keys[f"{head}aggregator.{i}.{name}.weight"] = (1024, 1024)
            keys[f"{head}aggregator.{i}.{name}.bias"] = (1024,)
    return keys


def _linear(keys: dict, name: str, out: int, inp: int, bias: bool = True) -> None:
    keys[f"{name}.weight"] = (out, inp)
    if bias:
        keys[f"{name}.bias"] = (out,)


def mmdet_swin(prefix: str, dim: int = 96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24)) -> dict[str, tuple[int, ...]]:
    """mmdetection 2.19 ``SwinTransformer`` (and vfe.pytorch's prompted copy) keys and shapes, window 7."""
    keys: dict[str, tuple[int, ...]] = {f"{prefix}patch_embed.projection.weight": (dim, 3, 4, 4),
                                        f"{prefix}patch_embed.projection.bias": (dim,),
                                        f"{prefix}patch_embed.norm.weight": (dim,), f"{prefix}patch_embed.norm.bias": (dim,)}
    for s, (depth, h) in enumerate(zip(depths, heads)):
        c = dim * 2**s
        for b in range(depth):
            p = f"{prefix}stages.{s}.blocks.{b}."
            for norm in ("norm1", "norm2"):
                keys[f"{p}{norm}.weight"] = keys[f"{p}{norm}.bias"] = (c,)
            keys[p + "attn.w_msa.relative_position_bias_table"] = (169, h)
            keys[p + "attn.w_msa.relative_position_index"] = (49, 49)
            _linear(keys, p + "attn.w_msa.qkv", 3 * c, c)
            _linear(keys, p + "attn.w_msa.proj", c, c)
            _linear(keys, p + "ffn.layers.0.0", 4 * c, c)
            _linear(keys, p + "ffn.layers.1", c, 4 * c)
        if s < len(depths) - 1:
            keys[f"{prefix}stages.{s}.downsample.norm.weight"] = keys[f"{prefix}stages.{s}.downsample.norm.bias"] = (4 * c,)
            _linear(keys, f"{prefix}stages.{s}.downsample.reduction", 2 * c, 4 * c, bias=False)
    for s in range(len(depths)):
        keys[f"{prefix}norm{s}.weight"] = keys[f"{prefix}norm{s}.bias"] = (dim * 2**s,)
    return keys


def stpn_layout() -> dict[str, tuple[int, ...]]:
    """The 230 tensors + 12 ``relative_position_index`` buffers of ``work_dirs/stpn_swint_adam_9x/epoch_9_model.pth``."""
    d = "detector."
    keys = mmdet_swin(d + "backbone.")
    for i, c in enumerate((96, 192, 384, 768)):
        keys[f"{d}neck.lateral_convs.{i}.conv.weight"], keys[f"{d}neck.lateral_convs.{i}.conv.bias"] = (256, c, 1, 1), (256,)
        keys[f"{d}neck.fpn_convs.{i}.conv.weight"], keys[f"{d}neck.fpn_convs.{i}.conv.bias"] = (256, 256, 3, 3), (256,)
    keys.update({
        d + "rpn_head.rpn_conv.weight": (256, 256, 3, 3), d + "rpn_head.rpn_conv.bias": (256,),
        d + "rpn_head.rpn_cls.weight": (3, 256, 1, 1), d + "rpn_head.rpn_cls.bias": (3,),
        d + "rpn_head.rpn_reg.weight": (12, 256, 1, 1), d + "rpn_head.rpn_reg.bias": (12,),
    })
    head = d + "roi_head.bbox_head."
    for name, out, inp in (("shared_fcs.0", 1024, 12544), ("shared_fcs.1", 1024, 1024), ("fc_cls", 31, 1024),
                           ("fc_reg", 120, 1024)):
        _linear(keys, head + name, out, inp)
    keys["prompt_predictor.query"] = (5, 96)
    _linear(keys, "prompt_predictor.reduction", 96, 768)
    for name in ("fc_embed", "ref_fc_embed", "fc", "ref_fc"):
        _linear(keys, f"prompt_predictor.{name}", 96, 96)
    return keys


def _conv_bn(keys: dict, name: str, out: int, inp: int, k: int) -> None:
    """An mmcv ``ConvModule`` with a norm: ``{name}.conv.weight`` (no bias) and ``{name}.bn.*``."""
    keys[f"{name}.conv.weight"] = (out, inp, k, k)
    _bn(keys, f"{name}.bn", out)


def _clip_tower(keys: dict, prefix: str, width: int, layers: int) -> None:
    """OpenAI CLIP ``Transformer`` blocks (``resblocks.{i}``: ln_1, attn, ln_2, mlp.c_fc, mlp.c_proj)."""
    for i in range(layers):
        p = f"{prefix}resblocks.{i}."
        keys[p + "attn.in_proj_weight"], keys[p + "attn.in_proj_bias"] = (3 * width, width), (3 * width,)
        _linear(keys, p + "attn.out_proj", width, width)
        for norm in ("ln_1", "ln_2"):
            keys[f"{p}{norm}.weight"] = keys[f"{p}{norm}.bias"] = (width,)
        _linear(keys, p + "mlp.c_fc", 4 * width, width)
        _linear(keys, p + "mlp.c_proj", width, 4 * width)


def clip_text_layout(prefix: str, width: int = 512, layers: int = 12,
                     embed_dim: int = 512) -> dict[str, tuple[int, ...]]:
    """OpenAI CLIP's text tower (``clip/model.py``): 77 positions, vocabulary 49408; ViT-B/32's by default."""
    keys: dict[str, tuple[int, ...]] = {f"{prefix}token_embedding.weight": (49408, width),
                                        f"{prefix}positional_embedding": (77, width)}
    _clip_tower(keys, f"{prefix}transformer.", width, layers)
    keys[f"{prefix}ln_final.weight"] = keys[f"{prefix}ln_final.bias"] = (width,)
    keys[f"{prefix}text_projection"] = (width, embed_dim)
    return keys


def clip_vit_b32_layout(prefix: str) -> dict[str, tuple[int, ...]]:
    """OpenAI CLIP ViT-B/32 (``clip/model.py``): image tower width 768, patch 32, 50 tokens; the text tower;
    embedding dim 512; ``logit_scale`` a scalar."""
    keys: dict[str, tuple[int, ...]] = {
        f"{prefix}visual.class_embedding": (768,), f"{prefix}visual.positional_embedding": (50, 768),
        f"{prefix}visual.proj": (768, 512), f"{prefix}visual.conv1.weight": (768, 3, 32, 32),
        f"{prefix}visual.ln_pre.weight": (768,), f"{prefix}visual.ln_pre.bias": (768,),
    }
    _clip_tower(keys, f"{prefix}visual.transformer.", 768, 12)
    keys[f"{prefix}visual.ln_post.weight"] = keys[f"{prefix}visual.ln_post.bias"] = (768,)
    keys.update(clip_text_layout(prefix))
    keys[f"{prefix}logit_scale"] = ()
    return keys


def clip_half_precision(key: str) -> bool:
    """Whether OpenAI CLIP's ``convert_weights`` (applied by ``clip.load`` on a GPU) stores ``key`` in float16:
    conv and linear weights and biases, attention projections, ``text_projection`` and ``visual.proj``; layer
    norms, embeddings and ``logit_scale`` stay float32."""
    name = key.split("clip_model.")[-1]
    return (name.startswith("visual.conv1.") or ".attn." in name or ".mlp." in name
            or name in ("text_projection", "visual.proj"))


def detpro_layout(clip: bool = True) -> dict[str, tuple[int, ...]]:
    """DetPro's released Mask R-CNN (``detpro_ens_20e``, mmdetection 2.7): ResNet-50 (caffe style: same names),
    FPN with BN, RPN (3 anchors), 4conv1fc text and image branches, class-agnostic ``fc_reg``, projections,
    background embedding, class-agnostic FCN mask head, and (``clip``) the frozen CLIP ViT-B/32 under
    ``roi_head.clip_model.``."""
    keys = mmdet_resnet("backbone.", 50)
    for i, c in enumerate((256, 512, 1024, 2048)):
        _conv_bn(keys, f"neck.lateral_convs.{i}", 256, c, 1)
        _conv_bn(keys, f"neck.fpn_convs.{i}", 256, 256, 3)
    keys.update({
        "rpn_head.rpn_conv.weight": (256, 256, 3, 3), "rpn_head.rpn_conv.bias": (256,),
        "rpn_head.rpn_cls.weight": (3, 256, 1, 1), "rpn_head.rpn_cls.bias": (3,),
        "rpn_head.rpn_reg.weight": (12, 256, 1, 1), "rpn_head.rpn_reg.bias": (12,),
    })
    head = "roi_head.bbox_head."
    for suffix in ("", "_for_image"):
        for i in range(4):
            _conv_bn(keys, f"{head}shared_convs{suffix}.{i}", 256, 256, 3)
        _linear(keys, f"{head}shared_fcs{suffix}.0", 1024, 12544)
    _linear(keys, head + "fc_reg", 4, 1024)
    _linear(keys, "roi_head.projection", 512, 1024)
    _linear(keys, "roi_head.projection_for_image", 512, 1024)
    _linear(keys, "roi_head.bg_embedding", 512, 1)
    for i in range(4):
        keys[f"roi_head.mask_head.convs.{i}.conv.weight"] = (256, 256, 3, 3)
        keys[f"roi_head.mask_head.convs.{i}.conv.bias"] = (256,)
    keys["roi_head.mask_head.upsample.weight"], keys["roi_head.mask_head.upsample.bias"] = (256, 256, 2, 2), (256,)
    keys["roi_head.mask_head.conv_logits.weight"], keys["roi_head.mask_head.conv_logits.bias"] = (1, 256, 1, 1), (1,)
    if clip:
        keys.update(clip_vit_b32_layout("roi_head.clip_model."))
    return keys


def centernet2_dr2101_layout() -> dict[str, tuple[int, ...]]:
    """CenterNet2's ``build_p67_res2net_fpn_backbone`` (Res2Net-101 v1b 26w x 4s, modulated DCN in res4/res5,
    detectron2 FPN on res3-res5 with P6/P7 from P5) and its class-agnostic CenterNet head: the detector keys of the
    GTR and CenterNet2 "DR2101" checkpoints (detectron2 ``Conv2d`` norms at ``<conv>.norm``, FrozenBN buffers)."""
    b = "backbone.bottom_up."
    keys: dict[str, tuple[int, ...]] = {}
    for index, (c_in, c_out) in zip((0, 3, 6), ((3, 32), (32, 32), (32, 64))):
        keys[f"{b}stem.conv1.{index}.weight"] = (c_out, c_in, 3, 3)
        if index < 6:
            _frozen_bn(keys, f"{b}stem.conv1.{index + 1}", c_out)
    _frozen_bn(keys, f"{b}stem.bn1", 64)
    in_c = 64
    for stage, blocks in zip(range(2, 6), RESNET_BLOCKS[101]):
        out, bottleneck, width = 256 * 2 ** (stage - 2), 104 * 2 ** (stage - 2), 26 * 2 ** (stage - 2)
        for block in range(blocks):
            p = f"{b}res{stage}.{block}."
            if block == 0:
                keys[p + "shortcut.1.weight"] = (out, in_c, 1, 1)
                _frozen_bn(keys, p + "shortcut.1.norm", out)
            keys[p + "conv1.weight"] = (bottleneck, in_c, 1, 1)
            _frozen_bn(keys, p + "conv1.norm", bottleneck)
            for j in range(3):
                if stage >= 4:
                    keys[f"{p}conv2_offsets.{j}.weight"] = (27, width, 3, 3)
                keys[f"{p}convs.{j}.weight"] = (width, width, 3, 3)
                _frozen_bn(keys, f"{p}bns.{j}", width)
            keys[p + "conv3.weight"] = (out, bottleneck, 1, 1)
            _frozen_bn(keys, p + "conv3.norm", out)
            in_c = out
    def conv(name: str, out: int, inp: int, k: int) -> None:
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (out, inp, k, k), (out,)

    for level, c_in in zip((3, 4, 5), (512, 1024, 2048)):
        conv(f"backbone.fpn_lateral{level}", 256, c_in, 1)
        conv(f"backbone.fpn_output{level}", 256, 256, 3)
    for level in ("p6", "p7"):
        conv(f"backbone.top_block.{level}", 256, 256, 3)
    h = "proposal_generator.centernet_head."
    for index in (0, 3, 6):
        conv(f"{h}bbox_tower.{index}", 256, 256, 3)
    for index in (1, 4, 7, 10):  # GroupNorm(32, 256)
        keys[f"{h}bbox_tower.{index}.weight"], keys[f"{h}bbox_tower.{index}.bias"] = (256,), (256,)
    conv(f"{h}bbox_tower.9.offset", 27, 256, 3)
    conv(f"{h}bbox_tower.9.conv", 256, 256, 3)
    conv(f"{h}bbox_pred", 4, 256, 3)
    conv(f"{h}agn_hm", 1, 256, 3)
    for level in range(5):
        keys[f"{h}scales.{level}.scale"] = (1,)
    return keys


def gtr_layout(*, expander: bool = False) -> dict[str, tuple[int, ...]]:
    """GTR_TAO_DR2101's keys: the DR2101 detector, 3 cascade stages (1203 LVIS v1 classes + background, with the
    training buffer ``freq_weight``), the re-ID head, the association MLPs and the tracking transformer; with
    ``expander`` also the Amodal Expander's per-stage head (the layout of the Amodal Expander releases)."""
    keys = centernet2_dr2101_layout()

    def linear(name: str, out: int, inp: int) -> None:
        keys[f"{name}.weight"], keys[f"{name}.bias"] = (out, inp), (out,)

    for k in range(3):
        linear(f"roi_heads.box_head.{k}.fc1", 1024, 256 * 7 * 7)
        linear(f"roi_heads.box_head.{k}.fc2", 1024, 1024)
        linear(f"roi_heads.box_predictor.{k}.cls_score", 1204, 1024)
        linear(f"roi_heads.box_predictor.{k}.bbox_pred", 4, 1024)
        keys[f"roi_heads.box_predictor.{k}.freq_weight"] = (1203,)
    linear("roi_heads.asso_head.fc1", 1024, 256 * 7 * 7)
    linear("roi_heads.asso_head.fc2", 1024, 1024)
    for proj in ("q_proj", "k_proj"):
        for i in range(2):
            linear(f"roi_heads.asso_predictor.{proj}.layers.{i}", 1024, 1024)
    for layer, attention in (("encoder.layers.0", "self_attn"), ("decoder.layers.0", "multihead_attn")):
        t = f"roi_heads.transformer.{layer}"
        keys[f"{t}.{attention}.in_proj_weight"], keys[f"{t}.{attention}.in_proj_bias"] = (3072, 1024), (3072,)
        linear(f"{t}.{attention}.out_proj", 1024, 1024)
        linear(f"{t}.linear1", 1024, 1024)
        linear(f"{t}.linear2", 1024, 1024)
    if expander:
        for k in range(3):
            linear(f"roi_heads.amodal_expander.{k}.expand_modal_box.layers.0", 256, 1280)
            linear(f"roi_heads.amodal_expander.{k}.expand_modal_box.layers.1", 4, 256)
    return keys


def share_expander(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the Amodal Expander's stages 1 and 2 made the same tensors as stage 0, as the released files
    hold them (one module shared by the three stages, saved once per stage)."""
    for key in [k for k in state if k.startswith("roi_heads.amodal_expander.0.")]:
        for stage in (1, 2):
            state[key.replace(".0.", f".{stage}.", 1)] = state[key]
    return state


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Random tensors for ``layout``: small weights, BN statistics that keep activations finite."""
    g = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in layout.items():
        if key.endswith("relative_position_index"):  # the buffer Swin computes (window 7): the same in every file
            coords = torch.stack(torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")).flatten(1)
            rel = coords[:, :, None] - coords[:, None, :] + 6
            state[key] = rel[0] * 13 + rel[1]
        elif key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = 1.0 + torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif ".bn" in key or "downsample.1" in key or "norm" in key:  # BN / LN affine
            state[key] = (1.0 if key.endswith("weight") else 0.0) + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
    return state


def write_mmcv_checkpoint(path: Path, state: OrderedDict[str, torch.Tensor], **meta) -> Path:
    """Save like mmcv's ``save_checkpoint`` without optimizer: ``{"meta": ..., "state_dict": ...}``; ``meta``
    entries (e.g. ``CLASSES``) join the default ones."""
    torch.save({"meta": {"epoch": 6, "mmdet_version": "2.19.1", **meta}, "state_dict": state}, path)
    return path


class PickledConfig:
    """Stands in for the mmcv ``Config`` object in a checkpoint's ``meta``: a class instance, so the file cannot be
    read with ``torch.load(weights_only=True)`` (like the released DetPro checkpoint)."""

    def __init__(self, text: str) -> None:
        self.text = text


def detpro_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Random tensors in a DetPro ``layout``; the CLIP tensors in the mixed float16 / float32 of ``clip.load`` on a
    GPU."""
    state = random_state(layout, seed)
    for key, tensor in state.items():
        if key.startswith("roi_head.clip_model.") and clip_half_precision(key):
            state[key] = tensor.half()
    return state


#: maskrcnn-benchmark's base anchors (``rpn.anchor_generator.cell_anchors.{level}``) of the LVIS FPN config
#: (sizes 32-512, strides 4-64, ratios 0.5/1/2), as its ``generate_anchors`` computes them.
MASKRCNN_BENCHMARK_CELL_ANCHORS = (
    ((-22, -10, 25, 13), (-14, -14, 17, 17), (-10, -22, 13, 25)),
    ((-40, -20, 47, 27), (-28, -28, 35, 35), (-20, -44, 27, 51)),
    ((-84, -40, 99, 55), (-56, -56, 71, 71), (-36, -80, 51, 95)),
    ((-164, -72, 195, 103), (-112, -112, 143, 143), (-76, -168, 107, 199)),
    ((-332, -152, 395, 215), (-224, -224, 287, 287), (-148, -328, 211, 391)),
)


def lst_layout(num_classes: int = 1231) -> dict[str, tuple[int, ...]]:
    """An LST checkpoint's ``model`` (maskrcnn-benchmark ``GeneralizedRCNN`` with LST's cosine predictor and
    box-to-mask transfer, ``module.`` stripped): R-50-FPN with FrozenBN buffers, RPN with its anchor buffers, the
    ``FPN2MLPCosineFeatureExtractor`` / ``FPNCosinePredictor`` box head, the mask head with ``MLP_mask`` and
    ``bbox2mask``."""
    keys = mmdet_resnet("backbone.body.", 50, bn=_frozen_bn, stem="stem.")
    for k, c in enumerate((256, 512, 1024, 2048), start=1):
        keys.update({f"backbone.fpn.fpn_inner{k}.weight": (256, c, 1, 1), f"backbone.fpn.fpn_inner{k}.bias": (256,),
                     f"backbone.fpn.fpn_layer{k}.weight": (256, 256, 3, 3), f"backbone.fpn.fpn_layer{k}.bias": (256,)})
    keys.update({"rpn.head.conv.weight": (256, 256, 3, 3), "rpn.head.conv.bias": (256,),
                 "rpn.head.cls_logits.weight": (3, 256, 1, 1), "rpn.head.cls_logits.bias": (3,),
                 "rpn.head.bbox_pred.weight": (12, 256, 1, 1), "rpn.head.bbox_pred.bias": (12,)})
    keys.update({f"rpn.anchor_generator.cell_anchors.{i}": (3, 4) for i in range(5)})
    r = "roi_heads."
    keys.update({f"{r}box.feature_extractor.fc6.weight": (1024, 256 * 7 * 7),
                 f"{r}box.feature_extractor.fc6.bias": (1024,),
                 f"{r}box.feature_extractor.fc7.weight": (1024, 1024), f"{r}box.feature_extractor.fc7.bias": (1024,),
                 f"{r}box.predictor.cls_score.weight": (num_classes, 1024),
                 f"{r}box.predictor.bbox_pred.weight": (4 * num_classes, 1024),
                 f"{r}box.predictor.bbox_pred.bias": (4 * num_classes,), f"{r}box.predictor.scale_cls": (1,)})
    for k in range(1, 5):
        keys.update({f"{r}mask.feature_extractor.mask_fcn{k}.weight": (256, 256, 3, 3),
                     f"{r}mask.feature_extractor.mask_fcn{k}.bias": (256,)})
    keys.update({f"{r}mask.predictor.conv5_mask.weight": (256, 256, 2, 2), f"{r}mask.predictor.conv5_mask.bias": (256,),
                 f"{r}mask.predictor.MLP_mask.weight": (784, 256 * 28 * 28), f"{r}mask.predictor.MLP_mask.bias": (784,),
                 f"{r}bbox2mask.0.weight": (1024, 1024), f"{r}bbox2mask.0.bias": (1024,),
                 f"{r}bbox2mask.2.weight": (256, 1024), f"{r}bbox2mask.2.bias": (256,)})
    return keys


def lst_state(num_classes: int = 1231, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """Random tensors in :func:`lst_layout` with the real anchor buffers and ``scale_cls`` at its initial 10; RoI
    head biases scaled down so that RoIs differ in score."""
    state = random_state(lst_layout(num_classes), seed)
    for i, anchors in enumerate(MASKRCNN_BENCHMARK_CELL_ANCHORS):
        state[f"rpn.anchor_generator.cell_anchors.{i}"] = torch.tensor(anchors, dtype=torch.float32)
    state["roi_heads.box.predictor.scale_cls"] = torch.full((1,), 10.0)
    for key in state:
        if key.startswith("roi_heads.box.") and key.endswith(".bias"):
            state[key] = state[key] * 0.01
    state["roi_heads.box.predictor.bbox_pred.weight"] *= 0.1
    return state


def write_maskrcnn_benchmark_checkpoint(path: Path, state: OrderedDict[str, torch.Tensor]) -> Path:
    """Save like maskrcnn-benchmark's ``Checkpointer`` after distributed training: ``{"model", "optimizer",
    "scheduler", "iteration"}``, model keys prefixed ``module.``."""
    first = next(iter(state.values()))
    torch.save({"model": OrderedDict((f"module.{k}", v) for k, v in state.items()),
                "optimizer": {"state": {0: {"momentum_buffer": torch.zeros_like(first)}},
                              "param_groups": [{"lr": 0.005, "momentum": 0.9, "params": [0]}]},
                "scheduler": {"milestones": [60000, 80000], "gamma": 0.1, "last_epoch": 90000},
                "iteration": 90000}, path)
    return path


def bags_htc_layout(depth: int = 101) -> dict[str, tuple[int, ...]]:
    """BAGS's ``gs_htc_dconv_c3-c5_mstrain_400_1400_x101_64x4d_fpn_20e_lvis`` (mmdetection v1): ResNeXt-101 64x4d
    with ``conv2_offset`` (18 channels, bias) beside every 3x3 conv of layer2-4, FPN, RPN, the fused semantic head
    (183 stuff classes), three ``GSBBoxHeadWith0`` (1236 logits, 4 deltas) and three ``HTCMaskHead`` (1231 maps,
    ``conv_res``). ConvModules keep their ``.conv``. ``depth`` 50 gives the same layout with ResNeXt-50's blocks."""
    keys: dict[str, tuple[int, ...]] = {"backbone.conv1.weight": (64, 3, 7, 7)}
    _bn(keys, "backbone.bn1", 64)
    in_c = 64
    for i, n in enumerate(RESNET_BLOCKS[depth]):
        planes = 64 * 2**i
        width, out = planes // 64 * 4 * 64, planes * 4
        for b in range(n):
            p = f"backbone.layer{i + 1}.{b}."
            keys[p + "conv1.weight"] = (width, in_c, 1, 1)
            _bn(keys, p + "bn1", width)
            if i > 0:
                keys[p + "conv2_offset.weight"] = (18, width, 3, 3)
                keys[p + "conv2_offset.bias"] = (18,)
            keys[p + "conv2.weight"] = (width, width // 64, 3, 3)
            _bn(keys, p + "bn2", width)
            keys[p + "conv3.weight"] = (out, width, 1, 1)
            _bn(keys, p + "bn3", out)
            if b == 0:
                keys[p + "downsample.0.weight"] = (out, in_c, 1, 1)
                _bn(keys, p + "downsample.1", out)
            in_c = out
    for i, c in enumerate((256, 512, 1024, 2048)):
        _conv(keys, f"neck.lateral_convs.{i}.conv", 256, c, 1)
        _conv(keys, f"neck.fpn_convs.{i}.conv", 256, 256, 3)
    _conv(keys, "rpn_head.rpn_conv", 256, 256, 3)
    _conv(keys, "rpn_head.rpn_cls", 3, 256, 1)
    _conv(keys, "rpn_head.rpn_reg", 12, 256, 1)
    for i in range(5):
        _conv(keys, f"semantic_head.lateral_convs.{i}.conv", 256, 256, 1)
    for i in range(4):
        _conv(keys, f"semantic_head.convs.{i}.conv", 256, 256, 3)
    _conv(keys, "semantic_head.conv_embedding.conv", 256, 256, 1)
    _conv(keys, "semantic_head.conv_logits", 183, 256, 1)
    for s in range(3):
        _linear(keys, f"bbox_head.{s}.shared_fcs.0", 1024, 256 * 7 * 7)
        _linear(keys, f"bbox_head.{s}.shared_fcs.1", 1024, 1024)
        _linear(keys, f"bbox_head.{s}.fc_cls", 1236, 1024)
        _linear(keys, f"bbox_head.{s}.fc_reg", 4, 1024)
        for i in range(4):
            _conv(keys, f"mask_head.{s}.convs.{i}.conv", 256, 256, 3)
        keys[f"mask_head.{s}.upsample.weight"] = (256, 256, 2, 2)
        keys[f"mask_head.{s}.upsample.bias"] = (256,)
        _conv(keys, f"mask_head.{s}.conv_logits", 1231, 256, 1)
        _conv(keys, f"mask_head.{s}.conv_res.conv", 256, 256, 1)
    return keys


def _conv(keys: dict, name: str, out: int, inp: int, k: int) -> None:
    keys[f"{name}.weight"] = (out, inp, k, k)
    keys[f"{name}.bias"] = (out,)
