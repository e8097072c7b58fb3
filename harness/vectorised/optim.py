"""AdamW for K stacked runs in multi-tensor form: every run's update of every parameter in a few kernels.

The same formula as harness.recipes.optim.AdamW (decoupled WD, prior WD toward w0, bias correction
switch), applied to the flat [K, P] parameter buffer with per-element vectors for what the parameter
groups set (LLRD lr multiplier, weight decay, prior WD) and a per-run [K] learning rate. Gradients are
clipped by each run's own global norm, as torch.nn.utils.clip_grad_norm_ on that run alone. A run whose
`active` flag is off (diverged, stopped) is frozen: its gradient is zeroed and its lr is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Hyper:
    betas: tuple[float, float]
    eps: float
    bias_correction: bool
    grad_clip: float  # 0 = no clipping


class StackedAdamW:
    def __init__(
        self,
        flat: torch.Tensor,
        hyper: Hyper,
        lr_scale: torch.Tensor,
        weight_decay: torch.Tensor | None = None,
        prior_wd: torch.Tensor | None = None,
        prior: torch.Tensor | None = None,
    ) -> None:
        """flat [K, P] parameters (updated in place); lr_scale, weight_decay, prior_wd [P]; prior [K, P] = w0."""
        if prior_wd is not None and prior is None:
            raise ValueError("StackedAdamW: prior_wd needs the prior weights w0")
        self.flat, self.hyper = flat, hyper
        self.lr_scale = lr_scale
        self.weight_decay, self.prior_wd, self.prior = weight_decay, prior_wd, prior
        self.exp_avg = torch.zeros_like(flat)
        self.exp_avg_sq = torch.zeros_like(flat)
        self.t = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """One update. grad [K, P] (modified in place), lr [K], active [K] bool. Returns each run's grad norm [K]
        before clipping (a device tensor: no host sync)."""
        beta1, beta2 = self.hyper.betas
        self.t += 1
        t, p = self.t, self.flat
        grad.masked_fill_(~active[:, None], 0.0)
        norm = torch.linalg.vector_norm(grad, dim=1)
        if self.hyper.grad_clip > 0:
            coef = (self.hyper.grad_clip / (norm + 1e-6)).clamp(max=1.0)
            grad.mul_(coef[:, None])
        lr_el = (lr * active)[:, None] * self.lr_scale[None, :]
        if self.prior_wd is not None:
            pull = p - self.prior  # w_old - w0, before any change this step
        if self.weight_decay is not None:
            p.mul_(1 - lr_el * self.weight_decay)
        if self.prior_wd is not None:
            p.sub_(lr_el * self.prior_wd * pull)
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if self.hyper.bias_correction:
            step_size = lr_el / (1 - beta1**t)
            denom = (self.exp_avg_sq.sqrt() / (1 - beta2**t) ** 0.5).add_(self.hyper.eps)
        else:
            step_size = lr_el
            denom = self.exp_avg_sq.sqrt().add_(self.hyper.eps)
        p.sub_(step_size * (self.exp_avg / denom))
        return norm
