"""``benchmarks/gpu_check.py`` end to end on the CPU at its small size: the folder, the tables, the JSON, the header,
and a failure recorded with its model, step and traceback."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def gpu_check(out: Path, *args: str, exit_code: int = 0) -> dict:
    command = [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--quick", "--budget", "1200", "--out",
               str(out), *args]
    finished = subprocess.run(command, cwd=REPO, timeout=6000, capture_output=True, text=True)
    assert finished.returncode == exit_code, finished.stdout + finished.stderr
    return json.loads((out / "report.json").read_text())


def test_every_step_on_the_cpu(tmp_path):
    out = tmp_path / "check"
    report = gpu_check(out, "--models", "mamba_r101_dc5_vid", "--compile-backend", "eager",
                       "--tests", "tests/test_device.py -m 'not slow'")
    header = report["header"]
    assert header["torch"] and header["device"] == "cpu" and {"cuda", "cudnn", "driver", "gpu"} <= set(header)
    markdown = (out / "report.md").read_text()
    assert markdown.splitlines()[2].startswith(f"torch {header['torch']}, CUDA {header['cuda']}, cuDNN ")
    assert ", driver " in markdown.splitlines()[2] and ", GPU " in markdown.splitlines()[2]
    steps = report["steps"]
    assert list(steps) == ["tests", "parity", "precision", "speed", "compile"]
    assert all(step["status"] == "ok" and not step["failures"] for step in steps.values()), markdown
    [tests] = steps["tests"]["rows"]
    assert tests["passed"] == tests["tests"] > 0 and tests["failed"] == tests["error"] == 0 and tests["finished"]
    [parity] = steps["parity"]["rows"]
    assert parity["model"] == "mamba_r101_dc5_vid" and parity["detections"] > 0 and parity["matched"] == 1.0
    [half] = steps["precision"]["rows"]
    assert half["dtype"] == "bfloat16" and 0 < half["matched"] <= 1 and "predictor outputs" in half["ops"]
    speed = {(row["dtype"], row["batch"]): row for row in steps["speed"]["rows"]}
    assert set(speed) == {(d, b) for d in ("float32", "bfloat16") for b in (1, 2)}
    assert all(row["frames_per_s"] > 0 and row["vs_reported"] > 0 for row in speed.values())
    [compiled] = steps["compile"]["rows"]
    assert compiled["backend"] == "eager" and compiled["speedup"] > 0 and compiled["matched"] == 1.0
    assert all(f"## {step}\n\nStatus: ok" in markdown for step in steps) and "| frames_per_s |" in markdown


def test_a_failure_names_the_model_and_the_step_and_keeps_the_traceback(tmp_path):
    out = tmp_path / "check"
    report = gpu_check(out, "--steps", "parity", "--models", "no_such_model", exit_code=1)
    [failure] = report["steps"]["parity"]["failures"]
    assert failure["model"] == "no_such_model" and failure["what"] == "parity"
    assert "UnknownModelError" in failure["error"]
    assert "Traceback" in (out / failure["traceback"]).read_text()
    assert "FAILED no_such_model (parity)" in (out / "report.md").read_text()
