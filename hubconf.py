"""torch.hub entry points, one per registered model, generated from the registry. From a clone, in its folder:

    model = torch.hub.load(".", "mamba_r101_dc5_vid", source="local", trust_repo=True)

(vfe_hub is not published on GitHub yet; once it is, ``torch.hub.load("<owner>/vfe_hub", NAME)`` loads the same.)
"""
dependencies = ["torch", "torchvision", "safetensors", "huggingface_hub", "av"]

from vfe_hub.registry import ALIASES as _ALIASES, MODELS as _MODELS  # noqa: E402


def _entry_point(name: str):
    spec = _MODELS[_ALIASES.get(name, name)]

    def entry(**kwargs):
        from vfe_hub import load

        return load(name, **kwargs)

    entry.__name__ = name
    entry.__doc__ = (f"{spec.summary}\n\nTask: {spec.task}. Paper: {spec.paper.title} ({spec.paper.url}).\n"
                     f"Keyword arguments go to vfe_hub.load (device, dtype, weights, revision, progress, vocabulary, "
                     f"pipeline).")
    return entry


# weight variants are "<architecture>.<tag>" (torch.hub looks entries up by name); the architecture alone loads its
# default variant
globals().update({name: _entry_point(name) for name in [*_MODELS, *_ALIASES]})
