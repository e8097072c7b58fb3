"""Parameter-efficient recipes: BitFit (Ben Zaken et al. 2022) and LoRA (Hu et al. 2022, via `peft`)."""

from __future__ import annotations

from torch import nn

from harness.experiment.spec import ConfigError, Recipe
from harness.training.recipes import arch


def apply_bitfit(model: nn.Module) -> None:
    """Train only the bias terms (all of them, LayerNorm biases included) and the task head."""
    head = arch.head_parameter_names(model)
    for name, param in model.named_parameters():
        param.requires_grad_(name in head or name.endswith("bias"))


def apply_lora(model: nn.Module, recipe: Recipe, init_seed: int) -> nn.Module:
    """Inject LoRA adapters in place (peft's default target modules for the model type, e.g. query/value for
    BERT); the pre-trained body is frozen, the adapters and the task head train.

    We use `peft.inject_adapter_in_model`, not `get_peft_model`: the model keeps its class and parameter
    names (plus `lora_A` / `lora_B`), and the head is trained directly instead of through a
    `modules_to_save` copy. The same parameters train either way. The adapters' random init (A; B is 0)
    is drawn from a stream derived from `init_seed`.
    """
    try:
        import peft
    except ImportError as exc:
        raise ConfigError(
            f"recipe '{recipe.name}' sets lora_r = {recipe.lora_r} but `peft` is not installed: "
            "pip install 'harness[peft]' (with torch==2.13.0 pinned in the same command)"
        ) from exc
    import torch

    head_modules = arch.head_module_names(model)
    config = peft.LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout)
    seed = int(torch.randint(2**62, (1,), generator=arch.derived_generator(init_seed, "lora")))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = peft.inject_adapter_in_model(config, model)
    except ValueError as exc:
        raise ConfigError(f"recipe '{recipe.name}': LoRA cannot adapt {type(model).__name__}: {exc}") from exc
    prefixes = tuple(f"{name}." for name in head_modules)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name or name.startswith(prefixes))
    return model
