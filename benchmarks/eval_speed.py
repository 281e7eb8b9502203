"""Where evaluation time goes: one task's evaluation (generation, the loss-matrix entry, scoring) for the frozen
base, LoRA, LoRAMoE and MH-MoE at the quickstart's matched budgets, on short and on long prompts, side by side.

Short prompts are the built-in stance task's; long ones put a fixed preamble before them, to the length of
real-text benchmarks' prompts (the table prints each kind's mean token count). Each evaluation is split into its parts:
prefill (one forward over the prompts, building the cache), decode (the rest of generation), the teacher-forced
loss forward, and scoring the generations. Models run in interleaved rounds, so machine noise hits them alike;
medians are reported, with each model's total as a multiple of the frozen base's.

    python benchmarks/eval_speed.py            # about 5 minutes on 2 idle cores
    python benchmarks/eval_speed.py --quick    # one round
    python benchmarks/eval_speed.py --model tiny:llama --quick   # a smoke run

`--real-text` times instead the case the throughput issue measured: two tasks of the shipped CL Benchmark
sample (dbpedia and MNLI, 100 test examples each), up to 6 new tokens, LoRAMoE with gate 'full', the whole
evaluation of the stream (R and L) as a run does it, in three ways side by side: two passes over the prompts
in split order (eval.shared_prefill: false, as builds before the one-prefill path), one prefill per batch with
prompts batched by length (the default), and one prefill with option scoring (eval.scoring: options). It
prints each way's seconds, its speed-up over the two passes, and whether R and L agree with the two passes'.

    python benchmarks/eval_speed.py --real-text                  # about 7 minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

import mhmoe
from mhmoe.cl.eval_mode import evaluating
from mhmoe.cl.evaluate import evaluate_stream, generate, task_loss
from mhmoe.cl.loss import accepts_logits_to_keep
from mhmoe.config import load_config
from mhmoe.data.collate import prompt_batch
from mhmoe.data.stream import load_tasks
from mhmoe.data.trace import Example, Task
from mhmoe.metrics.text import example_scores
from mhmoe.models import load_model
from mhmoe.settings import DataSettings, EvalSettings

PREAMBLE = (
    "The following statement comes from a public consultation on economic policy. Read it carefully, consider "
    "who is speaking and in what context, and decide which stance it takes towards the proposal under "
    "discussion before you answer with a single letter. Take any irony, hedging or quoted speech in the "
    "statement into account, and answer for the speaker, not for the people the speaker quotes. "
)
PARTS = ("prefill", "decode", "loss", "scoring")


def tasks(examples: int) -> dict[str, Task]:
    """The built-in stance task's first test examples, as they are and behind the preamble."""
    task = load_tasks(load_config().data, seed=0)[0]
    short = task.split("test")[:examples]
    long = [Example(PREAMBLE + e.prompt, e.answer, e.features) for e in short]
    return {
        "short": dataclasses.replace(task, splits={"test": short}),
        "long": dataclasses.replace(task, splits={"test": long}),
    }


def models(base) -> dict[str, torch.nn.Module]:
    """The frozen base and each adapter at MH-MoE's activated parameters, B non-zero as after training."""
    reference = mhmoe.MHMoEConfig()
    found = {"frozen base": base}
    for name, config in {"LoRA": mhmoe.LoRAConfig(), "LoRAMoE": mhmoe.LoRAMoEConfig(), "MH-MoE": reference}.items():
        if config is not reference:
            config = dataclasses.replace(config, rank=mhmoe.matched_rank(base, config, reference))
        model = mhmoe.attach(copy.deepcopy(base), config)
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if "adapter_B" in param_name:
                    param.normal_(std=0.02)
        found[name] = model.eval()
    return found


def evaluation_parts(model, tokenizer, task: Task, batch_size: int, max_new_tokens: int) -> dict[str, float]:
    """Seconds of each part of one task's evaluation, as evaluate_stream runs it."""
    examples = task.split("test")
    prompts = [e.prompt for e in examples]
    times = dict.fromkeys(PARTS, 0.0)
    with torch.no_grad(), evaluating(model):
        for start in range(0, len(prompts), batch_size):
            batch = prompt_batch(tokenizer, prompts[start : start + batch_size], 512)
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": True}
            if accepts_logits_to_keep(model):
                inputs["logits_to_keep"] = 1  # as generate's own prefill: the LM head on the last position only
            began = time.perf_counter()
            model(**inputs)
            times["prefill"] += time.perf_counter() - began
    began = time.perf_counter()
    predictions = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    times["decode"] = time.perf_counter() - began - times["prefill"]
    began = time.perf_counter()
    task_loss(model, tokenizer, task, "test", batch_size=batch_size)
    times["loss"] = time.perf_counter() - began
    began = time.perf_counter()
    example_scores(task.scorer, predictions, [e.answer for e in examples], prompts)
    times["scoring"] = time.perf_counter() - began
    return times


REAL_TEXT_WAYS = {
    "two passes, split order": {"shared_prefill": False},
    "one prefill, by length": {},
    "one prefill, options": {"scoring": "options"},
}


def real_text(args: argparse.Namespace) -> None:
    """The real-text case: each way's seconds for the stream's whole evaluation, and its R and L agreement."""
    base, tokenizer = load_model(args.model)
    base.requires_grad_(False)
    torch.manual_seed(0)
    reference = mhmoe.MHMoEConfig()
    config = mhmoe.LoRAMoEConfig(gate="full")
    model = mhmoe.attach(base, dataclasses.replace(config, rank=mhmoe.matched_rank(base, config, reference)))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "adapter_B" in name:
                param.normal_(std=0.02)
    data = DataSettings(benchmark="cl_sample", order=["dbpedia", "MNLI"], test_limit=args.examples)
    stream = load_tasks(data, seed=0)
    settings = {
        way: dataclasses.replace(
            EvalSettings(args.batch_size, args.max_prompt_tokens, max_new_tokens=args.max_new_tokens), **changes
        )
        for way, changes in REAL_TEXT_WAYS.items()
    }
    warm_up = [dataclasses.replace(t, splits={"test": t.split("test")[: args.batch_size]}) for t in stream]
    rows, seconds = {}, {way: [] for way in REAL_TEXT_WAYS}
    for way in REAL_TEXT_WAYS:
        evaluate_stream(model.eval(), tokenizer, warm_up, settings[way], max_length=256, progress=False)
    ways = list(REAL_TEXT_WAYS)
    for round_ in range(args.rounds):  # each round starts with another way, so no way always runs first
        for way in ways[round_ % len(ways) :] + ways[: round_ % len(ways)]:
            began = time.perf_counter()
            rows[way] = evaluate_stream(model.eval(), tokenizer, stream, settings[way], max_length=256, progress=False)
            seconds[way].append(time.perf_counter() - began)
    seconds = {way: statistics.median(times) for way, times in seconds.items()}
    first = next(iter(REAL_TEXT_WAYS))
    print(
        f"{args.model}, LoRAMoE gate 'full', cl_sample dbpedia + MNLI, {args.examples} test examples each, batch "
        f"{args.batch_size}, up to {args.max_new_tokens} new tokens, train.max_length 256, "
        f"{torch.get_num_threads()} threads, {args.rounds} round(s) after a warm-up; seconds for the stream's "
        "evaluation (R and L), medians"
    )
    print("| way | seconds | speed-up | R as two passes | max relative L difference |")
    print("| --- | --- | --- | --- | --- |")
    for way, row in rows.items():
        same_r = "yes" if row.scores == rows[first].scores else f"no: {row.scores} vs {rows[first].scores}"
        if "scoring" in REAL_TEXT_WAYS[way]:
            same_r = "another protocol"
        gap = max(abs(a - b) / abs(b) for a, b in zip(row.losses, rows[first].losses, strict=True))
        speedup = seconds[first] / seconds[way]
        print(f"| {way} | {seconds[way]:.1f} | {speedup:.2f}x | {same_r} | {gap:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--examples", type=int, help="test examples per task (default: 32; --real-text: 100)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=6)
    parser.add_argument("--real-text", action="store_true", help="the real-text case (see above), not the table")
    parser.add_argument("--max-prompt-tokens", type=int, default=512, help="--real-text: eval.max_prompt_tokens")
    parser.add_argument("--rounds", type=int, default=1, help="--real-text: rounds, each way once per round")
    args = parser.parse_args()
    args.examples = args.examples or (100 if args.real_text else 32)
    if args.real_text:
        real_text(args)
        return
    torch.manual_seed(0)
    base, tokenizer = load_model(args.model)
    base.requires_grad_(False)
    streams, variants = tasks(args.examples), models(base)
    rounds = 1 if args.quick else 3
    times = {(length, name): [] for length in streams for name in variants}
    for task in streams.values():  # warm-up
        for model in variants.values():
            evaluation_parts(model, tokenizer, task, args.batch_size, args.max_new_tokens)
    for _ in range(rounds):
        for length, task in streams.items():
            for name, model in variants.items():
                times[length, name].append(
                    evaluation_parts(model, tokenizer, task, args.batch_size, args.max_new_tokens)
                )
    prompt_tokens = {
        length: statistics.mean(len(tokenizer(e.prompt).input_ids) for e in task.split("test"))
        for length, task in streams.items()
    }
    print(
        f"{args.model}, {args.examples} test examples, batch {args.batch_size}, up to {args.max_new_tokens} new "
        f"tokens, {torch.get_num_threads()} threads, {rounds} round(s); seconds per task evaluation (medians)"
    )
    print(f"| prompts | model | {' | '.join(PARTS)} | total | x frozen base |")
    print(f"| --- | --- |{' --- |' * (len(PARTS) + 2)}")
    for length in streams:
        totals = {}
        for name in variants:
            parts = {p: statistics.median(t[p] for t in times[length, name]) for p in PARTS}
            totals[name] = sum(parts.values())
            ratio = totals[name] / totals["frozen base"]
            cells = " | ".join(f"{parts[p]:.2f}" for p in PARTS)
            label = f"{length} ({prompt_tokens[length]:.0f} tokens)"
            print(f"| {label} | {name} | {cells} | {totals[name]:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
