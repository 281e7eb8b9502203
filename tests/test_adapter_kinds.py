"""An adapter kind is one row of mhmoe.adapters.KINDS: a toy kind defined here, added as one row (and one method
row that trains it), attaches, counts, saves, loads and runs a whole continual-learning stream."""

import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file
from tiny_runs import tiny_run
from torch import nn

import mhmoe
from mhmoe.adapters import CONFIGS, KINDS, AdapterConfig, AdapterKind, config_from_dict, linear_layers
from mhmoe.cl.evaluate_adapter import evaluate_adapter
from mhmoe.cl.methods import METHODS, Method, NoHooks
from mhmoe.cl.run import run
from mhmoe.config import load_config
from mhmoe.models import tiny_model

TASKS = ["Stance-Policy", "Arithmetic"]


@dataclass
class ScaleConfig(AdapterConfig):
    """A learned scale on every output feature of the adapted linears (as in IA3)."""

    kind: ClassVar[str] = "scale"

    def activated_parameters(self, d_in: int, d_out: int) -> int:
        return d_out

    def total_parameters(self, d_in: int, d_out: int) -> int:
        return d_out


class ScaleLinear(nn.Module):
    """y = (1 + s) * W x, with s = 0 at the start, so the adapted model begins as the base model."""

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        w = base_layer.weight
        self.adapter_scale = nn.Parameter(torch.zeros(base_layer.out_features, device=w.device, dtype=w.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x) * (1 + self.adapter_scale)


SCALE = AdapterKind(ScaleConfig, ScaleLinear, lambda config: {})


@pytest.fixture
def scale_kind(monkeypatch):
    """The toy kind's one row in KINDS, and a method that trains it; both gone after the test."""
    monkeypatch.setitem(KINDS, "scale", SCALE)
    monkeypatch.setitem(METHODS, "scale", Method("scale", "scale", NoHooks, "a learned scale per output feature"))


def test_one_row_is_the_whole_registration(monkeypatch):
    with monkeypatch.context() as patch:
        patch.setitem(KINDS, "scale", SCALE)
        assert CONFIGS["scale"] is ScaleConfig and ScaleLinear in linear_layers()
        assert config_from_dict({"kind": "scale", "target_modules": ["up_proj"]}) == ScaleConfig(["up_proj"])
        assert not ScaleConfig().per_task and ScaleConfig().router_heads == 1 and not ScaleConfig().routers_fixed
    assert "scale" not in CONFIGS and ScaleLinear not in linear_layers()


def test_the_toy_kind_attaches_counts_saves_and_loads(scale_kind, tmp_path):
    model = tiny_model()
    ids = torch.randint(0, 256, (2, 6))
    base_logits = model(ids).logits
    mhmoe.attach(model, ScaleConfig())
    torch.testing.assert_close(model(ids).logits, base_logits)  # s = 0: the base model exactly
    adapted = {n: m for n, m in model.named_modules() if isinstance(m, ScaleLinear)}
    assert len(adapted) == 6  # gate, up and down projections of both layers
    widths = sum(m.base_layer.out_features for m in adapted.values())
    counts = mhmoe.count_parameters(model)
    assert counts.total == counts.activated == counts.trainable == widths
    with torch.no_grad():
        for p in mhmoe.adapter_parameters(model).values():
            p.uniform_(-0.5, 0.5)
    logits = model(ids).logits
    assert not torch.allclose(logits, base_logits)
    mhmoe.save_adapter(model, tmp_path / "scale")
    assert json.loads((tmp_path / "scale" / "adapter_config.json").read_text())["config"]["kind"] == "scale"
    loaded = mhmoe.load_adapter(tiny_model(), tmp_path / "scale")  # the same seeded base weights
    assert isinstance(loaded.mhmoe_config, ScaleConfig)
    torch.testing.assert_close(loaded(ids).logits, logits)


def test_the_toy_kind_runs_a_whole_stream(scale_kind, tmp_path):
    config = load_config(
        None, [*tiny_run(TASKS, steps=2), "methods=[scale]", "match_activated=null", f"output_dir={tmp_path}"]
    )
    run_dir = run(config)
    result = json.loads((run_dir / "results.json").read_text())["methods"]["scale"]
    assert result["adapter"]["kind"] == "scale"
    assert len(result["R"]) == 2 and all(len(row) == 2 and all(0 <= s <= 100 for s in row) for row in result["R"])
    assert result["parameters"]["activated"] == result["parameters"]["total"] > 0
    saved = run_dir / "adapters" / "scale" / f"2-{TASKS[-1]}"
    assert all(t.abs().max() > 0 for t in load_file(saved / "adapter_model.safetensors").values())  # it trained
    names, row = evaluate_adapter(saved)
    assert names == TASKS and row.scores == result["R"][-1]
