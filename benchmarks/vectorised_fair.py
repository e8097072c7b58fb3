"""The fair GPU table of seed-vectorised fine-tuning: the loop and seed groups on equal terms, through `harness run`.

Every row is the same N runs (seeds 1..N) of one setting that learns (SST-2, packaged MiniLM), run end to
end by `harness run` in a child process: cold (the first `harness run`) and warm (the same command again
on a fresh store, R times, median). The precision is a recipe field, so it is the same on both sides, and
it is checked inside the worker: each stored run's provenance records what torch computed in (TF32 or
strict fp32 matmuls, bf16 autocast), and a row whose runs disagree with its label fails. Scores are
reported (mean ± sd over the N runs) beside the loop's. Model FLOP utilisation counts matmul parameters
only (nn.Linear weights: MiniLM's embedding table is half its parameters and does no matmul work):
6 x matmul params x training tokens + 2 x matmul params x eval tokens, over the warm wall time, against
the dense peak of the row's precision. Rows: the loop at 1 and 8 processes per GPU, groups of K = 8, 32,
64, each in TF32 and in bf16.

    python benchmarks/bench_vectorised.py --gpu --model-dir DIR --data-dir GLUE [--runs 64] [--reps 3]
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_anchor import _toml as toml_text

ROOT = Path(__file__).resolve().parents[1]
PEAKS = {"tf32": 495e12, "bf16": 989e12, "fp32": 67e12}  # H100/H200 SXM dense FLOP/s per precision
EXPECTED = {  # what a run's provenance must say it computed in (harness.training.device.precision_in_effect)
    "tf32": "fp32 matmuls in tf32",
    "fp32": "fp32 matmuls in ieee fp32",
    "bf16": "bf16 autocast, fp32 matmuls in ieee fp32",
}


@dataclass(frozen=True)
class Row:
    precision: str  # recipe precision: tf32 | bf16 (fp32 in a CPU dry run)
    runs_per_gpu: int = 1  # loop rows: worker processes per GPU
    seeds_per_worker: int = 1  # > 1: seed groups of K

    @property
    def label(self) -> str:
        if self.seeds_per_worker > 1:
            return f"groups of K={self.seeds_per_worker}, {self.precision}"
        return f"loop, {self.runs_per_gpu} process(es)/GPU, {self.precision}"


@dataclass(frozen=True)
class Protocol:
    model: str
    data_dir: str
    runs: int = 64
    reps: int = 3
    rows: tuple[Row, ...] = tuple(  # per precision, the loop at 1 process/GPU first: the others are compared with it
        row
        for p in ("bf16", "tf32")
        for row in (Row(p, runs_per_gpu=1), Row(p, runs_per_gpu=8), *(Row(p, seeds_per_worker=k) for k in (8, 32, 64)))
    )
    # The setting: learns within 60 updates (tests/test_train.py::test_packaged_model_learns_sst2).
    task: str = "sst2"
    sample_size: int = 800
    eval_size: int = 400
    max_seq_length: int = 64
    batch_size: int = 16
    lr: float = 1e-4
    max_steps: int = 60
    num_evals: int = 2
    budget_s: float = math.inf  # rows that would start past it are reported as skipped
    peaks: dict[str, float] = field(default_factory=lambda: dict(PEAKS))
    device: str = "cuda"

    def experiment(self, row: Row) -> dict[str, Any]:
        recipe = {"lr": self.lr, "batch_size": self.batch_size, "max_steps": self.max_steps, "warmup_ratio": 0.1,
                  "precision": row.precision}  # fmt: skip
        schedule = {"runs_per_gpu": row.runs_per_gpu, "seeds_per_worker": row.seeds_per_worker, "threads_per_run": 1}
        return {
            "name": "fair", "task": self.task, "model": self.model, "seeds": self.runs, "sample_size": self.sample_size,
            "eval_size": self.eval_size, "max_seq_length": self.max_seq_length, "num_evals": self.num_evals,
            "recipes": {"bench": recipe}, "schedule": schedule,
        }  # fmt: skip


def dry_run(model: str, data_dir: str) -> Protocol:
    """The protocol at a CPU size: 2 runs, 1 repetition, the loop and K = 2 in fp32 (TF32 is CUDA only) and bf16."""
    rows = tuple(row for p in ("fp32", "bf16") for row in (Row(p, 1), Row(p, seeds_per_worker=2)))
    return Protocol(model, data_dir, runs=2, reps=1, rows=rows, sample_size=32, eval_size=32, max_seq_length=32,
                    batch_size=8, max_steps=3, device="cpu")  # fmt: skip


def harness_run(protocol: Protocol, row: Row, results: Path) -> float:
    """One `harness run` of the row's experiment into a fresh store; its wall time (process start to exit)."""
    path = results.parent / f"{results.name}.toml"
    path.write_text(toml_text(protocol.experiment(row)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.update(HARNESS_DATA_DIR=protocol.data_dir, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if protocol.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [sys.executable, "-m", "harness.cli", "--results", str(results), "run", str(path), "--quiet"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{row.label}: harness run failed (exit {out.returncode}): {out.stderr[-2000:]}")
    return wall


def checked_runs(row: Row, results: Path, n: int) -> Any:
    """The stored runs, after checking that all N are done and computed in the row's precision."""
    from harness.storage.store import load_runs

    runs = load_runs(results / "fair")
    if len(runs) != n or set(runs["status"]) != {"done"}:
        raise RuntimeError(f"{row.label}: {len(runs)} of {n} runs stored, statuses {sorted(set(runs['status']))}")
    seen = {json.loads(p).get("precision", "?") for p in runs["provenance"]}
    if seen != {EXPECTED[row.precision]}:
        raise RuntimeError(f"{row.label}: the workers computed in {sorted(seen)}, not {EXPECTED[row.precision]!r}")
    return runs


def matmul_share(model: str) -> float:
    """nn.Linear weights / all parameters of the classifier: the share of a run's `flops` (counted on all
    parameters) that is matmul work."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from harness.training.model_source import resolve_model

    net = AutoModelForSequenceClassification.from_pretrained(resolve_model(model), num_labels=2)
    linear = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Linear))
    return linear / sum(p.numel() for p in net.parameters())


def measure(protocol: Protocol, row: Row, work: Path, share: float) -> dict[str, Any]:
    cold = harness_run(protocol, row, work / "cold")
    checked_runs(row, work / "cold", protocol.runs)
    warm = []
    for rep in range(protocol.reps):
        warm.append(harness_run(protocol, row, work / f"warm{rep}"))
    runs = checked_runs(row, work / f"warm{protocol.reps - 1}", protocol.runs)
    wall = statistics.median(warm)
    scores = [float(x) for x in runs["score"]]
    matmul_flops = float(runs["flops"].sum()) * share
    return {
        "row": row.label, "precision": EXPECTED[row.precision], "runs": protocol.runs, "cold_s": cold,
        "warm_s": wall, "warm_all_s": warm, "runs_per_hour": 3600 * protocol.runs / wall,
        "score_mean": statistics.fmean(scores), "score_sd": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "mfu": matmul_flops / wall / protocol.peaks[row.precision],
        "scores": dict(zip(runs["init_seed"].astype(int).tolist(), scores, strict=True)),
    }  # fmt: skip


def run_fair(protocol: Protocol) -> list[dict[str, Any]]:
    """Every row of the protocol (a failing row is reported, the others go on); rows past the budget are skipped."""
    started = time.perf_counter()
    share = matmul_share(protocol.model)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fair-") as tmp:
        for i, row in enumerate(protocol.rows):
            if time.perf_counter() - started > protocol.budget_s:
                rows.append({"row": row.label, "error": f"skipped: past the {protocol.budget_s:.0f} s budget"})
                continue
            work = Path(tmp) / f"row{i}"
            work.mkdir()
            try:
                rows.append(measure(protocol, row, work, share))
            except Exception as exc:  # one row's failure is reported; the others still come
                rows.append({"row": row.label, "error": f"{type(exc).__name__}: {exc}"[:500]})
    return compare_with_the_loop(rows, protocol)


def compare_with_the_loop(rows: list[dict[str, Any]], protocol: Protocol) -> list[dict[str, Any]]:
    """Speedup and score difference of each row against the loop at 1 process per GPU in the same precision."""
    out = []
    for row in rows:
        if "error" in row:
            out.append(row)
            continue
        base = next((r for r in rows if "error" not in r and r["row"].startswith("loop, 1 ")
                     and r["precision"] == row["precision"]), None)  # fmt: skip
        if base is not None:
            shared = sorted(set(row["scores"]) & set(base["scores"]))
            gaps = [abs(row["scores"][s] - base["scores"][s]) for s in shared]
            gap = max(gaps) if gaps else math.nan
            speedup, vs_loop = base["warm_s"] / row["warm_s"], row["score_mean"] - base["score_mean"]
            row = {**row, "speedup": speedup, "score_vs_loop": vs_loop, "max_run_gap": gap}
        out.append(row)
    return out


def render(rows: list[dict[str, Any]], protocol: Protocol, device: str) -> str:
    peaks = ", ".join(f"{k} {v:.3g}" for k, v in protocol.peaks.items())
    head = (
        f"# Seed groups against the loop on {device}, every row through `harness run`\n\n"
        f"{protocol.runs} runs per row (SST-2, {protocol.sample_size} examples, batch {protocol.batch_size}, "
        f"{protocol.max_steps} steps, lr {protocol.lr}, {protocol.num_evals} evals on {protocol.eval_size} dev "
        f"examples; MiniLM from {protocol.model}). cold = the first `harness run` (process start to exit); warm = "
        f"median of {protocol.reps} more on fresh stores; runs/hour and speedup from warm. precision = what every "
        f"worker recorded. score vs loop = difference of means against the loop at 1 process/GPU in the same "
        f"precision; max run gap = the largest |score| difference of one seed between the two. MFU = matmul FLOPs "
        f"(nn.Linear weights only) / warm wall / dense peak of the precision ({peaks} FLOP/s)."
    )
    cols = ("row", "precision", "runs", "cold s", "warm s", "runs/hour", "speedup", "score (mean ± sd)",
            "score vs loop", "max run gap", "MFU")  # fmt: skip
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        if "error" in r:
            error = str(r["error"]).strip().splitlines()[0].replace("|", "/") if str(r["error"]).strip() else "?"
            lines.append(f"| {r['row']} | FAILED: {error[:300]} |" + " |" * (len(cols) - 2))
            continue
        lines.append(
            f"| {r['row']} | {r['precision']} | {r['runs']} | {r['cold_s']:.1f} | {r['warm_s']:.1f} | "
            f"{r['runs_per_hour']:.0f} | {r.get('speedup', math.nan):.2f} | "
            f"{r['score_mean']:.1f} ± {r['score_sd']:.1f} | "
            f"{r.get('score_vs_loop', math.nan):+.2f} | {r.get('max_run_gap', math.nan):.2f} | {100 * r['mfu']:.2f}% |"
        )
    return "\n".join(lines) + "\n"


def write_table(rows: list[dict[str, Any]], protocol: Protocol, out_dir: Path) -> str:
    import torch

    device = torch.cuda.get_device_name(0) if protocol.device == "cuda" and torch.cuda.is_available() else "CPU"
    text = render(rows, protocol, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vectorised_fair.md").write_text(text)
    (out_dir / "vectorised_fair.json").write_text(json.dumps(rows, indent=2, default=str))
    return text
