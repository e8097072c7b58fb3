"""`make gpu-check`: prove the GPU path on one NVIDIA GPU with no pip and no network, in minutes.

Needs .gpu-bundle/ (`make gpu-bundle` on a machine with the packaged model): the fp16 weights are
upcast to fp32 in a temp folder and used as a local model folder; the bundled GLUE is the data.
Prints ONE table (s/run, runs/hour, peak GPU memory, ratio to the HF Trainer) and writes it as
gpu_check.md, .json and .csv into --out (or $GPU_CHECK_OUT, else results/gpu-check).

Sections are a list of named functions, each returning rows; a failing section becomes an error row,
the others still run, and the exit code is 1. To add one, append `Section(name, fn)` to SECTIONS.
Exit codes: 0 all sections passed, 1 a section failed, 2 no NVIDIA GPU (use --dry-run to exercise
the whole script on CPU at a tiny size).
Usage: PYTHONPATH=. python3 benchmarks/gpu_check.py [--out DIR] [--bundle .gpu-bundle] [--seeds 4] [--dry-run]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_anchor as anchor  # noqa: E402  (after the path set-up)


@dataclass(frozen=True)
class Check:
    """What every section gets: the shared setting, seeds, child environment and output folder."""

    setting: anchor.Setting
    seeds: list[int]
    packed_seeds: list[int]
    packing: int
    env: dict[str, str]
    out: Path
    dry_run: bool
    vectorised_budget_s: float = 150.0
    reproduce_budget_s: float = 150.0
    fair_reps: int = 3


@dataclass(frozen=True)
class Section:
    name: str
    run: Callable[[Check], list[dict]]


def _harness_row(label: str, check: Check, setting: anchor.Setting, seeds: list[int], packing: int) -> dict:
    start = time.perf_counter()
    result = anchor.run_harness(setting, seeds, check.env, runs_per_gpu=packing)
    wall = time.perf_counter() - start
    return {
        "row": label,
        "runs": len(seeds),
        "s_per_run": result["wall_s"],
        "runs_per_hour": len(seeds) * 3600 / wall,
        "in_run_s": result["in_run_s"],
        "peak_mem_mb": result["peak_mem_mb"],
        "score": result["score"],
        "phases": {k: round(result[k], 2) for k in ("data", "model", "tokenize", "train", "eval") if k in result},
    }


def section_harness_one(check: Check) -> list[dict]:
    return [_harness_row("harness, 1 run/GPU", check, check.setting, check.seeds, 1)]


def section_harness_packed(check: Check) -> list[dict]:
    label = f"harness, {check.packing} runs/GPU"
    return [_harness_row(label, check, check.setting, check.packed_seeds, check.packing)]


def section_harness_bf16(check: Check) -> list[dict]:
    setting = replace(check.setting, precision="bf16")
    return [_harness_row("harness bf16, 1 run/GPU", check, setting, check.seeds, 1)]


def _anchor_row(label: str, kind: str, check: Check) -> dict:
    runs = [anchor.run_child(kind, check.setting, seed, check.env) for seed in check.seeds]
    mean = {k: sum(r.get(k, 0.0) for r in runs) / len(runs) for k in runs[0]}
    return {
        "row": label,
        "runs": len(runs),
        "s_per_run": mean["wall_s"],
        "runs_per_hour": 3600 / mean["wall_s"],
        "in_run_s": mean["wall_s"] - mean["imports"],
        "peak_mem_mb": max(r["peak_mem_mb"] for r in runs),
        "score": mean.get("accuracy", float("nan")),
        "phases": {k: round(v, 2) for k, v in mean.items() if k not in ("wall_s", "peak_mem_mb", "accuracy")},
    }


def section_trainer(check: Check) -> list[dict]:
    return [_anchor_row("HF Trainer", "trainer", check)]


def section_bare(check: Check) -> list[dict]:
    return [_anchor_row("bare torch loop", "bare", check)]


def section_group_independence(check: Check) -> list[dict]:
    """A run's metrics in groups of 8 and 64 against the same run trained by the loop, bf16 (group_independence)."""
    import bench_vectorised
    import group_independence as gi

    from harness.storage.records import RunContext

    data_dir = check.env["HARNESS_DATA_DIR"]
    if check.dry_run:  # CPU, fp32: groups of 2 and 4 against the loop must agree up to rounding
        specs = bench_vectorised.bench_specs(check.setting.model, 4, 3, 32, 8, eval_size=32, lr=1e-4)
        ctx = RunContext(data_dir=data_dir, device="cpu", threads=1)
        return gi.check(specs, ctx, (2, 4), 2, gi.FP32_CPU)
    specs = bench_vectorised.bench_specs(check.setting.model, 64, 60, 800, 16, eval_size=400, precision="bf16", lr=1e-4)
    return gi.check(specs, RunContext(data_dir=data_dir, device="cuda"), (8, 64), 8, gi.BF16_GPU)


def section_vectorised(check: Check) -> list[dict]:
    """The fair table: the loop and seed groups through `harness run`, same precision, same runs (vectorised_fair)."""
    import vectorised_fair as fair

    data_dir = check.env["HARNESS_DATA_DIR"]
    if check.dry_run:
        protocol = fair.dry_run(check.setting.model, data_dir)
    else:
        protocol = fair.Protocol(
            check.setting.model, data_dir, reps=check.fair_reps, budget_s=check.vectorised_budget_s
        )
    rows = fair.run_fair(protocol)
    fair.write_table(rows, protocol, check.out)
    return [{k: v for k, v in r.items() if k not in ("scores", "warm_all_s")} for r in rows]


# Paper experiments at their GPU scale, in priority order (papers with no committed report first, cheap
# before dear); each runs while the reproduce budget lasts. Zhang's Table 2 and the survey are not here:
# several of their recipes (intermediate task, R3F, LP-FT, cloze, TAPT) fall back to one run per worker.
REPRODUCE = (
    "experiments/dodge2020/seeds_grid.toml",
    "experiments/dodge2020/early_stopping.toml",
    "experiments/mosbach2021/table1.toml",
    "experiments/zhang2021/reinit_layers.toml",
    "experiments/zhang2021/table1.toml",
    "experiments/zhang2021/bias_correction.toml",
    "experiments/zhang2021/randomness.toml",
    "experiments/mosbach2021/small_data.toml",
)
REPRODUCE_CAP_S = 300.0  # one experiment's most: a slow one must not take the time of all that follow
DRY_RUN_SETS = (  # a tiny CPU version of the same path (seed groups through the command line)
    "seeds=2", "sample_size=40", "eval_size=40", "num_evals=2", "defaults.max_steps=3",
    "schedule.seeds_per_worker=2", "schedule.runs_per_gpu=2",
)  # fmt: skip


def _run_until(cmd: list[str], env: dict[str, str], timeout_s: float) -> tuple[int | None, str, str]:
    """Run `cmd` in its own process group; past `timeout_s` the whole group (driver and workers) is killed.

    Returns (exit code or None when killed, stdout, stderr). Runs finished before the kill are already in
    the store, so a killed experiment still reports what it finished.
    """
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=max(1.0, timeout_s))
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return None, out, err


def section_reproduce(check: Check) -> list[dict]:
    """`harness run --scale gpu` of the paper experiments above; their stores and logs come back as one archive."""
    import tarfile

    results = Path(check.env["HARNESS_RESULTS_DIR"]).parent / "repro-results"  # only the archive goes to out
    results.mkdir(parents=True, exist_ok=True)
    started, rows = time.perf_counter(), []
    check.out.mkdir(parents=True, exist_ok=True)
    for path in REPRODUCE:
        left = min(check.reproduce_budget_s - (time.perf_counter() - started), REPRODUCE_CAP_S)
        if left < 20:
            rows.append({"row": f"reproduce {path}", "error": "skipped: over the reproduce budget"})
            continue
        sets = [f"model={check.setting.model}", *(DRY_RUN_SETS if check.dry_run else ())]
        cmd = [sys.executable, "-m", "harness.cli", "--results", str(results), "run", path, "--scale", "gpu", "--quiet"]
        cmd += [arg for value in sets for arg in ("--set", value)]
        print(f"gpu-check: reproduce {path} ({left:.0f} s left)", flush=True)
        t0 = time.perf_counter()
        code, out, err = _run_until(cmd, {**check.env, "PYTHONPATH": str(ROOT)}, left)
        wall = time.perf_counter() - t0
        (results / f"{Path(path).parent.name}-{Path(path).stem}.log").write_text(
            f"$ {' '.join(cmd)}\n# exit {code}, wall {wall:.1f} s\n{out[-20000:]}\n--- stderr\n{err[-20000:]}"
        )
        summary = (out.strip().splitlines() or ["?"])[-1]
        row = {"row": f"reproduce {path} (scale gpu)", "note": summary[:300], "wall_s": round(wall, 1)}
        if code is None:
            row["error"] = f"stopped at the reproduce budget after {wall:.0f} s; finished runs are kept"
        elif code != 0:
            row["error"] = f"exit {code}: {(err.strip().splitlines() or ['?'])[-1][:300]}"
            print(err[-3000:], file=sys.stderr)
        rows.append(row)
        partial = check.out / ".repro_results.tar.gz.tmp"
        with tarfile.open(partial, "w:gz") as tar:  # after each experiment, renamed whole: never half an archive
            tar.add(results, arcname="repro-results", filter=lambda info: None if "/report" in info.name else info)
        partial.replace(check.out / "repro_results.tar.gz")
    return rows  # a row with "error" fails the check (main) but keeps the other experiments' rows


SECTIONS: list[Section] = [
    Section("harness-1", section_harness_one),
    Section("trainer", section_trainer),
    Section("bare", section_bare),
    Section("harness-packed", section_harness_packed),
    Section("harness-bf16", section_harness_bf16),
    Section("group-independence", section_group_independence),
    Section("vectorised", section_vectorised),
    Section("reproduce", section_reproduce),
]


def upcast_bundle(bundle: Path, dest: Path) -> Path:
    """The bundle's fp16 weights as an fp32 model folder that from_pretrained loads."""
    import torch
    from safetensors.torch import load_file, save_file

    source = bundle / "model"
    if not (source / "model.safetensors").is_file():
        raise SystemExit(f"gpu-check: {source}/model.safetensors is missing; run `make gpu-bundle` and carry {bundle}")
    dest.mkdir(parents=True, exist_ok=True)
    tensors = load_file(str(source / "model.safetensors"))
    full = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in tensors.items()}
    save_file(full, str(dest / "model.safetensors"), metadata={"format": "pt"})
    for path in source.iterdir():
        if path.name != "model.safetensors":
            shutil.copyfile(path, dest / path.name)
    return dest


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)[:300]


def render(rows: list[dict], device: str, total_s: float) -> list[str]:
    trainer = next((r["s_per_run"] for r in rows if r["row"] == "HF Trainer" and "error" not in r), None)
    lines = [
        f"# GPU check: {device}",
        "",
        "| row | runs | s/run | runs/hour | in-run s | peak GPU MB | score | ratio to Trainer | phases (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['row']} | FAILED | - | - | - | - | - | - | {r['error'].splitlines()[0][:200]} |")
            continue
        if not isinstance(r.get("s_per_run"), int | float) or "runs_per_hour" not in r:  # another section's row
            rest = ", ".join(f"{k} {_short(v)}" for k, v in r.items() if k not in ("row", "runs"))
            lines.append(f"| {r['row']} | {r.get('runs', '-')} | - | - | - | - | - | - | {rest} |")
            continue
        ratio = f"{r['s_per_run'] / trainer:.2f}" if trainer else "-"
        phases = ", ".join(f"{k} {v}" for k, v in r.get("phases", {}).items())
        lines.append(
            f"| {r['row']} | {r['runs']} | {r['s_per_run']:.2f} | {r['runs_per_hour']:.0f} | {r['in_run_s']:.2f} | "
            f"{r['peak_mem_mb']:.0f} | {r['score']:.1f} | {ratio} | {phases} |"
        )
    lines += ["", f"Whole check: {total_s:.0f} s. s/run is wall time per run including process start "]
    lines += ["(packed rows: experiment wall / runs); runs/hour = runs x 3600 / section wall."]
    return lines


def write_outputs(out: Path, rows: list[dict], lines: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n")
    (out / "gpu_check.json").write_text(json.dumps(rows, indent=2, default=str))
    keys = ["row", "runs", "s_per_run", "runs_per_hour", "in_run_s", "peak_mem_mb", "score", "error"]
    with open(out / "gpu_check.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("GPU_CHECK_OUT") or str(ROOT / "results" / "gpu-check"))
    parser.add_argument("--bundle", default=str(ROOT / ".gpu-bundle"))
    parser.add_argument("--seeds", type=int, default=4, help="seeds per row (default 4)")
    parser.add_argument("--packing", type=int, default=8, help="runs per GPU in the packed row (default 8)")
    parser.add_argument("--only", help="comma-separated section names (default: all)")
    parser.add_argument("--budget-s", type=float, default=480, help="skip sections once this much time is spent")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny setting: checks the script end to end")
    parser.add_argument("--vectorised-budget-s", type=float, default=150.0, help="time for the vectorised section")
    parser.add_argument("--fair-reps", type=int, default=3, help="warm repetitions per row of the fair table")
    parser.add_argument("--reproduce-budget-s", type=float, default=150.0, help="time for the reproduce section")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print(
            "gpu-check: no NVIDIA GPU visible to torch "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
            "run it on a GPU machine, or pass --dry-run (make gpu-check DRY=1) to exercise it on CPU",
            file=sys.stderr,
        )
        return 2
    bundle = Path(args.bundle)
    tmp = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    caller_data_dir = os.environ.get("HARNESS_DATA_DIR")
    try:
        model_dir = upcast_bundle(bundle, tmp / "model")
        base = anchor.TINY_SETTING if args.dry_run else anchor.GPU_SETTING
        setting = replace(base, model=str(model_dir), device="cpu" if args.dry_run else "cuda")
        env = anchor.child_env(setting)
        env["HARNESS_DATA_DIR"] = str((bundle / "glue").resolve())
        env["HARNESS_RESULTS_DIR"] = str(tmp / "results")
        env["XDG_CACHE_HOME"] = str(tmp / "cache")
        os.environ["HARNESS_DATA_DIR"] = env["HARNESS_DATA_DIR"]  # this process reads the same data
        seeds = list(range(1, (2 if args.dry_run else args.seeds) + 1))
        packing = 2 if args.dry_run else args.packing
        check = Check(
            setting, seeds, list(range(1, packing + 1)), packing, env, Path(args.out), args.dry_run,
            args.vectorised_budget_s, args.reproduce_budget_s, args.fair_reps,
        )  # fmt: skip
        wanted = set(args.only.split(",")) if args.only else None
        rows: list[dict] = []
        failed = False
        for section in SECTIONS:
            if wanted and section.name not in wanted:
                continue
            t0 = time.perf_counter()
            if t0 - started > args.budget_s:
                failed = True
                why = f"skipped: the check passed its {args.budget_s:.0f} s budget"
                rows.append({"row": section.name, "error": why})
                continue
            print(f"gpu-check: {section.name} ...", flush=True)
            try:
                got = section.run(check)
            except Exception as exc:  # one failing section must not hide the others
                failed = True
                text = f"{type(exc).__name__}: {exc}"
                print(f"gpu-check: {section.name} FAILED: {text}\n{traceback.format_exc()}", file=sys.stderr)
                got = [{"row": section.name, "error": text}]
            failed = failed or any("error" in row for row in got)
            print(f"gpu-check: {section.name} took {time.perf_counter() - t0:.0f} s", flush=True)
            rows.extend(got)
            write_outputs(Path(args.out), rows, render(rows, "partial", time.perf_counter() - started))
        device = torch.cuda.get_device_name(0) if not args.dry_run else "CPU dry run (tiny setting)"
        lines = render(rows, f"{device}; torch {torch.__version__}", time.perf_counter() - started)
        write_outputs(Path(args.out), rows, lines)
        print("\n".join(lines))
        return 1 if failed else 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if caller_data_dir is None:  # the caller's environment as it was (main() also runs inside tests)
            os.environ.pop("HARNESS_DATA_DIR", None)
        else:
            os.environ["HARNESS_DATA_DIR"] = caller_data_dir


if __name__ == "__main__":
    sys.exit(main())
