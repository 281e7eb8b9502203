"""Option scoring: each example's prediction is the option with the lowest summed answer NLL, checked against a
plain loop that scores every (prompt, option) pair alone with log_softmax; the answer set, the refusal of
tasks not scored by exact answers, and a run scored this way."""

import json

import pytest
import torch
from tiny_runs import tiny_run

from mhmoe.cl.option_scoring import check_option_scoring, option_choices, task_options
from mhmoe.cli import main
from mhmoe.data.trace import Example, Task
from mhmoe.errors import ConfigError
from mhmoe.models import load_model


def reference_nll(model, tokenizer, prompt: str, option: str) -> float:
    """One pair, no batching or padding: the summed NLL of " option" + EOS after the prompt."""
    prompt_ids = tokenizer(prompt, add_special_tokens=True).input_ids
    answer_ids = tokenizer(" " + option, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ids = torch.tensor([prompt_ids + answer_ids])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    start = len(prompt_ids)
    return -sum(float(logprobs[start + i - 1, token]) for i, token in enumerate(answer_ids))


def test_the_choice_is_the_option_a_plain_loop_finds_most_likely():
    model, tokenizer = load_model("tiny:llama")
    model.eval()
    examples = [Example(f"Question {i}: which letter? {'x' * i}", "A") for i in range(7)]
    options = ["A", "B", "C", "D"]
    chosen = option_choices(model, tokenizer, examples, options, batch_size=5, max_length=64)
    for example, choice in zip(examples, chosen, strict=True):
        nll = [reference_nll(model, tokenizer, example.prompt, o) for o in options]
        best = min(nll)
        assert nll[options.index(choice)] == pytest.approx(best, abs=1e-4), (nll, choice)


def test_the_answer_set_is_the_declared_labels_else_the_distinct_answers_in_order():
    splits = {"train": [Example("p", "no"), Example("q", "yes")], "test": [Example("r", "no"), Example("s", "maybe")]}
    assert task_options(Task("t", "accuracy", 4, splits)) == ["no", "yes", "maybe"]
    assert task_options(Task("t", "accuracy", 4, splits, options=["yes", "no", "maybe", "n/a"])) == [
        "yes",
        "no",
        "maybe",
        "n/a",
    ]
    with pytest.raises(ConfigError, match="task t is scored by rouge_l"):
        check_option_scoring([Task("t", "rouge_l", 4, splits)])
    check_option_scoring([Task("t", scorer, 4, splits) for scorer in ("accuracy", "exact_match")])  # the CL Benchmark


def _run(out, name, tasks, *extra):
    settings = [*tiny_run(tasks, test=4, steps=1), "methods=[lora]", f"output_dir={out}", *extra]
    return main(["run", "--name", name, *[f"--set={s}" for s in settings]])


def test_a_run_scored_by_options_says_so(tmp_path):
    assert _run(tmp_path, "opt", ["Stance-Policy", "QA-Choice"], "eval.scoring=options") == 0
    report = (tmp_path / "opt" / "report.md").read_text()
    assert "R is scored by option likelihood" in report
    results = json.loads((tmp_path / "opt" / "results.json").read_text())
    assert len(results["methods"]["lora"]["R"]) == 2


def test_a_task_not_scored_by_exact_answers_is_refused_before_anything_is_written(tmp_path, capsys):
    assert _run(tmp_path, "bad", ["Stance-Policy", "Doc-Summary"], "eval.scoring=options") == 2
    assert "task Doc-Summary is scored by rouge_l" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
