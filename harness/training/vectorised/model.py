"""K runs of one model as one vmapped forward: the loop's own modules, called with stacked parameters.

`torch.func.functional_call` runs the template model's modules (the HF encoder with its HashDropout,
hashed attention and MixoutLinear layers, exactly as the loop runs them) with parameters and buffers
taken from stacked [K, ...] tensors, and `torch.func.vmap` maps it over the run axis: every matmul is
one batched kernel for all K runs, and every mask is the run's own (its key is a per-run tensor inside
the vmap). Any family the loop trains can be stacked this way; `harness.experiment.engines` lists the
families whose equivalence with the loop is tested. The parameters of all runs live in one flat [K, P]
buffer; each named parameter is a leaf view of it, so the optimiser updates every run in a few kernels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from harness.training import hashdropout
from harness.training.vectorised.vocab import VocabOrder


@dataclass(frozen=True)
class Layout:
    """Where each named parameter sits in the flat [K, P] buffer (in `named_parameters` order)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    size: int

    @staticmethod
    def of(model: nn.Module, last: str | None = None) -> Layout:
        """named_parameters order, `last` (a parameter name) moved to the end of the buffer."""
        named = list(model.named_parameters())
        named.sort(key=lambda item: item[0] == last)  # stable: only `last` moves
        offsets, at = [], 0
        for _, param in named:
            offsets.append(at)
            at += param.numel()
        return Layout(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named), tuple(offsets), at)

    def slice_of(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + math.prod(self.shapes[i]))


@dataclass
class StackedRuns:
    """A group's models stacked: the first (the template whose modules every run goes through), where each
    parameter sits, every run's parameters as one flat [K, P] device buffer, and each run's buffers."""

    template: nn.Module
    layout: Layout
    flat: torch.Tensor
    buffers: list[dict[str, torch.Tensor]]


def stack_runs(
    models: Iterable[nn.Module], k: int, device: torch.device, vocab: VocabOrder | None = None
) -> StackedRuns:
    """Each model's parameters written into its row of the [K, P] float32 device buffer as the model comes: the
    host holds one model at a time, never a [K, P] copy. With `vocab` the input embedding goes last, its rows
    renumbered (harness/training/vectorised/vocab.py)."""
    models = iter(models)
    template = next(models)
    layout = Layout.of(template, last=vocab.name if vocab else None)
    flat = torch.empty(k, layout.size, dtype=torch.float32, device=device)
    buffers = []
    count = 0
    for row, model in enumerate(itertools.chain([template], models)):
        named = dict(model.named_parameters())
        for name, offset, shape in zip(layout.names, layout.offsets, layout.shapes, strict=True):
            value = named[name].detach()
            if vocab is not None and name == vocab.name:
                value = value[vocab.order]
            flat[row, offset : offset + math.prod(shape)] = value.reshape(-1)
        buffers.append(dict(model.named_buffers()))
        count = row + 1
    if count != k:
        raise ValueError(f"stack_runs: {count} models for a group of {k}")
    return StackedRuns(template, layout, flat, buffers)


def leaf_views(flat: torch.Tensor, layout: Layout, requires_grad: bool = True) -> dict[str, torch.Tensor]:
    """name -> a [K, *shape] leaf view of `flat` (updating flat in place updates the views)."""
    k = flat.shape[0]
    views = {}
    for name, offset, shape in zip(layout.names, layout.offsets, layout.shapes, strict=True):
        view = flat[:, offset : offset + math.prod(shape)].view(k, *shape)
        views[name] = view.requires_grad_(requires_grad)
    return views


def padding_rows(model: nn.Module, layout: Layout) -> list[slice]:
    """The flat slices of embedding rows at `padding_idx`: nn.Embedding never updates them from a gradient."""
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            where = layout.slice_of(f"{name}.weight" if name else "weight")
            width = module.embedding_dim
            start = where.start + module.padding_idx * width
            rows.append(slice(start, start + width))
    return rows


class StackedModel:
    """The template model's forward, vmapped over K runs' parameters (and, in training, their inputs and masks)."""

    def __init__(self, template: nn.Module, buffers: list[dict[str, torch.Tensor]], device: torch.device) -> None:
        self.template = template
        self.draws = hashdropout.draws_of(self.template)
        self.buffers, self.buffer_dims = _stack_buffers(buffers, device)

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the runs at `rows` (a run dropped from the batch takes its own buffers with it)."""
        for name, dim in self.buffer_dims.items():
            if dim == 0:
                self.buffers[name] = self.buffers[name][rows]

    def logits(
        self, params: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor], runs: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits [K, B, C]. Training (`runs` = the K runs' keys at this step): inputs [K, B, T] per run, masks
        drawn. Eval (`runs` None): inputs [B, T] shared by every run, no dropout, no Mixout."""
        training = runs is not None
        self.template.train(training)

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: dict[str, torch.Tensor], run: Any):
            if run is not None:
                self.draws.set_run(run)
            return functional_call(self.template, (p, b), args=(), kwargs=x).logits

        in_dims = (0, self.buffer_dims, 0 if training else None, 0 if training else None)
        try:
            return vmap(one, in_dims=in_dims)(params, self.buffers, inputs, runs)
        finally:
            self.draws.set_run(0)  # drop the vmap's per-run key: it is dead outside the call


def _stack_buffers(
    per_model: list[dict[str, torch.Tensor]], device: torch.device
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Buffers as vmap inputs: one shared tensor when every run holds the same (position ids), else [K, ...]
    (Mixout's targets)."""
    buffers, dims = {}, {}
    for name, first in per_model[0].items():
        same = all(torch.equal(first, other[name]) for other in per_model[1:])
        buffers[name] = (first if same else torch.stack([other[name] for other in per_model])).to(device)
        dims[name] = None if same else 0
    return buffers, dims
