"""Task-adaptive pre-training (TAPT, Gururangan et al. 2020): masked-LM training on the task's own text first.

The stage is keyed like the intermediate-task stage (harness/training/stages/intermediate.py): a RunSpec of its
own whose run_id hashes what shapes the TAPT encoder (model, model_layers, task, max_seq_length, tapt_steps, tapt_lr,
tapt_mlm_probability, batch_size, the text cap, the fingerprints of the task's data and of the weights) and is
seeded by the run's sample_seed, so the seeds of a
configuration share one TAPT encoder. It is trained once under a FileLock and cached in
`<cache>/tapt/<stage run_id>/`; the target run then copies the encoder into its classifier (the pooler,
which MLM training never touches, stays the checkpoint's) and fine-tunes as usual.

Text: Gururangan et al.'s TAPT uses the task's unlabelled training text. We use the text of the task's
full training split (labels dropped; never the dev set), not only the few-sample subset of the run, at most
TAPT_MAX_EXAMPLES examples drawn by the stage seed; pairs are encoded as the classifier sees them
([CLS] a [SEP] b [SEP]). Masking follows BERT / DataCollatorForLanguageModeling: each non-special token is
selected with probability tapt_mlm_probability; a selected token becomes [MASK] 80% of the time, a random
token 10%, and stays itself 10%; the loss is on selected tokens only. Optimiser as in Gururangan et al.
(RoBERTa's pre-training): Adam(beta2 0.98, eps 1e-6), weight decay 0.01, 6% warmup then linear decay,
grad clip 1.0; length tapt_steps updates of batch_size sequences at tapt_lr.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from harness.experiment import data as D
from harness.experiment.spec import Recipe, RunSpec
from harness.storage.records import RunContext
from harness.training import recipes
from harness.training.loop import Encoded, batch_order, seed_everything
from harness.training.models import load_tokenizer
from harness.training.recipes.cloze import cloze_head_note, is_cloze_model, load_masked_lm
from harness.training.stages.cache import load_encoder, save_encoder_once, stage_folder

TAPT_MAX_EXAMPLES = 20_000
TAPT_WARMUP_RATIO = 0.06
IGNORE_INDEX = -100


def tapt_spec(spec: RunSpec) -> RunSpec:
    """The TAPT stage of `spec`: only the fields that shape the adapted encoder, seeded by sample_seed."""
    recipe = spec.recipe
    assert recipe.tapt_steps > 0
    stage_recipe = Recipe(
        name=f"{recipe.name}-tapt",
        lr=recipe.tapt_lr,
        adam_beta2=0.98,
        adam_eps=1e-6,
        weight_decay=0.01,
        grad_clip=1.0,
        max_steps=recipe.tapt_steps,
        batch_size=recipe.batch_size,
        warmup_ratio=TAPT_WARMUP_RATIO,
        tapt_steps=recipe.tapt_steps,
        tapt_lr=recipe.tapt_lr,
        tapt_mlm_probability=recipe.tapt_mlm_probability,
    )
    return replace(
        spec,
        recipe=stage_recipe,
        data_fingerprints=tuple(p for p in spec.data_fingerprints if p[0] == spec.task),
        init_seed=spec.sample_seed,
        order_seed=spec.sample_seed,
        sample_size=TAPT_MAX_EXAMPLES,
        eval_protocol="dev",
        eval_size=None,
        split_seed=0,
        num_evals=1,
    )


def mask_tokens(
    input_ids: torch.Tensor,
    special: torch.Tensor,
    mlm_probability: float,
    mask_token_id: int,
    vocab_size: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: (inputs, labels); labels are IGNORE_INDEX except at the selected positions.

    `special` is True where a token may never be selected ([CLS], [SEP], padding).
    """
    probability = torch.full(input_ids.shape, mlm_probability)
    probability.masked_fill_(special, 0.0)
    selected = torch.bernoulli(probability, generator=generator).bool()
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    inputs = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & selected
    inputs[to_mask] = mask_token_id
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & selected & ~to_mask
    inputs[to_random] = torch.randint(vocab_size, input_ids.shape, generator=generator)[to_random]
    return inputs, labels


def tapt_examples(stage: RunSpec, data_dir: str | None) -> list:
    """The unlabelled text: the task's full training split, capped at stage.sample_size by the stage seed."""
    examples = D.load_split(stage.task_def, "train", data_dir)
    cap = stage.sample_size or len(examples)
    if len(examples) > cap:
        examples = random.Random(stage.init_seed).sample(examples, cap)
    return examples


def train_tapt(stage: RunSpec, ctx: RunContext) -> tuple[torch.nn.Module, dict]:
    """MLM training of `stage`; returns the masked LM and a summary for the stage record."""
    started = time.perf_counter()
    recipe = stage.recipe
    device = torch.device(ctx.device)
    task = stage.task_def
    tokenizer = load_tokenizer(stage.model)
    if tokenizer.mask_token_id is None:
        raise RuntimeError(f"TAPT needs a tokenizer with a mask token; {stage.model!r} has none")
    examples = tapt_examples(stage, ctx.data_dir)
    texts = Encoded(tokenizer, examples, stage.max_seq_length, task.is_regression)
    seed_everything(stage.init_seed)  # a head the checkpoint lacks, and dropout
    model = load_masked_lm(stage.model, stage.model_layers)
    model.to(device)
    model.train()
    optimizer = recipes.build_optimizer(model, recipe)
    scheduler = recipes.build_lr_scheduler(optimizer, recipe, recipe.tapt_steps)
    generator = torch.Generator().manual_seed(stage.order_seed)
    order = batch_order(len(texts), recipe.batch_size, recipe.tapt_steps, generator)
    special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
    micro = min(ctx.micro_batch_size or recipe.batch_size, recipe.batch_size)
    losses: list[float] = []
    for indices in order:
        batch = texts.batch(indices)
        batch.pop("labels")
        special = torch.isin(batch["input_ids"], special_ids) | (batch["attention_mask"] == 0)
        inputs, labels = mask_tokens(
            batch["input_ids"], special, recipe.tapt_mlm_probability, tokenizer.mask_token_id, len(tokenizer), generator
        )
        batch.update(input_ids=inputs, labels=labels)
        n_selected = int((labels != IGNORE_INDEX).sum())
        step_loss = 0.0
        for start in range(0, len(indices), micro):
            chunk = {k: v[start : start + micro].to(device) for k, v in batch.items()}
            weight = int((chunk["labels"] != IGNORE_INDEX).sum()) / max(1, n_selected)
            if weight == 0:
                continue
            loss = model(**chunk).loss * weight  # the batch's mean over all its selected tokens
            loss.backward()
            step_loss += float(loss.detach())
        if not math.isfinite(step_loss):
            raise RuntimeError(f"TAPT stage {stage.run_id} ({stage.task}) diverged at step {len(losses) + 1}")
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
    summary = {
        "steps": len(losses),
        "texts": len(examples),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "wall_time_s": time.perf_counter() - started,
        "head_note": cloze_head_note(stage.model, what="TAPT's MLM head"),
    }
    return model, summary


@dataclass(frozen=True)
class TaptCheckpoint:
    folder: Path
    record: dict

    @property
    def note(self) -> str:
        """One line for the target run's notes."""
        r = self.record
        text = f"tapt {self.folder.name}: {r.get('steps')} MLM steps on {r.get('texts')} {r.get('task')} texts"
        text += f", loss {r.get('loss_first', math.nan):.3f} -> {r.get('loss_last', math.nan):.3f}"
        return text + (f"; {r['head_note']}" if r.get("head_note") else "")

    def load_into(self, model: torch.nn.Module) -> None:
        """Copy the TAPT encoder into `model` (the pooler stays); a cloze model also gets the TAPT MLM head."""
        load_encoder(model, self.folder / "encoder.safetensors", "TAPT encoder", optional=("pooler.",))
        if is_cloze_model(model):
            _, unexpected = model.load_state_dict(load_file(self.folder / "head.safetensors"), strict=False)
            if unexpected:
                raise RuntimeError(f"{self.folder}: TAPT MLM head does not fit the cloze model ({unexpected})")


def tapt_checkpoint(spec: RunSpec, ctx: RunContext) -> TaptCheckpoint:
    """Train (once) or load the cached TAPT stage of `spec`."""
    stage = tapt_spec(spec)
    folder = stage_folder(ctx, "tapt", stage.run_id)

    def train() -> tuple[torch.nn.Module, dict]:
        model, summary = train_tapt(stage, replace(ctx, on_eval=None, progress=False))
        return model, {"spec": stage.to_json(), "task": stage.task, **summary}

    return TaptCheckpoint(folder, save_encoder_once(folder, train, save_head=True))
