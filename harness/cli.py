"""`harness run|status|analyze|report|reproduce|import|export|bench`: the command line over the library.

Experiments are named by their TOML file; `analyze` and `report` also take the
experiment's name and then read only the store under results/<name>/.
"""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
import tomllib
import warnings
from collections.abc import Sequence
from pathlib import Path

from harness.experiment.config import ConfigError, ExperimentSpec, load_experiment
from harness.experiment.names import folder_name_problem
from harness.experiment.overrides import parse_assignments
from harness.storage.scope import (
    SPEC_COPY,
    read_meta,
    recorded_data_dir,
    recorded_run_ids,
    refuse_unfinished_import,
    remember_spec,
    stored_spec,
)

EXPERIMENTS_DIR = Path("experiments")


class CliError(RuntimeError):
    pass


def _results_root(args: argparse.Namespace) -> Path:
    root = Path(args.results or os.environ.get("HARNESS_RESULTS_DIR", "results"))
    if root.exists() and not root.is_dir():
        env = os.environ.get("HARNESS_RESULTS_DIR")
        source = "--results" if args.results else "$HARNESS_RESULTS_DIR" if env else ""
        raise CliError(f"results root {root} {f'(from {source}) ' if source else ''}is a file; give a folder")
    return root


def _load(
    path: str, scale: str | None, data_dir: str | None = None, assignments: Sequence[str] | None = None
) -> ExperimentSpec:
    return load_experiment(path, scale=scale, data_dir=data_dir, overrides=parse_assignments(assignments or ()))


def experiment_folder(results_root: Path, name: object, where: str = "experiment name") -> Path:
    """results_root/<name>, for every command: a name that is not one plain folder inside the root is refused."""
    problem = folder_name_problem(name)
    if problem:  # a plain name cannot leave the root (an experiment folder that is a symlink stays allowed)
        raise CliError(
            f"{where} {str(name)[:120]!r} is not a plain folder name under the results root {results_root}: "
            f"it {problem}; use letters, digits, '-', '_' (no '/', '..' or absolute paths)"
        )
    return results_root / name  # type: ignore[operator]


def resolve_experiment_dir(
    ref: str, results_root: Path, scale: str | None = None, data_dir: str | None = None
) -> tuple[Path, ExperimentSpec | None]:
    """An experiment given as a TOML path (that file) or as a name under the results root (its stored copy),
    at `scale` (default: the scale of the last `harness run`)."""
    if ref.endswith(".toml"):
        spec_path = Path(ref)
        if not spec_path.is_file():
            raise CliError(f"experiment file {ref} does not exist")
        try:
            name = tomllib.loads(spec_path.read_text())["name"]
        except (tomllib.TOMLDecodeError, KeyError, UnicodeDecodeError) as exc:
            raise CliError(f"{ref}: cannot read the experiment name ({exc})") from None
        exp_dir = experiment_folder(results_root, name, f"{ref}: 'name'")
    else:
        exp_dir = experiment_folder(results_root, ref)
    refuse_unfinished_import(exp_dir, read_meta(exp_dir))  # a damaged record, or an import cut short, in one line
    if not (exp_dir / "runs").is_dir() or not any((exp_dir / "runs").glob("*.parquet")):
        raise CliError(f"no stored runs under {exp_dir}; run `harness run <experiment.toml>` first")
    if not ref.endswith(".toml"):
        return exp_dir, stored_spec(exp_dir, scale)
    scale = scale or read_meta(exp_dir).get("scale")
    return exp_dir, load_experiment(ref, scale=scale, data_dir=data_dir or recorded_data_dir(exp_dir, scale))


def runs_data_dir(args: argparse.Namespace, exp_dir: Path, spec: ExperimentSpec | None) -> str | None:
    """The data folder the stored runs read (--data-dir, the file's, else the one `harness run` recorded), so the
    gold labels of the per-example tables never depend on the reader's $HARNESS_DATA_DIR."""
    return args.data_dir or (spec.data_dir if spec else None) or recorded_data_dir(exp_dir, args.scale)


def scoped_run_ids(
    args: argparse.Namespace, exp_dir: Path, spec: ExperimentSpec | None, ref: str = ""
) -> frozenset[str] | None:
    """The run ids a table uses: the given TOML's, else those recorded for the scale; None (all) with --all."""
    ref = ref or args.experiment
    if getattr(args, "all", False):
        return None
    if ref.endswith(".toml") and spec is not None and "imported" not in read_meta(exp_dir):
        return frozenset(r.run_id for r in spec.runs)
    return recorded_run_ids(exp_dir, getattr(args, "scale", None))  # None: a folder from before run ids were kept


def _say_others(exp_dir: Path, run_ids: frozenset[str] | None) -> None:
    from harness.storage.store import stored_run_ids

    others = len(stored_run_ids(exp_dir) - run_ids) if run_ids is not None else 0
    if others:
        print(f"{others} other run(s) in the folder are not this spec's (another scale or an edited spec); "
              f"--all includes them")  # fmt: skip


def _say_driver(exp_dir: Path) -> None:
    """analyze/report while `harness run` is still running: its pending runs are not in the tables yet."""
    from harness.schedule.lock import is_locked

    holder = is_locked(exp_dir)
    if holder:
        who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
        print(f"note: a driver is running {exp_dir.name} now ({who}); the runs it has not stored yet are not in "
              "these tables: run this again when it finishes", file=sys.stderr)  # fmt: skip


def preflight(experiment: ExperimentSpec, data_dir: str | None) -> None:
    """Fail before any run starts when a model or a data file is missing, instead of N failed runs."""
    from harness.preflight import preflight_checks

    for note in preflight_checks(experiment, data_dir):
        print(f"note: {note}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise CliError(f"--workers {args.workers}: give at least 1 (runs in parallel), or omit it for one per slot")
    experiment = _load(args.experiment, args.scale, args.data_dir, getattr(args, "set", None))  # before torch
    if getattr(args, "dry_run", False):
        return dry_run(args, experiment)
    if (args.backend or experiment.schedule.backend) == "local":
        from harness.schedule.local import prewarm

        prewarm("harness.training.pipeline:train_run")  # the workers' imports run while the driver checks files
    from harness.schedule import run_experiment

    root = _results_root(args)
    exp_dir = experiment_folder(root, experiment.name, f"{args.experiment}: 'name'")
    _refuse_imported(exp_dir)
    preflight(experiment, args.data_dir or experiment.data_dir)
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
        ray_address=args.ray_address or os.environ.get("RAY_ADDRESS") or None,
        on_locked=lambda: remember_spec(
            experiment, exp_dir, args.scale, args.data_dir, parse_assignments(getattr(args, "set", None) or ())
        ),
        retry_failed=getattr(args, "retry_failed", False),
    )
    print(summary)
    if summary.failed:
        print(
            f"error: {summary.failed} run(s) failed; `harness status {args.experiment}` counts them and the "
            "store's `error` column says why. Fix the cause and run the same command again to retry them.",
            file=sys.stderr,
        )
        return 1
    return 0


def dry_run(args: argparse.Namespace, experiment: ExperimentSpec) -> int:
    """`harness run --dry-run`: the plan (harness/schedule/plan.py) and every check a run makes first, without
    training or importing torch; exit 0 when it would run, else 2 with the first problem as one line."""
    from harness.preflight import preflight_checks
    from harness.schedule.plan import format_plan, plan_run

    root = _results_root(args)
    exp_dir = experiment_folder(root, experiment.name, f"{args.experiment}: 'name'")
    checks: list[tuple[str, str]] = [("experiment file", f"{len(experiment.runs)} run(s) of {experiment.source}")]
    problems = []
    try:
        _refuse_imported(exp_dir)
        preflight_checks(
            experiment, args.data_dir or experiment.data_dir, lambda name, found: checks.append((name, found))
        )
    except Exception as exc:
        if not isinstance(exc, _known_errors()):
            raise
        problems.append(str(exc))
    plan = plan_run(
        experiment, root, backend=args.backend, max_workers=args.workers,
        retry_failed=getattr(args, "retry_failed", False), checks=checks, problems=problems,
    )  # fmt: skip
    print(format_plan(plan))
    if plan.problems:
        print(f"error: {plan.problems[0]}", file=sys.stderr)
        return 2
    return 0


def _refuse_imported(exp_dir: Path) -> None:
    from harness.importer import is_imported

    if is_imported(exp_dir):
        raise CliError(f"{exp_dir} holds imported runs (harness import); there is nothing to run: use another name")


def cmd_import(args: argparse.Namespace) -> int:
    from harness.importer import ImportOptions, import_runs, parse_assignments

    thresholds = parse_assignments(args.threshold or [], "--threshold")
    try:
        bars = {task: float(value) for task, value in thresholds.items()}
    except ValueError:
        raise CliError(f"--threshold {thresholds}: each value must be a number (x100), e.g. rte=52.7") from None
    options = ImportOptions(
        name=args.name,
        mapping=parse_assignments(args.map or [], "--map"),
        select=args.select,
        missing=args.missing,
        thresholds=bars,
        model=args.model,
        metric=args.metric,
        score_scale=args.score_scale,
        curves=args.curves,
        paper=args.paper,
        data_dir=args.data_dir,
    )
    print(import_runs(args.file, _results_root(args), options))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from harness.storage.export import ExportError, export_runs

    exp_dir, _ = resolve_experiment_dir(args.experiment, _results_root(args))
    try:
        path, table = export_runs(exp_dir, args.format, args.out, replace=args.force)
    except ExportError as exc:
        raise CliError(str(exc)) from None
    print(f"{len(table)} run(s), {len(table.columns)} column(s) written to {path}")
    print("columns: " + ", ".join(table.columns))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from harness.importer import imported_status, is_imported
    from harness.schedule import experiment_status, format_status

    root = _results_root(args)
    if not args.experiment.endswith(".toml"):  # a name under the results root
        named = experiment_folder(root, args.experiment)
        refuse_unfinished_import(named, read_meta(named))
        args.experiment = str(named / SPEC_COPY)
    experiment = _load(args.experiment, args.scale, args.data_dir, getattr(args, "set", None))
    exp_dir = experiment_folder(root, experiment.name, f"{args.experiment}: 'name'")
    if is_imported(exp_dir):
        print(format_status(imported_status(exp_dir)))
        return 0
    recorded = recorded_data_dir(exp_dir, args.scale)
    if args.data_dir is None and recorded:  # identify the runs with the data folder `harness run` used
        experiment = _load(args.experiment, args.scale, recorded, getattr(args, "set", None))
    print(format_status(experiment_status(experiment, root)))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    from harness.analysis import format_claims, format_summary, load_or_analyze
    from harness.analysis.terminal import in_experiment_order

    exp_dir, spec = resolve_experiment_dir(args.experiment, _results_root(args), args.scale, args.data_dir)
    thresholds = dict(spec.degenerate_threshold) if spec else None
    baseline = args.baseline or (spec.recipes[0] if spec else None)
    out = Path(args.out) if args.out else None
    run_ids = scoped_run_ids(args, exp_dir, spec)
    analysis = load_or_analyze(
        exp_dir, thresholds=thresholds, baseline=baseline, out_dir=out, run_ids=run_ids,
        data_dir=runs_data_dir(args, exp_dir, spec), reuse=not args.recompute,
        paper=spec.paper if spec else None, adaptive=spec.adaptive if spec else None,
    )  # fmt: skip
    tasks, recipes = (spec.tasks, spec.recipes) if spec else ((), ())
    print(format_summary(in_experiment_order(analysis.tables["summary"], tasks, recipes)))
    verdicts = analysis.tables.get("verdicts")
    if verdicts is not None and len(verdicts):
        print("\n" + format_claims(verdicts))
    _say_others(exp_dir, run_ids)
    _say_driver(exp_dir)
    if analysis.reused:
        print(f"\nanalysis tables in {analysis.folder} are current (the store has not changed since they were written; "
              "--recompute recomputes them)")  # fmt: skip
    else:
        print(f"\nanalysis tables written to {analysis.folder}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import ReportError, compare_report, write_report

    root = _results_root(args)
    try:
        if args.compare:
            a, b = (resolve_experiment_dir(ref, root, args.scale, args.data_dir) for ref in args.compare)
            ids_a, ids_b = (scoped_run_ids(args, d, s, ref) for (d, s), ref in zip((a, b), args.compare, strict=True))
            out = compare_report(
                a[0], b[0], spec_a=a[1], spec_b=b[1], out_dir=args.out, run_ids_a=ids_a, run_ids_b=ids_b
            )
        else:
            if not args.experiment:
                raise CliError("give an experiment (TOML path or name), or --compare A B")
            exp_dir, spec = resolve_experiment_dir(args.experiment, root, getattr(args, "scale", None), args.data_dir)
            run_ids = scoped_run_ids(args, exp_dir, spec)
            out = write_report(
                exp_dir, spec=spec, baseline=args.baseline, out_dir=args.out, run_ids=run_ids,
                include=getattr(args, "include", None) or (), data_dir=runs_data_dir(args, exp_dir, spec),
            )  # fmt: skip
            _say_driver(exp_dir)
    except ReportError as exc:
        raise CliError(str(exc)) from None
    print(f"report written to {out}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    folder = EXPERIMENTS_DIR / args.paper
    files = sorted(folder.glob("*.toml"))
    if not files:
        known = sorted(p.name for p in EXPERIMENTS_DIR.iterdir() if p.is_dir()) if EXPERIMENTS_DIR.is_dir() else []
        raise CliError(f"no experiment files under {folder}; papers: {', '.join(known)}")
    failed = 0
    for path in files:
        print(f"== {path} (scale {args.scale})", flush=True)
        run_args = argparse.Namespace(**{**vars(args), "experiment": str(path)})
        failed = cmd_run(run_args) or failed
        report_args = argparse.Namespace(**{**vars(args), "experiment": str(path), "compare": None, "out": None})
        cmd_report(report_args)
    return failed


def cmd_bench(args: argparse.Namespace) -> int:
    scripts = sorted(Path("benchmarks").glob("bench_*.py"))
    if not scripts:
        raise CliError("no benchmarks/bench_*.py found (run from the repository root)")
    for script in scripts:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(script)], check=True)
    return 0


# User-facing error types, by module: only modules already imported can have raised one, so checking
# sys.modules keeps a config error from importing torch, pandas or scipy just to be reported.
_ERROR_TYPES = (
    ("harness.experiment.data", "DataError"),
    ("harness.training.model_source", "ModelError"),
    ("harness.storage.store", "StoreError"),
    ("harness.schedule", "ExperimentLocked"),
    ("harness.training.device", "DeviceError"),
    ("harness.importer", "ImportFileError"),
    ("harness.storage.safe_files", "UnsafePathError"),
    ("harness.storage.scope", "RecordError"),
)


def _known_errors() -> tuple[type[Exception], ...]:
    known: list[type[Exception]] = [ConfigError, CliError]
    for module, name in _ERROR_TYPES:
        found = getattr(sys.modules.get(module), name, None)
        if isinstance(found, type):
            known.append(found)
    return tuple(known)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__)
    parser.add_argument("--results", help="results root (default: $HARNESS_RESULTS_DIR or ./results)")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_experiment(p: argparse.ArgumentParser) -> None:
        p.add_argument("experiment", help="experiment TOML file")
        p.add_argument("--scale", help="apply the [scale.<name>] section (e.g. cpu, paper)")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a field of the file (TOML value; top-level, defaults.*, schedule.*, recipes.<name>.*)",
        )

    def scoped(p: argparse.ArgumentParser) -> None:
        p.add_argument("--scale", help="use the runs of this scale (default: the scale of the last `harness run`)")
        p.add_argument("--all", action="store_true", help="use every run in the folder, whatever spec made it")
        p.add_argument("--data-dir", help="data folder for a TOML's run ids (default: the one the runs used)")

    run = sub.add_parser("run", help="run every seeded run not yet stored (resumable)")
    with_experiment(run)
    run.add_argument("--backend", choices=["local", "ray", "slurm"], help="override the experiment's backend")
    run.add_argument("--data-dir", help="GLUE data folder (default: $HARNESS_DATA_DIR, else the hub)")
    run.add_argument("--workers", type=int, help="parallel runs (default: GPUs x runs_per_gpu, or CPU slots)")
    run.add_argument("--ray-address", help="Ray cluster address (default: start a local one)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--retry-failed", action="store_true", help="also run again the runs stored as failed")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="show the plan (runs per configuration, stored/reused/failed, engine and seed groups, slots, checks, "
        "estimated time) without running anything; exit 0 if it would run, 2 otherwise",
    )
    run.set_defaults(func=cmd_run)

    status = sub.add_parser("status", help="done / failed / diverged / stopped / pending per recipe")
    with_experiment(status)  # also a name under the results root (e.g. an imported experiment)
    status.add_argument("--data-dir", help="the data folder the runs used (default: as `harness run`)")
    status.set_defaults(func=cmd_status)

    analyze = sub.add_parser("analyze", help="statistics from the store -> results/<name>/analysis/")
    analyze.add_argument("experiment", help="experiment TOML file or name")
    scoped(analyze)
    analyze.add_argument("--baseline", help="recipe every other recipe is compared with (default: the first)")
    analyze.add_argument("--out", help="tables folder (default: results/<name>/analysis; e.g. for a read-only store)")
    analyze.add_argument(
        "--recompute", action="store_true", help="recompute the tables even when the store has not changed since"
    )
    analyze.set_defaults(func=cmd_analyze)

    report = sub.add_parser("report", help="Markdown + HTML report with plots -> results/<name>/report/")
    report.add_argument("experiment", nargs="?", help="experiment TOML file or name")
    scoped(report)
    report.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two experiments")
    report.add_argument("--baseline", help="recipe every other recipe is compared with (default: the first)")
    report.add_argument("--out", help="output folder (default: results/<name>/report; e.g. for a read-only store)")
    report.add_argument(
        "--with", dest="include", action="append", default=[], choices=["early-stopping"],
        help="a section the report leaves out unless asked (early-stopping: the stopping table of any experiment)",
    )  # fmt: skip
    report.set_defaults(func=cmd_report)

    reproduce = sub.add_parser("reproduce", help="run and report every experiment of a paper")
    reproduce.add_argument("paper", help="folder under experiments/, e.g. zhang2021")
    reproduce.add_argument("--scale", default="cpu", help="cpu (default) or paper")
    reproduce.add_argument("--backend", choices=["local", "ray", "slurm"])
    reproduce.add_argument("--data-dir")
    reproduce.add_argument("--workers", type=int)
    reproduce.add_argument("--ray-address")
    reproduce.add_argument("--quiet", action="store_true")
    reproduce.add_argument("--baseline")
    reproduce.set_defaults(func=cmd_reproduce)

    imp = sub.add_parser("import", help="external run logs (CSV/TSV/JSONL/Parquet) -> results/<name>/ as runs")
    imp.add_argument("file", help="one row per run (or per run and measure): task, recipe, seed, score, ...")
    imp.add_argument("--name", required=True, help="experiment name (folder under the results root)")
    imp.add_argument("--map", action="append", metavar="COLUMN=FIELD", help="name a column's field (repeatable)")
    imp.add_argument("--curves", help="eval curves file: task, recipe, seed, step, val_metric per row")
    imp.add_argument("--select", choices=["best", "final"], help="score = best or final checkpoint (if both given)")
    imp.add_argument(
        "--missing", choices=["constant", "diverged", "failed", "drop"],
        help="what a missing/NaN score means: constant (the undefined metric of constant predictions, e.g. Spearman or "
        "MCC: scored as the constant predictor, degenerate), diverged (no score, degenerate), failed (left out), drop",
    )  # fmt: skip
    imp.add_argument("--threshold", action="append", metavar="TASK=VALUE", help="degenerate bar (x100) per task")
    imp.add_argument("--model", help="model name when the file has no model column")
    imp.add_argument("--metric", help="metric name when the file has none and the task is not built in")
    imp.add_argument("--score-scale", default="auto", choices=["auto", "1", "100"], help="auto: [-1,1] means x100")
    imp.add_argument("--paper", help="TOML with [paper] (+ degenerate_threshold, recipes order, baseline)")
    imp.add_argument("--data-dir", help="GLUE folder for built-in tasks' majority baselines")
    imp.set_defaults(func=cmd_import)

    export = sub.add_parser("export", help="one flat table of runs with their spec columns (CSV or Parquet)")
    export.add_argument("experiment", help="experiment TOML file or name")
    export.add_argument("--format", choices=["csv", "parquet"], default="csv")
    export.add_argument("--out", help="output file in an existing folder (default: results/<name>/export/runs.<fmt>)")
    export.add_argument("--force", action="store_true", help="replace the --out file if it exists")
    export.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench", help="run the benchmarks (tables under results/bench/)")
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    default = warnings.formatwarning

    def one_line(message: Warning | str, category: type[Warning], *where: object, **kw: object) -> str:
        """The harness's own warnings (a quarantined part, a rebuilt record) as one `warning: ...` line."""
        if category.__module__.startswith("harness."):
            return f"warning: {message}\n"
        return default(message, category, *where, **kw)  # type: ignore[arg-type]

    warnings.formatwarning = one_line
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = default


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in (*_WRITE_ERRORS, *_PATH_ERRORS):
            print(f"error: {os_error_message(exc)}", file=sys.stderr)
            return 2
        if not isinstance(exc, _known_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are stored; run the same command again to resume", file=sys.stderr)
        return 130


_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}
_PATH_ERRORS = {
    errno.ENAMETOOLONG: "a file name is too long for the file system; use a shorter name",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.ELOOP: "a part of that path is a symbolic link the harness does not follow",
}


def os_error_message(exc: OSError) -> str:
    """One line for a store that cannot be written: what, where, and what still holds."""
    where = exc.filename or "the results folder"
    if exc.errno in _PATH_ERRORS:
        return f"cannot use {str(where)[:200]}: {_PATH_ERRORS[exc.errno]}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"disk full writing {where}; every run stored before this is intact (parts are written atomically). "
            "Free space and run the same command again to resume."
        )
    return (
        f"cannot write {where} ({exc.strerror or exc}); the results folder is read-only? `status` still works, "
        "and `analyze`/`report` take --out DIR to write elsewhere."
    )


if __name__ == "__main__":
    sys.exit(main())
