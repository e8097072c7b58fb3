"""One seeded fine-tuning run, top to bottom: data, model, optimiser, loop, evals, record.

Seeds (Dodge et al. 2020): `init_seed` draws the new weights (head, re-initialised
layers), `order_seed` the data order and dropout, `sample_seed` the few-sample
subset. The same RunSpec gives the same numbers on the same machine.
"""

from __future__ import annotations

import math
import random
import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness import data as D
from harness import recipes
from harness.models import count_parameters, init_head, load_classifier, load_tokenizer
from harness.provenance import provenance
from harness.recipes import cloze
from harness.records import EvalPoint, RunContext, RunResult, base_row
from harness.spec import ConfigError, RunSpec
from harness.stages.intermediate import intermediate_checkpoint
from harness.stages.tapt import tapt_checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Encoded:
    """Tokenised examples, batched with padding to each batch's longest sequence."""

    def __init__(self, tokenizer: Any, examples: list[D.Example], max_length: int, regression: bool) -> None:
        texts_b = [e.text_b for e in examples]
        enc = tokenizer(
            [e.text_a for e in examples],
            texts_b if any(t is not None for t in texts_b) else None,
            truncation=True,
            max_length=max_length,
        )
        self.features = [{k: enc[k][i] for k in enc} for i in range(len(examples))]
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

    def tokens(self) -> int:
        return sum(len(f["input_ids"]) for f in self.features)


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


@torch.no_grad()
def predict(model: torch.nn.Module, encoded: Encoded, device: torch.device, regression: bool) -> list[float]:
    model.eval()
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.features[i]["input_ids"]))
    preds: dict[int, float] = {}
    for start in range(0, len(order), 64):
        idx = order[start : start + 64]
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
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train_run(spec: RunSpec, ctx: RunContext | None = None) -> RunResult:
    """Fine-tune once and return the run's record and eval curve (never raises on NaN)."""
    return fine_tune(spec, ctx or RunContext())[0]


def fine_tune(spec: RunSpec, ctx: RunContext) -> tuple[RunResult, torch.nn.Module]:
    """The run itself; also returns the trained model (for staged recipes)."""
    started = time.perf_counter()
    if ctx.threads:
        torch.set_num_threads(ctx.threads)
    device = torch.device(ctx.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    task = spec.task_def
    recipe = spec.recipe

    # Data: few-sample subset by sample_seed; eval halves by the fixed split seed.
    full_train = D.load_split(task, "train", ctx.data_dir)
    train_examples = D.stratified_sample(full_train, spec.sample_size, spec.sample_seed, task.is_regression)
    dev = D.load_split(task, "dev", ctx.data_dir)
    splits = D.eval_splits(task, dev, spec.eval_protocol, spec.split_seed, spec.eval_size)
    majority_val = 100.0 * D.majority_baseline(task, train_examples, splits.val)
    majority_test = 100.0 * D.majority_baseline(task, train_examples, splits.test) if splits.test else math.nan

    # Model: pre-trained body (or the intermediate-task / TAPT encoder), head drawn from init_seed;
    # cloze (PET) instead scores verbalisers with the MLM head: no new head, the pattern in the tokenizer.
    tokenizer = load_tokenizer(spec.model)
    seed_everything(spec.init_seed)  # any weights the checkpoint lacks are drawn from init_seed too
    stage_notes: list[str] = []
    if recipe.cloze:
        model, note = cloze.load_cloze_model(spec.model, task, tokenizer, spec.model_layers, recipe.tapt_steps)
        tokenizer = cloze.ClozeTokenizer(tokenizer, task)
        stage_notes.append(note)
    else:
        model = load_classifier(spec.model, task.num_labels, spec.model_layers)
    if recipe.intermediate_task is not None:
        intermediate_checkpoint(spec, ctx).load_encoder_into(model)
    if recipe.tapt_steps > 0:
        tapt = tapt_checkpoint(spec, ctx)
        tapt.load_into(model)
        stage_notes.append(tapt.note)
    if not recipe.cloze:
        init_head(model, spec.init_seed)
    model = recipes.prepare_model(model, recipe, init_seed=spec.init_seed)
    model.to(device)
    model.train()

    train_set = Encoded(tokenizer, train_examples, spec.max_seq_length, task.is_regression)
    val_set = Encoded(tokenizer, list(splits.val), spec.max_seq_length, task.is_regression)
    test_set = Encoded(tokenizer, list(splits.test), spec.max_seq_length, task.is_regression) if splits.test else None

    total_steps = recipes.total_training_steps(recipe, len(train_set))
    if recipe.head_warmup_steps >= total_steps:
        raise ConfigError(
            f"recipe '{recipe.name}': head_warmup_steps = {recipe.head_warmup_steps} but the run has only "
            f"{total_steps} updates; use fewer warm-up steps or train longer"
        )
    optimizer = recipes.build_optimizer(model, recipe)
    scheduler = recipes.build_lr_scheduler(optimizer, recipe, total_steps)
    seed_everything(spec.order_seed)  # dropout masks
    order = batch_order(len(train_set), recipe.batch_size, total_steps, torch.Generator().manual_seed(spec.order_seed))
    evals_at = set(eval_steps(total_steps, spec.num_evals))
    micro = min(ctx.micro_batch_size or recipe.batch_size, recipe.batch_size)

    curve: list[dict[str, Any]] = []
    kept_predictions: KeptPredictions | None = None
    losses: list[float] = []
    status, window, tokens_seen = "done", [], 0
    bar = tqdm(total=total_steps, desc=spec.run_id, disable=not ctx.progress, leave=False)
    step = 0
    for step, indices in enumerate(order, start=1):
        if recipes.set_trainable_phase(model, recipe, step - 1):  # LP-FT: head phase, then everything
            optimizer = recipes.build_optimizer(model, recipe)
            in_head_phase = step - 1 < recipe.head_warmup_steps
            phase_steps = recipe.head_warmup_steps if in_head_phase else total_steps - step + 1
            scheduler = recipes.build_lr_scheduler(optimizer, recipe, phase_steps)
        step_loss = 0.0
        for start in range(0, len(indices), micro):
            chunk = indices[start : start + micro]
            batch = {k: v.to(device) for k, v in train_set.batch(chunk).items()}
            tokens_seen += int(batch["attention_mask"].sum())
            outputs = model(**batch)
            loss = outputs.loss
            extra = recipes.regularization_loss(model, batch, outputs.logits, recipe)
            if extra is not None:
                loss = loss + extra
            loss = loss * (len(chunk) / len(indices))
            loss.backward()
            step_loss += float(loss.detach())
        if not math.isfinite(step_loss):
            status = "diverged"
            losses.append(step_loss)
            break
        if recipe.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        window.append(step_loss)
        bar.update(1)
        if step in evals_at:
            point = {
                "eval_index": len(curve),
                "step": step,
                "fraction": step / total_steps,
                "epoch": step * recipe.batch_size / len(train_set),
                "train_loss": float(np.mean(window)),
            }
            point["val_metric"], val_preds = evaluate_with_predictions(model, val_set, device, task)
            point["test_metric"], test_preds = evaluate_with_predictions(model, test_set, device, task)
            window = []
            curve.append(point)
            kept_predictions = keep_predictions(kept_predictions, point, {"val": val_preds, "test": test_preds})
            keep_going = ctx.on_eval is None or ctx.on_eval(
                EvalPoint(spec.run_id, spec.config_key, point["eval_index"], step, point["fraction"],
                          point["val_metric"], point["test_metric"])
            )  # fmt: skip
            if not keep_going and step < total_steps:
                status = "stopped"
                break
    bar.close()

    row = summarize_run(spec, curve, losses, status, total_steps)
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
        provenance=provenance(device, str(D.resolve_data_dir(ctx.data_dir) or "")),
        notes="; ".join(n for n in (*stage_notes, recipes.run_notes(model, recipe)) if n),
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
