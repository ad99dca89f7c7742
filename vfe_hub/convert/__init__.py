"""Strict conversion of original checkpoints into vfe_hub's key layout: one rename table per source code base."""
from __future__ import annotations

import importlib

from ..errors import ConversionError
from .rename import RenameTable, check_state_dict, convert_state_dict

#: checkpoint format (as in ``WeightsSpec.format``) -> module holding its ``TABLE``
FORMATS = {"mmdet_v1": "mmdet_v1", "mmdet_v2": "mmdet_v2", "detectron2": "detectron2",
           "maskrcnn_benchmark": "maskrcnn_benchmark"}


def table_for(fmt: str) -> RenameTable:
    """The rename table of the checkpoint format ``fmt``."""
    if fmt not in FORMATS:
        raise ConversionError(f"No converter for checkpoint format {fmt!r}; known: {', '.join(FORMATS)}.")
    return importlib.import_module(f"{__name__}.{FORMATS[fmt]}").TABLE


__all__ = ["RenameTable", "check_state_dict", "convert_state_dict", "table_for"]
