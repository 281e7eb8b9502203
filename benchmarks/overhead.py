"""The research's Table 5: training-step latency, tokens/s and peak memory of every entry of a preset (MH-MoE
against LoRAMoE in `table5` and `table5-cpu`), with the ratios to the first entry, side by side in one run.

A step is a language-modelling step on one seeded batch of random tokens of the preset's batch size and
sequence length (loss over every position, base frozen, AdamW on the adapter), as the research's "training
step" at B=1, T=512. Latency: warm-up, then interleaved rounds so machine noise hits every entry alike;
medians. Peak memory: each entry in a fresh process (CUDA: peak allocated bytes; CPU: the process's peak
resident set, reset after loading the model), so one entry's buffers never count against another's.

    python benchmarks/overhead.py table5-cpu          # SmolLM2-135M, float32; about 3 minutes on 2 cores
    python benchmarks/overhead.py table5              # Qwen3-8B, bf16, on a GPU
    python benchmarks/overhead.py table5-cpu --model tiny:llama --rounds 2
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
import statistics
import time
from pathlib import Path

import torch

import mhmoe
from mhmoe.cl.run import matched_entries
from mhmoe.config import load_config
from mhmoe.models import load_model

RESEARCH = {"latency": 160.85 / 158.99, "memory": 41.95 / 40.22}
"""MH-MoE / LoRAMoE on Qwen3-8B in the research's Table 5 (ms per step, peak GiB)."""


def random_batch(vocab: int, batch: int, length: int, device) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0)).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def training_step(model):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(batch):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _setup(preset: str, overrides: list[str]):
    config = load_config(preset, overrides)
    base, _ = load_model(config.model.name, config.model.torch_dtype)
    base.requires_grad_(False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base.to(device)
    batch = random_batch(base.config.vocab_size, config.train.batch_size, config.train.max_length, device)
    return config, base, batch, matched_entries(config, base, 1)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(preset: str, overrides: list[str], name: str, queue) -> None:
    """In a fresh process: the peak memory of two training steps of entry `name` (model included)."""
    _, base, batch, entries = _setup(preset, overrides)
    model = mhmoe.attach(base, entries[name].adapter).train()
    step = training_step(model)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        _reset_peak_rss()
    for _ in range(2):
        step(batch)
    queue.put(torch.cuda.max_memory_allocated() if torch.cuda.is_available() else _peak_rss_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", nargs="?", default="table5-cpu", help="a preset or YAML (default: table5-cpu)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timed rounds")
    parser.add_argument("--model", help="override the preset's model (e.g. tiny:llama for a smoke run)")
    args = parser.parse_args()
    overrides = [f"model.name={args.model}"] if args.model else []
    config, base, batch, entries = _setup(args.preset, overrides)
    steps = {}
    for name, entry in entries.items():
        torch.manual_seed(0)
        steps[name] = training_step(mhmoe.attach(copy.deepcopy(base), entry.adapter).train())
    for step in steps.values():
        step(batch)  # warm-up
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(batch)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    del steps
    context = multiprocessing.get_context("spawn")
    memory = {}
    for name in entries:
        queue = context.Queue()
        child = context.Process(target=peak_memory, args=(args.preset, overrides, name, queue))
        child.start()
        memory[name] = queue.get()
        child.join()
    tokens = batch["input_ids"].numel()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"{config.model.name} ({config.model.dtype}), batch {config.train.batch_size} x {config.train.max_length} "
        f"tokens, {device}, {args.rounds} rounds (medians)"
    )
    print(f"{'entry':12} {'ms/step':>9} {'tok/s':>8} {'peak GiB':>9}")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in medians.items():
        print(f"{name:12} {seconds * 1e3:9.1f} {tokens / seconds:8.0f} {memory[name] / 2**30:9.2f}")
    first = next(iter(entries))
    for name in list(entries)[1:]:
        latency, peak = medians[name] / medians[first], memory[name] / memory[first]
        print(
            f"{name} / {first}: latency {latency:.3f}x, peak memory {peak:.3f}x "
            f"(research, Qwen3-8B: {RESEARCH['latency']:.3f}x, {RESEARCH['memory']:.3f}x)"
        )


if __name__ == "__main__":
    main()
