"""Forward + backward time of one adapted linear at SmolLM2's MLP shapes, every implementation side by side.

Rows: the frozen linear alone; LoRA and LoRAMoE at MH-MoE's activated parameters; MH-MoE (mhmoe's
head-batched layer); and the same MH-MoE weights run by the usual Mixtral-style dispatch that most MoE-LoRA
code uses (loop over (head, expert), select its tokens, run, index_add). Implementations are timed in
interleaved rounds, so machine noise hits them alike; medians are reported.

    python benchmarks/adapter_layer.py            # the full table (a few minutes on 2 cores)
    python benchmarks/adapter_layer.py --quick    # fewer rounds
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch
from torch import nn

import mhmoe
from mhmoe.adapters import build_layer
from mhmoe.adapters.moe import HeadedMoELinear
from mhmoe.adapters.routing import route


class LoopDispatchMHMoE(nn.Module):
    """MH-MoE computed the common way: for each (head, expert), gather its tokens, run the expert, index_add."""

    def __init__(self, layer: HeadedMoELinear) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        flat = x.reshape(-1, layer.in_features)
        out = layer.base_layer(flat)
        update = torch.zeros_like(out)
        for m in range(layer.heads):
            x_m = flat[:, m * layer.head_dim : (m + 1) * layer.head_dim]
            gates, chosen, _ = route(x_m @ layer.adapter_router[m], layer.top_k, layer.gate)
            for j in range(layer.experts):
                tokens = (chosen == j).any(-1).nonzero().squeeze(-1)
                if tokens.numel():
                    y = (x_m[tokens] @ layer.adapter_A[m, :, j]) @ layer.adapter_B[m, j]
                    update.index_add_(0, tokens, y * gates[tokens, j, None].to(y.dtype))
        return (out + update * layer.scaling).view(*x.shape[:-1], -1)


def adapted(config, base: nn.Linear) -> nn.Module:
    layer = build_layer(config, base)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("adapter_B"):
                p.normal_(std=0.02)  # B=0 would let nothing flow; real training has non-zero B
    return layer


def at_matched_rank(config, reference, d_in: int, d_out: int):
    """`config` with the rank whose activated parameters on one d_in -> d_out linear come closest to `reference`'s."""
    host = nn.ModuleDict({"proj": nn.Linear(d_in, d_out)})
    config, reference = (dataclasses.replace(c, target_modules=["proj"]) for c in (config, reference))
    return dataclasses.replace(config, rank=mhmoe.matched_rank(host, config, reference))


def step_time(module: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> float:
    """One forward + backward; the upstream gradient is a real tensor, as in training (not a stride-0 expand)."""
    x.grad = None
    for p in module.parameters():
        p.grad = None
    start = time.perf_counter()
    module(x).backward(grad_out)
    return time.perf_counter() - start


def measure(impls: dict[str, nn.Module], tokens: int, d_in: int, d_out: int, rounds: int) -> dict[str, float]:
    x = torch.randn(tokens, d_in, requires_grad=True)
    grad_out = torch.randn(tokens, d_out)
    inner = max(1, 64 // max(1, tokens // 64))  # small inputs: time many steps per sample
    for module in impls.values():
        for _ in range(3):
            step_time(module, x, grad_out)
    samples = {name: [] for name in impls}
    for _ in range(rounds):
        for name, module in impls.items():
            samples[name].append(sum(step_time(module, x, grad_out) for _ in range(inner)) / inner)
    return {name: statistics.median(s) * 1e3 for name, s in samples.items()}


def flop_share(config, d_in: int, d_out: int) -> float:
    """Adapter forward FLOPs over the base linear's, for the ideal (sparse) computation."""
    return mhmoe.activated_parameters(config, d_in, d_out) / (d_in * d_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer timing rounds")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rounds = 5 if args.quick else 15
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward+backward, median ms; "
        f"'x frozen' = time / frozen linear's"
    )
    for d_in, d_out in [(576, 1536), (1536, 576)]:
        for top_k in (1, 2):
            ref = mhmoe.MHMoEConfig(rank=8, experts=4, top_k=top_k, heads=8)
            lora = at_matched_rank(mhmoe.LoRAConfig(), ref, d_in, d_out)
            loramoe = at_matched_rank(mhmoe.LoRAMoEConfig(top_k=top_k), ref, d_in, d_out)
            base = nn.Linear(d_in, d_out).requires_grad_(False)
            ours = adapted(ref, base)
            impls = {
                "frozen linear": base,
                f"LoRA r={lora.rank}": adapted(lora, base),
                f"LoRAMoE r={loramoe.rank}": adapted(loramoe, base),
                "MH-MoE (mhmoe)": ours,
                "MH-MoE (head,expert) loop": LoopDispatchMHMoE(ours),
            }
            for tokens in (4096, 8):
                times = measure(impls, tokens, d_in, d_out, rounds)
                frozen, mh = times["frozen linear"], times["MH-MoE (mhmoe)"]
                lm = times[f"LoRAMoE r={loramoe.rank}"]
                print(f"\n{d_in}->{d_out}, top-{top_k}, K=4, H=8, r=8, {tokens} tokens")
                for name, ms in times.items():
                    print(f"  {name:28s} {ms:9.3f} ms   {ms / frozen:5.2f}x frozen")
                ideal = 1.5 * flop_share(ref, d_in, d_out)
                print(f"  MH-MoE / LoRAMoE (matched)   {mh / lm:5.2f}x   (target <= 1.10)")
                print(
                    f"  loop / MH-MoE                {times['MH-MoE (head,expert) loop'] / mh:5.2f}x   "
                    f"(target >= {2 if tokens > 8 else 5})"
                )
                print(
                    f"  MH-MoE extra over frozen     {mh / frozen - 1:+6.1%}   ideal-FLOP prediction {ideal:+.1%} "
                    f"(training = 1.5x the forward share); ratio {(mh / frozen - 1) / ideal:.2f} (stretch <= 2)"
                )
    print("\nMH-MoE time vs H at fixed activated parameters (576->1536, top-1, K=4, 4096 tokens)")
    ref8 = mhmoe.MHMoEConfig(rank=8)
    base = nn.Linear(576, 1536).requires_grad_(False)
    sweep = {"frozen": base}
    for heads in (1, 2, 4, 8, 16):
        config = at_matched_rank(mhmoe.MHMoEConfig(heads=heads), ref8, 576, 1536)
        sweep[f"H={heads:2d} r={config.rank}"] = adapted(config, base)
    times = measure(sweep, 4096, 576, 1536, rounds)
    for name, ms in times.items():
        print(f"  {name:14s} {ms:8.3f} ms   {ms / times['frozen']:5.2f}x frozen")


if __name__ == "__main__":
    main()
