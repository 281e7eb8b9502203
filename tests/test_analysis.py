"""The analysis on tiny models: token features by hand, recorders against independent computations,
and `mhmoe analyze` end to end on a finished tiny run."""

import copy
import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_runs import tiny_run

import mhmoe
from mhmoe.analysis import across_seeds
from mhmoe.analysis.analyze import analyze
from mhmoe.analysis.record import _sketches, batch_gradient_shares, router_inputs, routes_and_losses, token_gradients
from mhmoe.analysis.tokens import analysis_batches, example_labels, token_table
from mhmoe.cl.run import run
from mhmoe.cli import main
from mhmoe.config import load_config
from mhmoe.data.collate import encode
from mhmoe.data.stream import load_tasks
from mhmoe.data.trace import Example
from mhmoe.errors import ConfigError
from mhmoe.inject import load_adapter
from mhmoe.models import load_model, tiny_model, tiny_tokenizer

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
    np.testing.assert_array_equal(table.example, np.repeat([0, 1, 2], [n - 1 for n in lengths]))


def test_labels_from_answers_of_accuracy_scored_tasks():
    examples = [
        (0, Example("p", " B ", {})),
        (0, Example("p", "A", {"label": "favor"})),
        (1, Example("p", "C. because", {})),
        (2, Example("p", "summary", {})),
        *[(3, Example("p", str(n), {})) for n in range(9)],  # nine numeric answers: too many for a label
    ]
    scorers = ["accuracy", "first_char", "rouge_l", "accuracy"]
    assert example_labels(examples, scorers) == ["B", "favor", "C", "-"] + ["-"] * 9
    assert example_labels(examples) == ["-", "favor", "-", "-"] + ["-"] * 9


def single_forward(model, tokenizer, example, module, max_length=64):
    """One example, unpadded: the module's input and every next-token loss."""
    ids = torch.tensor([encode(tokenizer, example, max_length)[0]])
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
    grads = batch_gradient_shares(model, batches, [module], np.ones(count, dtype=bool), progress=False)
    x, delta = grads[module]
    # Reference: the weight's own gradient of the summed unpadded next-token losses.
    weight = model.get_submodule(module).weight
    total = sum(single_forward(model, tokenizer, e, module)[1].sum() for _, e in EXAMPLES)
    want = torch.autograd.grad(total, weight)[0]
    torch.testing.assert_close(delta.T @ x, want, rtol=1e-6, atol=1e-8)


def test_exact_per_token_gradient_is_one_positions_loss_alone(setup):
    tokenizer, batches = setup
    model = tiny_model(vocab=len(tokenizer), seed=6).double()
    module = "model.layers.0.mlp.up_proj"
    count = sum(int(b["attention_mask"].sum()) - len(b["input_ids"]) for b in batches)
    keep = np.zeros(count, dtype=bool)
    keep[::3] = True  # every third token, across examples and batches
    got = token_gradients(model, batches, [module], keep, chunk=2, progress=False)[module]
    # Reference: autograd of one position's loss alone, on the unpadded example, with respect to the weight.
    weight = model.get_submodule(module).weight
    want = []
    for _, example in EXAMPLES:
        losses = single_forward(model, tokenizer, example, module)[1]
        want += [torch.autograd.grad(loss, weight, retain_graph=True)[0].reshape(-1).float() for loss in losses]
    want = torch.stack(want)[torch.from_numpy(keep)]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # The summed-loss share of a token differs from its own loss's gradient (it carries later positions).
    x, delta = batch_gradient_shares(model, batches, [module], keep, progress=False)[module]
    shares = torch.einsum("no,ni->noi", delta, x).reshape(len(x), -1).float()
    assert not torch.allclose(shares, want, rtol=1e-2, atol=1e-4)
    # Sketched: P g Q^T with the seeded maps.
    sketched = token_gradients(model, batches, [module], keep, sketch=8, seed=3, progress=False)[module]
    p, q = _sketches(model, [module], 8, 3)[module]
    d_out, d_in = weight.shape
    projected = torch.stack([p @ g.reshape(d_out, d_in) @ q.T for g in want]).reshape(len(want), -1)
    torch.testing.assert_close(sketched, projected, rtol=1e-4, atol=1e-5)


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


def analyze_copy(run_dir, tmp_path, extra: list[str]) -> dict:
    """The analysis.json of a copy of `run_dir` analysed with `extra` settings (the fixture's run stays as is)."""
    copied = tmp_path / "copy"
    shutil.copytree(run_dir, copied)
    analyze(copied, [*SMALL, "analysis.max_layers=2", *extra], progress=False)
    return json.loads((copied / "analysis" / "analysis.json").read_text())


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    run_dir = run(load_config(None, [*TINY, f"output_dir={tmp_path_factory.mktemp('runs')}", "name=a"]))
    analyze(run_dir, [*SMALL, "analysis.max_layers=2"], progress=False)
    return run_dir


def test_analyze_writes_json_seven_pictures_and_a_report_section(analysed_run):
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
    assert mhmoe_routes["heads"] == 8 and len(mhmoe_routes["n_eff"]) == 2
    for layer in mhmoe_routes["n_eff"]:
        assert layer["path"]["plug_in"]["observed"] >= 1 and set(layer["per_head"]) == {"plug_in", "pair"}
        assert set(layer["path"]["pair"]) == {"observed", "null_mean", "null_sd", "excess"}
    pictures = sorted(p.name for p in out.glob("*.png"))
    assert len(pictures) == 7 and all((out / p).read_bytes()[:4] == b"\x89PNG" for p in pictures)
    report = (analysed_run / "report.md").read_text()
    assert report.count("## Analysis") == 1 and "mix fewer compositions than LoRAMoE's, beyond chance?" in report
    assert "Which training step damaged which task" in report
    assert "(task, label, frequency, position)" in report and "- task: probe accuracy" in report
    assert all(f"(analysis/{p})" in report for p in pictures)
    assert "| R[i][j]" in report  # the run's own report is kept


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
    everything = batch_gradient_shares(model, batches, [module], np.ones(sum(counts), dtype=bool), progress=False)
    first_two = np.zeros(sum(counts), dtype=bool)
    first_two[:2] = True  # two tokens of the first batch; the second batch holds none and is skipped
    some = batch_gradient_shares(model, batches, [module], first_two, progress=False)
    torch.testing.assert_close(some[module][0], everything[module][0][:2])
    torch.testing.assert_close(some[module][1], everything[module][1][:2])


def test_attribution_is_the_change_of_the_runs_loss_matrix(analysed_run):
    # One forgetting: A[j][i] (answer tokens, every test example analysed) = L[j][i] - L[j-1][i] of the run,
    # whose L the evaluation computed its own way (one prefill per batch, other batches and order).
    analysis = json.loads((analysed_run / "analysis" / "analysis.json").read_text())
    results = json.loads((analysed_run / "results.json").read_text())
    config = load_config(analysed_run / "config.yaml", [])
    assert config.data.test_size <= 12  # SMALL's analysis.examples_per_task: every test example is analysed
    for method in ("loramoe", "mhmoe"):
        got, loss = analysis["routes"][method]["attribution"]["A"], results["methods"][method]["L"]
        for j in range(len(loss)):
            for i in range(len(loss)):
                if i >= j:
                    assert got[j][i] is None
                else:
                    assert got[j][i] == pytest.approx(loss[j][i] - loss[j - 1][i], rel=1e-4, abs=1e-5)
        section = analysis["routes"][method]
        assert section["old_loss_after"] - section["old_loss_before"] != 0
        assert section["forgetting_tokens"].startswith("answer: ")


def test_all_token_attribution_equals_losses_under_the_saved_adapters(analysed_run, tmp_path):
    # With forgetting_tokens 'all': A[j][i] = mean token loss (prompt and answer) of task i's test examples under
    # the adapter after task j minus after task j-1, computed here one unpadded example at a time.
    analysis = analyze_copy(analysed_run, tmp_path, ["analysis.forgetting_tokens=all"])
    config = load_config(analysed_run / "config.yaml", [])
    tasks = load_tasks(config.data, config.seed)
    module = "model.layers.0.mlp.up_proj"
    folders = sorted((analysed_run / "adapters" / "mhmoe").iterdir(), key=lambda f: int(f.name.split("-")[0]))
    base, tokenizer = load_model(config.model.name, config.model.torch_dtype)
    length = config.train.max_length
    loss = []  # loss[a][i]: task i's mean token loss under the adapter after task a
    for folder in folders:
        model = load_adapter(copy.deepcopy(base), folder)  # load_model caches: never attach to the shared model
        with torch.no_grad():
            loss.append(
                [
                    float(
                        torch.cat(
                            [single_forward(model, tokenizer, e, module, length)[1] for e in t.split("test")]
                        ).mean()
                    )
                    for t in tasks
                ]
            )
    got = analysis["routes"]["mhmoe"]["attribution"]["A"]
    for j in range(len(tasks)):
        for i in range(len(tasks)):
            if i >= j:
                assert got[j][i] is None
            else:
                assert got[j][i] == pytest.approx(loss[j][i] - loss[j - 1][i], rel=1e-4, abs=1e-6)
    carriers = analysis["routes"]["mhmoe"]["attribution"]["routes"]["1,0"]
    assert {c["module"] for c in carriers} == {f"layer {layer}" for layer in analysis["layers"]}
    assert all(len(c["route"]) == 8 for c in carriers)


def test_a_run_over_seeds_is_analysed_seed_by_seed(tmp_path):
    run_dir = run(
        load_config(None, [*TINY, "methods=[loramoe, mhmoe]", "seeds=[0, 1]", f"output_dir={tmp_path}", "name=s"])
    )
    analyze(run_dir, [*SMALL, "analysis.max_layers=1", "analysis.bootstrap=20"], progress=False)
    summary = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert summary["seeds"] == [0, 1] and summary["skipped"] == {}
    for seed in (0, 1):
        assert (run_dir / f"seed-{seed}" / "analysis" / "analysis.json").is_file()
    figure = summary["figures"]["mhmoe: pair N_eff excess over the null, path-wise"]
    assert figure["n"] == 2 and len(figure["values"]) == 2 and figure["low"] <= figure["mean"] <= figure["high"]
    report = (run_dir / "report.md").read_text()
    assert report.count("## Analysis") == 1 and "| figure | mean | 95% interval | per seed |" in report
    assert all(n in summary["dropped"] for n in summary["per_seed"]["0"] if n not in summary["figures"])
    # A value lost in one seed is counted and named, never dropped in silence
    own = json.loads((run_dir / "seed-0" / "analysis" / "analysis.json").read_text())
    own["routes"]["mhmoe"]["n_eff"][0]["path"]["plug_in"]["observed"] = None
    dropped, name = {}, "mhmoe: plug-in N_eff (eq. 9), path-wise"
    figures = across_seeds.headline(own, dropped)
    assert name not in figures
    assert dropped[name] == "1 of 1 layer values undefined or not finite; undefined, left out"
    other = json.loads((run_dir / "seed-1" / "analysis" / "analysis.json").read_text())
    per_seed = {0: figures, 1: across_seeds.headline(other)}
    assert across_seeds.missing(per_seed) == {name: "missing in seed(s) 0, left out"}
    section = across_seeds.report_section([0, 1], across_seeds.summarise(per_seed), {}, {name: ["seed 0: lost"]})
    assert f"Left out:\n- {name}: seed 0: lost." in section


FEW = [
    "analysis.examples_per_task=4",
    "analysis.probe_tokens=200",
    "analysis.gradient_tokens=40",
    "analysis.max_layers=1",
    "analysis.null_draws=2",
    "analysis.bootstrap=2",
]
TWO_TASKS = [*tiny_run(["Stance-Policy", "QA-Choice"], train=8, test=4, steps=2), "methods=[mhmoe]"]
EXCESS = "mhmoe: pair N_eff excess over the null, path-wise"


def test_a_run_over_orders_is_analysed_order_by_order(tmp_path):
    orders = "orders={forward: [Stance-Policy, QA-Choice], backward: [QA-Choice, Stance-Policy]}"
    run_dir = run(load_config(None, [*TWO_TASKS, orders, f"output_dir={tmp_path}", "name=o"]))
    analyze(run_dir, FEW, progress=False)
    top = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert top["kind"] == "order" and list(top["conditions"]) == ["forward", "backward"]
    for name, condition in top["conditions"].items():
        own = json.loads((run_dir / name / "analysis" / "analysis.json").read_text())
        assert condition["seeds"] == [0] and condition["skipped"] == {} and set(own["routes"]) == {"mhmoe"}
        assert condition["figures"][EXCESS]["values"] == [across_seeds.headline(own)[EXCESS]]
    report = (run_dir / "report.md").read_text()
    assert report.count("## Analysis") == 1 and "| figure | forward | backward |" in report
    assert "[forward](forward/report.md)" in report and "| order | method |" in report  # the run's table is kept
    assert (run_dir / "backward" / "report.md").read_text().count("## Analysis") == 1


def test_a_taskfree_run_is_analysed_without_its_per_task_parts(tmp_path):
    settings = [*TWO_TASKS, "methods=[lora, mhmoe]", "stream.boundaries=false", "stream.eval_every=2"]
    run_dir = run(load_config(None, [*settings, f"output_dir={tmp_path}", "name=free"]))
    analyze(run_dir, FEW, progress=False)
    analysis = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert analysis["routes"] == {} and list(analysis["skipped"]) == ["mhmoe"]  # LoRA has no routes to skip
    assert "without task boundaries" in analysis["skipped"]["mhmoe"]
    assert len(analysis["probes"]["task"]["accuracy"]) == 1 and analysis["gradient_cosines"]
    report = (run_dir / "report.md").read_text()
    reason = analysis["skipped"]["mhmoe"]
    assert f"- **mhmoe**: N_eff, route-wise forgetting and the attribution skipped: {reason}" in report
    assert "No MoE method" not in report and "- task: probe accuracy" in report


def test_a_run_over_modes_is_analysed_mode_by_mode_and_seed_by_seed(tmp_path):
    settings = [*TWO_TASKS, "modes=[boundaries, taskfree]", "stream.eval_every=2", "seeds=[0, 1]"]
    run_dir = run(load_config(None, [*settings, f"output_dir={tmp_path}", "name=m"]))
    analyze(run_dir, FEW, progress=False)
    top = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert top["kind"] == "mode" and list(top["conditions"]) == ["boundaries", "taskfree"]
    bounded, free = top["conditions"]["boundaries"], top["conditions"]["taskfree"]
    assert bounded["seeds"] == free["seeds"] == [0, 1]
    assert bounded["skipped"] == {} and EXCESS in bounded["figures"] and bounded["figures"][EXCESS]["n"] == 2
    assert list(free["skipped"]) == ["mhmoe"] and not any(name.startswith("mhmoe") for name in free["figures"])
    assert free["figures"]["probe accuracy - chance, task"]["n"] == 2  # the frozen base model is analysed
    for seed in (0, 1):
        seed_analysis = json.loads((run_dir / "taskfree" / f"seed-{seed}" / "analysis" / "analysis.json").read_text())
        assert seed_analysis["skipped"] == free["skipped"]
    assert json.loads((run_dir / "taskfree" / "analysis" / "analysis.json").read_text())["skipped"] == free["skipped"]
    report = (run_dir / "report.md").read_text()
    assert report.count("## Analysis") == 1 and "| figure | boundaries | taskfree |" in report
    assert "- taskfree, **mhmoe**: N_eff, route-wise forgetting and the attribution skipped:" in report


def test_the_single_seed_report_says_when_a_layer_mean_left_values_out():
    from mhmoe.analysis.summary import _below_chance, _undefined

    assert _undefined([0.5, None, float("nan"), 1.0]) == " (2 of 4 layers undefined, left out)"
    assert _undefined([0.5, 1.0]) == ""
    pair = [{"excess": -2.0, "null_sd": 0.5}, {"excess": None, "null_sd": None}]
    route = {"n_eff": [{"path": {"pair": p}} for p in pair]}
    assert _below_chance(route, "path").endswith("(1 of 2 layers undefined, left out)")
