"""Draw the CL Benchmark sample shipped in src/mhmoe/data/cl_sample/ from a snapshot of O-LoRA's repository.

Only datasets whose licence allows redistribution are drawn (see that folder's README.md). Each split is a
seeded simple random sample without replacement of the records whose label is one of the dataset's labels. The
snapshot's dev.json and test.json are the same file, so dev and test are drawn disjoint from it; a dataset with
no train.json in the snapshot (dbpedia) draws its train split from that file too, disjoint from both. Records
are written in their source order, as Parquet (zstd); provenance.json records the source commit, the blobs, the
counts, the seed and each output file's SHA-256, which tests/test_cl_sample.py checks.

    python tools/make_cl_sample.py <O-LoRA git directory> [--commit 07117e1...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parents[1] / "src" / "mhmoe" / "data" / "cl_sample"
COMMIT = "07117e1fc4a5f5ad9308a815a42cee8f46502dc8"
SEED = 20261203
SIZES = {"train": 1000, "dev": 200, "test": 200}
DATASETS = {"BoolQA": "BoolQA", "dbpedia": "TC", "MNLI": "NLI"}
"""Dataset -> family folder, the redistributable ones (README.md's table gives each licence)."""


def git_show(git_dir: str, commit: str, path: str) -> bytes | None:
    done = subprocess.run(["git", "--git-dir", git_dir, "show", f"{commit}:{path}"], capture_output=True)
    return done.stdout if done.returncode == 0 else None


def blob(git_dir: str, commit: str, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", git_dir, "rev-parse", f"{commit}:{path}"], capture_output=True, text=True, check=True
    ).stdout.strip()


def draw(git_dir: str, commit: str, family: str, name: str, rng: random.Random) -> tuple[dict, dict]:
    """The dataset's sampled splits and their provenance record."""
    folder = f"CL_Benchmark/{family}/{name}"
    labels = json.loads(git_show(git_dir, commit, f"{folder}/labels.json"))
    evaluation = json.loads(git_show(git_dir, commit, f"{folder}/test.json"))
    train_text = git_show(git_dir, commit, f"{folder}/train.json")
    keep = [i for i, r in enumerate(evaluation) if r["label"] in labels]
    picked = rng.sample(keep, SIZES["dev"] + SIZES["test"] + (0 if train_text else SIZES["train"]))
    splits = {
        "test": sorted(picked[: SIZES["test"]]),
        "dev": sorted(picked[SIZES["test"] : SIZES["test"] + SIZES["dev"]]),
    }
    records = {split: [evaluation[i] for i in rows] for split, rows in splits.items()}
    sources = {split: f"{folder}/test.json" for split in splits}
    if train_text:
        train = json.loads(train_text)
        train_keep = [i for i, r in enumerate(train) if r["label"] in labels]
        records["train"] = [train[i] for i in sorted(rng.sample(train_keep, SIZES["train"]))]
        sources["train"], dropped_train = f"{folder}/train.json", len(train) - len(train_keep)
    else:
        records["train"] = [evaluation[i] for i in sorted(picked[SIZES["dev"] + SIZES["test"] :])]
        sources["train"], dropped_train = f"{folder}/test.json", 0
    record = {
        "family": family,
        "labels": labels,
        "sources": {split: {"path": path, "blob": blob(git_dir, commit, path)} for split, path in sources.items()},
        "dropped_unlabelled": {"test.json": len(evaluation) - len(keep), "train.json": dropped_train},
        "records": {split: len(rows) for split, rows in records.items()},
    }
    return records, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("git_dir", help="a git directory of github.com/cmnfriend/O-LoRA")
    parser.add_argument("--commit", default=COMMIT)
    args = parser.parse_args()
    rng = random.Random(SEED)
    provenance = {
        "source": "https://github.com/cmnfriend/O-LoRA",
        "commit": args.commit,
        "seed": SEED,
        "sampling": "random.Random(seed).sample over the labelled records, datasets in this file's order",
        "datasets": {},
        "files": {},
    }
    for name, family in DATASETS.items():
        records, provenance["datasets"][name] = draw(args.git_dir, args.commit, family, name, rng)
        folder = OUT / family / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "labels.json").write_text(json.dumps(provenance["datasets"][name]["labels"]) + "\n")
        for split, rows in records.items():
            table = pa.Table.from_pylist([{"sentence": r["sentence"], "label": r["label"]} for r in rows])
            pq.write_table(table, folder / f"{split}.parquet", compression="zstd")
    instructions = json.loads(git_show(args.git_dir, args.commit, "configs/instruction_config.json"))
    kept = {family: instructions[family] for family in sorted(set(DATASETS.values()))}
    (OUT / "instruction_config.json").write_text(json.dumps(kept, indent=1) + "\n")
    for path in sorted(OUT.rglob("*")):
        if path.suffix in (".parquet", ".json") and path.name != "provenance.json":
            provenance["files"][str(path.relative_to(OUT))] = hashlib.sha256(path.read_bytes()).hexdigest()
    (OUT / "provenance.json").write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"wrote {OUT}: {sum(p.stat().st_size for p in OUT.rglob('*') if p.is_file()):,} bytes")


if __name__ == "__main__":
    main()
