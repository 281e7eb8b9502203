"""The analysis on tiny models: token features by hand, recorders against independent computations,
and `mhmoe analyze` end to end on a finished tiny run."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import mhmoe
from mhmoe.analysis.analyze import analyze
from mhmoe.analysis.record import output_gradients, router_inputs, routes_and_losses
from mhmoe.analysis.tokens import analysis_batches, token_table
from mhmoe.cl.run import run
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.data.collate import encode
from mhmoe.data.trace import Example
from mhmoe.errors import ConfigError
from mhmoe.models import tiny_model, tiny_tokenizer

EXAMPLES = [
    (0, Example("the 1 of", "A", {"label": "x"})),
    (0, Example("Answer: 12 the", "B 7", {"label": "y"})),
    (1, Example("9 8", "the", {})),
]


@pytest.fixture(scope="module")
def setup():
    tokenizer = tiny_tokenizer()
    batches = analysis_batches(tokenizer, EXAMPLES, batch_size=2, max_length=64)
    return tokenizer, batches


def test_token_features_by_hand(setup):
    tokenizer, batches = setup
    table = token_table(batches, EXAMPLES, ["a", "b"], frequency_buckets=2, position_buckets=2)
    lengths = [len(encode(tokenizer, e, 64)[0]) for _, e in EXAMPLES]
    # Every token with a next token counts: sum(length - 1); no padding, no final tokens.
    counts = [int(b["attention_mask"].sum()) - len(b["input_ids"]) for b in batches]
    assert len(table) == sum(counts)
    task = np.repeat([0, 0, 1], [lengths[0] - 1, lengths[1] - 1, lengths[2] - 1])
    np.testing.assert_array_equal(table.values["task"], task)
    assert table.names["label"] == ["-", "x", "y"]
    np.testing.assert_array_equal(table.values["label"], np.repeat([1, 2, 0], [n - 1 for n in lengths]))
    first = table.values["position"][: lengths[0] - 1]  # n tokens: the first half is bucket 0, the rest 1
    np.testing.assert_array_equal(first, (np.arange(lengths[0] - 1) * 2) // (lengths[0] - 1))
    assert set(np.unique(table.values["frequency"])) <= {0, 1}
    assert len(np.unique(table.compositions())) == len(np.unique(np.stack(list(table.values.values()), 1), axis=0))


def single_forward(model, tokenizer, example, module):
    """One example, unpadded: the module's input and every next-token loss."""
    ids = torch.tensor([encode(tokenizer, example, 64)[0]])
    seen = {}
    handle = model.get_submodule(module).register_forward_hook(lambda m, a, o: seen.update(x=a[0]))
    logits = model(ids).logits
    handle.remove()
    return seen["x"][0, :-1], F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none")


def test_recorders_match_unpadded_single_examples(setup):
    tokenizer, batches = setup
    model = mhmoe.attach(tiny_model(vocab=len(tokenizer), seed=4).double(), mhmoe.MHMoEConfig(heads=4))
    module = "model.layers.1.mlp.up_proj"
    keep = np.ones(sum(int(b["attention_mask"].sum()) - len(b["input_ids"]) for b in batches), dtype=bool)
    h = router_inputs(model, batches, [module], keep, progress=False)[module]
    routes, losses = routes_and_losses(model, batches, [module], progress=False)
    want_h, want_loss = zip(*(single_forward(model, tokenizer, e, module) for _, e in EXAMPLES), strict=True)
    np.testing.assert_allclose(h, torch.cat(want_h).detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(losses, torch.cat(want_loss).detach().numpy(), rtol=1e-6, atol=1e-8)
    assert routes[module].shape == (len(keep), 4, 1)


def test_token_gradients_sum_to_the_weight_gradient(setup):
    tokenizer, batches = setup
    model = tiny_model(vocab=len(tokenizer), seed=5).double()
    module = "model.layers.0.mlp.down_proj"
    count = sum(int(b["attention_mask"].sum()) - len(b["input_ids"]) for b in batches)
    grads = output_gradients(model, batches, [module], np.ones(count, dtype=bool), progress=False)
    x, delta = grads[module]
    # Reference: the weight's own gradient of the summed unpadded next-token losses.
    weight = model.get_submodule(module).weight
    total = sum(single_forward(model, tokenizer, e, module)[1].sum() for _, e in EXAMPLES)
    want = torch.autograd.grad(total, weight)[0]
    torch.testing.assert_close(delta.T @ x, want, rtol=1e-6, atol=1e-8)


TINY = [
    "model.name=tiny:llama",
    "data.order=[Stance-Policy, Arithmetic, Stance-CentralBank]",
    "data.train_size=16",
    "data.test_size=4",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.lr=1e-2",
    "progress=false",
    "methods=[lora, loramoe, mhmoe]",
]
SMALL = ["analysis.examples_per_task=12", "analysis.probe_tokens=400", "analysis.gradient_tokens=200"]


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    run_dir = run(load_config(None, [*TINY, f"output_dir={tmp_path_factory.mktemp('runs')}", "name=a"]))
    analyze(run_dir, [*SMALL, "analysis.max_layers=2"], progress=False)
    return run_dir


def test_analyze_writes_json_six_pictures_and_a_report_section(analysed_run):
    out = analysed_run / "analysis"
    analysis = json.loads((out / "analysis.json").read_text())
    assert analysis["layers"] == [0, 1] and analysis["heads"] == 8
    assert set(analysis["routes"]) == {"loramoe", "mhmoe"}  # LoRA has no routes
    for feature in ("task", "label", "frequency", "position"):
        accuracy = analysis["probes"][feature]["accuracy"]
        assert len(accuracy) == 2 and all(0 <= a <= 1 for a in accuracy)
    assert analysis["probes"]["task"]["accuracy"][0] > analysis["probes"]["task"]["chance"][0]
    assert len(analysis["features"]["task"]) >= 2 and "domain" not in (out / "analysis.json").read_text()
    mhmoe_routes = analysis["routes"]["mhmoe"]
    assert mhmoe_routes["heads"] == 8 and len(mhmoe_routes["path"]) == 2 and all(n >= 1 for n in mhmoe_routes["path"])
    pictures = sorted(p.name for p in out.glob("*.png"))
    assert len(pictures) == 6 and all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pictures)
    report = (analysed_run / "report.md").read_text()
    assert report.count("## Analysis") == 1 and "Is MH-MoE's N_eff lower than LoRAMoE's?" in report
    assert "(task, label, frequency, position)" in report and "- task: probe accuracy" in report
    assert all(f"(analysis/{p})" in report for p in pictures)
    assert "| R[i][j] |" in report  # the run's own report is kept


def test_analyzing_again_replaces_the_section(analysed_run, capsys):
    assert main(["analyze", str(analysed_run), *[f"--set={s}" for s in SMALL], "--set=analysis.max_layers=1"]) == 0
    report = (analysed_run / "report.md").read_text()
    assert report.count("## Analysis") == 1 and "layers [0]" in report
    assert "analysis.json" in capsys.readouterr().out


def test_bad_run_folders_and_settings_are_refused(analysed_run, tmp_path):
    with pytest.raises(ConfigError, match="results.json: not found"):
        analyze(tmp_path)
    with pytest.raises(ConfigError, match="analysis config: field .bins. must be an integer >= 2"):
        analyze(analysed_run, ["analysis.bins=1"])
    with pytest.raises(ConfigError, match="unknown config field 'analysis.bogus'"):
        analyze(analysed_run, ["analysis.bogus=1"])


def test_gradient_pass_keeps_only_sampled_tokens_and_skips_empty_batches(setup):
    tokenizer, batches = setup
    model = tiny_model(vocab=len(tokenizer), seed=5).double()
    module = "model.layers.0.mlp.down_proj"
    counts = [int(b["attention_mask"].sum()) - len(b["input_ids"]) for b in batches]
    everything = output_gradients(model, batches, [module], np.ones(sum(counts), dtype=bool), progress=False)
    first_two = np.zeros(sum(counts), dtype=bool)
    first_two[:2] = True  # two tokens of the first batch; the second batch holds none and is skipped
    some = output_gradients(model, batches, [module], first_two, progress=False)
    torch.testing.assert_close(some[module][0], everything[module][0][:2])
    torch.testing.assert_close(some[module][1], everything[module][1][:2])
