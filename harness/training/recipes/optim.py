"""Adam with decoupled weight decay, a bias-correction switch (off = BERTAdam) and prior weight decay.

One step for a parameter w with gradient g, group lr, decay lambda, prior decay mu, t = step count:

    w  <- w - lr * lambda * w                  (decoupled weight decay, as torch.optim.AdamW)
    w  <- w - lr * mu * (w_old - w0)           (prior WD, w0 = value when the optimiser was built;
                                                w_old = the weight before this step, as Zhang et al.'s PriorWD)
    m  <- beta1 * m + (1 - beta1) * g
    v  <- beta2 * v + (1 - beta2) * g^2
    bias_correction:      w <- w - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
    no bias correction:   w <- w - lr * m / (sqrt(v) + eps)            (BERTAdam)

With bias_correction=True and mu = 0 this is torch.optim.AdamW (same operation order). Parameters
whose grad is None are skipped entirely (no decay, no state), as torch does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from harness.experiment.spec import Recipe
from harness.training.recipes.llrd import parameter_groups


class AdamW(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        prior_wd: float = 0.0,
        bias_correction: bool = True,
        foreach: bool = True,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or prior_wd < 0:
            raise ValueError(
                f"lr, eps, weight_decay, prior_wd must be >= 0, got {lr}, {eps}, {weight_decay}, {prior_wd}"
            )
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            prior_wd=prior_wd,
            bias_correction=bias_correction,
            foreach=foreach,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:  # w0 for prior WD: the weights at build time
            if group["prior_wd"] > 0:
                for p in group["params"]:
                    self.state[p]["prior"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update; multi-tensor (torch._foreach_*) unless the group says foreach=False."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            live = [p for p in group["params"] if p.grad is not None]
            for p in live:
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
            if not group.get("foreach", True):
                for p in live:
                    self._update_one(p, group)
                continue
            by_step: dict[int, list[torch.Tensor]] = {}  # one fused update per step count (normally one)
            for p in live:
                by_step.setdefault(self.state[p]["step"], []).append(p)
            for t, params in by_step.items():
                self._update_many(params, group, t)
        return loss

    def _update_many(self, params: list[torch.Tensor], group: dict[str, Any], t: int) -> None:
        """The formula above over a list of tensors: ~10 multi-tensor kernels per step, not ~8 per tensor."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grads = [p.grad for p in params]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        exp_avg_sqs = [self.state[p]["exp_avg_sq"] for p in params]
        if group["prior_wd"] > 0:
            pulls = torch._foreach_sub(params, [self.state[p]["prior"] for p in params])  # w_old - w0
        if group["weight_decay"] > 0:
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
        if group["prior_wd"] > 0:
            torch._foreach_add_(params, pulls, alpha=-lr * group["prior_wd"])
        torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sqs)
        if group["bias_correction"]:
            step_size = lr / (1 - beta1**t)
            torch._foreach_div_(denom, (1 - beta2**t) ** 0.5)
        else:
            step_size = lr
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, exp_avgs, denom, value=-step_size)

    def _update_one(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """The per-tensor reference of the same formula (foreach=False)."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        grad, state = p.grad, self.state[p]
        t = state["step"]
        if group["prior_wd"] > 0:
            pull = p - state["prior"]  # w_old - w0, before any change this step
        if group["weight_decay"] > 0:
            p.mul_(1 - lr * group["weight_decay"])
        if group["prior_wd"] > 0:
            p.add_(pull, alpha=-lr * group["prior_wd"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["bias_correction"]:
            step_size = lr / (1 - beta1**t)
            denom = (exp_avg_sq.sqrt() / (1 - beta2**t) ** 0.5).add_(eps)
        else:
            step_size = lr
            denom = exp_avg_sq.sqrt().add_(eps)
        p.addcdiv_(exp_avg, denom, value=-step_size)


def base_lr(model: nn.Module, recipe: Recipe) -> float:
    """recipe.lr, or head_warmup_lr (default lr) while set_trainable_phase has the model in its head phase."""
    if getattr(model, "_harness_phase", "full") == "head":
        return recipe.head_warmup_lr or recipe.lr
    return recipe.lr


def build_optimizer(model: nn.Module, recipe: Recipe) -> AdamW:
    """AdamW over the currently trainable parameters, grouped for weight decay and LLRD (see llrd.py).

    Prior WD captures w0 now: call it right after prepare_model (and again at a phase change, when the
    newly unfrozen body still holds its pre-trained values).
    """
    groups = parameter_groups(model, recipe, base_lr(model, recipe))
    if not groups:
        raise ValueError("build_optimizer: the model has no trainable parameters")
    return AdamW(
        groups,
        lr=base_lr(model, recipe),
        betas=(recipe.adam_beta1, recipe.adam_beta2),
        eps=recipe.adam_eps,
        bias_correction=recipe.bias_correction,
    )
