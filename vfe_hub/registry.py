"""The model registry: one :class:`ModelSpec` per model name, the single source of every fact about a model.

``model_info``, the ``hubconf.py`` entry points and their docstrings, the model cards' front matter, the README's
model table and the benchmark tables are all generated from the entries below.
"""
from __future__ import annotations

import fnmatch
import importlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import Any

from .errors import UnknownModelError, VfeHubError, close_matches

IMAGENET_VID_CLASSES: tuple[str, ...] = (
    "airplane", "antelope", "bear", "bicycle", "bird", "bus", "car", "cattle", "dog", "domestic_cat",
    "elephant", "fox", "giant_panda", "hamster", "horse", "lion", "lizard", "monkey", "motorcycle", "rabbit",
    "red_panda", "sheep", "snake", "squirrel", "tiger", "train", "turtle", "watercraft", "whale", "zebra",
)


#: :attr:`DriveFile.sha256` of a file whose checksum was never published and could not be measured here: the first
#: download records the size and sha256 it sees, and every later download and ``vfe-hub cache verify`` must match them.
UNPINNED = "unpinned"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DriveFile:
    """One file of an original release on Google Drive: its Drive file ``id``, the id of the ``folder`` holding it,
    or both. Without an ``id`` (only the folder was shared) the file is looked up by ``filename`` in the folder's
    listing. Files of one folder are cached together (``drive/<folder>/``), so they can be passed as one folder.

    ``sha256`` and ``size`` pin its bytes; ``sha256=UNPINNED`` (and ``size=None``) says explicitly that they are not
    known (see :data:`UNPINNED`).
    """

    filename: str
    sha256: str
    size: int | None = None
    id: str = ""
    folder: str = ""

    def __post_init__(self) -> None:
        if not (self.id or self.folder):
            raise ValueError(f"DriveFile {self.filename!r}: give its Drive file id, the id of its folder, or both.")
        if not (_SHA256.match(self.sha256) or self.sha256 == UNPINNED and self.size is None):
            raise ValueError(f"DriveFile {self.filename!r}: sha256 must be 64 hex digits, or UNPINNED (size None), "
                             f"not {self.sha256!r}.")

    @property
    def pinned(self) -> bool:
        """Whether the registry knows the file's sha256."""
        return self.sha256 != UNPINNED

    @property
    def key(self) -> str:
        """The Drive id that names the file's place in the cache: its folder's, else its own."""
        return self.folder or self.id

    def where(self, file_id: str | None = None) -> str:
        """Where it is, for people: ``"Google Drive id ..."`` (its own id, or ``file_id`` when it was looked up in
        its folder) or ``"Google Drive folder ..."``."""
        file_id = file_id or self.id
        return f"Google Drive id {file_id}" if file_id else f"Google Drive folder {self.folder}"

    def place(self) -> str:
        """:meth:`where` it is, and whether it is unpinned, for cards and errors."""
        return self.where() + ("" if self.pinned else " (unpinned)")


@dataclass(frozen=True)
class Asset:
    """A file shipped in ``vfe_hub/assets`` that stands in for a file of an original release."""

    name: str


@dataclass(frozen=True)
class DriveRelease:
    """An original release published only on Google Drive, converted on first load.

    ``checkpoint`` is the original checkpoint; ``inputs`` the further inputs of the family's ``convert`` (keyword ->
    source): a Drive file (its path is passed), several Drive files (passed as one folder holding them) or an
    :class:`Asset` of the package. ``notes`` says what each input is, for cards and errors (keyword -> text).
    """

    checkpoint: DriveFile
    inputs: dict[str, DriveFile | tuple[DriveFile, ...] | Asset] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, source in self.inputs.items():
            if isinstance(source, tuple) and (len({f.folder for f in source}) != 1 or not source[0].folder):
                raise ValueError(f"DriveRelease input {what!r}: files passed as one folder must name the Drive "
                                 f"folder they are in (the same for all).")

    def files(self) -> tuple[DriveFile, ...]:
        """Every Drive file of the release, the checkpoint first."""
        found = [self.checkpoint]
        for source in self.inputs.values():
            found += [source] if isinstance(source, DriveFile) else list(source) if isinstance(source, tuple) else []
        return tuple(found)

    @property
    def pinned(self) -> bool:
        """Whether every Drive file of the release is pinned."""
        return all(f.pinned for f in self.files())

    def describe(self) -> dict[str, str]:
        """What each file is and where it is (``"<filename> (note)"`` -> place), for cards and errors."""
        def label(what: str, names: str) -> str:
            return f"<{names}> ({self.notes[what]})" if what in self.notes else f"<{names}>"

        places = {label("checkpoint", self.checkpoint.filename): self.checkpoint.place()}
        for what, source in self.inputs.items():
            if isinstance(source, Asset):
                places[label(what, source.name)] = f"shipped with vfe_hub (vfe_hub/assets/{source.name})"
            elif isinstance(source, DriveFile):
                places[label(what, source.filename)] = source.place()
            else:
                places[label(what, " and ".join(f.filename for f in source))] = "; ".join(
                    dict.fromkeys(f.place() for f in source))
        return places


@dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights live on the Hugging Face Hub.

    ``revision`` is a commit id (never a branch), so a load is reproducible. ``sha256`` is the file's checksum;
    ``None`` means it was not published with the release, and the download is then checked against the Hub's own
    LFS sha256 (the ``X-Linked-Etag`` header) instead. ``format`` names the layout of the file: ``"vfe_hub"``
    (a folder converted and published by this project: ``model.safetensors`` in this package's key layout with its
    ``config.json``, and optional companion files) or the original code base (``"mmdet_v2"``), which is converted
    strictly on first load and cached as safetensors.

    A ``"vfe_hub"`` repository this project has not published yet has ``revision=None`` (the repository's main
    branch once it exists; the commit loaded is recorded in the results' provenance) and ``sha256=None`` (the
    download is checked against ``config.json`` and the Hub's LFS sha256); original-format files always name a
    commit. ``drive`` is the original release on Google Drive: while the repository is unpublished
    (``revision=None``), a load downloads, checks and converts it (cached like a Hub original); pinning the
    published repository's commit (and sha256) switches the model to the Hub with no other change. ``originals``
    says where other original files can be downloaded by hand (file -> place), for loads that fail.
    ``unreleased`` says why no weights can be downloaded at all (none were ever published): a load without
    ``weights=`` then fails with it at once.
    """

    repo_id: str
    filename: str
    revision: str | None
    format: str
    sha256: str | None = None
    size: int | None = None
    licence_note: str = ""
    originals: dict[str, str] = field(default_factory=dict)
    unreleased: str = ""
    drive: DriveRelease | None = None

    def __post_init__(self) -> None:
        if self.revision is None and self.format != "vfe_hub":
            raise ValueError(f"{self.repo_id}/{self.filename}: an original-format file must be pinned to a commit "
                             f"(revision=None is only for repositories of converted vfe_hub weights).")

    @property
    def from_drive(self) -> bool:
        """Whether a load takes the original release on Google Drive (the converted repository is unpublished)."""
        return self.drive is not None and self.revision is None

    def sources(self) -> dict[str, str]:
        """Every original file a user can download by hand (file -> place): the Drive release, then ``originals``."""
        return {**(self.drive.describe() if self.drive else {}), **self.originals}


@dataclass(frozen=True)
class Preprocess:
    """The test-time input pipeline of a model and the arithmetic of its original's post-processing.

    The image is resized with its aspect ratio kept by ``s = min(max_size / long_edge, min_size / short_edge)``
    to ``int(w * s + 0.5) x int(h * s + 0.5)`` (bilinear, small images are upscaled), normalised as
    ``(rgb - mean) / std`` on the 0-255 scale, then zero-padded at the bottom and right to a multiple of
    ``size_divisor``.

    ``style="maskrcnn_benchmark"`` is that code base's pipeline instead: the short edge becomes ``min_size``, or
    ``int(round(max_size * short / long))`` when the long edge would exceed ``max_size``, and the long edge
    ``int(short' * long / short)`` (truncated); ``mean`` and ``std`` are then in **BGR** order, applied to ``bgr``
    on the 0-255 scale. ``style="detectron2"`` is detectron2's ``ResizeShortestEdge``: the short edge is scaled to
    ``min_size``, both edges scaled down again when the long one exceeds ``max_size``, each ``int(x + 0.5)`` (the
    same sizes as mmcv's rule except for about one in 10,000 extreme aspect ratios, where the float arithmetic
    rounds a ``.5`` the other way).

    ``library`` names the original's resize: ``"cv2"`` (mmcv's ``imresize``: ``cv2.resize`` ``INTER_LINEAR`` on
    uint8) or ``"pil"`` (``PIL.Image.resize(BILINEAR)``: antialiased when shrinking). ``std_reciprocal``: the
    original normalises as ``(x - mean) * float32(1 / std)`` (mmcv >= 1.0's ``imnormalize``) rather than dividing.
    ``nms`` names the arithmetic of the original's class-wise NMS (:data:`vfe_hub.layers.nms.ARITHMETIC`):
    ``"mmcv"`` (mmcv's ``batched_nms``: boxes shifted by class, IoU tested as ``inter > t * union``),
    ``"torchvision"`` (torchvision's ``batched_nms`` before 0.10: boxes shifted by class) or ``"per_class"`` (a
    loop over classes, mmdetection v1 and maskrcnn-benchmark). ``pipeline="original"`` (:func:`vfe_hub.load`)
    reproduces these; the default pipeline resizes with torch on the device and runs exact class-wise NMS.
    ``clip_to_input``: results' boxes are clipped to the input image, as the original's (mmdetection 2.x clips in
    resized pixels to ``[0, W']`` and scales back, detectron2 clips after scaling back); ``False`` for the
    pixel-inclusive originals (mmdetection v1, maskrcnn-benchmark), which clip ``x2`` to the last resized pixel
    ``W' - 1`` and export ``x2 + 1``: scaled back, that edge passes the input's right edge by up to ``1 - W / W'``
    pixel on upscaled images, and the results keep it there (``x2 - x1`` is the exported width).
    """

    max_size: int
    min_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    size_divisor: int
    style: str = "mmcv"
    library: str = "cv2"
    std_reciprocal: bool = False
    nms: str = "mmcv"
    clip_to_input: bool = True

    def __post_init__(self) -> None:
        for key, valid in (("style", ("mmcv", "maskrcnn_benchmark", "detectron2")), ("library", ("cv2", "pil")),
                           ("nms", ("mmcv", "torchvision", "per_class"))):
            if getattr(self, key) not in valid:
                raise ValueError(f"Preprocess.{key} must be one of {valid}, got {getattr(self, key)!r}")


#: how ``ModelSpec.cpu_seconds_per_frame`` was measured (random weights: the same network as the trained ones; each
#: model resizes the 720 x 1280 frames by its own rule)
CPU_SPEED_COMMAND = "python benchmarks/speed.py {name} --device cpu --batch-sizes 1 --frames 3 --size 720 1280"
CPU_SPEED_MACHINE = ("2 cores of an AMD EPYC (x86-64) shared with other work, torch 2.14.1, float32, batch 1; the "
                     "lowest of three runs, which differed up to fourfold")


@dataclass(frozen=True)
class Paper:
    title: str
    url: str
    venue: str
    citation: str


@dataclass(frozen=True)
class ModelSpec:
    """Everything vfe_hub knows about one published model.

    ``family`` names the module ``vfe_hub.models.<family>``, which builds the network from ``config``.
    ``classes`` is the fixed vocabulary; it is empty for open-vocabulary models, whose default vocabulary ships
    with the weights (``config.json``) and can be replaced at load time.
    ``metrics`` holds the paper's numbers per benchmark, ``{dataset: {metric: value}}``, in percent as the paper
    prints them, with the metric names the evaluator returns (the evaluator returns fractions; mask metrics are
    prefixed ``mask_``); ``metrics_note`` says why numbers are missing where they are. ``architecture`` names the
    architecture when the spec is one of its weight variants (``<architecture>.<tag>``, see :class:`Variant`).
    ``details`` (Markdown) describes the architecture and training for the model card, where the summary is too
    short. ``convert_options``: what ``vfe-hub convert`` needs beyond the checkpoint, as written on its command line
    (:func:`conversion_command`). ``cpu_seconds_per_frame``: the time of one frame on a CPU
    (:data:`CPU_SPEED_COMMAND` on :data:`CPU_SPEED_MACHINE`). ``float32_ops`` names the computations kept in
    float32 when the model runs in half precision (keys of :data:`vfe_hub.layers.precision.OPS`; the model card
    says why).
    """

    name: str
    family: str
    task: str
    summary: str
    classes: tuple[str, ...]
    weights: WeightsSpec
    preprocess: Preprocess
    paper: Paper
    licence: str
    datasets: tuple[str, ...]
    metrics: dict[str, dict[str, float]]
    temporal: str
    protocols: dict[str, str] = field(default_factory=dict)
    dtypes: tuple[str, ...] = ("float32", "float16", "bfloat16")
    float32_ops: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    original_code: str = ""
    tags: tuple[str, ...] = ()
    architecture: str | None = None
    metrics_note: str = ""
    details: str = ""
    convert_options: str = ""
    cpu_seconds_per_frame: float | None = None

    def info(self) -> dict[str, Any]:
        """The spec as plain data (JSON-serialisable)."""
        return asdict(self)

    def build(self, **overrides: Any):
        """A randomly initialised network of this model, in eval mode."""
        family = importlib.import_module(f"vfe_hub.models.{self.family}")
        return family.build(self, **overrides)


_MAMBA_CITATION = """@inproceedings{sun2021mamba,
  title     = {MAMBA: Multi-level Aggregation via Memory Bank for Video Object Detection},
  author    = {Sun, Guanxiong and Hua, Yang and Hu, Guosheng and Robertson, Neil},
  booktitle = {AAAI Conference on Artificial Intelligence},
  year      = {2021}
}"""

_STPN_CITATION = """@inproceedings{sun2023stpn,
  title     = {Spatio-temporal Prompting Network for Robust Video Feature Extraction},
  author    = {Sun, Guanxiong and Wang, Chi and Zhang, Zhaoyu and Deng, Jiankang and Zafeiriou, Stefanos and Hua, Yang},
  booktitle = {IEEE/CVF International Conference on Computer Vision (ICCV)},
  year      = {2023}
}"""

_LST_CITATION = """@inproceedings{hu2020lst,
  title     = {Learning to Segment the Tail},
  author    = {Hu, Xinting and Jiang, Yi and Tang, Kaihua and Chen, Jingyuan and Miao, Chunyan and Zhang, Hanwang},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2020}
}"""

_LST_CODE = "https://github.com/JoyHuYY1412/LST_LVIS"

_LST_DETAILS = """\
**Network** (maskrcnn-benchmark conventions; inference is the graph of the last training phase):

- ResNet-50 with the stride in each block's first 1x1 conv and frozen batch norm **without eps**; FPN P2-P5 plus
  P6 by max-pooling.
- RPN: 3 anchors per cell (sizes 32-512, ratios 0.5/1/2; the base anchors are buffers of the checkpoint), per
  level the 1000 best by sigmoid score, NMS 0.7, then the 1000 best per image.
- Box head: RoIAlign 7x7 (sampling 2, not aligned), fc6 + ReLU, fc7 without ReLU. A **cosine classifier**:
  `scale_cls` times the cosine of fc7 and each class's weight row (no bias), softmax over background + C. The
  class-specific regressor (weights 10/10/5/5) reads ReLU(fc7). Every (box, class) with a score above 0 enters
  class-wise NMS 0.5 (IoU with "+1" widths); 300 detections per image.
- Mask head: RoIAlign 14x14 of the final boxes, 4 conv3x3 + ReLU, 2x2 deconv + ReLU (28x28). The logits of a class
  are a 1x1 conv with that class's filter, made from its **raw** classifier row by the weight transfer `bbox2mask`
  (Linear 1024-1024, LeakyReLU, Linear 1024-256, LeakyReLU; computed once when the weights load), plus
  `MLP_mask`, a linear layer from the 256x28x28 features to one 28x28 map shared by all classes (157 M
  parameters, about 630 MB in float32). Masks are pasted by maskrcnn-benchmark's `Masker` (one cell of padding,
  threshold 0.5).
- Input: PIL bilinear resize (short side 800, long side at most 1333, the long side truncated), BGR x 255 minus
  the pixel mean (no std), padded to a multiple of 32.

**Classes**: label k is the k-th id of LST's list of the 1230 LVIS v0.5 categories by decreasing training
frequency (`lvis_sorted_id_all.json`, which travels with the converted weights); results carry LVIS v0.5
category ids.

**The seven phases** (class-incremental training): the base phase learns the 270 most frequent classes (271
outputs with the background; branch `maskrcnn_base`); six incremental phases then add 160 rarer classes each
(431, 591, 751, 911, 1071, 1231 outputs), with the whole ResNet frozen, the new classifier rows appended to the
old ones, distillation of the previous phase's cosine similarities on old classes (branch `get_distillation`)
and a balanced replay of old-class images. `vfe-hub convert` reads the number of classes from any phase's
checkpoint; the card's numbers refer to the final 1231-class phase.

**MLP_mask in float16** (`vfe-hub convert ... --fp16-mask`): the converted folder stores `MLP_mask`'s weight in
float16 (about 315 MB instead of 630 MB); it is cast back to float32 when loaded. Measured with random weights of
the trained scale on 64 RoIs of ReLU features (`test_fp16_mask_storage_changes_mask_logits_little`): the mask
logits (mean magnitude 0.83) move by at most 6e-4 (mean 1.2e-4), the probabilities by at most 1.4e-4, and one
28x28 mask cell in 10,000 crosses the 0.5 threshold. Measure it again on trained weights before relying on it."""

_DETPRO_CITATION = """@inproceedings{du2022detpro,
  title     = {Learning to Prompt for Open-Vocabulary Object Detection with Vision-Language Model},
  author    = {Du, Yu and Wei, Fangyun and Zhang, Zihe and Shi, Miaojing and Gao, Yue and Li, Guoqi},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""

_GTR_CITATION = """@inproceedings{zhou2022global,
  title     = {Global Tracking Transformers},
  author    = {Zhou, Xingyi and Yin, Tianwei and Koltun, Vladlen and Kr{\\"a}henb{\\"u}hl, Philipp},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}"""


#: the computations of a two-stage detector kept in float32 in half precision (see vfe_hub.layers.precision)
_TWO_STAGE_OPS = ("predictor outputs", "proposal selection", "box decoding", "RoIAlign", "score threshold and NMS")
_GTR_OPS = (*_TWO_STAGE_OPS, "deformable convolution", "track association")

_DETECTRON2_PREPROCESS = Preprocess(max_size=1333, min_size=800, mean=(123.675, 116.28, 103.53),
                                    std=(58.395, 57.12, 57.375), size_divisor=32, style="detectron2",
                                    library="pil", nms="torchvision")
"""detectron2's ResizeShortestEdge(800, 1333) (PIL bilinear), RGB, ImageNet mean and std, padded to 32; torchvision's
batched_nms (GTR and its descendants)."""

_GTR_TEMPORAL = (
    "A 16-frame window of re-ID features: each frame's detections are associated with the tracks of the "
    "window by the tracking transformer and the Hungarian algorithm; each track is classified by the mean "
    "class scores of its detections."
)

_GTR_PROTOCOLS = {
    "streaming": (
        "Results with every frame: each detection takes the mean class scores of its track so far; no "
        "track is removed afterwards (short tracks stay). A frame's answer cannot wait for the end of the "
        "video, so neither a track's whole-video mean nor its final length is known yet. Works on live video. "
        "The default."
    ),
    "paper": (
        "GTR's evaluation: results after the last frame of the video, tracks of fewer than 5 detections "
        "dropped, every detection classified by its track's mean over the whole video. Reproduces the "
        "published number."
    ),
}

_BAGS_CITATION = """@inproceedings{li2020overcoming,
  title     = {Overcoming Classifier Imbalance for Long-Tail Object Detection With Balanced Group Softmax},
  author    = {Li, Yu and Wang, Tao and Kang, Bingyi and Tang, Sheng and Wang, Chunfeng and Li, Jintao and Feng, Jiashi},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages     = {10991--11000},
  year      = {2020}
}"""

_TAO_AMODAL_CITATION = """@article{hsieh2023tracking,
  title   = {Tracking Any Object Amodally},
  author  = {Hsieh, Cheng-Yen and Khurana, Tarasha and Dave, Achal and Ramanan, Deva},
  journal = {arXiv preprint arXiv:2312.12433},
  year    = {2023}
}"""


#: sha256 of the Amodal Expander release's files (checked on the Hub's file pages)
_AMODAL_SHA256 = {"20k": "35182f944bc7dd974fc6b93368d4b4012a134de0924f71abef247e95330ba08d",
                  "pno_20k": "31f0cde882bfa852659d08b3582ddbea9aa1a5968c565b95e69dba5888031406",
                  "pno_45k": "16820ff14bd2107b77a32dce93b3d9e470b42954d8d6bc1ec37f264d42924c34"}


def _amodal_expander_file(filename: str, sha256: str, size: int) -> WeightsSpec:
    """A file of the Amodal Expander release on the Hub (detectron2 checkpoints)."""
    return WeightsSpec(
        repo_id="chengyenhsieh/Amodal-Expander",
        filename=filename,
        # The authors' Hub repository when it was pinned; the Hub resolves this short id.
        revision="05dc9a0",
        format="detectron2",
        sha256=sha256,
        size=size,
        licence_note=("Released by the authors on the Hugging Face Hub with the Apache-2.0 code base "
                      "WesleyHsieh0806/Amodal-Expander (a GTR fork); the Hub card names CC-BY-4.0 or MIT depending "
                      "on the revision."),
    )


def lvis_v1_categories() -> list[dict[str, Any]]:
    """LVIS v1's 1203 categories ``{"id", "name", "synset", "frequency"}`` by id (``vfe_hub/assets``)."""
    text = resources.files(__package__).joinpath("assets", "lvis_v1_categories.json").read_text(encoding="utf-8")
    return json.loads(text)


def lvis_v05_categories() -> list[dict[str, Any]]:
    """LVIS v0.5's 1230 categories ``{"id", "name", "synset", "frequency"}`` by id (``vfe_hub/assets``)."""
    text = resources.files(__package__).joinpath("assets", "lvis_v05_categories.json").read_text(encoding="utf-8")
    return json.loads(text)


def _vfe_pytorch_release(filename: str, sha256: str | None = None, size: int | None = None) -> WeightsSpec:
    """A file of the authors' Hub repository of MAMBA and STPN (mmdet 2.19 checkpoints)."""
    return WeightsSpec(
        repo_id="guanxiongsun/vfe.pytorch",
        filename=filename,
        # The newest commit of the authors' repository when it was pinned; the Hub resolves this short id.
        revision="442410a",
        format="mmdet_v2",
        sha256=sha256,
        size=size,
        licence_note="Released by the authors with the Apache-2.0 code base vfe.pytorch; no licence tag on the Hub repo.",
    )


_VID_PREPROCESS = Preprocess(
    max_size=1000, min_size=600, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375), size_divisor=16,
    std_reciprocal=True,
)

@dataclass(frozen=True)
class Variant:
    """One released set of weights of an architecture, named ``<architecture>.<tag>`` (as timm names pretrained
    weights): its ``weights``, what sets it apart (``summary``, after the architecture's) and its paper
    ``metrics`` (default: the architecture's)."""

    tag: str
    weights: WeightsSpec
    summary: str
    metrics: dict[str, dict[str, float]] | None = None


def _variants(architecture: ModelSpec, variants: tuple[Variant, ...], default: str) -> tuple[ModelSpec, ...]:
    """One spec per variant of ``architecture`` (whose name becomes the prefix; :data:`ALIASES` maps it to the
    ``default`` variant)."""
    if default not in {v.tag for v in variants}:
        raise ValueError(f"{architecture.name}: default variant {default!r} is not among its variants")
    _DEFAULT_VARIANTS[architecture.name] = f"{architecture.name}.{default}"
    return tuple(replace(architecture, name=f"{architecture.name}.{v.tag}", weights=v.weights,
                         summary=f"{architecture.summary} {v.summary}",
                         metrics=architecture.metrics if v.metrics is None else v.metrics,
                         architecture=architecture.name) for v in variants)


_DEFAULT_VARIANTS: dict[str, str] = {}

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mamba_r101_dc5_vid",
            family="mamba",
            task="video-object-detection",
            summary=(
                "MAMBA (instance-level memory bank) on a ResNet-101 DC5 Faster R-CNN, trained on ImageNet VID + DET; "
                "30 ImageNet VID classes."
            ),
            classes=IMAGENET_VID_CLASSES,
            weights=_vfe_pytorch_release("work_dirs/mamba_r101_dc5_6x/epoch_6_model.pth"),
            preprocess=_VID_PREPROCESS,
            paper=Paper(
                title="MAMBA: Multi-level Aggregation via Memory Bank for Video Object Detection",
                url="https://arxiv.org/abs/2401.09923",
                venue="AAAI 2021",
                citation=_MAMBA_CITATION,
            ),
            licence="apache-2.0",
            datasets=("imagenet_vid",),
            metrics={"imagenet_vid": {"AP50": 83.8, "AP50_fast": 65.3, "AP50_medium": 83.8, "AP50_slow": 89.5}},
            temporal=(
                "Two memory banks of RoI features (one per shared fc), up to 20000 rows each; every frame attends to "
                "at most 2000 sampled rows and writes its 75 best-ranked proposals. Reset at the first frame of a video."
            ),
            protocols={
                "streaming": (
                    "Frames in their natural order; the memory holds only frames already seen (at the first frame, the "
                    "frame itself). Works on live video. The default."
                ),
                "paper": (
                    "The released evaluation: 14 references spread over the whole video initialise the memory at the "
                    "first frame, and the other frames run in the released shuffled order (random.Random(10), frame 0 "
                    "first). Needs the whole video up front; reproduces the paper's table."
                ),
            },
            config={"depth": 101, "num_classes": 30, "seed": 0},
            original_code="https://github.com/guanxiongsun/vfe.pytorch (mmdet 2.19 fork)",
            float32_ops=_TWO_STAGE_OPS,
            tags=("video-object-detection", "imagenet-vid", "faster-rcnn", "memory-bank"),
            cpu_seconds_per_frame=2.7,
        ),
        ModelSpec(
            name="stpn_swint_vid",
            family="stpn",
            task="video-object-detection",
            summary=(
                "STPN (spatio-temporal prompts predicted from reference frames and prepended to the backbone's tokens) "
                "on a Swin-T FPN Faster R-CNN, trained on ImageNet VID + DET; 30 ImageNet VID classes."
            ),
            classes=IMAGENET_VID_CLASSES,
            weights=_vfe_pytorch_release("work_dirs/stpn_swint_adam_9x/epoch_9_model.pth",
                                         sha256="4bcb39c4070df69ae917cd237f36cc9c77eec63a53ce94ae9b7a931aefdd27b7",
                                         size=180_353_653),
            preprocess=_VID_PREPROCESS,
            paper=Paper(
                title="Spatio-temporal Prompting Network for Robust Video Feature Extraction",
                url="https://arxiv.org/abs/2402.02574",
                venue="ICCV 2023",
                citation=_STPN_CITATION,
            ),
            licence="apache-2.0",
            datasets=("imagenet_vid",),
            # The released evaluation file eval.txt next to the weights (the paper table rounds these).
            metrics={"imagenet_vid": {"AP50": 85.152, "AP50_fast": 64.057, "AP50_medium": 84.127,
                                      "AP50_slow": 91.414}},
            temporal=(
                "A prompt of 5 tokens, predicted by attention from the un-prompted last-stage features of reference "
                "frames, is prepended to the Swin tokens of every frame of the video. Reset at the first frame."
            ),
            protocols={
                "streaming": (
                    "Frames in their natural order; references are frames already seen. The first frame is its own "
                    "reference; every 10th frame (config prompt_interval) joins the references, which keep the last "
                    "14, and the prompt is recomputed from them. Works on live video. The default."
                ),
                "paper": (
                    "The released evaluation: 14 references spread over the whole video give one prompt at the first "
                    "frame, kept for every frame of the video. Needs the whole video up front; reproduces the "
                    "paper's table."
                ),
            },
            config={"num_classes": 30, "prompts": 5, "prompt_interval": 10},
            original_code="https://github.com/guanxiongsun/vfe.pytorch (mmdet 2.19 fork)",
            float32_ops=_TWO_STAGE_OPS,
            tags=("video-object-detection", "imagenet-vid", "faster-rcnn", "swin", "prompting"),
            cpu_seconds_per_frame=2.1,
        ),
        ModelSpec(
            name="detpro_r50_fpn_lvis1",
            family="detpro",
            task="open-vocabulary-detection",
            summary=(
                "DetPro (CLIP text classifier with learned prompts, ViLD-style image branch) on a Mask R-CNN R50-FPN "
                "trained on the 866 base classes of LVIS v1; boxes and masks for any vocabulary, by default LVIS v1's "
                "1203 classes (337 rare ones unseen in training)."
            ),
            classes=(),  # the 1203 LVIS v1 names ship with the weights (config.json), taken from LVIS's own file
            weights=WeightsSpec(
                repo_id="vfe-hub/detpro_r50_fpn_lvis1",
                filename="model.safetensors",
                revision=None,  # unpublished: loads convert the Drive release; a pinned commit + sha256 takes over
                format="vfe_hub",
                licence_note=(
                    "Converted by this project from the authors' release (Google Drive, linked from the Apache-2.0 "
                    "repository dyabel/detpro; no separate licence is stated for the weights). The text encoder "
                    "file holds OpenAI CLIP ViT-B/32's text tower (MIT licence) as stored in that checkpoint."
                ),
                # Unpinned: the Drive files could not be reached to measure them. (OVTR's own Drive copy of
                # iou_neg5_ens.pth, id 1OYvyCQ_y65oq6SDJQKrVm3syzvXStL-0, is 2,464,504 bytes with sha256 37544c96...;
                # it is not known to be byte-identical to DetPro's file, so it pins nothing here.)
                drive=DriveRelease(
                    checkpoint=DriveFile("checkpoint.pth", UNPINNED, id="1ktTMZWFjUAGjzjlOdzxGfKQR8u9x_OmX"),
                    inputs={
                        "embeddings": DriveFile("iou_neg5_ens.pth", UNPINNED, id="1T-Ydo0YgneDbZYU2hu3wWm9MZ2plxGT_"),
                        "categories": Asset("lvis_v1_categories.json"),
                    },
                    notes={"checkpoint": "DetPro Mask R-CNN 20e", "embeddings": "DetPro prompt embeddings",
                           "categories": "the categories of LVIS v1's annotation files"},
                ),
            ),
            preprocess=Preprocess(max_size=1333, min_size=800, mean=(123.675, 116.28, 103.53),
                                  std=(58.395, 57.12, 57.375), size_divisor=32, std_reciprocal=True),
            paper=Paper(
                title="Learning to Prompt for Open-Vocabulary Object Detection with Vision-Language Model",
                url="https://arxiv.org/abs/2203.14940",
                venue="CVPR 2022",
                citation=_DETPRO_CITATION,
            ),
            licence="apache-2.0",
            datasets=("lvis_v1_val",),
            # dyabel/detpro README, DetPro (Mask R-CNN) row: box AP, then mask AP.
            metrics={"lvis_v1_val": {"AP": 28.4, "APr": 20.8, "APc": 27.8, "APf": 32.4, "mask_AP": 25.9,
                                     "mask_APr": 19.8, "mask_APc": 25.6, "mask_APf": 28.9}},
            temporal="none (image model)",
            protocols={},
            config={"num_classes": 1203, "proposals": 1000, "max_per_img": 300, "fixed_lambda": 0.6,
                    "text_encoder": {}},
            original_code="https://github.com/dyabel/detpro (mmdetection 2.7 fork)",
            convert_options=" --embeddings <iou_neg5_ens.pth> --categories <lvis_v1_val.json>",
            float32_ops=(*_TWO_STAGE_OPS, "open-vocabulary classifier", "mask pasting", "CLIP text tower"),
            tags=("open-vocabulary-detection", "instance-segmentation", "lvis", "mask-rcnn", "clip", "prompt-learning"),
            cpu_seconds_per_frame=12.9,
        ),
        ModelSpec(
            name="lst_r50_fpn_lvis05",
            family="lst",
            task="instance-segmentation",
            summary=(
                "LST (Learning to Segment the Tail): a Mask R-CNN R50-FPN with a cosine classifier and a box-to-mask "
                "weight transfer, trained class-incrementally on LVIS v0.5 (270 frequent classes, then six steps "
                "of 160 rarer ones); boxes and masks of the 1230 LVIS v0.5 classes. No trained weights were released."
            ),
            classes=tuple(c["name"] for c in lvis_v05_categories()),  # by id; the model's order comes with weights
            weights=WeightsSpec(
                repo_id="vfe-hub/lst_r50_fpn_lvis05",
                filename="model.safetensors",
                revision=None,
                format="vfe_hub",
                licence_note="The code is MIT-licensed (maskrcnn-benchmark's licence, kept by the LST fork).",
                originals={
                    "<checkpoint.pth> (a maskrcnn-benchmark checkpoint of any phase; none released)":
                        f"trained with {_LST_CODE} (branch maskrcnn_base for the base phase, master for the six "
                        f"incremental phases, get_distillation for the distillation targets)",
                    "<lvis_sorted_id_all.json> (LST's class order)":
                        f"{_LST_CODE}/blob/master/jupyter_notebook/lvis_sorted_id_all.json",
                },
                unreleased=(
                    "No trained LST weights were ever released (not in JoyHuYY1412/LST_LVIS, its branches "
                    f"maskrcnn_base and get_distillation, or its issues). The code that trains them is {_LST_CODE}."
                ),
            ),
            preprocess=Preprocess(max_size=1333, min_size=800, mean=(102.9801, 115.9465, 122.7717),
                                  std=(1.0, 1.0, 1.0), size_divisor=32, style="maskrcnn_benchmark",
                                  library="pil", nms="per_class", clip_to_input=False),
            paper=Paper(
                title="Learning to Segment the Tail",
                url="https://arxiv.org/abs/2004.00900",
                venue="CVPR 2020",
                citation=_LST_CITATION,
            ),
            licence="mit",
            datasets=("lvis_v05_val",),
            metrics={},
            metrics_note=(
                "The paper's abstract reports, on LVIS v0.5 val (mask AP), +8.3 AP on the classes with fewer than "
                "10 training instances and +2.0 AP over all 1230 classes against its Mask R-CNN R50-FPN baseline; "
                "the absolute numbers of its tables were not confirmed here, so none are listed."
            ),
            temporal="none (image model)",
            protocols={},
            config={"num_classes": 1231, "proposals": 1000, "max_per_img": 300},
            original_code=f"{_LST_CODE} (maskrcnn-benchmark fork)",
            convert_options=" --sorted-ids <lvis_sorted_id_all.json> [--fp16-mask]",
            float32_ops=(*_TWO_STAGE_OPS, "mask logits", "mask pasting"),
            details=_LST_DETAILS,
            tags=("instance-segmentation", "long-tail", "incremental-learning", "lvis", "mask-rcnn"),
            cpu_seconds_per_frame=20.3,
        ),
        ModelSpec(
            name="bags_gs_htc_x101_dcn_lvis05",
            family="bags",
            task="instance-segmentation",
            summary=(
                "BAGS (balanced group softmax) on a Hybrid Task Cascade with a ResNeXt-101 64x4d DCN backbone "
                "(multi-scale trained), LVIS v0.5; boxes and masks of the 1230 LVIS v0.5 classes. Also the detector "
                "of the TAO 2020 challenge winner (protocol 'tao')."
            ),
            classes=tuple(c["name"] for c in lvis_v05_categories()),  # label i is LVIS v0.5 category id i + 1
            weights=WeightsSpec(
                repo_id="vfe-hub/bags_gs_htc_x101_dcn_lvis05",
                filename="model.safetensors",
                revision=None,  # unpublished: loads convert the Drive release; a pinned commit + sha256 takes over
                format="vfe_hub",
                licence_note=(
                    "Converted by this project from the authors' release (Google Drive, linked from the Apache-2.0 "
                    "repository FishYuLi/BalancedGroupSoftmax; no separate licence is stated for the weights)."
                ),
                # Unpinned: the Drive files could not be reached to measure them. The group tables cannot be derived
                # from the LVIS v0.5 categories shipped with vfe_hub: BAGS groups classes by training instance count,
                # which that file does not hold (its frequency r/c/f counts images, with other bounds).
                drive=DriveRelease(
                    checkpoint=DriveFile("gs_htc_dconv_c3-c5_mstrain_400_1400_x101_64x4d_fpn_20e_lvis.pth", UNPINNED,
                                         id="1QkfpYYAHgEym8KVg8a7zclSHe5LGssjH"),
                    inputs={"groups": (
                        DriveFile("label2binlabel.pt", UNPINNED, folder="1UsCscmh7F6KOya1K7R2vTT5KswsIFVXd"),
                        DriveFile("pred_slice_with0.pt", UNPINNED, folder="1UsCscmh7F6KOya1K7R2vTT5KswsIFVXd"),
                    )},
                    notes={"checkpoint": "BAGS GS-HTC", "groups": "BAGS's group files"},
                ),
                originals={
                    "<lvis_v0.5_train.json> (instead of the group files: its instance counts)":
                        "https://dl.fbaipublicfiles.com/LVIS/lvis_v0.5_train.json.zip",
                },
            ),
            preprocess=Preprocess(max_size=1333, min_size=800, mean=(123.675, 116.28, 103.53),
                                  std=(58.395, 57.12, 57.375), size_divisor=32, nms="per_class",
                                  clip_to_input=False),
            paper=Paper(
                title="Overcoming Classifier Imbalance for Long-tail Object Detection with Balanced Group Softmax",
                url="https://arxiv.org/abs/2006.10408",
                venue="CVPR 2020",
                citation=_BAGS_CITATION,
            ),
            licence="apache-2.0",
            datasets=("lvis_v05_val",),
            # FishYuLi/BalancedGroupSoftmax README, row "GS HTC X101-MS-DCN": box AP, mask AP.
            metrics={"lvis_v05_val": {"AP": 37.71, "mask_AP": 34.39}},
            metrics_note=(
                "The README's HTC X101-MS-DCN baseline without BAGS (same backbone and training) reaches 34.61 box "
                "AP and 31.94 mask AP; APr/APc/APf of this model are not published in the repository."
            ),
            temporal="none (image model)",
            protocols={
                "lvis": ("The LVIS v0.5 evaluation (BAGS's test config): score > 0.001, class-wise NMS 0.5, 300 "
                         "detections per image, masks. The default."),
                "tao": ("The detections of the TAO 2020 challenge winner (Winner_ECCV20_TAO's TAO config): score "
                        "> 1e-5, class-wise NMS 0.95, 500 detections per image, boxes only (masks are not computed)."),
            },
            config={"num_classes": 1230, "group_sizes": (294, 453, 302, 181), "proposals": 1000, "depth": 101},
            original_code="https://github.com/FishYuLi/BalancedGroupSoftmax (mmdetection v1.0rc0 fork)",
            convert_options=(" --groups <folder with label2binlabel.pt and pred_slice_with0.pt, or "
                             "lvis_v0.5_train.json>"),
            float32_ops=(*_TWO_STAGE_OPS, "deformable convolution", "group softmax", "mask pasting"),
            tags=("instance-segmentation", "long-tail", "lvis", "htc", "tao"),
            cpu_seconds_per_frame=89.9,
        ),
        ModelSpec(
            name="gtr_dr2101_tao",
            family="gtr",
            task="multi-object-tracking",
            summary=(
                "GTR (Global Tracking Transformer) on a CenterNet2 detector with a Res2Net-101 DCN backbone, trained "
                "on LVIS v1 + COCO; tracks the 1203 LVIS v1 classes, evaluated on TAO."
            ),
            classes=tuple(c["name"] for c in lvis_v1_categories()),
            weights=replace(
                _amodal_expander_file("Amodal_Expander_20k.pth", _AMODAL_SHA256["20k"], 515_917_603),
                licence_note=(
                    "GTR's weights as stored in the Amodal Expander release (Hub repository "
                    "chengyenhsieh/Amodal-Expander), whose 12 roi_heads.amodal_expander.* tensors are dropped here. "
                    "GTR's own file (GTR_TAO_DR2101.pth) is only on Google Drive. The Amodal Expander was fine-tuned "
                    "from it (MODEL.WEIGHTS: models/GTR_TAO_DR2101.pth) with MODEL.FREEZE_TYPE: ExceptAmodalExpander "
                    "(WesleyHsieh0806/Amodal-Expander 30ae132, configs/GTR_TAO_Amodal_Expander.yaml), which "
                    "gtr/modeling/freeze_layers.py (_freeze_except_amodal_expander) implements by setting "
                    "requires_grad False on every parameter except roi_heads.amodal_expander's; the frozen batch "
                    "norms have no statistics to update. Every other tensor of the file is therefore GTR's. GTR's "
                    "code is Apache-2.0; the Hub card of the file names CC-BY-4.0 or MIT depending on the revision."
                ),
                originals={"<GTR_TAO_DR2101.pth> (GTR's own release)":
                           "Google Drive id 1TqkLpFZvOMY5HTTaAWz25RxtLHdzQ-CD"},
            ),
            preprocess=_DETECTRON2_PREPROCESS,
            paper=Paper(
                title="Global Tracking Transformers",
                url="https://arxiv.org/abs/2203.13250",
                venue="CVPR 2022",
                citation=_GTR_CITATION,
            ),
            licence="apache-2.0",
            datasets=("tao_val",),
            # xingyizhou/GTR docs/MODEL_ZOO.md: TAO val track mAP (official TAO toolkit, IoU 0.5).
            metrics={"tao_val": {"AP": 22.5}},
            metrics_note=(
                "TETA: no figure of GTR is published. `model.evaluate(\"tao_val\")` reports TETA, LocA, AssocA and "
                "ClsA (vfe_hub.evaluation.teta, equal to the official SysCV/tet code) beside track mAP, from the "
                "same run. GTR's paper and repository (docs/MODEL_ZOO.md) report TAO track mAP only, and the TAO "
                "TETA tables in the READMEs of SysCV/tet (TETA's own), SysCV/ovtrack (OVTrack), siyuanliii/masa "
                "(MASA) and jinyanglii/OVTR list other trackers; OVTrack's lists GTR in its track mAP table only "
                "(AP50 20.4)."
            ),
            temporal=_GTR_TEMPORAL,
            protocols=_GTR_PROTOCOLS,
            config={"num_classes": 1203, "proposals": 300, "asso_thresh": 0.4, "window": 16, "min_track_len": 5},
            original_code="https://github.com/xingyizhou/GTR (detectron2 + CenterNet2)",
            float32_ops=_GTR_OPS,
            tags=("multi-object-tracking", "tao", "lvis", "centernet2", "transformer"),
            cpu_seconds_per_frame=28.5,
        ),
        *_variants(
            ModelSpec(
                name="amodal_expander_dr2101_tao_amodal",
                family="gtr",
                task="amodal-tracking",
                summary=(
                    "Amodal Expander on GTR (CenterNet2 DR2101 + Global Tracking Transformer): boxes that cover the "
                    "whole object, also where it is hidden or out of frame; 1203 LVIS v1 classes, TAO-Amodal."
                ),
                classes=tuple(c["name"] for c in lvis_v1_categories()),
                weights=_amodal_expander_file("Amodal_Expander_PnO_45k.pth", _AMODAL_SHA256["pno_45k"],
                                              515_917_595),
                preprocess=_DETECTRON2_PREPROCESS,
                paper=Paper(
                    title="Tracking Any Object Amodally",
                    url="https://arxiv.org/abs/2312.12433",
                    venue="arXiv 2023 (TAO-Amodal)",
                    citation=_TAO_AMODAL_CITATION,
                ),
                licence="apache-2.0",
                datasets=("tao_amodal_val",),
                metrics={},
                metrics_note=(
                    "The paper's per-variant TAO-Amodal tables are not in the authors' repositories or model cards, "
                    "so no number is listed to compare with; the abstract (arXiv 2312.12433 v3) reports +3.3 % "
                    "detection AP and +2.1 % amodal tracking AP on occluded objects over modal baselines. "
                    "benchmarks/reproduce.py prints the measured TAO-Amodal metrics. TETA: the official TAO-Amodal "
                    "evaluation (WesleyHsieh0806/TAO-Amodal 96e4971, tools/eval_on_tao_amodal.py) computes "
                    "detection AP and TAO track mAP on the amodal boxes, and no TETA, so `tao_amodal_val` reports "
                    "none; no TETA figure of the Amodal Expander is published."
                ),
                temporal=_GTR_TEMPORAL + (
                    " Optional temporal post-process of the results (the authors' Kalman notebook): "
                    "vfe_hub.amodal_kalman.kalman_fill fills a track's missed frames (up to 3 after its last "
                    "box, once it has 3 hits) with Kalman-predicted boxes, emitted only where per-frame depth "
                    "maps show something in front of the prediction (occlusion). Without depth maps that gate is "
                    "off: every in-frame prediction in such a gap is emitted, also where the object was simply "
                    "missed while visible."
                ),
                protocols=_GTR_PROTOCOLS,
                config={"num_classes": 1203, "proposals": 300, "asso_thresh": 0.4, "window": 16,
                        "min_track_len": 5, "amodal": True},
                original_code="https://github.com/WesleyHsieh0806/Amodal-Expander (GTR fork, detectron2)",
                float32_ops=(*_GTR_OPS, "amodal code"),
                tags=("amodal-tracking", "tao-amodal", "lvis", "centernet2", "transformer"),
                cpu_seconds_per_frame=28.0,
            ),
            (
                Variant("pno_45k", _amodal_expander_file("Amodal_Expander_PnO_45k.pth", _AMODAL_SHA256["pno_45k"],
                                                         515_917_595),
                        "Trained 45k iterations with PasteAndOcclude (segmented objects pasted over the frames, "
                        "partly out of frame, as amodal ground truth): the authors' suggested weights "
                        "(docs/MODEL_ZOO.md) and the default."),
                Variant("pno_20k", _amodal_expander_file("Amodal_Expander_PnO_20k.pth", _AMODAL_SHA256["pno_20k"],
                                                         515_917_601),
                        "Trained 20k iterations with PasteAndOcclude."),
                Variant("20k", _amodal_expander_file("Amodal_Expander_20k.pth", _AMODAL_SHA256["20k"], 515_917_603),
                        "Trained 20k iterations without PasteAndOcclude."),
            ),
            default="pno_45k",
        ),
    )
}

#: architecture name -> its default weight variant (``vfe_hub.load("<architecture>")`` loads that one)
ALIASES: dict[str, str] = dict(_DEFAULT_VARIANTS)

#: the pipelines a model runs (``vfe_hub.load(pipeline=...)``): batched on the device, or the original's resize
#: library and NMS arithmetic (:class:`Preprocess`)
PIPELINES = ("fast", "original")
#: the tasks whose results carry track ids
TRACKING_TASKS = ("multi-object-tracking", "amodal-tracking")
#: other names of the tasks (lower case, words joined by "-") -> the registered tasks they cover
TASK_SYNONYMS: dict[str, tuple[str, ...]] = {
    "tracking": TRACKING_TASKS, "object-tracking": TRACKING_TASKS, "video-object-tracking": TRACKING_TASKS,
    "mot": ("multi-object-tracking",), "multiple-object-tracking": ("multi-object-tracking",),
    "amodal": ("amodal-tracking",), "amodal-detection": ("amodal-tracking",),
    "vid": ("video-object-detection",), "video-detection": ("video-object-detection",),
    "segmentation": ("instance-segmentation",),
    "open-vocabulary": ("open-vocabulary-detection",), "ovd": ("open-vocabulary-detection",),
    "zero-shot-object-detection": ("open-vocabulary-detection",),
}

#: the benchmarks ``evaluate`` scores on (``vfe_hub.evaluation.runner`` reads them) -> what the ``root`` folder holds
DATASET_ROOTS: dict[str, str] = {
    "imagenet_vid": "the ILSVRC folder, with Data/VID/<video>/ frames (and Annotations/VID/ without ann_file)",
    "lvis_v1": "the COCO 2017 folder, with train2017/ and val2017/ (and annotations/lvis_v1_val.json)",
    "lvis_v05": "the COCO 2017 folder, with train2017/ and val2017/ (and annotations/lvis_v0.5_val.json)",
    "tao": "the TAO folder, with frames/<split>/<source>/<video>/ (and annotations/validation.json)",
    "tao_amodal": "the TAO-Amodal folder, with TAO's frames/ (and amodal_annotations/validation.json)",
}


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name`` (an architecture with weight variants names its default one, :data:`ALIASES`); an
    unknown name raises :class:`UnknownModelError` with the closest names."""
    try:
        return MODELS[ALIASES.get(name, name)]
    except KeyError:
        hint = close_matches(name, [*MODELS, *ALIASES])
        suggestion = f" Did you mean {', '.join(map(repr, hint))}?" if hint else ""
        raise UnknownModelError(
            f"Unknown model name {name!r}.{suggestion} vfe_hub.list_models() lists all {len(MODELS)} names."
        ) from None


def model_info(name: str) -> dict[str, Any]:
    """The registry's facts about ``name``: task, classes, paper, metrics, weights, licence, protocols."""
    return get_spec(name).info()


def conversion_command(spec: ModelSpec) -> str:
    """The command that converts ``spec``'s original release into a vfe_hub folder ``<out_dir>``."""
    return f"vfe-hub convert {spec.name} <checkpoint.pth> <out_dir>{spec.convert_options}"


def list_models(pattern: str = "*", *, task: str | None = None, dataset: str | None = None) -> list[str]:
    """Registered model names matching the shell-style wildcard ``pattern``, sorted.

    ``task`` keeps the models of one task (``"video-object-detection"``, ``"open-vocabulary-detection"``, ...: the
    ``task`` of the registered models), in any case, or of the tasks a common name covers (:data:`TASK_SYNONYMS`:
    ``"tracking"`` lists the multi-object and the amodal trackers). ``dataset`` keeps the models with results on one
    benchmark (a name in their ``datasets``, e.g. ``"imagenet_vid"`` or ``"lvis_v1_val"``; the ``_val`` suffix is
    optional, as in ``evaluate``). An unknown task or dataset raises :class:`VfeHubError` listing the valid ones.
    """
    specs = [spec for name, spec in MODELS.items() if fnmatch.fnmatchcase(name, pattern)]
    if task is not None:
        tasks = tasks_named(task)
        specs = [spec for spec in specs if spec.task in tasks]
    if dataset is not None:
        stems = {d.removesuffix("_val") for spec in MODELS.values() for d in spec.datasets}
        _check_choice("dataset", dataset, stems | {f"{stem}_val" for stem in stems})
        stem = dataset.removesuffix("_val")
        specs = [spec for spec in specs if stem in {d.removesuffix("_val") for d in spec.datasets}]
    return sorted(spec.name for spec in specs)


def tasks_named(task: str) -> tuple[str, ...]:
    """The registered tasks that ``task`` names: itself or a synonym (:data:`TASK_SYNONYMS`), in any case, words
    joined by "-", "_" or spaces."""
    registered = {spec.task for spec in MODELS.values()}
    key = "-".join(task.lower().replace("_", " ").split())
    if key in registered:
        return (key,)
    if key in TASK_SYNONYMS:
        return TASK_SYNONYMS[key]
    hint = close_matches(key, [*registered, *TASK_SYNONYMS], n=1)
    raise VfeHubError(f"Unknown task {task!r}." + (f" Did you mean {hint[0]!r}?" if hint else "")
                      + f" Valid: {', '.join(sorted(registered))}; also {', '.join(sorted(TASK_SYNONYMS))}.")


def _check_choice(what: str, value: str, valid: set[str]) -> None:
    if value not in valid:
        hint = close_matches(value, valid, n=1)
        raise VfeHubError(f"Unknown {what} {value!r}." + (f" Did you mean {hint[0]!r}?" if hint else "")
                          + f" Valid: {', '.join(sorted(valid))}.")
