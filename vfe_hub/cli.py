"""The vfe-hub command line: demo, list, info, predict, track, evaluate, convert, publish, cache.

Errors print "vfe-hub: error: ..." on stderr, one line unless the message has more to say (e.g. the keys a
checkpoint lacks), and exit with status 1 (2 for a wrong command line, 130 on Ctrl-C); --debug shows the
traceback instead. Inputs are checked before a model is loaded. Progress
bars appear only on a terminal (--progress / --quiet override); -v shows vfe_hub's INFO messages.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import sys
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import VfeHubError
from .registry import DATASET_ROOTS, PIPELINES, TRACKING_TASKS, get_spec, list_models, model_info

if TYPE_CHECKING:  # the commands that run a model import PyTorch when they run: --help, list, info and cache do not
    from .evaluation.runner import Benchmark
    from .models.base import Detector
    from .results_writer import ResultsWriter

DEMO_MODEL = "mamba_r101_dc5_vid"
DEMO_CLIP = "demo_clip.mp4"


class _StderrHandler(logging.StreamHandler):
    """A logging handler that writes to whatever ``sys.stderr`` is when a message comes."""

    stream = property(lambda self: sys.stderr, lambda self, value: None)


_LOG_HANDLER = _StderrHandler()
_LOG_HANDLER.setFormatter(logging.Formatter("vfe-hub: %(levelname)s: %(message)s"))


# ------------------------------------------------------------------------------------------------ commands

def _list(args: argparse.Namespace) -> None:
    for name in list_models(args.pattern):
        spec = get_spec(name)
        print(f"{name:28s} {spec.task:26s} {spec.summary.split(';')[0]}")


def _info(args: argparse.Namespace) -> None:
    print(json.dumps(model_info(args.name), indent=2))


def _load(args: argparse.Namespace, name: str | None) -> Detector:
    """``api.load`` with the command line's options, for one run or a shard; ``device`` only when given (so the
    library chooses) or, under torchrun, this process's GPU (:func:`vfe_hub.sharding.rank_device`)."""
    from . import api
    from .sharding import rank_device

    device = rank_device(args.device)
    options = {"device": device} if device else {}
    return api.load(name, dtype=args.dtype, weights=args.weights, progress=args.progress, pipeline=args.pipeline,
                    **options)


def _predict_to_files(args: argparse.Namespace, model: Detector, inputs: list[str],
                      output: str | os.PathLike[str] | None, save_dir: Path | None) -> ResultsWriter:
    """Run ``model`` on ``inputs``, streaming each frame's results to ``output`` (see
    :mod:`vfe_hub.results_writer`) and drawing them into ``save_dir``."""
    from .io import open_frames
    from .results_writer import ResultsWriter, provenance

    options = _predict_options(args)
    detections = model.predict(inputs, batch_size=args.batch_size, stream=True, progress=args.progress,
                               **options)
    # Results come in input order; drawing takes each frame from one more sequential decode (plot() without an
    # image would re-read a video from its start for every frame).
    frames = open_frames(inputs) if save_dir else itertools.repeat(None)
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
    with ResultsWriter(output, provenance(model, {**model.predict_options, **options})) as writer:
        for det, frame in zip(detections, frames):
            writer.write(det)
            if frame is not None:
                name = f"{Path(det.frame.name.replace('#', '_')).stem}_{det.frame.index:06d}.jpg"
                det.plot(frame.image, score_thr=args.score_thr).save(save_dir / name)
    return writer


def _predict(args: argparse.Namespace) -> None:
    from .io import open_frames

    if args.frame_list:
        _predict_frame_list(args)
        return
    open_frames(args.inputs)  # a missing or unreadable input fails here, before the model is loaded
    save_dir = Path(args.save_dir) if args.save_dir else None
    writer = _predict_to_files(args, _load(args, args.name), args.inputs, args.output, save_dir)
    if args.output:
        print(f"{writer.frames} frames, {writer.detections} detections -> {args.output}", file=sys.stderr)


def _predict_frame_list(args: argparse.Namespace) -> None:
    """``--frame-list``: one JSON per frame into ``--per-frame-dir`` (models with ``write_tao_detections``)."""
    if len(args.inputs) != 1 or not args.per_frame_dir:
        raise VfeHubError("--frame-list takes one input, the folder the listed frame paths are relative to, and "
                          "--per-frame-dir, the folder of the per-frame JSON files.")
    model = _load(args, args.name)
    if not hasattr(model, "write_tao_detections"):
        raise VfeHubError(f"{args.name} writes no per-frame TAO detections; use -o FILE for a JSON lines file.")
    written = model.write_tao_detections(args.frame_list, args.inputs[0], args.per_frame_dir,
                                         batch_size=args.batch_size, progress=args.progress)
    print(f"{written} frames written to {args.per_frame_dir} (frames already there were skipped)", file=sys.stderr)


def _track(args: argparse.Namespace) -> None:
    from . import hub
    from .io import open_frames
    from .video_writer import VideoWriter, frame_rate

    open_frames([args.video])  # a missing or unreadable video fails here, before the model is loaded
    if get_spec(args.name).task not in TRACKING_TASKS:
        trackers = list_models(task="tracking")
        raise VfeHubError(f"{args.name} detects but does not track; use a tracker ({', '.join(trackers)}) or "
                          f"'vfe-hub predict {args.name} ...'.")
    rate = args.source_fps or (frame_rate(args.video) if os.path.isfile(args.video) else None)
    if args.fps and rate is None:
        raise VfeHubError(f"--fps {args.fps} needs the frame rate of {args.video}, a folder of frames, which has "
                          f"none: give it with --source-fps (e.g. --source-fps 30 --fps {args.fps}), or leave --fps "
                          f"out to run every frame.")
    stride = max(round(rate / args.fps), 1) if args.fps else 1
    model = _load(args, args.name)
    options = {"protocol": args.protocol} if args.protocol else {}
    detections = model.predict([args.video], batch_size=args.batch_size, stream=True, progress=args.progress,
                               frame_stride=stride, **options)
    records: list[dict] = []
    margin = None  # amodal boxes: one canvas size for the whole video, a quarter of the frame more on each side
    frames = (f for f in open_frames([args.video]) if f.index % stride == 0)
    drawn = VideoWriter(args.save_video, (rate or 30) / stride) if args.save_video else None
    failed: Exception | None = None  # the drawing's error: the tracks are computed and written all the same
    try:
        for det in detections:
            records += det.to_json(video_id=args.video_id)
            if drawn is None:
                continue
            try:
                if det.amodal_boxes is not None and margin is None:
                    margin = max(det.frame.size) // 4
                drawn.write(det.plot(next(frames).image, score_thr=args.score_thr, margin=margin))
            except Exception as error:  # noqa: BLE001 - reported once the tracks are written
                drawn.close(keep=False)
                drawn, failed = None, error
    except BaseException:
        if drawn is not None:
            drawn.close(keep=False)
        raise
    hub.atomic_write(Path(args.output), lambda tmp: tmp.write_text(json.dumps(records), encoding="utf-8"))
    summary = f"{len({r['track_id'] for r in records})} tracks, {len(records)} boxes -> {args.output}"
    if drawn is not None:
        try:
            drawn.close()
        except Exception as error:  # noqa: BLE001 - reported below
            failed = error
    if failed is not None:
        raise VfeHubError(f"{summary}; the drawn video {args.save_video} was not written: "
                          f"{_error_text(failed)}") from failed
    print(summary + (f"; drawn video -> {args.save_video}" if args.save_video else ""), file=sys.stderr)


def _demo(args: argparse.Namespace) -> None:
    out = Path(args.out_dir)
    with resources.as_file(resources.files(__package__) / "assets" / DEMO_CLIP) as clip:
        writer = _predict_to_files(args, _load(args, args.model), [str(clip)], out / "results.json", out / "frames")
    print(f"{args.model} on {DEMO_CLIP}: {writer.frames} frames, {writer.detections} detections\n"
          f"  results: {out / 'results.json'}\n  drawn frames: {out / 'frames'}{os.sep}")


def _evaluate(args: argparse.Namespace) -> None:
    bench = _benchmark(args)  # a missing file or an unreachable data host fails before the model
    metrics = _load(args, args.name).evaluate(bench, batch_size=args.batch_size, progress=args.progress)
    print(json.dumps(metrics, indent=2))


def _sharded(run):
    """``run``, unless --shard, --out-dir, --merge or a torchrun environment hand the command to vfe_hub.sharding."""
    def dispatch(args: argparse.Namespace) -> None:
        from . import sharding

        merge = getattr(args, "merge", None)
        if args.command == "evaluate" and not merge and None in (args.name, args.dataset, args.root):
            raise VfeHubError("vfe-hub evaluate needs NAME DATASET --root DIR, or --merge DIR (a sharded run's "
                              "folder).")
        if not (args.shard or args.out_dir or merge or sharding.env_shard()):
            return run(args)
        metrics = _run_sharded(args)
        if metrics:
            print(json.dumps(metrics, indent=2))
    return dispatch


def _run_sharded(args: argparse.Namespace) -> dict[str, float] | None:
    """The sharded form of ``predict`` / ``evaluate`` (``--shard``, ``--out-dir``, ``--merge``, or a torchrun
    environment; :mod:`vfe_hub.sharding`), with the model of one run: says on stderr what was written where;
    returns the metrics when this process scored the run."""
    from . import sharding
    from .io import open_frames

    if getattr(args, "merge", None):
        return _report_merge(args.merge, args.progress)
    from_env = args.shard is None
    shard = sharding.parse_shard(args.shard) if args.shard else sharding.env_shard() or (0, 1)
    if args.out_dir is None:
        raise sharding.ShardError(f"a sharded {args.command} needs --out-dir DIR, a folder every shard can write "
                                  f"to.")
    if args.command == "predict":
        given = [flag for flag, value in (("--output", args.output), ("--save-dir", args.save_dir),
                                          ("--frame-list", args.frame_list), ("--per-frame-dir", args.per_frame_dir))
                 if value]
        if given:
            raise sharding.ShardError(f"a sharded predict writes {sharding.RESULTS} into --out-dir; leave out "
                                      f"{', '.join(given)}.")
        open_frames(args.inputs)  # a missing or unreadable input fails here, before the model is loaded
    bench = _benchmark(args) if args.command == "evaluate" else None  # the data first: loading takes longer
    model = _load(args, args.name)
    common = {"shard": shard, "out_dir": args.out_dir, "batch_size": args.batch_size, "progress": args.progress}
    if args.command == "predict":
        ran = sharding.predict_shard(model, args.inputs, **common, **_predict_options(args))
    else:
        ran = sharding.evaluate_shard(model, bench, **common)
    label = f"shard {shard[0]}/{shard[1]}"
    if ran.skipped:
        print(f"{label} was complete already in {args.out_dir} ({ran.items} frames in {ran.file}): nothing ran; "
              f"delete {ran.name}.done and {ran.file.name} to run it again", file=sys.stderr)
    else:
        print(f"{label}: {ran.items} frames -> {ran.file}", file=sys.stderr)
    if sharding.merges(shard, from_env):
        sharding.wait_for_shards(args.out_dir)
        return _report_merge(args.out_dir, args.progress)
    if not from_env:  # under torchrun, rank 0 merges
        print(f"when every shard is complete, merge them: vfe-hub evaluate --merge {args.out_dir}", file=sys.stderr)
    return None


def _report_merge(out_dir: str, progress: bool | None) -> dict[str, float] | None:
    """Merge the sharded run in ``out_dir`` and say what was written where; the metrics of an evaluation."""
    from . import sharding

    merged = sharding.merge_folder(out_dir, progress=progress)
    written = Path(out_dir) / sharding.RESULTS
    also = f", metrics -> {Path(out_dir) / sharding.METRICS}" if merged.metrics else ""
    print(f"{sharding.read_manifest(out_dir)['shards']} shard(s) merged: {merged.frames} frames, {merged.detections} "
          f"detections -> {written}{also}", file=sys.stderr)
    return merged.metrics or None


def _predict_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``predict`` options of the command line, when given (``--protocol``, ``--no-masks``): one run or
    sharded, they reach the model the same way."""
    options: dict[str, Any] = {"protocol": args.protocol} if args.protocol else {}
    if args.no_masks:
        options["masks"] = False
    return options


def _benchmark(args: argparse.Namespace) -> Benchmark:
    """The benchmark of ``vfe-hub evaluate``, read and checked (:func:`vfe_hub.evaluation.runner.benchmark`)."""
    from .evaluation.runner import benchmark

    return benchmark(args.dataset, root=args.root, ann_file=args.ann_file, limit=args.limit, progress=args.progress,
                     **_dataset_options(args))


def _dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """The evaluate options that only some datasets take, when given (``--fps``, ``--metrics``: TAO; ``--strict``:
    LVIS, TAO, TAO-Amodal); one given for a dataset that does not take it is refused, naming those that do."""
    from .evaluation.runner import dataset_name, dataset_parameters

    given = {"fps": args.fps, "metrics": args.metrics.split(",") if args.metrics else None, "strict": args.strict}
    options = {k: v for k, v in given.items() if v}
    takes = dataset_parameters()
    for key in options:
        if key not in takes[dataset_name(args.dataset)]:
            which = [f"{name}_val" for name, parameters in takes.items() if key in parameters]
            raise VfeHubError(f"--{key} is not an option of {args.dataset}: only {', '.join(which)} take it.")
    return options


def _dropped_summary(keys: list[str]) -> str:
    """Dropped keys grouped: ``*.num_batches_tracked`` and the first three name parts of the others."""
    groups: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        label = "*.num_batches_tracked" if parts[-1] == "num_batches_tracked" else (
            ".".join(parts[:3]) + ".*" if len(parts) > 3 else key)
        groups[label] = groups.get(label, 0) + 1
    return ", ".join(f"{label} ({n})" for label, n in groups.items())


def _convert(args: argparse.Namespace) -> None:
    from . import cards, hub
    from .weights import convert_checkpoint, model_dir_config

    spec = get_spec(args.name)
    checkpoint = Path(args.checkpoint)
    inputs = {k: getattr(args, k) for k in ("embeddings", "categories", "contexts", "sorted_ids", "fp16_mask", "groups")
              if getattr(args, k)}
    converted = convert_checkpoint(spec, checkpoint, **inputs)
    config = model_dir_config(spec, checkpoint, converted)
    digest = hub.write_model_dir(Path(args.out_dir), converted.state, config, cards.render(spec), converted.files)
    extra = "".join(f", {name}" for name in converted.files)
    print(f"{args.out_dir}: {len(converted.state)} tensors, model.safetensors sha256 {digest}{extra}")
    if converted.dropped:
        print(f"dropped on purpose: {_dropped_summary(converted.dropped)}")


def _publish(args: argparse.Namespace) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    from . import hub
    from .progress import show_progress

    folder = Path(args.folder)
    config, _ = hub.read_model_dir(folder)  # refuse to upload a folder that does not load
    files = [hub.CONFIG_NAME, hub.WEIGHTS_NAME, "README.md", *config.get("files", {})]  # not whatever else is there
    hf = HfApi()
    hf.create_repo(args.repo_id, private=args.private, exist_ok=True)
    silence = not show_progress(args.progress) and not are_progress_bars_disabled()  # huggingface_hub's upload bars
    if silence:
        disable_progress_bars()
    try:
        commit = hf.upload_folder(repo_id=args.repo_id, folder_path=folder, commit_message=args.message,
                                  allow_patterns=files)
    finally:
        if silence:
            enable_progress_bars()
    print(f"uploaded {folder} to {args.repo_id} at revision {commit.oid}")


def _cache(args: argparse.Namespace) -> None:
    from . import cache

    if args.action == "prune" and not (args.names or args.all):
        raise VfeHubError("vfe-hub cache prune needs model names, or --all to remove everything vfe_hub cached.")
    files = cache.entries(args.names)
    if args.action == "list":
        for f in files:
            print(f"{f.kind:10s} {cache.human_size(f.size):>9s}  {','.join(f.models) or '-':28s} {f.path}")
        print(f"{len(files)} files, {cache.human_size(sum(f.size for f in files))}")
    elif args.action == "verify":
        checked = cache.verify(files)
        for f, ok in checked:
            print(f"{'ok' if ok else 'DAMAGED' if ok is False else 'unchecked':9s} {f.kind:10s} {f.path}")
        damaged = [f for f, ok in checked if ok is False]
        if damaged:
            raise VfeHubError(f"{len(damaged)} damaged file(s); remove them with `vfe-hub cache prune` (names or "
                              f"--all) and load again to download or convert them anew.")
    else:
        for f in files:
            print(f"removed {cache.human_size(f.size):>9s}  {f.path}")
        print(f"freed {cache.human_size(cache.prune(files))} in {len(files)} files")


# ------------------------------------------------------------------------------------------------ arguments

class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``vfe-hub: error: ...`` and where to find the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"vfe-hub: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def _existing_folder(text: str) -> str:
    if not Path(text).expanduser().is_dir():
        what = "is a file, not a folder" if Path(text).expanduser().exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}; pass the dataset's root folder")
    return text


def _shard_options(s: argparse.ArgumentParser) -> None:
    """Options of the commands that can run sharded (see vfe_hub.sharding)."""
    s.add_argument("--shard", metavar="I/N", help="run only shard I of N (0 <= I < N) into --out-dir")
    s.add_argument("--out-dir", help="folder of the shards' results (shared by all shards); resumable")


def _run_options(s: argparse.ArgumentParser) -> None:
    """Options of the commands that run a model: device, dtype, batch size, progress."""
    s.add_argument("--device", help="e.g. cuda, cuda:1, cpu (default: vfe_hub.load's choice, CUDA when available)")
    s.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"],
                   help="float16/bfloat16 run under autocast (default: float32)")
    s.add_argument("--batch-size", type=_positive_int, default=1, help="frames per forward pass (default: 1)")
    s.add_argument("--pipeline", default="fast", choices=PIPELINES,
                   help="original: the original's resize library and NMS arithmetic, bit for bit (default: fast)")
    _progress_options(s)


def _progress_options(s: argparse.ArgumentParser) -> None:
    """--progress / --quiet; neither: bars only on a terminal."""
    s.add_argument("--progress", action="store_true", default=None, help="always show progress bars")
    s.add_argument("--quiet", "-q", action="store_false", dest="progress", help="never show progress bars")
    s.set_defaults(progress=None)


def _common(parent: argparse.ArgumentParser, default: Any) -> None:
    parent.add_argument("--debug", action="store_true", default=default, help="show the traceback of an error")
    parent.add_argument("-v", "--verbose", action="store_true", default=default, help="show vfe_hub's INFO messages")


OUTPUT_HELP = ("write results here, frame by frame (default: JSON Lines on stdout). *.jsonl: JSON Lines, a "
               "provenance line then one line per frame (image_id, name, sequence, index, size, detections); any "
               "other name: one JSON document {provenance, images, results}, results in COCO format. The file is "
               "written as FILE.partial and renamed when complete: after a crash FILE.partial keeps the finished "
               "frames")


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="vfe-hub", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="Example: vfe-hub demo    (then: vfe-hub COMMAND --help)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(p, False)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, argparse.SUPPRESS)  # also after the command; SUPPRESS keeps the value given before it
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Any, summary: str, example: str,
                description: str | None = None) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=summary, description=description or summary, parents=[common],
                           epilog=f"Example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
        s.set_defaults(run=run)
        return s

    s = command("demo", _demo, "run a video detector on a short clip shipped with vfe_hub and save what it sees",
                "vfe-hub demo --device cuda --out-dir demo/",
                f"Load a model from the Hugging Face Hub (default {DEMO_MODEL}), run it on a short clip shipped with "
                "vfe_hub and write OUT_DIR/results.json (see 'vfe-hub predict --help') and the frames with their "
                "detections drawn, OUT_DIR/frames/*.jpg.")
    s.add_argument("--model", default=DEMO_MODEL, help=f"a registered model name (default: {DEMO_MODEL})")
    s.add_argument("--out-dir", default="vfe_hub_demo", help="output folder (default: ./vfe_hub_demo)")
    s.add_argument("--score-thr", type=float, default=0.3, help="drawing threshold (default: 0.3)")
    s.add_argument("--weights", help="local vfe_hub folder, .safetensors or original checkpoint of --model (e.g. "
                                     "when the Hub cannot be reached)")
    s.set_defaults(protocol=None, no_masks=False)
    _run_options(s)

    s = command("list", _list, "registered model names", "vfe-hub list '*vid*'")
    s.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. '*vid*'")

    s = command("info", _info, "a model's registry facts as JSON", "vfe-hub info mamba_r101_dc5_vid")
    s.add_argument("name")

    s = command("predict", _predict, "detect objects in images, folders, globs or videos",
                "vfe-hub predict mamba_r101_dc5_vid clip.mp4 -o results.jsonl --save-dir drawn/")
    s.add_argument("name", help="a registered model name")
    s.add_argument("inputs", nargs="+", help="images, folders, globs or videos")
    s.add_argument("--weights", help="local vfe_hub folder, .safetensors or original checkpoint")
    s.add_argument("--protocol", choices=["streaming", "paper", "lvis", "tao"],
                   help="one of the model's protocols (model card): streaming/paper for video models, lvis/tao "
                        "for BAGS")
    s.add_argument("--no-masks", action="store_true", help="boxes only, for the models that also segment (faster)")
    s.add_argument("--output", "-o", metavar="FILE", help=OUTPUT_HELP)
    s.add_argument("--save-dir", help="draw detections on the frames into this folder")
    s.add_argument("--score-thr", type=float, default=0.3, help="drawing threshold (default: 0.3)")
    s.add_argument("--frame-list", help="BAGS, TAO detections: a text file of frame paths relative to the one INPUT "
                                        "folder (e.g. validation_img_list.txt); with --per-frame-dir, writes one "
                                        "JSON per frame and skips frames already written (restartable)")
    s.add_argument("--per-frame-dir", help="with --frame-list: the folder of the per-frame JSON files")
    _run_options(s)
    _shard_options(s)
    s.set_defaults(run=_sharded(_predict))

    s = command("track", _track, "track objects through a video and write TAO results",
                "vfe-hub track gtr_dr2101_tao clip.mp4 -o tracks.json --save-video drawn.mp4",
                "Run a tracker over one video (or a folder of frames) and write its tracks as a TAO results JSON "
                "list: {image_id, video_id, track_id, category_id, bbox [x, y, w, h], score} per box, image_id "
                "counting the frames from 1, track_id as in Detections.to_json (unique over videos). "
                "--save-video writes the frames with each track drawn in its own colour.")
    s.add_argument("name", help="a registered tracker")
    s.add_argument("video", help="a video file or a folder of frames")
    s.add_argument("--output", "-o", required=True, metavar="FILE", help="the TAO results JSON to write")
    s.add_argument("--save-video", metavar="FILE", help="also write the video with the tracks drawn (.mp4, .mkv, ...)")
    s.add_argument("--video-id", type=int, default=1, help="the video id of the records (default: 1)")
    s.add_argument("--fps", type=_positive_int, help="run about N frames per second (every round(source fps / "
                                                     "N)-th frame; image ids stay the frame numbers, 1-based); "
                                                     "default: every frame")
    s.add_argument("--source-fps", type=_positive_float, metavar="R",
                   help="the frame rate of the input: a folder of frames has none (needed with --fps; the drawn "
                        "video's rate); a video file's is read from it")
    s.add_argument("--weights", help="local vfe_hub folder, .safetensors or original checkpoint")
    s.add_argument("--protocol", choices=["streaming", "paper"], help="default: the model's (streaming)")
    s.add_argument("--score-thr", type=float, default=0.3, help="drawing threshold (default: 0.3)")
    _run_options(s)

    datasets = [*DATASET_ROOTS, *(f"{d}_val" for d in DATASET_ROOTS)]
    s = command("evaluate", _evaluate, "score a model on its benchmark with the official metric",
                "vfe-hub evaluate mamba_r101_dc5_vid imagenet_vid --root data/ILSVRC2015 --limit 10")
    s.add_argument("name", nargs="?", help="a registered model name")
    s.add_argument("dataset", nargs="?", choices=datasets, metavar="dataset", help=f"one of {', '.join(datasets)}")
    s.add_argument("--root", type=_existing_folder, help="dataset root folder (required unless --merge)")
    s.add_argument("--merge", metavar="DIR", help="merge the finished shards of DIR and score them (no model)")
    s.add_argument("--weights", help="local vfe_hub folder, .safetensors or original checkpoint")
    s.add_argument("--ann-file", help="annotation file (default: the dataset's usual one under --root)")
    s.add_argument("--limit", type=_positive_int, help="evaluate only the first N videos/images")
    s.add_argument("--fps", type=_positive_int, help="TAO: run about N frames per second between the annotated "
                                                     "frames (every frame of the videos under --root), score the "
                                                     "annotated ones")
    s.add_argument("--strict", action="store_true", help="LVIS, TAO, TAO-Amodal: refuse results whose category is "
                                                         "not in the annotation file (default: like the official "
                                                         "toolkits, count them toward the cap per frame, then leave "
                                                         "them out, with a warning)")
    s.add_argument("--metrics", help="TAO: the metrics of the one run, comma-separated: track_map, teta (default: "
                                     "both)")
    _run_options(s)
    _shard_options(s)
    s.set_defaults(run=_sharded(_evaluate))

    s = command("convert", _convert,
                "original checkpoint -> vfe_hub folder (model.safetensors, config.json, README.md)",
                "vfe-hub convert mamba_r101_dc5_vid epoch_6_model.pth out/",
                "Convert an original release strictly into a vfe_hub folder. Checkpoints are read without running code "
                "of the file: torch.load(weights_only=True), with inert placeholders for the Python objects a "
                "checkpoint's metadata may hold (DetPro's config).")
    s.add_argument("name")
    s.add_argument("checkpoint", help="the original checkpoint")
    s.add_argument("out_dir")
    s.add_argument("--embeddings", help="DetPro: the class embeddings file (iou_neg5_ens.pth)")
    s.add_argument("--categories", help="DetPro: an LVIS v1 annotation file (lvis_v1_val.json); only its categories "
                                        "are read")
    s.add_argument("--contexts", nargs="+", help="DetPro (optional): learned prompt contexts (*_prompt.pth), used to "
                                                 "embed custom vocabularies with DetPro's prompts")
    s.add_argument("--sorted-ids", help="LST: the frequency-sorted LVIS v0.5 category ids of its classes "
                                        "(lvis_sorted_id_all.json)")
    s.add_argument("--fp16-mask", action="store_true", help="LST (optional): store MLP_mask (about 630 MB in float32) "
                                                            "in float16; see the model card for the output difference")
    s.add_argument("--groups", help="BAGS: a folder with label2binlabel.pt and pred_slice_with0.pt, or "
                                    "lvis_v0.5_train.json (groups from its instance counts)")

    s = command("publish", _publish, "upload a vfe_hub folder to a Hugging Face Hub repo",
                "vfe-hub publish out/ you/mamba_r101_dc5_vid")
    s.add_argument("folder")
    s.add_argument("repo_id")
    s.add_argument("--private", action="store_true")
    s.add_argument("--message", default="Upload vfe_hub weights")
    _progress_options(s)

    s = command("cache", _cache, "list, verify or remove what vfe_hub downloaded and converted",
                "vfe-hub cache list\n  vfe-hub cache verify mamba_r101_dc5_vid\n  vfe-hub cache prune --all",
                "The files vfe_hub keeps: converted weights, originals from Google Drive, fetched data files and "
                "vocabulary embeddings (in "
                "VFE_HUB_CACHE, default ~/.cache/vfe_hub) and the registry's original files in the Hugging Face "
                "cache (HF_HUB_CACHE; other files there are left alone). verify hashes each file against its "
                "recorded or pinned sha256 and fails if one is damaged.")
    s.add_argument("action", choices=["list", "verify", "prune"])
    s.add_argument("names", nargs="*", help="only the files of these models (default: all)")
    s.add_argument("--all", action="store_true", help="prune: remove everything vfe_hub cached")
    return p


# ------------------------------------------------------------------------------------------------ main

def _configure_logging(verbose: bool) -> None:
    """vfe_hub's own messages on stderr (WARNING and up, INFO with ``-v``); other libraries' loggers untouched."""
    logger = logging.getLogger("vfe_hub")
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    if _LOG_HANDLER not in logger.handlers:
        logger.addHandler(_LOG_HANDLER)


#: the most lines of an error message printed (a conversion's listing of keys fits); --debug shows all of it
ERROR_LINES = 70


def _error_text(error: BaseException) -> str:
    """The message of ``error`` (with its type unless it is vfe_hub's or an ``OSError``): one line for a short
    error, all the lines of a longer one up to :data:`ERROR_LINES` and the count of the others."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    if len(lines) > ERROR_LINES:
        more = len(lines) - ERROR_LINES + 1
        lines = [*lines[:ERROR_LINES - 1], f"... and {more} more lines (--debug shows the whole message)"]
    text = "\n".join(lines)
    return text if isinstance(error, (VfeHubError, OSError)) else f"{type(error).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`vfe-hub list | head -1`): stop quietly, as a Unix tool killed by SIGPIPE.
        # Python flushes stdout again at exit; point it at /dev/null so that this does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        if args.debug:
            raise
        return 128 + signal.SIGINT
    except Exception as error:
        if args.debug:
            raise
        print(f"vfe-hub: error: {_error_text(error)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
