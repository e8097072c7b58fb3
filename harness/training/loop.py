"""One seeded fine-tuning run, top to bottom: data, model, optimiser, loop, evals, record.

`fine_tune` is the loop; recipes change it only through their three hooks (harness/training/recipes/hooks.py), and
stages (harness/training/stages/) run before it, handing it encoders through `RunStart`. The pipeline that composes
the two is harness/training/pipeline.py (`train_run`, what the scheduler calls).

Seeds (Dodge et al. 2020): `init_seed` draws the new weights (head, re-initialised
layers), `order_seed` the data order and the dropout and Mixout masks (from a counter hash,
harness/training/hashdropout.py, so the seed-group engine draws the same ones), `sample_seed` the
few-sample subset. The same RunSpec gives the same numbers on the same machine, in either engine.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.experiment import data as D
from harness.experiment.spec import RunSpec
from harness.storage.records import EvalPoint, RunContext, RunResult, base_row
from harness.training import device as hw
from harness.training import hashdropout, recipes
from harness.training.models import count_parameters, load_tokenizer
from harness.training.provenance import provenance


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Encoded:
    """Tokenised examples, batched with padding to each batch's longest sequence."""

    def __init__(self, tokenizer: Any, examples: list[D.Example], max_length: int, regression: bool) -> None:
        self.features = D.tokenize(tokenizer, examples, max_length)
        dtype = torch.float32 if regression else torch.long
        self.labels = torch.tensor([e.label for e in examples], dtype=dtype)
        self.pad_id = tokenizer.pad_token_id or 0

    def __len__(self) -> int:
        return len(self.features)

    def batch(self, indices: list[int]) -> dict[str, torch.Tensor]:
        width = max(len(self.features[i]["input_ids"]) for i in indices)
        out: dict[str, torch.Tensor] = {}
        for key in self.features[indices[0]]:
            pad = self.pad_id if key == "input_ids" else 0
            rows = [self.features[i][key] + [pad] * (width - len(self.features[i][key])) for i in indices]
            out[key] = torch.tensor(rows, dtype=torch.long)
        out["labels"] = self.labels[indices]
        return out

    def tokens(self, indices: list[int] | None = None) -> int:
        """Real (unpadded) tokens of these examples (all by default), counted on the host: no GPU sync."""
        chosen = self.features if indices is None else [self.features[i] for i in indices]
        return sum(len(f["input_ids"]) for f in chosen)


def batch_order(n: int, batch_size: int, total_steps: int, generator: torch.Generator) -> list[list[int]]:
    """Index lists for every update: reshuffled each epoch, the last short batch kept."""
    batches: list[list[int]] = []
    while len(batches) < total_steps:
        perm = torch.randperm(n, generator=generator).tolist()
        batches.extend(perm[i : i + batch_size] for i in range(0, n, batch_size))
    return batches[:total_steps]


def eval_steps(total_steps: int, num_evals: int) -> list[int]:
    """Evenly spaced evaluation steps, the last one at the end of training."""
    return sorted({max(1, round(total_steps * (i + 1) / num_evals)) for i in range(num_evals)})


def eval_batch_size(device: torch.device) -> int:
    """Examples per eval forward (sorted by length), in both engines: a GPU idles on small ones, a CPU gains nothing."""
    return 256 if device.type == "cuda" else 64


@torch.no_grad()
def predict(model: torch.nn.Module, encoded: Encoded, device: torch.device, regression: bool) -> list[float]:
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.features[i]["input_ids"]))
    preds: dict[int, float] = {}
    size = eval_batch_size(device)
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        batch = {k: v.to(device) for k, v in encoded.batch(idx).items() if k != "labels"}
        logits = model(**batch).logits
        values = logits.squeeze(-1) if regression else logits.argmax(-1)
        preds.update(zip(idx, values.float().cpu().tolist(), strict=True))
    model.train()
    return [preds[i] for i in range(len(encoded))]


def evaluate(model, encoded: Encoded | None, device, task) -> float:
    return evaluate_with_predictions(model, encoded, device, task)[0]


def evaluate_with_predictions(model, encoded: Encoded | None, device, task) -> tuple[float, list[float]]:
    """The metric x100 and the per-example predictions it was computed from (NaN and [] without a split)."""
    if encoded is None:
        return float("nan"), []
    preds = predict(model, encoded, device, task.is_regression)
    return 100.0 * D.compute_metric(task.metric, preds, encoded.labels.tolist()), preds


def peak_memory_mb(device: torch.device) -> float:
    return hw.peak_memory_mb(device)


@dataclass(frozen=True)
class RunStart:
    """What the run pipeline hands the loop: stage encoders to load into the fresh model, and their notes."""

    loaders: tuple[Callable[[torch.nn.Module], None], ...] = ()
    notes: tuple[str, ...] = ()
    started: float | None = None  # perf_counter() when the run began, its stages included (None: now)

    def load_into(self, model: torch.nn.Module) -> None:
        for load in self.loaders:
            load(model)


def fine_tune(spec: RunSpec, ctx: RunContext, start: RunStart = RunStart()) -> tuple[RunResult, torch.nn.Module]:
    """One run, top to bottom (never raises on NaN); also returns the trained model (a stage keeps its encoder)."""
    started = time.perf_counter() if start.started is None else start.started
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    task, recipe = spec.task_def, spec.recipe
    hw.set_deterministic(ctx.deterministic)  # before CUDA starts (cuBLAS reads its workspace variable then)
    device = hw.resolve(ctx.device)
    hw.check_precision(device, recipe.precision, f"recipe '{recipe.name}'")
    hw.prepare(device, recipe.precision)  # matmul precision; initialise CUDA, then reset its peak-memory counter
    clock = PhaseClock()

    # Data: few-sample subset by sample_seed; eval halves by the fixed split seed.
    full_train = D.load_split(task, "train", ctx.data_dir)
    train_examples = D.stratified_sample(full_train, spec.sample_size, spec.sample_seed, task.is_regression)
    dev = D.load_split(task, "dev", ctx.data_dir)
    splits = D.eval_splits(task, dev, spec.eval_protocol, spec.split_seed, spec.eval_size)
    majority_val = 100.0 * D.majority_baseline(task, train_examples, splits.val)
    majority_test = 100.0 * D.majority_baseline(task, train_examples, splits.test) if splits.test else math.nan
    clock.mark("data")

    # Model: the recipe builds it (pre-trained body, stage encoders, head from init_seed, its changes).
    tokenizer = load_tokenizer(spec.model)
    seed_everything(spec.init_seed)  # any weights the checkpoint lacks are drawn from init_seed too
    built = recipes.build_model(spec, tokenizer, start.load_into)
    model, tokenizer = built.model, built.tokenizer
    model.to(device)
    model.train()
    clock.mark("model")
    train_set = Encoded(tokenizer, train_examples, spec.max_seq_length, task.is_regression)
    val_set = Encoded(tokenizer, list(splits.val), spec.max_seq_length, task.is_regression)
    test_set = Encoded(tokenizer, list(splits.test), spec.max_seq_length, task.is_regression) if splits.test else None

    # Optimiser and lr schedule: the recipe's, one pair per LP-FT phase; a loss scaler under fp16.
    total_steps = recipes.total_training_steps(recipe, len(train_set))
    updates = recipes.Updates(model, recipe, total_steps, scaler=hw.grad_scaler(device, recipe.precision))
    seed_everything(spec.order_seed)  # what a recipe still draws from torch's RNG (R3F's noise)
    masks = hashdropout.install(model, spec.order_seed)  # dropout, Mixout: hash of (order_seed, step, site, element)
    order = batch_order(len(train_set), recipe.batch_size, total_steps, torch.Generator().manual_seed(spec.order_seed))
    evals_at = set(eval_steps(total_steps, spec.num_evals))
    micro = min(ctx.micro_batch_size or recipe.batch_size, recipe.batch_size)
    clock.mark("tokenize")

    # The loop: gradient accumulation over micro-batches; the recipe's loss (R3F) through its hook.
    curve: list[dict[str, Any]] = []
    losses = DeviceLosses()  # step losses stay on the device: read once per evaluation, not every step
    status, tokens_seen = "done", 0
    kept_predictions: KeptPredictions | None = None
    bar = tqdm(total=total_steps, desc=spec.run_id, disable=not ctx.progress, leave=False)
    step = 0
    for step, indices in enumerate(order, start=1):
        updates.begin(step - 1)
        step_loss = torch.zeros((), device=device)
        for first in range(0, len(indices), micro):
            chunk = indices[first : first + micro]
            masks.at(step, first_row=first)
            batch = {k: v.to(device, non_blocking=True) for k, v in train_set.batch(chunk).items()}
            tokens_seen += train_set.tokens(chunk)
            with hw.autocast(device, recipe.precision):
                loss = recipes.training_loss(model, batch, recipe)
            loss = loss.float() * (len(chunk) / len(indices))
            updates.backward(loss)
            step_loss += loss.detach()
        losses.add(step_loss)
        updates.apply()
        bar.update(1)
        if step in evals_at or step == total_steps:
            diverged_at = losses.flush(step)
            clock.mark("train")
            if diverged_at is not None:  # as if training had stopped at that step
                step, status = diverged_at, "diverged"
                break

        # Evaluate: both eval halves; the scheduler may stop the run here (early stopping).
        if step in evals_at:
            point = {
                "eval_index": len(curve),
                "step": step,
                "fraction": step / total_steps,
                "epoch": step * recipe.batch_size / len(train_set),
                "train_loss": losses.window_mean(),
            }
            point["val_metric"], val_preds = evaluate_with_predictions(model, val_set, device, task)
            point["test_metric"], test_preds = evaluate_with_predictions(model, test_set, device, task)
            curve.append(point)
            kept_predictions = keep_predictions(kept_predictions, point, {"val": val_preds, "test": test_preds})
            clock.mark("eval")
            keep_going = ctx.on_eval is None or ctx.on_eval(
                EvalPoint(spec.run_id, spec.config_key, point["eval_index"], step, point["fraction"],
                          point["val_metric"], point["test_metric"])
            )  # fmt: skip
            if not keep_going and step < total_steps:
                status = "stopped"
                break
    bar.close()
    hw.synchronize(device)
    clock.mark("train")

    # Record: scores under the selection rule, cost, provenance.
    row = summarize_run(spec, curve, losses.values, status, total_steps)
    n_params = count_parameters(model)
    eval_tokens = (val_set.tokens() + (test_set.tokens() if test_set else 0)) * len(curve)
    row.update(
        metric=task.metric,
        majority_val=majority_val,
        majority_test=majority_test,
        steps_done=step if status != "diverged" else step - 1,
        total_steps=total_steps,
        epochs_done=(step * recipe.batch_size) / len(train_set),
        wall_time_s=time.perf_counter() - started,
        peak_mem_mb=peak_memory_mb(device),
        flops=float(6 * n_params * tokens_seen + 2 * n_params * eval_tokens),
        attempts=1,
        device=str(device),
        provenance=provenance(device, str(D.resolve_data_dir(ctx.data_dir) or ""), recipe.precision),
        notes="; ".join(n for n in (*built.notes, *start.notes, recipes.run_notes(model, recipe)) if n),
        phases=clock.to_json(),
    )
    return RunResult(row, curve, selected_predictions(spec, curve, kept_predictions, status)), model


@dataclass(frozen=True)
class KeptPredictions:
    """Per-split predictions of the best-so-far eval (earliest of equal bests) and of the latest eval."""

    best_val: float
    best: dict[str, list[float]]
    final: dict[str, list[float]]


def keep_predictions(
    kept: KeptPredictions | None, point: dict[str, Any], preds: dict[str, list[float]]
) -> KeptPredictions:
    if kept is None or point["val_metric"] > kept.best_val:  # same rule as summarize_run's best checkpoint
        return KeptPredictions(point["val_metric"], preds, preds)
    return KeptPredictions(kept.best_val, kept.best, preds)


def selected_predictions(
    spec: RunSpec, curve: list[dict[str, Any]], kept: KeptPredictions | None, status: str
) -> dict[str, list[float]] | None:
    """The predictions at the checkpoint the run reports (its selection rule); None when there is none."""
    if not curve or status == "diverged" or kept is None:
        return None
    return kept.best if spec.recipe.select == "best" else kept.final


class PhaseClock:
    """Seconds spent per phase of a run (data, model, tokenize, train, eval), for the run row's `phases`."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.last = time.perf_counter()

    def mark(self, name: str) -> None:
        """Charge the time since the previous mark to `name`."""
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    def to_json(self) -> str:
        return json.dumps({k: round(v, 3) for k, v in self.phases.items()})


class DeviceLosses:
    """Step losses kept as device tensors and copied to the host in one sync per evaluation.

    A NaN is found at the flush, not at its step: the run is then recorded as diverged at that step,
    with the losses up to it, exactly as a per-step check would have recorded it.
    """

    def __init__(self) -> None:
        self.pending: list[torch.Tensor] = []
        self.values: list[float] = []
        self.window: list[float] = []

    def add(self, loss: torch.Tensor) -> None:
        self.pending.append(loss)

    def flush(self, step: int) -> int | None:
        """Move pending losses to the host; the step of the first non-finite one, if any."""
        if not self.pending:
            return None
        flushed = torch.stack(self.pending).cpu().tolist()
        self.pending = []
        bad = next((i for i, x in enumerate(flushed) if not math.isfinite(x)), None)
        if bad is not None:
            self.values.extend(flushed[: bad + 1])
            return step - len(flushed) + bad + 1
        self.values.extend(flushed)
        self.window.extend(flushed)
        return None

    def window_mean(self) -> float:
        """Mean training loss since the previous evaluation (then starts a new window)."""
        mean, self.window = float(np.mean(self.window)), []
        return mean


def summarize_run(
    spec: RunSpec, curve: list[dict[str, Any]], losses: list[float], status: str, total_steps: int
) -> dict[str, Any]:
    """Final and best metrics: `score` is what the run reports under its selection rule."""
    nan = math.nan
    row: dict[str, Any] = {**base_row(spec), "status": status, "error": ""}
    finite = [x for x in losses if math.isfinite(x)]
    row.update(
        loss_first=finite[0] if finite else nan,
        loss_last=losses[-1] if losses else nan,
        loss_min=min(finite) if finite else nan,
        loss_mean=float(np.mean(finite)) if finite else nan,
    )
    if not curve or status == "diverged":
        row.update(score=nan, val_best=nan, val_final=nan, test_best=nan, test_final=nan, best_step=None)
        return row
    best = max(curve, key=lambda p: (p["val_metric"], -p["step"]))  # earliest of equal bests
    final = curve[-1]
    chosen = best if spec.recipe.select == "best" else final
    report_key = "test_metric" if spec.eval_protocol == "heldout" else "val_metric"
    row.update(
        score=chosen[report_key],
        val_best=best["val_metric"],
        val_final=final["val_metric"],
        test_best=best["test_metric"],
        test_final=final["test_metric"],
        best_step=best["step"],
    )
    return row
