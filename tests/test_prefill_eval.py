"""One prefill per batch (cl/prefill_eval.py) gives the two-pass path's results: the same predictions, so the
same R, and L equal to float precision; for every tiny model family (sliding-window attention included), with a
routed adapter attached, under generation and option scoring; a batch that the limits would cut falls back to
the two passes; a model with task identity keeps the two passes."""

import dataclasses

import pytest
import torch

import mhmoe
from mhmoe.cl.evaluate import evaluate_stream, evaluate_task, score_task
from mhmoe.cl.loss import answer_nll_per_example
from mhmoe.cl.option_scoring import most_likely, option_nll
from mhmoe.cl.prefill_eval import SHARED_HEAD_MIN, _shared_head, evaluate_batch, shares_prefill
from mhmoe.data.collate import training_batch
from mhmoe.data.trace import Example, Task
from mhmoe.models import TINY_FAMILIES, tiny_model, tiny_tokenizer
from mhmoe.settings import EvalSettings

WORDS = ["the", "a", "of", "1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "A", "B", "C"]


HEADER = "Task: copy the letters\n"


def tasks(seed: int = 0) -> list[Task]:
    """Two tasks with prompts of very different lengths (so batches pad) and answers of one to three words; the
    second's prompts share a header (computed once per batch where the model allows)."""
    rng = torch.Generator().manual_seed(seed)

    def text(n: int) -> str:
        return " ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (n,), generator=rng))

    made = []
    for name, scorer, head in (("short", "accuracy", ""), ("long", "exact_match", HEADER)):
        lengths = torch.randint(2, 40, (11,), generator=rng).tolist()
        test = [Example(head + text(n) + " Answer:", text(1 + i % 3)) for i, n in enumerate(lengths)]
        made.append(Task(name, scorer, 4, {"train": test[:2], "test": test}, options=["A", "B", "C", "1 2"]))
    return made


def routed_model(family: str):
    """A tiny model of `family` with MH-MoE attached and its up-projections drawn, so the adapter matters."""
    model = mhmoe.attach(tiny_model(family, vocab=256), mhmoe.MHMoEConfig(heads=2, experts=3, top_k=2, rank=2))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adapter_B" in name:
                param.normal_(std=0.3)
    return model.eval()


def both_ways(model, tokenizer, settings: EvalSettings, max_length: int = 128):
    """The stream's row scored with one prefill per batch, then with the two passes."""
    return [
        evaluate_stream(
            model,
            tokenizer,
            tasks(),
            dataclasses.replace(settings, shared_prefill=shared),
            max_length=max_length,
            progress=False,
        )  # fmt: skip
        for shared in (True, False)
    ]


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
@pytest.mark.parametrize("scoring", ["generate", "options"])
def test_one_prefill_gives_the_two_pass_results(family, scoring):
    tokenizer = tiny_tokenizer()
    shared, two_pass = both_ways(routed_model(family), tokenizer, EvalSettings(batch_size=4, scoring=scoring))
    assert shared.scores == two_pass.scores and shared.errors == two_pass.errors
    assert shared.losses == pytest.approx(two_pass.losses, rel=1e-5)
    assert shared.losses != pytest.approx([0.0, 0.0])


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_each_examples_answer_nll_is_the_teacher_forced_one(family):
    """Per example, not only per task: the bare model, prompts sharing a header (computed once where allowed)."""
    tokenizer, model = tiny_tokenizer(), tiny_model(family, vocab=256)
    for task in tasks():
        examples = task.split("test")[:6]
        found = evaluate_batch(model, tokenizer, examples, max_new_tokens=2, max_prompt_tokens=512, max_length=128)
        with torch.no_grad():
            nll, counts = answer_nll_per_example(model, training_batch(tokenizer, examples, 128))
        assert found.nll.tolist() == pytest.approx(nll.tolist(), rel=1e-6)
        assert found.counts.tolist() == counts.tolist()


def test_predictions_are_the_two_pass_ones_in_the_splits_order():
    tokenizer, model = tiny_tokenizer(), routed_model("llama")
    task = tasks()[1]
    settings = EvalSettings(batch_size=3)
    found, _ = evaluate_task(model, tokenizer, task, settings, max_length=128)
    assert found.predictions == score_task(model, tokenizer, task, batch_size=3, max_length=128).predictions
    assert len(set(found.predictions)) > 1  # the check would be weak if every prediction were the same


def test_a_batch_the_limits_would_cut_falls_back_to_two_passes():
    tokenizer, model = tiny_tokenizer(), routed_model("llama")
    examples = tasks()[1].split("test")[:4]
    assert evaluate_batch(model, tokenizer, examples, max_new_tokens=2, max_prompt_tokens=512, max_length=128)
    assert evaluate_batch(model, tokenizer, examples, max_new_tokens=2, max_prompt_tokens=3, max_length=128) is None
    assert evaluate_batch(model, tokenizer, examples, max_new_tokens=2, max_prompt_tokens=512, max_length=8) is None


def test_options_share_the_prefill_even_where_the_prompt_is_cut():
    """Every option follows the same prompt, cut to leave room for the longest, in both paths; the loss matrix's
    answer then gets its own forward, encoded as training encodes it."""
    tokenizer, model = tiny_tokenizer(), routed_model("llama")
    examples, options = tasks()[1].split("test")[:5], ["A", "B", "1 2"]
    found = evaluate_batch(model, tokenizer, examples, max_new_tokens=2, max_prompt_tokens=512, max_length=9,
                           options=options)  # fmt: skip
    assert found is not None
    two_pass = option_nll(model, tokenizer, examples, options, max_length=9)
    assert found.predictions == most_likely(options, two_pass)
    nll, counts = answer_nll_per_example(model, training_batch(tokenizer, examples, 9))
    assert found.nll.tolist() == pytest.approx(nll.tolist(), rel=1e-6) and found.counts.tolist() == counts.tolist()


@pytest.mark.parametrize("scoring", ["generate", "options"])
def test_a_stream_whose_limits_cut_prompts_still_matches_the_two_passes(scoring):
    shared, two_pass = both_ways(routed_model("llama"), tiny_tokenizer(), EvalSettings(batch_size=4, scoring=scoring),
                                 max_length=14)  # fmt: skip
    assert shared.scores == two_pass.scores
    assert shared.losses == pytest.approx(two_pass.losses, rel=1e-5)


def test_a_header_every_prompt_shares_is_computed_once_except_under_sliding_windows():
    tokenizer = tiny_tokenizer()
    short, long = ([tokenizer(e.prompt).input_ids for e in t.split("test")[:4]] for t in tasks())
    assert _shared_head(tiny_model("llama"), long) >= SHARED_HEAD_MIN  # so the family tests above cover it
    assert _shared_head(tiny_model("llama"), short) == 0
    assert _shared_head(tiny_model("gemma3_text"), long) == 0


def test_a_model_with_task_identity_keeps_two_passes():
    model = mhmoe.attach(tiny_model("llama", vocab=256), mhmoe.PrefixConfig(prefix_length=2, tasks=2))
    assert not shares_prefill(model)
    assert shares_prefill(routed_model("llama"))
