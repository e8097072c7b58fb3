"""Write a committed reproduction report: `harness report` of a store, headed by how it was made.

A reader of docs/reproductions/ must see, before any number, the command that regenerates the report,
the scale, the model, the wall time and the machine. The wall time and the machine come from the store
itself (its runs' provenance) and from the run's log, never typed by hand.

Usage: python benchmarks/publish_reproduction.py --results DIR --experiment FILE --scale gpu \
           --out docs/reproductions/<paper>/<name> [--log FILE] [--model-note TEXT]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.report.provenance import provenances, specs  # noqa: E402  (after the path set-up)


def machine_of(runs: pd.DataFrame) -> str:
    """The device, torch and transformers the runs name in their provenance (the most common one)."""
    seen: Counter[str] = Counter()
    for prov in provenances(runs):
        name = prov.get("device_name") or prov.get("device") or "?"
        if prov.get("device") == "cpu":
            name = f"{name} CPU, {prov.get('threads', '?')} thread(s) per run"
        seen[f"{name} (torch {prov.get('torch', '?')}, transformers {prov.get('transformers', '?')})"] += 1
    return seen.most_common(1)[0][0] if seen else "unknown"


def wall_of(log: Path | None, runs: pd.DataFrame, planned: int | None) -> str:
    """The experiment's wall time from its log, else the sum of run times (an upper bound).

    A run stopped at its time budget says so, with how many of the planned runs finished.
    """
    text = log.read_text() if log is not None and log.is_file() else ""
    if found := re.search(r"(\d+) run\(s\) in ([0-9.]+) s on \w+ \((\d+) slot", text):
        trained, wall, slots = int(found.group(1)), float(found.group(2)), found.group(3)
        reused = re.search(r"(\d+) reused from other experiments", text)
        extra = f" ({reused.group(1)} more reused from other experiments)" if reused and int(reused.group(1)) else ""
        return f"{wall:,.0f} s for {trained} runs on {slots} worker slots{extra}"
    if found := re.search(r"# exit None, wall ([0-9.]+) s", text):
        return (
            f"stopped when the machine's time ran out, after {float(found.group(1)):,.0f} s: "
            f"{len(runs)} of the {planned or '?'} planned runs finished (the others are not in this report)"
        )
    return f"{runs['wall_time_s'].sum():,.0f} s of summed run time for {len(runs)} runs"


def seeds_per_arm(runs: pd.DataFrame) -> str:
    counts = runs.groupby(["task", "recipe"]).size()
    low, high = int(counts.min()), int(counts.max())
    return f"{low}" if low == high else f"{low}-{high}"


def header(args: argparse.Namespace, runs: pd.DataFrame, name: str, planned: int | None) -> str:
    spec = specs(runs)[0]
    sizes = sorted({int(s) for s in runs["sample_size"].dropna()})
    tasks = ", ".join(sorted(runs["task"].unique()))
    lines = [
        f"Regenerate: `harness run {args.experiment} --scale {args.scale}` then "
        f"`harness report {name} --scale {args.scale}`.",
        f"Scale `{args.scale}`: tasks {tasks}; {', '.join(map(str, sizes))} training examples; "
        f"max length {spec.get('max_seq_length', '?')}; {seeds_per_arm(runs)} seeds per arm.",
        f"Model: {args.model_note or runs['model'].iloc[0]}.",
        f"Wall time: {wall_of(args.log, runs, planned)}.",
        f"Machine: {machine_of(runs)}.",
    ]
    return "\n".join(f"> - {line}" for line in lines) + "\n\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", required=True, help="the results folder that holds the experiment's store")
    parser.add_argument("--experiment", required=True, help="the experiment file, as a user would run it")
    parser.add_argument("--scale", required=True)
    parser.add_argument("--out", required=True, help="docs/reproductions/<paper>/<name>")
    parser.add_argument("--log", type=Path, help="the run's log (its last line gives the wall time)")
    parser.add_argument("--model-note", default="", help="how to name the model in the header")
    parser.add_argument(
        "--model-label", default="", help="a name to print instead of the model folder the runs used (a temp path)"
    )
    args = parser.parse_args(argv)

    name = tomllib.loads(Path(args.experiment).read_text())["name"]
    store = Path(args.results) / name
    runs = pd.read_parquet(store / "runs")
    out = Path(args.out)
    scratch = out.parent / f".{out.name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    cmd = [sys.executable, "-m", "harness.cli", "--results", args.results, "report", name, "--scale", args.scale]
    done = subprocess.run([*cmd, "--out", str(scratch)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    report = scratch / "report.md"
    planned = json.loads((store / "experiment.json").read_text()).get("runs")
    body = report.read_text()
    if args.model_label:  # e.g. the GPU check's temporary upcast folder, meaningless to a reader
        body = body.replace(str(runs["model"].iloc[0]), args.model_label)
    report.write_text(header(args, runs, name, planned) + body)
    for derived in ("analysis", "report.html"):  # tables of run data and a second copy: not committed
        target = scratch / derived
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    scratch.replace(out)
    print(f"wrote {out}/report.md ({len(runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
