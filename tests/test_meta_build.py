"""``load`` builds every registered model without initialising it (parameters on the meta device, then the weights)
and gets exactly the network a normal build plus a strict load gives: same tensors, same non-weight tensors built
in ``__init__`` (anchors, index tables), same detections."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import vfe_hub
from media import photo
from small_models import DETPRO_SMALL, FAST, small_spec
from vfe_hub import hub, registry, weights


def _small(name: str) -> registry.ModelSpec:
    spec = small_spec(name)
    return dataclasses.replace(spec, preprocess=DETPRO_SMALL) if spec.family in ("detpro", "gtr") else spec


#: fewer proposals than the releases; GTR's proposals all kept (its freshly initialised heatmap is below the gate)
OVERRIDES = {"detpro": FAST, "gtr": {"proposals": 20, "asso_thresh": 0.0}}


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a module holds outside its state dict, by attribute path (lists of tensors included)."""
    found = {}
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for i, v in enumerate(values):
                if isinstance(v, torch.Tensor) and not attr.startswith("_"):
                    found[f"{prefix}.{attr}[{i}]"] = v
    return found


#: one model per architecture (weight variants share its code)
ONE_PER_ARCHITECTURE = sorted(name for name, spec in registry.MODELS.items()
                              if spec.architecture is None or registry.ALIASES[spec.architecture] == name)


@pytest.mark.parametrize("name", ONE_PER_ARCHITECTURE)
def test_load_matches_a_normally_built_model(name, tmp_path, monkeypatch):
    spec = _small(name)
    monkeypatch.setitem(registry.MODELS, name, spec)
    overrides = OVERRIDES.get(spec.family, {})
    torch.manual_seed(0)
    source = spec.build(**overrides)  # the weights: PyTorch's initialisation, all-zero tensors made random
    state = {k: torch.randn(v.shape) * 0.1 if v.is_floating_point() and not v.any() else v
             for k, v in source.state_dict().items()}
    classes = list(spec.classes) or [f"thing_{i}" for i in range(len(source.class_names))]
    config = {"name": name, "family": spec.family, "config": spec.config, "classes": classes,
              "category_ids": list(range(1, len(classes) + 1))}
    companions = source.companion_files() if hasattr(source, "companion_files") else {}  # BAGS's group tables
    hub.write_model_dir(tmp_path / "w", state, config, card="", files=companions)

    reference = spec.build(**overrides)  # a normal build (random initialisation), then the strict load
    reference.load_weights(weights.resolve(spec, {k: v.shape for k, v in reference.state_dict().items()},
                                           weights=tmp_path / "w"))
    loaded = vfe_hub.load(weights=tmp_path / "w", device="cpu", **overrides)

    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    expected, actual = reference.state_dict(), loaded.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) and expected[k].dtype == actual[k].dtype for k in expected)
    assert {type(p) for p in loaded.parameters()} == {torch.nn.Parameter}
    other, other_loaded = _tensors(reference), _tensors(loaded)
    assert other.keys() == other_loaded.keys()
    assert all(not other_loaded[k].is_meta and torch.equal(other[k], other_loaded[k]) for k in other)

    image = photo("coffee", (120, 160))
    [a], [b] = reference.predict(image), loaded.predict(image)
    assert len(a) > 0
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores) and torch.equal(a.labels, b.labels)
