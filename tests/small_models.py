"""Full-size networks with random weights in the original layout, run at a small input size for fast CPU tests."""
from __future__ import annotations

import dataclasses

from original_layouts import mamba_layout, random_state, stpn_layout
from vfe_hub.convert import convert_state_dict, table_for
from vfe_hub.registry import Preprocess, get_spec

# The layers do not depend on the input size; 320 x 192 keeps a ResNet-101 forward under a second on a CPU core.
SMALL = Preprocess(max_size=320, min_size=192, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                   size_divisor=16)


def small_spec(name: str):
    return dataclasses.replace(get_spec(name), preprocess=SMALL)


LAYOUTS = {"mamba_r101_dc5_vid": mamba_layout, "stpn_swint_vid": stpn_layout}


def video_model(name: str, seed: int = 0, **overrides):
    """``name`` with a random checkpoint of the released layout, converted strictly, at the small input size."""
    model = small_spec(name).build(**overrides)
    state, _ = convert_state_dict(random_state(LAYOUTS[name](), seed), table_for(get_spec(name).weights.format),
                                  {k: v.shape for k, v in model.state_dict().items()})
    model.load_state_dict(state, strict=True)
    return model.eval()


def mamba(seed: int = 0):
    return video_model("mamba_r101_dc5_vid", seed)
