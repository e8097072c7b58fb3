"""The import graph of harness/: no circles, layers one way, the read side free of the training stack.

Every import counts, at module level or inside a function (a lazy import still ties two modules
together), and `from harness.x import y` counts as importing `harness.x.y` when `y` is a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "harness"

# Top to bottom: a module may import its own layer or a lower one, never a higher one.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("harness.cli", "harness.__main__", "harness.preflight", "harness.importer")),
    ("schedule", ("harness.schedule",)),
    ("pipeline", ("harness.training.pipeline",)),
    ("stages", ("harness.training.stages",)),
    ("train", ("harness.training.loop", "harness.training.vectorised")),
    ("recipes/models", ("harness.training.recipes", "harness.training.models", "harness.training.provenance",
                        "harness.training.device", "harness.training.model_source", "harness.training")),
    ("analysis/report", ("harness.analysis", "harness.report")),
    ("storage", ("harness.storage",)),
    ("experiment", ("harness.experiment", "harness")),
)  # fmt: skip
READ_SIDE = ("harness.analysis", "harness.report")
READ_SIDE_MAY_IMPORT = (
    *READ_SIDE,
    "harness.experiment.spec",
    "harness.experiment.config",
    "harness.experiment.tasks",
    "harness.experiment.data",  # task data without torch: the churn report shows the examples' text
    "harness.experiment.seed_budget",  # the adaptive budget's declaration (spec-level, no torch)
    "harness.experiment.paper",  # the [paper] section: printed numbers and pre-declared claims (no torch)
    "harness.storage.records",
    "harness.storage.safe_files",
    "harness.storage.store",
)
TRAINING_PACKAGES = ("torch", "transformers", "peft", "safetensors", "accelerate")


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file for every module under `root` (a package's __init__ is the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("harness", *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports (harness modules resolved as above, others by their full dotted name)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {  # `if TYPE_CHECKING:` imports never run: annotations, not dependencies
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in known else source)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """harness module -> the harness modules it imports."""
    names = module_names(root)
    known = set(names)
    return {
        name: {m for m in imports_of(name, path, known) if m in known and m != name} for name, path in names.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, deterministic order)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def layer_of(module: str) -> int:
    """Index into LAYERS (0 = top) by the longest matching prefix."""
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    if rank is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")
    return rank


def test_find_cycle_reports_the_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_counts_lazy_and_from_package_imports(tmp_path):
    pkg = tmp_path / "harness"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (pkg / "sub" / "leaf.py").write_text("x = 1\n")
    (pkg / "top.py").write_text("def f():\n    from harness import sub\n    from harness.sub import leaf, x\n")
    graph = import_graph(pkg)
    assert graph["harness.top"] == {"harness.sub", "harness.sub.leaf"}
    assert graph["harness.sub"] == {"harness.sub.leaf"}


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_layers_import_downwards_only():
    wrong = [
        f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in sorted(import_graph().items())
        for b in sorted(targets)
        if layer_of(b) < layer_of(a)
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


@pytest.mark.parametrize("side", READ_SIDE)
def test_read_side_never_imports_the_training_stack(side):
    names = module_names()
    known = set(names)
    wrong = []
    for name, path in names.items():
        if name != side and not name.startswith(side + "."):
            continue
        for target in sorted(imports_of(name, path, known)):
            top = target.partition(".")[0]
            if top in TRAINING_PACKAGES:
                wrong.append(f"{name} imports {target}")
            elif target in known and not target.startswith(READ_SIDE_MAY_IMPORT):
                wrong.append(f"{name} imports {target} (training stack)")
    assert not wrong, "\n".join(wrong)
