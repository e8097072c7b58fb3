"""Re-initialise the pooler and the top L encoder blocks (Zhang et al. 2021), and the task head.

Uses the model's own initialiser written out with torch.nn.init: Linear/Embedding weights
~ normal(0, config.initializer_range), biases 0, LayerNorm weight 1 and bias 0. We do not call
`model._init_weights` / `module.apply`: in transformers v5 loaded weights are flagged as
initialised and those calls silently do nothing.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.experiment.spec import ConfigError
from harness.training.recipes import arch


@torch.no_grad()
def reinit_module_(module: nn.Module, std: float, generator: torch.Generator) -> list[str]:
    """Re-initialise every parameter under `module` in place; returns the names it reset."""
    done: list[str] = []
    for mname, sub in module.named_modules():
        own = dict(sub.named_parameters(recurse=False))
        if not own:
            continue
        prefix = f"{mname}." if mname else ""
        if isinstance(sub, nn.Linear | nn.Embedding):
            nn.init.normal_(sub.weight, mean=0.0, std=std, generator=generator)
            if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
                sub.weight[sub.padding_idx].zero_()
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm) or "LayerNorm" in type(sub).__name__:
            if getattr(sub, "weight", None) is not None:
                nn.init.ones_(sub.weight)
            if getattr(sub, "bias", None) is not None:
                nn.init.zeros_(sub.bias)
        else:
            raise ConfigError(
                f"re-init does not know how to initialise {type(sub).__name__} ({prefix or 'module'} with "
                f"{sorted(own)}); set reinit_layers = 0 / reinit_pooler = false for this model"
            )
        done += [prefix + name for name in own]
    return done


def reinit_top_layers(model: nn.Module, n_layers: int, reinit_pooler: bool, init_seed: int) -> list[str]:
    """Reset the pooler (when asked or n_layers > 0) and the top `n_layers` blocks; returns parameter names."""
    std = float(getattr(model.config, "initializer_range", 0.02))
    generator = arch.derived_generator(init_seed, "reinit")
    names: list[str] = []
    pooler = arch.pooler(model)
    if reinit_pooler and pooler is None:
        raise ConfigError(
            f"recipe field 'reinit_pooler' = true but {type(model).__name__} has no `base_model.pooler`; "
            "set reinit_pooler = false (reinit_layers alone re-initialises the blocks)"
        )
    if pooler is not None and (reinit_pooler or n_layers > 0):
        names += [f"pooler.{n}" for n in reinit_module_(pooler, std, generator)]
    if n_layers > 0:
        layers = arch.encoder_layers(model, f"reinit_layers = {n_layers}")
        if n_layers > len(layers):
            raise ConfigError(
                f"recipe field 'reinit_layers' = {n_layers} but the model has only {len(layers)} encoder layers; "
                f"use at most {len(layers)}"
            )
        for index in range(len(layers) - n_layers, len(layers)):
            names += [f"layer.{index}.{n}" for n in reinit_module_(layers[index], std, generator)]
    return names


def init_head(model: nn.Module, init_seed: int) -> list[str]:
    """Initialise the task head (everything outside base_model) from `init_seed` with the model's initialiser."""
    std = float(getattr(model.config, "initializer_range", 0.02))
    generator = torch.Generator().manual_seed(init_seed)
    names: list[str] = []
    for name in arch.head_module_names(model):
        names += [f"{name}.{n}" for n in reinit_module_(getattr(model, name), std, generator)]
    return names
