"""Training length by epochs or max_steps; linear warmup then linear decay."""

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from harness.experiment.config import Recipe
from harness.training.recipes import build_lr_scheduler, total_training_steps


def test_total_steps_from_epochs_and_max_steps():
    assert total_training_steps(Recipe(batch_size=16, epochs=3.0), 100) == 21  # ceil(100/16)=7 per epoch
    assert total_training_steps(Recipe(batch_size=16, epochs=3.0), 96) == 18
    assert total_training_steps(Recipe(batch_size=10, epochs=0.5), 100) == 5
    assert total_training_steps(Recipe(batch_size=16, epochs=20.0, max_steps=123), 100) == 123  # max_steps wins


def lrs(scheduler, optimizer, n):
    out = []
    for _ in range(n):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_linear_warmup_then_decay_by_formula():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_lr_scheduler(opt, Recipe(warmup_ratio=0.2), total_steps=10)  # warmup int(0.2 * 10) = 2
    got = lrs(sched, opt, 11)
    expected = [0.0, 0.5] + [(10 - s) / 8 for s in range(2, 11)]
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(("total", "ratio"), [(37, 0.1), (10, 0.0), (5, 0.5)])
def test_matches_transformers_linear_schedule(total, ratio):
    p = torch.nn.Parameter(torch.zeros(1))
    opt_a, opt_b = torch.optim.SGD([p], lr=2e-5), torch.optim.SGD([p], lr=2e-5)
    ours = build_lr_scheduler(opt_a, Recipe(warmup_ratio=ratio), total_steps=total)
    ref = get_linear_schedule_with_warmup(opt_b, int(ratio * total), total)
    assert lrs(ours, opt_a, total) == pytest.approx(lrs(ref, opt_b, total), abs=1e-15)


def test_explicit_warmup_steps_override_ratio():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_lr_scheduler(opt, Recipe(warmup_ratio=0.5), total_steps=4, warmup_steps=0)
    assert lrs(sched, opt, 4) == pytest.approx([1.0, 0.75, 0.5, 0.25])
