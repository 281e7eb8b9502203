"""The benchmark scripts run end to end on a tiny model and print the ratios they exist for."""

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_overhead_prints_latency_and_memory_ratios_against_the_research():
    out = _run("overhead.py", "table5-cpu", "--model", "tiny:llama", "--rounds", "1")
    ratio = re.search(r"mhmoe / loramoe: latency ([\d.]+)x, peak memory ([\d.]+)x \(research, Qwen3-8B: 1.012x", out)
    assert ratio and float(ratio[1]) > 0 and float(ratio[2]) > 0, out
    assert re.search(r"^loramoe +[\d.]+ +\d+ +[\d.]+$", out, re.M) and "batch 1 x 512 tokens" in out


def test_method_overhead_times_every_entry_of_a_preset_with_variants():
    out = _run("method_overhead.py", "--preset", "table2-cpu", "--model", "tiny:llama", "--steps", "1")
    assert re.search(r"^mhmoe +[\d.]+ +[\d.]+", out, re.M) and re.search(r"^loramoe-k26-top5 +[\d.]+", out, re.M)


def test_eval_speed_real_text_times_each_way_and_checks_r_and_l():
    out = _run("eval_speed.py", "--real-text", "--model", "tiny:llama", "--examples", "3", "--max-prompt-tokens=120")
    for way in ("two passes, split order", "one prefill, by length", "one prefill, options"):
        assert re.search(rf"^\| {way} \| [\d.]+ \| [\d.]+x \| ", out, re.M), out
    assert "| two passes, split order |" in out and "| 1.00x | yes | 0.0e+00 |" in out
