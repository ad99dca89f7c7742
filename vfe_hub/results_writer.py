"""Predictions written to disk frame by frame, with their provenance, so that a crash keeps the finished frames.

Two layouts, chosen by the file name:

* JSON Lines (``*.jsonl``, and standard output): a first line ``{"provenance": {...}}`` (model, weights,
  revision, sha256, dtype, device, ``vfe_hub`` version, protocol), then one line per frame in input order::

      {"image_id": 1, "name": "clip.mp4#0", "sequence": "clip.mp4", "index": 0, "size": [H, W],
       "detections": [{"image_id": 1, "category_id": 9, "bbox": [x, y, w, h], "score": 0.97}, ...]}

* One JSON document (any other name, e.g. ``results.json``)::

      {"provenance": {...}, "images": [{"id": 1, "name": ..., "sequence": ..., "index": ..., "size": [H, W]}, ...],
       "results": [COCO-style records]}

  ``results`` is what ``pycocotools.coco.COCO.loadRes`` reads.

``image_id`` numbers the frames 1, 2, ... across all inputs (COCO tools need integer ids); ``name``, ``sequence``
and ``index`` say which frame it is. While running, lines go to ``<file>.partial``, flushed after every frame;
when all frames are done it is renamed (JSON Lines) or rewritten as one document (JSON) to the final name. A
crash or Ctrl-C leaves ``<file>.partial`` with every finished frame, and never a half-written final file.
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from . import __version__
from .hub import atomic_write
from .structures import Detections, FrameInfo

if TYPE_CHECKING:
    from .models.base import Detector


def provenance(model: Detector, options: dict[str, Any]) -> dict[str, Any]:
    """The provenance of a results file of ``model`` run with the ``predict`` ``options`` (all of them, defaults
    included): the model's (name, weights, revision, sha256, dtype, device), the vfe_hub version, the protocol."""
    return {**model.provenance(), "vfe_hub": __version__, "protocol": options.get("protocol")}


def frame_entry(frame: FrameInfo) -> dict[str, Any]:
    """Which frame a result is of, as results files list it: name, sequence, index, size ``[H, W]``."""
    return {"name": frame.name, "sequence": frame.sequence, "index": frame.index, "size": list(frame.size)}


class ResultsWriter:
    """Write ``provenance`` and then each frame's :class:`Detections` to ``path`` (``None``: standard output, JSON
    Lines) as described in the module docstring. Use it as a context manager: the file is completed only when
    the ``with`` block ends without an exception."""

    def __init__(self, path: str | os.PathLike[str] | None, provenance: dict[str, Any]) -> None:
        self.path = None if path is None else Path(path)
        self.provenance = provenance
        self.partial = None if self.path is None else self.path.with_name(self.path.name + ".partial")
        self.frames = 0
        self.detections = 0
        if self.partial is not None:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = sys.stdout if self.partial is None else open(self.partial, "w", encoding="utf-8")
        self._line({"provenance": provenance})

    def write(self, detections: Detections) -> int:
        """Append one frame's detections as the next frame; returns the frame's ``image_id``."""
        return self.write_records(frame_entry(detections.frame), detections.to_json(image_id=self.frames + 1))

    def write_records(self, frame: dict[str, Any], records: list[dict[str, Any]]) -> int:
        """Append the next frame from its :func:`frame_entry` and its COCO-style ``records`` (whose ``image_id``
        is the frame's: ``frames + 1``); returns the frame's ``image_id``."""
        self.frames += 1
        self.detections += len(records)
        self._line({"image_id": self.frames, **frame, "detections": records})
        return self.frames

    def _line(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.partial is None:
            return
        self._file.close()
        if kind is not None:
            return  # keep <file>.partial with the finished frames
        if self.path.suffix.lower() == ".jsonl":
            os.replace(self.partial, self.path)
        else:
            atomic_write(self.path, self._write_document)
            self.partial.unlink()

    def _write_document(self, target: Path) -> None:
        """The JSON document from the finished ``.partial`` lines, streamed in two passes (images, then results)."""
        with open(target, "w", encoding="utf-8") as out:
            out.write('{"provenance": ' + json.dumps(self.provenance) + ', "images": [')
            for i, frame in enumerate(self._frame_lines()):
                out.write((", " if i else "") + json.dumps(
                    {"id": frame["image_id"], **{k: frame[k] for k in ("name", "sequence", "index", "size")}}))
            out.write('], "results": [')
            first = True
            for frame in self._frame_lines():
                for record in frame["detections"]:
                    out.write(("" if first else ", ") + json.dumps(record))
                    first = False
            out.write("]}\n")

    def _frame_lines(self) -> Iterator[dict[str, Any]]:
        with open(self.partial, encoding="utf-8") as lines:
            next(lines)
            for line in lines:
                yield json.loads(line)
