"""The `mhmoe` command: subcommands map to library functions and hold no logic of their own."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

from mhmoe.errors import ConfigError, MhmoeError
from mhmoe.settings import BENCHMARKS


def _settings_help() -> str:
    from mhmoe.cl.methods import ALIASES, METHODS
    from mhmoe.config import describe_settings, presets

    lines = ["methods:"]
    aliases = {name: [a for a, n in ALIASES.items() if n == name] for name in METHODS}
    for method in dict.fromkeys(METHODS.values()):
        also = f" (also: {', '.join(aliases[method.name])})" if aliases[method.name] else ""
        lines.append(f"  {method.name:10} {method.summary}{also}")
    lines += ["", f"presets (CONFIG may name one): {', '.join(presets())}", "", "settings (--set KEY=VALUE):"]
    rows = describe_settings()
    for method in dict.fromkeys(METHODS.values()):
        if method.options is not None:
            rows += describe_settings(method.options, f"method_options.{method.name}.")
    for key, default, doc in rows:
        lines.append(f"  {key} = {json.dumps(default)}")
        lines += textwrap.wrap(doc, 100, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)


def _analysis_settings():
    from mhmoe.config import AnalysisSettings, describe_settings

    return describe_settings(AnalysisSettings, "analysis.")


def _shortcuts(args: argparse.Namespace) -> list[str]:
    """The convenience flags as the --set overrides they stand for."""
    overrides = []
    for flag, key in (("model", "model.name"), ("benchmark", "data.benchmark"), ("data_dir", "data.data_dir")):
        if getattr(args, flag, None):
            overrides.append(f"{key}={getattr(args, flag)}")
    if getattr(args, "seeds", None):
        overrides.append(f"seeds=[{args.seeds}]")
    if getattr(args, "name", None):
        overrides.append(f"name={args.name}")
    if getattr(args, "until_resolved", None):
        overrides.append(f"until_resolved={args.until_resolved}")
    return overrides + list(args.set or [])


def _seed_list(text: str | None, flag: str) -> list[int] | None:
    """Comma-separated seeds as integers (None when the flag was not given)."""
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a comma-separated list of integers, e.g. 5,6") from None


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="a YAML file or preset name (default: quickstart)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    parser.add_argument("--model", help="base model: a local folder, hub name, or smollm2-135m-instruct")
    parser.add_argument("--benchmark", choices=BENCHMARKS, help="the task stream's source")
    parser.add_argument(
        "--data-dir", help="folder of task folders (--benchmark trace) or the CL Benchmark's root (cl_benchmark)"
    )


def command_run(args: argparse.Namespace) -> int:
    from mhmoe.cl.conditions import conditions_table
    from mhmoe.cl.over_seeds import seeds_table
    from mhmoe.cl.report import run_table
    from mhmoe.cl.results import ConditionsSummary, SeedsSummary, to_dict
    from mhmoe.cl.run import run
    from mhmoe.cl.run_folder import RunFolder
    from mhmoe.config import DEFAULT_PRESET, load_config, select_entries
    from mhmoe.distributed import process_state

    if args.add_seeds and not args.resume:
        raise ConfigError("--add-seeds extends an existing run: give it with --resume RUN_DIR")
    if args.resume:
        if args.config or _shortcuts(args) or args.methods:
            raise ConfigError("--resume continues a run with its own saved settings; give no CONFIG or overrides")
        run_dir = run(resume=args.resume, add_seeds=_seed_list(args.add_seeds, "--add-seeds"))
    else:
        source = args.config or DEFAULT_PRESET
        config = select_entries(load_config(source, _shortcuts(args)), args.methods)
        run_dir = run(config, preset=Path(source).stem)
    if process_state().is_main_process:  # under torchrun / accelerate launch, one process reports
        results = RunFolder(run_dir).read()
        table = {ConditionsSummary: conditions_table, SeedsSummary: seeds_table}.get(type(results), run_table)
        print(table(to_dict(results)))
        print(f"\nrun folder: {run_dir}  (report: {run_dir / 'report.md'})")
    return 0


def command_eval(args: argparse.Namespace) -> int:
    from mhmoe.cl.evaluate_adapter import evaluate_adapter

    names, row = evaluate_adapter(args.adapter, args.config, _shortcuts(args), progress=True)
    width = max(len(name) for name in [*names, "task"])
    print(f"{'task':{width}}  {'score':>6}  {'+-se':>5}  {'loss (nats/token)':>17}")
    for name, score, error, loss in zip(names, row.scores, row.errors, row.losses, strict=True):
        print(f"{name:{width}}  {score:6.1f}  {error:5.1f}  {loss:17.3f}")
    print(f"{'mean':{width}}  {sum(row.scores) / len(row.scores):6.1f}")
    return 0


def command_analyze(args: argparse.Namespace) -> int:
    from mhmoe.analysis.analyze import analyze

    out = analyze(args.run_dir, list(args.set or []), progress=True)
    print(f"analysis: {out / 'analysis.json'}  (pictures in {out}; report: {Path(args.run_dir) / 'report.md'})")
    return 0


def command_report(args: argparse.Namespace) -> int:
    from mhmoe.cl.experiments import collect
    from mhmoe.cl.regenerate import regenerate

    if args.collect:
        if not args.into:
            raise ConfigError("--collect RUN_DIR needs --into NAME (the experiment folder under --results)")
        print(f"collected into {collect(args.collect, Path(args.results) / args.into)}")
        return 0
    documents = [Path(d) for d in args.documents] or [Path("README.md"), *sorted(Path("docs").glob("*.md"))]
    changed = regenerate(documents, Path(args.results), check=args.check)
    for path in changed:
        print(f"{'differs' if args.check else 'regenerated'}: {path}")
    return 1 if args.check and changed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mhmoe", description="Continual fine-tuning of language models with mixture-of-experts adapters."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="train methods on a task stream and compare them (R matrix, OP, BWT)",
        description="Train every method on the same stream, scoring every task after every task. "
        "Without CONFIG, runs the quickstart preset: SmolLM2-135M-Instruct on the built-in benchmark.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_arguments(run)
    run.add_argument(
        "--methods",
        help="comma-separated entries to run: methods (e.g. lora,loramoe,mhmoe) or the config's variant names",
    )
    run.add_argument("--name", help="run folder name under output_dir")
    run.add_argument(
        "--until-resolved",
        type=int,
        metavar="N",
        help="add seeds (seed_group at a time) until the primary claims resolve or N seeds have run",
    )
    run.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2: every method runs once per seed")
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its newest checkpoint; it ends with the results it would have had",
    )
    run.add_argument(
        "--add-seeds",
        metavar="SEEDS",
        help="with --resume: extend a multi-seed run with these seeds (comma-separated), same settings; the "
        "summary is rewritten over all seeds and the added seeds are recorded in the run folder",
    )
    run.set_defaults(handler=command_run)
    evaluate = commands.add_parser(
        "eval",
        help="score a saved adapter on every task of a stream",
        description="Score a saved adapter. Inside a run folder, the run's model and stream are the defaults.",
    )
    evaluate.add_argument("adapter", help="folder holding adapter_config.json and adapter_model.safetensors")
    _add_config_arguments(evaluate)
    evaluate.set_defaults(handler=command_eval)
    analyze = commands.add_parser(
        "analyze",
        help="probes, head ablation, gradient cosines, N_eff and route-wise forgetting of a finished run",
        description="Analyse a finished run folder: writes RUN_DIR/analysis (analysis.json and up to seven pictures) "
        "and an 'Analysis' section of RUN_DIR/report.md; a run over seeds, orders or modes is analysed folder by "
        "folder, then summarised at the top. Settings are the run's, with analysis.* overrides.",
        epilog="\n".join(
            ["settings (--set analysis.KEY=VALUE):"]
            + [f"  {key} = {json.dumps(default)}\n      {doc}" for key, default, doc in _analysis_settings()]
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("run_dir", help="a run folder written by `mhmoe run`")
    analyze.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting (repeatable)")
    analyze.set_defaults(handler=command_analyze)
    report = commands.add_parser(
        "report",
        help="regenerate the docs' tables and verdicts from the committed results (results/<experiment>/)",
        description="Rebuild every '<!-- mhmoe report: NAME -->' block of the documents from results/NAME/ "
        "(its per-seed results and declared claims), or collect a finished run's per-seed results into it.",
    )
    report.add_argument("documents", nargs="*", help="markdown files (default: README.md and docs/*.md)")
    report.add_argument("--results", default="results", help="the folder of experiment folders (default: results)")
    report.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block would change")
    report.add_argument("--collect", metavar="RUN_DIR", help="add a finished run's per-seed results to --into")
    report.add_argument("--into", metavar="NAME", help="the experiment folder (under --results) to collect into")
    report.set_defaults(handler=command_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except MhmoeError as err:
        print(f"mhmoe: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a folder that cannot be written: the file, the reason, what is kept
        where = f"{err.filename}: " if err.filename else ""
        print(
            f"mhmoe: error: {where}{err.strerror or err}; a run keeps its last checkpoint (free the space or fix "
            "the permission, then --resume)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("mhmoe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
