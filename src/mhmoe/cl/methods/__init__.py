"""Continual-learning methods: which adapter a method trains, and the hooks it adds to the one training loop.

A method is an adapter kind plus the hooks the loop calls: before a task, a loss penalty, after backward,
after a step (without task boundaries), after a task. Each method subclasses `Hooks`, whose hooks do nothing,
and overrides only those it needs; the plain methods train their adapter straight through the stream with
`NoHooks`. The contract (Hooks, HookContext, Method) lives in the leaf module `hooks`; this file is the registry.
"""

from mhmoe.cl.methods.ewc import EWC, EWCOptions
from mhmoe.cl.methods.gem import GEM, GEMOptions
from mhmoe.cl.methods.hooks import HookContext, Hooks, Method, NoHooks
from mhmoe.cl.methods.olora import OLoRA, OLoRAOptions
from mhmoe.cl.methods.prefix import PrefixOptions, PrefixTuning
from mhmoe.cl.methods.replay import Replay, ReplayOptions

__all__ = ["ALIASES", "METHODS", "HookContext", "Hooks", "Method", "NoHooks"]

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("lora", "lora", NoHooks, "one LoRA trained through the whole stream (SeqLoRA)"),
        Method("loramoe", "loramoe", NoHooks, "K LoRA experts behind one router over the whole input"),
        Method("mhmoe", "mhmoe", NoHooks, "H head slices, each with its own router and private bank of K experts"),
        Method(
            "ewc", "lora", EWC, "SeqLoRA plus a diagonal-Fisher penalty anchoring earlier tasks' weights", EWCOptions
        ),
        Method(
            "gem",
            "lora",
            GEM,
            "SeqLoRA whose gradient is projected so it never conflicts with earlier tasks' memory gradients",
            GEMOptions,
        ),
        Method(
            "olora",
            "olora",
            OLoRA,
            "a fresh LoRA per task, kept orthogonal to the frozen LoRAs of earlier tasks",
            OLoRAOptions,
            needs_tasks="trains a fresh LoRA per task, so it must know where each task starts",
        ),
        Method(
            "prefix",
            "prefix",
            PrefixTuning,
            "task-specific prefix keys and values in every attention layer; a test prompt's task is inferred",
            PrefixOptions,
            needs_tasks="trains and identifies one prefix set per task, so it must know where each task starts",
        ),
        Method(
            "norga",
            "norga",
            PrefixTuning,
            "prefix tuning with NoRGa's non-linear residual gate on the prefix scores",
            PrefixOptions,
            needs_tasks="trains and identifies one prefix set per task, so it must know where each task starts",
        ),
        Method(
            "replay",
            "lora",
            Replay,
            "SeqLoRA that also trains on stored examples of earlier tasks in every batch",
            ReplayOptions,
        ),
    )
}
ALIASES = {"seqlora": "lora"}
"""Other names a method answers to: the research calls sequentially fine-tuned LoRA 'SeqLoRA'. An entry keeps the
name it was given (a table shows 'seqlora' if the config says so) and runs the method the alias names."""
METHODS |= {alias: METHODS[name] for alias, name in ALIASES.items()}
