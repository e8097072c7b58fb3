"""Setup, provenance and substitution notes of an experiment, read from the runs' JSON columns."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.experiment.spec import ExperimentSpec, Recipe
from harness.report.tables import md_table

# Mirrors harness.training.models.PACKAGED_ALIASES (that module imports torch, which the report layer must not).
PACKAGED_ALIASES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "packaged"})
PROVENANCE_FIELDS = (
    "git_sha",
    "harness",
    "torch",
    "transformers",
    "python",
    "device",
    "device_name",
    "threads",
    "host",
)
SETUP_FIELDS = (
    "model",
    "model_layers",
    "sample_size",
    "eval_protocol",
    "eval_size",
    "split_seed",
    "max_seq_length",
    "num_evals",
    "select",
)
RECIPE_SHOWN = ("lr", "bias_correction", "epochs", "max_steps", "batch_size", "warmup_ratio", "weight_decay")


def _json(text: object) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def specs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    return [_json(s) for s in runs["spec"].tolist()]


def provenances(runs: pd.DataFrame) -> list[dict[str, Any]]:
    return [_json(p) for p in runs["provenance"].tolist()]


def _values(items: Sequence[object]) -> str:
    """Distinct values with their run counts, most common first."""
    counts = Counter("–" if v is None or v == "" else str(v) for v in items)
    if len(counts) == 1:
        return f"`{next(iter(counts))}`"
    return ", ".join(f"`{v}` ({n} runs)" for v, n in counts.most_common())


def is_packaged(model: str) -> bool:
    return str(model) in PACKAGED_ALIASES or "minilm" in str(model).lower()


def model_description(runs: pd.DataFrame) -> str:
    """The model(s) of these runs in words, e.g. 'all-MiniLM-L6-v2 (packaged, first 2 layers)'."""
    parts = []
    layers = [s.get("model_layers") for s in specs(runs)]
    for model in dict.fromkeys(runs["model"].astype(str)):
        name = "all-MiniLM-L6-v2 (packaged)" if is_packaged(model) else repo_path(model)
        kept = {lay for lay, m in zip(layers, runs["model"].astype(str), strict=True) if m == model and lay}
        if kept:
            name += f", first {'/'.join(str(k) for k in sorted(kept))} layers"
        parts.append(name)
    return "; ".join(parts) or "unknown model"


def repo_path(path: str | Path) -> str:
    """A path as a reader of this checkout can use it: relative to the working directory (the repository root
    when the publisher runs), else only its last two parts: never the absolute path of the machine that ran."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return f"…/{p.parent.name}/{p.name}" if p.parent.name else p.name


def experiment_source(exp_dir: Path, spec: ExperimentSpec | None) -> str:
    """The experiment file as `harness run` was given it (recorded in experiment.json), else the spec's source."""
    meta = exp_dir / "experiment.json"
    try:
        recorded = json.loads(meta.read_text()).get("source") if meta.is_file() else None
    except ValueError:
        recorded = None
    source = recorded or (spec.source if spec is not None else "")
    return repo_path(source) if source else ""


def code_state(runs: pd.DataFrame) -> str:
    """The commit(s) the runs were trained from, saying when they mix commits or came from an uncommitted tree."""
    recorded = [p for p in provenances(runs) if p]  # a failed or imported run may carry no provenance
    shas = Counter(str(p.get("git_sha") or "unknown") for p in recorded)
    n = sum(shas.values())
    if not n:
        return "no provenance recorded in these runs"
    dirty = sum(k for sha, k in shas.items() if sha.endswith("+dirty"))
    note = (
        f"; {dirty} of them from a checkout with uncommitted changes (`+dirty`): the code that ran is that commit "
        "plus edits not recorded here"
        if dirty
        else ""
    )
    if len(shas) == 1:
        sha = next(iter(shas))
        if sha == "unknown":
            return f"no commit recorded for the {n} runs"
        if dirty:
            return (
                f"all {n} runs from commit `{sha}`, a checkout with uncommitted changes: the code that ran is that "
                "commit plus edits not recorded here"
            )
        return f"all {n} runs from commit `{sha}` (a clean checkout)"
    parts = ", ".join(f"`{sha}` ({k} runs)" for sha, k in shas.most_common())
    return f"MIXED: the {n} runs come from {len(shas)} code states: {parts}{note}"


def scope_line(runs: pd.DataFrame, spec: ExperimentSpec | None) -> str:
    """What this report covers, from the runs themselves (so a title never names a task or recipe not run)."""
    tasks = ", ".join(dict.fromkeys(runs["task"].astype(str)))
    recipes = ", ".join(dict.fromkeys(runs["recipe"].astype(str)))
    scale = f" at scale `{spec.scale}`" if spec is not None and spec.scale else ""
    return f"This report{scale}: task(s) {tasks}; recipes {recipes}."


def setup_table(runs: pd.DataFrame, spec: ExperimentSpec | None, source: str = "") -> str:
    sp = specs(runs)
    rows = [
        ["tasks", ", ".join(dict.fromkeys(runs["task"].astype(str)))],
        ["recipes", ", ".join(dict.fromkeys(runs["recipe"].astype(str)))],
        ["model (as named)", _values(runs["model"].astype(str).tolist())],
    ]
    for key in SETUP_FIELDS[1:]:
        values = [s.get(key) for s in sp]
        if any(v is not None for v in values):
            rows.append([key, _values(values)])
    per_config = runs.groupby("config_key").size()
    rows.append(["runs per configuration", _values(per_config.tolist())])
    seeds = runs[["init_seed", "order_seed"]]
    grid = (
        "paired (init = order)"
        if (seeds["init_seed"] == seeds["order_seed"]).all()
        else (f"{seeds['init_seed'].nunique()} init × {seeds['order_seed'].nunique()} order seeds")
    )
    rows.append(["seeds", grid])
    source = source or (repo_path(spec.source) if spec is not None and spec.source else "")
    if source:
        rows.append(["experiment file", f"`{source}`"])
    return md_table(["setting", "value"], rows, "ll")


def recipe_table(runs: pd.DataFrame) -> str:
    """Per recipe: the common optimisation fields plus every field set away from the Recipe default."""
    defaults = dataclasses.asdict(Recipe())
    recipes: dict[str, dict[str, Any]] = {}
    for name, s in zip(runs["recipe"].astype(str), specs(runs), strict=True):
        if name not in recipes and isinstance(s.get("recipe"), dict):
            recipes[name] = s["recipe"]
    if not recipes:
        return ""
    rows = []
    for name, r in recipes.items():
        shown = [f"{k}={r[k]}" for k in RECIPE_SHOWN if k in r]
        changed = [f"{k}={v}" for k, v in r.items() if k not in RECIPE_SHOWN and k != "name" and v != defaults.get(k)]
        rows.append([name, ", ".join(shown), ", ".join(changed) or "–"])
    return md_table(["recipe", "optimisation", "other settings (non-default)"], rows, "lll")


def provenance_table(runs: pd.DataFrame) -> str:
    prov = provenances(runs)
    rows = []
    for key in PROVENANCE_FIELDS:
        values = [p.get(key) for p in prov]
        if any(v not in (None, "") for v in values):
            rows.append([key, _values(values)])
    if runs["device"].notna().any() and not any(r[0] == "device" for r in rows):
        rows.append(["device", _values(runs["device"].tolist())])
    finished = runs["finished_at"].dropna().astype(str)
    if len(finished):
        rows.append(["finished", f"{finished.min()} … {finished.max()}"])
    if not rows:
        return "No provenance recorded in these runs."
    return md_table(["field", "value (runs)"], rows, "ll")


def substitution_notes(
    runs: pd.DataFrame, spec: ExperimentSpec | None, paper_model: str = "", paper_notes: Sequence[str] = ()
) -> list[str]:
    """The places where this experiment departs from the papers' setup, one sentence each."""
    notes = []
    sp = specs(runs)
    models = list(dict.fromkeys(runs["model"].astype(str)))
    if any(is_packaged(m) for m in models):
        notes.append(
            "The model is the packaged sentence-transformers/all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7M "
            "parameters; distilled and contrastively trained, not an MLM checkpoint). It is not BERT-large: expect "
            "fewer degenerate runs than the papers report, and never read these numbers as BERT-large numbers."
        )
    elif paper_model and not any(paper_model.lower() in m.lower() for m in models):
        notes.append(f"The model ({', '.join(models)}) is not the paper's ({paper_model}).")
    warned = runs[runs["notes"].fillna("").str.contains("WARNING:")]
    if len(warned):
        first = next(part for part in warned["notes"].iloc[0].split("; ") if "WARNING:" in part)
        recipes = ", ".join(dict.fromkeys(warned["recipe"].astype(str)))
        notes.append(f"{len(warned)} run(s) ({recipes}) carry a warning in their record: {first.strip()}")
    read_as = {"constant": "scored as the constant predictor (an undefined metric of constant predictions) and "
               "counted degenerate", "diverged": "counted as diverged (no score, degenerate)",
               "failed": "left out as failed"}  # fmt: skip
    marks = provenances(runs) if "provenance" in runs else []
    for rule, k in Counter(p.get("missing_score") for p in marks if p.get("missing_score")).items():
        notes.append(
            f"{k} imported run(s) had no score in the log and were {read_as.get(rule, rule)} (`harness import "
            f"--missing {rule}`). The choice can decide verdicts; each verdict's caveats count the runs it touches."
        )
    kept = sorted({s["model_layers"] for s in sp if s.get("model_layers")})
    if kept:
        notes.append(
            f"Only the first {'/'.join(map(str, kept))} pre-trained layers are kept (a smaller, faster model)."
        )
    inter = sorted({s["recipe"]["intermediate_task"] for s in sp if (s.get("recipe") or {}).get("intermediate_task")})
    if "mnli" in inter:
        notes.append(
            "Intermediate-task recipes train their MNLI stage on MNLI dev_matched when the data come from a local "
            "folder (no MNLI train set is staged here); only runs with hub access used the real MNLI train split. "
            "The stage is evaluated on the same file, so its own score is not a held-out number."
        )
    sizes = sorted({s["sample_size"] for s in sp if s.get("sample_size")})
    if sizes:
        notes.append(f"Few-sample training sets of {'/'.join(map(str, sizes))} examples (class-balanced draws).")
    caps = sorted({s["eval_size"] for s in sp if s.get("eval_size")})
    if caps:
        notes.append(f"Evaluation capped at {'/'.join(map(str, caps))} dev examples (stratified): wider test noise.")
    protocols = {s.get("eval_protocol") for s in sp} - {None}
    if "heldout" in protocols:
        selects = {(s.get("recipe") or {}).get("select", "best") for s in sp if s.get("eval_protocol") == "heldout"}
        how = {
            frozenset({"best"}): "with checkpoint selection on the other half, as in Zhang et al. 2021.",
            frozenset({"final"}): 'reporting the last checkpoint (select = "final"): the other half selects nothing.',
        }.get(
            frozenset(selects),
            'with checkpoint selection on the other half for the recipes with select = "best" and the last '
            'checkpoint for those with select = "final".',
        )
        notes.append(f"Scores are on the held-out half of the GLUE dev set (split per label, fixed split seed), {how}")
    if "dev" in protocols:
        notes.append(_dev_note(runs, sp))
    notes.extend(paper_notes)
    return notes


def _dev_note(runs: pd.DataFrame, sp: list[dict[str, Any]]) -> str:
    """Under the dev protocol the dev set scores every run; it also selects the checkpoint only of the recipes
    with select = "best"."""
    by_select: dict[str, dict[str, None]] = {}  # select -> recipes, in order
    for name, s in zip(runs["recipe"].astype(str), sp, strict=True):
        if s.get("eval_protocol") == "dev":
            by_select.setdefault((s.get("recipe") or {}).get("select", "best"), {})[name] = None
    best, final = list(by_select.get("best", {})), list(by_select.get("final", {}))
    if not best:
        return (
            'Scores are on the dev set at each run\'s last checkpoint (select = "final"): the dev set selects nothing.'
        )
    text = (
        "Scores are on the dev set that also selects the checkpoint"
        + (f" of {', '.join(best)}" if final else "")
        + " (as in Mosbach et al. 2021): optimistic by the selection."
    )
    if final:
        text += f" {', '.join(final)} report their last checkpoint: the arms are selected differently."
    return text


SCALE_NOTE = re.compile(r"^\s*([A-Za-z][\w-]*) scale:", re.IGNORECASE)


def notes_for_scale(notes: Sequence[str], spec: ExperimentSpec | None) -> list[str]:
    """The [paper] notes that apply to the scale that ran: a note starting "<name> scale:" is kept only when
    [scale.<name>] was applied; a line naming the applied scale comes first."""
    scale = spec.scale if spec is not None else None
    out = [f"This report is of the [scale.{scale}] settings of the experiment file."] if scale else []
    for note in notes:
        named = SCALE_NOTE.match(note)
        if named is None or (scale is not None and named.group(1).lower() == scale.lower()):
            out.append(note)
    return out


def score_label(runs: pd.DataFrame) -> str:
    protocols = {s.get("eval_protocol") for s in specs(runs)} - {None}
    if protocols == {"heldout"}:
        return "held-out test half"
    if protocols == {"dev"}:
        return "dev set"
    return "selected checkpoint"


def sample_note(runs: pd.DataFrame, task: str) -> str:
    sizes = sorted(
        {
            s["sample_size"]
            for s, t in zip(specs(runs), runs["task"].astype(str), strict=True)
            if t == task and s.get("sample_size")
        }
    )
    return f"{'/'.join(map(str, sizes))} training examples" if sizes else ""
