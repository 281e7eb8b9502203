"""The built-in offline benchmark: six tasks that mirror TRACE's kinds and scorers, written in TRACE's
on-disk format so one loader serves it and real TRACE. Deterministic from the seed (the two code tasks
read this Python's own standard library, so they also depend on the Python version).

Forgetting comes from interference, so the stream is built for it: the two stance tasks share one
vocabulary of tone phrases and one answer format (A-D) but map tone to letters differently by domain (in
policy, a supportive tone means A = favour; in central-bank statements it means B = hawkish). Only support
and oppose swap; neutral (C) and query (D) keep their letters, so a model that fully overwrites the policy
mapping with the bank's still gets half the policy statements right: forgetting is partial by construction,
and a router that can tell the domains apart has something to keep. The multiple-choice task answers with
letters too. Each record carries its ground-truth `domain` and `label`.

Measured with SeqLoRA (SmolLM2-135M-Instruct, 32 steps of 8, lr 1e-3, matched rank 42, 100 test examples a
task), Stance-Policy -> Stance-CentralBank: Stance-Policy 76 -> 45 (seed 0) and 97 -> 57 (seed 1), the bank
task 100 and 98; on seed 2 Stance-Policy reached only 58 in 32 steps, so the presets train 48. With three
letters (every tone but neutral swapped) a full overwrite left 33 and SeqLoRA hit that floor on two seeds of
four. A task answered with numbers between them (Arithmetic) replaces the letter format instead (the first
task falls to 0), and QA-Choice was not learned in 32 steps (27 of 100, chance 25). No two tones share a
content word: with shared adverbs ("strongly welcomes", "strongly objects to") the model learned neutral but
not favour vs against (69 of 100 on seed 0, against 100 with single distinct verbs).
"""

from __future__ import annotations

import ast
import json
import random
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

DEFAULT_SIZES = {"train": 256, "eval": 32, "test": 48}

TONES = {
    "support": ["supports", "welcomes", "praises", "endorses", "applauds"],
    "oppose": ["opposes", "criticises", "rejects", "condemns", "denounces"],
    "neutral": ["takes note of", "describes", "mentions", "reports on", "summarises"],
    "query": ["asks about", "enquires about", "requests details of", "seeks clarity about", "wants answers about"],
}
POLICY_SPEAKERS = ["The senator", "A local council member", "The union leader", "An editorial", "The mayor"]
POLICY_TOPICS = [
    "the new bicycle lanes",
    "the school meal plan",
    "the carbon tax",
    "the housing reform",
    "the public library budget",
    "the ban on plastic bags",
    "the four-day work week",
]
BANK_SPEAKERS = [
    "The central bank",
    "The committee chair",
    "A policy board member",
    "The governor",
    "The deputy governor",
    "A rate-setter",
]
BANK_TOPICS = [
    "further rate increases",
    "tighter monetary policy",
    "raising the policy rate",
    "shrinking the balance sheet",
    "higher borrowing costs",
]
# Tone -> (letter, label): the same tone means different letters in the two domains.
# Only support and oppose swap letters between the domains; neutral (C) and query (D) keep theirs. A model
# that fully overwrites the policy mapping with the bank's still answers half the policy statements right,
# so forgetting is partial by construction (at most 50 points from a perfect score), never a collapse.
POLICY_LABELS = {
    "support": ("A", "favour"),
    "oppose": ("B", "against"),
    "neutral": ("C", "none"),
    "query": ("D", "unclear"),
}
BANK_LABELS = {
    "support": ("B", "hawkish"),
    "oppose": ("A", "dovish"),
    "neutral": ("C", "neutral"),
    "query": ("D", "unclear"),
}
# Short prompts on purpose: SmolLM2-135M learned a longer four-line template (question, statement, options,
# answer) no better than chance in 48 steps, and this two-line one to about 90% in 32.
QUESTIONS = {
    "policy": "Stance on the policy? A) favour B) against C) none D) unclear",
    "central-bank": "Monetary policy stance? A) dovish B) hawkish C) neutral D) unclear",
}

QA_FACTS = {
    "an animal": ["tiger", "sparrow", "salmon", "rabbit", "frog", "horse"],
    "a fruit": ["apple", "mango", "cherry", "banana", "plum", "grape"],
    "a metal": ["iron", "copper", "silver", "zinc", "nickel", "gold"],
    "a planet": ["Mars", "Venus", "Saturn", "Jupiter", "Neptune", "Mercury"],
    "a musical instrument": ["violin", "trumpet", "flute", "cello", "drum", "harp"],
    "a colour": ["crimson", "teal", "violet", "amber", "indigo", "scarlet"],
}
STDLIB_MODULES = [
    "textwrap.py",
    "shlex.py",
    "fnmatch.py",
    "glob.py",
    "string.py",
    "heapq.py",
    "bisect.py",
    "colorsys.py",
    "calendar.py",
    "difflib.py",
    "csv.py",
    "ftplib.py",
    "gettext.py",
    "imaplib.py",
    "mailbox.py",
    "netrc.py",
    "optparse.py",
    "pprint.py",
    "quopri.py",
    "sched.py",
    "smtplib.py",
    "statistics.py",
    "tabnanny.py",
    "tarfile.py",
    "zipfile/__init__.py",
    "json/decoder.py",
]


def _stance(rng: random.Random, speakers, topics, labels, domain: str) -> dict:
    tone = rng.choice(list(TONES))
    letter, label = labels[tone]
    statement = f"{rng.choice(speakers)} {rng.choice(TONES[tone])} {rng.choice(topics)}."
    prompt = f"{QUESTIONS[domain]}\n{statement}\nAnswer:"
    return {"prompt": prompt, "answer": letter, "domain": domain, "label": label}


def stance_policy(rng: random.Random) -> dict:
    return _stance(rng, POLICY_SPEAKERS, POLICY_TOPICS, POLICY_LABELS, "policy")


def stance_bank(rng: random.Random) -> dict:
    """Supporting rate increases is hawkish (B), opposing them dovish (A): the mirror of the policy task's letters."""
    return _stance(rng, BANK_SPEAKERS, BANK_TOPICS, BANK_LABELS, "central-bank")


def arithmetic(rng: random.Random) -> dict:
    name = rng.choice(["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran"])
    thing = rng.choice(["apples", "stamps", "marbles", "books", "coins"])
    a, b = rng.randint(10, 60), rng.randint(2, 30)
    if rng.random() < 0.5:
        question, answer, op = f"{name} has {a} {thing} and gets {b} more.", a + b, "add"
    else:
        question, answer, op = f"{name} has {a} {thing} and gives away {b}.", a - b, "subtract"
    prompt = f"Solve the problem and give the number only.\n{question} How many {thing} now?\nAnswer:"
    return {"prompt": prompt, "answer": str(answer), "domain": "arithmetic", "label": op}


def multiple_choice(rng: random.Random) -> dict:
    category = rng.choice(list(QA_FACTS))
    right = rng.choice(QA_FACTS[category])
    others = [w for c, words in QA_FACTS.items() if c != category for w in words]
    options = rng.sample(others, 3) + [right]
    rng.shuffle(options)
    letters = "ABCD"
    listed = " ".join(f"{letters[i]}) {o}" for i, o in enumerate(options))
    prompt = f"Answer the question with the option letter.\nWhich of these is {category}? {listed}\nAnswer:"
    return {"prompt": prompt, "answer": letters[options.index(right)], "domain": "science-qa", "label": category}


def _stdlib_sources() -> Iterator[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    for name in STDLIB_MODULES:
        path = root / name
        if path.is_file():
            yield name, path.read_text(encoding="utf-8", errors="replace")


def _code_lines() -> list[dict]:
    pool = []
    for module, source in _stdlib_sources():
        lines = [line.rstrip() for line in source.splitlines()]
        for i in range(4, len(lines)):
            target = lines[i].strip()
            context = [line for line in lines[i - 4 : i] if line.strip()]
            if len(target) < 8 or len(target) > 60 or target.startswith("#") or len(context) < 3:
                continue
            prompt = "Complete the next line of Python code.\n" + "\n".join(context) + "\nNext line:"
            pool.append({"prompt": prompt, "answer": target, "domain": "python-code", "label": module})
    return pool


def _docstrings() -> list[dict]:
    pool = []
    for module, source in _stdlib_sources():
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not ast.get_docstring(node):
                continue
            summary = ast.get_docstring(node).strip().splitlines()[0].strip()
            body = [ast.unparse(stmt) for stmt in node.body[1:3]]
            code = f"def {node.name}({ast.unparse(node.args)}):\n" + "\n".join(
                "    " + line for stmt in body for line in stmt.splitlines()[:3]
            )
            if 4 <= len(summary.split()) <= 14 and body and len(code) < 400:
                prompt = f"Summarise what this Python function does in one line.\n{code}\nSummary:"
                pool.append({"prompt": prompt, "answer": summary, "domain": "python-docs", "label": module})
    return pool


Generator = Callable[[random.Random], dict]
TASKS: dict[str, tuple[str, int, Generator | Callable[[], list[dict]]]] = {
    # name: (scorer, max_new_tokens, generator of one record, or a function giving the whole pool)
    "Stance-Policy": ("accuracy", 2, stance_policy),
    "Arithmetic": ("accuracy", 4, arithmetic),
    "Py-NextLine": ("similarity", 24, _code_lines),
    "Stance-CentralBank": ("accuracy", 2, stance_bank),
    "Doc-Summary": ("rouge_l", 24, _docstrings),
    "QA-Choice": ("accuracy", 2, multiple_choice),
}
DEFAULT_ORDER = list(TASKS)


def _distinct(records: Iterable[dict], total: int) -> list[dict]:
    """The first `total` records with distinct prompts (fewer if the stream runs out)."""
    seen, kept = set(), []
    for record in records:
        if record["prompt"] not in seen:
            seen.add(record["prompt"])
            kept.append(record)
            if len(kept) == total:
                break
    return kept


def _unique_records(name: str, total: int, rng: random.Random) -> list[dict]:
    """`total` records with distinct prompts (fewer if the task's pool is smaller), in a seeded order."""
    source = TASKS[name][2]
    if source in (_code_lines, _docstrings):
        pool = source()
        rng.shuffle(pool)
        return _distinct(pool, total)
    return _distinct((source(rng) for _ in range(total * 50)), total)


def write_builtin(
    root: str | Path, *, seed: int = 0, sizes: dict[str, int] | None = None, tasks: list[str] | None = None
) -> Path:
    """Write the built-in tasks under `root` in TRACE's format; train/eval/test never share a prompt.

    A task's records depend on the seed and the task only, so runs over different orders see the same data.
    """
    root, sizes = Path(root), {**DEFAULT_SIZES, **(sizes or {})}
    for name in tasks or DEFAULT_ORDER:
        scorer, max_new, _ = TASKS[name]
        rng = random.Random(f"{seed}:{name}")  # the task's sample, wherever it stands in the order
        records = _unique_records(name, sum(sizes.values()), rng)
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        start = 0
        for split in ("test", "eval", "train"):  # test and eval first: a small pool shortens train, not test
            part = records[start : start + sizes[split]]
            start += len(part)
            (folder / f"{split}.json").write_text(json.dumps(part, indent=1, ensure_ascii=False) + "\n")
        (folder / "task.json").write_text(json.dumps({"scorer": scorer, "max_new_tokens": max_new}) + "\n")
    return root
