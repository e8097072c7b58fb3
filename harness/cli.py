"""`harness run|status|analyze|report|reproduce|bench`: the command line over the library.

Experiments are named by their TOML file; `analyze` and `report` also take the
experiment's name and then read only the store under results/<name>/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

from harness.config import ConfigError, ExperimentSpec, load_experiment

EXPERIMENTS_DIR = Path("experiments")
SPEC_COPY = "experiment.toml"
SPEC_META = "experiment.json"


class CliError(RuntimeError):
    pass


def _results_root(args: argparse.Namespace) -> Path:
    return Path(args.results or os.environ.get("HARNESS_RESULTS_DIR", "results"))


def _load(path: str, scale: str | None) -> ExperimentSpec:
    return load_experiment(path, scale=scale)


def _remember_spec(experiment: ExperimentSpec, exp_dir: Path, scale: str | None) -> None:
    """Keep the experiment file beside its results, so analysis and reports need only the folder."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(experiment.source, exp_dir / SPEC_COPY)
    meta = {"source": experiment.source, "scale": scale, "runs": len(experiment.runs)}
    (exp_dir / SPEC_META).write_text(json.dumps(meta, indent=2))


def resolve_experiment_dir(ref: str, results_root: Path) -> tuple[Path, ExperimentSpec | None]:
    """An experiment given as a TOML path or as a name under the results root."""
    if ref.endswith(".toml"):
        spec_path = Path(ref)
        if not spec_path.is_file():
            raise CliError(f"experiment file {ref} does not exist")
        try:
            name = tomllib.loads(spec_path.read_text())["name"]
        except (tomllib.TOMLDecodeError, KeyError) as exc:
            raise CliError(f"{ref}: cannot read the experiment name ({exc})") from None
        exp_dir = results_root / name
    else:
        exp_dir = results_root / ref
    if not (exp_dir / "runs").is_dir():
        raise CliError(f"no stored runs under {exp_dir}; run `harness run <experiment.toml>` first")
    stored = exp_dir / SPEC_COPY
    spec = None
    if stored.is_file():
        meta = json.loads((exp_dir / SPEC_META).read_text()) if (exp_dir / SPEC_META).is_file() else {}
        spec = load_experiment(stored, scale=meta.get("scale"))
    return exp_dir, spec


def preflight(experiment: ExperimentSpec, data_dir: str | None) -> None:
    """Fail before any run starts when a model or a data file is missing, instead of N failed runs."""
    from harness.data import load_split
    from harness.models import resolve_model

    for model in dict.fromkeys(r.model for r in experiment.runs):
        resolve_model(model)
    tasks = {r.task: r.task_def for r in experiment.runs}
    tasks |= {
        r.recipe.intermediate_task: r.recipe.intermediate_task for r in experiment.runs if r.recipe.intermediate_task
    }
    for task in tasks.values():
        for split in ("train", "dev"):
            load_split(task, split, data_dir)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.schedule import run_experiment

    experiment = _load(args.experiment, args.scale)
    preflight(experiment, args.data_dir or experiment.data_dir)
    root = _results_root(args)
    _remember_spec(experiment, root / experiment.name, args.scale)
    if experiment.adaptive is not None:  # seeds added in steps until the budget's rule stops them
        from harness.schedule.adaptive import run_adaptive

        run_experiment = run_adaptive  # type: ignore[assignment]
    summary = run_experiment(
        experiment,
        root,
        backend=args.backend,
        data_dir=args.data_dir or experiment.data_dir,
        max_workers=args.workers,
        progress=not args.quiet,
        ray_address=args.ray_address,
    )
    print(summary)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from harness.schedule import experiment_status, format_status

    experiment = _load(args.experiment, args.scale)
    print(format_status(experiment_status(experiment, _results_root(args))))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from harness.analysis import analyze_experiment, format_summary

    exp_dir, spec = resolve_experiment_dir(args.experiment, _results_root(args))
    thresholds = dict(spec.degenerate_threshold) if spec else None
    baseline = args.baseline or (spec.recipes[0] if spec else None)
    tables = analyze_experiment(exp_dir, thresholds=thresholds, baseline=baseline)
    print(format_summary(tables["summary"]))
    print(f"\nanalysis tables written to {exp_dir / 'analysis'}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import compare_report, write_report

    root = _results_root(args)
    if args.compare:
        a, b = (resolve_experiment_dir(ref, root) for ref in args.compare)
        out = compare_report(a[0], b[0], spec_a=a[1], spec_b=b[1], out_dir=args.out)
    else:
        if not args.experiment:
            raise CliError("give an experiment (TOML path or name), or --compare A B")
        exp_dir, spec = resolve_experiment_dir(args.experiment, root)
        out = write_report(exp_dir, spec=spec, baseline=args.baseline)
    print(f"report written to {out}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    folder = EXPERIMENTS_DIR / args.paper
    files = sorted(folder.glob("*.toml"))
    if not files:
        known = sorted(p.name for p in EXPERIMENTS_DIR.iterdir() if p.is_dir()) if EXPERIMENTS_DIR.is_dir() else []
        raise CliError(f"no experiment files under {folder}; papers: {', '.join(known)}")
    for path in files:
        print(f"== {path} (scale {args.scale})", flush=True)
        run_args = argparse.Namespace(**{**vars(args), "experiment": str(path)})
        cmd_run(run_args)
        report_args = argparse.Namespace(**{**vars(args), "experiment": str(path), "compare": None, "out": None})
        cmd_report(report_args)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    scripts = sorted(Path("benchmarks").glob("bench_*.py"))
    if not scripts:
        raise CliError("no benchmarks/bench_*.py found (run from the repository root)")
    for script in scripts:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument("--results", help="results root (default: $HARNESS_RESULTS_DIR or ./results)")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_experiment(p: argparse.ArgumentParser) -> None:
        p.add_argument("experiment", help="experiment TOML file")
        p.add_argument("--scale", help="apply the [scale.<name>] section (e.g. cpu, paper)")

    run = sub.add_parser("run", help="run every seeded run not yet stored (resumable)")
    with_experiment(run)
    run.add_argument("--backend", choices=["local", "ray"], help="override the experiment's backend")
    run.add_argument("--data-dir", help="GLUE data folder (default: $HARNESS_DATA_DIR, else the hub)")
    run.add_argument("--workers", type=int, help="parallel runs (default: GPUs x runs_per_gpu, or CPU slots)")
    run.add_argument("--ray-address", help="Ray cluster address (default: start a local one)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="done / failed / diverged / stopped / pending per recipe")
    with_experiment(status)
    status.set_defaults(func=cmd_status)

    analyze = sub.add_parser("analyze", help="statistics from the store -> results/<name>/analysis/")
    analyze.add_argument("experiment", help="experiment TOML file or name")
    analyze.add_argument("--baseline", help="recipe every other recipe is compared with (default: the first)")
    analyze.set_defaults(func=cmd_analyze)

    report = sub.add_parser("report", help="Markdown + HTML report with plots -> results/<name>/report/")
    report.add_argument("experiment", nargs="?", help="experiment TOML file or name")
    report.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two experiments")
    report.add_argument("--baseline", help="recipe every other recipe is compared with (default: the first)")
    report.add_argument("--out", help="output folder for --compare")
    report.set_defaults(func=cmd_report)

    reproduce = sub.add_parser("reproduce", help="run and report every experiment of a paper")
    reproduce.add_argument("paper", help="folder under experiments/, e.g. zhang2021")
    reproduce.add_argument("--scale", default="cpu", help="cpu (default) or paper")
    reproduce.add_argument("--backend", choices=["local", "ray"])
    reproduce.add_argument("--data-dir")
    reproduce.add_argument("--workers", type=int)
    reproduce.add_argument("--ray-address")
    reproduce.add_argument("--quiet", action="store_true")
    reproduce.add_argument("--baseline")
    reproduce.set_defaults(func=cmd_reproduce)

    bench = sub.add_parser("bench", help="run the benchmarks (tables under results/bench/)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.data import DataError
    from harness.models import ModelError
    from harness.store import StoreError

    known: tuple[type[Exception], ...] = (ConfigError, DataError, ModelError, StoreError, CliError)
    try:
        from harness.schedule import ExperimentLocked

        known = (*known, ExperimentLocked)
    except ImportError:
        pass
    try:
        return args.func(args)
    except known as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are stored; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
