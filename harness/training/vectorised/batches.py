"""Every run's training batches as padded [K, n, L] tensors plus a per-step index plan, and eval chunks.

Built once on the host before training, moved to the device once: inside a step the engine only
indexes device tensors (no collation, no host sync). Step widths are known in advance from the lengths.
The model gets exactly the inputs the loop gives it: every field the tokenizer produced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.experiment.spec import ConfigError
from harness.training.loop import Encoded, eval_batch_size


@dataclass
class Batches:
    """Every run's training examples padded to [K, n, L] per input field, and the per-step index plan."""

    inputs: dict[str, torch.Tensor]  # field -> [K, n, L] (input_ids, attention_mask, token_type_ids, ...)
    labels: torch.Tensor  # [K, n]
    order: torch.Tensor  # [steps, K, batch_size] example indices (a short batch padded with its first index)
    sizes: list[int]  # examples in each step's batch (the same for every run: same n, same batch size)
    widths: list[int]  # tokens of each step's longest example over all runs
    tokens: np.ndarray  # [K] real tokens seen by each run over the whole plan
    lengths: np.ndarray  # [K, n] tokens of each run's examples
    plan: np.ndarray  # the order on the host: [steps, K, batch_size]

    def at(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Step `step`'s (from 1) inputs [K, B, T] and labels [K, B]."""
        size, width = self.sizes[step - 1], self.widths[step - 1]
        idx = self.order[step - 1, :, :size]
        runs = torch.arange(idx.shape[0], device=idx.device)[:, None]
        return {key: value[runs, idx][:, :, :width] for key, value in self.inputs.items()}, self.labels[runs, idx]

    def select(self, rows: torch.Tensor) -> Batches:
        """Only the runs at `rows`; each step padded to the longest example of the runs that remain."""
        host = rows.cpu().numpy()
        plan, lengths = self.plan[:, host], self.lengths[host]
        return Batches(
            {key: value[rows] for key, value in self.inputs.items()}, self.labels[rows], self.order[:, rows],
            self.sizes, _widths(lengths, plan, self.sizes), self.tokens[host], lengths, plan,
        )  # fmt: skip


def _widths(lengths: np.ndarray, plan: np.ndarray, sizes: list[int]) -> list[int]:
    """Each step's longest example over the runs of `plan` [steps, K, batch_size]."""
    return [int(np.take_along_axis(lengths, plan[step, :, :size], axis=1).max()) for step, size in enumerate(sizes)]


def _pad(encoded: Encoded, key: str, width: int) -> list[list[int]]:
    pad = encoded.pad_id if key == "input_ids" else 0  # as Encoded.batch pads
    return [f[key] + [pad] * (width - len(f["input_ids"])) for f in encoded.features]


def build_batches(sets: list[Encoded], orders: list[list[list[int]]], batch_size: int, device: torch.device) -> Batches:
    n = {len(s) for s in sets}
    if len(n) != 1:
        raise ConfigError(f"train_group: runs have training sets of different sizes {sorted(n)}; set sample_size")
    width = max(len(f["input_ids"]) for s in sets for f in s.features)
    fields = list(sets[0].features[0])
    inputs = {key: torch.tensor([_pad(s, key, width) for s in sets], dtype=torch.long) for key in fields}
    labels = torch.stack([s.labels for s in sets])
    lengths = np.array([[len(f["input_ids"]) for f in s.features] for s in sets])
    steps = len(orders[0])
    order = np.zeros((steps, len(sets), batch_size), dtype=np.int64)
    sizes = []
    tokens = np.zeros(len(sets), dtype=np.int64)
    for step in range(steps):
        size = len(orders[0][step])
        sizes.append(size)
        for k, run_order in enumerate(orders):
            order[step, k, :size] = run_order[step]
            order[step, k, size:] = run_order[step][0]
        tokens += np.take_along_axis(lengths, order[step, :, :size], axis=1).sum(axis=1)
    return Batches(
        {key: value.to(device) for key, value in inputs.items()}, labels.to(device),
        torch.from_numpy(order).to(device), sizes, _widths(lengths, order, sizes), tokens, lengths, order,
    )  # fmt: skip


@dataclass
class EvalSet:
    chunks: list[tuple[dict[str, torch.Tensor], list[int]]]  # (inputs [B, T] per field, example indices)
    encoded: Encoded


def build_eval_set(encoded: Encoded | None, device: torch.device) -> EvalSet | None:
    """Chunks sorted by length, as harness.training.loop.predict makes them (never dependent on K), on the device."""
    if encoded is None:
        return None
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.features[i]["input_ids"]))
    chunks = []
    size = eval_batch_size(device)
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        batch = encoded.batch(idx)
        chunks.append(({k: v.to(device) for k, v in batch.items() if k != "labels"}, idx))
    return EvalSet(chunks, encoded)
