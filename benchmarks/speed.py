"""Throughput, latency and peak memory of models for batch sizes 1, 4 and 16; cached-load times; prints tables.

    python benchmarks/speed.py mamba_r101_dc5_vid --device cuda --dtype float16 --frames 64
    python benchmarks/speed.py --device cpu --batch-sizes 1 4 --frames 8 --size 480 640 --torchvision --load

Random weights are used unless --weights is given (speed does not depend on the values). Frames are a real
photograph panned over time (scikit-image's sample data) of ``--size``, resized by each model's own rule;
decoding is excluded. ``--torchvision`` adds torchvision's ``maskrcnn_resnet50_fpn`` (its default resize, the
same as DetPro's: 800 / 1333) on the same frames, and the ratio of each model's time per frame to it. Each
model's work per frame is counted too (GFLOP of its convolutions and matrix products, two per multiply-add, by
``torch.utils.flop_counter``; torchvision's own kernels such as RoIAlign and deformable convolution are not
counted), so that a model doing more work than torchvision's shows its time per GFLOP beside it.
``--load`` times a cached load of each model in a fresh process: importing torch, then torchvision (whose ops
import ``torch._dynamo``), then vfe_hub; ``vfe_hub.load`` of the converted safetensors already on disk (a
vfe_hub folder written here, its sha256 checked on every load) to a model ready for its first frame; that first
frame; and how much the process's peak resident memory grew during the load (Linux ``/proc``: ``VmHWM`` minus
the ``VmRSS`` before it) beside the weights' size: one copy of the weights, plus the code the load imports.
"""
from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Iterable

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


def runner(model, batch_size: int) -> Callable[[list[Frame]], list]:
    """A function running ``model`` on frames in batches of ``batch_size``; a video model sees all the frames it is
    given, over several calls, as one video (one session)."""
    if isinstance(model, vfe_hub.VideoDetector):
        session = model.session()
        return lambda items: list(session.run(items, batch_size, progress_bar(progress=False)))
    return lambda items: list(engine.run(model, items, batch_size, progress_bar(progress=False)))


def measure(model, clip: list[Frame], batch_size: int,
            source: Callable[[], Iterable[Frame]] | None = None) -> tuple[float, float, float]:
    """(frames/s, ms per batch, peak memory MiB) of one pass over ``clip`` after one warm-up batch; with ``source``
    the timed pass runs over ``source()`` instead (e.g. a video file's frames, decoded in the engine's background
    thread while the model computes), which must yield ``len(clip)`` frames."""
    device = model.device
    run = runner(model, batch_size)  # one video: the warm-up frames, then the clip
    run(clip[:batch_size])
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run(clip if source is None else source())
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    return len(clip) / elapsed, 1000 * elapsed / -(-len(clip) // batch_size), peak


def gflop(run: Callable[[list[Frame]], object], frame: Frame) -> float:
    """GFLOP of the convolutions and matrix products of ``run([frame])`` (two per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        run([frame])
    return counter.get_total_flops() / 1e9


def torchvision_baseline(clip: list[Frame], device: str, batch_sizes: list[int]) -> tuple[dict[int, float], float]:
    """torchvision's Mask R-CNN R50-FPN (random weights, 91 classes), built once, over ``clip``: seconds per frame
    at each batch size (after one warm-up batch), and GFLOP per frame (see :func:`gflop`)."""
    import torchvision

    net = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval().to(device)
    # torchvision's detectors take (3, H, W) float images in [0, 1]
    tensors = lambda items: [torch.from_numpy(f.image).permute(2, 0, 1).float().div(255).to(device) for f in items]
    images = tensors(clip)
    seconds = {}
    with torch.inference_mode():
        for batch_size in batch_sizes:
            net(images[:batch_size])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            for i in range(0, len(images), batch_size):
                net(images[i:i + batch_size])
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[batch_size] = (time.perf_counter() - start) / len(images)
    return seconds, gflop(lambda items: net(tensors(items)), clip[0])


_LOAD_PROBE = """
import sys, time
start = time.perf_counter()
import torch
torch_imported = time.perf_counter()
import torchvision
torchvision_imported = time.perf_counter()
import vfe_hub
imported = time.perf_counter()
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) / 1024
before = status("VmRSS:")
model = vfe_hub.load(weights=sys.argv[1], device="cpu")
loaded = time.perf_counter()
load_peak = status("VmHWM:") - before
model.predict(torch.zeros(3, 64, 64, dtype=torch.uint8))
first = time.perf_counter()
print(torch_imported - start, torchvision_imported - torch_imported, imported - torchvision_imported,
      loaded - imported, first - loaded, load_peak)
"""


def load_rows(names: list[str]) -> None:
    """Cached-load table: each model's random weights written as a vfe_hub folder, then loaded in a new process."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from vfe_hub import cards, hub

    print("\n| model | import torch s | import torchvision s | import vfe_hub s | vfe_hub.load s | first frame s | "
          "load's peak RSS growth MiB | weights MiB |\n|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            spec = vfe_hub.registry.get_spec(name)
            model = spec.build()
            vocabulary = ({"classes": list(model.class_names), "category_ids": model.category_ids}
                          if model.category_ids is not None else {})
            folder = Path(tmp) / name
            companions = model.companion_files() if hasattr(model, "companion_files") else {}  # BAGS's groups
            hub.write_model_dir(folder, model.state_dict(),
                                {"name": name, "family": spec.family, "config": spec.config, **vocabulary},
                                cards.render(spec), companions)
            size = (folder / hub.WEIGHTS_NAME).stat().st_size / 2**20
            del model
            out = subprocess.run([sys.executable, "-c", _LOAD_PROBE, str(folder)], capture_output=True, text=True,
                                 check=True).stdout.split()
            *seconds, grown = map(float, out[-6:])
            print(f"| {name} | {' | '.join(f'{t:.2f}' for t in seconds)} | {grown:.0f} | {size:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=vfe_hub.list_models())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, nargs=2, default=(720, 1280), metavar=("H", "W"))
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=(1, 4, 16),
                        help="batch sizes to time (none: only --load)")
    parser.add_argument("--weights", help="weights for the (single) model; default random")
    parser.add_argument("--torchvision", action="store_true", help="add torchvision's Mask R-CNN R50-FPN as a baseline")
    parser.add_argument("--load", action="store_true", help="also time a cached load of each model (fresh process)")
    args = parser.parse_args()
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(f"torch {torch.__version__}, device {args.device} ({device_name}), dtype {args.dtype}, "
          f"{args.frames} consecutive frames (stride 1) of {args.size[0]}x{args.size[1]}; trackers: detector and "
          "tracking end to end\n")
    clip = frames(args.frames, *args.size)
    timed = args.torchvision and args.batch_sizes
    baseline, baseline_gflop = torchvision_baseline(clip, args.device, args.batch_sizes) if timed else ({}, None)
    if args.batch_sizes:
        print("| model | batch | frames/s | ms/batch | peak MiB | GFLOP / frame | time / torchvision Mask R-CNN | "
              "time per GFLOP / torchvision's |\n|---|---|---|---|---|---|---|---|")
    for bs, seconds in baseline.items():
        print(f"| torchvision maskrcnn_resnet50_fpn | {bs} | {1 / seconds:.2f} | {1000 * seconds * bs:.1f} | | "
              f"{baseline_gflop:.0f} | 1.00 | 1.00 |")
    for name in args.models if args.batch_sizes else ():
        if args.weights:
            model = vfe_hub.load(name, device=args.device, dtype=args.dtype, weights=args.weights)
        else:
            model = vfe_hub.registry.get_spec(name).build().to(args.device)
            model.dtype = getattr(torch, args.dtype)
        run = runner(model, 1)
        run(clip[:1])  # a video model's first frame has no past frames to attend to: count the second
        work = gflop(run, clip[1 % len(clip)])
        for bs in args.batch_sizes:
            fps, ms, peak = measure(model, clip, bs)
            ratio = f"{1 / fps / baseline[bs]:.2f}" if bs in baseline else ""
            per_gflop = f"{1 / fps / work / (baseline[bs] / baseline_gflop):.2f}" if bs in baseline else ""
            print(f"| {name} | {bs} | {fps:.2f} | {ms:.1f} | {peak:.0f} | {work:.0f} | {ratio} | {per_gflop} |")
        del model
    if args.load:
        load_rows(args.models)


if __name__ == "__main__":
    main()
