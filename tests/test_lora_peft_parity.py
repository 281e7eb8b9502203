"""`lora` against the peft package's LoRA, the reference implementation, with the same weights."""

import pytest
import torch

import mhmoe
from mhmoe.models import tiny_model

peft = pytest.importorskip("peft")


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_lora_matches_peft(family):
    reference = peft.get_peft_model(
        tiny_model(family, seed=5),
        peft.LoraConfig(
            r=4,
            lora_alpha=12,
            lora_dropout=0.0,
            target_modules=["gate_proj", "up_proj", "down_proj"],
            init_lora_weights=False,
        ),  # random B, so the update is not zero
    )
    ours = mhmoe.attach(tiny_model(family, seed=5), mhmoe.LoRAConfig(rank=4, alpha=12))
    peft_weights = dict(reference.named_parameters())
    copied = 0
    with torch.no_grad():
        for name, param in mhmoe.adapter_parameters(ours).items():
            module, leaf = name.rsplit(".", 1)
            matrix = "lora_A" if leaf == "adapter_A" else "lora_B"
            param.copy_(peft_weights[f"base_model.model.{module}.{matrix}.default.weight"])
            copied += 1
    assert copied == 12
    ids = torch.randint(0, 256, (3, 11))
    base = tiny_model(family, seed=5)(ids).logits
    want = reference(input_ids=ids).logits
    assert not torch.allclose(want, base, atol=1e-4)  # the update really changes the output
    torch.testing.assert_close(ours(ids).logits, want, rtol=1e-5, atol=1e-6)


def test_lora_dropout_only_in_training():
    model = mhmoe.attach(tiny_model(), mhmoe.LoRAConfig(dropout=0.5))
    with torch.no_grad():
        for p in mhmoe.adapter_parameters(model).values():
            p.normal_()
    ids = torch.randint(0, 256, (2, 5))
    model.eval()
    assert torch.equal(model(ids).logits, model(ids).logits)
    model.train()
    assert not torch.equal(model(ids).logits, model(ids).logits)
