"""A driver for the SLURM-backend kill test: python tests/slurm_driver.py RESULTS_ROOT N_RUNS SLOTS.

Runs fakes_schedule:sleepy through `--backend slurm` with submitit's local executor.
"""

from __future__ import annotations

import dataclasses
import sys

from fakes_schedule import make_experiment

from harness.experiment.spec import SlurmPolicy
from harness.schedule import run_experiment


def slurm_experiment(name: str, seeds: int, **kw: object):
    exp = make_experiment(name, seeds, **kw)
    policy = dataclasses.replace(exp.schedule, backend="slurm", slurm=SlurmPolicy(cluster="local", gpus_per_run=0))
    return dataclasses.replace(exp, schedule=policy)


if __name__ == "__main__":
    root, n, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    summary = run_experiment(
        slurm_experiment("slurmkill", n), root, train_fn="fakes_schedule:sleepy", max_workers=slots, progress=False
    )
    print(summary, flush=True)
