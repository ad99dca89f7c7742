"""How far the default (fast) resize is from each original's resize library, at each model's real test scale.

    python benchmarks/resize_fidelity.py

For every registered input pipeline, each scikit-image sample photograph is resized to the model's test size by
the original's library (``pipeline="original"``: PIL or cv2 on uint8) and by the default path on the CPU (torch's
antialiased uint8 kernel for PIL's filter, torch's float bilinear for cv2's ``INTER_LINEAR``). The table gives the
share of values (pixels x channels) that differ by at least half a grey level, per photograph and on average, and
the largest difference in grey levels.
"""
from __future__ import annotations

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F

from vfe_hub import engine
from vfe_hub.registry import MODELS

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


def photographs() -> dict[str, np.ndarray]:
    images = {}
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        images[name] = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    return images


def fast_resize(image: np.ndarray, size: tuple[int, int], library: str) -> torch.Tensor:
    """The default pipeline's resize on the CPU, as floats ``(3, h, w)`` (before normalisation)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    if library == "pil":
        return engine.pil_bilinear(x, size)[0].float()
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)[0]


def main() -> None:
    images = photographs()
    rules = {}
    for name, spec in MODELS.items():
        rules.setdefault(spec.preprocess, []).append(name.split(".")[0])
    print("| models | library | size rule | " + " | ".join(PHOTOS) + " | mean | max diff |")
    print("|---|---|---|" + "---|" * (len(PHOTOS) + 2))
    for rule, names in rules.items():
        shares, worst = [], 0.0
        for image in images.values():
            size = engine.resized_size(*image.shape[:2], rule)
            original = torch.from_numpy(np.array(engine.original_resize(image, size, rule.library)))
            original = original.permute(2, 0, 1).float()
            diff = (fast_resize(image, size, rule.library) - original).abs()
            shares.append((diff >= 0.5).float().mean().item() * 100)
            worst = max(worst, diff.max().item())
        cells = " | ".join(f"{s:.2f} %" for s in shares)
        print(f"| {', '.join(sorted(set(names)))} | {rule.library} | {rule.style} {rule.max_size}x{rule.min_size} | "
              f"{cells} | {np.mean(shares):.2f} % | {worst:.2f} |")


if __name__ == "__main__":
    main()
