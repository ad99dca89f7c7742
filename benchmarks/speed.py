"""Throughput, latency and peak memory of a model for batch sizes 1, 4 and 16; prints a Markdown table.

    python benchmarks/speed.py mamba_r101_dc5_vid --device cuda --dtype float16 --frames 64

Random weights are used unless --weights is given (speed does not depend on the values). Frames are a real
photograph panned over time (scikit-image's sample data) at the model's input size; decoding is excluded.
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

import vfe_hub
from vfe_hub import engine
from vfe_hub.io import Frame
from vfe_hub.progress import progress_bar


def frames(count: int, height: int, width: int) -> list[Frame]:
    import skimage.data
    from skimage.transform import resize

    wide = (resize(skimage.data.astronaut(), (height, width + 4 * count), preserve_range=True)).astype(np.uint8)
    return [Frame(np.ascontiguousarray(wide[:, 4 * i:4 * i + width]), f"<bench {i}>", i, "<bench>", None)
            for i in range(count)]


def measure(model, clip: list[Frame], batch_size: int) -> tuple[float, float, float]:
    """(frames/s, ms per batch, peak memory MiB) of one pass over ``clip`` after one warm-up batch."""
    device = model.device
    run = lambda items: list(engine.run(model, items, batch_size, progress_bar(progress=False)))
    if isinstance(model, vfe_hub.VideoDetector):
        model.reset()
    run(clip[:batch_size])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(clip)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return len(clip) / elapsed, 1000 * elapsed / -(-len(clip) // batch_size), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=vfe_hub.list_models())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=2, default=(720, 1280), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=(1, 4, 16))
    parser.add_argument("--weights", help="weights for the (single) model; default random")
    args = parser.parse_args()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"torch {torch.__version__}, device {args.device} ({device_name}), dtype {args.dtype}, "
          f"{args.frames} frames of {args.size[0]}x{args.size[1]}\n")
    print("| model | batch | frames/s | ms/batch | peak MiB |\n|---|---|---|---|---|")
    clip = frames(args.frames, *args.size)
    for name in args.models:
        if args.weights:
            model = vfe_hub.load(name, device=args.device, dtype=args.dtype, weights=args.weights)
        else:
            model = vfe_hub.registry.get_spec(name).build().to(args.device)
            model.dtype = getattr(torch, args.dtype)
        for bs in args.batch_sizes:
            fps, ms, peak = measure(model, clip, bs)
            print(f"| {name} | {bs} | {fps:.2f} | {ms:.1f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
