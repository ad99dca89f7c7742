"""The registry is the single source: every entry is complete, and the cards, README and hubconf follow it."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import vfe_hub
from vfe_hub import cards, registry
from vfe_hub.convert import FORMATS

REPO = Path(__file__).resolve().parents[1]
KNOWN_TASKS = {"video-object-detection", "object-detection", "instance-segmentation", "open-vocabulary-detection",
               "multi-object-tracking", "amodal-tracking"}


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_entry_schema(name):
    spec = registry.MODELS[name]
    assert spec.name == name and re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)?", name)
    if "." in name:  # a weight variant: <architecture>.<tag>, the architecture naming its default variant
        assert spec.architecture == name.split(".")[0] and registry.ALIASES[spec.architecture] in registry.MODELS
        assert vfe_hub.model_info(spec.architecture)["name"] == registry.ALIASES[spec.architecture]
    assert spec.task in KNOWN_TASKS
    w = spec.weights
    if spec.classes:
        assert len(spec.classes) == len(set(spec.classes))
    else:  # only an open vocabulary may ship its default classes with the weights (config.json)
        assert spec.task == "open-vocabulary-detection" and w.format == "vfe_hub"
        assert importlib.import_module(f"vfe_hub.models.{spec.family}").build(spec).open_vocabulary
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", w.repo_id) and w.filename
    if w.revision is None:  # a repository of converted weights not published yet: say where the originals are
        assert w.format == "vfe_hub" and w.sources()
    else:
        assert re.fullmatch(r"[0-9a-f]{7,40}", w.revision), "a revision is a commit id, never a branch"
    assert w.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", w.sha256)
    assert w.format == "vfe_hub" or w.format in FORMATS
    family = importlib.import_module(f"vfe_hub.models.{spec.family}")
    assert callable(family.build)
    p = spec.preprocess
    assert p.max_size >= p.min_size > 0 and p.size_divisor > 0 and len(p.mean) == len(p.std) == 3
    assert spec.paper.url.startswith("https://") and "@" in spec.paper.citation
    assert spec.metrics or spec.metrics_note, "the paper's numbers, or why they are missing"
    assert all(isinstance(v, float) for m in spec.metrics.values() for v in m.values())
    assert set(spec.datasets) >= set(spec.metrics)
    assert set(spec.dtypes) <= {"float32", "float16", "bfloat16"} and "float32" in spec.dtypes
    assert spec.licence and spec.summary and spec.temporal
    if spec.task == "video-object-detection":
        assert set(spec.protocols) == {"streaming", "paper"}


def test_list_models_filters_with_wildcards():
    assert vfe_hub.list_models() == sorted(registry.MODELS)
    assert vfe_hub.list_models("*vid*") == ["mamba_r101_dc5_vid", "stpn_swint_vid"]
    assert vfe_hub.list_models("nothing*") == []


def test_list_models_filters_by_task_and_dataset():
    assert vfe_hub.list_models(task="video-object-detection") == ["mamba_r101_dc5_vid", "stpn_swint_vid"]
    assert vfe_hub.list_models(task="open-vocabulary-detection") == ["detpro_r50_fpn_lvis1"]
    assert vfe_hub.list_models("stpn*", task="video-object-detection") == ["stpn_swint_vid"]
    assert vfe_hub.list_models("stpn*", task="open-vocabulary-detection") == []
    for dataset in ("imagenet_vid", "imagenet_vid_val"):  # the registry's name and the one evaluate() takes
        assert vfe_hub.list_models(dataset=dataset) == ["mamba_r101_dc5_vid", "stpn_swint_vid"]
    for dataset in ("lvis_v1_val", "lvis_v1"):
        assert vfe_hub.list_models(dataset=dataset) == ["detpro_r50_fpn_lvis1"]
    assert vfe_hub.list_models(task="instance-segmentation", dataset="lvis_v05") == ["bags_gs_htc_x101_dcn_lvis05",
                                                                                     "lst_r50_fpn_lvis05"]
    assert vfe_hub.list_models(task="open-vocabulary-detection", dataset="imagenet_vid") == []
    every = {spec.task for spec in registry.MODELS.values()}
    assert sorted(n for t in every for n in vfe_hub.list_models(task=t)) == vfe_hub.list_models()


def test_list_models_takes_the_common_names_of_a_task_in_any_case():
    trackers = ["amodal_expander_dr2101_tao_amodal.20k", "amodal_expander_dr2101_tao_amodal.pno_20k",
                "amodal_expander_dr2101_tao_amodal.pno_45k", "gtr_dr2101_tao"]
    assert vfe_hub.list_models(task="tracking") == vfe_hub.list_models(task="Tracking") == trackers
    assert vfe_hub.list_models(task="MOT") == vfe_hub.list_models(task="Multi Object Tracking") == ["gtr_dr2101_tao"]
    assert vfe_hub.list_models(task="video_object_detection") == ["mamba_r101_dc5_vid", "stpn_swint_vid"]
    assert vfe_hub.list_models(task="open-vocabulary") == ["detpro_r50_fpn_lvis1"]
    for synonym, tasks in registry.TASK_SYNONYMS.items():
        assert set(tasks) <= {spec.task for spec in registry.MODELS.values()}, synonym


def test_unknown_names_get_suggestions_in_any_case():
    with pytest.raises(vfe_hub.errors.UnknownModelError, match="Did you mean 'mamba_r101_dc5_vid'"):
        vfe_hub.load("MAMBA_R101_DC5_VID")
    with pytest.raises(vfe_hub.VfeHubError, match="Did you mean 'video-object-detection'"):
        vfe_hub.list_models(task="Video-Objects-Detection")


def test_list_models_rejects_unknown_task_or_dataset():
    with pytest.raises(vfe_hub.VfeHubError, match=r"Unknown task 'video-objects-detection'\. Did you mean "
                                                  r"'video-object-detection'\? Valid: amodal-tracking, "
                                                  r"instance-segmentation, multi-object-tracking, "
                                                  r"open-vocabulary-detection, video-object-detection; also "
                                                  r"amodal, .*tracking, vid, .*zero-shot-object-detection\."):
        vfe_hub.list_models(task="video-objects-detection")
    with pytest.raises(vfe_hub.VfeHubError, match=r"Unknown dataset 'coco'\. Valid: imagenet_vid, "
                                                  r"imagenet_vid_val, lvis_v05, lvis_v05_val, lvis_v1, "
                                                  r"lvis_v1_val, tao, tao_amodal, "
                                                  r"tao_amodal_val, tao_val\."):
        vfe_hub.list_models(dataset="coco")


def test_model_info_is_the_spec():
    info = vfe_hub.model_info("mamba_r101_dc5_vid")
    assert info["task"] == "video-object-detection" and len(info["classes"]) == 30
    assert info["metrics"]["imagenet_vid"]["AP50"] == 83.8 and info["licence"] == "apache-2.0"
    assert info["weights"]["filename"] == "work_dirs/mamba_r101_dc5_6x/epoch_6_model.pth"
    detpro = vfe_hub.model_info("detpro_r50_fpn_lvis1")
    assert detpro["classes"] == () and detpro["weights"]["revision"] is None
    assert detpro["metrics"]["lvis_v1_val"]["mask_APr"] == 19.8 and "2203.14940" in detpro["paper"]["url"]


def test_original_format_weights_must_name_a_commit():
    with pytest.raises(ValueError, match="must be pinned to a commit"):
        registry.WeightsSpec("owner/repo", "model.pth", None, "mmdet_v2")
    assert registry.WeightsSpec("owner/repo", "model.safetensors", None, "vfe_hub").revision is None


@pytest.mark.parametrize("name", sorted(registry.MODELS))
def test_model_card_is_generated_from_the_registry(name):
    card = (REPO / "model_cards" / f"{name}.md").read_text()
    assert card == cards.render(registry.MODELS[name]), "regenerate with vfe_hub.cards.render"
    spec = registry.MODELS[name]
    assert "model-index" in card
    if spec.metrics:
        assert str(next(iter(spec.metrics[spec.datasets[0]].values()))) in card
    else:
        assert spec.metrics_note in card


def test_readme_table_is_generated_from_the_registry():
    assert cards.readme_table(list(registry.MODELS.values())) in (REPO / "README.md").read_text()


def test_pipeline_checks_the_task():
    with pytest.raises(vfe_hub.VfeHubError, match="video-object-detection"):
        vfe_hub.pipeline("video-object-detections")
    with pytest.raises(vfe_hub.VfeHubError, match="'mamba_r101_dc5_vid' solves 'video-object-detection', not "
                                                  "'tracking'; models for 'tracking': gtr_dr2101_tao, amodal"):
        vfe_hub.pipeline("tracking", model="mamba_r101_dc5_vid")  # a common name of the trackers' tasks
    with pytest.raises(vfe_hub.VfeHubError, match="Did you mean"):
        vfe_hub.load("mamba_r101_dc5")
