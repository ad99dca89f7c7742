"""Start-up time of the light commands and what they import (``python -X importtime``); prints a Markdown table.

    python benchmarks/cli_startup.py [--repeat 5]

``vfe-hub --help``, ``--version``, ``list``, ``info`` and ``cache list`` read the registry and the cache folders
only: they must not import PyTorch (``torch``, ``torchvision``: seconds to import). Targets: under 0.5 s for
``--help``, under 1 s for ``list`` and ``info``. Each command runs ``--repeat`` times as a fresh
``python -X importtime -m vfe_hub ...``; the table shows the fastest run's wall time (the one least disturbed by
other work on the machine), the time its imports took, whether PyTorch was imported and the heaviest top-level
imports. The last row imports torch alone, for comparison. ``cache list`` runs on an empty cache.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

COMMANDS = (("--help",), ("--version",), ("list",), ("info", "mamba_r101_dc5_vid"), ("cache", "list"))
#: what the light commands must not import
HEAVY = ("torch", "torchvision")
TARGETS = {"--help": 0.5, "list": 1.0, "info": 1.0}


@dataclass(frozen=True)
class Startup:
    """One run: its wall time, every module it imported and the cumulative import time of each top-level import,
    in seconds."""

    seconds: float
    modules: frozenset[str]
    imports: dict[str, float]

    @property
    def heavy(self) -> list[str]:
        """The modules of :data:`HEAVY` among the imported ones."""
        return sorted(name for name in self.modules if name.partition(".")[0] in HEAVY)


def run(command: list[str], env: dict[str, str] | None = None) -> Startup:
    """Run ``python -X importtime -m vfe_hub COMMAND`` (or ``python -X importtime -c COMMAND[1]`` when the command
    is ``["-c", code]``) and read what it imported from ``-X importtime``'s report on stderr."""
    args = command if command[0] == "-c" else ["-m", "vfe_hub", *command]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    modules, imports = set(), {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        modules.add(name.strip())
        if not name.startswith("  "):  # a top-level import: nested ones are indented by two more spaces per level
            imports[name.strip()] = int(cumulative) / 1e6
    return Startup(seconds, frozenset(modules), imports)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per command; the fastest counts (default: 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "VFE_HUB_CACHE": os.path.join(cache, "vfe_hub"), "HF_HUB_CACHE": os.path.join(cache, "hf")}
        print(f"Python {platform.python_version()}, {platform.platform()}, {os.cpu_count()} CPUs; fastest of "
              f"{args.repeat} runs\n")
        print("| command | wall s | target s | imports s | PyTorch imported | heaviest imports (s) |")
        print("|---|---|---|---|---|---|")
        for command in [*COMMANDS, ("-c", "import torch, torchvision")]:
            best = min((run(list(command), env) for _ in range(args.repeat)), key=lambda s: s.seconds)
            top = sorted(best.imports.items(), key=lambda item: -item[1])[:3]
            label = f"python -c '{command[1]}'" if command[0] == "-c" else "vfe-hub " + " ".join(command)
            print(f"| `{label}` | {best.seconds:.2f} | {TARGETS.get(command[0], '')} | "
                  f"{sum(best.imports.values()):.2f} | {'yes' if best.heavy else 'no'} | "
                  + ", ".join(f"{name} {s:.2f}" for name, s in top) + " |")


if __name__ == "__main__":
    main()
