"""Cloze-style fine-tuning (PET, Schick and Schuetze 2021): the task as a masked-LM pattern plus verbalisers.

An RTE pair becomes "<premise> ? [MASK] , <hypothesis>" and the classifier's logits are the MLM head's
scores of the verbaliser tokens ("no", "yes") at the [MASK]: no new parameters are learned. Patterns and
verbalisers are data (`TaskDef.cloze_pattern`, `TaskDef.verbalizers` in harness/experiment/tasks.py).

The pieces plug into the ordinary loop unchanged:
- `ClozeTokenizer` wraps the tokenizer: `Encoded` calls it like a tokenizer and gets the rendered pattern,
  truncated so that the [MASK] always survives (the longer text loses tokens first).
- `load_cloze_model` returns an AutoModelForMaskedLM whose `forward(**batch)` gives `.logits` of shape
  [batch, num_labels] and `.loss` = cross-entropy over them; its parameter names are the MLM model's.
- `mlm_head_is_pretrained` reads the checkpoint's keys: a sentence encoder saved as a bare BertModel (the
  packaged MiniLM) has no MLM head, so the cloze head would start random; the run says so in its notes.
"""

from __future__ import annotations

import functools
import json
import logging
import string
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForMaskedLM, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from harness.experiment.spec import ConfigError
from harness.experiment.tasks import TaskDef
from harness.training.models import ModelError, resolve_model

log = logging.getLogger(__name__)

FIELDS = ("text_a", "text_b", "mask")
_LEGACY = ((".gamma", ".weight"), (".beta", ".bias"))  # old TF checkpoints name LayerNorm weights so


# ---------------------------------------------------------------------------
# Patterns and verbalisers (data in the task registry)


def pattern_parts(task: TaskDef) -> list[tuple[str, str]]:
    """The pattern as ("literal", text) and ("field", name) pieces; exactly one {mask}."""
    if not task.cloze_pattern or not task.verbalizers:
        raise ConfigError(
            f"task {task.name!r} has no cloze_pattern/verbalizers: "
            "add them to its TaskDef in harness/experiment/tasks.py "
            "or set cloze = false"
        )
    parts: list[tuple[str, str]] = []
    for literal, name, spec, conv in string.Formatter().parse(task.cloze_pattern):
        if literal:
            parts.append(("literal", literal))
        if name is None:
            continue
        if name not in FIELDS or spec or conv:
            raise ConfigError(
                f"task {task.name!r}: cloze_pattern {task.cloze_pattern!r} has field {{{name}}}; "
                f"allowed fields: {', '.join('{' + f + '}' for f in FIELDS)}"
            )
        parts.append(("field", name))
    if sum(p == ("field", "mask") for p in parts) != 1:
        raise ConfigError(
            f"task {task.name!r}: cloze_pattern {task.cloze_pattern!r} must contain {{mask}} exactly once"
        )
    if len(task.verbalizers) != task.num_labels or task.is_regression:
        raise ConfigError(
            f"task {task.name!r}: {len(task.verbalizers)} verbalizers for labels {list(task.labels)}; "
            "give one verbaliser word per label (regression tasks cannot use cloze)"
        )
    return parts


def render_pattern(task: TaskDef, text_a: str, text_b: str | None, mask_token: str) -> str:
    """The pattern filled in as a string (for reading; the token ids come from `ClozeTokenizer`)."""
    values = {"text_a": text_a, "text_b": text_b, "mask": mask_token}
    out = []
    for kind, value in pattern_parts(task):
        if kind == "field" and values[value] is None:
            raise ConfigError(f"task {task.name!r}: cloze_pattern uses {{{value}}} but the example has no second text")
        out.append(value if kind == "literal" else values[value])
    return "".join(out)


def verbalizer_ids(task: TaskDef, tokenizer: Any, model_name: str = "the model") -> list[int]:
    """Token id of each label's verbaliser; each must be one token of the vocabulary (as it follows a space)."""
    pattern_parts(task)
    ids = []
    for word in task.verbalizers:
        pieces = tokenizer(f" {word}", add_special_tokens=False)["input_ids"]
        if len(pieces) != 1 or pieces[0] == tokenizer.unk_token_id:
            shown = tokenizer.convert_ids_to_tokens(pieces)
            raise ConfigError(
                f"task {task.name!r}: verbaliser {word!r} is {len(pieces)} token(s) {shown} in the vocabulary of "
                f"{model_name}; cloze needs one token per label: choose single-token verbalizers for this "
                "tokenizer (TaskDef.verbalizers in harness/experiment/tasks.py, or register_task a variant) "
                "or set cloze = false"
            )
        ids.append(pieces[0])
    if len(set(ids)) != len(ids):
        raise ConfigError(f"task {task.name!r}: verbalizers {task.verbalizers} map to repeated tokens {ids}")
    return ids


class ClozeTokenizer:
    """Called like a tokenizer by `train.Encoded`: returns the pattern's ids, one segment, [MASK] kept.

    Texts are tokenised piece by piece (for WordPiece this equals tokenising the rendered string); when the
    pattern is over `max_length`, the longer of text_a / text_b loses its last token until it fits.
    """

    def __init__(self, tokenizer: Any, task: TaskDef) -> None:
        self.tokenizer = tokenizer
        self.task = task
        self.parts = pattern_parts(task)
        self.pad_token_id = tokenizer.pad_token_id
        self.mask_token_id = tokenizer.mask_token_id
        if self.mask_token_id is None:
            raise ConfigError(f"task {task.name!r}: cloze needs a tokenizer with a mask token; this one has none")
        self.prefix, self.suffix = _special_wrap(tokenizer)
        self.with_token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())

    def __getattr__(self, name: str) -> Any:  # anything else: the wrapped tokenizer's
        if name == "tokenizer":
            raise AttributeError(name)
        return getattr(self.tokenizer, name)

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_one(self, text_a: str, text_b: str | None, max_length: int | None) -> list[int]:
        texts = {"text_a": self._ids(text_a), "text_b": self._ids(text_b) if text_b is not None else None}
        pieces: list[tuple[str, list[int]]] = []
        for kind, value in self.parts:
            if kind == "literal":
                pieces.append((kind, self._ids(value)))
            elif value == "mask":
                pieces.append(("mask", [self.mask_token_id]))
            elif texts[value] is None:
                raise ConfigError(f"task {self.task.name!r}: cloze_pattern uses {{{value}}} but an example has none")
            else:
                pieces.append((value, texts[value]))
        if max_length is not None:
            fixed = (
                len(self.prefix)
                + len(self.suffix)
                + sum(len(ids) for kind, ids in pieces if kind in ("literal", "mask"))
            )
            budget = max_length - fixed
            if budget < 0:
                raise ConfigError(
                    f"task {self.task.name!r}: max_seq_length = {max_length} is shorter than the cloze pattern "
                    f"itself ({fixed} tokens); raise max_seq_length"
                )
            lengths = {name: len(ids) for name, ids in texts.items() if ids is not None}
            while sum(lengths.values()) > budget:
                longest = max(lengths, key=lambda k: (lengths[k], k == "text_a"))
                lengths[longest] -= 1
            pieces = [(k, ids[: lengths[k]] if k in lengths else ids) for k, ids in pieces]
        return [*self.prefix, *(i for _, ids in pieces for i in ids), *self.suffix]

    def __call__(
        self,
        texts_a: list[str],
        texts_b: list[str] | None = None,
        truncation: bool = True,
        max_length: int | None = None,
    ) -> dict[str, list[list[int]]]:
        texts_b = texts_b if texts_b is not None else [None] * len(texts_a)
        limit = max_length if truncation else None
        ids = [self.encode_one(a, b, limit) for a, b in zip(texts_a, texts_b, strict=True)]
        out = {"input_ids": ids}
        if self.with_token_types:
            out["token_type_ids"] = [[0] * len(row) for row in ids]
        out["attention_mask"] = [[1] * len(row) for row in ids]
        return out


def _special_wrap(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens a single sequence gets before and after its text (BERT: [CLS] / [SEP])."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise ConfigError("cannot locate the special tokens this tokenizer adds; cloze needs a BERT-like tokenizer")


# ---------------------------------------------------------------------------
# The model: an MLM whose outputs are the verbaliser scores at the mask


class ClozeMixin:
    """Mixed into the loaded MLM class: forward returns verbaliser logits at the [MASK] and their CE loss."""

    cloze_mask_token_id: int
    cloze_verbalizer_ids: list[int]

    def forward(  # type: ignore[override]
        self, input_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs: Any
    ) -> SequenceClassifierOutput:
        if input_ids is None:
            raise ConfigError("cloze models need input_ids to find the [MASK] (inputs_embeds alone is not supported)")
        is_mask = input_ids == self.cloze_mask_token_id
        counts = is_mask.sum(dim=1)
        if not bool((counts == 1).all()):
            raise ValueError(f"cloze: every sequence needs exactly one mask token, got counts {counts.tolist()}")
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        position = is_mask.int().argmax(dim=1)
        head = _single_head(self)
        if head is not None:  # score the vocabulary at the mask position only, not at every token
            hidden = self.base_model(input_ids=input_ids, **kwargs)[0]
            vocab = head(hidden[rows, position].unsqueeze(1)).squeeze(1)
        else:
            vocab = super().forward(input_ids=input_ids, **kwargs).logits[rows, position]
        logits = vocab[:, self.cloze_verbalizer_ids]
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


def _single_head(model: nn.Module) -> nn.Module | None:
    """The MLM head when it is one module beside the body (BERT `cls`, RoBERTa `lm_head`), else None."""
    body = model.base_model
    heads = [c for _, c in model.named_children() if c is not body and any(True for _ in c.parameters())]
    return heads[0] if len(heads) == 1 else None


@functools.cache
def _cloze_class(base: type) -> type:
    return type(f"Cloze{base.__name__}", (ClozeMixin, base), {})


def is_cloze_model(model: nn.Module) -> bool:
    return isinstance(model, ClozeMixin)


def load_masked_lm(name: str, layers: int | None = None) -> PreTrainedModel:
    """AutoModelForMaskedLM of `name` (weights the checkpoint lacks are drawn from the global RNG)."""
    source = resolve_model(name)
    kwargs: dict[str, Any] = {}
    if layers is not None:
        available = getattr(AutoConfig.from_pretrained(source), "num_hidden_layers", None)
        if available is not None and layers > available:
            raise ModelError(f"model_layers = {layers} but {name!r} has only {available} layers; use <= {available}")
        kwargs["num_hidden_layers"] = layers
    try:
        return AutoModelForMaskedLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load {name!r} ({source}) as a masked LM: {exc}") from exc


def load_cloze_model(
    name: str, task: TaskDef, tokenizer: Any, layers: int | None = None, tapt_steps: int = 0
) -> tuple[PreTrainedModel, str]:
    """The cloze model of `task` and a note for the run record ("" when the MLM head is pre-trained)."""
    ids = verbalizer_ids(task, tokenizer, name)
    model = load_masked_lm(name, layers)
    model.__class__ = _cloze_class(type(model))
    model.cloze_mask_token_id = tokenizer.mask_token_id
    model.cloze_verbalizer_ids = ids
    return model, cloze_head_note(name, tapt_steps)


# ---------------------------------------------------------------------------
# Does the checkpoint carry MLM head weights?


def checkpoint_keys(source: str) -> set[str]:
    """Tensor names in a checkpoint folder (safetensors file or index, or a PyTorch .bin)."""
    folder = Path(source)
    if not folder.is_dir():
        from transformers.utils import cached_file  # a hub id: its files in the local cache (or the network)

        for filename in ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin"):
            try:
                found = cached_file(source, filename, _raise_exceptions_for_missing_entries=False)
            except OSError:
                found = None
            if found:
                folder = Path(found).parent
                break
        else:
            raise ModelError(f"cannot find the weights of {source!r} to check its MLM head")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    if (folder / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(folder / "model.safetensors"), "pt") as handle:
            return set(handle.keys())
    if (folder / "pytorch_model.bin").is_file():
        return set(torch.load(folder / "pytorch_model.bin", map_location="meta", weights_only=True))
    raise ModelError(f"{folder}: no model.safetensors(.index.json) or pytorch_model.bin to read")


@functools.cache
def missing_mlm_head_keys(model_source: str) -> tuple[str, ...]:
    """The MLM head parameters (tied copies of the embeddings excluded) absent from the checkpoint."""
    source = resolve_model(model_source)
    config = AutoConfig.from_pretrained(source)
    with torch.device("meta"):
        model = AutoModelForMaskedLM.from_config(config)
    prefix = f"{model.base_model_prefix}."
    head = [n for n, _ in model.named_parameters() if not n.startswith(prefix)]  # tied params are listed once
    keys = set()
    for key in checkpoint_keys(source):
        for old, new in _LEGACY:
            key = key[: -len(old)] + new if key.endswith(old) else key
        keys.add(key)
    return tuple(n for n in head if n not in keys)


def mlm_head_is_pretrained(model_source: str) -> bool:
    """True when the checkpoint holds every MLM head weight (a BertForPreTraining / *ForMaskedLM save)."""
    return not missing_mlm_head_keys(model_source)


def cloze_head_note(model_source: str, tapt_steps: int = 0, what: str = "cloze head") -> str:
    """ "" for a pre-trained MLM head; else a loud warning (logged) and the line for the record's notes."""
    missing = missing_mlm_head_keys(model_source)
    if not missing:
        return ""
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    note = (
        f"WARNING: {what} is randomly initialised: {model_source} has no pre-trained MLM head weights "
        f"({shown}); its vocabulary scores start from a random projection"
    )
    if what == "cloze head":
        note += ", so this is not PET as published"
    if tapt_steps:
        note += f" (the head was then trained for {tapt_steps} TAPT steps with the encoder)"
    log.warning(note)
    return note
