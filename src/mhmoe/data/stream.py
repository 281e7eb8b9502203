"""The task stream a run trains on: the built-in benchmark (generated, then read back through the TRACE
loader, so both benchmarks take the same path), TRACE (or any folder of task files) from a local folder, the
CL Benchmark of O-LoRA from a local folder, or the sample of it shipped with the package."""

from __future__ import annotations

import tempfile

from mhmoe.data.builtin import DEFAULT_ORDER, TASKS, write_builtin
from mhmoe.data.cl_benchmark import CL_ORDER_1, SAMPLE_ORDER, SAMPLE_ROOT, load_cl_stream
from mhmoe.data.trace import TRACE_ORDER, DataError, Task, load_stream
from mhmoe.settings import DataSettings

EVAL_SIZE = 32


def stream_order(settings: DataSettings) -> list[str]:
    """The task names of the stream, in order."""
    defaults = {"builtin": DEFAULT_ORDER, "trace": TRACE_ORDER, "cl_benchmark": CL_ORDER_1, "cl_sample": SAMPLE_ORDER}
    order = settings.order or defaults[settings.benchmark]
    if len(set(order)) != len(order):
        raise DataError(f"data config: field 'order' repeats a task: {order}")
    if settings.benchmark == "builtin":
        unknown = [name for name in order if name not in TASKS]
        if unknown:
            raise DataError(
                f"data config: field 'order' has unknown built-in task {unknown[0]!r} (known: {list(TASKS)})"
            )
    return list(order)


def load_tasks(settings: DataSettings, seed: int) -> list[Task]:
    """Every task of the stream, validated; nothing is written outside a temporary folder."""
    order = stream_order(settings)
    limits = {"train": settings.train_limit, "test": settings.test_limit}
    if settings.benchmark == "trace":
        return load_stream(settings.data_dir, order, limits=limits, seed=seed, encoding=settings.encoding)
    if settings.benchmark in ("cl_benchmark", "cl_sample"):
        return load_cl_stream(
            settings.data_dir if settings.benchmark == "cl_benchmark" else SAMPLE_ROOT,
            order,
            instruction_file=settings.instruction_file,
            limits=limits,
            seed=seed,
            encoding=settings.encoding,
            derived=settings.derived_tasks,
        )
    sizes = {"train": settings.train_size, "eval": EVAL_SIZE, "test": settings.test_size}
    with tempfile.TemporaryDirectory(prefix="mhmoe-builtin-") as root:
        write_builtin(root, seed=seed, sizes=sizes, tasks=order)
        return load_stream(root, order, limits=limits, seed=seed)
