"""The hub path, offline: a model id and `nyu-mll/glue` loaded from Hugging Face caches by the same code a
networked user runs (`from_pretrained(hub id)`, `datasets.load_dataset("nyu-mll/glue", "rte")`).

The caches are built from the packaged MiniLM and the local RTE files (tests/hub_cache.py) in the layouts a
first networked run leaves behind; every process here runs with HF_HUB_OFFLINE=1 and no HARNESS_DATA_DIR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent
REPO_ID = "test-org/minilm-hub"

CHECK_LABELS = """
import json, datasets
from harness.experiment.data import load_split
hub, tsv = load_split("rte", "dev", None), load_split("rte", "dev", {glue!r})
raw = datasets.load_dataset("nyu-mll/glue", "rte", split="validation")
print(json.dumps({{"n": len(hub), "same": hub == tsv, "raw_first": raw[0]["label"], "ours_first": hub[0].label,
                  "names": raw.features["label"].names}}))
"""

EXPERIMENT = f"""
name = "hub-offline"
task = "rte"
model = "{REPO_ID}"
model_layers = 1
sample_size = 16
eval_size = 32
max_seq_length = 32
num_evals = 1
seeds = 1
[recipes.standard]
max_steps = 2
batch_size = 8
[schedule]
max_retries = 0
"""


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path, packaged_model: str) -> dict[str, str]:
    from harness.training.models import packaged_model_dir

    base = tmp_path_factory.mktemp("hf")
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_DATA_DIR", "HF_TOKEN")}
    env.update(HF_HOME=str(base), HF_HUB_CACHE=str(base / "hub"), HF_DATASETS_CACHE=str(base / "datasets"),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))  # fmt: skip
    build = [sys.executable, str(HERE / "hub_cache.py"), env["HF_HUB_CACHE"], env["HF_DATASETS_CACHE"], REPO_ID,
             str(packaged_model_dir()), str(glue_dir)]  # fmt: skip
    subprocess.run(build, env=env, check=True, capture_output=True, timeout=300)
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.mark.real
def test_rte_from_the_datasets_cache_matches_the_tsv_labels(offline_env: dict[str, str], glue_dir: Path) -> None:
    code = CHECK_LABELS.format(glue=str(glue_dir))
    done = subprocess.run([sys.executable, "-c", code], env=offline_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["n"] == 277 and got["same"]  # texts and labels equal the TSV path, example by example
    assert got["names"] == ["entailment", "not_entailment"]  # the hub's order is the reverse of ours
    assert (got["raw_first"], got["ours_first"]) == (1, 0)  # first dev example: not_entailment


@pytest.mark.real
@pytest.mark.slow
def test_harness_run_with_a_hub_model_id_and_hub_task_offline(offline_env: dict[str, str], tmp_path: Path) -> None:
    exp = tmp_path / "hub.toml"
    exp.write_text(EXPERIMENT)
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "harness.cli", "--results", str(results), "run", str(exp), "--quiet"]
    done = subprocess.run(cmd, env=offline_env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    from harness.storage.store import load_runs

    runs = load_runs(results / "hub-offline")
    assert len(runs) == 1 and runs["status"].iloc[0] == "done", runs[["status", "error"]].to_dict("records")
    assert runs["model"].iloc[0] == REPO_ID
    prov = json.loads(runs["provenance"].iloc[0])
    assert prov.get("data") == "hub (datasets)", prov
