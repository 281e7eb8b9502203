"""Prefix tuning and NoRGa (Le et al., 2024, "Mixture of Experts Meets Prompt-Based Continual Learning"), for
every model that runs its attention through Transformers' attention interface.

Attention is a mixture of experts: each value is an expert, its pre-softmax score s = q.k * scaling its gate.
Prefix tuning adds task-specific experts: per attention layer and task, `prefix_length` keys P_k and values P_v
of shape (kv_heads, prefix_length, head_dim), repeated to the query heads like the model's own keys. NoRGa
replaces the prefix columns' linear gate with a non-linear residual one:

    out = softmax([g(q.P_k * scaling) ; q.K * scaling + mask]) @ [P_v ; V],    g(s) = s + alpha * act(tau * s)

one softmax over prefix and sequence columns, the sequence scores untouched, one learnable (alpha, tau) per
layer initialised to 1 (as the public code's `act_scale`); plain prefix tuning is g(s) = s. Prefixes are
post-RoPE (they carry no position) and every query sees them, padded rows included; the KV cache holds only
the sequence, so the prefixes are concatenated on every call and never repeated per step. Gemma's score
soft-capping, where set, applies to every score before the gate. Each row of the batch uses the prefixes of
its own task (adapters/task_identity.py); with no task chosen, or length 0, the layer is the base model's.

A fresh prefix drawn at random (the public code's uniform [-1, 1]) is a block of foreign keys that every query
attends to: at the lengths a LoRA-sized budget gives (hundreds of columns against tens of real ones) it swamps
the sequence, and the model starts far from its base behaviour. `initialise_from_tokens` instead copies the
frozen model's own keys and values of real tokens (Li & Liang's initialisation from real words' activations),
so a new prefix looks like more context of the task's own prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mhmoe.adapters.config import AdapterConfig, check_int, matching_names
from mhmoe.adapters.task_identity import (
    IDENTITY_MODES,
    TASK_IDENTITY,
    TaskChoice,
    TaskIdentity,
    choose_tasks,
    prefixes_off,
    sequence_positions,
)
from mhmoe.errors import ConfigError

PREFIX_ATTENTION = "mhmoe_prefix"
"""The name the attention function is registered under (in AttentionInterface and AttentionMaskInterface)."""
BANK = "prefix_bank"
"""The attribute of an attention module that holds its prefixes."""
ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu, "identity": lambda s: s}


@dataclass
class PrefixConfig(AdapterConfig):
    """Task-specific prefix tuning: one set of prefix keys and values per task in every target attention layer."""

    kind: ClassVar[str] = "prefix"
    size_field: ClassVar[str] = "prefix_length"
    per_task: ClassVar[bool] = True

    target_modules: list[str] | str = field(default_factory=lambda: ["self_attn"])
    """Attention modules that get prefixes (name suffixes or one regex); each needs `k_proj` and `head_dim`."""
    prefix_length: int = 8
    """Prefix keys and values per task and layer; 0 leaves the base model exactly."""
    tasks: int = 1
    """Prefix sets, one per task of the stream (a run sets it to the stream's length)."""
    identity: str = "infer"
    """A test example's task: 'infer' (the nearest task prototype) or 'oracle' (its true task)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.kind, "prefix_length", self.prefix_length, minimum=0)
        check_int(self.kind, "tasks", self.tasks)
        if self.identity not in IDENTITY_MODES:
            raise ConfigError(
                f"{self.kind} config: field 'identity' must be one of {list(IDENTITY_MODES)}, got {self.identity!r}"
            )

    @property
    def activation(self) -> str | None:
        """The gate's activation; None: the linear gate of plain prefix tuning."""
        return None

    def _gate_parameters(self) -> int:
        return 2 if self.activation is not None else 0  # NoRGa's alpha and tau

    def activated_parameters(self, d_in: int, d_out: int) -> int:
        """In one attention layer of d_in key/value heads of width d_out, a token sees one task's prefix keys and
        values, and the gate."""
        return 2 * d_in * self.prefix_length * d_out + self._gate_parameters()

    def total_parameters(self, d_in: int, d_out: int) -> int:
        """Every task's prefixes, and the gate."""
        return self.tasks * 2 * d_in * self.prefix_length * d_out + self._gate_parameters()


@dataclass
class NoRGaConfig(PrefixConfig):
    """Prefix tuning with NoRGa's non-linear residual gate on the prefix scores."""

    kind: ClassVar[str] = "norga"

    gate: str = "tanh"
    """The gate's activation: tanh, sigmoid, gelu or identity (the paper reports all of them close)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gate not in ACTIVATIONS:
            raise ConfigError(f"norga config: field 'gate' must be one of {list(ACTIVATIONS)}, got {self.gate!r}")

    @property
    def activation(self) -> str | None:
        return self.gate


class PrefixBank(nn.Module):
    """One attention layer's prefixes, adapter_keys_<t> / adapter_values_<t> per task t, and NoRGa's
    adapter_gate_alpha / adapter_gate_tau when gated. Drawn uniform in [-1, 1], as the public code; the prefix
    methods re-initialise each task's prefixes from real tokens before it trains (`initialise_from_tokens`)."""

    def __init__(
        self, *, kv_heads: int, head_dim: int, length: int, tasks: int, activation: str | None, choice: TaskChoice
    ) -> None:
        super().__init__()
        self.length, self.tasks, self.activation = length, tasks, activation
        self.choice = choice
        self.recorded: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        """While not None, every call of the attention function appends its (keys, values) here."""
        for t in range(tasks):
            for part in ("keys", "values"):
                tensor = torch.empty(kv_heads, length, head_dim).uniform_(-1, 1)
                self.register_parameter(f"adapter_{part}_{t}", nn.Parameter(tensor, requires_grad=t == 0))
        if activation is not None:
            self.adapter_gate_alpha = nn.Parameter(torch.ones(()))
            self.adapter_gate_tau = nn.Parameter(torch.ones(()))

    def task_parameters(self, t: int) -> tuple[nn.Parameter, nn.Parameter]:
        return getattr(self, f"adapter_keys_{t}"), getattr(self, f"adapter_values_{t}")

    def gate_parameters(self) -> list[nn.Parameter]:
        return [self.adapter_gate_alpha, self.adapter_gate_tau] if self.activation is not None else []

    def prefixes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's task's keys and values, (batch, kv_heads, length, head_dim) each; batch 1 (broadcast) when
        every row has the same task."""
        if self.choice.same is not None:
            keys, values = self.task_parameters(self.choice.same)
            return keys.unsqueeze(0), values.unsqueeze(0)
        keys = torch.stack([self.task_parameters(t)[0] for t in range(self.tasks)])
        values = torch.stack([self.task_parameters(t)[1] for t in range(self.tasks)])
        return keys[self.choice.tasks], values[self.choice.tasks]

    def gate(self, scores: torch.Tensor) -> torch.Tensor:
        """NoRGa's g(s) = s + alpha * act(tau * s) on prefix scores; the identity without a gate."""
        if self.activation is None:
            return scores
        return scores + self.adapter_gate_alpha * ACTIVATIONS[self.activation](self.adapter_gate_tau * scores)

    def extra_repr(self) -> str:
        return f"length={self.length} per task, tasks={self.tasks}, gate={self.activation}"


def repeat_heads(states: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, kv_heads, n, d) -> (batch, kv_heads * groups, n, d): each key/value head serves `groups` query heads."""
    return states.repeat_interleave(groups, dim=1) if groups > 1 else states


def additive_mask(attention_mask: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
    """0 where a query sees a key, the dtype's minimum elsewhere; None stands for causal (the last query is the
    last key: a decode step sees the whole cache)."""
    queries, keys = scores.shape[-2:]
    if attention_mask is None:
        visible = torch.ones(queries, keys, dtype=torch.bool, device=scores.device).tril(keys - queries)
    elif attention_mask.dtype == torch.bool:
        visible = attention_mask[..., :keys]
    else:
        return attention_mask[..., :keys]
    return torch.where(visible, scores.new_zeros(()), torch.finfo(scores.dtype).min)


def prefix_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention function registered as PREFIX_ATTENTION (the signature of Transformers' eager attention).

    query (batch, heads, q, d); key, value (batch, kv_heads, k, d); attention_mask Transformers' SDPA mask:
    boolean (batch, 1, q, >= k), True where visible, or None for plain causal. Without prefixes this is the
    SDPA path of the base model, call for call.
    """
    bank = getattr(module, BANK, None)
    if bank is not None and bank.recorded is not None:
        bank.recorded.append((key.detach(), value.detach()))
    tasks = bank.choice.tasks if bank is not None else None
    if (tasks is None or bank.length == 0) and softcap is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    scaling = module.head_dim**-0.5 if scaling is None else scaling
    groups = query.shape[1] // key.shape[1]
    scores = query @ repeat_heads(key, groups).transpose(2, 3) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    scores = scores + additive_mask(attention_mask, scores)
    values = repeat_heads(value, groups)
    if tasks is not None and bank.length > 0:
        if tasks.shape[0] != query.shape[0]:
            raise RuntimeError(f"prefix attention: {tasks.shape[0]} task indices for a batch of {query.shape[0]}")
        prefix_keys, prefix_values = bank.prefixes()
        prefix_scores = query @ repeat_heads(prefix_keys.to(query), groups).transpose(2, 3) * scaling
        if softcap is not None:
            prefix_scores = torch.tanh(prefix_scores / softcap) * softcap
        scores = torch.cat([bank.gate(prefix_scores), scores], dim=-1)
        prefix_values = repeat_heads(prefix_values.to(value), groups).expand(values.shape[0], -1, -1, -1)
        values = torch.cat([prefix_values, values], dim=-2)
    half = query.dtype in (torch.float16, torch.bfloat16)
    weights = F.softmax(scores, dim=-1, dtype=torch.float32 if half else query.dtype).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    return (weights @ values).transpose(1, 2).contiguous(), weights


def register_attention() -> None:
    """Register the attention function and its mask (Transformers' SDPA mask) under PREFIX_ATTENTION.

    Without a registered mask function Transformers builds no mask at all for an unknown implementation name.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PREFIX_ATTENTION, prefix_attention)
    AttentionMaskInterface.register(PREFIX_ATTENTION, sdpa_mask)


def attention_modules(model: nn.Module, config: PrefixConfig) -> dict[str, nn.Module]:
    """The attention modules `config.target_modules` names, each checked to have k_proj and head_dim."""
    modules = dict(model.named_modules())
    found = {n: modules[n] for n in matching_names([n for n in modules if n], config.target_modules)}
    if not found:
        examples = [n for n, _ in model.named_modules() if n.endswith("attn")][:3]
        raise ConfigError(
            f"{config.kind} config: field 'target_modules'={config.target_modules!r} matches no module "
            f"(attention modules here: {examples})"
        )
    for name, module in found.items():
        if not isinstance(getattr(module, "k_proj", None), nn.Linear) or not hasattr(module, "head_dim"):
            raise ConfigError(
                f"{config.kind} config: field 'target_modules' matches '{name}', which is not an attention module "
                "with k_proj and head_dim"
            )
    return found


class AttentionSite:
    """Where the prefix kinds attach: a PrefixBank inside each target attention module, one TaskIdentity on the
    model, the registered attention function as the model's implementation, and the task-choosing pre-hook."""

    def shapes(self, model: nn.Module, config: PrefixConfig) -> dict[str, list[int]]:
        """[kv_heads, head_dim] of every target attention module, by name."""
        uses_interface = getattr(type(model), "_can_set_attn_implementation", None)
        if uses_interface is None or not uses_interface():
            raise ConfigError(
                f"{config.kind}: {type(model).__name__} does not run its attention through Transformers' attention "
                "interface, so prefixes cannot be added to it"
            )
        return {
            name: [m.k_proj.out_features // m.head_dim, m.head_dim]
            for name, m in attention_modules(model, config).items()
        }

    def modules(self, model: nn.Module, config: PrefixConfig) -> dict[str, nn.Module]:
        """The new modules by the full name each takes; builds them without touching the model."""
        shapes = self.shapes(model, config)
        text_config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
        first = next(model.parameters())
        identity = TaskIdentity(text_config.hidden_size, config.tasks, config.identity, device=first.device)
        built: dict[str, nn.Module] = {TASK_IDENTITY: identity}
        for name, (kv_heads, head_dim) in shapes.items():
            bank = PrefixBank(
                kv_heads=kv_heads,
                head_dim=head_dim,
                length=config.prefix_length,
                tasks=config.tasks,
                activation=config.activation,
                choice=identity.choice,
            )
            built[f"{name}.{BANK}"] = bank.to(first)
        return built

    def prepare(self, model: nn.Module, config: PrefixConfig) -> None:
        register_attention()
        model.config._attn_implementation = PREFIX_ATTENTION
        model.register_forward_pre_hook(choose_tasks, with_kwargs=True)


def prefix_banks(model: nn.Module) -> list[PrefixBank]:
    return [m for m in model.modules() if isinstance(m, PrefixBank)]


def task_identity(model: nn.Module) -> TaskIdentity:
    identity = getattr(model, TASK_IDENTITY, None)
    if not isinstance(identity, TaskIdentity):
        raise ConfigError("model carries no prefix adapter (kind 'prefix' or 'norga')")
    return identity


def train_only_task(model: nn.Module, current: int) -> None:
    """Make task `current`'s prefixes and the gates the only trainable parameters, and train on that task."""
    banks = prefix_banks(model)
    identity = task_identity(model)
    if not 0 <= current < identity.adapter_prototypes.shape[0]:
        raise ConfigError(f"prefix: task {current + 1} is beyond the adapter's {identity.adapter_prototypes.shape[0]}")
    for bank in banks:
        for t in range(bank.tasks):
            for param in bank.task_parameters(t):
                param.requires_grad_(t == current)
        for param in bank.gate_parameters():
            param.requires_grad_(True)
    identity.training_task = current


@torch.no_grad()
def initialise_from_tokens(
    model: nn.Module, task: int, input_ids: torch.Tensor, attention_mask: torch.Tensor, seed: int
) -> None:
    """Set task `task`'s prefixes in every layer to the frozen model's keys and values (post-RoPE, as the
    attention sees them) of `prefix_length` real tokens of the batch: a seeded draw without replacement over
    its unpadded tokens, repeated whole when there are fewer, the same tokens in every layer."""
    banks = prefix_banks(model)
    if not banks or banks[0].length == 0:
        return
    for bank in banks:
        bank.recorded = []
    try:
        with prefixes_off(model):
            model.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=sequence_positions(attention_mask),
                use_cache=False,
            )
        recorded = [bank.recorded for bank in banks]
    finally:
        for bank in banks:
            bank.recorded = None
    rows, columns = attention_mask.bool().nonzero(as_tuple=True)
    if len(rows) == 0:
        raise ConfigError("prefix: no real token to initialise the prefixes from (every row is padding)")
    generator = torch.Generator().manual_seed(seed)
    length = banks[0].length
    draws = [torch.randperm(len(rows), generator=generator) for _ in range(-(-length // len(rows)))]
    chosen = torch.cat(draws)[:length].to(rows.device)
    for bank, calls in zip(banks, recorded, strict=True):
        if len(calls) != 1:
            raise RuntimeError(f"prefix: expected one attention call per layer, got {len(calls)}")
        keys, values = calls[0]
        for param, states in zip(bank.task_parameters(task), (keys, values), strict=True):
            picked = states[rows[chosen], :, columns[chosen]]  # (length, kv_heads, head_dim)
            param.copy_(picked.transpose(0, 1).to(param))
