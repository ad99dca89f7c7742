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
        metrics = sharding.run_command(args)
        if metrics:
            print(json.dumps(metrics, indent=2))
    return dispatch


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
    from .weights import convert_checkpoint

    spec = get_spec(args.name)
    checkpoint = Path(args.checkpoint)
    inputs = {k: getattr(args, k) for k in ("embeddings", "categories", "contexts") if getattr(args, k)}
    converted = convert_checkpoint(spec, checkpoint, **inputs)
    config = {"name": spec.name, "family": spec.family, "config": spec.config, **converted.config,
              "source": {"file": checkpoint.name, "sha256": hub.sha256_of(checkpoint), "format": converted.format}}
    digest = hub.write_model_dir(Path(args.out_dir), converted.state, config, cards.render(spec), converted.files)
    extra = "".join(f", {name}" for name in converted.files)
    print(f"{args.out_dir}: {len(converted.state)} tensors, model.safetensors sha256 {digest}{extra}")
    if converted.dropped:
        print(f"dropped on purpose: {_dropped_summary(converted.dropped)}")


def _publish(args: argparse.Namespace) -> None:
    from huggingface_hub import HfApi

    folder = Path(args.folder)
    hub.read_model_dir(folder)  # refuse to upload a folder that does not load
    hf = HfApi()
    hf.create_repo(args.repo_id, private=args.private, exist_ok=True)
    commit = hf.upload_folder(repo_id=args.repo_id, folder_path=folder, commit_message=args.message)
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
        s.add_argument("name", nargs="?" if command == "evaluate" else None)
        s.add_argument("--device", default="cpu")
        s.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
        s.add_argument("--weights", help="local vfe_hub folder, .safetensors or original checkpoint")
        s.add_argument("--batch-size", type=int, default=1)
        s.add_argument("--quiet", action="store_true", help="no progress bar")
        s.add_argument("--shard", metavar="I/N", help="run only shard I of N (0 <= I < N) into --out-dir")
        s.add_argument("--out-dir", help="folder of the shards' results (shared by all shards); resumable")
        s.set_defaults(run=_sharded(run))
        if command == "predict":
            s.add_argument("inputs", nargs="+", help="images, folders, globs or videos")
            s.add_argument("--protocol", choices=["streaming", "paper"], help="video models only")
            s.add_argument("--output", "-o", help="write COCO-style results JSON here (default: stdout)")
            s.add_argument("--save-dir", help="draw detections on the frames into this folder")
            s.add_argument("--score-thr", type=float, default=0.3, help="drawing threshold")
        else:
            s.add_argument("dataset", nargs="?", help="e.g. imagenet_vid")
            s.add_argument("--merge", metavar="DIR", help="merge the finished shards of DIR and score them (no model)")
            s.add_argument("--root", help="dataset root folder (required unless --merge)")
            s.add_argument("--ann-file", help="annotation file (default: the dataset's usual one under --root)")
            s.add_argument("--limit", type=int, help="evaluate only the first N videos/images")
    s = sub.add_parser(
        "convert", help="original checkpoint -> vfe_hub folder (model.safetensors, config.json, README.md)",
        description="Convert an original release strictly into a vfe_hub folder. Trust: checkpoints whose "
                    "metadata holds Python objects (DetPro's) are read with full unpickling (torch.load "
                    "weights_only=False), which can run code stored in the file: convert only files from a source "
                    "you trust. Other files are read with weights_only=True.")
    s.add_argument("name")
    s.add_argument("checkpoint", help="the original checkpoint (read with full unpickling for DetPro: trust it)")
    s.add_argument("out_dir")
    s.add_argument("--embeddings", help="DetPro: the class embeddings file (iou_neg5_ens.pth)")
    s.add_argument("--categories", help="DetPro: an LVIS v1 annotation file (lvis_v1_val.json); only its categories "
                                        "are read")
    s.add_argument("--contexts", nargs="+", help="DetPro (optional): learned prompt contexts (*_prompt.pth), used to "
                                                 "embed custom vocabularies with DetPro's prompts")
    s.set_defaults(run=_convert)
    s = sub.add_parser("publish", help="upload a vfe_hub folder to a Hugging Face Hub repo")
    s.add_argument("folder")
    s.add_argument("repo_id")
    s.add_argument("--private", action="store_true")
    s.add_argument("--message", default="Upload vfe_hub weights")
    s.set_defaults(run=_publish)
    s = sub.add_parser(
        "cache", help="list, verify or remove what vfe_hub downloaded and converted",
        description="The files vfe_hub keeps: converted weights, fetched data files and vocabulary embeddings (in "
                    "VFE_HUB_CACHE, default ~/.cache/vfe_hub) and the registry's original files in the Hugging Face "
                    "cache (HF_HUB_CACHE; other files there are left alone). verify hashes each file against its "
                    "recorded or pinned sha256 and fails if one is damaged.",
        epilog="examples:\n  vfe-hub cache list\n  vfe-hub cache verify mamba_r101_dc5_vid\n"
               "  vfe-hub cache prune stpn_swint_vid\n  vfe-hub cache prune --all",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("action", choices=["list", "verify", "prune"])
    s.add_argument("names", nargs="*", help="only the files of these models (default: all)")
    s.add_argument("--all", action="store_true", help="prune: remove everything vfe_hub cached")
    s.set_defaults(run=_cache)
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
