"""`harness status`: per recipe, how many runs are done / failed / diverged / stopped / pending, and an ETA."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from harness.experiment.spec import ExperimentSpec, SchedulePolicy
from harness.schedule.lock import is_locked
from harness.schedule.progress import format_seconds
from harness.storage.store import RUN_STATUSES, experiment_dir, load_runs

STATUS_COLUMNS = ["task", "recipe", "total", *RUN_STATUSES, "pending", "mean_run_s", "eta_s"]


def estimate_slots(policy: SchedulePolicy) -> int:
    """Slots a local driver would use here (GPUs x runs_per_gpu, else cores / threads_per_run)."""
    from harness.schedule.local import discover_gpus

    gpus = discover_gpus()
    if gpus:
        return len(gpus) * policy.runs_per_gpu
    return max(1, (os.cpu_count() or 1) // policy.threads_per_run)


def experiment_status(
    experiment: ExperimentSpec, results_root: str | Path = "results", slots: int | None = None
) -> pd.DataFrame:
    """One row per (task, recipe): counts per status, pending, mean run time (s) and ETA (s) given `slots`.

    Mean run time is measured on this experiment's `done` runs (all finished runs of the experiment
    when a recipe has none yet); ETA = pending x mean / slots. attrs: slots, driver (lock holder or None).
    """
    exp_dir = experiment_dir(results_root, experiment.name)
    slots = slots or estimate_slots(experiment.schedule)
    specs = list({s.run_id: s for s in experiment.runs}.values())
    runs = load_runs(exp_dir)
    mine = runs["run_id"].isin({s.run_id for s in specs})
    others = int((~mine).sum())
    runs = runs[mine]
    status_of = dict(zip(runs["run_id"], runs["status"], strict=True))
    timed = runs[runs["status"] == "done"]["wall_time_s"].dropna()
    if timed.empty:
        timed = runs[runs["status"] != "failed"]["wall_time_s"].dropna()
    overall = float(timed.mean()) if len(timed) else float("nan")
    rows = []
    for (task, recipe), group in _group(specs).items():
        counts = {s: 0 for s in RUN_STATUSES}
        for spec in group:
            if spec.run_id in status_of:
                counts[status_of[spec.run_id]] += 1
        pending = len(group) - sum(counts.values())
        mine = runs[(runs["task"] == task) & (runs["recipe"] == recipe) & (runs["status"] == "done")]
        mean = float(mine["wall_time_s"].mean()) if mine["wall_time_s"].notna().any() else overall
        rows.append(
            {
                "task": task,
                "recipe": recipe,
                "total": len(group),
                **counts,
                "pending": pending,
                "mean_run_s": mean,
                "eta_s": pending * mean / slots if pending else 0.0,
            }
        )
    frame = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    failed = runs[runs["status"] == "failed"]
    errors = [
        (str(r["run_id"]), f"{r['task']}/{r['recipe']}", _first_line(r["error"])) for r in failed.to_dict("records")
    ]
    frame.attrs.update(
        experiment=experiment.name, slots=slots, driver=is_locked(exp_dir), other_runs=others, failed=errors
    )
    return frame


def _first_line(error: object) -> str:
    text = "" if error is None or pd.isna(error) else str(error)
    return next((line.strip() for line in text.splitlines() if line.strip()), "(no error recorded)")[:200]


def _group(specs: list) -> dict[tuple[str, str], list]:
    out: dict[tuple[str, str], list] = {}
    for spec in specs:
        out.setdefault((spec.task, spec.recipe.name), []).append(spec)
    return out


def format_status(df: pd.DataFrame) -> str:
    """A plain-text table of `experiment_status`, with totals and the ETA over all recipes."""
    shown = df.copy()
    shown["mean_run_s"] = shown["mean_run_s"].map(lambda v: "?" if pd.isna(v) else f"{v:.1f}")
    shown["eta"] = df["eta_s"].map(lambda v: "?" if pd.isna(v) else format_seconds(v))
    shown = shown.drop(columns=["eta_s"])
    lines = [f"experiment {df.attrs.get('experiment', '?')}"]
    lines.append(shown.to_string(index=False) if len(shown) else "(no runs)")
    counts = {c: int(df[c].sum()) for c in ["total", *RUN_STATUSES, "pending"]}
    lines.append("total: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    eta = df["eta_s"].sum(min_count=1) if counts["pending"] else 0.0
    lines.append(
        f"ETA {format_seconds(eta) if pd.notna(eta) else '? (no finished run to time yet)'} "
        f"with {df.attrs.get('slots', '?')} slot(s)"
    )
    failed = df.attrs.get("failed") or []
    if failed:
        lines.append(f"failed runs ({len(failed)}; `harness run --retry-failed` runs them again):")
        lines += [f"  {run_id}  {config}  {error}" for run_id, config, error in failed]
    others = df.attrs.get("other_runs", 0)
    if others:
        lines.append(f"{others} other run(s) in the folder are not this spec's (another scale or an edited spec)")
    driver = df.attrs.get("driver")
    lines.append(
        f"driver running: pid {driver.get('pid')} since {driver.get('started')}" if driver else "no driver running"
    )
    return "\n".join(lines)
