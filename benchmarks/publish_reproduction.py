"""Write a committed reproduction report: `harness report` of a store, headed by how it was made.

A reader of docs/reproductions/ must see, before any number, the command that regenerates exactly the
report's runs (checked: its planned run ids are the store's), the scale, the model, the code state of
the store (one commit or several, clean or `+dirty`), the wall time and the machine. All of it comes from
the store itself (its runs' provenance and experiment.json) and from the run's log, never typed by hand.
Beside report.md and its figures the folder keeps verdicts.csv (one row per claim), from which
`--paper-forest` draws the forest plot of every claim of a paper.

Usage: python benchmarks/publish_reproduction.py --results DIR --experiment FILE --scale gpu \
           --out docs/reproductions/<paper>/<name> [--log FILE] [--model-note TEXT] [--with early-stopping]
       python benchmarks/publish_reproduction.py --paper-forest docs/reproductions/<paper>
"""

from __future__ import annotations

import argparse
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

from harness.report.folder import MANIFEST  # noqa: E402
from harness.report.provenance import code_state, model_description, provenances, repo_path, specs  # noqa: E402  (after the path set-up)
from harness.report.regenerate import Regenerate, regenerate  # noqa: E402
from harness.report.summary import VERDICTS_CSV  # noqa: E402
from harness.report.tables import md_table  # noqa: E402
from harness.storage.scope import read_meta, recorded_data_dir, recorded_run_ids  # noqa: E402

FILE_NOTES = {".md": "this report", ".png": "a figure of the report", ".csv": "the verdict per claim, as a table"}
MANIFEST_NOTE = "the files the report wrote (a later report replaces only these, never a file of yours)"


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


def regenerate_line(regen: Regenerate | str, name: str, scale: str, include: list[str] | None = None) -> str:
    """The header's first line: the command, and whether it plans exactly the report's runs."""
    if isinstance(regen, str):  # the experiment could not be planned here (e.g. a model folder of another machine)
        return f"Regenerate: not checked here ({regen})."
    report = f"`harness report {name} --scale {scale}{''.join(f' --with {w}' for w in include or [])}`"
    if regen.exact:
        return f"Regenerate: `{regen.command()}` then {report} (plans exactly the {regen.stored} runs of this report)."
    return (
        f"Regenerate: `{regen.command()}` then {report}. It plans {regen.planned} runs; this report has "
        f"{regen.stored}, and no restriction of the file plans exactly them."
    )


def header(
    args: argparse.Namespace, runs: pd.DataFrame, name: str, planned: int | None, regen: Regenerate | str
) -> str:
    spec = specs(runs)[0]
    sizes = sorted({int(s) for s in runs["sample_size"].dropna()})
    tasks = ", ".join(sorted(runs["task"].unique()))
    lines = [
        regenerate_line(regen, name, args.scale, args.include),
        f"Scale `{args.scale}`: tasks {tasks}; {', '.join(map(str, sizes)) or 'all'} training examples; "
        f"max length {spec.get('max_seq_length', '?')}; {seeds_per_arm(runs)} seeds per arm.",
        f"Model: {args.model_note or model_description(runs)}.",
        f"Code: {code_state(runs)}.",
        f"Wall time: {wall_of(args.log, runs, planned)}.",
        f"Machine: {machine_of(runs)}.",
    ]
    return "\n".join(f"> - {line}" for line in lines) + "\n\n"


def files_table(folder: Path) -> str:
    """The report's "Files" section listing what the folder holds once published (nothing deleted is named)."""
    notes = {**{p.name: FILE_NOTES.get(p.suffix, "") for p in folder.iterdir()}, MANIFEST: MANIFEST_NOTE}
    rows = [[f"`{p.name}`", notes[p.name]] for p in sorted(folder.iterdir()) if p.is_file()]
    return "## Files\n\n" + md_table(["file", "content"], rows, "ll") + "\n"


def with_files(body: str, folder: Path) -> str:
    head, sep, _ = body.partition("\n## Files\n")
    return (head + "\n" if sep else body.rstrip("\n") + "\n\n") + files_table(folder)


def scoped_runs(store: Path, scale: str) -> pd.DataFrame:
    """The stored runs of `scale` (those `harness run` recorded for it), not every run in the folder."""
    runs = pd.read_parquet(store / "runs")
    recorded = recorded_run_ids(store, scale)
    return runs if recorded is None else runs[runs["run_id"].isin(recorded)].reset_index(drop=True)


def plan(args: argparse.Namespace, store: Path, runs: pd.DataFrame) -> Regenerate | str:
    """The regenerate command for the store's runs, or why it cannot be planned on this machine."""
    overrides = read_meta(store).get("overrides") or {}
    model = overrides.get("model")
    if isinstance(model, str) and Path(model).is_absolute() and not Path(model).exists():
        return f"the runs' model folder {repo_path(model)} is not on this machine, so their ids cannot be planned here"
    try:
        return regenerate(
            ROOT / args.experiment if not Path(args.experiment).is_absolute() else args.experiment,
            args.scale,
            set(runs["run_id"].astype(str)),
            overrides=overrides,
            data_dir=recorded_data_dir(store, args.scale),
            shown_as=repo_path(args.experiment),
        )
    except (ValueError, OSError) as exc:  # ConfigError is a ValueError
        return str(exc).splitlines()[0][:200]


def publish(args: argparse.Namespace) -> int:
    name = tomllib.loads(Path(args.experiment).read_text())["name"]
    store = Path(args.results) / name
    runs = scoped_runs(store, args.scale)
    regen = plan(args, store, runs)
    if isinstance(regen, str) or not regen.exact:
        print(f"warning: {regenerate_line(regen, name, args.scale, args.include)}", file=sys.stderr)
    out = Path(args.out)
    scratch = out.parent / f".{out.name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    # The file when it plans exactly the stored runs, so the paper's setting and claims are read as the file
    # declares them now (they describe the paper, not the runs); else the store's copy of what ran.
    reported = str(args.experiment) if isinstance(regen, Regenerate) and regen.exact else name
    cmd = [sys.executable, "-m", "harness.cli", "--results", args.results, "report", reported, "--scale", args.scale]
    cmd += [part for section in args.include for part in ("--with", section)]
    done = subprocess.run([*cmd, "--out", str(scratch)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-3000:], file=sys.stderr)
        return done.returncode
    report = scratch / "report.md"
    planned = regen.planned if isinstance(regen, Regenerate) else read_meta(store).get("runs")
    body = report.read_text()
    if args.model_label:  # e.g. the GPU check's temporary upcast folder, meaningless to a reader
        body = body.replace(str(runs["model"].iloc[0]), args.model_label)
    for derived in ("analysis", "report.html"):  # tables of run data and a second copy: not committed
        target = scratch / derived
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    report.write_text(header(args, runs, name, planned, regen) + with_files(body, scratch))
    shutil.rmtree(out, ignore_errors=True)
    scratch.replace(out)
    print(f"wrote {out}/report.md ({len(runs)} runs)")
    return 0


def paper_forest(folder: Path) -> int:
    """forest.png of every claim of a paper from its reports' verdicts.csv (no store needed)."""
    from harness.report.forest import paper_forest as draw

    frames = {p.parent.name: pd.read_csv(p) for p in sorted(folder.glob(f"*/{VERDICTS_CSV}"))}
    if not frames:
        print(f"error: no */{VERDICTS_CSV} under {folder}: publish the reports first", file=sys.stderr)
        return 2
    path = draw(frames, folder / "forest.png", title=f"{folder.name}: every claim, ours beside the paper's")
    print(f"wrote {path} ({sum(len(f) for f in frames.values())} claims from {len(frames)} reports)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-forest", type=Path, help="docs/reproductions/<paper>: draw its forest.png and stop")
    parser.add_argument("--results", help="the results folder that holds the experiment's store")
    parser.add_argument("--experiment", help="the experiment file, as a user would run it")
    parser.add_argument("--scale")
    parser.add_argument("--out", help="docs/reproductions/<paper>/<name>")
    parser.add_argument("--log", type=Path, help="the run's log (its last line gives the wall time)")
    parser.add_argument(
        "--with", dest="include", action="append", default=[], help="an optional section of `harness report`"
    )
    parser.add_argument("--model-note", default="", help="how to name the model in the header")
    parser.add_argument(
        "--model-label", default="", help="a name to print instead of the model folder the runs used (a temp path)"
    )
    args = parser.parse_args(argv)
    if args.paper_forest is not None:
        return paper_forest(args.paper_forest)
    missing = [f"--{k}" for k in ("results", "experiment", "scale", "out") if not getattr(args, k)]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or give --paper-forest)")
    return publish(args)


if __name__ == "__main__":
    sys.exit(main())
