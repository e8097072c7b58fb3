"""R3F (Aghajanyan et al. 2021): a symmetric-KL penalty between outputs on clean and noised embeddings.

loss += r3f_lambda * SKL, with SKL = [KL(P_clean || P_noisy) + KL(P_noisy || P_clean)] summed over
classes and examples, divided by the batch size (fairseq's `_get_symm_kl`); both passes keep their
gradients. The noise is added to the word embeddings (position / token-type embeddings are added by the
model afterwards): uniform(-eps, eps), or normal with standard deviation eps. Regression heads (one
output) use the mean squared difference of the two outputs instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.experiment.spec import Recipe

_PASSED_ON = ("attention_mask", "token_type_ids", "position_ids")


def sample_noise(like: torch.Tensor, kind: str, eps: float) -> torch.Tensor:
    """Noise shaped like `like` from the global RNG (seeded by the run's order seed)."""
    if kind == "uniform":
        return torch.empty_like(like).uniform_(-eps, eps)
    if kind == "normal":
        return torch.randn_like(like) * eps
    raise ValueError(f"r3f_noise = {kind!r}; allowed: uniform, normal")


def symmetric_kl(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """KL(softmax a || softmax b) + KL(softmax b || softmax a), summed, divided by the batch size."""
    log_a = F.log_softmax(logits_a.float(), dim=-1)
    log_b = F.log_softmax(logits_b.float(), dim=-1)
    kl_ab = F.kl_div(log_b, log_a, reduction="sum", log_target=True)  # KL(a || b)
    kl_ba = F.kl_div(log_a, log_b, reduction="sum", log_target=True)  # KL(b || a)
    return (kl_ab + kl_ba) / logits_a.size(0)


def regularization_loss(model: nn.Module, batch: dict, logits: torch.Tensor, recipe: Recipe) -> torch.Tensor | None:
    """The extra loss term of the recipe (R3F), or None when it has none. `logits` are the clean outputs."""
    if recipe.r3f_lambda == 0:
        return None
    embeds = model.get_input_embeddings()(batch["input_ids"])
    noised = embeds + sample_noise(embeds, recipe.r3f_noise, recipe.r3f_eps)
    extra = {k: batch[k] for k in _PASSED_ON if k in batch}
    noisy_logits = model(inputs_embeds=noised, **extra).logits
    if logits.size(-1) == 1:
        penalty = F.mse_loss(noisy_logits.float(), logits.float())
    else:
        penalty = symmetric_kl(logits, noisy_logits)
    return recipe.r3f_lambda * penalty
