"""Task pipelines: ``pipeline("video-object-detection", model=...)`` returns a callable over inputs."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import UnknownModelError, VfeHubError
from .registry import MODELS, get_spec, tasks_named

if TYPE_CHECKING:  # imported where a model is loaded: ``import vfe_hub`` does not import PyTorch
    import torch

    from .models.base import Detector

__all__ = ["Pipeline", "pipeline", "tasks"]


def tasks() -> dict[str, list[str]]:
    """Every task with the models that solve it (the first is the task's default)."""
    out: dict[str, list[str]] = {}
    for spec in MODELS.values():
        out.setdefault(spec.task, []).append(spec.name)
    return out


class Pipeline:
    """A loaded model bound to a task; calling it runs ``model.predict`` with the pipeline's defaults."""

    def __init__(self, task: str, model: Detector, **predict_defaults: Any) -> None:
        self.task = task
        self.model = model
        self.predict_defaults = predict_defaults

    def __call__(self, inputs: Any, **kwargs: Any):
        return self.model.predict(inputs, **{**self.predict_defaults, **kwargs})

    def __repr__(self) -> str:
        return f"Pipeline(task={self.task!r}, model={self.model.spec.name!r})"


def pipeline(task: str, model: str | Detector | None = None, *, batch_size: int = 1, progress: bool | None = None,
             **load_kwargs: Any) -> Pipeline:
    """A :class:`Pipeline` for ``task`` with ``model`` (a name, a loaded model, or the task's default).

    ``task`` is a registered task or a common name of one (:func:`vfe_hub.registry.tasks_named`: ``"tracking"``
    covers the multi-object and the amodal trackers, whose first is the default). ``load_kwargs`` go to
    :func:`vfe_hub.load` (``device`` defaults to the GPU when there is one). With a loaded model, ``device`` moves
    it, ``dtype`` sets its inference dtype and ``vocabulary`` (open-vocabulary models) replaces its classes; the
    arguments that only loading can apply (weights, revision, config entries) are refused.
    """
    named = tasks_named(task)
    known = tasks()
    if model is None:
        model = known[named[0]][0]
    spec = get_spec(model) if isinstance(model, str) else model.spec
    if spec.task not in named:
        models = [name for t in named for name in known[t]]
        raise UnknownModelError(f"{spec.name!r} solves {spec.task!r}, not {task!r}; models for {task!r}: "
                                f"{', '.join(models)}.")
    if isinstance(model, str):
        from .api import load

        model = load(model, progress=progress, **load_kwargs)
    else:
        model = _apply(model, progress=progress, **load_kwargs)
    return Pipeline(model.spec.task, model, batch_size=batch_size, progress=progress)


def _apply(model: Detector, *, progress: bool | None, device: torch.device | str | None = None,
           dtype: torch.dtype | str | None = None, vocabulary: Sequence[str] | None = None,
           **load_only: Any) -> Detector:
    """Apply to an already loaded ``model`` the load arguments that can be applied after loading."""
    from .api import resolve_device, set_dtype

    if load_only:
        raise VfeHubError(f"pipeline(model=<loaded {model.spec.name}>) cannot apply {', '.join(sorted(load_only))}: "
                          f"these take effect when loading. Pass model={model.spec.name!r} (a name) to load it with "
                          f"them, or leave them out.")
    if device is not None:
        model = model.to(resolve_device(device))
    if dtype is not None:
        model = set_dtype(model, dtype)
    if vocabulary is not None:
        model.set_vocabulary(vocabulary, progress=progress)
    return model
