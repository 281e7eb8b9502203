"""Run settings: presets validate, overrides parse, every impossible setting names its field."""

import pytest

from mhmoe.cl.entries import adapter_config, resolve_entries
from mhmoe.cl.methods import METHODS
from mhmoe.config import RunConfig, describe_settings, load_config, presets
from mhmoe.errors import ConfigError


@pytest.mark.parametrize("name", sorted(presets()))
def test_every_preset_validates(name):
    config = load_config(name)
    for kind in config.adapters:
        adapter_config(config, kind)


def test_presets_include_quickstart_and_the_research_setups():
    assert {"quickstart", "trace-qwen3-0.6b", "trace-qwen3-8b"} <= set(presets())
    research = load_config("trace-qwen3-0.6b")
    assert research.model.name == "Qwen/Qwen3-0.6B" and research.data.benchmark == "trace"
    assert (research.train.epochs, research.train.max_length, research.train.lr) == (2, 2048, 1e-4)


RESEARCH_TABLES = ["table1", "table2", "table3", "table4", "routers", "routers-balance"]


@pytest.mark.parametrize("name", RESEARCH_TABLES)
def test_research_tables_come_as_a_trace_preset_and_a_cpu_twin_on_the_same_seeds_and_claims(name):
    trace, cpu = load_config(name), load_config(f"{name}-cpu")
    assert trace.model.name == "Qwen/Qwen3-0.6B" and trace.data.benchmark == "trace"
    assert (trace.train.epochs, trace.train.max_length, trace.train.batch_size, trace.train.lr) == (2, 2048, 10, 1e-4)
    assert cpu.model.name == "smollm2-135m-instruct" and cpu.data.benchmark == "builtin"
    assert trace.seeds == cpu.seeds and trace.claims == cpu.claims
    assert len(cpu.seeds) >= (5 if cpu.claims else 3)  # a preset that states verdicts runs at least 5 seeds
    assert [e.name for e in resolve_entries(trace)] == [e.name for e in resolve_entries(cpu)]
    assert [e.adapter for e in resolve_entries(trace)] == [e.adapter for e in resolve_entries(cpu)]


def test_research_tables_hold_the_papers_configurations():
    table1 = {e.name: e for e in resolve_entries(load_config("table1"))}
    assert list(table1) == ["seqlora", "ewc", "gem", "olora", "replay", "loramoe", "mhmoe"]  # replay: the control
    assert (table1["loramoe"].adapter.experts, table1["loramoe"].adapter.top_k) == (4, 1)
    mh = table1["mhmoe"].adapter
    assert (mh.heads, mh.experts, mh.top_k) == (8, 4, 1)
    wide = resolve_entries(load_config("table2"))[1]
    assert (wide.adapter.experts, wide.adapter.top_k, wide.match) == (26, 5, "total")
    orders = load_config("table3").orders  # Appendix A.3.4, verbatim
    assert orders["order-1"] == [
        "FOMC",
        "C-STANCE",
        "ScienceQA",
        "Py150",
        "MeetingBank",
        "NumGLUE-cm",
        "NumGLUE-ds",
        "20Minuten",
    ]
    assert orders["order-2"][4:7] == ["NumGLUE-ds", "NumGLUE-cm", "MeetingBank"]
    assert orders["order-3"][4:7] == ["MeetingBank", "NumGLUE-ds", "NumGLUE-cm"]
    assert len(load_config("table3-cpu").orders) == 3
    heads = {e.name: e.adapter.heads for e in resolve_entries(load_config("table4-cpu"))}
    assert sorted(heads.values()) == [2, 4, 8, 16]
    assert all(576 % h == 0 and 1536 % h == 0 for h in heads.values())  # SmolLM2's MLP widths
    assert load_config("trace-qwen3-8b").train.epochs == 5  # Appendix A.3.4
    taskfree = load_config("taskfree-cpu")
    assert taskfree.modes == ["boundaries", "taskfree"] and len(taskfree.seeds) == 5 and taskfree.claims
    assert taskfree.stream.schedule == "stream" and taskfree.stream.blur == 0.1  # the modes differ in boundaries only
    assert taskfree.stream.eval_every > 0 and taskfree.model.name == "smollm2-135m-instruct"
    for name in ("table5", "table5-cpu"):
        overhead = load_config(name)
        assert overhead.methods == ["loramoe", "mhmoe"] and overhead.train.batch_size == 1
        assert overhead.train.max_length == 512


def test_compare_is_the_quickstart_over_five_seeds():
    quick, compare = load_config("quickstart"), load_config("compare")
    assert quick.seed_list() == [0] and quick.data.test_size >= 100
    assert len(compare.seeds) >= 5 and compare.reference_method() == "mhmoe"
    assert (compare.methods, compare.data, compare.train) == (quick.methods, quick.data, quick.train)


def test_overrides_parse_values_as_yaml():
    config = load_config(None, ["train.lr=3e-3", "methods=[mhmoe]", "adapters.mhmoe.heads=4", "train.max_steps=null"])
    assert config.train.lr == 3e-3 and config.methods == ["mhmoe"] and config.train.max_steps is None
    assert adapter_config(config, "mhmoe").heads == 4 and adapter_config(config, "loramoe").experts == 4
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0 and isinstance(
        load_config(None, ["train.lr=1"]).train.lr, float
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", r"unknown config field 'train\.lrr'"),
        ("train.lr=-1", r"field 'lr' must be a finite number > 0"),
        ("train.eps=.inf", r"field 'eps' must be a finite number > 0, got inf"),
        ("train.weight_decay=.nan", r"field 'weight_decay' must be a finite number >= 0, got nan"),
        ("adapters.lora.kind=mhmoe", r"'adapters.lora.kind' is 'mhmoe'; the section's name is the kind"),
        ("train.batch_size=2.5", r"'train\.batch_size' must be of type int"),
        ("train.betas=[0.9]", r"field 'betas'"),
        ("methods=[lora, nope]", r"unknown method 'nope'"),
        ("methods=[]", r"name no method"),
        ("adapters.mhmoe.top_k=9", r"'top_k'=9 exceeds 'experts'=4"),
        ("adapters.gru.rank=2", r"unknown adapter kind 'gru'"),
        ("adapters.lora.heads=2", r"unknown field\(s\) \['heads'\]"),
        ("data.benchmark=trace", r"'data_dir' is required"),
        ("eval.split=train", r"field 'split'"),
        ("match_activated=dense", r"field 'match_activated'"),
        ("log_with=[paper]", r"unknown tracker 'paper'"),
        ("model=3", r"'model' must be a mapping"),
        ("noequals", r"expected key=value"),
    ],
)
def test_impossible_settings_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_config(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match="bad.yaml: expected a mapping"):
        load_config(bad)


def test_every_setting_has_help():
    rows = describe_settings()
    keys = {key for key, _, _ in rows}
    assert {"train.lr", "data.order", "model.name", "methods", "adapters"} <= keys
    assert all(doc for _, _, doc in rows), [key for key, _, doc in rows if not doc]
    assert RunConfig().to_dict()["train"]["betas"] == [0.9, 0.95]


def test_every_method_option_has_help():
    for method in METHODS.values():
        if method.options is not None:
            rows = describe_settings(method.options, f"method_options.{method.name}.")
            assert rows and all(doc for _, _, doc in rows), [key for key, _, doc in rows if not doc]
