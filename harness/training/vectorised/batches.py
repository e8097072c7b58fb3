"""Every run's training batches as one padded [K, n, L] tensor plus a per-step index plan, and eval chunks.

Built once on the host before training, moved to the device once: inside a step the engine only
indexes device tensors (no collation, no host sync). Step widths are known in advance from the lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.experiment.spec import ConfigError
from harness.training.loop import Encoded

EVAL_CHUNK = 64  # examples per eval forward, as harness.training.loop.predict: fixed, so padding never depends on K


@dataclass
class Batches:
    """Every run's training examples padded to one [K, n, L] tensor, and the per-step index plan."""

    ids: torch.Tensor
    mask: torch.Tensor
    types: torch.Tensor
    labels: torch.Tensor  # [K, n]
    order: torch.Tensor  # [steps, K, batch_size] example indices (a short batch padded with its first index)
    sizes: list[int]  # examples in each step's batch (the same for every run: same n, same batch size)
    widths: list[int]  # tokens of each step's longest example over all runs
    tokens: np.ndarray  # [K] real tokens seen by each run over the whole plan


def _pad(encoded: Encoded, key: str, width: int, pad: int) -> list[list[int]]:
    return [f.get(key, [0] * len(f["input_ids"])) + [pad] * (width - len(f["input_ids"])) for f in encoded.features]


def build_batches(sets: list[Encoded], orders: list[list[list[int]]], batch_size: int, device: torch.device) -> Batches:
    n = {len(s) for s in sets}
    if len(n) != 1:
        raise ConfigError(f"train_group: runs have training sets of different sizes {sorted(n)}; set sample_size")
    width = max(len(f["input_ids"]) for s in sets for f in s.features)
    ids = torch.tensor([_pad(s, "input_ids", width, s.pad_id) for s in sets], dtype=torch.long)
    mask = torch.tensor([_pad(s, "attention_mask", width, 0) for s in sets], dtype=torch.long)
    types = torch.tensor([_pad(s, "token_type_ids", width, 0) for s in sets], dtype=torch.long)
    labels = torch.stack([s.labels for s in sets])
    lengths = np.array([[len(f["input_ids"]) for f in s.features] for s in sets])
    steps = len(orders[0])
    order = np.zeros((steps, len(sets), batch_size), dtype=np.int64)
    sizes, widths = [], []
    tokens = np.zeros(len(sets), dtype=np.int64)
    for step in range(steps):
        size = len(orders[0][step])
        sizes.append(size)
        for k, run_order in enumerate(orders):
            order[step, k, :size] = run_order[step]
            order[step, k, size:] = run_order[step][0]
        picked = np.take_along_axis(lengths, order[step, :, :size], axis=1)
        widths.append(int(picked.max()))
        tokens += picked.sum(axis=1)
    return Batches(
        ids.to(device), mask.to(device), types.to(device), labels.to(device), torch.from_numpy(order).to(device),
        sizes, widths, tokens,
    )  # fmt: skip


@dataclass
class EvalSet:
    chunks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]]
    encoded: Encoded


def build_eval_set(encoded: Encoded | None, device: torch.device) -> EvalSet | None:
    """Chunks of EVAL_CHUNK examples sorted by length (as harness.training.loop.predict), already on the device."""
    if encoded is None:
        return None
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.features[i]["input_ids"]))
    chunks = []
    for start in range(0, len(order), EVAL_CHUNK):
        idx = order[start : start + EVAL_CHUNK]
        batch = encoded.batch(idx)
        types = batch.get("token_type_ids", torch.zeros_like(batch["input_ids"]))
        chunks.append((batch["input_ids"].to(device), batch["attention_mask"].to(device), types.to(device), idx))
    return EvalSet(chunks, encoded)
