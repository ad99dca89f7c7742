"""The suite's device switch (``VFE_HUB_TEST_DEVICE``, tests/devices.py) and the engine on that device."""
from __future__ import annotations

import pytest
import torch

from devices import DEVICE_VARIABLE, device_under_test
from media import photo
from small_models import LST_SMALL, SMALL
from vfe_hub import engine
from vfe_hub.io import Frame


def test_the_variable_names_the_device(monkeypatch):
    monkeypatch.delenv(DEVICE_VARIABLE, raising=False)
    assert device_under_test() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_VARIABLE, "cpu")
    assert device_under_test() == torch.device("cpu")


@pytest.mark.parametrize(("name", "why"), [("cuda:63", "cannot be used"), ("gpu", "is not a device name")])
def test_an_absent_device_skips_with_the_reason(monkeypatch, name, why):
    monkeypatch.setenv(DEVICE_VARIABLE, name)
    with pytest.raises(pytest.skip.Exception, match=f"{DEVICE_VARIABLE}={name}: device='{name}' {why}"):
        device_under_test()


@pytest.mark.parametrize("rule", [SMALL, LST_SMALL], ids=["mmcv", "maskrcnn_benchmark"])
def test_preprocessing_on_the_device_matches_the_cpu(device, rule):
    """Resize, normalisation and padding on the device: the mmcv rule (bilinear on floats) within float rounding;
    maskrcnn-benchmark's PIL resize, which only the CPU has as one kernel, within one grey level (in units of the
    rule's std) on at most 1 % of the values."""
    frames = [Frame(photo(name, (150, 200)), name, 0, "<stream>", None) for name in ("astronaut", "coffee")]
    on_cpu = engine.preprocess(frames, rule, torch.device("cpu"))
    on_device = engine.preprocess(frames, rule, device)
    assert on_device.images.device == device and on_device.image_sizes == on_cpu.image_sizes
    assert on_device.scales == on_cpu.scales
    difference = (on_device.images.cpu() - on_cpu.images).abs()
    if rule.style == "mmcv":
        assert difference.max() <= 1e-4
    else:
        assert difference.max() <= 1.0 / min(rule.std) + 1e-4
        assert (difference > 1e-4).float().mean() <= 0.01

