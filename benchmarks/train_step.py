"""Training tokens/s of one step on SmolLM2-135M: LoRA, LoRAMoE and MH-MoE at matched activated parameters,
and the floor, side by side.

The floor is the frozen base alone: forward + backward with the gradient taken with respect to the input
embeddings, the work every adapter step must do anyway. Each adapter step is what the training loop does:
the answer-only loss, backward, AdamW. Variants run in interleaved rounds so machine noise hits them alike;
medians are reported, with the ratios the targets are written in (MH-MoE <= 1.05x LoRAMoE, <= 1.15x floor).

    python benchmarks/train_step.py            # about 5 minutes on 2 cores
    python benchmarks/train_step.py --quick
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time

import torch

import mhmoe
from mhmoe.cl.loss import answer_loss
from mhmoe.config import load_config
from mhmoe.data.collate import training_batch
from mhmoe.data.stream import load_tasks
from mhmoe.models import load_model


def benchmark_batch(tokenizer, batch_size: int) -> dict[str, torch.Tensor]:
    """A real training batch of the default stream: stance prompts, their one-letter answers."""
    task = load_tasks(load_config().data, seed=0)[0]
    return training_batch(tokenizer, task.split("train")[:batch_size], max_length=256)


def adapter_step(model, optimizer):
    def step(batch):
        answer_loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def floor_step(model):
    """Frozen base only: gradient with respect to the input embeddings."""
    embed = model.get_input_embeddings()

    def step(batch):
        inputs = {k: v for k, v in batch.items() if k != "input_ids"}
        inputs["inputs_embeds"] = embed(batch["input_ids"]).detach().requires_grad_()
        answer_loss(model, inputs).backward()

    return step


def variants(base, batch_size: int) -> dict:
    reference = mhmoe.MHMoEConfig()
    configs = {
        "LoRA": mhmoe.LoRAConfig(),
        "LoRAMoE": mhmoe.LoRAMoEConfig(),
        "MH-MoE": reference,
    }
    steps = {"floor (frozen base)": floor_step(base)}
    for name, config in configs.items():
        if config is not reference:
            rank = mhmoe.matched_rank(base, config, reference)
            config = dataclasses.replace(config, rank=rank, alpha=config.scaling * rank)
        model = mhmoe.attach(copy.deepcopy(base), config).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        steps[f"{name} (r={config.rank})"] = adapter_step(model, optimizer)
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    base, tokenizer = load_model()
    base.requires_grad_(False)
    batch = benchmark_batch(tokenizer, args.batch_size)
    tokens = int(batch["attention_mask"].sum())
    steps = variants(base, args.batch_size)
    rounds = 3 if args.quick else 8
    times = {name: [] for name in steps}
    for step in steps.values():
        step(batch)  # warm-up
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step(batch)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    floor = medians["floor (frozen base)"]
    print(
        f"SmolLM2-135M, batch {args.batch_size} ({tokens} tokens), {torch.get_num_threads()} threads, {rounds} rounds"
    )
    print(f"{'variant':28} {'s/step':>8} {'tokens/s':>9} {'x floor':>8}")
    for name, seconds in medians.items():
        print(f"{name:28} {seconds:8.3f} {tokens / seconds:9.0f} {seconds / floor:8.2f}")
    mhmoe_s = next(s for n, s in medians.items() if n.startswith("MH-MoE"))
    loramoe_s = next(s for n, s in medians.items() if n.startswith("LoRAMoE"))
    print(f"MH-MoE / LoRAMoE: {mhmoe_s / loramoe_s:.3f} (target <= 1.05)")
    print(f"MH-MoE / floor:   {mhmoe_s / floor:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
