"""Train K seeded runs of one configuration at once: one stacked forward, backward and update per step.

One definition of a run: each run is built exactly as harness.training.loop builds it (head from init_seed,
re-init, Mixout targets, LLRD / WD groups), keeps its own data order (batch_order from its order_seed),
runs the loop's own modules (vmapped over the runs: harness/training/vectorised/model.py) and draws its
dropout and Mixout masks from the same hash of (order_seed, step, site, element) as the loop
(harness/training/hashdropout.py). So a run's numbers do not depend on its engine, its group or K (up to
float rounding of batched kernels). Inside a step there is no Python loop over runs and no host sync;
the host reads the losses only at evaluations. A run whose loss goes NaN is frozen and stored
`diverged`; a run told to stop at an evaluation is frozen and stored `stopped`; the others go on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.experiment import data as D
from harness.experiment.engines import family_unsupported, group_key, vectorised_unsupported
from harness.experiment.spec import ConfigError, RunSpec
from harness.storage.records import EvalPoint, RunContext, RunResult
from harness.training import device as hw
from harness.training import hashrng, recipes
from harness.training.loop import (
    Encoded,
    batch_order,
    eval_steps,
    fine_tune,
    peak_memory_mb,
    summarize_run,
)
from harness.training.models import count_parameters, load_tokenizer, resolve_model
from harness.training.provenance import provenance
from harness.training.recipes.schedule import linear_warmup_decay, warmup_steps_for
from harness.training.vectorised import build
from harness.training.vectorised.batches import Batches, EvalSet, build_batches, build_eval_set
from harness.training.vectorised.model import Layout, StackedModel, leaf_views, padding_rows, stack_runs
from harness.training.vectorised.optim import Hyper, StackedAdamW
from harness.training.vectorised.vocab import renumber_inputs, renumber_model, vocab_order

OnEvals = Callable[[list[EvalPoint]], list[bool]]


def train_group(
    specs: Sequence[RunSpec],
    ctx: RunContext | None = None,
    on_evals: OnEvals | None = None,
    precision: str | None = None,
) -> list[RunResult]:
    """Fine-tune every spec (one configuration, any seeds) together; one RunResult per spec, in order.

    `on_evals` receives the eval points of the runs still training at an evaluation step and returns,
    per point, whether that run goes on (False = stopped, as RunContext.on_eval for one run).
    `precision` ("fp32" | "tf32" | "bf16") overrides the recipe's (benchmarks); bf16 runs the forward under autocast.
    """
    ctx = ctx or RunContext()
    check_group(specs)
    reason = family_unsupported(_model_type(specs[0].model))
    if reason:  # a family the parser could not see (a hub id): the loop, never a failed run
        return _one_by_one(specs, ctx, on_evals, f"{reason} is not vectorised: trained one run at a time")
    return _Group(list(specs), ctx, on_evals, precision).train()


def _one_by_one(specs: Sequence[RunSpec], ctx: RunContext, on_evals: OnEvals | None, note: str) -> list[RunResult]:
    """Each run through the loop in this worker (the same numbers: one definition of a run), with `note`."""
    results = []
    for spec in specs:
        on_eval = (lambda point: on_evals([point])[0]) if on_evals is not None else None
        result, _ = fine_tune(spec, dataclasses.replace(ctx, on_eval=on_eval))
        notes = "; ".join(n for n in (result.run.get("notes"), note) if n)
        results.append(dataclasses.replace(result, run={**result.run, "notes": notes}))
    return results


def _model_type(name: str) -> str | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model(name)).model_type
    except (OSError, ValueError):
        return None


def check_group(specs: Sequence[RunSpec]) -> None:
    if not specs:
        raise ValueError("train_group: no runs given")
    keys = {group_key(s) for s in specs}
    if len(keys) > 1:
        raise ConfigError(
            f"train_group: runs {[s.run_id for s in specs]} are not one configuration (differ beyond their seeds); "
            "group only runs of the same task, model and recipe"
        )
    reason = vectorised_unsupported(specs[0].recipe)
    if reason:
        raise ConfigError(f"train_group: recipe '{specs[0].recipe.name}' cannot train vectorised: {reason}")


class _Group:
    def __init__(self, specs: list[RunSpec], ctx: RunContext, on_evals: OnEvals | None, precision: str | None) -> None:
        self.specs, self.ctx, self.on_evals = specs, ctx, on_evals
        self.recipe = specs[0].recipe
        self.precision = precision or getattr(self.recipe, "precision", "fp32")
        if self.precision not in ("fp32", "tf32", "bf16"):
            raise ConfigError(
                f"train_group: precision {self.precision!r} is not supported vectorised; use fp32, tf32 or bf16"
            )
        self.task = specs[0].task_def
        self.k = len(specs)
        self.dropped_at: list[float | None] = [None] * self.k  # fraction of training when a run left the batch

    # -- set-up ----------------------------------------------------------------

    def build_models(self) -> Iterator[torch.nn.Module]:
        """The K prepared models, one at a time, each exactly as harness.training.loop builds its run's model."""
        return build.build_models(self.specs)

    # -- the run -----------------------------------------------------------------

    def train(self) -> list[RunResult]:
        started = time.perf_counter()
        ctx, recipe, task, k = self.ctx, self.recipe, self.task, self.k
        if ctx.threads:
            torch.set_num_threads(ctx.threads)
        hw.set_deterministic(ctx.deterministic)
        device = hw.resolve(ctx.device)
        hw.check_precision(device, self.precision, f"recipe '{recipe.name}'")
        hw.prepare(device, self.precision)  # matmul precision; initialise CUDA, then reset its peak-memory counter
        spec0 = self.specs[0]
        full_train = D.load_split(task, "train", ctx.data_dir)
        dev = D.load_split(task, "dev", ctx.data_dir)
        splits = D.eval_splits(task, dev, spec0.eval_protocol, spec0.split_seed, spec0.eval_size)
        train_examples = [
            D.stratified_sample(full_train, s.sample_size, s.sample_seed, task.is_regression) for s in self.specs
        ]
        majority_val = [100.0 * D.majority_baseline(task, ex, splits.val) for ex in train_examples]
        majority_test = [
            100.0 * D.majority_baseline(task, ex, splits.test) if splits.test else math.nan for ex in train_examples
        ]

        tokenizer = load_tokenizer(spec0.model)
        train_sets = [Encoded(tokenizer, ex, spec0.max_seq_length, task.is_regression) for ex in train_examples]
        models = self.build_models()
        first = next(models)
        vocab = vocab_order(first, train_sets)  # embedding rows no batch uses: out of Adam's work (vocab.py)
        runs = stack_runs(itertools.chain([first], models), k, device, vocab)  # each model into its device row
        model0, layout = runs.template, runs.layout
        if vocab is not None:
            renumber_model(model0, vocab)
        vectors = build.parameter_vectors(model0, recipe, layout)
        optimizer = StackedAdamW(
            runs.flat,
            Hyper((recipe.adam_beta1, recipe.adam_beta2), recipe.adam_eps, recipe.bias_correction, recipe.grad_clip),
            vectors["lr_scale"].to(device),  # type: ignore[union-attr]
            None if vectors["weight_decay"] is None else vectors["weight_decay"].to(device),
            None if vectors["prior_wd"] is None else vectors["prior_wd"].to(device),
            runs.flat.clone() if recipe.prior_wd > 0 else None,
            layout.size - (vocab.untrained_elements if vocab is not None else 0),
        )
        n_params = count_parameters(model0)
        notes = recipes.run_notes(model0, recipe)
        model0.to(device)
        stacked = StackedModel(model0, runs.buffers, device)  # model0 is the template every run goes through
        pad_rows = padding_rows(model0, layout)
        del runs, first

        n_train = len(train_sets[0])
        total_steps = recipes.total_training_steps(recipe, n_train)
        orders = [
            batch_order(n_train, recipe.batch_size, total_steps, torch.Generator().manual_seed(s.order_seed))
            for s in self.specs
        ]
        batches = build_batches(train_sets, orders, recipe.batch_size, device)
        val_set = build_eval_set(Encoded(tokenizer, list(splits.val), spec0.max_seq_length, task.is_regression), device)
        test_enc = (
            Encoded(tokenizer, list(splits.test), spec0.max_seq_length, task.is_regression) if splits.test else None
        )
        test_set = build_eval_set(test_enc, device)
        if vocab is not None:  # the same vectors under their new row numbers
            for inputs in [batches.inputs, *(c for e in (val_set, test_set) if e for c, _ in e.chunks)]:
                renumber_inputs(inputs, vocab)
        evals_at = set(eval_steps(total_steps, spec0.num_evals))
        warmup = warmup_steps_for(recipe, total_steps)

        seeds = torch.tensor([s.order_seed for s in self.specs], dtype=torch.int64, device=device)
        live = _InBatch(list(range(k)), optimizer, layout, stacked, batches, seeds)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()

        state = _RunState.start(k)
        loss_log: list[torch.Tensor] = []
        step = 0
        for step in range(1, total_steps + 1):
            inputs, labels = live.batches.at(step)
            optimizer.zero_grad()  # backward adds into the parameters' .grad: views of its buffer
            with autocast:
                logits = stacked.logits(live.params, inputs, hashrng.run_key(live.seeds, step))
            losses = _per_run_loss(logits, labels, task.is_regression)
            with warnings.catch_warnings():  # each .grad is by design a strided view of the flat gradient buffer
                warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")
                losses.sum().backward()
            for row in pad_rows:  # nn.Embedding(padding_idx) never updates the pad row from its gradient
                optimizer.grad[:, row] = 0.0
            live.active &= torch.isfinite(losses)
            multiplier = linear_warmup_decay(step - 1, total_steps, warmup)
            lr = torch.full((len(live.rows),), recipe.lr * multiplier, device=device)
            optimizer.step(lr, live.active)
            loss_log.append(live.spread(losses.detach(), k))
            if step in evals_at:
                self.evaluate(step, total_steps, n_train, loss_log, state, live, val_set, test_set)
                if not state.any_training():
                    break
                gone = [i for i in live.rows if not state.training[i]]
                if gone and step < total_steps:  # stopped or diverged: out of the batch, no more compute spent
                    for i in gone:
                        self.dropped_at[i] = step / total_steps
                    live.keep([i for i in live.rows if state.training[i]])
        losses_host = torch.stack(loss_log).float().cpu().numpy() if loss_log else np.zeros((0, k))
        wall = time.perf_counter() - started
        eval_tokens = _tokens(val_set) + _tokens(test_set)
        results = []
        for i, spec in enumerate(self.specs):
            results.append(
                self.result(i, spec, state, losses_host, step, total_steps, n_train, wall, device, n_params,
                            int(batches.tokens[i]), eval_tokens, majority_val[i], majority_test[i], notes)
            )  # fmt: skip
        return results

    @torch.no_grad()
    def evaluate(
        self, step: int, total_steps: int, n_train: int, loss_log: list[torch.Tensor], state: _RunState,
        live: _InBatch, val_set: EvalSet | None, test_set: EvalSet | None,
    ) -> None:  # fmt: skip
        """All runs still training, on the same eval sets in one batched forward; the host syncs here only."""
        losses = torch.stack(loss_log[state.logged :]).float().cpu().numpy()  # [steps since last eval, K]
        first = state.logged
        state.logged = len(loss_log)
        for i in range(self.k):
            if not state.training[i]:
                continue
            window = losses[:, i]
            bad = np.flatnonzero(~np.isfinite(window))
            if bad.size:  # diverged: keep the losses up to and including the first non-finite one
                state.losses[i].extend(window[: bad[0] + 1].tolist())
                state.status[i], state.training[i], state.last_step[i] = "diverged", False, first + bad[0] + 1
                continue
            state.losses[i].extend(window.tolist())
            state.window[i].extend(window.tolist())
        training = [i for i in range(self.k) if state.training[i]]
        if not training:
            return
        val = self.predict(live, val_set)
        test = self.predict(live, test_set)
        points = []
        for i in training:
            spec = self.specs[i]
            val_metric = self.metric(val[i] if val is not None else None, val_set)
            test_metric = self.metric(test[i] if test is not None else None, test_set)
            point = {
                "eval_index": len(state.curves[i]),
                "step": step,
                "fraction": step / total_steps,
                "epoch": step * self.recipe.batch_size / n_train,
                "train_loss": float(np.mean(state.window[i])),
                "val_metric": val_metric,
                "test_metric": test_metric,
            }
            state.window[i] = []
            state.curves[i].append(point)
            state.last_step[i] = step
            state.remember(i, point, val, test)
            points.append(EvalPoint(spec.run_id, spec.config_key, point["eval_index"], step, point["fraction"],
                                    val_metric, test_metric))  # fmt: skip
        if self.on_evals is not None:
            keep = self.on_evals(points)
            stopped = [i for i, go_on in zip(training, keep, strict=True) if not go_on and step < total_steps]
            for i in stopped:
                state.status[i], state.training[i] = "stopped", False

    def predict(self, live: _InBatch, eval_set: EvalSet | None) -> np.ndarray | None:
        """[K, n] predictions (class id, or the score for regression) in the split's stored order; zeros for the
        runs no longer in the batch."""
        if eval_set is None:
            return None
        out = np.zeros((self.k, len(eval_set.encoded)), dtype=np.float64)
        rows = np.array(live.rows)
        for inputs, idx in eval_set.chunks:
            dev = next(iter(inputs.values())).device
            with torch.autocast(dev.type, dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext():
                logits = live.stacked.logits(live.params, inputs)
            values = logits.squeeze(-1) if self.task.is_regression else logits.argmax(-1)
            out[np.ix_(rows, idx)] = values.float().cpu().numpy()
        return out

    def metric(self, preds: np.ndarray | None, eval_set: EvalSet | None) -> float:
        if preds is None or eval_set is None:
            return float("nan")
        return 100.0 * D.compute_metric(self.task.metric, preds.tolist(), eval_set.encoded.labels.tolist())

    def result(
        self, i: int, spec: RunSpec, state: _RunState, losses: np.ndarray, step: int, total_steps: int, n_train: int,
        wall: float, device: torch.device, n_params: int, tokens: int, eval_tokens: int, majority_val: float,
        majority_test: float, notes: str,
    ) -> RunResult:  # fmt: skip
        status = state.status[i]
        if status == "done" and state.training[i]:  # trained to the end: losses since the last eval
            tail = losses[state.logged :, i]
            bad = np.flatnonzero(~np.isfinite(tail))
            if bad.size:
                state.losses[i].extend(tail[: bad[0] + 1].tolist())
                status, state.last_step[i] = "diverged", state.logged + bad[0] + 1
            else:
                state.losses[i].extend(tail.tolist())
                state.last_step[i] = step
        last = state.last_step[i]
        curve = [p for p in state.curves[i] if status != "diverged" or p["step"] < last]
        row = summarize_run(spec, curve, state.losses[i], status, total_steps)
        steps_done = last - 1 if status == "diverged" else last
        row.update(
            metric=self.task.metric,
            majority_val=majority_val,
            majority_test=majority_test,
            steps_done=steps_done,
            total_steps=total_steps,
            epochs_done=(last * self.recipe.batch_size) / n_train,
            wall_time_s=wall / self.k,
            peak_mem_mb=peak_memory_mb(device),
            flops=float(
                6 * n_params * tokens * steps_done / max(1, total_steps) + 2 * n_params * eval_tokens * len(curve)
            ),
            attempts=1,
            device=str(device),
            provenance=provenance(device, str(D.resolve_data_dir(self.ctx.data_dir) or ""), self.precision),
            notes="; ".join(x for x in (notes, f"vectorised engine: group of {self.k}, {wall:.1f} s together") if x),
        )
        predictions = None
        chosen = state.chosen(i, spec.recipe.select, curve) if status != "diverged" else None
        if chosen is not None:
            predictions = {name: values for name, values in chosen.items() if values is not None}
        return RunResult(row, curve, predictions, dropped_at=self.dropped_at[i])


class _InBatch:
    """The runs still in the batch (their indices into the group, in row order) and their device state. A run
    that stops or diverges leaves at the evaluation that finds it: its rows leave every stacked tensor, so
    early stopping inside a group saves the compute it reports."""

    def __init__(
        self, rows: list[int], optimizer: StackedAdamW, layout: Layout, stacked: StackedModel, batches: Batches,
        seeds: torch.Tensor,
    ) -> None:  # fmt: skip
        self.rows, self.optimizer, self.layout, self.stacked = rows, optimizer, layout, stacked
        self.batches, self.seeds = batches, seeds
        self.index = torch.tensor(rows, device=seeds.device)  # self.rows on the device (spread, every step)
        self.active = torch.ones(len(rows), dtype=torch.bool, device=seeds.device)
        self.bind()

    def bind(self) -> None:
        """Parameters as leaf views of the optimizer's flat buffer; their .grad views of its gradient buffer."""
        self.params = leaf_views(self.optimizer.flat, self.layout)
        grads = leaf_views(self.optimizer.grad, self.layout, requires_grad=False)
        for name, param in self.params.items():
            param.grad = grads[name]

    def keep(self, rows: list[int]) -> None:
        """Only `rows` (a subset of self.rows, in order) stay in the batch."""
        at = torch.tensor([self.rows.index(i) for i in rows], device=self.seeds.device)
        self.optimizer.select(at)
        self.stacked.select(at)
        self.batches = self.batches.select(at)
        self.seeds, self.active, self.rows, self.index = self.seeds[at], self.active[at], rows, self.index[at]
        self.bind()

    def spread(self, values: torch.Tensor, k: int) -> torch.Tensor:
        """[rows] -> [K] in group order, NaN for the runs no longer in the batch."""
        if len(self.rows) == k:
            return values
        full = torch.full((k,), math.nan, dtype=values.dtype, device=values.device)
        full[self.index] = values
        return full


@dataclass
class _RunState:
    """Host-side per-run bookkeeping: status, losses, curve and the predictions at the best eval so far."""

    training: list[bool]
    status: list[str]
    losses: list[list[float]]
    window: list[list[float]]
    curves: list[list[dict[str, Any]]]
    last_step: list[int]
    best: list[dict[str, Any]] | None = None
    best_preds: list[dict[str, list[float] | None]] | None = None
    final_preds: list[dict[str, list[float] | None]] | None = None
    logged: int = 0

    @staticmethod
    def start(k: int) -> _RunState:
        return _RunState(
            [True] * k, ["done"] * k, [[] for _ in range(k)], [[] for _ in range(k)], [[] for _ in range(k)], [0] * k,
            [{} for _ in range(k)], [{} for _ in range(k)], [{} for _ in range(k)],
        )  # fmt: skip

    def any_training(self) -> bool:
        return any(self.training)

    def remember(self, i: int, point: dict[str, Any], val: np.ndarray | None, test: np.ndarray | None) -> None:
        preds = {
            "val": None if val is None else val[i].tolist(),
            "test": None if test is None else test[i].tolist(),
        }
        assert self.best is not None and self.best_preds is not None and self.final_preds is not None
        self.final_preds[i] = preds
        if not self.best[i] or _better(point, self.best[i]):
            self.best[i], self.best_preds[i] = point, preds

    def chosen(self, i: int, select: str, curve: list[dict[str, Any]]) -> dict[str, list[float] | None] | None:
        if not curve or self.best_preds is None or self.final_preds is None:
            return None
        return (self.final_preds[i] if select == "final" else self.best_preds[i]) or None


def _better(point: dict[str, Any], best: dict[str, Any]) -> bool:
    """Strictly better validation metric (the earliest of equal bests wins, as summarize_run)."""
    return not best or point["val_metric"] > best["val_metric"]


def _per_run_loss(logits: torch.Tensor, labels: torch.Tensor, regression: bool) -> torch.Tensor:
    """Each run's mean loss over its batch ([K]); the model's own loss (cross-entropy, or MSE for 1 output)."""
    if regression:
        return F.mse_loss(logits.squeeze(-1).float(), labels.float(), reduction="none").mean(1)
    k, b, c = logits.shape
    return F.cross_entropy(logits.float().reshape(k * b, c), labels.reshape(-1), reduction="none").view(k, b).mean(1)


def _tokens(eval_set: EvalSet | None) -> int:
    return eval_set.encoded.tokens() if eval_set is not None else 0
