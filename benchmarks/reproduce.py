"""Reproduce the papers' tables: run models on their benchmarks and print the paper's row beside the measured one.

    python benchmarks/reproduce.py mamba_r101_dc5_vid --root data/ILSVRC2015 --device cuda [--limit 20]
    python benchmarks/reproduce.py detpro_r50_fpn_lvis1 --root data/coco --weights detpro_converted/ --device cuda
    python benchmarks/reproduce.py gtr_dr2101_tao --root data/tao --ann-file data/tao/annotations/validation.json
    python benchmarks/reproduce.py lst_r50_fpn_lvis05 --root data/coco --weights lst_converted/ --device cuda

The models run the original's pipeline (``pipeline="original"``: its resize library and NMS arithmetic) unless
--pipeline fast. Numbers are in percent. With --limit only the first N videos (ImageNet VID) or images (LVIS) are
scored, so they are not comparable to the paper's full-set numbers (the table says so). LVIS rows give box and mask metrics.
"""
from __future__ import annotations

import argparse
import time

import torch

import vfe_hub

#: published numbers that cannot be reproduced from public data
NOT_REPRODUCIBLE = {
    "gtr_dr2101_tao": "TAO test track mAP 20.1 (GTR's MODEL_ZOO.md) needs the TAO test annotations, which only the "
                      "TAO challenge server holds: submit the test results there (LVIS v1 -> v0.5 category ids).",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=vfe_hub.list_models())
    parser.add_argument("--root", required=True, help="dataset root (ImageNet VID: the ILSVRC2015 folder; LVIS: the "
                                                      "COCO folder with train2017/, val2017/; TAO: the folder with "
                                                      "frames/ and annotations/)")
    parser.add_argument("--ann-file", help="ImageNet VID: COCO-VID JSON instead of the XML; LVIS, TAO: the "
                                           "annotation file")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--limit", type=int, help="first N videos (or images) only")
    parser.add_argument("--weights", help="local weights for a single model")
    parser.add_argument("--pipeline", default="original", choices=vfe_hub.registry.PIPELINES,
                        help="original (default): the original's resize and NMS arithmetic, the paper's pipeline bit "
                             "for bit; fast: vfe_hub's batched default")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, device {args.device}, dtype {args.dtype}"
          + (f", first {args.limit} videos/images only (not comparable to the paper)" if args.limit else ""))
    for name in args.models:
        spec = vfe_hub.registry.get_spec(name)
        if spec.weights.unreleased and not args.weights:
            print(f"\n{name}: skipped, {spec.weights.unreleased} Pass --weights with your own converted weights.")
            continue
        model = vfe_hub.load(name, device=args.device, dtype=args.dtype, weights=args.weights, pipeline=args.pipeline)
        for dataset in spec.datasets:
            start = time.perf_counter()
            measured = model.evaluate(dataset, root=args.root, ann_file=args.ann_file, limit=args.limit,
                                      batch_size=args.batch_size, progress=True)
            minutes = (time.perf_counter() - start) / 60
            paper = spec.metrics.get(dataset, {})
            columns = list(paper or measured)
            print(f"\n{name} on {dataset} ({minutes:.1f} min)\n")
            print("| row | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
            print("| paper | " + " | ".join(f"{paper[k]:.2f}" if k in paper else "-" for k in columns) + " |")
            print("| vfe_hub | " + " | ".join(f"{100 * measured[k]:.2f}" for k in columns) + " |")
        if spec.metrics_note:
            print(f"\n{spec.metrics_note}")
        if name in NOT_REPRODUCIBLE:
            print(f"\nNot reproduced here: {NOT_REPRODUCIBLE[name]}")


if __name__ == "__main__":
    main()
