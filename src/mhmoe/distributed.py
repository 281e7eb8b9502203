"""The processes a run spans: one, or several under `torchrun` / `accelerate launch`.

Without a GPU (or other accelerator) Accelerate forms a process group only when told to use the CPU, so
it is told; with one, Accelerate picks the device as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from tqdm.auto import tqdm

T = TypeVar("T")


def cpu_only() -> bool:
    return not torch.accelerator.is_available()


def process_state() -> PartialState:
    """This process's place among the run's processes (the state is shared, made once)."""
    return PartialState(cpu=cpu_only())


def map_shared(fn: Callable[[int, Any], T], items: Sequence[Any], *, desc: str, progress: bool) -> list[T]:
    """fn(index, item) over this process's share of `items`; every process gets all results, in order."""
    state = process_state()
    mine = range(state.process_index, len(items), state.num_processes)
    bar = tqdm(mine, desc=desc, disable=not progress or not state.is_main_process, leave=False)
    results = [(i, fn(i, items[i])) for i in bar]
    if state.num_processes > 1:
        results = gather_object(results)
    return [result for _, result in sorted(results, key=lambda pair: pair[0])]
