"""The GPU proof in one command: the device-sensitive tests, CPU parity, half precision, speed and torch.compile.

    python benchmarks/gpu_check.py                      # on a CUDA machine, no argument: everything, < 8 minutes
    python benchmarks/gpu_check.py --device cpu --quick --models mamba_r101_dc5_vid   # the same steps, small (suite)

Steps, each in its own process under a time limit (a crash, a lost CUDA context or a timeout ends that process
only; a step whose process died goes on with the models it had not done):

- ``tests``: the device-sensitive tests with ``VFE_HUB_TEST_DEVICE=<device>`` (:data:`DEVICE_TESTS`).
- ``parity``: every architecture in float32 on the device against the CPU, same weights, same two frames at a
  moderate size (short side 480), TF32 off: matched detections and the worst differences.
- ``precision``: float16 and bfloat16 against float32 on the device, as ``benchmarks/precision.py`` measures
  them on the CPU (the model cards' setup), TF32 off.
- ``speed``: ``benchmarks/speed.py``'s measurement at batch 1, 4 and 16 in float32, float16 and bfloat16, with
  peak memory, frames decoded from a video file in the engine's background thread (overlapping compute);
  MAMBA's frames/s beside the 47.7 frames/s the authors' 2.0 release reports (one GH200).
- ``compile``: ``torch.compile`` of one image model's and one video model's backbone and neck: the speed-up and
  whether the outputs agree, or the reason it failed.

Everything lands in one folder (default ``gpu_check_<date>_<time>``): ``report.md`` (a header naming torch, CUDA,
the driver and the GPU, then one table per step), ``report.json`` (the same data), ``<step>.log`` (each step's
output) and ``tracebacks/<step>-<model>-<what>.txt`` for every failure, which the report names. The exit status is
1 when a step failed or ran out of time. Models are random weights in the released layouts, made decisive
(``tests/small_models.py``), except the speed step's (the registry's full configurations, random initialisation:
speed does not depend on the values).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import datetime
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

import torch  # noqa: E402

STEPS = ("tests", "parity", "precision", "speed", "compile")
#: seconds each step may take on a GPU machine (the sum stays under 8 minutes with the processes' start-up)
BUDGET = {"tests": 90, "parity": 100, "precision": 70, "speed": 120, "compile": 90}
#: the test files whose models and tensors follow VFE_HUB_TEST_DEVICE
DEVICE_TESTS = ("tests/test_device.py", "tests/test_precision.py", "tests/test_video_models.py",
                "tests/test_sessions.py", "tests/test_batch_invariance.py",
                "tests/test_io.py::test_tensor_on_the_device_under_test_is_read_back_to_the_host")
#: MAMBA's test throughput reported for the authors' 2.0 release (vfe.pytorch V2), frames/s on one GH200
MAMBA_REPORTED_FPS = 47.7
#: the models whose backbone and neck the compile step compiles: one image model, one video model
COMPILED = ("mamba_r101_dc5_vid", "detpro_r50_fpn_lvis1")


# ------------------------------------------------------------------------------------------------ the steps


class StepRecord:
    """A step's rows, failures and notes, written to ``<out>/<step>.json`` after every change (a step process
    that dies keeps what it had)."""

    def __init__(self, out: Path, step: str) -> None:
        self.path = out / f"{step}.json"
        self.out, self.step = out, step
        self.data: dict[str, Any] = (json.loads(self.path.read_text()) if self.path.is_file()
                                     else {"step": step, "rows": [], "failures": [], "notes": [], "done": []})

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def row(self, row: dict[str, Any]) -> None:
        self.data["rows"].append(row)
        self.save()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        self.save()

    def done(self, model: str) -> None:
        self.data["done"].append(model)
        self.save()

    def failure(self, model: str, what: str, error: BaseException | str) -> None:
        """Record a failure of ``what`` for ``model``, with its traceback in ``tracebacks/``."""
        folder = self.out / "tracebacks"
        folder.mkdir(exist_ok=True)
        name = f"{self.step}-{model}-{what}".replace("/", "_").replace(" ", "_")
        text = error if isinstance(error, str) else "".join(traceback.format_exception(error))
        (folder / f"{name}.txt").write_text(text)
        first = (str(error).splitlines() or [""])[0][:300]
        summary = error.splitlines()[0] if isinstance(error, str) else f"{type(error).__name__}: {first}"
        self.data["failures"].append({"model": model, "what": what, "error": summary,
                                      "traceback": f"tracebacks/{name}.txt"})
        self.save()


def _lost_context(error: BaseException) -> bool:
    """Whether ``error`` leaves the CUDA context unusable (the step process must end; the next one goes on)."""
    text = str(error)
    return any(sign in text for sign in ("device-side assert", "illegal memory access", "unspecified launch failure",
                                         "CUDA error: an illegal", "misaligned address"))


def _per_model(record: StepRecord, models: list[str], work: Callable[[str], None]) -> None:
    """Run ``work(model)`` for each model not done yet, recording failures; a lost CUDA context ends the process."""
    for name in models:
        if name in record.data["done"]:
            continue
        try:
            work(name)
        except Exception as e:  # recorded, and the check goes on with the next model
            record.failure(name, record.step, e)
            if _lost_context(e):
                record.done(name)
                raise SystemExit(3) from e
        finally:
            with contextlib.suppress(Exception):  # a lost context fails here too; the error is recorded above
                torch.cuda.empty_cache()
        record.done(name)


def _exact_float32() -> None:
    """TF32 off: float32 on a GPU computes in float32 (cuBLAS and cuDNN otherwise round inputs to 10 bits)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _moderate(model, short: int = 480, long: int = 800):
    """``model`` with its preprocessing at a moderate size (short side ``short``, long side at most ``long``)."""
    model.spec = dataclasses.replace(model.spec, preprocess=dataclasses.replace(model.spec.preprocess,
                                                                                min_size=short, max_size=long))
    return model


def step_tests(args: argparse.Namespace, record: StepRecord) -> None:
    selection = shlex.split(args.tests) if args.tests else list(DEVICE_TESTS)
    log = args.out / "tests-pytest.log"
    env = {**os.environ, "VFE_HUB_TEST_DEVICE": args.device, "PYTHONPATH": _pythonpath()}
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-rfE",
               f"--basetemp={args.out / 'pytest-tmp'}", *selection]
    record.note(f"VFE_HUB_TEST_DEVICE={args.device} {shlex.join(command[2:])} (output: {log.name})")
    with open(log, "w") as out:
        code = _run(command, max(10.0, args.budget - 15), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    outcomes = re.findall(r"^(tests/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", text, re.MULTILINE)
    counts = {kind.lower(): sum(o == kind for _, o in outcomes) for kind in ("PASSED", "FAILED", "ERROR", "SKIPPED")}
    record.row({"selection": " ".join(selection), "tests": len(outcomes), **counts,
                "finished": code is not None, "exit": code})
    if code is None:
        record.note(f"pytest stopped at the time limit after {len(outcomes)} tests; the others did not run")
    summary = text[text.rfind("short test summary info"):] if "short test summary info" in text else ""
    for name, outcome in outcomes:
        if outcome in ("FAILED", "ERROR"):
            lines = [line for line in summary.splitlines() if name in line]
            record.failure(name.split("::", 1)[1], "test", f"{name} {outcome}\n{chr(10).join(lines)}\n\nfull output: "
                                                          f"{log.name}")


def step_parity(args: argparse.Namespace, record: StepRecord) -> None:
    import precision as bench
    from media import panning_clip

    from vfe_hub.evaluation.agreement import agreement

    _exact_float32()
    torch.set_num_threads(os.cpu_count() or 1)
    images = panning_clip(n=2, size=(120, 160) if args.quick else (480, 640))

    def work(name: str) -> None:
        model = bench.decisive_model(name, "cpu")
        if not args.quick:
            _moderate(model)
        started = time.perf_counter()
        on_cpu = model.predict(images)
        cpu_s = time.perf_counter() - started
        moved = copy.deepcopy(model).to(args.device)
        moved.predict(images[:1])  # warm-up (kernel selection)
        _synchronize(args.device)
        started = time.perf_counter()
        on_device = moved.predict(images)
        _synchronize(args.device)
        record.row({"model": name, **agreement(on_cpu, on_device), "cpu_s": cpu_s,
                    "device_s": time.perf_counter() - started})

    _per_model(record, args.models, work)


def step_precision(args: argparse.Namespace, record: StepRecord) -> None:
    import precision as bench

    _exact_float32()
    images = bench.frames()[:1] if args.quick else bench.frames()

    def work(name: str) -> None:
        model = bench.decisive_model(name, args.device)
        for dtype in args.dtypes:
            try:
                figures = bench.measure(model, getattr(torch, dtype), images)
                record.row({"model": name, "dtype": dtype, **figures})
            except Exception as e:
                if _lost_context(e):
                    raise  # recorded by _per_model, which ends the process
                record.failure(name, dtype, e)

    _per_model(record, args.models, work)
    record.note("To show these figures in the model cards: python benchmarks/precision.py --device "
                f"{args.device} --dtype <float16|bfloat16> --write, then regenerate the cards.")


def step_speed(args: argparse.Namespace, record: StepRecord) -> None:
    import speed

    from media import write_video
    from small_models import small_model
    from vfe_hub.io import open_frames
    from vfe_hub.registry import get_spec

    count, size = (2, (96, 128)) if args.quick else (16, (720, 1280))
    clip = speed.frames(count, *size)
    batch_sizes = (1, 2) if args.quick else (1, 4, 16)
    try:
        video = write_video(Path(tempfile.mkdtemp(dir=args.out)) / "clip.mp4", [f.image for f in clip])
        source = lambda: open_frames(str(video))  # noqa: E731
        decoding = "decoded from an H.264 file in the engine's background thread"
    except Exception as e:  # no encoder: time the frames in memory
        source, decoding = None, f"in memory (no video could be written: {type(e).__name__}: {e})"
    networks = ("the test suite's small models (tests/small_models.py), resizing to a short side of 192 px"
                if args.quick else "the registry's configurations")
    record.note(f"{count} frames of {size[0]}x{size[1]} {decoding}; TF32 at PyTorch's defaults (matmul "
                f"{torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32}); random weights, "
                f"{networks} (GTR keeps all its proposals: random weights score none above its threshold).")

    def work(name: str) -> None:
        model = (small_model(name) if args.quick else get_spec(name).build()).to(args.device)
        if hasattr(model, "asso_thresh"):  # GTR: random weights score no proposal above 0.4; keep all 300
            model.asso_thresh = 0.0
        for dtype in ("float32", *args.dtypes):
            model.dtype = getattr(torch, dtype)
            for bs in batch_sizes:
                try:
                    fps, ms, peak = speed.measure(model, clip, bs, source=source)
                except torch.OutOfMemoryError as e:
                    record.failure(name, f"{dtype}-batch{bs}", e)
                    torch.cuda.empty_cache()
                    continue
                row = {"model": name, "dtype": dtype, "batch": bs, "frames_per_s": fps, "ms_per_batch": ms,
                       "peak_mib": peak}
                if name.startswith("mamba"):
                    row["vs_reported"] = fps / MAMBA_REPORTED_FPS
                record.row(row)

    _per_model(record, args.models, work)
    record.note(f"vs_reported: MAMBA's frames/s over {MAMBA_REPORTED_FPS} (the authors' 2.0 release, one GH200).")


def step_compile(args: argparse.Namespace, record: StepRecord) -> None:
    import precision as bench
    from media import panning_clip

    from vfe_hub.evaluation.agreement import agreement

    _exact_float32()
    images = panning_clip(n=3, size=(120, 160) if args.quick else (480, 640))
    models = [m for m in args.models if m in COMPILED] or list(COMPILED)

    def timed(model) -> tuple[list, float, float]:
        """Results on ``images``, seconds of a first call on one frame (compilation happens there), seconds per
        frame after it."""
        started = time.perf_counter()
        model.predict(images[:1])
        _synchronize(args.device)
        first = time.perf_counter() - started
        started = time.perf_counter()
        results = model.predict(images)
        _synchronize(args.device)
        return results, first, (time.perf_counter() - started) / len(images)

    def work(name: str) -> None:
        model = bench.decisive_model(name, args.device)
        if not args.quick:
            _moderate(model)
        eager, _, eager_s = timed(model)
        model.backbone = torch.compile(model.backbone, backend=args.compile_backend)
        model.neck = torch.compile(model.neck, backend=args.compile_backend)
        compiled, first_s, compiled_s = timed(model)
        record.row({"model": name, "backend": args.compile_backend, "eager_s_per_frame": eager_s,
                    "compiled_s_per_frame": compiled_s, "speedup": eager_s / compiled_s, "first_call_s": first_s,
                    **agreement(eager, compiled)})

    _per_model(record, models, work)


STEP_FUNCTIONS = {"tests": step_tests, "parity": step_parity, "precision": step_precision, "speed": step_speed,
                  "compile": step_compile}


# ------------------------------------------------------------------------------------------------ the report


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _run(command: list[str], timeout: float, **kwargs: Any) -> int | None:
    """Run ``command`` in a new process group; its exit code, or None when ``timeout`` seconds passed (the whole
    group is then killed: no grandchild keeps running)."""
    process = subprocess.Popen(command, start_new_session=True, **kwargs)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def _pythonpath() -> str:
    return os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def header(device: str) -> dict[str, Any]:
    """torch, CUDA, cuDNN, the driver, the GPU and the host."""
    info: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": None, "driver": None,
                            "gpu": None, "device": device, "python": platform.python_version(),
                            "host_cpus": os.cpu_count(), "date": datetime.datetime.now().isoformat(timespec="seconds")}
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpu"] = torch.cuda.get_device_name()
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=30).stdout.strip() or None
        except (OSError, subprocess.SubprocessError) as e:
            info["driver"] = f"unknown ({type(e).__name__})"
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                        timeout=30).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["commit"] = None
    return info


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def render(info: dict[str, Any], steps: dict[str, dict[str, Any]]) -> str:
    """``report.md``: the header, then per step its status, a table of its rows, its notes and failures."""
    lines = ["# vfe_hub GPU check", "", f"torch {info['torch']}, CUDA {info['cuda']}, cuDNN {info['cudnn']}, driver "
             f"{info['driver']}, GPU {info['gpu']}; device {info['device']}, {info['host_cpus']} host CPUs, Python "
             f"{info['python']}, commit {info['commit']}, {info['date']}.", ""]
    for step, data in steps.items():
        lines += [f"## {step}", "", f"Status: {data['status']} ({data['seconds']:.0f} s).", ""]
        if data["rows"]:
            columns = list(dict.fromkeys(k for row in data["rows"] for k in row))
            lines += ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
            lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in data["rows"]]
            lines.append("")
        lines += [f"- {note}" for note in data["notes"]]
        lines += [f"- FAILED {f['model']} ({f['what']}): {f['error']} (traceback: `{f['traceback']}`)"
                  for f in data["failures"]]
        lines.append("")
    return "\n".join(lines)


def run_step(args: argparse.Namespace, step: str, deadline: float) -> dict[str, Any]:
    """Run ``step`` in child processes until its models are done or its time is up; its record and status."""
    started = time.perf_counter()
    log = args.out / f"{step}.log"
    status = "ok"
    while True:
        left = min(args.budget_for(step) - (time.perf_counter() - started), deadline - time.perf_counter())
        if left <= 5:
            status = "timed out"
            break
        command = [sys.executable, str(Path(__file__).resolve()), "--step", step, "--out", str(args.out),
                   "--device", args.device, "--models", *args.models, "--dtypes", *args.dtypes,
                   "--compile-backend", args.compile_backend, "--budget", str(int(left))]
        command += ["--quick"] if args.quick else []
        command += ["--tests", args.tests] if args.tests else []
        with open(log, "a") as out:
            code = _run(command, left, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                        env={**os.environ, "PYTHONPATH": _pythonpath()})
        if code is None:
            status = f"timed out after {args.budget_for(step):.0f} s (see {log.name})"
            break
        record = StepRecord(args.out, step).data
        per_model = step in ("parity", "precision", "speed")
        missing = [m for m in args.models if m not in record["done"]] if per_model else []
        if code == 0 or not missing:
            status = "ok" if code == 0 else f"process exit {code} (see {log.name})"
            break
        StepRecord(args.out, step).note(f"the step process ended (exit {code}); continuing with {', '.join(missing)}")
    data = StepRecord(args.out, step).data
    if data["failures"] and status == "ok":
        status = f"{len(data['failures'])} failure(s)"
    return {**data, "status": status, "seconds": time.perf_counter() - started}


def main() -> None:
    from precision import architectures

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, help="output folder (default gpu_check_<date>_<time>)")
    parser.add_argument("--models", nargs="*", help="architectures (default: every one)")
    parser.add_argument("--dtypes", nargs="*", choices=["float16", "bfloat16"],
                        help="half dtypes (default float16 bfloat16 on CUDA, bfloat16 on the CPU)")
    parser.add_argument("--steps", nargs="*", choices=STEPS, default=list(STEPS))
    parser.add_argument("--tests", help=f"pytest arguments of the tests step, one string (default: "
                                        f"{' '.join(DEVICE_TESTS)})")
    parser.add_argument("--quick", action="store_true", help="small frames and few of them (the suite's CPU run)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: no codegen)")
    parser.add_argument("--budget", type=float, help="seconds for each step (default: BUDGET per step)")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # a child process runs one step
    args = parser.parse_args()
    args.models = args.models or architectures()
    args.dtypes = args.dtypes or (["float16", "bfloat16"] if args.device.startswith("cuda") else ["bfloat16"])
    args.budget_for = lambda step: args.budget or BUDGET[step]
    if args.step:
        args.out.mkdir(parents=True, exist_ok=True)
        STEP_FUNCTIONS[args.step](args, StepRecord(args.out, args.step))
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here; use --device cpu for the CPU run.")
    args.out = args.out or Path(f"gpu_check_{datetime.datetime.now():%Y%m%d_%H%M%S}")
    args.out.mkdir(parents=True, exist_ok=True)
    info = header(args.device)
    deadline = time.perf_counter() + sum(args.budget_for(step) for step in args.steps) + 30
    steps: dict[str, dict[str, Any]] = {}
    for step in args.steps:
        print(f"{step} ...", flush=True)
        steps[step] = run_step(args, step, deadline)
        report = {"header": info, "steps": steps}
        (args.out / "report.json").write_text(json.dumps(report, indent=1))
        (args.out / "report.md").write_text(render(info, steps))
        print(f"{step}: {steps[step]['status']} ({steps[step]['seconds']:.0f} s)", flush=True)
    print(f"\n{args.out / 'report.md'}")
    if any(step["status"] != "ok" for step in steps.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
