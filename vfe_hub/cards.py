"""Model cards: Hugging Face Hub front matter + usage, generated from the registry (the single source)."""
from __future__ import annotations

import yaml

from .registry import ModelSpec

_DATASET_NAMES = {"imagenet_vid": "ImageNet VID (val)"}


def readme_table(specs: list[ModelSpec]) -> str:
    """The README's model table (Markdown)."""
    rows = ["| name | task | paper metric | weights |", "|---|---|---|---|"]
    for spec in specs:
        metric = "; ".join(f"{_DATASET_NAMES.get(d, d)} " + ", ".join(f"{k} {v}" for k, v in m.items())
                           for d, m in spec.metrics.items())
        w = spec.weights
        rows.append(f"| `{spec.name}` | {spec.task} | {metric} | `{w.repo_id}` `{w.filename}` @ `{w.revision}` |")
    return "\n".join(rows)


def front_matter(spec: ModelSpec) -> dict:
    """The card's YAML metadata, with a ``model-index`` of the paper's metrics."""
    results = [
        {
            "task": {"type": "object-detection", "name": spec.task},
            "dataset": {"type": dataset, "name": _DATASET_NAMES.get(dataset, dataset)},
            "metrics": [{"type": metric, "name": metric, "value": value} for metric, value in metrics.items()],
            "source": {"name": spec.paper.title, "url": spec.paper.url},
        }
        for dataset, metrics in spec.metrics.items()
    ]
    return {
        "license": spec.licence,
        "library_name": "vfe_hub",
        "pipeline_tag": "object-detection",
        "tags": list(spec.tags),
        "datasets": list(spec.datasets),
        "model-index": [{"name": spec.name, "results": results}],
    }


def render(spec: ModelSpec) -> str:
    """The whole model card as Markdown."""
    w = spec.weights
    metric_rows = "\n".join(f"| {dataset} | {metric} | {value} |"
                            for dataset, metrics in spec.metrics.items() for metric, value in metrics.items())
    protocol_rows = "\n".join(f"- **{name}**: {text}" for name, text in spec.protocols.items())
    sha = w.sha256 or "not published with the release; checked against the Hub's LFS sha256 on download"
    return f"""---
{yaml.safe_dump(front_matter(spec), sort_keys=False).strip()}
---

# {spec.name}

{spec.summary}

Paper: [{spec.paper.title}]({spec.paper.url}) ({spec.paper.venue}). Original code: {spec.original_code}.

## Usage

```python
import vfe_hub

model = vfe_hub.load("{spec.name}", device="cuda")
results = model.predict("clip.mp4", batch_size=8)       # one Detections per frame
results[0].plot().save("frame0.jpg")
```

Or `torch.hub.load("<repo>", "{spec.name}")`, `vfe_hub.pipeline("{spec.task}", model="{spec.name}")`,
`vfe-hub predict {spec.name} clip.mp4`.

## Temporal behaviour

{spec.temporal}

Protocols (`model.predict(..., protocol=...)`):

{protocol_rows}

## Numbers

Paper (protocol `paper`):

| dataset | metric | paper |
|---|---|---|
{metric_rows}

Reproduce with `python benchmarks/reproduce.py {spec.name} --root <data>`.

## Weights

`{w.repo_id}` / `{w.filename}` at revision `{w.revision}` (format `{w.format}`; converted strictly to safetensors on
first load and cached). sha256: {sha}. {w.licence_note}

## Citation

```bibtex
{spec.paper.citation}
```
"""
