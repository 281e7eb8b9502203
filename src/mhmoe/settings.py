"""Run settings: grouped dataclasses with a docstring per field, and the checks each field can make alone.

Every field's type, range and spelling is checked when a config is built, so an impossible setting stops a run
with one line naming the field before any model is loaded or any file is written. This module imports neither
torch nor any registry, so reading settings stays cheap; the checks that need the method and adapter registries
(method names, adapter fields, variants) are `mhmoe.cl.entries.check_registries`, which `load_config` also runs.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from mhmoe.checks import check_int, check_positive
from mhmoe.claims_spec import Claim
from mhmoe.errors import ConfigError
from mhmoe.variants import NAME_PATTERN

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The base model shipped offline (mhmoe.models fetches and caches it)."""
DTYPES = ("float32", "bfloat16", "float16")
"""Weights' dtypes by their torch names."""
ADAPTER_KINDS = ("lora", "loramoe", "mhmoe", "olora", "prefix", "norga")
"""The adapter kinds of `mhmoe.adapters.KINDS`, named here so the settings need not import the layers (a test
keeps the two equal)."""


@dataclass
class ModelSettings:
    name: str = DEFAULT_MODEL
    """The base model: 'smollm2-135m-instruct' (shipped offline), a local Hugging Face folder, a cached hub name,
    or 'tiny:<family>' (a random test model)."""
    dtype: str = "float32"
    """Weights' dtype: float32, bfloat16 or float16."""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"model config: field 'dtype' must be one of {list(DTYPES)}, got {self.dtype!r}")

    @property
    def torch_dtype(self) -> Any:
        """The weights' torch.dtype; torch is imported here, not with the settings."""
        import torch

        return getattr(torch, self.dtype)


BENCHMARKS = ("builtin", "trace", "cl_benchmark", "cl_sample")


def check_derived_tasks(derived: dict[str, Any]) -> None:
    """Each derived task is {dataset: str, labels: a non-empty mapping of strings to strings}."""
    for name, spec in derived.items():
        where = f"data config: field 'derived_tasks.{name}'"
        if not isinstance(spec, dict) or sorted(spec) != ["dataset", "labels"]:
            raise ConfigError(f"{where} must be a mapping with exactly 'dataset' and 'labels', got {spec!r}")
        if not isinstance(spec["dataset"], str) or not spec["dataset"]:
            raise ConfigError(f"{where}.dataset must be a dataset name, got {spec['dataset']!r}")
        labels = spec["labels"]
        if (
            not isinstance(labels, dict)
            or not labels
            or not all(isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in labels.items())
        ):
            raise ConfigError(f"{where}.labels must map the dataset's labels to answer words, got {labels!r}")


@dataclass
class DataSettings:
    benchmark: str = "builtin"
    """'builtin' (generated offline, in TRACE's format), 'trace' (task folders read from data_dir: TRACE, or your
    own JSON/JSONL/CSV/Parquet files), 'cl_benchmark' (O-LoRA's CL Benchmark layout in data_dir) or 'cl_sample'
    (the sample of the CL Benchmark shipped with the package: dbpedia, MNLI, BoolQA; real text, offline)."""
    data_dir: str | None = None
    """Folder of task folders (benchmark 'trace') or the CL Benchmark's root (benchmark 'cl_benchmark')."""
    instruction_file: str | None = None
    """CL Benchmark: its instruction_config.json; empty: looked for in data_dir, data_dir/configs and
    data_dir/../configs."""
    order: list[str] | None = None
    """Task names in stream order; empty means the benchmark's default order."""
    derived_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    """CL Benchmark: tasks cut from a dataset, name -> {dataset: its dataset, labels: {label: answer word}}: the
    records of those labels, answered by the mapped words (e.g. two 4-way tasks from dbpedia's 14 topics, both
    answered A-D). Name them in `order`."""
    train_size: int = 256
    """Built-in benchmark: training examples per task."""
    test_size: int = 48
    """Built-in benchmark: test examples per task (eval split: 32)."""
    train_limit: int | None = None
    """Cap on training examples per task (a seeded sample; TRACE's 5000-example variant is 5000)."""
    test_limit: int | None = None
    """Cap on test examples per task (a seeded sample)."""
    encoding: str = "utf-8"
    """Text encoding of your data files (JSON, JSONL, CSV); a file that does not decode is refused, naming the byte."""

    def __post_init__(self) -> None:
        if self.benchmark not in BENCHMARKS:
            raise ConfigError(
                f"data config: field 'benchmark' must be one of {list(BENCHMARKS)}, got {self.benchmark!r}"
            )
        if self.benchmark in ("trace", "cl_benchmark") and not self.data_dir:
            raise ConfigError(f"data config: field 'data_dir' is required for benchmark '{self.benchmark}'")
        for name in ("train_size", "test_size"):
            check_int("data", name, getattr(self, name))
        for name in ("train_limit", "test_limit"):
            if getattr(self, name) is not None:
                check_int("data", name, getattr(self, name))
        check_derived_tasks(self.derived_tasks)
        try:
            codecs.lookup(self.encoding)
        except (LookupError, TypeError):
            raise ConfigError(
                f"data config: field 'encoding' {self.encoding!r} is not a known text encoding"
            ) from None

    def ignored(self) -> list[str]:
        """The settings given that do not apply to this benchmark, each with what to use instead: said, since a
        run that silently ignores them is not the run the user asked for."""
        defaults, notes = DataSettings(), []
        if self.benchmark != "builtin":
            for name in ("train_size", "test_size"):
                if getattr(self, name) != getattr(defaults, name):
                    limit = name.replace("size", "limit")
                    notes.append(
                        f"data.{name}={getattr(self, name)} sizes the built-in benchmark only and is ignored with "
                        f"'{self.benchmark}' (data.{limit} caps its splits)"
                    )
        elif self.data_dir or self.encoding != defaults.encoding:
            notes.append("data.data_dir and data.encoding are ignored by the built-in benchmark (it writes its own)")
        if self.benchmark == "cl_sample" and self.data_dir:
            notes.append("data.data_dir is ignored by 'cl_sample' (the package's own sample); use 'cl_benchmark'")
        if self.benchmark not in ("cl_benchmark", "cl_sample") and self.derived_tasks:
            notes.append(f"data.derived_tasks is read by the CL Benchmark only and is ignored with '{self.benchmark}'")
        if self.benchmark != "cl_benchmark" and self.instruction_file:
            notes.append(
                f"data.instruction_file is read by the CL Benchmark only and is ignored with '{self.benchmark}'"
            )
        return notes


@dataclass
class TrainSettings:
    lr: float = 1e-4
    """Peak learning rate of AdamW (the research's 1e-4)."""
    epochs: int = 1
    """Passes over each task's training split."""
    max_steps: int | None = None
    """Cap on optimizer steps per task (after epochs)."""
    batch_size: int = 8
    """Examples per forward pass."""
    grad_accum: int = 1
    """Forward passes per optimizer step (the effective batch is batch_size * grad_accum)."""
    max_length: int = 256
    """Tokens per training example (prompt truncated from the left)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    """AdamW betas."""
    eps: float = 1e-6
    """AdamW epsilon."""
    warmup_ratio: float = 0.0
    """Fraction of each task's steps spent warming the learning rate up, before the cosine decay."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping by global norm; empty turns it off."""
    log_every: int = 1
    """Write training metrics every this many optimizer steps."""
    checkpoint_every: int = 50
    """Also checkpoint every this many optimizer steps inside a task (0: only at task ends)."""

    def __post_init__(self) -> None:
        for name in ("lr", "eps"):
            check_positive("train", name, getattr(self, name))
        check_positive("train", "weight_decay", self.weight_decay, allow_zero=True)
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "log_every"):
            check_int("train", name, getattr(self, name))
        if self.max_steps is not None:
            check_int("train", "max_steps", self.max_steps)
        check_int("train", "checkpoint_every", self.checkpoint_every, minimum=0)
        if self.max_grad_norm is not None:
            check_positive("train", "max_grad_norm", self.max_grad_norm)
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"train config: field 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"train config: field 'betas' must be two numbers in [0, 1), got {self.betas!r}")


@dataclass
class EvalSettings:
    batch_size: int = 16
    """Prompts per generation batch."""
    max_prompt_tokens: int = 512
    """Prompt tokens kept for generation (truncated from the left)."""
    split: str = "test"
    """The split scored into R: 'test' or 'eval'."""
    max_new_tokens: int | None = None
    """Cap on the tokens generated per answer; empty: each task's own length (TRACE's tasks: 512, as TRACE)."""
    scoring: str = "generate"
    """How R is scored: 'generate' (greedy generation, TRACE's protocol) or 'options' (for exact-answer tasks:
    each example's most likely answer among the task's labels, or its distinct answers; the harnesses'
    multiple-choice protocol)."""
    shared_prefill: bool = True
    """Score R and L from one forward over each batch's prompts where that is exact (cl/prefill_eval.py); false:
    the two passes of earlier builds, with prompts in split order (the same probabilities, summed in another
    float order)."""

    def __post_init__(self) -> None:
        check_int("eval", "batch_size", self.batch_size)
        check_int("eval", "max_prompt_tokens", self.max_prompt_tokens)
        if self.max_new_tokens is not None:
            check_int("eval", "max_new_tokens", self.max_new_tokens)
        if self.split not in ("test", "eval"):
            raise ConfigError(f"eval config: field 'split' must be 'test' or 'eval', got {self.split!r}")
        if self.scoring not in ("generate", "options"):
            raise ConfigError(f"eval config: field 'scoring' must be 'generate' or 'options', got {self.scoring!r}")


MODES = ("boundaries", "taskfree")
"""How a stream reaches the methods: task by task with its boundaries announced, or as one gradual mixture."""


@dataclass
class StreamSettings:
    boundaries: bool = True
    """False: training data arrives as one sequence of batches whose task mixture shifts gradually ('blur'), and
    methods get no task-start or task-end signal; each task still contributes the same examples."""
    blur: float = 0.25
    """Without boundaries: overlap of neighbouring tasks, the sd of the smoothing of each task's interval as a
    fraction of the whole stream (0: hard boundaries, exactly the boundary mode's batches; 1: fully mixed)."""
    eval_every: int = 0
    """Also score every task's test set every this many optimizer steps of the stream (the anytime matrix and
    its plot); 0: only after each task. Required without boundaries."""
    consolidate_every: int = 24
    """Without boundaries: EWC re-estimates its Fisher online and GEM stores a pseudo-task memory every this many
    steps (their stand-ins for a task's end)."""
    schedule: str = "task"
    """With boundaries: 'task' gives every task a fresh optimizer and cosine schedule (TRACE's protocol); 'stream'
    one optimizer and one cosine over the whole stream, as a stream without boundaries has, so the two modes
    differ only in what the methods are told."""

    def __post_init__(self) -> None:
        if not isinstance(self.blur, (int, float)) or isinstance(self.blur, bool) or not 0 <= self.blur < math.inf:
            raise ConfigError(f"stream config: field 'blur' must be a number >= 0, got {self.blur!r}")
        check_int("stream", "eval_every", self.eval_every, minimum=0)
        check_int("stream", "consolidate_every", self.consolidate_every)
        if self.schedule not in ("task", "stream"):
            raise ConfigError(f"stream config: field 'schedule' must be 'task' or 'stream', got {self.schedule!r}")
        if not self.boundaries and not self.eval_every:
            raise ConfigError(
                "stream config: field 'eval_every' must be > 0 when 'boundaries' is false (no task ends to score at)"
            )


@dataclass
class AnalysisSettings:
    examples_per_task: int = 128
    """Examples analysed per task (a seeded sample of each split used); every token of them counts."""
    module: str = "up_proj"
    """Which adapted linear of each layer is analysed (a module-name suffix); its input is the router input."""
    max_layers: int = 8
    """Layers analysed, evenly spaced from first to last."""
    heads: int = 8
    """Head slices for the probes' ablation when the run has no MH-MoE adapter (else its heads)."""
    frequency_buckets: int = 4
    """Quantile buckets of token frequency over the analysed tokens."""
    position_buckets: int = 4
    """Buckets of relative position in the sequence."""
    probe_tokens: int = 8000
    """Tokens whose router inputs are kept for the probes (a seeded sample of the training examples' tokens)."""
    test_share: float = 0.25
    """Share of the probe tokens' examples held out to score the probes (the split is by example)."""
    gradient_tokens: int = 1500
    """Tokens whose exact per-token gradients are compared: each costs one backward pass of its own sequence,
    and the cosines cost grows with its square."""
    gradient_sketch: int = 64
    """A per-token gradient larger than this squared is kept as a seeded sketch x sketch Gaussian projection
    (cosines preserved in expectation, error of order 1/sketch); 0 keeps every gradient whole."""
    null_draws: int = 20
    """Seeded shuffles of the compositions over the tokens (route sizes kept) for N_eff's permutation null."""
    bootstrap: int = 200
    """Seeded resamples of the examples for the interval of the route-wise forgetting correlation."""
    forgetting_split: str = "test"
    """Whose tokens N_eff, route-wise forgetting and attribution read: the tasks' held-out 'test' examples,
    or 'train' (the examples the adapters were trained on)."""
    forgetting_tokens: str = "answer"
    """Whose losses route-wise forgetting and attribution measure: 'answer' (the answer tokens, the forgetting
    the loss matrix L and loss-BWT report) or 'all' (every next-token loss, prompt included)."""
    causal_modules: int = 2
    """Analysed MoE modules (evenly spaced) whose experts are put back to before each task one at a time for the
    causal attribution: one pass over the old task's examples per expert and task pair; 0 skips it."""
    bins: int = 4
    """Equal-mass N_eff bins for route-wise forgetting."""
    min_route_tokens: int = 5
    """Routes with fewer old-task tokens are left out of the bins' means and the correlation (not the mass)."""
    batch_size: int = 16
    """Examples per forward pass."""

    def __post_init__(self) -> None:
        for name in ("examples_per_task", "max_layers", "heads", "probe_tokens", "gradient_tokens", "batch_size"):
            check_int("analysis", name, getattr(self, name))
        for name in ("frequency_buckets", "position_buckets", "bins", "null_draws", "bootstrap"):
            check_int("analysis", name, getattr(self, name), minimum=2)
        check_int("analysis", "min_route_tokens", self.min_route_tokens)
        check_int("analysis", "gradient_sketch", self.gradient_sketch, minimum=0)
        check_int("analysis", "causal_modules", self.causal_modules, minimum=0)
        if not 0 < self.test_share < 1:
            raise ConfigError(f"analysis config: field 'test_share' must be in (0, 1), got {self.test_share!r}")
        if self.forgetting_tokens not in ("answer", "all"):
            raise ConfigError(
                f"analysis config: field 'forgetting_tokens' must be 'answer' or 'all', got {self.forgetting_tokens!r}"
            )
        if self.forgetting_split not in ("test", "train"):
            raise ConfigError(
                f"analysis config: field 'forgetting_split' must be 'test' or 'train', got {self.forgetting_split!r}"
            )


@dataclass
class RunConfig:
    name: str | None = None
    """Run folder name under output_dir; empty means '<preset or methods>-<date>-<time>'."""
    output_dir: str = "runs"
    """Where run folders are created."""
    seed: int = 0
    """Seeds the data sample, the adapter initialisation and the batch order (when 'seeds' is empty)."""
    seeds: list[int] = field(default_factory=list)
    """Run every method once per seed (each in its own folder seed-<s>/), then report means and 95% intervals
    over seeds and paired differences against 'compare_to'; empty: one run with 'seed'."""
    orders: dict[str, list[str]] = field(default_factory=dict)
    """Named task orders, e.g. {order-1: [FOMC, C-STANCE, ...]}: the whole run (every method, every seed) repeats
    once per order, in folder <order>/, and the top report compares the methods order by order; each order
    holds the same tasks. Empty: one run in 'data.order'."""
    modes: list[str] = field(default_factory=list)
    """Run everything once with task boundaries and once without ([boundaries, taskfree]), each in its own folder
    <mode>/, and compare the methods' gaps between the two; needs stream.eval_every. Empty: stream.boundaries."""
    compare_to: str | None = None
    """Reference method of the paired per-seed differences; empty: mhmoe when it is in the run, else none."""
    methods: list[str] = field(default_factory=lambda: ["lora", "loramoe", "mhmoe"])
    """Methods trained on the same stream, one after another (see `mhmoe run --help`)."""
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named configurations of a method, trained after 'methods' and reported under their names, e.g.
    {mhmoe-h2: {method: mhmoe, adapter: {heads: 2}, match: none}}; fields: method, adapter, method_options,
    match ('activated', 'total' or 'none')."""
    match_activated: str | None = "mhmoe"
    """The reference adapter kind: every other method gets the rank whose activated parameters per token match
    this kind's (the research's comparison; a variant may match total parameters instead); empty keeps each
    kind's configured rank."""
    claims: list[dict[str, Any]] = field(default_factory=list)
    """Claims declared before the run, each {metric, a, b, direction: lower|higher, primary, margin}: on `metric`,
    entry a is predicted lower or higher than entry b. The primary claims are tested as one family (Holm); the
    report gives each a verdict (supported, contradicted, not resolved, or equivalent within the margin) and
    labels every other comparison exploratory."""
    until_resolved: int | None = None
    """Sequential seeds: after 'seeds', add 'seed_group' more at a time until every primary claim is resolved or
    this many seeds have run. The claims' verdicts then come from a group-sequential test over the planned looks
    (O'Brien-Fleming-type alpha spending), whose error rate holds under this optional stopping; empty: 'seeds'."""
    seed_group: int = 1
    """Seeds added at each look of 'until_resolved'."""
    threads: int | None = None
    """Torch threads for the run, recorded with its results: float reduction order depends on it, so runs to be
    compared must use the same count (one-thread runs side by side stay comparable); empty: torch's default."""
    log_with: list[str] = field(default_factory=list)
    """Accelerate trackers for training curves, e.g. [tensorboard]."""
    progress: bool = True
    """Progress bars for training and evaluation."""
    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    adapters: dict[str, dict[str, Any]] = field(default_factory=lambda: {kind: {} for kind in ADAPTER_KINDS})
    """Per adapter kind, fields of its config (rank, experts, heads, top_k, gate, balance_coef, target_modules...).
    With the MoE defaults (top_k 1, gate 'selected', balance_coef 0, the research's setting) the chosen expert's
    weight is always 1, so the routers receive no gradient and keep their random initial routing for the whole
    run; gate=full or balance_coef > 0 lets them learn."""
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per method, its own settings, e.g. {ewc: {lam: 1000, fisher_examples: 64}} (see the method docs)."""

    def __post_init__(self) -> None:
        if not self.methods and not self.variants:
            raise ConfigError("run config: fields 'methods' and 'variants' name no method")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"run config: field 'methods' repeats a method: {self.methods}")
        check_int("run", "seed", self.seed, minimum=0)
        for seed in self.seeds:
            check_int("run", "seeds", seed, minimum=0)
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"run config: field 'seeds' repeats a seed: {self.seeds}")
        for name in self.variants:
            if name in self.methods:
                raise ConfigError(f"run config: variant {name!r} has the name of a method in 'methods'")
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise ConfigError(
                    f"run config: variant name {name!r} must be letters, digits and . _ + - (it names a folder)"
                )
        self._check_orders()
        self._check_modes()
        names = self.entry_names()
        if self.compare_to is not None and self.compare_to not in names:
            raise ConfigError(
                f"run config: field 'compare_to' names {self.compare_to!r}, which is not a method or variant {names}"
            )
        self._check_sequential()
        if self.threads is not None:
            check_int("run", "threads", self.threads)
        for index, claim in enumerate(self.declared_claims()):
            for entry in (claim.a, claim.b):
                if entry not in names:
                    raise ConfigError(f"run config: field 'claims[{index}]' names {entry!r}, not an entry {names}")
        for tracker in self.log_with:
            if tracker not in ("tensorboard", "wandb", "mlflow", "comet_ml", "aim", "clearml", "dvclive"):
                raise ConfigError(f"run config: field 'log_with' has unknown tracker {tracker!r}")

    def _check_sequential(self) -> None:
        check_int("run", "seed_group", self.seed_group)
        if self.until_resolved is None:
            return
        check_int("run", "until_resolved", self.until_resolved)
        if len(self.seeds) < 3 or self.until_resolved <= len(self.seeds):
            raise ConfigError(
                "run config: field 'until_resolved' needs at least 3 'seeds' to start from and must exceed their "
                f"count ({len(self.seeds)}), got {self.until_resolved}"
            )
        if not any(claim.primary for claim in self.declared_claims()):
            raise ConfigError("run config: field 'until_resolved' needs a primary claim to resolve")
        if self.orders or self.modes:
            raise ConfigError("run config: field 'until_resolved' runs one stream; not with 'orders' or 'modes'")

    def looks(self) -> list[int]:
        """The seed counts at which a sequential run tests its claims: len(seeds), +seed_group, ..., until_resolved."""
        if self.until_resolved is None:
            return []
        counts = list(range(len(self.seeds), self.until_resolved, self.seed_group))
        return [*counts, self.until_resolved]

    def declared_claims(self) -> list[Claim]:
        """The claims, validated (a one-line error naming the claim's field otherwise)."""
        claims = []
        for index, raw in enumerate(self.claims):
            try:
                claims.append(build(Claim, raw, f"claims[{index}]."))
            except ConfigError as err:
                raise ConfigError(f"run config: claims[{index}]: {err}") from None
        return claims

    def _check_orders(self) -> None:
        first = None
        for name, order in self.orders.items():
            if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
                raise ConfigError(
                    f"run config: order name {name!r} must be letters, digits and . _ + - (it names a folder)"
                )
            if not order or len(set(order)) != len(order):
                raise ConfigError(f"run config: field 'orders.{name}' must list each task once, got {order}")
            if first is not None and sorted(order) != sorted(first[1]):
                raise ConfigError(
                    f"run config: field 'orders.{name}' holds other tasks than 'orders.{first[0]}' "
                    f"({sorted(set(order) ^ set(first[1]))}); orders compare one set of tasks"
                )
            first = first or (name, order)

    def _check_modes(self) -> None:
        unknown = [m for m in self.modes if m not in MODES]
        if unknown or len(set(self.modes)) != len(self.modes):
            raise ConfigError(
                f"run config: field 'modes' must list modes of {list(MODES)} once each, got {self.modes}"
            )
        if self.modes and self.orders:
            raise ConfigError("run config: fields 'orders' and 'modes' cannot both repeat one run; run them apart")
        if "taskfree" in self.modes and not self.stream.eval_every:
            raise ConfigError("run config: field 'stream.eval_every' must be > 0 for mode 'taskfree'")

    def method_of(self, name: str) -> str:
        """The method an entry name runs."""
        variant = self.variants.get(name)
        return variant.get("method", name) if isinstance(variant, dict) else name

    def conditions(self) -> dict[str | None, RunConfig]:
        """The complete runs this run repeats: one per order or per mode, or just itself (under None)."""
        if self.orders:
            return {name: self.for_order(name) for name in self.orders}
        if self.modes:
            return {mode: self.for_mode(mode) for mode in self.modes}
        return {None: self}

    def for_mode(self, mode: str) -> RunConfig:
        """This run in one stream mode: with task boundaries, or as a boundary-free mixture."""
        stream = dataclasses.replace(self.stream, boundaries=mode == "boundaries")
        return dataclasses.replace(self, modes=[], stream=stream)

    def for_order(self, name: str) -> RunConfig:
        """This run with `orders.<name>` as its one stream order, under the folder name <run>/<name>."""
        data = dataclasses.replace(self.data, order=list(self.orders[name]))
        return dataclasses.replace(self, orders={}, data=data)

    def seed_list(self) -> list[int]:
        """The seeds this run trains on: 'seeds', or just 'seed'."""
        return list(self.seeds) or [self.seed]

    def reference_method(self) -> str | None:
        """The method others are compared with, seed by seed: 'compare_to', else mhmoe when it runs."""
        if self.compare_to is not None:
            return self.compare_to
        return "mhmoe" if "mhmoe" in self.entry_names() else None

    def entry_names(self) -> list[str]:
        """Every row's name: the methods, then the variants."""
        return [*self.methods, *self.variants]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_type(value: Any, hint: Any, key: str) -> Any:
    """`value` if it fits the annotation `hint` (ints accepted for floats), else a ConfigError naming `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return check_type(value, next(a for a in args if a is not type(None)), key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config field '{key}' must be a list, got {value!r}")
        return [check_type(v, args[0], key) for v in value]
    if origin is dict or hint is Any:
        if origin is dict and not isinstance(value, dict):
            raise ConfigError(f"config field '{key}' must be a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads '3e-3' (no dot) as a string
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"config field '{key}' must be of type {hint.__name__}, got {value!r}")
    return value


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """A settings dataclass from a mapping: unknown keys refused, each value checked against its field's type,
    nested sections built in turn; `prefix` is the dotted path the errors name."""
    if not isinstance(data, dict):
        raise ConfigError(f"config field '{prefix.rstrip('.') or 'root'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown config field '{prefix}{unknown[0]}' (known in this section: {sorted(known)})")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = check_type(value, hint, prefix + name)
    return cls(**kwargs)
