"""Prefix tuning and NoRGa, in float64 on tiny Llama and Qwen3 models (both grouped-query: 4 query heads, 2 key/value
heads): the attention against a per-head loop, the gate switched off, length 0, the KV cache, left padding, which
parameters the gradient reaches, task identity, counting, saving and the refused settings."""

import pytest
import torch

import mhmoe
from mhmoe.adapters.prefix import (
    ACTIVATIONS,
    PrefixBank,
    initialise_from_tokens,
    prefix_attention,
    prefix_banks,
    train_only_task,
)
from mhmoe.adapters.task_identity import TaskIdentityError, known_task, pooled_states
from mhmoe.cl.methods import HookContext
from mhmoe.cl.methods.prefix import PrefixOptions, PrefixTuning
from mhmoe.config import load_config
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError
from mhmoe.models import TINY_FAMILIES, tiny_model, tiny_tokenizer
from tests.references import reference_prefix_attention

FAMILIES = ["llama", "qwen3"]
EVERY_FAMILY = sorted(TINY_FAMILIES)  # Llama, Mistral, Qwen2, Qwen3, Gemma 3: one attention function serves them all


def adapted(family: str, config, seed: int = 0):
    """A float64 tiny model with `config` attached, every prefix drawn at random."""
    torch.manual_seed(seed + 1)
    return mhmoe.attach(tiny_model(family, seed=seed).double(), config)


def set_gates(model, alpha: float, tau: float) -> None:
    with torch.no_grad():
        for bank in prefix_banks(model):
            bank.adapter_gate_alpha.fill_(alpha)
            bank.adapter_gate_tau.fill_(tau)


def left_padded(rows: list[list[int]], pad: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded ids, mask and position ids counted from each row's first token, as data/collate.py makes them."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("gate", sorted(ACTIVATIONS))
def test_attention_matches_a_per_head_loop(family, gate):
    model = adapted(family, mhmoe.NoRGaConfig(prefix_length=3, tasks=2, gate=gate))
    set_gates(model, 0.7, 1.3)
    attention = model.model.layers[1].self_attn
    bank: PrefixBank = attention.prefix_bank
    heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
    d = attention.head_dim
    q, k, v = torch.randn(2, heads, 5, d), torch.randn(2, kv_heads, 5, d), torch.randn(2, kv_heads, 5, d)
    visible = torch.ones(5, 5, dtype=torch.bool).tril().repeat(2, 1, 1, 1)
    visible[1, :, :, :2] = False  # the second row is left-padded by two
    additive = torch.zeros(2, 1, 5, 5, dtype=torch.float64).masked_fill(~visible, torch.finfo(torch.float64).min)

    def norga(s):
        return s + 0.7 * ACTIVATIONS[gate](1.3 * s)

    # a task per row (gathered), and one task for the whole batch (broadcast, as in training and oracle mode)
    for tasks, same in (([1, 0], None), ([1, 1], 1)):
        bank.choice.set(torch.tensor(tasks), same)
        out, _ = prefix_attention(attention, q.double(), k.double(), v.double(), visible, scaling=attention.scaling)
        keys = torch.stack([bank.task_parameters(t)[0] for t in tasks])
        values = torch.stack([bank.task_parameters(t)[1] for t in tasks])
        want = reference_prefix_attention(
            q.double(), k.double(), v.double(), additive, keys, values, attention.scaling, gate=norga
        )
        torch.testing.assert_close(out, want.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_alpha_zero_is_plain_prefix_tuning(family):
    norga = adapted(family, mhmoe.NoRGaConfig(prefix_length=4, tasks=2, identity="oracle"))
    plain = adapted(family, mhmoe.PrefixConfig(prefix_length=4, tasks=2, identity="oracle"), seed=0)
    with torch.no_grad():
        for name, tensor in mhmoe.adapter_parameters(plain).items():
            tensor.copy_(mhmoe.adapter_parameters(norga)[name])
    set_gates(norga, 0.0, 1.7)
    batch = left_padded([[5, 9, 3, 7, 2], [4, 4, 8]])
    for task in (0, 1):
        with known_task(norga, task), known_task(plain, task):
            torch.testing.assert_close(norga(**batch).logits, plain(**batch).logits, rtol=0, atol=0)
    set_gates(norga, 1.0, 1.0)
    with known_task(norga, 1), known_task(plain, 1):
        assert not torch.allclose(norga(**batch).logits, plain(**batch).logits)  # the gate does act


@pytest.mark.parametrize("family", EVERY_FAMILY)
@pytest.mark.parametrize("kind", [mhmoe.PrefixConfig, mhmoe.NoRGaConfig])
def test_prefix_length_zero_is_the_base_model_exactly(family, kind):
    base = tiny_model(family).double()
    model = adapted(family, kind(prefix_length=0, tasks=2, identity="oracle"))
    batch = left_padded([[5, 9, 3, 7, 2, 1], [4, 4, 8]])
    with known_task(model, 1):
        assert torch.equal(model(**batch).logits, base(**batch).logits)
        assert torch.equal(model(**batch, use_cache=False).logits, base(**batch, use_cache=False).logits)


def greedy(model, batch, *, use_cache: bool, steps: int = 6):
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    out = model.generate(
        **inputs,
        do_sample=False,
        max_new_tokens=steps,
        min_new_tokens=steps,
        use_cache=use_cache,
        pad_token_id=0,
        eos_token_id=None,
        output_scores=True,
        return_dict_in_generate=True,
    )
    return out.sequences, torch.stack(out.scores)


@pytest.mark.parametrize("family", EVERY_FAMILY)
def test_generation_with_the_kv_cache_equals_generation_without(family):
    model = adapted(family, mhmoe.NoRGaConfig(prefix_length=3, tasks=2, identity="oracle"))
    set_gates(model, 0.5, 2.0)
    batch = left_padded([[5, 9, 3, 7, 2], [4, 4, 8]])
    with known_task(model, 1):
        cached, cached_scores = greedy(model, batch, use_cache=True)
        recomputed, scores = greedy(model, batch, use_cache=False)
        assert model(**batch, use_cache=True).cache.get_seq_length() == 5  # the cache holds no prefix
    assert torch.equal(cached, recomputed)
    torch.testing.assert_close(cached_scores, scores, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_left_padding_does_not_change_an_example(family):
    model = adapted(family, mhmoe.NoRGaConfig(prefix_length=3, tasks=2, identity="oracle"))
    short, long = [4, 4, 8], [5, 9, 3, 7, 2, 1]
    together = left_padded([long, short])
    with known_task(model, 0):
        batched = model(**together).logits[1, -len(short) :]
        alone = model(**left_padded([short])).logits[0]
        torch.testing.assert_close(batched, alone, rtol=1e-10, atol=1e-10)
        both, _ = greedy(model, together, use_cache=True)
        single, _ = greedy(model, left_padded([short]), use_cache=True)
    assert torch.equal(both[1, -6:], single[0, -6:])


@pytest.mark.parametrize("family", FAMILIES)
def test_the_gradient_reaches_only_the_current_task_prefixes_and_the_gates(family):
    model = adapted(family, mhmoe.NoRGaConfig(prefix_length=2, tasks=3))
    train_only_task(model, 1)
    batch = left_padded([[5, 9, 3, 7], [4, 4, 8]])
    model(**batch).logits.square().mean().backward()
    for bank in prefix_banks(model):
        for t in range(3):
            for param in bank.task_parameters(t):
                assert (param.grad is not None and param.grad.abs().sum() > 0) == (t == 1)
        assert all(p.grad is not None and p.grad.abs() > 0 for p in bank.gate_parameters())
    adapter = mhmoe.adapter_parameters(model)
    assert all(p.grad is None for n, p in model.named_parameters() if n not in adapter)


def test_infer_mode_picks_the_nearest_prototype_once_per_sequence_and_tallies_it():
    model = adapted("llama", mhmoe.NoRGaConfig(prefix_length=2, tasks=3))
    identity = model.task_identity
    batch = left_padded([[5, 9, 3, 7, 2], [4, 4, 8]])
    with pytest.raises(TaskIdentityError, match="no task prototype"):
        model(**batch)
    states = pooled_states(model, batch["input_ids"], batch["attention_mask"])
    identity.store(0, states[1:])  # task 1's prototype is the second prompt, task 2's the first
    identity.store(1, states[:1])
    assert identity.seen() == 2
    with known_task(model, 1, record=True) as tally:
        greedy(model, batch, use_cache=True)
    assert identity.choice.tasks.tolist() == [1, 0]
    assert (tally.correct, tally.total) == (1, 2)  # identified at the prefill only, not at the 6 decode steps
    with known_task(model, 2, record=True) as unseen:
        model(**batch)
    assert unseen.accuracy is None  # task 3 has no prototype yet: it cannot be chosen, so it is not tallied


def test_oracle_mode_needs_the_true_task():
    model = adapted("llama", mhmoe.PrefixConfig(prefix_length=2, tasks=2, identity="oracle"))
    with pytest.raises(TaskIdentityError, match="oracle"):
        model(torch.tensor([[1, 2, 3]]))
    with known_task(model, 1):
        model(torch.tensor([[1, 2, 3]]))
    assert model.task_identity.choice.tasks.tolist() == [1]


def test_saved_adapter_keeps_every_prefix_gate_and_prototype_and_rescores_exactly(tmp_path):
    model = adapted("qwen3", mhmoe.NoRGaConfig(prefix_length=3, tasks=2))
    set_gates(model, 0.3, 0.9)
    batch = left_padded([[5, 9, 3, 7, 2], [4, 4, 8]])
    states = pooled_states(model, batch["input_ids"], batch["attention_mask"])
    model.task_identity.store(0, states[:1])
    model.task_identity.store(1, states[1:])
    mhmoe.save_adapter(model, tmp_path)
    loaded = mhmoe.load_adapter(tiny_model("qwen3").double(), tmp_path)
    saved = mhmoe.adapter_state(model)
    assert {n.rsplit(".", 1)[-1] for n in saved} == {
        "adapter_keys_0",
        "adapter_values_0",
        "adapter_keys_1",
        "adapter_values_1",
        "adapter_gate_alpha",
        "adapter_gate_tau",
        "adapter_prototypes",
        "adapter_prototype_counts",
    }
    assert all(torch.equal(tensor, saved[name]) for name, tensor in mhmoe.adapter_state(loaded).items())
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)
    assert loaded.task_identity.choice.tasks.tolist() == [0, 1]


def test_counts_and_matched_prefix_length_by_hand():
    # tiny llama: 2 attention layers of 2 key/value heads of width 16
    model = adapted("llama", mhmoe.NoRGaConfig(prefix_length=3, tasks=2))
    count = mhmoe.count_parameters(model)
    one_task = 2 * 2 * 3 * 16  # keys and values
    assert count.activated == 2 * (one_task + 2) == 388  # plus alpha and tau per layer
    assert count.total == 2 * (2 * one_task + 2) == 772
    assert count.trainable == 2 * (one_task + 2)  # task 1's prefixes and the gates
    # MH-MoE rank 2 touches 13312 parameters per token (test_accounting); NoRGa touches 2 * (64 L + 2):
    # L = 103.97 -> 104 (13316); plain prefix tuning 128 L -> 104 (13312) too, whatever the number of tasks.
    assert mhmoe.matched_size(tiny_model(), mhmoe.NoRGaConfig(), mhmoe.MHMoEConfig(rank=2)) == 104
    assert mhmoe.matched_size(tiny_model(), mhmoe.PrefixConfig(tasks=4), mhmoe.MHMoEConfig(rank=2)) == 104
    # MH-MoE rank 2 holds 47104 parameters in all (test_accounting); four tasks' prefixes hold 2 * 4 * 64 L: L = 92
    assert mhmoe.matched_size(tiny_model(), mhmoe.PrefixConfig(tasks=4), mhmoe.MHMoEConfig(rank=2), "total") == 92
    assert mhmoe.PrefixConfig().resized(7).prefix_length == 7


def tiny_task(name: str, prompts: list[str]) -> Task:
    return Task(name, "accuracy", 4, {"train": [Example(p, "A") for p in prompts]})


def test_the_hooks_train_each_task_and_store_its_prototype():
    tokenizer = tiny_tokenizer()
    model = adapted("llama", mhmoe.PrefixConfig(prefix_length=2, tasks=2))
    hooks = PrefixTuning(PrefixOptions(prototype_examples=2), HookContext(tokenizer, 32, seed=0, batch_size=2))
    first, second = tiny_task("a", ["1 2 3", "4 5 6", "7 8 9"]), tiny_task("b", ["A B", "C"])
    hooks.before_task(model, first)
    assert model.task_identity.training_task == 0
    model(torch.tensor([[1, 2, 3]]))
    assert model.task_identity.choice.tasks.tolist() == [0]
    hooks.after_task(model, first)
    assert model.task_identity.training_task is None
    assert model.task_identity.adapter_prototype_counts.tolist() == [2, 0]
    resumed = PrefixTuning(PrefixOptions(), HookContext(tokenizer, 32, seed=0))
    resumed.load_state_dict(hooks.state_dict())
    resumed.before_task(model, second)
    bank = prefix_banks(model)[0]
    assert [p.requires_grad for t in range(2) for p in bank.task_parameters(t)] == [False, False, True, True]
    resumed.after_task(model, second)
    assert model.task_identity.seen() == 2
    with pytest.raises(ConfigError, match="task 3 is beyond"):
        resumed.before_task(model, second)


def cached_real_states(model, batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the (keys, values) of every unpadded token, (tokens, kv_heads, d) each, read from Transformers'
    own KV cache of a plain forward: an independent record of what the attention saw."""
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        output = model.base_model(**batch, use_cache=True)
    cache = output.cache if "cache" in output else output.past_key_values  # renamed in Transformers 5
    return [(layer.keys.transpose(1, 2)[real], layer.values.transpose(1, 2)[real]) for layer in cache.layers]


def matched_tokens(prefix: torch.Tensor, states: torch.Tensor) -> list[int]:
    """For each prefix column (kv_heads, length, d), the real token whose state it equals (asserted exact)."""
    columns = prefix.transpose(0, 1).flatten(1)  # (length, kv_heads * d)
    distances = torch.cdist(columns, states.flatten(1))
    assert distances.min(dim=1).values.max() < 1e-12
    return distances.argmin(dim=1).tolist()


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("extra", [0, 3])
def test_token_initialisation_copies_the_frozen_models_keys_and_values_of_real_tokens(family, extra):
    batch = left_padded([[5, 9, 3, 7, 11], [4, 6, 8]])  # distinct ids: no two tokens share a first-layer value
    tokens = int(batch["attention_mask"].sum())
    model = adapted(family, mhmoe.PrefixConfig(prefix_length=tokens + extra, tasks=2))
    untouched = [p.clone() for p in prefix_banks(model)[0].task_parameters(0)]
    reference = cached_real_states(model, batch)
    initialise_from_tokens(model, 1, batch["input_ids"], batch["attention_mask"], seed=3)
    chosen = None
    for bank, (keys, values) in zip(prefix_banks(model), reference, strict=True):
        prefix_keys, prefix_values = bank.task_parameters(1)
        by_key, by_value = matched_tokens(prefix_keys, keys), matched_tokens(prefix_values, values)
        assert by_key == by_value  # a column's key and value come from the same token
        chosen = chosen or by_key
        assert by_key == chosen  # the same tokens in every layer
    counts = torch.bincount(torch.tensor(chosen), minlength=tokens)
    assert counts.min() >= 1 and counts.max() <= 2 and counts.sum() == tokens + extra  # every token, none thrice
    assert all(torch.equal(a, b) for a, b in zip(untouched, prefix_banks(model)[0].task_parameters(0), strict=True))
    assert model.task_identity.choice.tasks is None  # the recording forward left no task chosen


def test_hooks_initialise_a_task_once_so_a_resumed_task_keeps_its_trained_prefixes():
    tokenizer = tiny_tokenizer()
    model = adapted("llama", mhmoe.PrefixConfig(prefix_length=4, tasks=2))
    task = tiny_task("a", ["1 2 3", "4 5 6", "7 8 9"])
    hooks = PrefixTuning(PrefixOptions(init_examples=2), HookContext(tokenizer, 32, seed=0))
    drawn = [p.clone() for p in prefix_banks(model)[0].task_parameters(0)]
    hooks.before_task(model, task)
    initialised = [p.clone() for p in prefix_banks(model)[0].task_parameters(0)]
    assert not any(torch.equal(a, b) for a, b in zip(drawn, initialised, strict=True))
    with torch.no_grad():
        for p in prefix_banks(model)[0].task_parameters(0):
            p.add_(1.0)  # "trained"
    trained = [p.clone() for p in prefix_banks(model)[0].task_parameters(0)]
    resumed = PrefixTuning(PrefixOptions(init_examples=2), HookContext(tokenizer, 32, seed=0))
    resumed.load_state_dict(hooks.state_dict())
    resumed.before_task(model, task)
    assert all(torch.equal(a, b) for a, b in zip(trained, prefix_banks(model)[0].task_parameters(0), strict=True))
    again = adapted("llama", mhmoe.PrefixConfig(prefix_length=4, tasks=2))
    PrefixTuning(PrefixOptions(init_examples=2), HookContext(tokenizer, 32, seed=0)).before_task(again, task)
    assert all(
        torch.equal(a, b) for a, b in zip(initialised, prefix_banks(again)[0].task_parameters(0), strict=True)
    )  # seeded: the same run initialises the same way
    kept = adapted("llama", mhmoe.PrefixConfig(prefix_length=4, tasks=2))
    PrefixTuning(PrefixOptions(init="uniform"), HookContext(tokenizer, 32, seed=0)).before_task(kept, task)
    assert all(torch.equal(a, b) for a, b in zip(drawn, prefix_banks(kept)[0].task_parameters(0), strict=True))


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: mhmoe.PrefixConfig(prefix_length=-1), "prefix_length"),
        (lambda: mhmoe.PrefixConfig(tasks=0), "tasks"),
        (lambda: mhmoe.PrefixConfig(identity="guess"), "identity"),
        (lambda: mhmoe.NoRGaConfig(gate="relu"), "gate"),
        (lambda: mhmoe.PrefixConfig(target_modules=[]), "target_modules"),
        (lambda: PrefixOptions(prototype_examples=0), "prototype_examples"),
        (lambda: PrefixOptions(init="zeros"), "init"),
        (lambda: PrefixOptions(init_examples=0), "init_examples"),
        (lambda: mhmoe.attach(tiny_model(), mhmoe.PrefixConfig(target_modules=["up_proj"])), "target_modules"),
        (lambda: mhmoe.attach(tiny_model(), mhmoe.PrefixConfig(target_modules=["nothing"])), "target_modules"),
        (lambda: load_config(None, ["methods=[norga]", "adapters.norga.gate=relu"]), "gate"),
        (lambda: load_config(None, ["methods=[prefix]", "adapters.prefix.rank=4"]), "rank"),
        (lambda: load_config(None, ["methods=[prefix]", "method_options.prefix.prototype_examples=0"]), "prototype"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_the_field(make, field):
    with pytest.raises(ConfigError, match=field) as err:
        make()
    assert "\n" not in str(err.value)


def test_an_unattached_model_is_left_untouched_by_a_bad_prefix_config():
    model = tiny_model()
    with pytest.raises(ConfigError):
        mhmoe.attach(model, mhmoe.PrefixConfig(target_modules=["up_proj"]))
    assert model.config._attn_implementation != "mhmoe_prefix" and not hasattr(model, "task_identity")
