"""Fine-tuning recipes from Zhang et al. 2021, Mosbach et al. 2021, Dodge et al. 2020 (and R3F, LP-FT, PET).

The training loop reaches them through three hooks (hooks.py), in this order:

    built = build_model(spec, tokenizer, load_stages)  # cloze or classifier, stage encoders, head from init_seed,
                                                       # then prepare_model: dropout, re-init, Mixout, BitFit / LoRA
    updates = Updates(model, recipe, total)            # AdamW / BERTAdam, WD, prior WD, LLRD groups, warm-up + decay
    for step in range(total):
        updates.begin(step)                            # LP-FT head warm-up: new optimiser at a phase change
        loss = training_loss(model, batch, recipe)     # model loss (+ R3F penalty)
        loss.backward(); updates.apply()               # clip, step, schedule, zero_grad

Each piece behind them is a small function with its own test (optim.py, llrd.py, reinit.py, mixout.py, ...).
"""

from harness.training.recipes.head_warmup import phase_at, set_trainable_phase
from harness.training.recipes.hooks import BuiltModel, Updates, build_model, training_loss
from harness.training.recipes.llrd import parameter_groups
from harness.training.recipes.mixout import MixoutLinear, apply_mixout
from harness.training.recipes.optim import AdamW, build_optimizer
from harness.training.recipes.prepare import prepare_model, run_notes, set_dropout
from harness.training.recipes.r3f import regularization_loss, symmetric_kl
from harness.training.recipes.reinit import init_head, reinit_top_layers
from harness.training.recipes.schedule import build_lr_scheduler, linear_warmup_decay, total_training_steps

__all__ = [
    "AdamW",
    "BuiltModel",
    "MixoutLinear",
    "Updates",
    "apply_mixout",
    "build_lr_scheduler",
    "build_model",
    "build_optimizer",
    "init_head",
    "linear_warmup_decay",
    "parameter_groups",
    "phase_at",
    "prepare_model",
    "regularization_loss",
    "reinit_top_layers",
    "run_notes",
    "set_dropout",
    "set_trainable_phase",
    "symmetric_kl",
    "total_training_steps",
    "training_loss",
]
