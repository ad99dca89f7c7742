"""What ``vfe-hub demo`` costs: the first run on an empty cache, then a second run; prints a table.

    python benchmarks/first_run.py

The first run downloads MAMBA's original checkpoint, checks its sha256, converts it strictly and caches the result
as safetensors, then runs the 16 frames of the shipped clip and draws them; the second run reads only the cached
conversion. Each run is a fresh ``vfe-hub demo`` process (importing torch included) in an empty folder, timed by
wall clock and by the CPU time of the process (user + system, all threads).

No network is measured: the Hugging Face Hub is replaced by the tests' local stand-in (``tests/hubserver.py``,
127.0.0.1) serving random tensors in the released file's layout (``tests/original_layouts.py``; the same 656
tensors and size as ``epoch_6_model.pth``), so the download, checks, conversion and inference do the same work as
with the real file. Add the download of the real file (359 MB) at the speed of your connection.
"""
from __future__ import annotations

import io
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from hubserver import FakeHub  # noqa: E402
from original_layouts import mamba_layout, random_state, write_mmcv_checkpoint  # noqa: E402

from vfe_hub.cli import DEMO_MODEL  # noqa: E402
from vfe_hub.registry import get_spec  # noqa: E402

# The demo with the registry entry pinned to the stand-in Hub's commit (the real one names the authors' commit).
_DEMO = """
import dataclasses, sys
from vfe_hub import cli, registry
spec = registry.get_spec(cli.DEMO_MODEL)
registry.MODELS[spec.name] = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, revision=sys.argv[1]))
sys.exit(cli.main(["demo"]))
"""


def timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``command`` run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    spec = get_spec(DEMO_MODEL)
    buffer = io.BytesIO()
    write_mmcv_checkpoint(buffer, random_state(mamba_layout()))
    hub = FakeHub()
    hub.start()
    try:
        commit = hub.add_file(spec.weights.repo_id, spec.weights.filename, buffer.getvalue())
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": f"{tmp}/hf", "HF_HUB_DISABLE_TELEMETRY": "1",
                   "HF_HUB_DISABLE_XET": "1", "VFE_HUB_CACHE": f"{tmp}/vfe_hub", "NO_PROXY": "127.0.0.1",
                   "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
            env.pop("HF_HUB_OFFLINE", None)
            print(f"vfe-hub demo ({DEMO_MODEL}, original {len(buffer.getvalue()) / 1e6:.0f} MB), "
                  f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads: default\n")
            print("| run | wall s | CPU s |\n|---|---|---|")
            for run in ("first (download, check, convert, cache, 16 frames)", "second (cached, 16 frames)"):
                folder = Path(tmp) / run.split()[0]
                folder.mkdir()
                wall, cpu = timed([sys.executable, "-c", _DEMO, commit[:7]], env, folder)
                assert (folder / "vfe_hub_demo" / "results.json").is_file()
                print(f"| {run} | {wall:.0f} | {cpu:.0f} |")
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
