"""Shared fixtures: tests run on CPU, deterministic, with a per-session cache for the default model."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub; fail fast instead of hanging

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
