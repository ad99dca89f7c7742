"""Full-size networks with random weights in the original layout, run at a small input size for fast CPU tests."""
from __future__ import annotations

import dataclasses

from original_layouts import mamba_layout, random_state
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.registry import Preprocess, get_spec

# The layers do not depend on the input size; 320 x 192 keeps a ResNet-101 forward under a second on a CPU core.
SMALL = Preprocess(max_size=320, min_size=192, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                   size_divisor=16)


def small_spec(name: str):
    return dataclasses.replace(get_spec(name), preprocess=SMALL)


def mamba(seed: int = 0):
    """MAMBA with a random checkpoint of the released layout, converted strictly, at the small input size."""
    model = small_spec("mamba_r101_dc5_vid").build()
    state, _ = convert_state_dict(random_state(mamba_layout(), seed), table_for("mmdet_v2"),
                                  {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.eval()
