"""The code blocks of the README and of docs/*.md run, so that a statement there that stops being true fails here.

Every ```python block is executed (in a fresh namespace, in the order of its page) and every command of a ```bash
block runs through ``vfe_hub.cli.main``, in a folder holding the files the blocks name: the small models of
tests/small_models.py, served by the test Hub under the registry's names, stand in for the real weights; a
generated clip, photographs, synthetic original releases and a generated LVIS layout stand in for the real files.
A bare expression whose comment is a Python literal (``list_models("*vid*")  # ['mamba_r101_dc5_vid', ...]``) is
checked to equal it. A block that uses ``torch.hub.load(".", ...)`` runs in the repository's folder, as the pages
say (from a clone, in its folder).

What cannot run here is in :data:`NOT_RUN`, each with what stands in for it: a check in this file or the tests
that run the same thing on the test data. :func:`test_every_block_is_run_or_mapped` fails on a block that is in
neither, and on an entry of :data:`NOT_RUN` that no page has any more.
"""
from __future__ import annotations

import ast
import builtins
import configparser
import dataclasses
import io
import json
import re
import shlex
import shutil
import tokenize
from dataclasses import dataclass
from pathlib import Path

import open_clip
import pytest
import torch

from benchmark_layouts import write_lvis
from media import panning_clip, photo, write_image, write_video
from original_layouts import gtr_layout, mamba_layout, random_state, write_mmcv_checkpoint
from small_models import (AMODAL, DETPRO, GTR, SMALL, convert_detpro, serve_amodal_release, tiny_detpro_spec,
                          write_detpro_release)
from vfe_hub import cards, cli, registry

REPO = Path(__file__).resolve().parents[1]
#: CLIP's BPE vocabulary, as open_clip ships it (the file the test GitHub serves at CLIP's pinned commit)
OPEN_CLIP_VOCAB = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
PAGES = ["README.md", *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))]
MAMBA = "mamba_r101_dc5_vid"
#: DetPro's stand-ins (release, converted folder) and the LVIS layout name LVIS v1's categories, as the real files
LVIS_V1 = registry.lvis_v1_categories()
#: the small test size, smaller still (as the command-line tests): the pages' statements, not the network's output
TINY = dataclasses.replace(SMALL, max_size=128, min_size=96)

_MAKE = "the Makefile's targets and .ci/run are checked by test_set_up_is_the_makefile's"
_NETWORK = "installs from PyPI and PyTorch's wheel index (no network here); its pins are checked by " \
           "test_cpu_only_recipe_pins_the_makefile's_versions"
_CUDA = "runs on a GPU; tests/test_sharding.py runs the same commands on the CPU (one process, torchrun, --shard)"
_FGFA = ("ImageNet VID val needs FGFA's motion-IoU table of the whole val set, which fits no small layout; "
         "tests/test_evaluate_model.py evaluates MAMBA on a generated layout (motion_iou='compute') and "
         "tests/test_eval_imagenet_vid.py fetches FGFA's table through the download path")
_TAO = "needs a TAO layout; tests/test_evaluate_tao.py evaluates tao_val (and --fps) on a generated one"
_DEVICE_TESTS = ("runs the suite on a GPU; tests/test_device.py runs the model tests with VFE_HUB_TEST_DEVICE=cpu and "
                 "with a device this machine lacks")
_GPU_CHECK = "needs CUDA; tests/test_gpu_check.py runs the same script in its CPU mode (--device cpu --quick)"
_LST = ("a full-size LST conversion writes 836 MB and its model runs about 20 s per frame on a CPU; "
        "tests/test_lst.py converts LST checkpoints with this command and loads the folder")
_BAGS = ("a full-size BAGS conversion writes 592 MB and its model runs about 90 s per frame on a CPU; "
         "tests/test_bags.py converts BAGS releases with this command, and tests the tao protocol and "
         "--frame-list / --per-frame-dir")

#: (page, first line of a python block or a whole bash command) -> why it does not run here, what runs instead
NOT_RUN: dict[tuple[str, str], str] = {
    ("README.md", "make install"): _MAKE,
    ("README.md", "make test"): _MAKE,
    ("README.md", "python3 -m venv .venv"): _NETWORK,
    ("README.md", ".venv/bin/pip install torch==2.14.1 torchvision==0.29.1 --index-url "
                  "https://download.pytorch.org/whl/cpu"): _NETWORK,
    ("README.md", '.venv/bin/pip install -e ".[test]"'): _NETWORK,
    ("docs/evaluation.md", 'model = vfe_hub.load("mamba_r101_dc5_vid")'): _FGFA,
    ("docs/evaluation.md", "vfe-hub evaluate mamba_r101_dc5_vid imagenet_vid --root data/ILSVRC2015"): _FGFA,
    ("docs/evaluation.md", "vfe-hub evaluate lst_r50_fpn_lvis05 lvis_v05_val --root data/coco --weights lst/"): _LST,
    ("docs/segmentation.md", "vfe-hub convert lst_r50_fpn_lvis05 model_final.pth lst/ --sorted-ids "
                             "lvis_sorted_id_all.json"): _LST,
    ("docs/segmentation.md", 'model = vfe_hub.load("lst_r50_fpn_lvis05", weights="lst/")'): _LST,
    ("docs/segmentation.md", "vfe-hub convert bags_gs_htc_x101_dcn_lvis05 "
                             "gs_htc_dconv_c3-c5_mstrain_400_1400_x101_64x4d_fpn_20e_lvis.pth bags/ "
                             "--groups gs_files/"): _BAGS,
    ("docs/segmentation.md", 'model = vfe_hub.load("bags_gs_htc_x101_dcn_lvis05")'): _BAGS,
    ("docs/segmentation.md", "vfe-hub predict bags_gs_htc_x101_dcn_lvis05 data/tao/frames --frame-list "
                             "validation_img_list.txt --per-frame-dir tao_dets/"): _BAGS,
    ("docs/segmentation.md", "vfe-hub predict bags_gs_htc_x101_dcn_lvis05 frame.jpg --protocol tao -o dets.jsonl"): _BAGS,
    ("docs/teta.md", 'model = vfe_hub.load("gtr_dr2101_tao")'): _TAO,
    ("docs/tracking.md", 'metrics = model.evaluate("tao_val", root="data/tao", '
                         'ann_file="data/tao/annotations/validation.json")'): _TAO,
    ("docs/tracking.md", "vfe-hub evaluate gtr_dr2101_tao tao_val --root data/tao --ann-file "
                         "data/tao/annotations/validation.json --fps 5"): _TAO,
    ("docs/precision.md", "VFE_HUB_TEST_DEVICE=cuda python -m pytest tests/test_precision.py tests/test_device.py "
                          "tests/test_video_models.py"): _DEVICE_TESTS,
    ("docs/precision.md", "python benchmarks/gpu_check.py"): _GPU_CHECK,
    ("docs/sharding.md", "vfe-hub evaluate mamba_r101_dc5_vid imagenet_vid --root data/ILSVRC2015 --device cuda "
                         "--out-dir runs/mamba_vid"): _CUDA,
    ("docs/sharding.md", "vfe-hub evaluate detpro_r50_fpn_lvis1 lvis_v1_val --root data/coco --device cuda "
                         "--batch-size 4 --out-dir runs/detpro_lvis"): _CUDA,
    ("docs/sharding.md", "torchrun --nproc-per-node 8 -m vfe_hub.cli evaluate mamba_r101_dc5_vid imagenet_vid "
                         "--root data/ILSVRC2015 --device cuda --out-dir runs/mamba_vid"): _CUDA,
    ("docs/sharding.md", "vfe-hub evaluate detpro_r50_fpn_lvis1 lvis_v1_val --root data/coco --device cuda "
                         "--shard ${SLURM_ARRAY_TASK_ID}/16 --out-dir runs/detpro_lvis --quiet"): _CUDA,
    ("docs/sharding.md", 'sbatch --dependency=afterok:<array job id> --wrap "vfe-hub evaluate --merge '
                         'runs/detpro_lvis"'): _CUDA,
}
#: bash commands that run as the equivalent vfe-hub command (the Makefile's recipe, checked below)
EQUIVALENT = {"make demo": "vfe-hub demo"}


# ------------------------------------------------------------------------------------------------ the pages' blocks

@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the first line of code
    language: str
    code: str

    def steps(self) -> list[str]:
        """The block's runnable units, as :data:`NOT_RUN` names them: for python the whole block, named by its
        first line that is not an import; for bash each command; continuation lines joined, spaces collapsed,
        comments and lines of shell directives dropped."""
        uncommented = (re.sub(r"\s+#\s.*$", "", line) for line in self.code.replace("\\\n", " ").splitlines())
        lines = [" ".join(line.split()) for line in uncommented if line.strip() and not line.lstrip().startswith("#")]
        if self.language == "python":
            return [next(line for line in lines if not line.startswith("import "))]
        return lines


def blocks(page: str) -> list[Block]:
    """The ```python and ```bash blocks of ``page`` (relative to the repository)."""
    text = (REPO / page).read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^```(python|bash)\n(.*?)^```$", text, flags=re.M | re.S):
        found.append(Block(page, text.count("\n", 0, match.start(2)) + 1, match.group(1), match.group(2)))
    return found


def checked(code: str, filename: str) -> ast.Module:
    """``code`` parsed, each top-level bare expression whose line ends in a comment holding a Python literal turned
    into an assertion that it equals that literal."""
    comments = {token.start[0]: token.string.lstrip("# ").strip()
                for token in tokenize.generate_tokens(io.StringIO(code).readline) if token.type == tokenize.COMMENT}
    tree = ast.parse(code, filename)
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Expr) and node.end_lineno in comments:
            try:
                expected = ast.literal_eval(comments[node.end_lineno])
            except (ValueError, SyntaxError):
                continue
            if isinstance(expected, (list, tuple, str)):
                literal = ast.parse(comments[node.end_lineno], mode="eval").body
                test = ast.Compare(node.value, [ast.Eq()], [literal])
                tree.body[i] = ast.copy_location(ast.Assert(test, ast.Constant(f"{filename}: not {expected!r}")),
                                                 node)
    return ast.fix_missing_locations(tree)


def run(block: Block, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every step of ``block`` that is not in :data:`NOT_RUN`."""
    where = f"{block.page}:{block.line}"
    if block.language == "python":
        if (block.page, block.steps()[0]) in NOT_RUN:
            return
        monkeypatch.chdir(REPO if 'torch.hub.load("."' in block.code else workspace)
        exec(compile(checked(block.code, where), where, "exec"), {"__name__": "__main__"})  # noqa: S102
        return
    monkeypatch.chdir(workspace)
    for command in block.steps():
        if (block.page, command) in NOT_RUN:
            continue
        args = shlex.split(EQUIVALENT.get(command, command))
        assert args[0] == "vfe-hub", f"{where}: {command!r} is neither run nor in NOT_RUN"
        assert cli.main(args[1:]) == 0, f"{where}: {command}"


# ------------------------------------------------------------------------------------------------ the workspace

def _mamba_release(folder: Path) -> None:
    write_mmcv_checkpoint(folder / "epoch_6_model.pth", random_state(mamba_layout(), seed=2))


def _tao_tracks(folder: Path) -> None:
    """A TAO annotation file and tracks of it: a case of the TETA reference data (tests/data/teta)."""
    case = json.loads((REPO / "tests" / "data" / "teta" / "cases.json").read_text())["inputs"]["category_alias"]
    (folder / "annotations").mkdir()
    (folder / "annotations" / "validation.json").write_text(json.dumps(case["ground_truth"]))
    (folder / "tracks.json").write_text(json.dumps(case["results"]))


def _gtr_release(folder: Path) -> None:
    torch.save({"model": random_state(gtr_layout(expander=False), seed=3)}, folder / "GTR_TAO_DR2101.pth")


#: a file a page names -> how to write it into the workspace (only those that a page's blocks name are written)
FILES = {
    "clip.mp4": lambda f: write_video(f / "clip.mp4", panning_clip(n=3, size=(120, 160)), fps=5),
    "street.jpg": lambda f: write_image(f / "street.jpg", photo("coffee", (120, 160))),
    '"a.jpg"': lambda f: [write_image(f / name, photo(p, (96, 128))) for name, p in (("a.jpg", "rocket"),
                                                                                       ("b.jpg", "chelsea"))],
    "detpro_ens_20e.pth": lambda f: write_detpro_release(f, text_tower=(64, 2), categories=LVIS_V1),
    "data/coco": lambda f: write_lvis(f / "data" / "coco", categories=LVIS_V1),
    "epoch_6_model.pth": _mamba_release,
    "GTR_TAO_DR2101.pth": _gtr_release,
    '"annotations/validation.json", "tracks.json"': _tao_tracks,
}


@pytest.fixture
def workspace(fake_hub, github, fake_drive, tmp_path, monkeypatch, request) -> Path:
    """A folder with the files the page's blocks name, and the registry's models that they load by name served
    by the test Hub (and DetPro's release by the test Drive) at the small sizes; DetPro's entry at the test size
    (its release converts and loads under it)."""
    page = request.param
    code = "\n".join(b.code for b in blocks(page))
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.setenv("VFE_HUB_CACHE", str(tmp_path / "vfe_cache"))
    if MAMBA in code or "make demo" in code:
        spec = registry.get_spec(MAMBA)
        buffer = io.BytesIO()
        write_mmcv_checkpoint(buffer, random_state(mamba_layout(), seed=1))
        commit = fake_hub.add_file(spec.weights.repo_id, spec.weights.filename, buffer.getvalue())
        monkeypatch.setitem(registry.MODELS, MAMBA, dataclasses.replace(
            spec, preprocess=TINY, weights=dataclasses.replace(spec.weights, revision=commit[:7])))
    for name, seed in ((GTR, 4), (registry.ALIASES[AMODAL], 5)):
        if name.split(".")[0] in code:
            serve_amodal_release(fake_hub, monkeypatch, tmp_path, name, seed)
    monkeypatch.setitem(registry.MODELS, DETPRO, tiny_detpro_spec())
    shutil.copyfile(OPEN_CLIP_VOCAB, github)
    for named, write in FILES.items():
        if named in code:
            write(folder)
    if DETPRO in code:  # its release on the test Drive, for loads by name
        release = write_detpro_release(tmp_path / "release", text_tower=(64, 2), categories=LVIS_V1,
                                       pickled_config=False)
        drive = registry.get_spec(DETPRO).weights.drive
        fake_drive.add_file(drive.checkpoint.id, "detpro_ens_20e.pth", release["checkpoint"].read_bytes())
        fake_drive.add_file(drive.inputs["embeddings"].id, "iou_neg5_ens.pth", release["embeddings"].read_bytes())
        if "detpro/" in code and f"vfe-hub convert {DETPRO}" not in code:  # a converted folder taken as given
            convert_detpro(release, folder / "detpro")
    return folder


# ------------------------------------------------------------------------------------------------ tests

@pytest.mark.slow
@pytest.mark.parametrize("workspace", PAGES, indirect=True)
def test_page_blocks_run(workspace, monkeypatch, request):
    page = request.node.callspec.params["workspace"]
    for block in blocks(page):
        run(block, workspace, monkeypatch)
    if page == "README.md":  # what its blocks and their comments say they write, where they say
        written = ["vfe_hub_demo/results.json", "vfe_hub_demo/frames", "frame0.jpg", "results.jsonl", "drawn",
                   "street_drawn.jpg", "tracks.json", "tracks.mp4"]
        assert [name for name in written if not (workspace / name).exists()] == []


def test_every_block_is_run_or_mapped():
    listed = [(b.page, step) for page in PAGES for b in blocks(page) for step in b.steps()]
    assert [key for key in NOT_RUN if listed.count(key) > 1] == [], "NOT_RUN must name one block or command each"
    steps = {(b.page, step): b for page in PAGES for b in blocks(page) for step in b.steps()}
    for (page, step), block in steps.items():
        if (page, step) in NOT_RUN or block.language == "python":
            continue
        assert shlex.split(EQUIVALENT.get(step, step))[0] == "vfe-hub", (
            f"{page}:{block.line}: {step!r} does not run here; add it to NOT_RUN with what stands in for it")
    assert [key for key in NOT_RUN if key not in steps] == [], "NOT_RUN names blocks that no page has"
    assert "README.md" in PAGES and len(PAGES) > 5


def test_pages_link_to_existing_pages():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", (REPO / page).read_text(encoding="utf-8")):
            assert (REPO / page).parent.joinpath(target).resolve().is_file(), f"{page} links to {target}"


def test_readme_links_every_docs_page_and_stays_short():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert [p for p in PAGES[1:] if f"({p})" not in readme] == []
    assert len(readme.splitlines()) < 120


def test_set_up_is_the_makefile_s():
    """The README's three set-up commands are Makefile targets; `make demo` is `vfe-hub demo` (run above), and
    `make install` then `make test` are what .ci/run does on a bare copy of the tree."""
    makefile = (REPO / "Makefile").read_text()
    for target in ("install", "demo", "test", "test-fast"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
    assert re.search(r"^demo:\n\t\$\(VENV\)/bin/vfe-hub demo$", makefile, flags=re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.index("make install") < ci.index("make test")
    assert "vfe_hub_demo/" in (REPO / ".gitignore").read_text().splitlines()


def test_cpu_only_recipe_pins_the_makefile_s_versions():
    readme = (REPO / "README.md").read_text()
    recipe = next(b.code for b in blocks("README.md") if "--index-url" in b.code)
    pins = re.search(r"install (torch==\S+ torchvision==\S+) -e", (REPO / "Makefile").read_text()).group(1)
    assert f"pip install {pins} --index-url https://download.pytorch.org/whl/cpu" in recipe
    assert 'pip install -e ".[test]"' in recipe and "make demo" in readme
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert "test" in setup["options.extras_require"]


def test_loads_by_name_follows_the_weights_entry():
    """The model table's column is a rule of the registry's weights entry, so a registry change updates it."""
    pinned = registry.WeightsSpec("owner/repo", "model.pth", "0123abc", "mmdet_v2")
    published = registry.WeightsSpec("vfe-hub/model", "model.safetensors", "0123abc", "vfe_hub")
    unpublished = dataclasses.replace(published, revision=None, originals={"<model.pth>": "somewhere"})
    unreleased = dataclasses.replace(unpublished, unreleased="None were released.")
    assert [cards.loads_by_name(w) for w in (pinned, published, unpublished, unreleased)] == [
        "yes", "yes", "convert first", "no weights released"]
    table = cards.readme_table(list(registry.MODELS.values()))
    for name, spec in registry.MODELS.items():
        assert f"| `{name}` | {spec.task} | {cards.loads_by_name(spec.weights)} |" in table


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_card_snippets_use_only_names_they_define(name):
    """Every name a model card's code reads is a builtin, imported or assigned in the snippet."""
    card = cards.render(registry.MODELS[name])
    [code] = re.findall(r"^```python\n(.*?)^```$", card, flags=re.M | re.S)
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    read = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    assert read - defined == set()
    if cards.loads_by_name(registry.MODELS[name].weights) != "yes":
        assert 'weights="<out_dir>"' in code, "a model that does not load by name loads a converted folder"


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_every_card_states_its_cpu_time_and_how_it_was_measured(name):
    spec = registry.MODELS[name]
    assert spec.cpu_seconds_per_frame and spec.cpu_seconds_per_frame > 0
    card = cards.render(spec)
    command = registry.CPU_SPEED_COMMAND.format(name=spec.architecture or name)
    assert f"{spec.cpu_seconds_per_frame:.1f} s per frame" in card and f"`{command}`" in card
    script = (REPO / command.split()[1]).read_text()
    assert all(f'"{option}"' in script for option in re.findall(r"--[a-z-]+", command)), "options the script has"
