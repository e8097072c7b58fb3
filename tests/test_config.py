"""ExperimentSpec parsing: expansion, stable run ids, and errors that name the field."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from harness.experiment.config import ConfigError, Recipe, RunSpec, load_experiment, parse_experiment

BASE = {"name": "exp", "task": "rte", "model": "m", "seeds": 3, "recipes": {"a": {}, "b": {"bias_correction": False}}}


def parse(**changes):
    return parse_experiment({**BASE, **changes}, "exp.toml")


def test_expands_tasks_recipes_seeds():
    data = {k: v for k, v in BASE.items() if k != "task"}
    exp = parse_experiment({**data, "tasks": ["rte", "mrpc"]}, "exp.toml")
    assert len(exp.runs) == 2 * 2 * 3
    assert exp.recipes == ("a", "b")
    assert exp.tasks == ("rte", "mrpc")
    assert len({r.run_id for r in exp.runs}) == 12
    assert {(r.init_seed, r.order_seed) for r in exp.runs} == {(1, 1), (2, 2), (3, 3)}


def test_seed_grid_is_cartesian():
    exp = parse(seeds={"init": [1, 2, 3], "order": 2})
    pairs = {(r.init_seed, r.order_seed) for r in exp.runs if r.recipe.name == "a"}
    assert pairs == {(i, o) for i in (1, 2, 3) for o in (1, 2)}


def test_defaults_apply_and_recipes_override():
    exp = parse(defaults={"lr": 1e-5, "epochs": 2}, recipes={"a": {}, "b": {"lr": 3e-5}})
    lrs = {r.recipe.name: r.recipe.lr for r in exp.runs}
    assert lrs == {"a": 1e-5, "b": 3e-5}
    assert all(r.recipe.epochs == 2.0 for r in exp.runs)


def test_run_id_ignores_experiment_and_recipe_name_but_not_hyperparameters():
    spec = RunSpec(task="rte", model="m", recipe=Recipe(name="x"), init_seed=1, order_seed=1)
    assert (
        RunSpec(task="rte", model="m", recipe=Recipe(name="y"), init_seed=1, order_seed=1, experiment="e").run_id
        == spec.run_id
    )
    assert RunSpec(task="rte", model="m", recipe=Recipe(lr=3e-5), init_seed=1, order_seed=1).run_id != spec.run_id
    assert RunSpec(task="rte", model="m", recipe=Recipe(), init_seed=1, order_seed=2).run_id != spec.run_id


def test_run_id_is_stable_across_processes():
    spec = RunSpec(task="rte", model="m", recipe=Recipe(lr=3e-5, llrd=0.9), init_seed=4, order_seed=5)
    code = textwrap.dedent(
        """
        from harness.experiment.config import Recipe, RunSpec
        print(RunSpec(task="rte", model="m", recipe=Recipe(lr=3e-5, llrd=0.9), init_seed=4, order_seed=5).run_id)
        """
    )
    env = {"PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == spec.run_id


def test_spec_json_round_trip():
    spec = parse().runs[4]
    assert RunSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"bogus": 1}, "unknown top-level key(s) ['bogus']"),
        ({"recipes": {"a": {"lr": "fast"}}}, "field 'lr' = 'fast' (str) must be float"),
        ({"recipes": {"a": {"lrr": 1e-5}}}, "unknown field(s) ['lrr']"),
        ({"recipes": {"a": {"lr": -1.0}}}, "field 'lr' = -1.0; must be > 0"),
        ({"recipes": {"a": {"warmup_ratio": 1.5}}}, "'warmup_ratio' = 1.5; must be in [0, 1)"),
        (
            {"recipes": {"a": {"bitfit": True, "reinit_layers": 2}}},
            "sets both 'bitfit' and 'reinit_layers/reinit_pooler'",
        ),
        ({"task": "qqq"}, "task 'qqq' is unknown"),
        ({"seeds": 0}, "'seeds' = 0; must be >= 1"),
        ({"seeds": [1, 1]}, "repeats a seed"),
        ({"eval_protocol": "test"}, "'eval_protocol' = 'test'; allowed: dev, heldout"),
        ({"model_layers": 2, "recipes": {"a": {"reinit_layers": 3}}}, "reinit_layers = 3 but the model keeps only"),
        ({"schedule": {"backend": "pbs"}}, "'schedule.backend' = 'pbs'"),
        ({"early_stop": {"at": 1.5}}, "'early_stop.at' = 1.5"),
        ({"recipes": {"a": {"llrd": 1.5}}}, "'llrd' = 1.5; must be in (0, 1]"),
    ],
)
def test_errors_name_file_field_and_fix(changes, fragment):
    with pytest.raises(ConfigError) as info:
        parse(**changes)
    assert fragment in str(info.value)
    assert str(info.value).startswith("exp.toml")


def test_missing_field_is_named():
    data = {k: v for k, v in BASE.items() if k != "model"}
    with pytest.raises(ConfigError, match="missing required key 'model'"):
        parse_experiment(data, "exp.toml")


def test_scale_section_overrides(tmp_path: Path):
    path = tmp_path / "e.toml"
    path.write_text(
        textwrap.dedent(
            """
            name = "e"
            task = "rte"
            model = "bert-large-uncased"
            seeds = 20
            [recipes.standard]
            [scale.cpu]
            model = "packaged"
            seeds = 3
            sample_size = 100
            """
        )
    )
    paper, cpu = load_experiment(path), load_experiment(path, scale="cpu")
    assert len(paper.runs) == 20 and paper.runs[0].model == "bert-large-uncased"
    assert len(cpu.runs) == 3 and cpu.runs[0].model == "packaged" and cpu.runs[0].sample_size == 100
    with pytest.raises(ConfigError, match=r"no \[scale.gpu\] section; available scales: \['cpu'\]"):
        load_experiment(path, scale="gpu")


def test_invalid_toml_names_file(tmp_path: Path):
    path = tmp_path / "bad.toml"
    path.write_text("name = ")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_experiment(path)


def test_bundled_experiment_files_parse():
    root = Path(__file__).resolve().parents[1] / "experiments"
    files = sorted(root.rglob("*.toml"))
    assert files, "no experiment files found"
    for path in files:
        declared = sorted(tomllib.loads(path.read_text()).get("scale", {}))
        for scale in [None, *declared]:  # the file as written and every scale it declares
            exp = load_experiment(path, scale=scale)
            assert exp.runs, (path, scale)


def test_only_recipes_selects_a_subset_and_names_unknown_ones():
    exp = parse(only_recipes=["b"])
    assert exp.recipes == ("b",) and len(exp.runs) == 3
    with pytest.raises(ConfigError, match=r"'only_recipes' = \['c'\]"):
        parse(only_recipes=["c"])


def test_custom_csv_task_is_part_of_the_spec_and_validated():
    reviews = {"folder": "reviews", "text_columns": ["text"], "label_column": "stars", "labels": ["neg", "pos"],
               "metric": "accuracy"}  # fmt: skip
    exp = parse(task="reviews", custom_tasks={"reviews": reviews})
    spec = exp.runs[0]
    assert spec.task_def.fmt == "csv" and spec.task_def.train_file == "train.csv" and spec.task_def.num_labels == 2
    assert RunSpec.from_json(spec.to_json()) == spec
    other = parse(task="reviews", custom_tasks={"reviews": {**reviews, "labels": ["bad", "good"]}})
    assert other.runs[0].run_id != spec.run_id  # the task's definition shapes the run
    assert parse().runs[0].custom_task is None
    with pytest.raises(ConfigError, match=r"'metric' = 'auc'; allowed"):
        parse(task="reviews", custom_tasks={"reviews": {**reviews, "metric": "auc"}})
    with pytest.raises(ConfigError, match="omit 'labels' for a regression metric"):
        parse(task="reviews", custom_tasks={"reviews": {**reviews, "metric": "spearman"}})
    with pytest.raises(ConfigError, match="'rte' is a built-in task"):
        parse(custom_tasks={"rte": reviews})
    with pytest.raises(ConfigError, match=r"missing field\(s\) \['folder'\]"):
        parse(task="reviews", custom_tasks={"reviews": {k: v for k, v in reviews.items() if k != "folder"}})


def test_mixout_with_an_explicit_dropout_is_refused_unless_the_recipe_says_so():
    # the paper tables set dropout = 0.1 in [defaults]: Mixout ran with dropout on the old code
    with pytest.raises(ConfigError, match=r"\[recipes.mix\]: mixout = 0.1 with dropout = 0.1 \(from \[defaults\]\)"):
        parse(defaults={"dropout": 0.1}, recipes={"std": {}, "mix": {"mixout": 0.1}})
    with pytest.raises(ConfigError, match=r"from \[recipes.mix\]\).*mixout_keep_dropout = true"):
        parse(recipes={"mix": {"mixout": 0.1, "dropout": 0.2}})
    exp = parse(defaults={"dropout": 0.1}, recipes={"std": {}, "mix": {"mixout": 0.1, "dropout": 0.0}})
    assert {r.recipe.name: r.recipe.dropout for r in exp.runs} == {"std": 0.1, "mix": 0.0}
    both = parse(recipes={"mix": {"mixout": 0.1, "dropout": 0.1, "mixout_keep_dropout": True}})
    assert both.runs[0].recipe.dropout == 0.1 and both.runs[0].recipe.mixout == 0.1
    assert parse(recipes={"mix": {"mixout": 0.1}}).runs[0].recipe.dropout is None  # 0 at training time


def test_paper_tables_run_mixout_without_dropout():
    root = Path(__file__).resolve().parents[1] / "experiments"
    for path in (root / "zhang2021" / "table2.toml", root / "mosbach2021" / "table1.toml"):
        for scale in ("cpu", "paper"):
            runs = load_experiment(path, scale=scale).runs
            assert {r.recipe.dropout for r in runs if r.recipe.mixout > 0} == {0.0}, path


def test_seed_table_counts_mean_the_same_on_every_axis():
    """`sample = 3` is a count like `init = 2`: seeds 1..3, not the single seed 3."""
    exp = parse(seeds={"init": 2, "order": 2, "sample": 3}, recipes={"a": {}})
    triples = {(r.init_seed, r.order_seed, r.sample_seed) for r in exp.runs}
    assert len(exp.runs) == 12
    assert {t[2] for t in triples} == {1, 2, 3}
    assert triples == {(i, o, s) for i in (1, 2) for o in (1, 2) for s in (1, 2, 3)}


def test_seed_table_lists_are_explicit_seeds_and_sample_defaults_to_sample_seed():
    exp = parse(seeds={"init": [5], "order": [7, 9], "sample": [3]}, recipes={"a": {}})
    assert {(r.init_seed, r.order_seed, r.sample_seed) for r in exp.runs} == {(5, 7, 3), (5, 9, 3)}
    exp = parse(seeds={"init": 1, "order": 1}, sample_seed=4, recipes={"a": {}})
    assert [r.sample_seed for r in exp.runs] == [4]


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        ({"init": 2, "order": 2, "sample": 0}, "'seeds.sample' = 0; a count must be >= 1"),
        ({"init": [1, 1], "order": 2}, "'seeds.init' = [1, 1] repeats a seed"),
        ({"init": 2, "order": True}, "'seeds.order' = True"),
    ],
)
def test_bad_seed_table_names_the_axis(seeds, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(seeds=seeds)


def test_two_recipes_with_identical_fields_are_an_error_naming_both():
    with pytest.raises(ConfigError, match=r"recipes 'a' and 'b' have identical fields"):
        parse(recipes={"a": {"lr": 3e-5}, "b": {"lr": 3e-5}})
    with pytest.raises(ConfigError, match=r"recipes 'a' and 'c'"):  # equal after defaults are applied
        parse(recipes={"a": {}, "b": {"lr": 1e-5}, "c": {"lr": 2e-5}})
