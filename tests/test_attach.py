"""Attaching to Hugging Face models, freezing, saving and loading."""

import json

import pytest
import torch

import mhmoe
from mhmoe.models import TINY_FAMILIES, tiny_model

CONFIGS = [mhmoe.LoRAConfig(), mhmoe.LoRAMoEConfig(top_k=2), mhmoe.MHMoEConfig()]


def randomize_adapter(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mhmoe.adapter_parameters(model).values():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.kind)
def test_attach_adapts_mlp_and_trains_only_adapter(family, config):
    model = tiny_model(family)
    ids = torch.randint(0, 256, (2, 6))
    base_logits = model(ids).logits
    mhmoe.attach(model, config)
    adapted = [n for n, m in model.named_modules() if hasattr(m, "base_layer")]
    assert len(adapted) == 6 and {n.rsplit(".", 1)[-1] for n in adapted} == {"gate_proj", "up_proj", "down_proj"}
    torch.testing.assert_close(model(ids).logits, base_logits)  # B = 0 at start: the base model is unchanged
    randomize_adapter(model)
    model(ids).logits.sum().backward()
    for name, param in model.named_parameters():
        is_adapter = name.rsplit(".", 1)[-1].startswith("adapter_")
        assert param.requires_grad == is_adapter, name
        assert (param.grad is not None) == is_adapter, name


def test_no_match_names_patterns_and_real_modules():
    with pytest.raises(mhmoe.ConfigError, match=r"'w_in'.*gate_proj.*e\.g\. 'model\.layers\.0"):
        mhmoe.attach(tiny_model(), mhmoe.LoRAConfig(target_modules=["w_in"]))


def test_regex_targets_and_attention_projections():
    model = mhmoe.attach(tiny_model(), mhmoe.MHMoEConfig(target_modules=r".*layers\.1\.self_attn\.(q|v)_proj"))
    adapted = sorted(n for n, m in model.named_modules() if hasattr(m, "base_layer"))
    assert adapted == ["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]


def test_heads_not_dividing_names_field_and_module_and_leaves_model_untouched():
    model = tiny_model()
    with pytest.raises(
        mhmoe.ConfigError, match=r"'heads'=3 does not divide in_features=64 of module 'model\.layers\.0"
    ):
        mhmoe.attach(model, mhmoe.MHMoEConfig(heads=3))
    assert not any(hasattr(m, "base_layer") for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_attach_twice_is_refused():
    model = mhmoe.attach(tiny_model(), mhmoe.LoRAConfig())
    with pytest.raises(mhmoe.ConfigError, match="already carries"):
        mhmoe.attach(model, mhmoe.LoRAConfig())


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.kind)
def test_save_load_roundtrip_is_exact(tmp_path, config):
    model = mhmoe.attach(tiny_model(seed=3), config)
    randomize_adapter(model)
    ids = torch.randint(0, 256, (2, 7))
    expected = model(ids).logits
    mhmoe.save_adapter(model, tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "a" / "adapter_model.safetensors")
    assert saved and all(k.rsplit(".", 1)[-1].startswith("adapter_") for k in saved)

    fresh = tiny_model(seed=3)
    mhmoe.load_adapter(fresh, tmp_path / "a")
    assert fresh.mhmoe_config == config
    assert torch.equal(fresh(ids).logits, expected)

    attached = mhmoe.attach(tiny_model(seed=3), config)  # loading into an already attached model works too
    mhmoe.load_adapter(attached, tmp_path / "a")
    assert torch.equal(attached(ids).logits, expected)


@pytest.fixture
def saved_adapter(tmp_path):
    model = mhmoe.attach(tiny_model(), mhmoe.MHMoEConfig(heads=4))
    return mhmoe.save_adapter(model, tmp_path / "adapter")


def test_load_into_other_shape_or_kind_fails_clearly(saved_adapter):
    with pytest.raises(mhmoe.AdapterFileError, match=r"adapted modules do not match.*saved \[64, 128\] vs model"):
        mhmoe.load_adapter(tiny_model(hidden=32, intermediate=128), saved_adapter)
    with pytest.raises(mhmoe.AdapterFileError, match="trained on a 'llama' model, not 'qwen2'"):
        mhmoe.load_adapter(tiny_model("qwen2"), saved_adapter)
    other = mhmoe.attach(tiny_model(), mhmoe.MHMoEConfig(heads=2))
    with pytest.raises(mhmoe.AdapterFileError, match="different adapter"):
        mhmoe.load_adapter(other, saved_adapter)


def test_corrupt_files_are_refused_and_model_left_alone(saved_adapter):
    weights = saved_adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    model = tiny_model()
    with pytest.raises(mhmoe.AdapterFileError, match="adapter_model.safetensors: cannot be read"):
        mhmoe.load_adapter(model, saved_adapter)
    assert getattr(model, "mhmoe_config", None) is None
    (saved_adapter / "adapter_config.json").write_text("{not json")
    with pytest.raises(mhmoe.AdapterFileError, match="adapter_config.json: not valid JSON"):
        mhmoe.load_adapter(model, saved_adapter)


def test_config_with_unknown_field_or_kind_is_refused(saved_adapter):
    path = saved_adapter / "adapter_config.json"
    meta = json.loads(path.read_text())
    meta["config"]["expertz"] = 3
    path.write_text(json.dumps(meta))
    with pytest.raises(mhmoe.ConfigError, match=r"unknown field\(s\) \['expertz'\]"):
        mhmoe.load_adapter(tiny_model(), saved_adapter)
    meta["config"] = {"kind": "prompt"}
    path.write_text(json.dumps(meta))
    with pytest.raises(mhmoe.ConfigError, match="field 'kind' must be one of"):
        mhmoe.load_adapter(tiny_model(), saved_adapter)


def test_missing_folder(tmp_path):
    with pytest.raises(mhmoe.AdapterFileError, match="adapter_config.json: not found"):
        mhmoe.load_adapter(tiny_model(), tmp_path / "nowhere")


def test_wrong_tensors_in_valid_file_leave_unattached_model_untouched(saved_adapter):
    from safetensors.torch import load_file, save_file

    path = saved_adapter / "adapter_model.safetensors"
    tensors = load_file(path)
    name = next(iter(tensors))
    tensors[name] = torch.zeros(1)
    save_file(tensors, path)
    model = tiny_model()
    with pytest.raises(mhmoe.AdapterFileError, match="tensors do not fit this model"):
        mhmoe.load_adapter(model, saved_adapter)
    assert getattr(model, "mhmoe_config", None) is None
    assert not any(hasattr(m, "base_layer") for m in model.modules())


def test_one_table_per_adapter_kind_builds_every_layer():
    """KINDS is the only table: configs, layer classes and MoE layers are views of it, and each row builds."""
    from mhmoe.adapters import ADAPTER_LAYERS, CONFIGS, KINDS, MOE_LAYERS, HeadedMoELinear, build_layer

    assert {name: kind.config for name, kind in KINDS.items()} == CONFIGS
    linear_kinds = {name: kind for name, kind in KINDS.items() if kind.site is None}
    assert set(ADAPTER_LAYERS) == {kind.layer for kind in linear_kinds.values()}
    assert set(MOE_LAYERS) == {kind.layer for kind in KINDS.values() if kind.routed} == {HeadedMoELinear}
    assert set(KINDS) - set(linear_kinds) == {"prefix", "norga"}  # they attach inside attention instead
    base = torch.nn.Linear(16, 12)
    with pytest.raises(mhmoe.ConfigError, match="does not wrap linears"):
        build_layer(mhmoe.PrefixConfig(), base)
    for name, kind in linear_kinds.items():
        config = kind.config(rank=2, alpha=4.0)
        layer = build_layer(config, base)
        assert type(layer) is kind.layer and layer.base_layer is base and layer.scaling == 2.0, name
    assert build_layer(mhmoe.MHMoEConfig(heads=4, top_k=2, balance_coef=0.1), base).heads == 4
    assert build_layer(mhmoe.LoRAMoEConfig(experts=3), base).heads == 1
