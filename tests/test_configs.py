"""Config validation: every impossible setting is one line naming the field."""

import pytest

import mhmoe


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: mhmoe.LoRAConfig(rank=0), "'rank'"),
        (lambda: mhmoe.LoRAConfig(rank=2.5), "'rank'"),
        (lambda: mhmoe.LoRAConfig(alpha=-1), "'alpha'"),
        (lambda: mhmoe.LoRAConfig(dropout=1.0), "'dropout'"),
        (lambda: mhmoe.LoRAConfig(target_modules=[]), "'target_modules'"),
        (lambda: mhmoe.LoRAConfig(target_modules=[3]), "'target_modules'"),
        (lambda: mhmoe.LoRAMoEConfig(experts=0), "'experts'"),
        (lambda: mhmoe.LoRAMoEConfig(top_k=5, experts=4), "'top_k'=5 exceeds 'experts'=4"),
        (lambda: mhmoe.MHMoEConfig(top_k=0), "'top_k'"),
        (lambda: mhmoe.MHMoEConfig(heads=0), "'heads'"),
        (lambda: mhmoe.MHMoEConfig(balance_coef=-0.1), "'balance_coef'"),
        (lambda: mhmoe.MHMoEConfig(gate="dense"), "'gate'"),
        (lambda: mhmoe.MHMoEConfig(heads=True), "'heads'"),
    ],
)
def test_invalid_config_names_field(build, field):
    with pytest.raises(mhmoe.ConfigError) as err:
        build()
    message = str(err.value)
    assert field in message and "\n" not in message


def test_research_defaults_and_roundtrip():
    from mhmoe.adapters import config_from_dict

    config = mhmoe.MHMoEConfig()
    assert (config.experts, config.top_k, config.heads, config.balance_coef) == (4, 1, 8, 0.0)
    assert config.target_modules == ["gate_proj", "up_proj", "down_proj"]
    assert config_from_dict(config.to_dict()) == config
    assert config_from_dict(mhmoe.LoRAConfig(rank=3).to_dict()) == mhmoe.LoRAConfig(rank=3)
