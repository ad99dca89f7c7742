"""``masks=False``: the segmenting models skip their mask heads, pasting and encoding; boxes stay the same."""
from __future__ import annotations

import json

import pytest
import torch

from media import photo, write_image
from small_models import small_model
from vfe_hub import cli, hub, registry
from vfe_hub.errors import VfeHubError

SEGMENTING = ["detpro_r50_fpn_lvis1", "lst_r50_fpn_lvis05", "bags_gs_htc_x101_dcn_lvis05"]


@pytest.mark.parametrize("name", SEGMENTING)
def test_boxes_only_equal_the_boxes_with_masks(name):
    model = small_model(name)
    image = photo("coffee", size=(96, 128))
    [full] = model.predict([image])
    [boxes] = model.predict([image], masks=False)
    assert len(full) > 0 and full.masks is not None and boxes.masks is None
    assert torch.equal(boxes.boxes, full.boxes) and torch.equal(boxes.scores, full.scores)
    assert torch.equal(boxes.labels, full.labels)
    assert "segmentation" in full.to_json()[0] and "segmentation" not in boxes.to_json()[0]
    for bad in ("no", 0, None):
        with pytest.raises(VfeHubError, match=f"masks must be True or False, got {bad!r}"):
            model.predict([image], masks=bad)


def test_models_without_masks_name_their_options():
    model = small_model("mamba_r101_dc5_vid")
    with pytest.raises(TypeError, match="masks"):
        model.predict([photo(size=(48, 64))], masks=False)


def test_cli_no_masks_reaches_the_model(monkeypatch, tmp_path):
    """``vfe-hub predict --no-masks`` runs the model with ``masks=False``: records without segmentation."""
    name = "detpro_r50_fpn_lvis1"
    model = small_model(name)
    spec = model.spec
    monkeypatch.setitem(registry.MODELS, name, spec)
    config = {"name": name, "family": spec.family, "config": spec.config, "classes": list(model.class_names),
              "category_ids": model.category_ids}
    hub.write_model_dir(tmp_path / "w", model.state_dict(), config, card="")
    image = write_image(tmp_path / "coffee.png", photo("coffee", size=(96, 128)))
    for flags, segmented in (([], True), (["--no-masks"], False)):
        out = tmp_path / f"out{len(flags)}.json"
        assert cli.main(["predict", name, str(image), "--weights", str(tmp_path / "w"), "-o", str(out), "-q",
                         *flags]) == 0
        records = json.loads(out.read_text())["results"]
        assert records and all(("segmentation" in r) == segmented for r in records)
