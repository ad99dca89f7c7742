"""Frames per second of a sharded run with 1 and 2 processes (torchrun) on this machine; prints a Markdown table.

    python benchmarks/scaling.py mamba_r101_dc5_vid --videos 8 --frames 16 --device cuda

Each process count runs ``torchrun --nproc-per-node P -m vfe_hub.cli predict NAME <videos> --out-dir ...`` over
the same generated videos (folders of JPEG frames: a photograph panned over time) with random weights written
once to a vfe_hub folder (speed does not depend on the values). The time is the whole command's: start-up, model
loading, the shards and the merge. On a CPU each process gets ``cores // P`` threads; with ``--device cuda`` each
process takes its own GPU when there are several.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vfe_hub import hub
from vfe_hub.registry import get_spec


def write_videos(root: Path, videos: int, frames: int, size: tuple[int, int]) -> list[str]:
    """``videos`` folders of ``frames`` JPEG frames of ``size=(h, w)``; video ``v`` pans ``v + 1`` pixels a frame."""
    import skimage.data
    from skimage.transform import resize

    h, w = size
    wide = resize(skimage.data.astronaut(), (h, w + videos * frames), preserve_range=True).astype(np.uint8)
    folders = []
    for v in range(videos):
        folder = root / f"video_{v:03d}"
        folder.mkdir(parents=True)
        for k in range(frames):
            x = k * (v + 1)
            Image.fromarray(np.ascontiguousarray(wide[:, x:x + w])).save(folder / f"{k:06d}.jpg")
        folders.append(str(folder))
    return folders


def write_random_weights(name: str, folder: Path) -> None:
    spec = get_spec(name)
    model = spec.build()
    hub.write_model_dir(folder, model.state_dict(), {"name": spec.name, "family": spec.family, "config": spec.config},
                        card=f"# {name}\n\nRandom weights for benchmarks/scaling.py.\n")


def run(processes: int, name: str, weights: Path, folders: list[str], out: Path, device: str) -> float:
    """Seconds of one ``torchrun --nproc-per-node processes`` prediction over ``folders`` into ``out``."""
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port",
               "0", "-m", "vfe_hub.cli", "predict", name, *folders, "--weights", str(weights), "--device", device,
               "--out-dir", str(out), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="mamba_r101_dc5_vid",
                        help="a model whose weights are one file (video models, not DetPro)")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
    parser.add_argument("--size", type=int, nargs=2, default=(360, 640), metavar=("H", "W"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--processes", type=int, nargs="+", default=(1, 2))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = write_videos(root / "videos", args.videos, args.frames, tuple(args.size))
        write_random_weights(args.model, root / "weights")
        total = args.videos * args.frames
        hardware = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
        print(f"{args.model}, {args.videos} videos x {args.frames} frames of {args.size[0]} x {args.size[1]}, "
              f"{args.device} ({hardware}, {os.cpu_count()} cores), torch {torch.__version__}\n")
        print("| processes | seconds | frames/s | speed-up |\n|---:|---:|---:|---:|")
        first = None
        for processes in args.processes:
            seconds = run(processes, args.model, root / "weights", folders, root / f"out_{processes}", args.device)
            first = first or seconds
            print(f"| {processes} | {seconds:.1f} | {total / seconds:.2f} | {first / seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
