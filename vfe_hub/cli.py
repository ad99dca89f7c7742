"""The ``vfe-hub`` command line: list, info, predict, evaluate, convert, publish."""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
from pathlib import Path

from . import api, cards, hub
from .errors import VfeHubError
from .io import open_frames
from .registry import get_spec


def _list(args: argparse.Namespace) -> None:
    for name in api.list_models(args.pattern):
        spec = get_spec(name)
        print(f"{name:28s} {spec.task:26s} {spec.summary.split(';')[0]}")


def _info(args: argparse.Namespace) -> None:
    print(json.dumps(api.model_info(args.name), indent=2))


def _predict(args: argparse.Namespace) -> None:
    model = api.load(args.name, device=args.device, dtype=args.dtype, weights=args.weights)
    options = {"protocol": args.protocol} if args.protocol else {}
    results, out = [], []
    detections = model.predict(args.inputs, batch_size=args.batch_size, stream=True, progress=not args.quiet, **options)
    # Results come in input order; drawing takes each frame from one more sequential decode (plot() without an
    # image would re-read a video from its start for every frame).
    frames = open_frames(args.inputs) if args.save_dir else itertools.repeat(None)
    for det, frame in zip(detections, frames):
        out.extend(det.to_json())
        if frame is not None:
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            name = Path(det.frame.name.replace("#", "_")).stem
            det.plot(frame.image, score_thr=args.score_thr).save(Path(args.save_dir) / f"{name}_{det.frame.index:06d}.jpg")
        results.append(len(det))
    text = json.dumps(out)
    if args.output:
        Path(args.output).write_text(text)
        print(f"{len(results)} frames, {sum(results)} detections -> {args.output}", file=sys.stderr)
    else:
        print(text)


def _evaluate(args: argparse.Namespace) -> None:
    model = api.load(args.name, device=args.device, dtype=args.dtype, weights=args.weights)
    metrics = model.evaluate(args.dataset, root=args.root, ann_file=args.ann_file, limit=args.limit,
                             batch_size=args.batch_size, progress=not args.quiet)
    print(json.dumps(metrics, indent=2))


def _convert(args: argparse.Namespace) -> None:
    from .weights import convert_original

    spec = get_spec(args.name)
    expected = {k: v.shape for k, v in spec.build().state_dict().items()}
    state = convert_original(spec, Path(args.checkpoint), expected)
    config = {"name": spec.name, "family": spec.family, "config": spec.config, "classes": list(spec.classes),
              "source": {"file": Path(args.checkpoint).name, "sha256": hub.sha256_of(args.checkpoint),
                         "format": spec.weights.format}}
    digest = hub.write_model_dir(Path(args.out_dir), state, config, cards.render(spec))
    print(f"{args.out_dir}: {len(state)} tensors, model.safetensors sha256 {digest}")


def _publish(args: argparse.Namespace) -> None:
    from huggingface_hub import HfApi

    folder = Path(args.folder)
    hub.read_model_dir(folder)  # refuse to upload a folder that does not load
    hf = HfApi()
    hf.create_repo(args.repo_id, private=args.private, exist_ok=True)
    commit = hf.upload_folder(repo_id=args.repo_id, folder_path=folder, commit_message=args.message)
    print(f"uploaded {folder} to {args.repo_id} at revision {commit.oid}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vfe-hub", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", help="registered model names")
    s.add_argument("pattern", nargs="?", default="*", help="shell-style wildcard, e.g. '*vid*'")
    s.set_defaults(run=_list)
    s = sub.add_parser("info", help="a model's registry facts as JSON")
    s.add_argument("name")
    s.set_defaults(run=_info)
    for command, run in (("predict", _predict), ("evaluate", _evaluate)):
        s = sub.add_parser(command)
        s.add_argument("name")
        s.add_argument("--device", default="cpu")
        s.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
        s.add_argument("--weights", help="local vfe_hub folder, .safetensors or original checkpoint")
        s.add_argument("--batch-size", type=int, default=1)
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.set_defaults(run=run)
        if command == "predict":
            s.add_argument("inputs", nargs="+", help="images, folders, globs or videos")
            s.add_argument("--protocol", choices=["streaming", "paper"], help="video models only")
            s.add_argument("--output", "-o", help="write COCO-style results JSON here (default: stdout)")
            s.add_argument("--save-dir", help="draw detections on the frames into this folder")
            s.add_argument("--score-thr", type=float, default=0.3, help="drawing threshold")
        else:
            s.add_argument("dataset", help="e.g. imagenet_vid")
            s.add_argument("--root", required=True, help="dataset root folder")
            s.add_argument("--ann-file", help="annotation file (default: the dataset's usual one under --root)")
            s.add_argument("--limit", type=int, help="evaluate only the first N videos/images")
    s = sub.add_parser("convert", help="original checkpoint -> vfe_hub folder (model.safetensors, config.json, README.md)")
    s.add_argument("name")
    s.add_argument("checkpoint")
    s.add_argument("out_dir")
    s.set_defaults(run=_convert)
    s = sub.add_parser("publish", help="upload a vfe_hub folder to a Hugging Face Hub repo")
    s.add_argument("folder")
    s.add_argument("repo_id")
    s.add_argument("--private", action="store_true")
    s.add_argument("--message", default="Upload vfe_hub weights")
    s.set_defaults(run=_publish)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except VfeHubError as e:
        print(f"vfe-hub: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
