"""Sharded evaluation and prediction give exactly the results of one process: the plan, shards written and merged
through Python, the command line and torchrun, a shard killed halfway and rerun, and the errors of a folder that is
incomplete or of another run."""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vfe_hub
from benchmark_layouts import VIDEOS, write_lvis
from small_models import (DETPRO, StandIn, convert_detpro, lvis_like_categories, tiny_detpro_spec, video_model,
                          write_detpro_release)
from vfe_hub import VideoDetector, cli, registry, sharding
from media import photo, write_image
from vfe_hub.registry import Preprocess
from vfe_hub.results_writer import frame_entry, provenance
from vfe_hub.sharding import ShardError

TESTS = Path(__file__).parent
#: MAMBA at a smaller input still (frames of 120 x 160 run at 64 x 85, padded to 64 x 96)
TINY = Preprocess(max_size=96, min_size=64, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
                  size_divisor=16)


def same_metrics(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal keys and values, NaN equal to NaN (classes without ground truth)."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


class Recorder(StandIn):
    """A video model with the paper protocol's shuffle whose answers depend on the order it sees each video's frames:
    one box per frame, scored by its position in that order. It raises after ``fail_after`` frames (a preempted
    job)."""

    paper_shuffle = True

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.fail_after = fail_after

    def answer(self, frame):
        if len(self.seen) == self.fail_after:
            raise RuntimeError("preempted")
        position = sum(sequence == frame.sequence for sequence, _ in self.seen)
        box = torch.tensor([[10.0 + 4 * frame.index, 20.0, 70.0 + 4 * frame.index, 90.0]])
        return box, torch.tensor([1.0 / (1 + position)]), torch.tensor([0])


@pytest.fixture(scope="module")
def recorded(vid_root, tmp_path_factory):
    """One process, in memory: the Recorder's results file, metrics and order of frames, which is the order of one
    ``predict`` call over all videos (the released evaluation's shuffle)."""
    model, plain = Recorder(), Recorder()
    results = tmp_path_factory.mktemp("one") / "results.json"
    metrics = model.evaluate("imagenet_vid", root=vid_root, motion_iou="compute", results_file=results)
    plain.predict([str(vid_root / "Data" / "VID" / video) for video, _, _ in VIDEOS], protocol="paper")
    assert model.seen == plain.seen
    return results.read_bytes(), metrics, model.seen


# ------------------------------------------------------------------------------------------------- the plan

def test_plan_gives_the_longest_units_to_the_least_loaded_shards():
    # units by size: 0 (5), 2 (3), 3 (3), 4 (2), 1 (1); loads 5|0 -> 5|3 -> 5|6 -> 7|6 -> 7|7
    assert sharding.plan([5, 1, 3, 3, 2], 2) == [[0, 4], [1, 2, 3]]
    assert sharding.plan([1] * 7, 3) == [[0, 3, 6], [1, 4], [2, 5]]  # equal sizes: round robin
    assert sharding.plan([4, 3], 3) == [[0], [1], []]
    assert sharding.plan([2, 2, 2], 1) == [[0, 1, 2]]
    with pytest.raises(ShardError, match="at least 1"):
        sharding.plan([1], 0)


def test_shard_from_text_and_from_torchrun(monkeypatch):
    assert sharding.parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1-3", "x/2"):
        with pytest.raises(ShardError, match="I/N"):
            sharding.parse_shard(bad)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert sharding.env_shard() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert sharding.env_shard() == (3, 4) and sharding.rank_device("cpu") == "cpu"


# ------------------------------------------------------------------------------------- a video model, by video

def video_names(sequences) -> list[str]:
    return sorted({Path(sequence).name for sequence in sequences})


@pytest.mark.parametrize("count", [1, 2, 3])
def test_video_shards_equal_one_process(vid_root, recorded, tmp_path, count):
    results, metrics, seen = recorded
    models = [Recorder() for _ in range(count)]
    for index, model in enumerate(models):
        scored = model.evaluate("imagenet_vid_val", root=vid_root, motion_iou="compute", shard=(index, count),
                                out_dir=tmp_path)
        assert same_metrics(scored, metrics) if count == 1 else scored == {}
    assert sorted(p.name for p in tmp_path.glob("*.done")) == [f"shard-{i:05d}-of-{count:05d}.done"
                                                               for i in range(count)]
    assert same_metrics(sharding.merge_and_score(tmp_path), metrics)
    assert (tmp_path / "results.json").read_bytes() == results
    assert same_metrics(json.loads((tmp_path / "metrics.json").read_text()), metrics)
    # whole videos, longest first to the least-loaded shard; each video's frames in the one-process shuffled order
    names = [Path(video).name for video, _, _ in VIDEOS]
    assert [video_names(s for s, _ in model.seen) for model in models] == [
        [names[u] for u in units] for units in sharding.plan([n for _, n, _ in VIDEOS], count)]
    for model in models:
        for sequence in {s for s, _ in model.seen}:
            assert [i for s, i in model.seen if s == sequence] == [i for s, i in seen if s == sequence]


def test_the_paper_shuffle_continues_over_videos():
    """A shard's video gets the generator state the one-process run reaches there, not a fresh one."""
    states = VideoDetector.paper_rng_states([4, 3, 5])
    rng = random.Random(10)
    assert states[0] == rng.getstate()
    rng.shuffle(list(range(3)))
    assert states[1] == rng.getstate() and states[1] != states[0]


def test_a_killed_shard_resumes_after_its_last_complete_video(vid_root, recorded, tmp_path):
    results, metrics, _ = recorded
    with pytest.raises(RuntimeError, match="preempted"):  # dies at the first frame of the second video
        Recorder(fail_after=VIDEOS[0][1]).evaluate("imagenet_vid", root=vid_root, motion_iou="compute",
                                                   shard=(0, 1), out_dir=tmp_path)
    assert not list(tmp_path.glob("*.done")) and len((tmp_path / "shard-00000-of-00001.jsonl.part")
                                                     .read_text().splitlines()) == VIDEOS[0][1]
    rerun = Recorder()
    assert same_metrics(rerun.evaluate("imagenet_vid", root=vid_root, motion_iou="compute", shard=(0, 1),
                                       out_dir=tmp_path), metrics)
    assert video_names(s for s, _ in rerun.seen) == [Path(VIDEOS[1][0]).name]  # the first video was not rerun
    assert (tmp_path / "results.json").read_bytes() == results
    again = Recorder()  # a complete shard is skipped
    again.evaluate("imagenet_vid", root=vid_root, motion_iou="compute", shard=(0, 1), out_dir=tmp_path)
    assert again.seen == []


def test_a_missing_shard_is_named(vid_root, tmp_path, capsys):
    for index in (0, 2):
        Recorder().evaluate("imagenet_vid", root=vid_root, motion_iou="compute", shard=(index, 3), out_dir=tmp_path)
    with pytest.raises(ShardError, match="shard-00001-of-00003"):
        sharding.merge_and_score(tmp_path)
    assert cli.main(["evaluate", "--merge", str(tmp_path)]) == 1
    assert "shard-00001-of-00003" in capsys.readouterr().err
    with pytest.raises(ShardError, match="no manifest.json"):
        sharding.merge_and_score(tmp_path / "elsewhere")


def test_changed_and_repeated_shard_files_are_refused(vid_root, tmp_path):
    for index in range(2):
        Recorder().evaluate("imagenet_vid", root=vid_root, motion_iou="compute", shard=(index, 2), out_dir=tmp_path)
    first, second = tmp_path / "shard-00000-of-00002.jsonl", tmp_path / "shard-00001-of-00002.jsonl"
    original = second.read_bytes()
    second.write_bytes(original + first.read_bytes())  # frames of shard 0 again
    with pytest.raises(ShardError, match="does not match its marker shard-00001-of-00002.done"):
        sharding.merge(tmp_path)
    marker = tmp_path / "shard-00001-of-00002.done"
    marker.write_text(json.dumps({**json.loads(marker.read_text()),
                                  "sha256": hashlib.sha256(second.read_bytes()).hexdigest()}))
    with pytest.raises(ShardError, match="shard-00001-of-00002 gives frame 1 a second time"):
        sharding.merge(tmp_path)


def test_shards_of_another_run_are_refused(vid_root, tmp_path):
    Recorder().evaluate("imagenet_vid", root=vid_root, motion_iou="compute", shard=(0, 2), out_dir=tmp_path)
    with pytest.raises(ShardError, match="another run .*dataset_args"):
        Recorder().evaluate("imagenet_vid", root=vid_root, motion_iou="compute", limit=1, shard=(1, 2),
                            out_dir=tmp_path)
    with pytest.raises(ShardError, match="another run .*shards"):
        Recorder().evaluate("imagenet_vid", root=vid_root, motion_iou="compute", shard=(1, 3), out_dir=tmp_path)


def test_only_path_arguments_are_recorded_absolute(vid_root, tmp_path, monkeypatch):
    """A dataset argument that is a keyword (``motion_iou="compute"``) stays one even where the current folder holds
    a folder of that name; the root becomes absolute."""
    monkeypatch.chdir(vid_root.parent)
    (vid_root.parent / "compute").mkdir(exist_ok=True)
    Recorder().evaluate("imagenet_vid", root=vid_root.name, motion_iou="compute", shard=(0, 2), out_dir=tmp_path)
    args = json.loads((tmp_path / "manifest.json").read_text())["dataset_args"]
    assert args["motion_iou"] == "compute" and args["root"] == str(vid_root)


def test_predict_shards_by_input(vid_root, tmp_path):
    folders = [str(vid_root / "Data" / "VID" / video) for video, _, _ in VIDEOS]
    one = Recorder().predict(folders, protocol="paper")
    for index in range(2):
        sharding.predict(Recorder(), folders, shard=(index, 2), out_dir=tmp_path, protocol="paper")
    assert sharding.merge_and_score(tmp_path) == {}
    document = json.loads((tmp_path / "results.json").read_text())  # what predict -o results.json writes
    assert document["results"] == [record for i, det in enumerate(one, 1) for record in det.to_json(image_id=i)]
    assert document["images"] == [{"id": i, **frame_entry(det.frame)} for i, det in enumerate(one, 1)]
    assert document["provenance"] == provenance(Recorder(), {**Recorder.predict_options, "protocol": "paper"})


# ------------------------------------------------------------------------- real networks with random weights

@pytest.fixture(scope="module")
def coco_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    write_lvis(root, categories=lvis_like_categories())
    return root


@pytest.fixture(scope="module")
def detpro_dir(tmp_path_factory):
    """DetPro's release at the test size (tiny text tower), converted to a folder that any process can load with
    the test-size registry entry (tests/small_cli.py)."""
    release = write_detpro_release(tmp_path_factory.mktemp("release"), text_tower=(64, 2), seed=5)
    out = tmp_path_factory.mktemp("detpro") / "weights"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.MODELS, DETPRO, tiny_detpro_spec())
        convert_detpro(release, out)
    return out


@pytest.fixture
def tiny_detpro(monkeypatch):
    monkeypatch.setitem(registry.MODELS, DETPRO, tiny_detpro_spec())


@pytest.fixture(scope="module")
def detpro_once(coco_root, detpro_dir, tmp_path_factory):
    """DetPro in one process, in memory: the results file's bytes and the metrics."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.MODELS, DETPRO, tiny_detpro_spec())
        model = vfe_hub.load(weights=detpro_dir)
    results = tmp_path_factory.mktemp("one") / "results.json"
    metrics = model.evaluate("lvis_v1_val", root=coco_root, results_file=results)
    assert json.loads(results.read_text())  # random weights still detect something
    return results.read_bytes(), metrics


@pytest.mark.parametrize("count", [1, 3])
def test_image_shards_equal_one_process(coco_root, detpro_dir, detpro_once, tiny_detpro, tmp_path, count):
    results, metrics = detpro_once
    model = vfe_hub.load(weights=detpro_dir)
    for index in range(count):
        model.evaluate("lvis_v1_val", root=coco_root, shard=(index, count), out_dir=tmp_path)
    assert same_metrics(sharding.merge_and_score(tmp_path), metrics)
    assert (tmp_path / "results.json").read_bytes() == results


def test_image_shards_through_the_command_line(coco_root, detpro_dir, detpro_once, tiny_detpro, tmp_path, capsys):
    results, metrics = detpro_once
    out = tmp_path / "cli"
    for index in range(2):
        assert cli.main(["evaluate", DETPRO, "lvis_v1_val", "--root", str(coco_root), "--weights", str(detpro_dir),
                         "--shard", f"{index}/2", "--out-dir", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--merge", str(out)]) == 0
    captured = capsys.readouterr()
    assert same_metrics(json.loads(captured.out), metrics)
    assert captured.err.endswith(f"detections -> {out / 'results.json'}, metrics -> {out / 'metrics.json'}\n")
    assert (out / "results.json").read_bytes() == results
    manifest = sharding.read_manifest(out)
    assert manifest["dataset"] == "lvis_v1" and manifest["dataset_args"]["root"] == str(coco_root)
    assert manifest["model"] == DETPRO and manifest["shards"] == 2


def run_cli(capsys, *argv: str) -> list[str]:
    """``vfe-hub ARGV`` in this process; the lines it wrote on stderr."""
    assert cli.main(list(argv)) == 0
    return capsys.readouterr().err.splitlines()


def predict_sharded_and_once(capsys, tmp_path, name: str, inputs: list[str], options: list[str]) -> tuple[dict, dict]:
    """``vfe-hub predict NAME INPUTS OPTIONS`` once into a JSON document, and in two shards merged (checking what
    each step says on stderr); both documents."""
    once = tmp_path / "once.json"
    run_cli(capsys, "predict", name, *inputs, *options, "-o", str(once), "-q")
    out = tmp_path / "sharded"
    for index in range(2):
        lines = run_cli(capsys, "predict", name, *inputs, *options, "--shard", f"{index}/2", "--out-dir", str(out),
                        "-q")
        shard_file = out / f"shard-0000{index}-of-00002.jsonl"
        assert lines[0].startswith(f"shard {index}/2: ") and lines[0].endswith(f" frames -> {shard_file}")
        assert lines[1] == f"when every shard is complete, merge them: vfe-hub evaluate --merge {out}"
    rerun = run_cli(capsys, "predict", name, *inputs, *options, "--shard", "1/2", "--out-dir", str(out), "-q")
    assert rerun[0].startswith(f"shard 1/2 was complete already in {out} (") and "nothing ran" in rerun[0]
    assert not (out / "results.json").exists(), "no shard merges without --merge or torchrun"
    merge = run_cli(capsys, "evaluate", "--merge", str(out))
    document = json.loads((out / "results.json").read_text())
    assert merge == [f"2 shard(s) merged: {len(document['images'])} frames, {len(document['results'])} detections "
                     f"-> {out / 'results.json'}"]
    return json.loads(once.read_text()), document


def test_predict_options_reach_every_shard_and_the_manifest(tiny_detpro, detpro_dir, tmp_path, capsys):
    """--no-masks: the sharded run gives the records of one run, without masks, and the same provenance."""
    images = [str(write_image(tmp_path / f"{name}.png", photo(name, (96, 128))))
              for name in ("coffee", "chelsea", "astronaut")]
    once, merged = predict_sharded_and_once(capsys, tmp_path, DETPRO, images, ["--weights", str(detpro_dir),
                                                                               "--no-masks"])
    assert merged["results"] == once["results"] and merged["provenance"] == once["provenance"]
    assert once["results"] and not any("segmentation" in r for r in once["results"])
    assert [(i["name"], i["size"]) for i in merged["images"]] == [(i["name"], i["size"]) for i in once["images"]]
    assert sharding.read_manifest(tmp_path / "sharded")["options"] == {"masks": False}


def test_the_pipeline_reaches_every_shard_and_the_manifest(tiny_detpro, detpro_dir, tmp_path, capsys):
    """--pipeline original: the sharded run gives the records of one run, and both say which pipeline ran."""
    images = [str(write_image(tmp_path / f"{name}.png", photo(name, (96, 128)))) for name in ("coffee", "chelsea")]
    once, merged = predict_sharded_and_once(capsys, tmp_path, DETPRO, images, ["--weights", str(detpro_dir),
                                                                               "--pipeline", "original", "--no-masks"])
    assert merged["results"] == once["results"] and once["results"]
    assert once["provenance"]["pipeline"] == merged["provenance"]["pipeline"] == "original"
    assert sharding.read_manifest(tmp_path / "sharded")["pipeline"] == "original"


@pytest.mark.slow
def test_predict_options_reach_every_shard_and_the_manifest_protocol(vid_root, tmp_path, monkeypatch, capsys):
    """--protocol paper: the sharded run gives the records of one paper run, which differ from streaming's."""
    from safetensors.torch import save_file
    from vfe_hub.models.mamba import Mamba

    name = "mamba_r101_dc5_vid"
    weights = tmp_path / "mamba.safetensors"
    save_file({k: v.contiguous() for k, v in video_model(name).state_dict().items()}, weights)
    monkeypatch.setitem(registry.MODELS, name, dataclasses.replace(registry.get_spec(name), preprocess=TINY))
    monkeypatch.setattr(Mamba, "paper_references", 2)  # fewer reference frames: the same path, faster
    folders = [str(vid_root / "Data" / "VID" / video) for video, _, _ in VIDEOS]
    once, merged = predict_sharded_and_once(capsys, tmp_path, name, folders, ["--weights", str(weights),
                                                                              "--protocol", "paper"])
    assert merged["results"] == once["results"] and merged["provenance"] == once["provenance"]
    assert merged["provenance"]["protocol"] == "paper" and merged["images"] == once["images"]
    assert sharding.read_manifest(tmp_path / "sharded")["options"]["protocol"] == "paper"
    streaming = tmp_path / "streaming.json"
    run_cli(capsys, "predict", name, *folders, "--weights", str(weights), "-o", str(streaming), "-q")
    assert json.loads(streaming.read_text())["results"] != once["results"]


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}


def test_the_command_line_options_of_predict_are_all_tested():
    """The options of vfe-hub predict: those of loading and running a model (cli._load, one loader for a run and a
    shard), those of the outputs, and the predict options the sharded runs are compared on
    (test_predict_options_reach_every_shard_and_the_manifest and ..._protocol): a new one of these must be added
    to cli._predict_options and tested there."""
    commands = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    run = argparse.ArgumentParser(add_help=False)
    cli._run_options(run)
    loads = flags(run) | {"--weights", "--debug", "--verbose", "--help"}
    outputs = {"--output", "--save-dir", "--score-thr", "--frame-list", "--per-frame-dir", "--shard", "--out-dir"}
    assert flags(commands.choices["predict"]) - loads - outputs == {"--protocol", "--no-masks"}


def test_torchrun_two_processes(coco_root, detpro_dir, detpro_once, tmp_path):
    results, metrics = detpro_once
    # torchrun would give each process one thread; the numbers are bitwise those of one process with as many
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "0",
         str(TESTS / "small_cli.py"), "evaluate", DETPRO, "lvis_v1_val", "--root", str(coco_root), "--weights",
         str(detpro_dir), "--out-dir", str(tmp_path), "--quiet"],
        env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert same_metrics(json.loads(done.stdout[done.stdout.index("{"):]), metrics)  # rank 0 scored, once
    assert (tmp_path / "results.json").read_bytes() == results
    assert sorted(p.name for p in tmp_path.glob("*.done")) == ["shard-00000-of-00002.done",
                                                               "shard-00001-of-00002.done"]


@pytest.fixture(scope="module")
def mamba_tiny():
    """MAMBA with random weights at a smaller input, with fewer proposals, memory rows and paper references."""
    model = video_model("mamba_r101_dc5_vid", topk=10)
    model.spec = dataclasses.replace(model.spec, preprocess=TINY)
    model.proposals.max_per_img = 30
    model.paper_references = 2
    return model


@pytest.fixture(scope="module")
def mamba_once(vid_root, mamba_tiny, tmp_path_factory):
    once = tmp_path_factory.mktemp("once") / "results.json"
    metrics = mamba_tiny.evaluate("imagenet_vid", root=vid_root, motion_iou="compute", results_file=once)
    assert json.loads(once.read_text())
    return once.read_bytes(), metrics


@pytest.mark.parametrize("count", [2, 3])
def test_mamba_shards_equal_one_process(vid_root, mamba_tiny, mamba_once, tmp_path, count):
    results, metrics = mamba_once
    for index in range(count):
        mamba_tiny.evaluate("imagenet_vid", root=vid_root, motion_iou="compute", shard=(index, count),
                            out_dir=tmp_path)
    assert same_metrics(sharding.merge_and_score(tmp_path), metrics)
    assert (tmp_path / "results.json").read_bytes() == results
