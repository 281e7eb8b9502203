"""Run settings: presets validate, overrides parse, every impossible setting names its field."""

import pytest

from mhmoe.cl.methods import METHODS
from mhmoe.config import RunConfig, describe_settings, load_config, presets
from mhmoe.errors import ConfigError


@pytest.mark.parametrize("name", sorted(presets()))
def test_every_preset_validates(name):
    config = load_config(name)
    for kind in config.adapters:
        config.adapter(kind)


def test_presets_include_quickstart_and_the_research_setups():
    assert {"quickstart", "trace-qwen3-0.6b", "trace-qwen3-8b"} <= set(presets())
    research = load_config("trace-qwen3-0.6b")
    assert research.model.name == "Qwen/Qwen3-0.6B" and research.data.benchmark == "trace"
    assert (research.train.epochs, research.train.max_length, research.train.lr) == (2, 2048, 1e-4)


def test_compare_is_the_quickstart_over_five_seeds():
    quick, compare = load_config("quickstart"), load_config("compare")
    assert quick.seed_list() == [0] and quick.data.test_size >= 100
    assert len(compare.seeds) >= 5 and compare.reference_method() == "mhmoe"
    assert (compare.methods, compare.data, compare.train) == (quick.methods, quick.data, quick.train)


def test_overrides_parse_values_as_yaml():
    config = load_config(None, ["train.lr=3e-3", "methods=[mhmoe]", "adapters.mhmoe.heads=4", "train.max_steps=null"])
    assert config.train.lr == 3e-3 and config.methods == ["mhmoe"] and config.train.max_steps is None
    assert config.adapter("mhmoe").heads == 4 and config.adapter("loramoe").experts == 4
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0 and isinstance(
        load_config(None, ["train.lr=1"]).train.lr, float
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", r"unknown config field 'train\.lrr'"),
        ("train.lr=-1", r"field 'lr' must be a number > 0"),
        ("train.batch_size=2.5", r"'train\.batch_size' must be of type int"),
        ("train.betas=[0.9]", r"field 'betas'"),
        ("methods=[lora, nope]", r"unknown method 'nope'"),
        ("methods=[]", r"names no method"),
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
