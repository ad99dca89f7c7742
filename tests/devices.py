"""The device of the model and engine tests: ``VFE_HUB_TEST_DEVICE`` (default ``cpu``; e.g. ``cuda``).

    VFE_HUB_TEST_DEVICE=cuda python -m pytest tests/test_precision.py tests/test_device.py

The models of ``small_models`` are built on it and the ``device`` fixture (``conftest.py``) returns it, so the model
and engine tests run on a GPU unchanged. Where this machine lacks the device, the tests that need it skip with
one reason naming the variable and what is missing; the other tests run as usual.
"""
from __future__ import annotations

import os

import pytest
import torch

#: the environment variable naming the device of the model and engine tests
DEVICE_VARIABLE = "VFE_HUB_TEST_DEVICE"


def device_under_test() -> torch.device:
    """The device the model and engine tests run on: ``$VFE_HUB_TEST_DEVICE`` (default ``cpu``). A device this
    machine lacks skips the calling test with the reason."""
    from vfe_hub.api import resolve_device
    from vfe_hub.errors import VfeHubError

    name = os.environ.get(DEVICE_VARIABLE, "cpu")
    try:
        return resolve_device(name)
    except VfeHubError as e:
        # A skip, not a failure, by design: the variable is an explicit request for a device, and on a machine
        # without it only the tests that need it cannot run; the rest of the suite still does. It is never silent:
        # the reason names the variable and the missing device, and ``-ra`` (setup.cfg) prints it in the summary;
        # tests/test_device.py checks the reason. Unset (CI, the README's command) the device is the CPU, which every
        # machine has, so this line is not reached there.
        pytest.skip(f"{DEVICE_VARIABLE}={name}: {e}")
