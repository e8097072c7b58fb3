"""AdamW for K stacked runs in multi-tensor form: every run's update of every parameter in a few kernels.

The same formula as harness.training.recipes.optim.AdamW (decoupled WD, prior WD toward w0, bias correction
switch), applied to the flat [K, P] parameter buffer with per-element vectors for what the parameter
groups set (LLRD lr multiplier, weight decay, prior WD) and a per-run [K] learning rate. Gradients are
clipped by each run's own global norm, as torch.nn.utils.clip_grad_norm_ on that run alone. A run whose
`active` flag is off (diverged, stopped) is frozen: its gradient is zeroed and its lr is 0.

Memory traffic is what a step costs at K x P elements (64 MiniLM runs: 1.5e9 floats), so nothing [K, P] is
allocated per step: backward writes every gradient into one flat buffer (`grad`, whose views are the
parameters' .grad) and the update works in one persistent scratch buffer.
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
        trained: int | None = None,
    ) -> None:
        """flat [K, P] parameters (updated in place); lr_scale, weight_decay, prior_wd [P]; prior [K, P] = w0.
        `trained`: Adam runs on the columns [0, trained) only; the others have a zero gradient at every step
        (embedding rows no batch uses: harness/training/vectorised/vocab.py), so only weight decay moves them."""
        if prior_wd is not None and prior is None:
            raise ValueError("StackedAdamW: prior_wd needs the prior weights w0")
        if prior_wd is not None and weight_decay is not None:
            raise ValueError("StackedAdamW: weight_decay and prior_wd together are ambiguous (as in Recipe); give one")
        self.flat, self.hyper = flat, hyper
        decay = None if weight_decay is None else lr_scale * weight_decay  # per element, times the run's lr
        self.n = flat.shape[1] if trained is None else trained
        if decay is not None and self.n < flat.shape[1] and not bool((decay[self.n :] == decay[self.n]).all()):
            self.n = flat.shape[1]  # the untrained columns decay at different rates: train them all
        self.lr_scale = lr_scale[: self.n]
        self.decay_rate = None if decay is None else decay[: self.n]
        self.tail_decay = None if decay is None or self.n == flat.shape[1] else decay[self.n : self.n + 1]
        self.pull_rate = None if prior_wd is None else (lr_scale * prior_wd)[: self.n]
        self.prior = prior if prior is None or self.n == flat.shape[1] else prior[:, : self.n].clone()
        self.grad = torch.zeros_like(flat)  # the parameters' .grad are views of it (the engine sets them)
        self.exp_avg = flat.new_zeros(flat.shape[0], self.n)
        self.exp_avg_sq = flat.new_zeros(flat.shape[0], self.n)
        self.work = flat.new_empty(flat.shape[0], self.n)
        self.t = 0

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the runs at `rows` (the others leave the batch): every [K, ...] buffer keeps those rows."""
        self.flat, self.exp_avg, self.exp_avg_sq = self.flat[rows], self.exp_avg[rows], self.exp_avg_sq[rows]
        if self.prior is not None:
            self.prior = self.prior[rows]
        self.grad = torch.zeros_like(self.flat)
        self.work = torch.empty_like(self.exp_avg)

    def zero_grad(self) -> None:
        """Zero the trained columns' gradients before backward adds into them (the others stay zero)."""
        self.grad[:, : self.n].zero_()

    @torch.no_grad()
    def step(self, lr: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """One update from the gradients in `grad` (modified in place). lr [K], active [K] bool. Returns each
        run's grad norm [K] before clipping (a device tensor: no host sync)."""
        beta1, beta2 = self.hyper.betas
        self.t += 1
        t, whole, work = self.t, self.flat, self.work
        p, grad = whole[:, : self.n], self.grad[:, : self.n]
        grad.masked_fill_(~active[:, None], 0.0)
        norm = torch.linalg.vector_norm(grad, dim=1)
        if self.hyper.grad_clip > 0:
            coef = (self.hyper.grad_clip / (norm + 1e-6)).clamp(max=1.0)
            grad.mul_(coef[:, None])
        lr_k = (lr * active)[:, None]  # [K, 1]: frozen runs get lr 0
        if self.pull_rate is not None:
            assert self.prior is not None
            torch.sub(p, self.prior, out=work)  # w_old - w0, before any change this step
            p.sub_(work.mul_(self.pull_rate).mul_(lr_k))
        if self.decay_rate is not None:
            p.mul_(torch.mul(self.decay_rate, lr_k, out=work).neg_().add_(1.0))
        if self.tail_decay is not None:  # one rate for all untrained columns: the same factor, [K, 1] wide
            whole[:, self.n :].mul_(torch.mul(self.tail_decay, lr_k).neg_().add_(1.0))
        self.exp_avg.lerp_(grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = torch.sqrt(self.exp_avg_sq, out=work)
        if self.hyper.bias_correction:
            denom.div_((1 - beta2**t) ** 0.5)
            lr_k = lr_k / (1 - beta1**t)
        update = torch.div(self.exp_avg, denom.add_(self.hyper.eps), out=work)
        p.sub_(update.mul_(self.lr_scale).mul_(lr_k))
        return norm
