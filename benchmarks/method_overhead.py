"""Step time of every continual-learning method relative to SeqLoRA, on the second task of a stream.

Each method first trains one step on task 1, so its memory, Fisher or frozen LoRA exists, then trains
`--steps` steps on task 2 through the one training loop. A step's time runs from one logged step to the
next (loss, penalty, backward, the method's after-backward hook, clipping, AdamW); the first step is a
warm-up and is dropped. The end-of-task hook (EWC's Fisher, storing a memory) is timed on its own.
Adapters are matched in activated parameters exactly as in a run of the preset.

    python benchmarks/method_overhead.py            # the baselines preset on SmolLM2, about 9 minutes
    python benchmarks/method_overhead.py --steps 4 --model tiny:llama
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch
from accelerate import Accelerator

import mhmoe
from mhmoe.cl.methods import METHODS, HookContext
from mhmoe.cl.run import matched_entries
from mhmoe.cl.train import train_task
from mhmoe.config import load_config
from mhmoe.data.stream import load_tasks
from mhmoe.models import load_model


def time_method(entry, base, tokenizer, tasks, config, steps: int) -> dict[str, float]:
    torch.manual_seed(config.seed)
    model = mhmoe.attach(copy.deepcopy(base), entry.adapter)
    context = HookContext(tokenizer, config.train.max_length, config.seed, config.train.batch_size)
    hooks = METHODS[entry.method].hooks(entry.options, context)
    accelerator = Accelerator(cpu=True)
    one_step = dataclasses.replace(config.train, max_steps=1, log_every=1)
    train_task(
        model,
        tokenizer,
        tasks[0],
        one_step,
        accelerator=accelerator,
        hooks=hooks,
        seed=0,
        task_index=0,
        progress=False,
    )
    stamps: list[float] = []
    settings = dataclasses.replace(config.train, max_steps=steps, log_every=1)
    train_task(
        model,
        tokenizer,
        tasks[1],
        settings,
        accelerator=accelerator,
        hooks=hooks,
        seed=0,
        task_index=1,
        progress=False,
        log=lambda record: stamps.append(time.perf_counter()),
    )
    finished = time.perf_counter()
    step_times = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {"step": statistics.median(step_times), "end_of_task": finished - stamps[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="baselines", help="a preset or YAML whose methods and options to time")
    parser.add_argument("--steps", type=int, default=8, help="steps timed on the second task (the first is dropped)")
    parser.add_argument("--model", help="override the preset's model (e.g. tiny:llama for a smoke run)")
    args = parser.parse_args()
    overrides = [f"model.name={args.model}"] if args.model else []
    config = load_config(args.preset, overrides)
    tasks = load_tasks(config.data, config.seed)[:2]
    base, tokenizer = load_model(config.model.name, config.model.torch_dtype)
    base.requires_grad_(False)
    entries = matched_entries(config, base, len(tasks))
    results = {
        name: time_method(entry, base, tokenizer, tasks, config, args.steps + 1) for name, entry in entries.items()
    }
    reference = results.get("seqlora", results.get("lora", next(iter(results.values()))))["step"]
    print(
        f"{config.model.name}, tasks {tasks[0].name} -> {tasks[1].name}, batch {config.train.batch_size}, "
        f"{args.steps} timed steps, {torch.get_num_threads()} threads"
    )
    print(f"{'method':10} {'s/step':>8} {'x SeqLoRA':>10} {'end-of-task s':>14}")
    for name, r in results.items():
        print(f"{name:10} {r['step']:8.3f} {r['step'] / reference:10.2f} {r['end_of_task']:14.2f}")


if __name__ == "__main__":
    main()
