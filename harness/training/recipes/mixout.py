"""Mixout(p) (Lee et al. 2020): each weight element is swapped for its pre-trained value with probability p.

Training forward uses W_mix = (M * W + (1 - M) * W0 - p * W0) / (1 - p) = W0 + M * (W - W0) / (1 - p)
with M ~ Bernoulli(1 - p) drawn per weight element at every training step from the counter hash, like
dropout (harness/training/hashdropout.py: site `<module path>.mixout`), so E[W_mix] = W and a run draws
the same masks in the loop and in a seed group. At eval (module.eval()) the layer is the plain Linear
with W. Only weights mix; biases do not (as in the official code).

Differences from the official MixLinear (asappresearch/revisit-bert-finetuning, mixout.py), on purpose:
- the mask is per element, as in the paper's definition; the official code draws one mask row and
  repeats it over the output units (whole input columns mix together);
- gradients come from autograd, d W_mix / d W = M / (1 - p); the official backward returns M * grad,
  without the 1 / (1 - p) factor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.training import hashdropout


class MixoutLinear(nn.Linear):
    """An nn.Linear (same parameters, same names) that mixes its weight toward `target` while training."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.0) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if not 0 <= p < 1:
            raise ValueError(f"mixout probability p = {p} must be in [0, 1)")
        self.p = p
        # Not persistent: checkpoints keep the plain Linear's keys and load into an unmodified model.
        self.register_buffer("target", self.weight.detach().clone(), persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear, p: float) -> MixoutLinear:
        """Wrap `linear`, sharing its Parameters; its current weight becomes the mixing target."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight, new.bias = linear.weight, linear.bias
        if not 0 <= p < 1:
            raise ValueError(f"mixout probability p = {p} must be in [0, 1)")
        new.p = p
        new.register_buffer("target", linear.weight.detach().clone(), persistent=False)
        new.train(linear.training)
        return new

    def mixed_weight(self) -> torch.Tensor:
        if not self.training or self.p == 0:
            return self.weight
        draws = hashdropout.draws_of(self)
        site = f"{hashdropout.site_of(self)}.mixout"
        mask = draws.keep(site, tuple(self.weight.shape), self.p, self.weight.device, by_example=False)
        return self.target + mask * (self.weight - self.target) / (1 - self.p)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.linear(input, self.mixed_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mixout={self.p}"


def apply_mixout(model: nn.Module, p: float) -> list[str]:
    """Replace every nn.Linear under `model` (the task head included, as in Zhang et al.'s code) in place.

    The current weights, i.e. the pre-trained ones (and the fresh head / re-initialised layers), become the
    targets. Returns the names of the replaced modules.
    """
    replaced: list[str] = []
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear) and not isinstance(child, MixoutLinear):
                setattr(parent, name, MixoutLinear.from_linear(child, p))
                replaced.append(f"{parent_name}.{name}" if parent_name else name)
    return replaced
