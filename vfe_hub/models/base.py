"""The uniform model API: :class:`Detector` for images, :class:`VideoDetector` for models with per-video state."""
from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .. import engine
from ..errors import VfeHubError, close_matches, unknown_keyword_error
from ..progress import progress_bar
from ..registry import MODELS, ModelSpec
from ..session import Session, VideoState
from ..structures import Detections, FrameInfo, ImageBatch

if TYPE_CHECKING:
    from ..io import Frame
    from ..weights import LoadedWeights


class Detector(nn.Module):
    """Base class of every vfe_hub model.

    Subclasses implement ``forward(batch: ImageBatch, **options) -> list[Detections]`` on a preprocessed batch
    already on the model's device (``options``: those of :attr:`predict_options`); :meth:`predict` adds input
    reading, preprocessing, batching and progress.
    """

    #: keyword options of :meth:`predict` beyond the common ones, with their defaults (a ``bool`` default makes the
    #: option a switch: it takes True or False only)
    predict_options: dict[str, Any] = {}
    #: whether :meth:`set_vocabulary` can replace the classes
    open_vocabulary = False
    #: whether the model keeps state across frames, so that frames must reach ``forward`` in order
    stateful = False
    #: ``"fast"`` (batched resize on the device, exact class-wise NMS) or ``"original"`` (the original's resize
    #: library on the CPU and its NMS arithmetic: the paper's pipeline bit for bit); see :func:`vfe_hub.load`
    pipeline = "fast"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.dtype = torch.float32
        self.weights_provenance: dict[str, Any] = {"weights": None, "revision": None, "sha256": None}
        #: the vocabulary: a name and, for labels that are a dataset's categories, a category id per label (models
        #: whose vocabulary travels with their weights replace both when the weights load)
        self._class_names: tuple[str, ...] = spec.classes
        self._category_ids: list[int] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of each label."""
        return self._class_names

    @property
    def category_ids(self) -> list[int] | None:
        """The dataset category id of each label (``None``: the labels are no dataset's categories)."""
        return None if self._category_ids is None else list(self._category_ids)

    def load_weights(self, weights: LoadedWeights) -> None:
        """Load checked weights (strictly) and remember their provenance.

        The loaded tensors become the module's tensors (``assign``, cast to the module's dtypes where they differ):
        no second copy of the weights is made, and parameters built on the ``meta`` device get their memory here.
        """
        own = self.state_dict()
        state = {k: v.to(own[k].dtype) if k in own and v.dtype != own[k].dtype else v
                 for k, v in weights.state.items()}
        self.load_state_dict(state, strict=True, assign=True)
        self.weights_provenance = weights.provenance

    def set_vocabulary(self, names: Sequence[str], *, seen: Iterable[str] | None = None,
                       progress: bool | None = None) -> None:
        """Replace the classes the model detects by ``names`` (open-vocabulary models only; see theirs)."""
        ovd = [n for n, s in MODELS.items() if s.task == "open-vocabulary-detection"]
        raise VfeHubError(f"{self.spec.name} detects a fixed set of {len(self.class_names)} classes and takes no "
                          f"vocabulary; leave vocabulary out, or use an open-vocabulary model ({', '.join(ovd)}).")

    def provenance(self) -> dict[str, Any]:
        """Model name, weights (source, revision, sha256), dtype, device and pipeline: attached to every result."""
        return {"model": self.spec.name, **self.weights_provenance, "dtype": str(self.dtype).removeprefix("torch."),
                "device": str(self.device), "pipeline": self.pipeline}

    def make_detections(self, frame: FrameInfo, boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                        masks: torch.Tensor | None = None, track_ids: torch.Tensor | None = None,
                        amodal_boxes: torch.Tensor | None = None) -> Detections:
        """A :class:`Detections` with this model's classes and provenance; boxes are clipped to the input image
        (unless the original does not clip them there: ``spec.preprocess.clip_to_input``).

        ``masks (N, H, W)`` bool, in pixels of the input image, are stored run-length encoded; ``track_ids (N,)``
        are stored as int64; ``amodal_boxes (N, 4)`` are kept as they are (they may leave the image).
        """
        h, w = frame.size
        boxes = boxes.float().clone()
        if self.spec.preprocess.clip_to_input:
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        rles = None if masks is None else Detections.encode_masks(masks)
        return Detections(boxes, scores.float(), labels.long(), self.class_names, frame, self.provenance(),
                          track_ids=None if track_ids is None else track_ids.long(), masks=rles,
                          amodal_boxes=None if amodal_boxes is None else amodal_boxes.float())

    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(self.predict_options)
        if unknown:
            common = {"batch_size", "progress", "stream"}
            raise unknown_keyword_error(f"{type(self).__name__}.predict", sorted(unknown), common | set(self.predict_options))
        for key, value in options.items():
            if isinstance(self.predict_options[key], bool) and not isinstance(value, bool):
                raise VfeHubError(f"{key} must be True or False, got {value!r}")
        return {**self.predict_options, **options}

    def _check_protocol(self, protocol: Any, protocols: Collection[str]) -> None:
        """Raise unless ``protocol`` is one of ``protocols``, naming them and the closest."""
        if protocol not in protocols:
            hint = close_matches(str(protocol), protocols, n=1)
            raise VfeHubError(f"protocol={protocol!r} is not a protocol of {self.spec.name}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; use one of {', '.join(map(repr, protocols))} (see the model card).")

    def _frames(self, inputs: Any, options: dict[str, Any]) -> Iterable:
        """The frames to run, in the order the model must see them (hook for video protocols)."""
        from ..io import open_frames

        return open_frames(inputs)

    def _run(self, frames: Iterable, batch_size: int, bar: Any, options: dict[str, Any]) -> Iterator[Detections]:
        """The results of ``frames``, in the order the user gave them (hook for video protocols)."""
        return engine.run(self, frames, batch_size, bar, forward=functools.partial(self, **options))

    def predict(self, inputs: Any, *, batch_size: int = 1, progress: bool | None = None, stream: bool = False,
                **options: Any) -> list[Detections] | Iterator[Detections]:
        """Detect objects in ``inputs``: image or video paths, folders, globs, PIL images, arrays or tensors.

        Returns one :class:`Detections` per image or frame, in input order, with boxes in input pixels.
        ``batch_size`` frames run through the network together; ``stream=True`` returns an iterator that yields
        results as they are computed (constant memory on long videos); ``progress`` shows a tqdm bar
        (default: only on a terminal).
        """
        options = self._check_options(options)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise VfeHubError(f"batch_size must be a positive integer (frames run together), got {batch_size!r}")
        frames = self._frames(inputs, options)
        try:
            total = len(frames)  # type: ignore[arg-type]
        except TypeError:
            total = None
        self.eval()

        def generate() -> Iterator[Detections]:
            with progress_bar(total=total, unit="frame", desc=self.spec.name, progress=progress) as bar:
                yield from self._run(frames, batch_size, bar, options)

        return generate() if stream else list(generate())

    def evaluate(self, dataset: str, **kwargs: Any) -> dict[str, float]:
        """Run the model on a benchmark and score it with the benchmark's official metric.

        See :func:`vfe_hub.evaluation.evaluate_model` for the datasets and their arguments.
        """
        from ..evaluation.runner import evaluate_model

        return evaluate_model(self, dataset, **kwargs)


#: the protocols of every video model: frames in order using only the past, or the published evaluation's
PROTOCOLS = ("streaming", "paper")


class VideoDetector(Detector):
    """A detector that remembers the video so far (memory banks, prompts, track windows).

    The model holds no video state itself: ``forward(batch, state)`` advances a :class:`~vfe_hub.session.VideoState`
    (made by :meth:`new_state`) that a :class:`~vfe_hub.session.Session` owns, so sessions of one model run side by
    side (:meth:`session`) and ``predict`` runs one session per video. Protocols: ``"streaming"`` (default) sees
    frames in order and uses only the past; ``"paper"`` reproduces the published evaluation, which may look at the
    whole video first (see the model card). ``frame_stride=k`` runs every ``k``-th frame of each video (frames 0,
    k, 2k, ...; a lower frame rate for the model), with results for those frames only.
    """

    predict_options = {"protocol": "streaming", "frame_stride": 1}
    stateful = True
    #: how many references the paper protocol spreads over the whole video at its first frame
    paper_references = 14
    #: whether the paper protocol runs frames after the first in the released shuffled order
    paper_shuffle = False
    #: the paper protocol's shuffle generator state at the next run's first sequence; ``None``: a fresh
    #: ``random.Random(10)``, as the released evaluation starts (a shard continues it: :meth:`paper_rng_states`)
    paper_rng_state: tuple | None = None

    def session(self, *, protocol: str = "streaming") -> Session:
        """A live video: ``session.update(frames) -> list[Detections]`` keeps the state across calls,
        ``session.reset()`` starts a new video; sessions of one model are independent.

        Sessions are streaming: each frame is answered when it comes, from it and the frames before it. The paper
        protocol looks at the whole video first (reference frames spread over it, whole-track decisions), so it
        runs only through ``predict(video, protocol="paper")``; ``protocol`` takes ``"streaming"`` alone.
        """
        if protocol != "streaming":
            self._check_protocol(protocol, PROTOCOLS)
            raise VfeHubError(f"{self.spec.name}.session(protocol={protocol!r}): sessions are streaming, each frame "
                              f"is answered when it comes; the {protocol} protocol looks at the whole video first. "
                              f"Use model.predict(<video>, protocol={protocol!r}), or leave protocol out.")
        return Session(self)

    def new_state(self, protocol: str = "streaming", references: list[Frame] | None = None) -> VideoState:
        """The state of a new video (families with more to remember return a subclass)."""
        return VideoState(protocol, references)

    def forward(self, batch: ImageBatch, state: VideoState) -> list[Detections | None]:  # type: ignore[override]
        """Detections for the frames of ``batch`` (consecutive frames of ``state``'s video), advancing ``state``;
        ``None`` for a frame whose result comes with :meth:`finish`."""
        raise NotImplementedError

    def finish(self, state: VideoState) -> list[Detections]:
        """The results held back until the end of the video, in frame order (none unless a protocol needs it)."""
        return []

    def reference_batches(self, state: VideoState) -> list[ImageBatch] | None:
        """The paper protocol's reference frames of ``state``, once, preprocessed: batches of one padded size
        each (as :func:`vfe_hub.engine.run` forms them), the frames in order; ``None`` without references."""
        refs = state.take_references()
        if refs is None:
            return None
        return [batch for _, batch in engine.batches(refs, self.spec.preprocess, self.device, keep_order=True,
                                                     original=self.pipeline == "original")]

    @staticmethod
    def reference_indices(length: int, count: int) -> list[int]:
        """``count`` frame indices spread over a video of ``length`` frames: ``round(i * (length - 1) / (count - 1))``."""
        return sorted(round(i * (length - 1) / (count - 1)) for i in range(count))

    @staticmethod
    def paper_rng_states(lengths: Sequence[int]) -> list[tuple]:
        """The paper protocol's shuffle generator state at the first frame of each sequence when sequences of
        ``lengths`` frames run in this order (a shuffle's draws depend only on the number of frames it shuffles)."""
        rng, states = random.Random(10), []
        for length in lengths:
            states.append(rng.getstate())
            rng.shuffle([None] * (length - 1))
        return states

    def _check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super()._check_options(options)
        stride = options["frame_stride"]
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise VfeHubError(f"frame_stride must be a positive integer (run every k-th frame), got {stride!r}")
        self._check_protocol(options["protocol"], PROTOCOLS)
        return options

    def _frames(self, inputs: Any, options: dict[str, Any]) -> Iterable:
        frames = super()._frames(inputs, options)
        return frames if options["frame_stride"] == 1 else _Strided(frames, options["frame_stride"])

    def _run(self, frames: Iterable, batch_size: int, bar: Any, options: dict[str, Any]) -> Iterator[Detections]:
        """One session per sequence; under the paper protocol each sequence is first read once into a
        :class:`vfe_hub.io.FrameStore` (image paths, decoded video frames spilled to a temporary file), so memory
        holds only the references and the frames in flight on any video length. With ``paper_shuffle`` the frames
        after the first run in the order of one ``random.Random(10)`` driven over the sequences in order, as the
        released evaluation does; results come back in frame order."""
        from ..io import FrameStore

        rng = random.Random(10)
        if self.paper_rng_state is not None:
            rng.setstate(self.paper_rng_state)
        for _, group in itertools.groupby(frames, key=lambda f: f.sequence):
            if options["protocol"] == "streaming" or not (self.paper_references or self.paper_shuffle):
                session = Session(self, protocol=options["protocol"])
                yield from session.run(group, batch_size, bar)
                yield from session.finish()
                continue
            with FrameStore() as store:
                for frame in group:
                    store.add(frame)
                refs = [store[i] for i in self.reference_indices(len(store), self.paper_references)]
                rest = list(range(1, len(store)))
                if self.paper_shuffle:
                    rng.shuffle(rest)
                session = Session(self, protocol="paper", references=refs)
                results = [*session.run((store[i] for i in (0, *rest)), batch_size, bar), *session.finish()]
            yield from sorted(results, key=lambda d: d.frame.index)


class _Strided:
    """Every ``stride``-th frame (index 0, stride, ...) of each sequence of a :class:`vfe_hub.io.FrameSource`; its
    length is known where the source's is."""

    def __init__(self, source: Any, stride: int) -> None:
        self.source = source
        self.stride = stride

    def __len__(self) -> int:
        counts = [count for _, count in self.source.sequences]
        if None in counts:
            raise TypeError("a video's frame count is not in its container metadata")
        return sum(-(-count // self.stride) for count in counts)

    def __iter__(self) -> Iterator:
        return (frame for frame in self.source if frame.index % self.stride == 0)
