"""Peak GPU memory of a seed group, estimated before it is launched (no torch: the model's config.json only).

Why: a group that does not fit its GPU used to be found out by an out-of-memory error, which wastes the
attempt (model building, the first steps) before K is halved. With an estimate the scheduler sizes the
groups so that the groups packed on one GPU fit its free memory; the OOM retry stays as the fallback.

The formula, per seed of a BERT-style encoder with P parameters, L layers, hidden H, intermediate I,
A attention heads, batch B and max length T (every tensor the step keeps at its peak):

* state: 16 bytes per parameter: fp32 weights, gradients, Adam's two moments;
* copies: + 4 bytes per parameter for the pre-trained weights kept by prior WD or Mixout,
  + 2 for the bf16 weight copies made each step under `precision = "bf16"`;
* activations (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  section 4.1, with I in place of 4H and 1-byte dropout masks): per token per layer, in bytes,
  fp32: 34 H + 8 I + 9 A T;  bf16 (autocast): 18 H + 4 I + 5 A T;  times B x T x L.

A group of K seeds needs SAFETY x K x (state + copies + activations) bytes; each worker process also holds
a CUDA context and allocator slack (`PROCESS_RESERVE`), counted once per slot of the GPU. Checked against
the H200 measurement in docs/gpu-check.md (MiniLM-L6, B 16, T 64, bf16, K = 64: 32.66 GiB measured; the
formula gives 30.6 GiB before the safety factor, 38.2 GiB with it; tests/test_schedule_memory.py).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.experiment.spec import RunSpec

SAFETY = 1.25  # allocator rounding, the embeddings' and the head's activations, eval forwards
PROCESS_RESERVE = 1 << 30  # bytes per worker process: CUDA context, cuBLAS workspace, allocator slack
STATE_BYTES = 16  # fp32 weights + gradients + Adam m and v, per parameter
PRETRAINED_COPY_BYTES = 4  # prior WD / Mixout: the pre-trained weights stay in memory
BF16_COPY_BYTES = 2  # bf16 weight copies under autocast
ACTIVATION_COEFFICIENTS = {"fp32": (34, 8, 9), "bf16": (18, 4, 5)}  # bytes x (H, I, A*T) per token per layer


@dataclass(frozen=True)
class ModelShape:
    """What the memory of a BERT-style classifier depends on (from its config.json)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int = 2
    num_labels: int = 2

    @property
    def parameters(self) -> int:
        """Embeddings (+ LayerNorm), L encoder layers, pooler, classifier: the BertForSequenceClassification count."""
        h, i = self.hidden_size, self.intermediate_size
        embeddings = (self.vocab_size + self.max_positions + self.type_vocab_size) * h + 2 * h
        layer = 4 * (h * h + h) + (h * i + i) + (i * h + h) + 2 * 2 * h  # Q, K, V, O; FFN in and out; 2 LayerNorms
        return embeddings + self.num_layers * layer + (h * h + h) + (h * self.num_labels + self.num_labels)


@dataclass(frozen=True)
class GroupMemory:
    """The estimate for K seeds, in bytes; `total` includes the safety factor (not the process reserve)."""

    k: int
    parameters: int
    state: int
    copies: int
    activations: int
    total: int

    @property
    def per_seed(self) -> float:
        return self.total / self.k if self.k else 0.0


def group_memory(
    shape: ModelShape, k: int, batch_size: int, seq_len: int, precision: str = "fp32", pretrained_copy: bool = False
) -> GroupMemory:
    """Peak bytes of K seeds of one configuration trained together (module docstring: the formula)."""
    p = shape.parameters
    state = k * STATE_BYTES * p
    copy_bytes = (PRETRAINED_COPY_BYTES if pretrained_copy else 0) + (BF16_COPY_BYTES if precision == "bf16" else 0)
    c_h, c_i, c_a = ACTIVATION_COEFFICIENTS["bf16" if precision == "bf16" else "fp32"]
    per_token_layer = c_h * shape.hidden_size + c_i * shape.intermediate_size + c_a * shape.num_heads * seq_len
    activations = k * batch_size * seq_len * shape.num_layers * per_token_layer
    copies = k * copy_bytes * p
    total = math.ceil(SAFETY * (state + copies + activations))
    return GroupMemory(k, p, state, copies, activations, total)


def max_group_size(shape: ModelShape, batch_size: int, seq_len: int, budget: int, **kw: Any) -> int:
    """The largest K whose estimate fits `budget` bytes (at least 1: one run is tried anyway)."""
    one = group_memory(shape, 1, batch_size, seq_len, **kw).total
    return max(1, budget // one) if one > 0 else 1


def slot_budget(free_bytes: int, runs_per_gpu: int) -> int:
    """Bytes one slot may fill so that `runs_per_gpu` of them fit a GPU with `free_bytes` free."""
    per_gpu = max(1, runs_per_gpu)
    return max(0, (free_bytes - per_gpu * PROCESS_RESERVE) // per_gpu)


# -- from a RunSpec ---------------------------------------------------------------------------------------


def _config_path(model: str) -> Path | None:
    """config.json of a local folder, the packaged model, or a hub id already in the local cache."""
    from harness.experiment.fingerprint import PACKAGED_ALIASES
    from harness.training.model_source import packaged_model_dir

    path = Path(model).expanduser()
    if (path / "config.json").is_file():
        return path / "config.json"
    if model in PACKAGED_ALIASES and (packaged := packaged_model_dir()) is not None:
        return packaged / "config.json"
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "config.json")
    except (ImportError, ValueError):  # no hub client, or not a hub id (HFValidationError is a ValueError)
        return None
    return Path(found) if isinstance(found, str) else None


@functools.cache
def _model_config(model: str) -> dict[str, Any] | None:
    path = _config_path(model)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def model_shape(spec: RunSpec) -> ModelShape | None:
    """The spec's model shape from its config.json; None when the config is not at hand or not BERT-like."""
    config = _model_config(spec.model)
    if config is None:
        return None
    try:
        layers = int(config["num_hidden_layers"])
        return ModelShape(
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            num_layers=min(layers, spec.model_layers) if spec.model_layers else layers,
            num_heads=int(config["num_attention_heads"]),
            intermediate_size=int(config["intermediate_size"]),
            max_positions=int(config.get("max_position_embeddings", 512)),
            type_vocab_size=int(config.get("type_vocab_size", 2)),
            num_labels=_num_labels(spec),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _num_labels(spec: RunSpec) -> int:
    try:
        return spec.task_def.num_labels
    except KeyError:  # an unknown task fails at preflight, not here
        return 2


def _memory_args(spec: RunSpec) -> dict[str, Any]:
    recipe = spec.recipe
    return {
        "batch_size": recipe.batch_size,
        "seq_len": spec.max_seq_length,
        "precision": recipe.precision,
        "pretrained_copy": recipe.prior_wd > 0 or recipe.mixout > 0,
    }


def specs_memory(specs: Sequence[RunSpec]) -> GroupMemory | None:
    """The estimate for these runs (one configuration) trained as one group; None when the model is unknown."""
    shape = model_shape(specs[0]) if specs else None
    return None if shape is None else group_memory(shape, len(specs), **_memory_args(specs[0]))


def max_seeds_for(spec: RunSpec, budget: int | None) -> int | None:
    """How many seeds of `spec`'s configuration fit `budget` bytes as one group (None: no limit known)."""
    shape = model_shape(spec) if budget is not None else None
    if shape is None or budget is None:
        return None
    return max_group_size(shape, budget=budget, **_memory_args(spec))
