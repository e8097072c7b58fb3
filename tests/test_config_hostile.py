"""Hostile experiment files: bounds, non-finite numbers, where ray_address may come from, and a fuzz of the loader."""

from __future__ import annotations

import math
import random
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.experiment.config import MAX_RUNS, ConfigError, ExperimentSpec, load_experiment, parse_experiment

BASE = {
    "name": "x",
    "task": "rte",
    "model": "m",
    "seeds": 3,
    "eval_size": 40,
    "num_evals": 4,
    "defaults": {"lr": 2e-5, "epochs": 1.0, "batch_size": 8},
    "recipes": {"a": {}, "b": {"bias_correction": False, "weight_decay": 0.01}},
    "schedule": {"max_retries": 1},
    "early_stop": {"at": 0.25, "keep": 0.5},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    data = tomllib.loads(_dump(BASE))
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return data


def _dump(data: dict[str, Any]) -> str:
    """A minimal TOML writer for the values this file generates (nested tables as inline tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {value(x)}' for k, x in v.items()) + "}"
        raise TypeError(type(v))

    return "\n".join(f'"{k}" = {value(v)}' for k, v in data.items()) + "\n"


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_experiment(data, "hostile.toml")
    return str(info.value)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("defaults.weight_decay", math.nan, "weight_decay"),
        ("defaults.lr", math.inf, "lr"),
        ("defaults.epochs", math.inf, "epochs"),
        ("early_stop.keep", math.inf, "keep"),
        ("early_stop.at", math.nan, "at"),
        ("degenerate_threshold", {"rte": math.nan}, "degenerate_threshold"),
        ("defaults.lr", 1e300, "lr"),
        ("defaults.epochs", 1e9, "epochs"),
        ("defaults.max_steps", 10**12, "max_steps"),
        ("defaults.head_warmup_steps", 10**12, "head_warmup_steps"),
        ("num_evals", 10**12, "num_evals"),
        ("seeds", 10**12, "seeds"),
        ("seeds", [-1, 2], "seeds"),
        ("seeds", {"init": 1000, "order": 1000}, "seeds"),
        ("eval_size", 1, "eval_size"),
    ],
)
def test_out_of_bounds_values_name_the_field(path: str, value: Any, field: str):
    message = _error(_with(path, value))
    assert f"'{field}" in message or f"{field}" in message.split(";")[0], message
    assert message.startswith("hostile.toml")


def test_eval_size_rule_follows_the_protocol_and_labels():
    assert _error(_with("eval_size", 7)).endswith("use at least 8")  # rte: 2 classes x 2 per split x 2 halves
    assert len(parse_experiment(_with("eval_size", 8), "ok.toml").runs) == 6
    assert len(parse_experiment({**_with("eval_size", 4), "eval_protocol": "dev"}, "ok.toml").runs) == 6


@pytest.mark.slow
def test_too_many_runs_is_refused_and_the_cap_itself_plans():
    over = _with("seeds", MAX_RUNS)  # x 2 recipes
    assert "more than 100000 runs" in _error(over)
    one_recipe = {**_with("seeds", MAX_RUNS), "recipes": {"a": {}}}
    assert len(parse_experiment(one_recipe, "big.toml").runs) == MAX_RUNS  # timing: benchmarks/bench_plan.py


def test_ray_address_is_refused_in_the_experiment_file():
    message = _error(_with("schedule.ray_address", "ray://evil:10001"))
    assert "--ray-address" in message and "RAY_ADDRESS" in message


def test_custom_regression_task_without_labels_loads(tmp_path: Path):
    path = tmp_path / "reg.toml"
    path.write_text(
        'name = "reg"\ntask = "scores"\nmodel = "m"\nseeds = 2\n[recipes.a]\n'
        '[custom_tasks.scores]\nfolder = "scores"\ntext_columns = ["text"]\nlabel_column = "y"\nmetric = "spearman"\n'
    )
    spec = load_experiment(path)
    assert spec.runs[0].task_def.is_regression and spec.runs[0].task_def.labels == ()


# ---------------------------------------------------------------------------
# Fuzz: random and mutated values from a seeded generator; every input is a ConfigError or a valid spec.

_WEIRD: list[Any] = [
    0, 1, -1, 2, 7, 2**63 - 1, -(2**63), 0.0, -0.0, 0.5, 1.5, -2.5, 1e300, -1e300, 1e-300, math.nan, math.inf,
    -math.inf, True, False, "", "x", "rte", "../outside", "/abs", "nan", [], [1], [1, 1], ["a"], [1.5], [{}],
    [[1]], {}, {"a": 1}, {"init": 2, "order": 2}, {"x": {}}, {"a": {"lr": "fast"}},
]  # fmt: skip


def _paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    return out


def _mutate(rng: random.Random) -> dict[str, Any]:
    data = tomllib.loads(_dump(BASE))
    data["recipes"]["a"] = {"lr": 1e-5, "reinit_layers": 1, "llrd": 0.9, "dropout": 0.1}
    data["scale"] = {"cpu": {"seeds": 2, "defaults": {"epochs": 0.5}}}
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        paths = _paths(data)
        kind = rng.random()
        if kind < 0.75 and paths:
            path = rng.choice(paths)
            node = data
            for key in path[:-1]:
                node = node[key]
            if rng.random() < 0.15:
                node.pop(path[-1])
            else:
                node[path[-1]] = rng.choice(_WEIRD) if rng.random() < 0.7 else _random_value(rng)
        else:  # a new key somewhere, known or unknown
            key = rng.choice(["tasks", "select", "only_recipes", "scale", "custom_tasks", "sample_seed", "split_seed",
                              "eval_protocol", "max_seq_length", "model_layers", "sample_size", "zzz"])  # fmt: skip
            data[key] = rng.choice(_WEIRD)
    return data


def _random_value(rng: random.Random) -> Any:
    choice = rng.randrange(6)
    if choice == 0:
        return rng.randint(-(10**6), 10**6)
    if choice == 1:
        return rng.uniform(-10, 10) * 10 ** rng.randint(-8, 8)
    if choice == 2:
        return "".join(rng.choice("abc./_- ") for _ in range(rng.randint(0, 6)))
    if choice == 3:
        return [rng.randint(0, 5) for _ in range(rng.randint(0, 4))]
    if choice == 4:
        return {"x": rng.randint(0, 3)}
    return rng.random() < 0.5


def test_fuzz_loader_only_raises_config_error():
    rng = random.Random(20261126)
    cases = 3000
    outcomes = {"error": 0, "valid": 0}
    for i in range(cases):
        data = _mutate(rng)
        text = _dump(data)
        try:
            spec = parse_experiment(tomllib.loads(text), f"case{i}.toml", scale=rng.choice([None, "cpu"]))
        except ConfigError:
            outcomes["error"] += 1
            continue
        except Exception as exc:  # anything else is the bug this test looks for
            pytest.fail(f"case {i}: {type(exc).__name__}: {exc}\n{text}")
        assert isinstance(spec, ExperimentSpec) and spec.runs and all(r.run_id for r in spec.runs[:3])
        outcomes["valid"] += 1
    assert outcomes["error"] > cases // 4 and outcomes["valid"] > cases // 10, outcomes


# ---------------------------------------------------------------------------
# Names, labels, sizes and data folders that were accepted silently (issue: hostile input II).

_REVIEWS = {"folder": "reviews", "text_columns": ["text"], "label_column": "y", "labels": ["neg", "pos"],
            "metric": "accuracy"}  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["a\nb", "x" * 300, "tab\there", "nul\0", "rtl\u202eexe", " padded"],
    ids=["newline", "300-chars", "tab", "nul", "rtl-override", "leading-space"],
)
def test_experiment_name_that_is_no_plain_folder_is_refused(name: str):
    message = _error(_with("name", name))
    assert "'name'" in message and "results folder" in message and "\n" not in message


@pytest.mark.parametrize("invisible", ["\u200b", "\u202e", "\u200f", "\ufeff"])
def test_recipe_names_differing_only_by_invisible_characters_are_refused(invisible: str):
    data = _with("recipes", {"a": {}, f"a{invisible}": {"weight_decay": 0.01}})
    message = _error(data)
    assert "recipe name" in message and f"U+{ord(invisible):04X}" in message


def test_repeated_label_is_refused_not_a_phantom_class():
    data = {**_with("task", "reviews"), "custom_tasks": {"reviews": {**_REVIEWS, "labels": ["pos", "pos", "neg"]}}}
    message = _error(data)
    assert "'labels'" in message and "repeats ['pos']" in message


@pytest.mark.parametrize("folder", ["/etc", "../../etc", "reviews/../../x"])
def test_custom_task_folder_stays_under_the_data_dir(folder: str):
    data = {**_with("task", "reviews"), "custom_tasks": {"reviews": {**_REVIEWS, "folder": folder}}}
    message = _error(data)
    assert "'folder'" in message and "--data-dir" in message


@pytest.mark.parametrize(("task", "size", "least"), [("rte", 1, 2), ("mnli", 2, 3), ("stsb", 1, 2)])
def test_sample_size_below_one_example_per_class_is_refused(task: str, size: int, least: int):
    message = _error({**_with("sample_size", size), "task": task})
    assert "'sample_size'" in message and message.endswith(f"use at least {least}")
    assert parse_experiment({**_with("sample_size", least), "task": task}, "ok.toml").runs[0].sample_size == least
