"""`--set key=value` overrides of an experiment file, applied to its table before validation.

Why before: an override is checked by exactly the code that checks the file, so
`--set recipes.standard.lr=-1` fails like `lr = -1` in the file would. Values are
TOML values (`seeds=20`, `bias_correction=false`, `seeds=[1,2]`); anything that is
not valid TOML is taken as a string (`model=/data/minilm`).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

from harness.experiment.spec import ConfigError

# Tables whose keys an override may reach into; everything else is a top-level value.
NESTED = ("defaults", "schedule", "recipes", "early_stop")


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """['a.b=1', 'model=/x'] -> {'a.b': 1, 'model': '/x'} (later wins)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set seeds=20 or --set recipes.base.lr=1e-5")
        out[key] = parse_value(text.strip())
    return out


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A copy of the experiment table with each dotted key set; unknown tables and recipes are errors."""
    out = copy.deepcopy(dict(data))
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) > 1 and parts[0] not in NESTED:
            raise ConfigError(
                f"{where}: --set {key}: only {', '.join(p + '.*' for p in NESTED)} take a dotted key; "
                f"'{parts[0]}' is a top-level value (--set {parts[0]}=...)"
            )
        if parts[0] == "recipes" and len(parts) != 3:
            raise ConfigError(f"{where}: --set {key}: recipe overrides look like recipes.<name>.<field>=value")
        if parts[0] == "recipes" and parts[1] not in out.get("recipes", {}):
            known = ", ".join(out.get("recipes", {})) or "none"
            raise ConfigError(f"{where}: --set {key}: no recipe {parts[1]!r} in the file; recipes: {known}")
        table = out
        for part in parts[:-1]:
            node = table.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: --set {key}: '{part}' is a value, not a table")
            table = node
        table[parts[-1]] = value
    return out
