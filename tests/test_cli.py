"""The vfe-hub command line as a Unix tool: help, version, one-line errors, broken pipes, Ctrl-C, logging, inputs
checked before loading, results streamed to disk with provenance, and the demo against the test Hub."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vfe_hub
from demo_clip import ASSET, FRAMES, SIZE, demo_frames
from media import panning_clip, photo, write_image, write_video
from original_layouts import mamba_layout, random_state, write_mmcv_checkpoint
from small_models import SMALL, mamba
from vfe_hub import cli, hub, registry
from vfe_hub.results_writer import ResultsWriter
from vfe_hub.structures import Detections, FrameInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cli_startup  # noqa: E402

NAME = "mamba_r101_dc5_vid"
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
#: the small test size, smaller still: the CLI tests check files and formats, not what the network sees
TINY = dataclasses.replace(SMALL, max_size=128, min_size=96)
COMMANDS = ("demo", "list", "info", "predict", "evaluate", "convert", "publish")


def vfe_hub_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """``python -m vfe_hub ARGS`` in a subprocess, text output captured."""
    return subprocess.run([sys.executable, "-m", "vfe_hub", *args], capture_output=True, text=True, env=ENV,
                          cwd=REPO, **kwargs)


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vfe-hub: error: "), stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------ help, version

def test_every_command_has_help_and_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    listing = capsys.readouterr().out
    for command in COMMANDS:
        assert f"\n    {command} " in listing
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert f"usage: vfe-hub {command}" in text and "\nExample:\n  vfe-hub " + command in text


@pytest.mark.slow
def test_version_and_python_m(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"vfe-hub {vfe_hub.__version__}"
    help_ = vfe_hub_cli("--help")
    assert help_.returncode == 0 and help_.stdout.startswith("usage: vfe-hub") and not help_.stderr


@pytest.mark.parametrize("command", cli_startup.COMMANDS, ids=" ".join)
def test_light_commands_do_not_import_torch(command, tmp_path):
    """--help, --version, list, info and cache read the registry and the cache folders: PyTorch (seconds to import)
    stays out. benchmarks/cli_startup.py times them."""
    env = {**ENV, "VFE_HUB_CACHE": str(tmp_path / "vfe_hub"), "HF_HUB_CACHE": str(tmp_path / "hf")}
    startup = cli_startup.run(list(command), env)
    assert "vfe_hub.registry" in startup.modules and not startup.heavy


def test_the_datasets_of_the_command_line_are_the_evaluators():
    from vfe_hub.evaluation import runner

    assert list(registry.DATASET_ROOTS) == list(runner.DATASETS)


# ------------------------------------------------------------------------------------------------ Unix behaviour

@pytest.mark.slow
def test_closed_pipe_stops_quietly():
    """``vfe-hub list | head -0``: the reader is gone before the first write."""
    process = subprocess.Popen([sys.executable, "-m", "vfe_hub", "list"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=ENV, cwd=REPO)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert "Traceback" not in stderr and "Broken" not in stderr and not stderr


def test_errors_are_one_line_and_debug_shows_the_traceback(capsys):
    assert cli.main(["info", "mamba"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "mamba_r101_dc5_vid" in line
    for argv in (["info", "mamba", "--debug"], ["--debug", "info", "mamba"]):
        with pytest.raises(vfe_hub.VfeHubError, match="Did you mean"):  # raised: Python prints the traceback
            cli.main(argv)


def test_ctrl_c_exits_quietly_with_130(monkeypatch, capsys):
    def interrupted(pattern):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "list_models", interrupted)
    assert cli.main(["list"]) == 130
    assert capsys.readouterr().err == ""
    with pytest.raises(KeyboardInterrupt):
        cli.main(["list", "--debug"])


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def broken(pattern):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "list_models", broken)
    assert cli.main(["list"]) == 1
    assert one_error_line(capsys.readouterr().err) == "vfe-hub: error: RuntimeError: boom"


def test_a_longer_error_prints_its_lines_up_to_a_bound(monkeypatch, capsys):
    def broken(pattern):
        raise RuntimeError("what is wrong:\n" + "\n".join(f"  detail {i}" for i in range(100)))

    monkeypatch.setattr(cli, "list_models", broken)
    assert cli.main(["list"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[:2] == ["vfe-hub: error: RuntimeError: what is wrong:", "  detail 0"]
    assert len(lines) == cli.ERROR_LINES and lines[-2] == f"  detail {cli.ERROR_LINES - 3}"
    assert lines[-1] == f"... and {101 - cli.ERROR_LINES + 1} more lines (--debug shows the whole message)"


def test_convert_prints_the_keys_a_checkpoint_lacks(tmp_path, capsys):
    """A checkpoint with only the first 30 tensors of MAMBA's release: the error lists what is missing."""
    layout = dict(list(mamba_layout().items())[:30])
    checkpoint = write_mmcv_checkpoint(tmp_path / "part.pth", random_state(layout))
    assert cli.main(["convert", NAME, str(checkpoint), str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("vfe-hub: error: The converted ") and lines[0].endswith("does not fit the model:")
    assert lines[1].startswith("  model keys without a tensor (") and lines[2].startswith("    ")
    assert lines[-2].startswith("    ... and ") and lines[-1].startswith("Is it the checkpoint of this model")
    assert not (tmp_path / "out").exists()


def test_logging_is_vfe_hub_only_warning_by_default(capsys):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    assert cli.main(["list"]) == 0
    assert logging.getLogger("vfe_hub").level == logging.WARNING
    logging.getLogger("vfe_hub.hub").info("hidden")
    assert cli.main(["list", "-v"]) == 0
    logging.getLogger("vfe_hub.hub").info("shown")
    logging.getLogger("urllib3").info("not ours")
    err = capsys.readouterr().err
    assert "hidden" not in err and "vfe-hub: INFO: shown" in err and "not ours" not in err
    assert root.handlers == handlers and root.level == level
    cli.main(["list"])  # back to WARNING for the tests that follow


def test_progress_only_when_asked():
    parse = cli.parser().parse_args
    assert parse(["predict", NAME, "a.jpg"]).progress is None  # the library decides: only on a terminal
    assert parse(["predict", NAME, "a.jpg", "--quiet"]).progress is False
    assert parse(["evaluate", NAME, "imagenet_vid", "--root", ".", "--progress"]).progress is True
    assert parse(["predict", NAME, "a.jpg"]).device is None


def test_strict_reaches_the_evaluators():
    """--strict (refuse results of categories the annotations lack) is passed to the dataset, as --fps is; an option
    of other datasets is refused, naming those that take it."""
    parse = cli.parser().parse_args
    options = cli._dataset_options
    assert options(parse(["evaluate", NAME, "lvis_v1_val", "--root", ".", "--strict"])) == {"strict": True}
    assert options(parse(["evaluate", NAME, "tao_val", "--root", ".", "--fps", "2", "--strict"])) == {
        "fps": 2, "strict": True}
    assert options(parse(["evaluate", NAME, "tao_amodal_val", "--root", "."])) == {}
    with pytest.raises(vfe_hub.VfeHubError, match="--strict is not an option of imagenet_vid: only lvis_v1_val, "
                                          "lvis_v05_val, tao_val, tao_amodal_val take it"):
        options(parse(["evaluate", NAME, "imagenet_vid", "--root", ".", "--strict"]))
    with pytest.raises(vfe_hub.VfeHubError, match="--metrics is not an option of lvis_v1_val: only tao_val take it"):
        options(parse(["evaluate", NAME, "lvis_v1_val", "--root", ".", "--metrics", "teta"]))


# ------------------------------------------------------------------------------------------------ inputs first

def test_inputs_are_checked_before_the_model_is_loaded(tmp_path, capsys):
    """Each case also names weights that do not exist: the input error comes first, so nothing was loaded."""
    missing_weights = str(tmp_path / "no_such_weights.safetensors")
    assert cli.main(["predict", NAME, str(tmp_path / "missing.jpg"), "--weights", missing_weights]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "missing.jpg" in line and "no_such_weights" not in line

    for root, what in ((tmp_path / "nope", "does not exist"), (write_image(tmp_path / "a.png", photo()), "a file")):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["evaluate", NAME, "imagenet_vid", "--root", str(root), "--weights", missing_weights])
        assert exit_.value.code == 2
        line = one_error_line(capsys.readouterr().err)
        assert str(root) in line and what in line and "--root" in line

    for option in ("--batch-size", "--limit"):
        with pytest.raises(SystemExit) as exit_:
            cli.main(["evaluate", NAME, "imagenet_vid", "--root", str(tmp_path), option, "0"])
        assert exit_.value.code == 2
        assert f"argument {option}: must be >= 1, got 0" in one_error_line(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        cli.main(["evaluate", NAME, "imagenet_vi", "--root", str(tmp_path)])
    assert "imagenet_vid" in one_error_line(capsys.readouterr().err)


def test_convert_names_the_options_of_the_model(tmp_path, capsys):
    """An option of another model's conversion is refused with those this model takes, before anything is read."""
    bags = "bags_gs_htc_x101_dcn_lvis05"
    out = tmp_path / "out"
    assert cli.main(["convert", bags, str(tmp_path / "bags.pth"), str(out), "--embeddings", "e.pth"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{bags} takes --groups beyond the checkpoint; remove --embeddings" in line
    assert f"`vfe-hub convert {bags} <checkpoint.pth> <out_dir> --groups" in line
    assert cli.main(["convert", NAME, str(tmp_path / "m.pth"), str(out), "--sorted-ids", "s.json", "--fp16-mask"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"{NAME} is converted from its checkpoint alone; remove --sorted-ids, --fp16-mask" in line
    assert not out.exists()


def test_publish_shows_upload_bars_only_when_asked(fake_hub, tmp_path, capsys):
    """Standard error is not a terminal here (as in a redirected log): huggingface_hub's bars stay off."""
    folder = tmp_path / "weights"
    hub.write_model_dir(folder, {"w": torch.zeros(3)}, {"name": NAME}, "# card\n")
    assert cli.main(["publish", str(folder), "someone/quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"uploaded {folder} to someone/quiet") and captured.err == ""
    hub.write_model_dir(folder, {"w": torch.ones(3)}, {"name": NAME}, "# card\n")  # new bytes: uploaded again
    assert cli.main(["publish", str(folder), "someone/bars", "--progress"]) == 0
    assert "model.safetensors: 100%" in capsys.readouterr().err
    assert fake_hub.files("someone/bars")["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def test_publish_uploads_only_the_vfe_hub_files(fake_hub, tmp_path, capsys):
    """A folder that holds more than vfe_hub's files (the cache's record model.json of a converted Drive release,
    notes): only config.json, model.safetensors, README.md and the companion files config.json lists are uploaded."""
    folder = tmp_path / "weights"
    hub.write_model_dir(folder, {"w": torch.zeros(3)}, {"name": NAME}, "# card\n",
                        {"text.safetensors": {"t": torch.ones(2)}})
    (folder / "model.json").write_text('{"converted_mtime_ns": 1}')
    (folder / "notes.txt").write_text("mine")
    assert cli.main(["publish", str(folder), "someone/only"]) == 0
    files = fake_hub.files("someone/only")
    assert set(files) == {"config.json", "model.safetensors", "README.md", "text.safetensors"}
    assert files["text.safetensors"] == (folder / "text.safetensors").read_bytes()


def test_evaluation_data_is_fetched_before_the_model_is_loaded(vid_root, tmp_path, monkeypatch, capsys):
    """The motion-IoU table's host refuses connections and the weights do not exist: the data fails first, in a
    plain and in a sharded run, before any output folder is made."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("VFE_HUB_GITHUB_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    missing = str(tmp_path / "no_such_weights.safetensors")
    for sharded in ([], ["--shard", "0/2", "--out-dir", str(tmp_path / "out")]):
        argv = ["evaluate", NAME, "imagenet_vid", "--root", str(vid_root), "--weights", missing, *sharded]
        assert cli.main(argv) == 1
        line = one_error_line(capsys.readouterr().err)
        assert f"127.0.0.1:{port}" in line and "unreachable" in line and "no_such_weights" not in line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ predict -o

@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """MAMBA with a random checkpoint of the released layout, as a .safetensors file."""
    path = tmp_path_factory.mktemp("weights") / "mamba.safetensors"
    save_file({k: v.contiguous().clone() for k, v in mamba().state_dict().items()}, path)
    return path


@pytest.fixture
def small(monkeypatch):
    """The registry's MAMBA at a small input size."""
    monkeypatch.setitem(registry.MODELS, NAME, dataclasses.replace(registry.get_spec(NAME), preprocess=TINY))


def frame_detections(name: str, index: int, boxes: list[list[float]]) -> Detections:
    """Detections of a 60 x 80 frame ``index`` of ``clip.mp4``, one per box, class ``index % 30``."""
    n = len(boxes)
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(n, 4), torch.full((n,), 0.5),
                      torch.full((n,), index % 30), registry.get_spec(NAME).classes,
                      FrameInfo(name, index, "clip.mp4", None, (60, 80)), {"model": NAME})


FRAMES_OF_A_CLIP = [frame_detections(f"clip.mp4#{i}", i, [[i, 2, 30, 40]] * (i % 3)) for i in range(5)]
PROVENANCE = {"model": NAME, "weights": "w", "revision": "r", "sha256": "s", "dtype": "float32", "device": "cpu",
              "vfe_hub": vfe_hub.__version__, "protocol": "streaming"}


def test_results_writer_json_document_reads_in_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "results.json"
    with ResultsWriter(out, PROVENANCE) as writer:
        assert [writer.write(det) for det in FRAMES_OF_A_CLIP] == [1, 2, 3, 4, 5]
    assert not Path(f"{out}.partial").exists()
    document = json.loads(out.read_text())
    assert list(document) == ["provenance", "images", "results"] and document["provenance"] == PROVENANCE
    assert document["images"][1] == {"id": 2, "name": "clip.mp4#1", "sequence": "clip.mp4", "index": 1,
                                     "size": [60, 80]}
    results = document["results"]
    assert [r["image_id"] for r in results] == [2, 3, 3, 5] and writer.detections == 4
    assert results[0] == {"image_id": 2, "category_id": 2, "bbox": [1.0, 2.0, 29.0, 38.0], "score": 0.5}
    gt = COCO()
    gt.dataset = {"images": [{"id": i["id"], "height": 60, "width": 80} for i in document["images"]],
                  "categories": [{"id": i + 1, "name": n} for i, n in enumerate(registry.get_spec(NAME).classes)],
                  "annotations": []}
    gt.createIndex()
    assert len(gt.loadRes(results).getAnnIds()) == len(results)


def test_results_writer_json_lines_and_a_crash(tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    with ResultsWriter(out, PROVENANCE) as writer:
        for det in FRAMES_OF_A_CLIP:
            writer.write(det)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] == {"provenance": PROVENANCE}
    assert lines[3] == {"image_id": 3, "name": "clip.mp4#2", "sequence": "clip.mp4", "index": 2, "size": [60, 80],
                        "detections": FRAMES_OF_A_CLIP[2].to_json(image_id=3)}
    with ResultsWriter(None, PROVENANCE) as writer:  # standard output: the same lines
        for det in FRAMES_OF_A_CLIP:
            writer.write(det)
    assert capsys.readouterr().out == out.read_text()
    for name in ("crash.jsonl", "crash.json"):
        with pytest.raises(RuntimeError, match="frame 3"):
            with ResultsWriter(tmp_path / name, PROVENANCE) as writer:
                for det in FRAMES_OF_A_CLIP[:2]:
                    writer.write(det)
                raise RuntimeError("frame 3 cannot be decoded")
        assert not (tmp_path / name).exists()
        assert (tmp_path / f"{name}.partial").read_text().splitlines() == out.read_text().splitlines()[:3]


@pytest.mark.slow
def test_predict_streams_results_with_provenance(small, weights, tmp_path, capsys):
    images = [str(write_image(tmp_path / f"{name}.png", photo(name, (96, 128)))) for name in ("chelsea", "coffee")]
    video = str(write_video(tmp_path / "clip.mp4", panning_clip(n=2, size=(64, 96))))
    out = tmp_path / "results.json"
    assert cli.main(["predict", NAME, images[0], video, "--weights", str(weights), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"3 frames, {len(json.loads(out.read_text())['results'])} detections -> {out}\n"
    document = json.loads(out.read_text())
    provenance = document["provenance"]
    assert provenance["model"] == NAME and provenance["vfe_hub"] == vfe_hub.__version__
    assert provenance["protocol"] == "streaming" and provenance["dtype"] == "float32"
    assert provenance["device"] == "cpu" and provenance["sha256"] == hub.sha256_of(weights)
    assert [(i["id"], i["name"], i["index"], i["size"]) for i in document["images"]] == [
        (1, images[0], 0, [96, 128]), (2, f"{video}#0", 0, [64, 96]), (3, f"{video}#1", 1, [64, 96])]
    assert {r["image_id"] for r in document["results"]} == {1, 2, 3}

    # the next input is corrupt: the error is one line, the finished frame stays in results.json.partial
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    out = tmp_path / "crash.json"
    assert cli.main(["predict", NAME, images[1], str(broken), "--weights", str(weights), "-o", str(out)]) == 1
    assert "broken.png" in one_error_line(capsys.readouterr().err)
    assert not out.exists()
    lines = [json.loads(line) for line in Path(f"{out}.partial").read_text().splitlines()]
    assert lines[0]["provenance"]["model"] == NAME and [f["name"] for f in lines[1:]] == [images[1]]


# ------------------------------------------------------------------------------------------------ demo

def test_demo_clip_is_the_generated_one_and_is_packaged():
    from setuptools.config.setupcfg import read_configuration

    assert ASSET.stat().st_size < 300_000
    decoded = [frame.image for frame in vfe_hub.io.open_frames(str(ASSET))]
    assert len(decoded) == FRAMES and decoded[0].shape == (*SIZE, 3)
    for got, want in zip(decoded, demo_frames()):
        assert abs(got.astype(float) - want).mean() < 5  # H.264 at its default quality
    patterns = read_configuration(REPO / "setup.cfg")["options"]["package_data"]["vfe_hub"]
    assert any(Path("assets", ASSET.name).match(p) for p in patterns)


@pytest.mark.slow
def test_demo_end_to_end_against_the_test_hub(fake_hub, tmp_path, monkeypatch, capsys):
    """``vfe-hub demo`` loads MAMBA by name from the (test) Hub, runs it on the shipped clip, writes results and
    drawn frames."""
    spec = registry.get_spec(NAME)
    buffer = io.BytesIO()
    write_mmcv_checkpoint(buffer, random_state(mamba_layout(), seed=1))
    commit = fake_hub.add_file(spec.weights.repo_id, spec.weights.filename, buffer.getvalue())
    monkeypatch.setitem(registry.MODELS, NAME, dataclasses.replace(
        spec, preprocess=TINY, weights=dataclasses.replace(spec.weights, revision=commit[:7])))
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out-dir", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "results.json") in printed and str(out / "frames") in printed
    document = json.loads((out / "results.json").read_text())
    assert document["provenance"]["revision"] == commit[:7] and document["provenance"]["model"] == NAME
    assert [i["index"] for i in document["images"]] == list(range(FRAMES))
    drawn = sorted((out / "frames").iterdir())
    assert len(drawn) == FRAMES and all(p.suffix == ".jpg" for p in drawn)
    assert fake_hub.requests


def test_the_ways_out_of_an_offline_demo_exist_on_the_demo(fake_hub, tmp_path, monkeypatch, capsys):
    """Offline with nothing cached, the demo's error names weights=: every command that loads a model takes
    --weights."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    assert cli.main(["demo", "--out-dir", str(tmp_path / "demo"), "--device", "cpu"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "HF_HUB_OFFLINE" in line and "pass weights=<a local file or folder>" in line
    parse = cli.parser().parse_args
    weights = str(tmp_path / "w")
    for argv in (["demo"], ["predict", NAME, "a.jpg"], ["track", "gtr_dr2101_tao", "a.mp4", "-o", "t.json"],
                 ["evaluate", NAME, "imagenet_vid", "--root", str(tmp_path)]):
        assert parse([*argv, "--weights", weights]).weights == weights
    assert not (tmp_path / "demo").exists()


# ------------------------------------------------------------------------------------------------ test subsets

@pytest.mark.slow
def test_fast_subset_leaves_the_slow_tests_out():
    def collected(*args: str) -> set[str]:
        out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                              *args], capture_output=True, text=True, env=ENV, cwd=REPO, check=True).stdout
        return {line for line in out.splitlines() if "::" in line}

    everything, fast = collected(), collected("-m", "not slow")
    assert fast < everything
    assert "tests/test_cli.py::test_demo_end_to_end_against_the_test_hub" in everything - fast
