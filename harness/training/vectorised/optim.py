"""AdamW for K stacked runs in multi-tensor form: every run's update of every parameter in a few kernels.

The same formula as harness.training.recipes.optim.AdamW (decoupled WD, prior WD toward w0, bias correction
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
        if prior_wd is not None and weight_decay is not None:
            raise ValueError("StackedAdamW: weight_decay and prior_wd together are ambiguous (as in Recipe); give one")
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
        lr_k = (lr * active)[:, None]  # [K, 1]: frozen runs get lr 0
        # At most one [K, P] temporary at a time (K x P is the big axis: 64 MiniLM runs = 1.5e9 floats).
        if self.prior_wd is not None:
            pull = p - self.prior  # w_old - w0, before any change this step
            p.sub_(pull.mul_(self.lr_scale * self.prior_wd).mul_(lr_k))
            del pull
        if self.weight_decay is not None:
            factor = (lr_k * (self.lr_scale * self.weight_decay)).neg_().add_(1.0)
            p.mul_(factor)
            del factor
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = self.exp_avg_sq.sqrt()
        if self.hyper.bias_correction:
            denom.div_((1 - beta2**t) ** 0.5)
            lr_k = lr_k / (1 - beta1**t)
        update = torch.div(self.exp_avg, denom.add_(self.hyper.eps), out=denom)
        p.sub_(update.mul_(self.lr_scale).mul_(lr_k))
        return norm
