"""An adapter_config.json may come from anyone: every field is checked before use, a regex target cannot hang the
machine, and a huge rank is refused before anything of its size is allocated, each with one error naming the
file or the field and the model left unchanged."""

import json
import resource
import time

import pytest

import mhmoe
from mhmoe.errors import MhmoeError
from mhmoe.models import tiny_model

SLOW_REGEX = "(.*)" * 9 + "".join(f"\\{i}" for i in range(9, 0, -1)) + "[^a-z]"
"""Backtracks for minutes on a model's module names (the `regex` library gives up at the time bound)."""


def _set(path, key, value):
    meta = json.loads(path.read_text())
    node = meta
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    path.write_text(json.dumps(meta))


# (case, key in adapter_config.json, value, words the error must hold)
HOSTILE = [
    ("a catastrophic regex target", "config.target_modules", SLOW_REGEX, "took over"),
    ("an invalid regex target", "config.target_modules", "(unclosed", "not a valid regex"),
    ("rank 1e5", "config.rank", 10**5, "tensors do not fit"),
    ("rank 1e12", "config.rank", 10**12, "tensors do not fit"),
    ("modules as a string", "modules", "all of them", "field 'modules'"),
    ("a module size as text", "modules", {"model.layers.0.mlp.up_proj": ["64", 128]}, "field 'modules'"),
    ("base_model as a string", "base_model", "llama", "field 'base_model'"),
    ("size_field set in the file", "config.size_field", "experts", "unknown field(s) ['size_field']"),
    ("kind set to another kind", "config.kind", "lora", "unknown field(s)"),
]


@pytest.fixture
def saved_adapter(tmp_path):
    model = mhmoe.attach(tiny_model(), mhmoe.MHMoEConfig(heads=4))
    return mhmoe.save_adapter(model, tmp_path / "adapter")


@pytest.mark.parametrize(("case", "key", "value", "words"), HOSTILE, ids=[c for c, *_ in HOSTILE])
def test_a_hostile_adapter_config_is_refused_quickly_and_cheaply(case, key, value, words, saved_adapter):
    _set(saved_adapter / "adapter_config.json", key, value)
    model = tiny_model()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    with pytest.raises(MhmoeError) as refused:
        mhmoe.load_adapter(model, saved_adapter)
    assert words in str(refused.value) and "\n" not in str(refused.value), refused.value
    assert time.monotonic() - started < 60  # no hang (a generous bound: the machine is shared)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"{grown_mb:.0f} MB allocated before the refusal"
    assert getattr(model, "mhmoe_config", None) is None


def test_the_unchanged_file_loads(saved_adapter):
    """The control: the same fixture, untouched, loads (so the refusals above are the edits')."""
    model = mhmoe.load_adapter(tiny_model(), saved_adapter)
    assert isinstance(model.mhmoe_config, mhmoe.MHMoEConfig)
