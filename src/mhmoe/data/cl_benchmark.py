"""The "CL Benchmark" layout of O-LoRA (Wang et al., 2023) and the work that reuses its data, read the way its
dataset script reads it.

    <root>/<Family>/<dataset>/{train,dev,test}.json   lists of {"sentence": str, "label": str} (or .jsonl, .csv,
                                                       .parquet with those columns)
    <root>/<Family>/<dataset>/labels.json             the dataset's label words, a list of strings
    instruction_config.json                            {"<Family>": [{"instruction_type": ..., "instruction": ...}]}

Families and datasets as O-LoRA spells them: SC (amazon, yelp, IMDB, SST-2), TC (dbpedia, agnews, yahoo), NLI
(MNLI, CB, RTE), and QQP, COPA, BoolQA, MultiRC, WiC each in a family of their own name. The instruction file is
`data.instruction_file`, else the first of <root>/instruction_config.json, <root>/configs/instruction_config.json
and <root>/../configs/instruction_config.json (O-LoRA's repository keeps it beside CL_Benchmark/ in configs/).
Each family's first instruction is used (O-LoRA's "single" strategy). A prompt is built as O-LoRA's scripts
build it (task and dataset names on, options listed except for COPA, whose sentences carry their own):

    Task:TC\\nDataset:dbpedia\\n<instruction>Option: Company, ..., Written Work \\n<sentence>\\nAnswer:

and the answer is the label, scored by exact match after lower-casing and removing punctuation. dev.json is
the eval split.
"""

from __future__ import annotations

from pathlib import Path

from mhmoe.data.records import RecordError, read_records, split_file
from mhmoe.data.trace import DataError, Example, Task, capped, read_json

FAMILIES = {
    **dict.fromkeys(("amazon", "yelp", "IMDB", "SST-2"), "SC"),
    **dict.fromkeys(("dbpedia", "agnews", "yahoo"), "TC"),
    **dict.fromkeys(("MNLI", "CB", "RTE"), "NLI"),
    **{name: name for name in ("QQP", "COPA", "BoolQA", "MultiRC", "WiC")},
}
"""Each dataset's family folder, as O-LoRA's task configs name them."""
NO_OPTIONS = {"COPA"}
"""Families whose prompt is the sentence alone: COPA's sentences already hold the question and both choices."""
SPLIT_FILES = {"train": "train", "eval": "dev", "test": "test"}
MAX_NEW_TOKENS = 50
"""O-LoRA truncates its targets to 50 tokens."""
SCORER = "exact_match"
CL_ORDER_1 = ["dbpedia", "amazon", "yahoo", "agnews"]
"""The standard CL order 1, the default stream; the cl-order* and cl-long presets hold the published orders."""
SAMPLE_ROOT = Path(__file__).parent / "cl_sample"
"""The sample of the CL Benchmark shipped with the package (benchmark 'cl_sample'; its README.md says what)."""
SAMPLE_ORDER = ["dbpedia", "MNLI", "BoolQA"]
"""The sample's datasets, the default order of benchmark 'cl_sample'."""


def find_instruction_file(root: Path, configured: str | None) -> Path:
    """The instruction file: `configured`, else the first of the places O-LoRA-style checkouts keep it."""
    candidates = (
        [Path(configured)]
        if configured
        else [
            root / "instruction_config.json",
            root / "configs" / "instruction_config.json",
            root.parent / "configs" / "instruction_config.json",
        ]
    )
    for path in candidates:
        if path.is_file():
            return path
    where = "data.instruction_file" if configured else "; ".join(str(p) for p in candidates)
    raise DataError(f"{root}: no instruction_config.json found ({where}); set data.instruction_file")


def read_instructions(path: Path) -> dict[str, str]:
    """Each family's instruction: the first entry of its list."""
    config = read_json(path)
    if not isinstance(config, dict):
        raise DataError(f"{path}: expected an object of families, got {type(config).__name__}")
    instructions = {}
    for family, entries in config.items():
        first = entries[0] if isinstance(entries, list) and entries else None
        if not isinstance(first, dict) or not isinstance(first.get("instruction"), str):
            raise DataError(f"{path}: family '{family}' needs a list of objects with an 'instruction' string")
        instructions[family] = first["instruction"]
    return instructions


def dataset_folder(root: Path, name: str) -> tuple[str, Path]:
    """(family, folder) of a dataset: O-LoRA's family for a known name, else the one family folder holding it."""
    if name in FAMILIES and (root / FAMILIES[name] / name).is_dir():
        return FAMILIES[name], root / FAMILIES[name] / name
    found = sorted(p for p in root.glob(f"*/{name}") if p.is_dir())
    if len(found) == 1:
        return found[0].parent.name, found[0]
    if not found:
        raise DataError(f"{root}: dataset '{name}' not found (expected {root}/<Family>/{name}/)")
    raise DataError(f"{root}: dataset '{name}' is in several families ({', '.join(p.parent.name for p in found)})")


def read_labels(folder: Path) -> list[str]:
    path = folder / "labels.json"
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    labels = read_json(path)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise DataError(f"{path}: expected a non-empty JSON list of label strings")
    return labels


def cl_prompt(family: str, dataset: str, instruction: str, labels: list[str], sentence: str) -> str:
    """O-LoRA's prompt for one sentence (with its task and dataset names, as its scripts run it)."""
    head = f"Task:{family}\nDataset:{dataset}\n"
    if family in NO_OPTIONS:
        return f"{head}{sentence}\nAnswer:"
    return f"{head}{instruction}Option: {', '.join(labels)} \n{sentence}\nAnswer:"


def _examples(folder: Path, stem: str, family: str, task: str, instruction: str, answers: dict[str, str] | None,
              options: list[str], encoding: str) -> list[Example]:  # fmt: skip
    """The split's records as examples; with `answers` (a derived task) only those whose label it maps, each
    answered by its mapped label."""
    try:
        path = split_file(folder, stem)
        records = read_records(path, encoding)
    except RecordError as err:
        raise DataError(str(err)) from None
    examples = []
    for index, record in enumerate(records):
        for key in ("sentence", "label"):
            if not isinstance(record.get(key), str):
                raise DataError(f"{path}: record {index} needs a '{key}' string")
        if answers is not None and record["label"] not in answers:
            continue
        features = {"label": record["label"], "family": family}
        if answers is not None:
            features = {"label": answers[record["label"]], "family": family, "source_label": record["label"]}
        prompt = cl_prompt(family, task, instruction, options, record["sentence"])
        examples.append(Example(prompt, features["label"], features))
    return examples


def _task_source(root: Path, name: str, derived: dict[str, dict]) -> tuple:
    """(family, folder, label map or None, options) of a dataset or of a task derived from one."""
    if name not in derived:
        family, folder = dataset_folder(root, name)
        return family, folder, None, read_labels(folder)
    spec = derived[name]
    family, folder = dataset_folder(root, spec["dataset"])
    source = read_labels(folder)
    for label in spec["labels"]:
        if label not in source:
            raise DataError(
                f"data.derived_tasks.{name}.labels: '{label}' is not a label of {spec['dataset']} "
                f"({folder / 'labels.json'}: {', '.join(source)})"
            )
    return family, folder, dict(spec["labels"]), list(dict.fromkeys(spec["labels"].values()))


def load_cl_stream(
    root: str | Path,
    order: list[str],
    *,
    instruction_file: str | None = None,
    limits: dict[str, int | None] | None = None,
    seed: int = 0,
    encoding: str = "utf-8",
    derived: dict[str, dict] | None = None,
) -> list[Task]:
    """Every task of `order` as a task, validated before any is used; `limits` caps splits (seeded samples).

    A task is a dataset, or a task `derived` from one: {"dataset": name, "labels": {source label: answer}} keeps
    the records of those labels, answered by the mapped words, with the mapped words as the prompt's options and
    the task's own name as its "Dataset:" line.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    if not order:
        raise DataError(f"{root}: the stream names no datasets")
    instructions_path = find_instruction_file(root, instruction_file)
    instructions = read_instructions(instructions_path)
    tasks = []
    for name in order:
        family, folder, answers, options = _task_source(root, name, derived or {})
        if family not in instructions and family not in NO_OPTIONS:
            raise DataError(f"{instructions_path}: no instruction for family '{family}' (dataset '{name}')")
        splits = {}
        for split, stem in SPLIT_FILES.items():
            instruction = instructions.get(family, "")
            examples = _examples(folder, stem, family, name, instruction, answers, options, encoding)
            splits[split] = capped(examples, (limits or {}).get(split), seed)
        tasks.append(Task(name, SCORER, MAX_NEW_TOKENS, splits, options=options))
    return tasks
