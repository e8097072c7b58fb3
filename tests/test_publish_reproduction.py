"""The committed reports' header: wall time and machine come from the log and the runs, never by hand."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import publish_reproduction as publish


def _runs(provenance: dict, n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"provenance": [json.dumps(provenance)] * n, "wall_time_s": [10.0] * n,
                         "task": ["sst2"] * n, "recipe": ["a", "a", "b"][:n]})  # fmt: skip


def test_wall_time_is_the_drivers_summary_line(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("$ harness run\n# exit 0, wall 120.0 s\nx: 3 run(s) in 98.4 s on local (2 slot(s)): 3 done\n")
    assert publish.wall_of(log, _runs({}), 3) == "98 s for 3 runs on 2 worker slots"
    log.write_text(
        "x: 2 run(s) in 50.0 s on local (2 slot(s)): 2 done; 0 already stored, 1 reused from other experiments"
    )
    assert (
        publish.wall_of(log, _runs({}), 3) == "50 s for 2 runs on 2 worker slots (1 more reused from other experiments)"
    )


def test_a_run_stopped_at_its_budget_says_how_many_runs_finished(tmp_path: Path):
    log = tmp_path / "x.log"
    log.write_text("$ harness run\n# exit None, wall 251.3 s\n\n--- stderr\ninterrupted\n")
    text = publish.wall_of(log, _runs({}), 216)
    assert "after 251 s" in text and "3 of the 216 planned runs finished" in text


def test_without_a_log_the_wall_time_is_the_summed_run_time():
    assert publish.wall_of(None, _runs({}), None) == "30 s of summed run time for 3 runs"


def test_machine_names_the_gpu_or_the_cpu_threads():
    gpu = {"device": "cuda:0", "device_name": "NVIDIA H200", "torch": "2.11.0+cu130", "transformers": "5.17.0"}
    assert publish.machine_of(_runs(gpu)) == "NVIDIA H200 (torch 2.11.0+cu130, transformers 5.17.0)"
    cpu = {"device": "cpu", "device_name": "x86_64", "threads": 1, "torch": "2.13.0+cpu", "transformers": "5"}
    assert publish.machine_of(_runs(cpu)).startswith("x86_64 CPU, 1 thread(s) per run")
    assert publish.seeds_per_arm(_runs(cpu)) == "1-2"
