"""Golden outputs: every run shape on a tiny model with fixed seeds, reduced to what the run machinery must
reproduce bit for bit (R, its errors, L, every training loss, the anytime record, router facts, what `mhmoe
eval` and `mhmoe analyze` print from the saved adapters).

`python tests/golden_runs.py` records them into tests/fixtures/golden.json from the code as it stands;
tests/test_golden.py re-runs every shape and compares. Re-record only when a change is meant to change
results, and say which in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tiny_runs import tiny_run

FIXTURE = Path(__file__).parent / "fixtures" / "golden.json"

BASE = [
    *tiny_run(["Stance-Policy", "QA-Choice"], test=4, steps=3),
    "train.checkpoint_every=2",
    "method_options={replay: {memory_per_task: 4}, ewc: {fisher_examples: 4}, gem: {memory_per_task: 4}}",
]
TASKFREE = ["stream.boundaries=false", "stream.blur=0.2", "stream.eval_every=2", "stream.consolidate_every=2"]

SHAPES: dict[str, list[str]] = {
    "boundaries": [*BASE, "methods=[lora, loramoe, mhmoe, ewc, gem, olora, replay, prefix]"],
    "taskfree": [*BASE, *TASKFREE, "methods=[lora, ewc, gem, replay, mhmoe]"],
    "orders": [
        *BASE,
        "methods=[lora, mhmoe]",
        "orders={forward: [Stance-Policy, QA-Choice], backward: [QA-Choice, Stance-Policy]}",
    ],
    "variants": [
        *BASE,
        "methods=[lora]",
        "variants={mhmoe-h2: {method: mhmoe, adapter: {heads: 2}, match: none}, "
        "loramoe-full: {method: loramoe, adapter: {gate: full}}}",
    ],
    "modes": [*BASE, "methods=[lora, mhmoe]", "modes=[boundaries, taskfree]", "stream.eval_every=2"],
    "seeds": [*BASE, "methods=[lora, mhmoe]", "seeds=[0, 1]"],
}
"""Each shape's settings for `load_config(None, ...)`."""

ANALYSIS = [
    "analysis.examples_per_task=6",
    "analysis.probe_tokens=200",
    "analysis.gradient_tokens=60",
    "analysis.max_layers=1",
    "analysis.null_draws=2",
    "analysis.bootstrap=2",
]


def _run_values(results: dict) -> dict:
    """What one single-seed results.json holds that the machinery computes (no timings)."""
    keep = ("R", "R_se", "L", "anytime", "router", "parameters", "adapter", "identified")
    return {
        "tasks": results["tasks"],
        "seed": results["seed"],
        "base": [results["base"], results["base_se"], results["base_L"], results["majority"]],
        "methods": {name: {k: m.get(k) for k in keep} for name, m in results["methods"].items()},
    }


def _metrics(path: Path) -> list:
    """Every training loss and every scored row of metrics.jsonl, in order (no timings)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["event"] == "train":
            rows.append(["train", r["method"], r.get("task"), r["step"], r["loss"], r["grad_norm"]])
        else:
            rows.append([r["event"], r["method"], r.get("step"), r.get("scores"), r.get("losses")])
    return rows


def outputs(run_dir: Path) -> dict:
    """Every single-seed run under `run_dir`, by its folder relative to `run_dir`."""
    found = {}
    for results_path in sorted(run_dir.rglob("results.json")):
        results = json.loads(results_path.read_text(encoding="utf-8"))
        if "methods" not in results:
            continue  # a summary over seeds or conditions: derived from the runs below it
        folder = results_path.parent
        key = str(folder.relative_to(run_dir))
        found[key] = {"results": _run_values(results), "metrics": _metrics(folder / "metrics.jsonl")}
    return found


def run_shape(name: str, output_dir: Path) -> Path:
    from mhmoe.cl.run import run
    from mhmoe.config import load_config

    return run(load_config(None, [*SHAPES[name], f"output_dir={output_dir}", f"name={name}"]))


def eval_outputs(run_dir: Path) -> dict:
    """`mhmoe eval` of the boundaries run's last MH-MoE adapter."""
    from mhmoe.cl.evaluate_adapter import evaluate_adapter

    names, row = evaluate_adapter(run_dir / "adapters" / "mhmoe" / "2-QA-Choice")
    return {"tasks": names, "scores": row.scores, "errors": row.errors, "losses": row.losses}


def analysis_outputs(run_dir: Path) -> dict:
    """`mhmoe analyze` of the boundaries run, its analysis.json."""
    from mhmoe.analysis.analyze import analyze

    out = analyze(run_dir, ANALYSIS, progress=False)
    return json.loads((out / "analysis.json").read_text(encoding="utf-8"))


def record(work: Path) -> dict:
    golden = {name: outputs(run_shape(name, work)) for name in SHAPES}
    golden["eval"] = eval_outputs(work / "boundaries")
    golden["analyze"] = analysis_outputs(work / "boundaries")
    return golden


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)  # float reduction order is part of the result
    with tempfile.TemporaryDirectory() as tmp:
        golden = record(Path(tmp))
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {FIXTURE} ({FIXTURE.stat().st_size:,} bytes)", file=sys.stderr)
