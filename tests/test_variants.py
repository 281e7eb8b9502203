"""Named variants: validation, parameter matching by activated or total parameters (counts worked out by
hand), and their place in results.json, the reports and adapters/."""

import json

import pytest
import torch
from torch import nn

import mhmoe
from mhmoe.adapters import OLoRAConfig
from mhmoe.cl.entries import adapter_config, resolve_entries
from mhmoe.cl.run import matched_entries, run
from mhmoe.config import load_config
from mhmoe.errors import ConfigError
from mhmoe.models import tiny_model

TINY = [
    "model.name=tiny:llama",
    "data.order=[Stance-Policy, Stance-CentralBank]",
    "data.train_size=8",
    "data.test_size=4",
    "train.max_steps=2",
    "train.batch_size=4",
    "progress=false",
]
VARIANTS = (
    "variants={mhmoe-h2: {method: mhmoe, adapter: {heads: 2}, match: none},"
    " loramoe-k26-top5: {method: loramoe, adapter: {experts: 26, top_k: 5}, match: total}}"
)


class SmolLM2Layer(nn.Module):
    """One decoder layer's MLP at SmolLM2-135M's widths (hidden 576, intermediate 1536), on the meta device."""

    def __init__(self) -> None:
        super().__init__()
        with torch.device("meta"):
            self.gate_proj, self.up_proj = nn.Linear(576, 1536, bias=False), nn.Linear(576, 1536, bias=False)
            self.down_proj = nn.Linear(1536, 576, bias=False)


def test_total_parameters_equal_what_attach_allocates():
    for config in (
        mhmoe.LoRAConfig(rank=3),
        mhmoe.LoRAMoEConfig(rank=2, experts=26, top_k=5),
        mhmoe.MHMoEConfig(rank=2, experts=4, heads=8),
        OLoRAConfig(rank=2, tasks=3),
    ):
        counted = mhmoe.count_parameters(mhmoe.attach(tiny_model(), config)).total
        shapes = [(64, 128), (64, 128), (128, 64)] * 2  # tiny llama: 2 layers of gate, up, down
        assert sum(mhmoe.total_parameters(config, i, o) for i, o in shapes) == counted, config.kind


def test_route_space_matched_budgets_at_smollm2_widths_by_hand():
    mh = mhmoe.MHMoEConfig(rank=8, experts=4, heads=8, top_k=1)  # 4^8 = 65,536 paths
    wide = mhmoe.LoRAMoEConfig(experts=26, top_k=5)  # C(26, 5) = 65,780 expert sets
    # MH-MoE, gate/up 576 -> 1536: routers 576*4 = 2,304; activated 8 heads * 8 * (72 + 1536) = 102,912;
    # total adds every expert: 4 * 8 * (576 + 8 * 1536) = 411,648. down 1536 -> 576: routers 6,144;
    # activated 8 * (1536 + 8 * 576) = 49,152; total 32 * (1536 + 8 * 576) = 196,608.
    assert mhmoe.activated_parameters(mh, 576, 1536) == 2304 + 102912
    assert mhmoe.total_parameters(mh, 576, 1536) == 2304 + 411648
    assert mhmoe.total_parameters(mh, 1536, 576) == 6144 + 196608
    # One layer: activated 2 * 105,216 + 55,296 = 265,728; total 2 * 413,952 + 202,752 = 1,030,656.
    # LoRAMoE K=26 top-5 at rank r: routers 2 * 576 * 26 + 1536 * 26 = 69,888; activated adds
    # 5 r (576 + 1536) per module = 31,680 r; total adds 26 r * 2,112 per module = 164,736 r.
    # Activated: r = (265,728 - 69,888) / 31,680 = 6.18 -> 6; total: (1,030,656 - 69,888) / 164,736 = 5.83 -> 6.
    layer = SmolLM2Layer()
    assert mhmoe.matched_rank(layer, wide, mh, "activated") == 6
    assert mhmoe.matched_rank(layer, wide, mh, "total") == 6
    assert (
        sum(
            mhmoe.activated_parameters(wide.__class__(rank=6, experts=26, top_k=5), *s)
            for s in [(576, 1536), (576, 1536), (1536, 576)]
        )
        == 69888 + 31680 * 6
    )
    # The budgets differ where they should: LoRA matched by total needs a much larger rank than by activated.
    lora = mhmoe.LoRAConfig()
    # LoRA: r * 3 * 2,112 = 6,336 r; activated 265,728 / 6,336 = 41.9 -> 42; total 1,030,656 / 6,336 = 162.7 -> 163
    assert mhmoe.matched_rank(layer, lora, mh, "activated") == 42
    assert mhmoe.matched_rank(layer, lora, mh, "total") == 163
    with pytest.raises(ConfigError, match="budget"):
        mhmoe.matched_rank(layer, lora, mh, "flops")


def test_variants_resolve_with_their_own_fields_and_options():
    config = load_config(
        None,
        [
            "methods=[mhmoe]",
            VARIANTS,
            "method_options={ewc: {lam: 5.0}}",
            "variants.ewc-strong={method: ewc, method_options: {lam: 500.0}}",
            "compare_to=mhmoe-h2",
        ],
    )
    entries = {e.name: e for e in resolve_entries(config)}
    assert list(entries) == ["mhmoe", "mhmoe-h2", "loramoe-k26-top5", "ewc-strong"]
    assert entries["mhmoe-h2"].adapter.heads == 2 and entries["mhmoe-h2"].adapter.experts == 4
    assert entries["mhmoe-h2"].match == "none" and entries["loramoe-k26-top5"].match == "total"
    assert (entries["loramoe-k26-top5"].adapter.experts, entries["loramoe-k26-top5"].adapter.top_k) == (26, 5)
    assert entries["ewc-strong"].options.lam == 500.0 and entries["ewc-strong"].method == "ewc"
    assert config.reference_method() == "mhmoe-h2"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("variants={x: {method: dense}}", r"'variants.x.method' has unknown method 'dense'"),
        ("variants={x: {method: mhmoe, adapter: {depth: 3}}}", r"variants.x.adapter.*unknown field.*depth"),
        ("variants={x: {method: mhmoe, adapter: {heads: 0}}}", r"field 'heads'"),
        ("variants={x: {method: mhmoe, adapter: {kind: lora}}}", r"the kind follows the method"),
        ("variants={x: {method: mhmoe, match: flops}}", r"'variants.x.match' must be one of"),
        ("variants={x: {method: mhmoe, size: 3}}", r"unknown config field 'variants.x.size'"),
        ("variants={x: {adapter: {heads: 2}}}", r"'variants.x' needs a 'method'"),
        ("variants={x: {method: ewc, method_options: {lamb: 1}}}", r"variants.x.method_options.lamb"),
        ("variants={x: {method: lora, method_options: {lam: 1}}}", r"takes no options"),
        ("variants={mhmoe: {method: mhmoe}}", r"variant 'mhmoe' has the name of a method"),
        ("variants={a/b: {method: mhmoe}}", r"variant name 'a/b'"),
        ("variants={x: [mhmoe]}", r"'variants.x' must be a mapping"),
        ("compare_to=nobody", r"not a method or variant"),
    ],
)
def test_a_bad_variant_is_one_line_naming_the_field(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


def test_methods_may_be_empty_when_variants_name_the_rows():
    config = load_config(None, ["methods=[]", "variants={only: {method: lora}}"])
    assert [e.name for e in resolve_entries(config)] == ["only"]
    with pytest.raises(ConfigError, match="name no method"):
        load_config(None, ["methods=[]"])


def test_each_variant_is_matched_by_its_own_budget():
    config = load_config(None, ["methods=[mhmoe, loramoe]", VARIANTS, "model.name=tiny:llama"])
    entries = matched_entries(config, tiny_model(), 2)
    reference = adapter_config(config, "mhmoe")
    assert entries["mhmoe"].adapter == reference
    assert entries["mhmoe-h2"].adapter.rank == reference.rank  # match: none keeps the configured rank
    assert entries["loramoe"].adapter.rank == mhmoe.matched_rank(
        tiny_model(), adapter_config(config, "loramoe"), reference
    )
    wide = resolve_entries(config)[-1].adapter
    assert entries["loramoe-k26-top5"].adapter.rank == mhmoe.matched_rank(tiny_model(), wide, reference, "total")
    assert entries["loramoe-k26-top5"].adapter.scaling == wide.scaling


def test_variants_are_rows_of_results_reports_and_adapter_folders(tmp_path):
    run_dir = run(
        load_config(None, [*TINY, f"output_dir={tmp_path}", "name=v", "methods=[mhmoe]", VARIANTS, "seeds=[0, 1]"])
    )
    results = json.loads((run_dir / "results.json").read_text())
    assert list(results["summary"]) == ["mhmoe", "mhmoe-h2", "loramoe-k26-top5"]
    assert set(results["paired"]) == {"mhmoe-h2", "loramoe-k26-top5"}
    seed = json.loads((run_dir / "seed-0" / "results.json").read_text())["methods"]
    assert seed["mhmoe-h2"]["method"] == "mhmoe" and seed["mhmoe-h2"]["adapter"]["heads"] == 2
    assert seed["loramoe-k26-top5"]["match"] == "total" and seed["loramoe-k26-top5"]["adapter"]["experts"] == 26
    top = (run_dir / "report.md").read_text()
    assert "| method | activated params | total params |" in top
    for name in ("mhmoe-h2", "loramoe-k26-top5"):
        total = f"{seed[name]['parameters']['total']:,}"
        assert f"| {name} | {seed[name]['parameters']['activated']:,} | {total} |" in top
        assert f"### {name}" in (run_dir / "seed-0" / "report.md").read_text()
        assert (run_dir / "seed-1" / "adapters" / name / "2-Stance-CentralBank" / "adapter_config.json").is_file()
