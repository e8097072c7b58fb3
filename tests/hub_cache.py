"""Offline Hugging Face caches built from local files, in the layouts a networked first run leaves behind.

- `build_model_cache`: `<hub>/models--org--name/{refs/main, snapshots/<rev>/<file> -> ../../blobs/<sha256>}`,
  what `from_pretrained("org/name")` reads with HF_HUB_OFFLINE=1.
- `build_glue_cache`: `<datasets>/nyu-mll___glue/<config>/0.0.0/<hash>/{dataset_info.json, glue-<split>.arrow}`,
  what `datasets.load_dataset("nyu-mll/glue", config)` reads offline (datasets' Cache builder). It is
  written by datasets' own Parquet builder from Parquet files in the hub's schema (the hub's RTE labels:
  0 = entailment, 1 = not_entailment), then moved to the folder the hub path uses (nyu-mll___glue/rte).
Run as a script: python tests/hub_cache.py HUB_DIR DATASETS_DIR REPO_ID MODEL_DIR GLUE_DIR
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

RTE_HUB_LABELS = ("entailment", "not_entailment")  # the hub's ClassLabel names, in id order


def build_model_cache(hub_dir: Path, repo_id: str, model_dir: Path) -> str:
    repo = hub_dir / f"models--{repo_id.replace('/', '--')}"
    revision = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / revision
    for src in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / src.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return revision


def build_glue_cache(datasets_dir: Path, glue_dir: Path, work: Path) -> Path:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets.packaged_modules.parquet.parquet import Parquet

    files = {}
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv")):
        with open(glue_dir / "RTE" / name, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
        table = pa.table(
            {
                "sentence1": [r["sentence1"] for r in rows],
                "sentence2": [r["sentence2"] for r in rows],
                "label": [RTE_HUB_LABELS.index(r["label"]) for r in rows],
                "idx": [int(r["index"]) for r in rows],
            }
        )
        files[split] = str(work / f"{split}.parquet")
        pq.write_table(table, files[split])
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(RTE_HUB_LABELS)),
            "idx": datasets.Value("int32"),
        }
    )
    builder = Parquet(
        cache_dir=str(datasets_dir),
        dataset_name="glue",  # arrow files glue-<split>.arrow, as the hub path names them
        config_name="rte",
        data_files=files,
        features=features,
        hash="0" * 16,
    )
    builder.download_and_prepare()
    built = Path(builder.cache_dir)
    target = datasets_dir / "nyu-mll___glue" / "rte" / built.parts[-2] / built.parts[-1]
    # The hub path writes under nyu-mll___glue/rte/; a local build under glue/rte-<data files hash>/.
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), target)
    shutil.rmtree(datasets_dir / "glue", ignore_errors=True)
    info = json.loads((target / "dataset_info.json").read_text())
    info["config_name"] = "rte"
    (target / "dataset_info.json").write_text(json.dumps(info))
    return target


if __name__ == "__main__":
    hub, ds, repo_id, model, glue = sys.argv[1:6]
    build_model_cache(Path(hub), repo_id, Path(model))
    work = Path(ds).parent / "parquet-src"
    work.mkdir(parents=True, exist_ok=True)
    print(build_glue_cache(Path(ds), Path(glue), work))
