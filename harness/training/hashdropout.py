"""Dropout and Mixout masks from the counter hash (harness/training/hashrng.py), in the loop and in seed groups.

One definition of a run: a mask is a function of (order_seed, step, site, element coordinates) only, so
a run draws the same masks trained alone in the loop, alone in the seed-group engine or in a group of K.
`install(model, order_seed)` swaps every `nn.Dropout` for a `HashDropout`, names each site by its module
path (the same names in both engines: the engine runs the same modules), routes attention through
`attention` below (probabilities dropped by the hash; SDPA when nothing is dropped) and returns the
model's `Draws`. The loop calls `draws.at(step, first_row)` before each forward; the engine calls
`draws.set_run(keys)` with the K runs' keys inside its vmapped forward.

Keys: `run` = hash(order_seed, step); per mask, a site salt from the module path, the call of that
site within the forward (a head that applies one dropout module twice draws twice) and the forward
within the step (R3F's noised second forward draws anew). Elements are hashed by coordinates, their
row offset by `first_row` (micro-batches keep the masks of the whole batch for tensors whose first
axis is the example).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from harness.training import hashrng

ATTENTION = "harness"  # the attention implementation name registered with transformers


class Draws:
    """What the masks of the model's current forward are keyed by (one object per model, shared by its modules)."""

    def __init__(self, order_seed: int) -> None:
        self.order_seed = order_seed
        self.run: int | torch.Tensor = hashrng.run_key(order_seed, 0)
        self.first_row = 0
        self.forward = -1
        self.calls: dict[str, int] = {}

    def at(self, step: int, first_row: int = 0) -> None:
        """Before the forward(s) of training step `step` on the rows from `first_row` (a micro-batch)."""
        self.set_run(hashrng.run_key(self.order_seed, step), first_row)

    def set_run(self, run: int | torch.Tensor, first_row: int = 0) -> None:
        """The run key of the coming forward(s): an int (the loop) or each run's key (inside the engine's vmap)."""
        self.run, self.first_row, self.forward = run, first_row, -1

    def start_forward(self, *_: Any) -> None:
        """A forward pre-hook of the root module: a new forward of the same step draws new masks."""
        self.forward += 1
        self.calls = {}

    def keep(
        self, site: str, shape: tuple[int, ...], p: float, device: torch.device, by_example: bool = True
    ) -> torch.Tensor:
        """The keep mask (bool, Bernoulli(1 - p)) of the next call of `site` in this forward.

        by_example: axis 0 is the example (offset by the micro-batch's first row); False for a weight mask.
        """
        call = self.calls.get(site, 0)
        self.calls[site] = call + 1
        key = hashrng.mask_key(self.run, hashrng.site_key(site, call, max(self.forward, 0)))
        return hashrng.keep(key, shape, p, self.first_row if by_example else 0, device)

    def drop(self, x: torch.Tensor, site: str, p: float) -> torch.Tensor:
        """Dropout of `x` at `site`: kept elements scaled by 1 / (1 - p), the others 0."""
        kept = self.keep(site, tuple(x.shape), p, x.device)
        return torch.where(kept, x * (1.0 / (1.0 - p)), torch.zeros((), dtype=x.dtype, device=x.device))


def draws_of(module: nn.Module) -> Draws:
    """The Draws `install` attached to `module` (any module of an installed model)."""
    draws = module.__dict__.get("_harness_draws")
    if draws is None:
        raise RuntimeError(
            f"{type(module).__name__} draws its masks from harness.training.hashdropout; "
            "call hashdropout.install(model, order_seed) on the model first"
        )
    return draws


def site_of(module: nn.Module) -> str:
    return module.__dict__.get("_harness_site", "")


class HashDropout(nn.Dropout):
    """nn.Dropout (same `p`, so code reading `.p` still works) whose masks come from the model's Draws."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return input
        return draws_of(self).drop(input, site_of(self), self.p)


def install(model: nn.Module, order_seed: int) -> Draws:
    """Swap every nn.Dropout of `model` for a HashDropout keyed by `order_seed`; hashed attention dropout."""
    draws = Draws(order_seed)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout) and not isinstance(child, HashDropout):
                setattr(parent, name, HashDropout(child.p))
    for name, module in model.named_modules():
        module.__dict__["_harness_draws"] = draws
        module.__dict__["_harness_site"] = name
    model.register_forward_pre_hook(draws.start_forward)
    for module in model.modules():
        if hasattr(module, "config") and hasattr(module, "_can_set_attn_implementation"):
            _use_hashed_attention(module)
    return draws


def _use_hashed_attention(model: Any) -> None:
    """Attention through `attention` (models on the attention interface); masks through `mask` for every model."""
    if model._can_set_attn_implementation():
        model.set_attn_implementation(ATTENTION)
    else:  # attention written in the model: only its padding mask comes from here
        model.config._attn_implementation_internal = ATTENTION


def attention(
    module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
    attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0, **_: Any,
) -> tuple[torch.Tensor, None]:  # fmt: skip
    """Scaled dot-product attention [B, heads, T, d] -> [B, T, heads, d]; probabilities dropped by the hash.

    With dropout, the explicit softmax, so the dropped probabilities are the hash's (site `<attention
    module>.probs`), not SDPA's own RNG. Without dropout (eval, or p = 0), one fused SDPA kernel on a GPU
    (vmap has batch rules for its CUDA kernels, not for its CPU one) and the same explicit math on a CPU.
    """
    if dropout == 0.0 and query.device.type == "cuda":
        mask = attention_mask.to(query.dtype) if attention_mask is not None else None
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling)
        return out.transpose(1, 2).contiguous(), None
    scale = scaling if scaling is not None else query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.softmax(scores, dim=-1)
    if dropout > 0.0:
        probs = draws_of(module).drop(probs, f"{site_of(module)}.probs", dropout)
    out = torch.matmul(probs.to(value.dtype), value)
    return out.transpose(1, 2).contiguous(), None


def mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """transformers' additive (eager) padding mask, always built: its "no padding, no mask" shortcut reads
    the mask's values (`.all()`), which the engine's vmap cannot do, and a run must not depend on its batch."""
    kwargs["allow_is_bidirectional_skip"] = False
    return eager_mask(*args, **kwargs)


AttentionInterface.register(ATTENTION, attention)
AttentionMaskInterface.register(ATTENTION, mask)
