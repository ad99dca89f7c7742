"""DetPro: an open-vocabulary Mask R-CNN whose classifier is CLIP's text space (Du et al., CVPR 2022).

Architecture (the released ``detpro_ens_20e`` model; mmdetection 2.7 conventions): ResNet-50 **caffe style**
(stride on each block's first 1x1 conv) with frozen BN, an FPN with BN after every conv (P2-P6), an RPN with 3
anchors per cell (per level the 1000 best, NMS 0.7 per level, 1000 kept, boxes under 0.001 px dropped), RoIAlign
7x7 (sampling 0, aligned) on P2-P5. Two 4conv1fc branches embed each RoI into 1024-d: the *text* branch (which
also regresses one class-agnostic box, stds 0.1/0.1/0.2/0.2) and the *image* branch (distilled from CLIP image
crops in training). Each embedding is projected to 512-d, L2-normalised and compared by cosine similarity
(temperature 0.007) with the L2-normalised class embeddings plus a learned background embedding (last):
``p_text`` is a softmax over C + 1, ``p_img`` the same with the background logit at -1e11. Fused probabilities:
``p_text^(2/3) p_img^(1/3)`` for classes seen in training, ``p_img^(2/3) p_text^(1/3)`` for novel ones, or
``p_img^(1-λ) p_text^λ`` for every class (DetPro's transfer rule, used for custom vocabularies). The box is
repeated for every class with score > 1e-4, class-wise NMS 0.5, 300 detections; a class-agnostic FCN mask head
on 14x14 RoIs of the final boxes gives masks pasted into the input image (threshold 0.5).

The default vocabulary is LVIS v1 (1203 classes, DetPro's released class embeddings ``iou_neg5_ens.pth``); its
names and LVIS category ids come with the weights (``config.json``). :meth:`DetPro.set_vocabulary` embeds any other
list of names with the CLIP text tower stored beside the weights (``text_encoder.safetensors``).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .. import hub
from ..convert import check_state_dict, convert_state_dict, table_for
from ..errors import ConversionError, InputError, WeightsNotFoundError
from ..layers.anchors import AnchorGenerator
from ..layers.box_coder import DeltaXYWHCoder
from ..layers.box_head import ConvFCBoxHead, detect
from ..layers.clip_text import CLIPTextEncoder
from ..layers.mask_head import FCNMaskHead, paste_masks
from ..layers.necks import FPN
from ..layers.precision import float32
from ..layers.resnet import ResNet
from ..layers.roi import boxes_to_rois, pool_rois, unique_rois
from ..layers.rpn import ProposalSelector, RPNHead
from ..registry import ModelSpec
from ..structures import Detections, ImageBatch
from ..text import check_names, class_embeddings, clip_tokenizer
from ..weights import Converted, LoadedWeights, conversion_hint
from .base import Detector

STRIDES = (4, 8, 16, 32, 64)
EMBED_DIM = 512
TEMPERATURE = 0.007
#: exponent of the less trusted branch in the base/novel rule (``p_text`` for novel classes, ``p_img`` for base)
MINOR_EXPONENT = 1 / 3
SCORE_THR, NMS_IOU, MASK_THR = 1e-4, 0.5, 0.5
TEXT_ENCODER_FILE = "text_encoder.safetensors"
CONTEXTS_FILE = "prompt_contexts.safetensors"
LVIS_V1_CLASSES = 1203
#: the code base of the released checkpoint (mmdetection 2.7)
ORIGINAL_FORMAT = "mmdet_v2"
#: mmdetection's spelling of one LVIS v1 name, and the LVIS annotation files' (the category id is the same)
_MMDET_SPELLING = {"speaker_(stereo_equipment)": "speaker_(stero_equipment)"}


class DetPro(Detector):
    """DetPro Mask R-CNN R50-FPN; see the module docstring. Buffers ``class_embeddings (C, 512)`` (the classifier)
    and ``novel (C,)`` (classes that use the novel rule) hold the vocabulary's tensors; ``class_names`` and
    ``category_ids`` its names and dataset ids."""

    open_vocabulary = True
    predict_options = {"masks": True}

    def __init__(self, spec: ModelSpec, num_classes: int = LVIS_V1_CLASSES, proposals: int = 1000,
                 max_per_img: int = 300, fixed_lambda: float = 0.6, text_encoder: dict[str, Any] | None = None) -> None:
        super().__init__(spec)
        self.backbone = ResNet(50, style="caffe")
        self.neck = FPN([256, 512, 1024, 2048], 256, num_outs=5, norm=True)
        anchors = AnchorGenerator(STRIDES, ratios=(0.5, 1.0, 2.0), scales=(8,))
        self.rpn = RPNHead(256, 256, anchors.num_anchors)
        self.proposals = ProposalSelector(anchors, nms_pre=1000, iou=0.7, max_per_img=proposals, min_size=0.001)
        branch = dict(num_convs=4, norm=True, num_fcs=1)
        self.box_head = ConvFCBoxHead(256, 7, None, **branch, with_reg=True)  # text branch + class-agnostic deltas
        self.image_head = ConvFCBoxHead(256, 7, None, **branch, with_reg=False)
        self.projection = nn.Linear(1024, EMBED_DIM)
        self.projection_for_image = nn.Linear(1024, EMBED_DIM)
        self.bg_embedding = nn.Linear(1, EMBED_DIM)  # applied to the constant 1: the vector is weight[:, 0] + bias
        self.mask_head = FCNMaskHead(num_classes=1)
        self.coder = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2))
        self.register_buffer("class_embeddings", torch.zeros(num_classes, EMBED_DIM))
        self.register_buffer("novel", torch.zeros(num_classes, dtype=torch.bool))
        self.max_per_img = max_per_img
        self.fixed_lambda = fixed_lambda
        #: λ of the transfer rule for every class, or None for the per-class base/novel rule (``novel``)
        self.score_lambda: float | None = None
        self.text_encoder_config = dict(text_encoder or {})
        self._class_names = tuple(f"class_{i}" for i in range(num_classes))  # placeholders until weights load
        self._category_ids = list(range(1, num_classes + 1))  # LVIS ids for the default vocabulary, 1..C for others
        self._files = hub.WeightFiles()

    # ------------------------------------------------------------------------------------------------ weights

    def load_weights(self, weights: LoadedWeights) -> None:
        """Load the weights and the vocabulary that comes with them (``config.json``: classes, category ids)."""
        config = weights.config
        if "classes" not in config or "category_ids" not in config:
            raise WeightsNotFoundError(
                f"{self.spec.name} takes its vocabulary from the config.json that comes with its weights, and "
                f"{weights.provenance['weights']} has none: load the folder written by `vfe-hub convert` "
                f"(weights=<folder>) or the Hub repository.")
        super().load_weights(weights)
        names, ids = tuple(config["classes"]), list(config["category_ids"])
        if not len(names) == len(ids) == len(self.class_embeddings):
            raise WeightsNotFoundError(f"{weights.provenance['weights']}: config.json lists {len(names)} classes and "
                                       f"{len(ids)} category ids for {len(self.class_embeddings)} class embeddings.")
        self._class_names, self._category_ids, self.score_lambda = names, ids, None
        self._files = weights.files
        self.text_encoder_config = dict(config.get("config", {}).get("text_encoder", self.text_encoder_config))

    def _text_encoder(self, progress: bool | None) -> CLIPTextEncoder:
        """CLIP's text tower from ``text_encoder.safetensors`` beside the weights, on the model's device."""
        path = self._files.path(TEXT_ENCODER_FILE, progress)
        state = hub.read_safetensors(path)
        encoder = CLIPTextEncoder(**self.text_encoder_config)
        check_state_dict(state, {k: v.shape for k, v in encoder.state_dict().items()}, f"The text encoder {path}")
        encoder.load_state_dict(state, strict=True)
        return encoder.to(self.device).eval()

    def _contexts(self, progress: bool | None) -> torch.Tensor | None:
        """DetPro's learned prompt contexts ``(P, K, width)`` if the weights have them, else None."""
        if CONTEXTS_FILE not in self._files:
            return None
        return hub.read_safetensors(self._files.path(CONTEXTS_FILE, progress))["contexts"]

    def set_vocabulary(self, names: Sequence[str], *, seen: Iterable[str] | None = None,
                       progress: bool | None = None) -> None:
        """Detect the classes ``names`` (unique non-empty strings) instead of the current vocabulary.

        Their embeddings come from the CLIP text tower stored with the weights (read only here, and only when
        this vocabulary is not in the cache ``<cache_dir>/embeddings``, keyed by the text tower's sha256, the
        prompts and the names): DetPro's learned prompts when the weights include them
        (``prompt_contexts.safetensors``, written by ``vfe-hub convert --contexts``), else ViLD's 74 templates.
        Scores: with ``seen`` (names of this vocabulary among the classes the detector was trained on) seen classes
        use the base rule and the others the novel rule; without, every class uses DetPro's transfer rule
        ``p_img^(1-λ) p_text^λ`` with λ = ``fixed_lambda`` (0.6). The softmax runs over the vocabulary, so scores
        of a small vocabulary are higher than LVIS's. Category ids become ``1..C``.
        """
        names = check_names(names)
        seen_set = set(seen) if seen is not None else None
        if seen_set is not None and not seen_set <= set(names):
            raise InputError(f"seen must name classes of the vocabulary; not in it: {sorted(seen_set - set(names))!r}.")
        if TEXT_ENCODER_FILE not in self._files:
            raise WeightsNotFoundError(f"{self.spec.name}: these weights ({self.weights_provenance['weights']}) come "
                                       f"without {TEXT_ENCODER_FILE}, needed to embed a vocabulary;"
                                       + conversion_hint(self.spec))
        embeddings = class_embeddings(lambda: self._text_encoder(progress), lambda: clip_tokenizer(progress=progress),
                                      names, contexts=self._contexts(progress),
                                      weights_id=self._files.listed[TEXT_ENCODER_FILE], progress=progress)
        device = self.class_embeddings.device
        self.class_embeddings = embeddings.to(device)
        self.novel = torch.tensor([seen_set is not None and n not in seen_set for n in names], device=device)
        self.score_lambda = None if seen_set is not None else self.fixed_lambda
        self._class_names, self._category_ids = tuple(names), list(range(1, len(names) + 1))

    # ------------------------------------------------------------------------------------------------ inference

    @float32("open-vocabulary classifier")
    def class_scores(self, text_embedding: torch.Tensor, image_embedding: torch.Tensor) -> torch.Tensor:
        """Fused class probabilities ``(K, C)`` (no background column) of the two branches' RoI embeddings
        ``(K, 1024)``, computed in float32 (see the module docstring for the rule)."""
        background = self.bg_embedding.weight[:, 0] + self.bg_embedding.bias
        classes = F.normalize(torch.cat([self.class_embeddings, background[None]]), dim=1)
        text = F.normalize(self.projection(text_embedding), dim=1) @ classes.T / TEMPERATURE
        image = F.normalize(self.projection_for_image(image_embedding), dim=1) @ classes.T / TEMPERATURE
        image[:, -1] = -1e11
        p_text, p_image = text.softmax(dim=1)[:, :-1], image.softmax(dim=1)[:, :-1]
        if self.score_lambda is not None:
            return p_image ** (1 - self.score_lambda) * p_text ** self.score_lambda
        a = MINOR_EXPONENT
        return torch.where(self.novel, p_image ** (1 - a) * p_text ** a, p_text ** (1 - a) * p_image ** a)

    def forward(self, batch: ImageBatch, masks: bool = True) -> list[Detections]:
        """Detections with masks (``masks=False``: without) for the images of ``batch``."""
        feats = self.neck(self.backbone(batch.images))
        proposals = [boxes for boxes, _ in self.proposals(self.rpn(feats), batch.image_sizes)]
        # mmcv's RoIAlign(aligned=True), no minimum size: torchvision's aligned rule (see layers/roi.py)
        pooled = pool_rois(feats[:4], boxes_to_rois(proposals), STRIDES[:4], output_size=7, sampling_ratio=0)
        embedding = self.box_head.embed(pooled)
        scores = self.class_scores(embedding, self.image_head.embed(pooled))
        counts = [len(p) for p in proposals]
        dets = [detect(boxes, s, d, self.coder, size, scale, SCORE_THR, NMS_IOU, self.max_per_img)
                for boxes, s, d, size, scale in zip(proposals, scores.split(counts),
                                                    self.box_head.bbox_pred(embedding).split(counts),
                                                    batch.image_sizes, batch.scales)]
        binary = self._masks(feats, [boxes for boxes, _, _ in dets], batch) if masks else [None] * len(dets)
        return [self.make_detections(frame, *det, masks=m) for frame, det, m in zip(batch.frames, dets, binary)]

    def _masks(self, feats: list[torch.Tensor], boxes: list[torch.Tensor], batch: ImageBatch) -> list[torch.Tensor]:
        """Binary masks ``(N_i, H_i, W_i)`` in input pixels for the final ``boxes`` (input pixels) of each image:
        14x14 RoIs of the boxes mapped back to the resized image, sigmoid, pasted, thresholded at 0.5."""
        resized = [b * b.new_tensor([sx, sy, sx, sy]) for b, (sx, sy) in zip(boxes, batch.scales)]
        rois, rows = unique_rois(boxes_to_rois(resized))  # the classes kept for one proposal share its box
        pooled = pool_rois(feats[:4], rois, STRIDES[:4], output_size=14, sampling_ratio=0)
        probs = self.mask_head(pooled)[rows, 0].float().sigmoid()
        return [paste_masks(p, b, frame.size, MASK_THR)
                for p, b, frame in zip(probs.split([len(b) for b in boxes]), boxes, batch.frames)]


def build(spec: ModelSpec, **overrides: Any) -> DetPro:
    """A DetPro network for ``spec`` (random weights, eval mode); ``overrides`` replace entries of ``spec.config``."""
    return DetPro(spec, **{**spec.config, **overrides}).eval()


# ---------------------------------------------------------------------------------------------------- conversion


def read_lvis_categories(path: Path) -> tuple[list[str], list[int], torch.Tensor]:
    """``(names, category ids, novel (C,) bool)`` of an LVIS v1 annotation file's categories sorted by id (the row
    order of DetPro's class embeddings); novel = LVIS frequency ``"r"`` (rare: not in DetPro's training classes).
    ``path`` may also hold the bare list of categories (``vfe_hub/assets/lvis_v1_categories.json``)."""
    try:
        data = json.loads(path.read_text())
        categories = sorted(data["categories"] if isinstance(data, dict) else data, key=lambda c: c["id"])
        names = [c["name"] for c in categories]
        ids = [int(c["id"]) for c in categories]
        novel = torch.tensor([c["frequency"] == "r" for c in categories])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConversionError(f"--categories {path}: not an LVIS annotation file with categories (id, name, "
                              f"frequency) ({type(e).__name__}: {e}). Pass lvis_v1_val.json or lvis_v1_train.json."
                              ) from e
    if len(names) != LVIS_V1_CLASSES:
        raise ConversionError(f"--categories {path} has {len(names)} categories; LVIS v1 has {LVIS_V1_CLASSES}. "
                              f"Pass an LVIS v1 annotation file (lvis_v1_val.json), not LVIS v0.5 or COCO.")
    return names, ids, novel


def _check_meta_classes(checkpoint: object, names: list[str], path: Path) -> None:
    """If the mmcv checkpoint records ``meta["CLASSES"]``, they must be the categories' names (up to mmdet's
    spelling of one name)."""
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    classes = meta.get("CLASSES") if isinstance(meta, dict) else None
    if classes is None:
        return
    spelled = [_MMDET_SPELLING.get(c, c) for c in classes]
    if spelled != names:
        diff = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(spelled, names)) if a != b][:5]
        raise ConversionError(f"{path} was trained on {len(classes)} classes that are not the {len(names)} categories "
                              f"of --categories (first differences: {'; '.join(diff) or 'lengths differ'}).")


def _read_tensor(path: Path, option: str) -> torch.Tensor:
    tensor = hub.load_checkpoint(path)  # weights_only: a plain tensor (saved from CUDA: mapped to the CPU)
    if not isinstance(tensor, torch.Tensor):
        raise ConversionError(f"{option} {path} holds a {type(tensor).__name__}, not a tensor.")
    return tensor.float()


def read_class_embeddings(path: Path, num_classes: int) -> torch.Tensor:
    """DetPro's class embeddings file (``[C, 512]`` or ``[1, C, 512]``) as L2-normalised rows ``(C, 512)``."""
    rows = _read_tensor(path, "--embeddings").squeeze()
    if rows.shape != (num_classes, EMBED_DIM):
        raise ConversionError(f"--embeddings {path} has shape {tuple(rows.shape)}; expected ({num_classes}, "
                              f"{EMBED_DIM}) (one CLIP embedding per category, e.g. iou_neg5_ens.pth).")
    return F.normalize(rows, dim=1)


def read_contexts(paths: Sequence[Path], width: int) -> torch.Tensor:
    """DetPro's learned prompt contexts (``*_prompt.pth``, ``[K, width]`` each) stacked as ``(P, K, width)``."""
    contexts = [_read_tensor(p, "--contexts").squeeze(0) for p in paths]
    shapes = {tuple(c.shape) for c in contexts}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != width:
        raise ConversionError(f"--contexts must be tensors of one shape (K, {width}); got "
                              f"{[tuple(c.shape) for c in contexts]} from {[str(p) for p in paths]}.")
    return torch.stack(contexts)


def _record(path: Path) -> dict[str, str]:
    return {"file": path.name, "sha256": hub.sha256_of(path)}


def convert(model: DetPro, path: Path, *, embeddings: str | Path | None = None, categories: str | Path | None = None,
            contexts: Sequence[str | Path] = ()) -> Converted:
    """Convert DetPro's release into vfe_hub's layout.

    ``path`` is the mmcv checkpoint, read without running code of the file (:func:`vfe_hub.hub.load_checkpoint`:
    Python objects its ``meta`` may store become inert placeholders; ``meta["CLASSES"]`` is checked against the
    categories). ``embeddings`` is the class
    embeddings file, ``categories`` any LVIS v1 annotation file (names, ids, rare = novel), ``contexts`` DetPro's
    learned prompt contexts (optional). The result: the detector with ``class_embeddings`` and ``novel``, the
    vocabulary for ``config.json``, the CLIP text tower (float32) as ``text_encoder.safetensors`` and the contexts
    as ``prompt_contexts.safetensors``. CLIP's image tower and ``logit_scale`` are dropped.
    """
    spec = model.spec
    if embeddings is None or categories is None:
        raise ConversionError(f"{spec.name} is converted from its checkpoint, its class embeddings (--embeddings) "
                              f"and the LVIS v1 categories (--categories)." + conversion_hint(spec))
    embeddings, categories, contexts = Path(embeddings), Path(categories), [Path(p) for p in contexts]
    names, ids, novel = read_lvis_categories(categories)
    rows = read_class_embeddings(embeddings, len(names))
    checkpoint = hub.load_checkpoint(path)
    _check_meta_classes(checkpoint, names, path)
    encoder = CLIPTextEncoder(**model.text_encoder_config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k not in ("class_embeddings", "novel")}
    expected |= {f"text_encoder.{k}": v.shape for k, v in encoder.state_dict().items()}
    state, dropped = convert_state_dict(hub.state_dict_of(checkpoint, path), table_for(ORIGINAL_FORMAT), expected)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    text = {k.removeprefix("text_encoder."): state.pop(k) for k in sorted(state) if k.startswith("text_encoder.")}
    state |= {"class_embeddings": rows, "novel": novel}
    files = {TEXT_ENCODER_FILE: text}
    inputs: dict[str, Any] = {"embeddings": _record(embeddings), "categories": _record(categories)}
    if contexts:
        files[CONTEXTS_FILE] = {"contexts": read_contexts(contexts, encoder.positional_embedding.shape[1])}
        inputs["contexts"] = [_record(p) for p in contexts]
    return Converted(state, ORIGINAL_FORMAT, {"classes": names, "category_ids": ids, "inputs": inputs}, files, dropped)
