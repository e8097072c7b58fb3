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

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from harness.training import hashdropout


@dataclass(frozen=True)
class Layout:
    """Where each named parameter sits in the flat [K, P] buffer (in `named_parameters` order)."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    size: int

    @staticmethod
    def of(model: nn.Module) -> Layout:
        named = list(model.named_parameters())
        offsets, at = [], 0
        for _, param in named:
            offsets.append(at)
            at += param.numel()
        return Layout(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named), tuple(offsets), at)

    def slice_of(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + math.prod(self.shapes[i]))


def stack_parameters(models: list[nn.Module], layout: Layout, device: torch.device) -> torch.Tensor:
    """The flat [K, P] float32 buffer holding every model's parameters in `layout` order."""
    flat = torch.empty(len(models), layout.size, dtype=torch.float32)
    for k, model in enumerate(models):
        named = dict(model.named_parameters())
        for name, offset, shape in zip(layout.names, layout.offsets, layout.shapes, strict=True):
            flat[k, offset : offset + math.prod(shape)] = named[name].detach().reshape(-1).float()
    return flat.to(device)


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

    def __init__(self, models: list[nn.Module], device: torch.device) -> None:
        self.template = models[0]
        self.draws = hashdropout.draws_of(self.template)
        self.buffers, self.buffer_dims = _stack_buffers(models, device)

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


def _stack_buffers(models: list[nn.Module], device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Buffers as vmap inputs: one shared tensor when every run holds the same (position ids), else [K, ...]
    (Mixout's targets)."""
    buffers, dims = {}, {}
    per_model = [dict(m.named_buffers()) for m in models]
    for name, first in per_model[0].items():
        same = all(torch.equal(first, other[name]) for other in per_model[1:])
        buffers[name] = (first if same else torch.stack([other[name] for other in per_model])).to(device)
        dims[name] = None if same else 0
    return buffers, dims
