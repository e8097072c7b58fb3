"""Fine-tuning recipes from Zhang et al. 2021, Mosbach et al. 2021, Dodge et al. 2020 (and R3F, LP-FT).

Each piece is a small function the training loop calls, in this order:

    init_head(model, init_seed)                       # new head from the init seed
    model = prepare_model(model, recipe, init_seed=...)   # dropout, re-init, Mixout, BitFit / LoRA
    total = total_training_steps(recipe, n_train)
    optimizer = build_optimizer(model, recipe)        # AdamW / BERTAdam, WD, prior WD, LLRD groups
    scheduler = build_lr_scheduler(optimizer, recipe, total)
    for step in range(total):
        if set_trainable_phase(model, recipe, step):  # LP-FT head warm-up
            optimizer = build_optimizer(model, recipe); scheduler = build_lr_scheduler(...)
        loss = model(**batch).loss (+ regularization_loss(model, batch, logits, recipe) when not None)
        ...
"""

from harness.recipes.head_warmup import phase_at, set_trainable_phase
from harness.recipes.llrd import parameter_groups
from harness.recipes.mixout import MixoutLinear, apply_mixout
from harness.recipes.optim import AdamW, build_optimizer
from harness.recipes.prepare import prepare_model, run_notes, set_dropout
from harness.recipes.r3f import regularization_loss, symmetric_kl
from harness.recipes.reinit import init_head, reinit_top_layers
from harness.recipes.schedule import build_lr_scheduler, linear_warmup_decay, total_training_steps

__all__ = [
    "AdamW",
    "MixoutLinear",
    "apply_mixout",
    "build_lr_scheduler",
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
]
